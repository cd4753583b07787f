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
* Hook: every status write goes through the Store port (`put_lineage`, `transition_lineage`,
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

import dataclasses
import datetime as dt
import logging
import time
import zlib
from typing import Any, Iterable

from common.domain import NETWORKS, CronRun, Status, as_utc, iso

log = logging.getLogger(__name__)

SHARDS = 16  # fixed: changing it needs a rebuild of pipeline_state
COUNTS_KEY = "~counts"  # sorts after every G... account id
HOUR_FMT = "%Y-%m-%dT%H"
RETAIN_HOURS = 48  # completion-hour buckets kept in the totals
WINDOW_HOURS = 24
SYNC_ROUNDS = 8
RECONCILE_JOB = "pipeline_stats_reconcile"
DIRTY_TTL_HOURS = 72  # markers expire after this (Cassandra TTL; SQLite prunes)
RECONCILE_MAX_ACCOUNTS = 100_000
NO_SOURCE = "-"


def shard_of(account: str) -> int:
    return zlib.crc32(account.encode("ascii")) % SHARDS


def hour_bucket(when: dt.datetime) -> str:
    return as_utc(when).strftime(HOUR_FMT)


def parse_hour(bucket: str) -> dt.datetime:
    return dt.datetime.strptime(bucket, HOUR_FMT).replace(tzinfo=dt.timezone.utc)


@dataclasses.dataclass(frozen=True)
class CountedState:
    status: str
    pipeline_source: str | None
    completed_hour: str | None

    def as_row(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def state_of(rec) -> CountedState | None:
    """What is counted for one lineage row (None: not counted: absent, or known but never searched)."""
    if rec is None or rec.status is None:
        return None
    completed = None
    if rec.status == Status.COMPLETE.value:
        when = rec.last_pipeline_attempt or rec.updated_at
        completed = hour_bucket(when) if when else None
    return CountedState(rec.status, rec.pipeline_source, completed)


def state_from_row(row: dict | None) -> CountedState | None:
    if not row or row.get("status") is None:
        return None
    return CountedState(row["status"], row.get("pipeline_source"), row.get("completed_hour"))


def _contributions(state: CountedState | None) -> list[str]:
    if state is None:
        return []
    keys = [f"s:{state.status}"]
    if state.pipeline_source:
        keys.append(f"p:{state.pipeline_source}")
    if state.completed_hour:
        keys.append(f"d:{state.completed_hour}:{state.pipeline_source or NO_SOURCE}")
    return keys


def apply_delta(counts: dict[str, int], old: CountedState | None, new: CountedState | None) -> dict[str, int]:
    """New totals after one account's counted state goes from `old` to `new` (pure)."""
    out = dict(counts)
    for key in _contributions(old):
        if key in out:  # a completion hour older than RETAIN_HOURS may have been pruned already
            out[key] -= 1
            if out[key] <= 0:
                del out[key]
    for key in _contributions(new):
        out[key] = out.get(key, 0) + 1
    hours = [k[2:15] for k in out if k.startswith("d:")]
    if hours:
        oldest = hour_bucket(parse_hour(max(hours)) - dt.timedelta(hours=RETAIN_HOURS))
        for key in [k for k in out if k.startswith("d:") and k[2:15] < oldest]:
            del out[key]
    return out


def sync(store, network: str, account: str) -> bool:
    """Make the counted state of one account equal its lineage row. True when it converged."""
    for _ in range(SYNC_ROUNDS):
        target = state_of(store._get_lineage(network, account))
        store._apply_pipeline_state(network, shard_of(account), account, target, apply_delta)
        if state_of(store._get_lineage(network, account)) == target:
            return True
    return False  # still moving: the dirty marker stays and the reconciler finishes the job


def merge(rows: Iterable[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for counts in rows:
        for k, v in counts.items():
            total[k] = total.get(k, 0) + int(v)
    return total


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
                if not sync(store, network, account):
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
