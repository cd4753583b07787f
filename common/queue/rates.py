"""Queue rate limits derived from the upstream budgets.

The api-fallback queue's dispatch rate is a ceiling on task starts:
rate = min(Horizon share / HORIZON_CALLS_PER_TASK, Expert share / EXPERT_CALLS_PER_TASK), where a share
is upstream_rate_pct of the upstream's maximum. What holds each upstream to its share call by call is
the in-process limiter (common/upstream/ratelimit.py) of the one api_fallback instance Terraform allows
(function_sizing: max_instances 1, concurrency 4), and max_concurrent_dispatches bounds the tasks
waiting on it. Terraform computes the same numbers from the same defaults
(tests/unit/test_terraform_consistency.py checks that they agree).
"""
from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

HORIZON_MAX_PER_HOUR = 3600  # public Horizon's documented default per IP
EXPERT_MAX_PER_MINUTE = 50  # Stellar Expert publishes none; the original assumed about 50/min
UPSTREAM_RATE_PCT = 71  # share of each upstream maximum we allow ourselves (as in the seeds)
# Calls per api-fallback dispatch, measured by bench/bench_api_pipeline.py (ordinary accounts spread over the
# network's age, API_ONLY, through the local stack and dispatcher, simulator at 85 Horizon / 35 Expert per minute):
# - Horizon: a mean of 1.49 (--full, 60 accounts) to 1.56 (--short) per dispatch. Every task reads its account
#   once (GET /accounts: 1.00 per dispatch), so an enrich task makes 1 call; a lineage task adds an operations
#   page (about 2), a crawl continuation one call per page;
# - Stellar Expert account lookups: a mean of 0.48 to 0.55 per dispatch (a lineage task of an account older
#   than Horizon's history window makes 1, every other task 0). Directory labels come on top, on spare budget
#   only (they never wait for it), so they need no room in the queue's rate.
# Re-measure with `python -m bench.bench_api_pipeline` (its "per api-fallback dispatch" rows) and update these.
HORIZON_CALLS_PER_TASK_MEAN = 1.5
EXPERT_CALLS_PER_TASK_MEAN = 0.5
# The queue's rate is a ceiling, not the pacer, so it takes the figures that keep it from binding before the
# upstream does. The mix of tasks swings between phases of lineage tasks (bound by Stellar Expert) and phases
# of enrich tasks (1 Horizon call each); a queue paced for the means throttles the light phases with Horizon
# idle (--full: 89% of the bound with the means, 96% with the figures below).
# terraform/variables.tf's horizon_calls_per_task and expert_calls_per_task defaults are these two
# (tests/unit/test_terraform_consistency.py keeps them equal).
HORIZON_CALLS_PER_TASK = 1.0  # the lightest task: its one GET /accounts
# Stellar Expert: the low end of the measured mean, rounded down. It never binds before Horizon at the budgets
# measured (at 85/35 a figure of 0.5 would cap the queue at 0.83 tasks/s, below Horizon's 1.0058), and it still
# slows the queue when the Expert budget is small, instead of letting lineage tasks bounce off an empty limiter.
EXPERT_CALLS_PER_TASK = 0.4
MAX_ATTEMPTS = 10
MIN_BACKOFF_S = 5
MAX_BACKOFF_S = 600
MAX_DOUBLINGS = 5
LINEAGE_MAX_DISPATCHES_PER_SECOND = 5.0  # process_account: BigQuery path, guarded by the cost guard
LINEAGE_MAX_CONCURRENT = 10
# Tasks of the api-fallback queue in flight: what the api_fallback function takes (terraform function_sizing:
# one instance, so one limiter sees every upstream call, serving 4 requests at once). 4, not 2: while
# lineage tasks wait on Stellar Expert, enrich tasks can still use Horizon (bench_api_pipeline --short
# measured 90 to 93% of the bound with 4, 86 to 90% with 2).
API_FALLBACK_MAX_CONCURRENT = 4


@dataclasses.dataclass(frozen=True)
class QueueLimits:
    max_dispatches_per_second: float
    max_burst_size: int
    max_concurrent_dispatches: int
    max_attempts: int = MAX_ATTEMPTS
    min_backoff_s: float = MIN_BACKOFF_S
    max_backoff_s: float = MAX_BACKOFF_S
    max_doublings: int = MAX_DOUBLINGS


def api_fallback_limits(
    horizon_max_per_hour: float = HORIZON_MAX_PER_HOUR,
    expert_max_per_minute: float = EXPERT_MAX_PER_MINUTE,
    pct: float = UPSTREAM_RATE_PCT,
    horizon_calls_per_task: float = HORIZON_CALLS_PER_TASK,
    expert_calls_per_task: float = EXPERT_CALLS_PER_TASK,
) -> QueueLimits:
    if min(horizon_calls_per_task, expert_calls_per_task) <= 0:
        raise ValueError("calls per task must be positive")
    # Exact arithmetic, rounded down to 4 decimals, never up: as Terraform (arbitrary-precision numbers) does,
    # and rounding up could put the queue above the upstream budget.
    horizon_per_s = Fraction(str(horizon_max_per_hour)) * Fraction(str(pct)) / 100 / 3600
    expert_per_s = Fraction(str(expert_max_per_minute)) * Fraction(str(pct)) / 100 / 60
    rate = min(horizon_per_s / Fraction(str(horizon_calls_per_task)), expert_per_s / Fraction(str(expert_calls_per_task)))
    rate = math.floor(rate * 10_000) / 10_000
    # A burst of one task keeps instantaneous upstream calls at the per-task count.
    return QueueLimits(max_dispatches_per_second=rate, max_burst_size=1, max_concurrent_dispatches=API_FALLBACK_MAX_CONCURRENT)


def lineage_limits() -> QueueLimits:
    return QueueLimits(
        max_dispatches_per_second=LINEAGE_MAX_DISPATCHES_PER_SECOND,
        max_burst_size=10,
        max_concurrent_dispatches=LINEAGE_MAX_CONCURRENT,
    )


# The hubble-sync queue runs one range of the network-wide Hubble sync at a time (docs/design.md): its
# BigQuery spend and its bulk writes stay sequential. Its rate never binds; concurrency does.
HUBBLE_SYNC_MAX_CONCURRENT = 1


def hubble_sync_limits() -> QueueLimits:
    return QueueLimits(max_dispatches_per_second=1.0, max_burst_size=1, max_concurrent_dispatches=HUBBLE_SYNC_MAX_CONCURRENT)
