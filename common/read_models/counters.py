"""Exact pipeline statistics without full-table counts.

The choice, and why:

* `COUNT(*)` over account_lineage is what the original did; it grows with the table and is a
  full scan on Cassandra. Cassandra counter columns are not an option either: an increment that
  times out may or may not have been applied and retrying it double-counts, and a counter cannot
  be written atomically with the row it counts.
* Instead, each account has a *counted state*: (status, pipeline_source, completion hour). It
  lives in `pipeline_state`, in a partition per (network, shard of the account id), next to that
  shard's totals row (`stellar_account = '~counts'`: a JSON map plus a version). A sync computes
  the difference between the stored counted state and the lineage row's current one, and writes
  the new state and the new totals together: one single-partition conditional batch on the
  version (a Cassandra lightweight transaction), one transaction on SQLite. Applying a state that
  is already counted changes nothing, so retries, duplicate deliveries and concurrent syncs of
  the same account stay exact.
* Hook (part of the Store contract, common/store/counted_state.py): every status write goes through the Store port (`put_lineage`, `transition_lineage`,
  hence `claim` and everything in common/pipeline.py). The port marks the account dirty in an
  hour bucket *before* the write and syncs it *after*. A sync re-reads the lineage row after
  applying and repeats when the row changed meanwhile, so interleaved transitions converge on the
  row's final state. A process that dies between its write and its sync leaves the marker behind;
  `reconcile` (run hourly by hva_recalc) re-syncs every account marked in the recent hours.
* So after the system goes quiet the totals equal the ground truth (after one reconcile if a
  writer crashed mid-write). `/pipeline-stats` reads SHARDS rows per network: constant cost.

Totals map keys: `s:<STATUS>` accounts by status; `p:<SOURCE>` accounts (with a status) by
pipeline_source; `d:<YYYY-MM-DDTHH>:<SOURCE>` accounts currently COMPLETE whose completion
(last_pipeline_attempt) falls in that hour: the "last 24 h by source" and the throughput.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any, Iterable

from common.domain import NETWORKS, CronRun, as_utc, iso
from common.store.counted_state import (  # noqa: F401 - the model, re-exported for readers of the totals
    DIRTY_TTL_HOURS,
    HOUR_FMT,
    NO_SOURCE,
    RETAIN_HOURS,
    CountedState,
    apply_delta,
    hour_bucket,
    merge,
    parse_hour,
    state_of,
)

log = logging.getLogger(__name__)

RECONCILE_JOB = "pipeline_stats_reconcile"
RECONCILE_MAX_ACCOUNTS = 100_000
WINDOW_HOURS = 24


def window_hours(now: dt.datetime, hours: int = WINDOW_HOURS) -> list[str]:
    """The hour buckets of "the last 24 h": the current hour and the 23 before it, oldest first."""
    top = as_utc(now).replace(minute=0, second=0, microsecond=0)
    return [hour_bucket(top - dt.timedelta(hours=h)) for h in range(hours - 1, -1, -1)]


def summarize(counts: dict[str, int], now: dt.datetime) -> dict[str, Any]:
    """The /pipeline-stats body from merged totals."""
    by_status = {k[2:]: v for k, v in sorted(counts.items()) if k.startswith("s:")}
    by_source = {k[2:]: v for k, v in sorted(counts.items()) if k.startswith("p:")}
    hours = window_hours(now)
    wanted = set(hours)
    last_24h: dict[str, int] = {}
    per_hour = {h: 0 for h in hours}
    for key, v in counts.items():
        if not key.startswith("d:"):
            continue
        hour, _, source = key[2:].partition(":")
        if hour in wanted:
            per_hour[hour] += v
            if source != NO_SOURCE:
                last_24h[source] = last_24h.get(source, 0) + v
    return {
        "timestamp": iso(now),
        "total": sum(by_status.values()),
        "by_source": by_source,
        "by_status": by_status,
        "last_24h_by_source": dict(sorted(last_24h.items())),
        "throughput": [{"hour": iso(parse_hour(h)), "count": per_hour[h]} for h in hours],
    }


def pipeline_stats(store, now: dt.datetime, networks: Iterable[str] = NETWORKS) -> dict[str, Any]:
    return summarize(merge(store.get_pipeline_counts(n) for n in networks), now)


def ground_truth(records: Iterable, now: dt.datetime) -> dict[str, Any]:
    """The same body computed from lineage rows directly (tests and the reconciliation check)."""
    counts: dict[str, int] = {}
    for rec in records:
        counts = apply_delta(counts, None, state_of(rec))
    return summarize(counts, now)


# ------------------------------------------------------------------ reconciliation
def _watermarks(store) -> dict[str, str]:
    for run in store.get_cron_runs(RECONCILE_JOB, 20):
        if run.status == "SUCCESS" and run.details and isinstance(run.details.get("through"), dict):
            return dict(run.details["through"])
    return {}


def reconcile(store, now: dt.datetime, networks: Iterable[str] = NETWORKS, max_accounts: int = RECONCILE_MAX_ACCOUNTS) -> dict[str, Any]:
    """Re-sync every account marked dirty since the last run (bounded by activity, not table size).

    Reads the hour buckets from the last watermark (at most DIRTY_TTL_HOURS back) through the
    current hour; the watermark then moves to the previous hour, so the two newest buckets are
    read again next time and a marker written late is not missed. Records a cron run.
    """
    now = as_utc(now)
    t0 = time.monotonic()
    marks = _watermarks(store)
    current = now.replace(minute=0, second=0, microsecond=0)
    floor = current - dt.timedelta(hours=DIRTY_TTL_HOURS)
    through: dict[str, str] = dict(marks)  # networks not run this time keep their watermark
    synced = unconverged = 0
    complete = True
    for network in networks:
        start = parse_hour(marks[network]) if network in marks else floor
        start = max(start, floor)
        hour = start
        reached = None
        while hour <= current:
            accounts = store.stats_dirty_accounts(network, hour_bucket(hour))
            if synced + len(accounts) > max_accounts:
                complete = False
                break
            for account in accounts:
                if not store.sync_pipeline_state(network, account):
                    unconverged += 1
                synced += 1
            reached = hour
            hour += dt.timedelta(hours=1)
        new_mark = min(reached, current - dt.timedelta(hours=1)) if reached else start
        through[network] = hour_bucket(max(new_mark, start))
        store.prune_stats_dirty(network, hour_bucket(floor))
    details = {"through": through, "synced": synced, "unconverged": unconverged, "complete": complete}
    store.record_cron_run(CronRun(RECONCILE_JOB, now, "SUCCESS", int((time.monotonic() - t0) * 1000), details))
    return details
