"""The counted state of the exact pipeline counters: what one lineage row contributes to the totals.

Part of the Store contract (see common/read_models/counters.py for the design): every status write
through the Store port (`put_lineage`, `transition_lineage`, `claim`, ...) marks the account dirty
before the write and brings its counted state in line after it, so the totals are exact. This
module is the pure model the store applies; common/read_models reads the totals and reconciles.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import zlib
from typing import Any, Iterable

from common.domain import Status, as_utc

SHARDS = 16  # fixed: changing it needs a rebuild of pipeline_state
COUNTS_KEY = "~counts"  # sorts after every G... account id
HOUR_FMT = "%Y-%m-%dT%H"
RETAIN_HOURS = 48  # completion-hour buckets kept in the totals
SYNC_ROUNDS = 8
DIRTY_TTL_HOURS = 72  # markers expire after this (Cassandra TTL; SQLite prunes)
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


def merge(rows: Iterable[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for counts in rows:
        for k, v in counts.items():
            total[k] = total.get(k, 0) + int(v)
    return total
