"""Queue rate limits derived from the upstream budgets.

The api-fallback queue's dispatch rate is what keeps the API pipeline inside the Horizon and
Stellar Expert budgets: rate = min(horizon budget / horizon calls per task,
expert budget / expert calls per task). Terraform computes the same numbers from the same
defaults (tests/unit/test_terraform_consistency.py checks that they agree).
"""
from __future__ import annotations

import dataclasses
import math

HORIZON_MAX_PER_HOUR = 3600  # public Horizon's documented default per IP
EXPERT_MAX_PER_MINUTE = 50  # Stellar Expert publishes none; the original assumed about 50/min
UPSTREAM_RATE_PCT = 71  # share of each upstream maximum we allow ourselves (as in the seeds)
# Per api-fallback task, bench/bench_api_pipeline.py measures a mean of ~1.7 Horizon calls (lineage tasks: account +
# one operations page; enrich tasks: account; crawl continuations: time-bounded pages, paced by the in-process
# limiter) and ~0.7 Expert calls. 4 is a ceiling with headroom: the queue stays inside the budget but uses about
# half of it; 2 would use ~85% (Terraform's horizon_calls_per_task default must move with it).
HORIZON_CALLS_PER_TASK = 4  # account + operations pages (typical account) + creator lookup
EXPERT_CALLS_PER_TASK = 1  # account (creator / created) when Horizon history is pruned
MAX_ATTEMPTS = 10
MIN_BACKOFF_S = 5
MAX_BACKOFF_S = 600
MAX_DOUBLINGS = 5
LINEAGE_MAX_DISPATCHES_PER_SECOND = 5.0  # process_account: BigQuery path, guarded by the cost guard
LINEAGE_MAX_CONCURRENT = 10


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
    horizon_per_s = horizon_max_per_hour * pct / 100 / 3600
    expert_per_s = expert_max_per_minute * pct / 100 / 60
    rate = min(horizon_per_s / horizon_calls_per_task, expert_per_s / expert_calls_per_task)
    # Round down, never up: rounding up could put the queue above the upstream budget.
    rate = math.floor(rate * 10_000) / 10_000
    # A burst of one task keeps instantaneous upstream calls at the per-task count.
    return QueueLimits(max_dispatches_per_second=rate, max_burst_size=1, max_concurrent_dispatches=2)


def lineage_limits() -> QueueLimits:
    return QueueLimits(
        max_dispatches_per_second=LINEAGE_MAX_DISPATCHES_PER_SECOND,
        max_burst_size=10,
        max_concurrent_dispatches=LINEAGE_MAX_CONCURRENT,
    )
