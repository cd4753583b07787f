"""Value encoding shared by the adapters, driven by the CQL types the cql/ files declare.

Both adapters store the same logical values: exact decimals, millisecond UTC timestamps,
JSON for the structured text columns (flags, assets, thresholds, details), sets for tags.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
from decimal import Decimal
from typing import Any

from common.domain import (
    ChildEdge,
    CreationEvent,
    CronRun,
    HvaEvent,
    LineageRecord,
    MergeEvent,
    SearchCacheEntry,
    StageExecution,
    as_utc,
)
from common.store.schema import expected_tables

# Text columns that hold JSON documents.
JSON_COLUMNS = {
    ("account_lineage", "flags"),
    ("account_lineage", "assets"),
    ("account_lineage", "thresholds"),
    ("cron_health", "details"),
}


@functools.lru_cache(maxsize=1)
def column_types() -> dict[str, dict[str, str]]:
    return {name: dict(t.columns) for name, t in expected_tables().items()}


@functools.lru_cache(maxsize=None)
def primary_key(table: str) -> tuple[str, ...]:
    t = expected_tables()[table]
    return tuple(t.partition_key + [c for c, _ in t.clustering])


def _ts_text(value: dt.datetime) -> str:
    if value.tzinfo is not dt.timezone.utc or value.microsecond % 1000:
        value = as_utc(value)
    return value.isoformat(timespec="milliseconds")[:23] + "Z"  # 2016-01-01T00:00:00.000Z


def to_sqlite(table: str, column: str, value: Any) -> Any:
    if value is None:
        return None
    ctype = column_types()[table].get(column, "text")
    if (table, column) in JSON_COLUMNS:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    if ctype == "timestamp":
        return _ts_text(value)
    if ctype == "date":
        return value.isoformat()
    if ctype == "decimal":
        return format(Decimal(value), "f")
    if ctype == "boolean":
        return 1 if value else 0
    if ctype.startswith(("set<", "list<")):
        return json.dumps(sorted(value) if ctype.startswith("set<") else list(value))
    return value


def from_sqlite(table: str, column: str, value: Any) -> Any:
    if value is None:
        return None
    ctype = column_types()[table].get(column, "text")
    if (table, column) in JSON_COLUMNS:
        return json.loads(value)
    if ctype == "timestamp":
        return as_utc(dt.datetime.fromisoformat(value.replace("Z", "+00:00")))
    if ctype == "date":
        return dt.date.fromisoformat(value)
    if ctype == "decimal":
        return Decimal(value)
    if ctype == "boolean":
        return bool(value)
    if ctype.startswith(("set<", "list<")):
        return json.loads(value)
    return value


def to_cassandra(table: str, column: str, value: Any) -> Any:
    if value is None:
        return None
    ctype = column_types()[table].get(column, "text")
    if (table, column) in JSON_COLUMNS:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    if ctype == "timestamp":
        return as_utc(value)
    if ctype == "decimal":
        return Decimal(value)
    if ctype.startswith("set<"):
        return set(value)
    return value


def from_cassandra(table: str, column: str, value: Any) -> Any:
    if value is None:
        return None
    ctype = column_types()[table].get(column, "text")
    if (table, column) in JSON_COLUMNS:
        return json.loads(value)
    if ctype == "timestamp":
        return as_utc(value)
    if ctype == "date":
        # cassandra.util.Date -> datetime.date
        return value.date() if hasattr(value, "date") and not isinstance(value, dt.date) else value
    if ctype.startswith("set<"):
        return sorted(value)
    return value


def record(cls, row: dict):
    """Build a domain dataclass from a decoded row, ignoring columns it does not have."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in row.items() if k in names})


ROW_TYPES = {
    "account_lineage": LineageRecord,
    "search_cache": SearchCacheEntry,
    "creation_events": CreationEvent,
    "merge_events": MergeEvent,
    "stage_executions": StageExecution,
    "cron_health": CronRun,
}


def child_from_row(row: dict) -> ChildEdge:
    return ChildEdge(
        network_name=row["network_name"],
        creator=row["creator"],
        child=row["child"],
        created_at=row.get("created_at"),
        operation_id=row.get("operation_id"),
        starting_balance=row.get("starting_balance"),
    )


def hva_event_from_row(row: dict) -> HvaEvent:
    return HvaEvent(
        network_name=row["network_name"],
        threshold=int(row["threshold"]),
        stellar_account=row["stellar_account"],
        event_time=row["event_time"],
        event_type=row["event_type"],
        old_rank=row.get("old_rank"),
        new_rank=row.get("new_rank"),
        old_balance=row.get("old_balance"),
        new_balance=row.get("new_balance"),
        pct_change=row.get("pct_change"),
    )


def hva_event_rows(e: HvaEvent) -> dict[str, dict]:
    """The two rows one HVA event is written as (feed by day, and per account)."""
    common = {
        "network_name": e.network_name,
        "threshold": e.threshold,
        "stellar_account": e.stellar_account,
        "event_day": as_utc(e.event_time).date(),
        "event_time": as_utc(e.event_time),
        "event_type": e.event_type,
        "old_rank": e.old_rank,
        "new_rank": e.new_rank,
        "old_balance": e.old_balance,
        "new_balance": e.new_balance,
        "pct_change": e.pct_change,
    }
    return {"hva_changes_by_day": common, "hva_changes_by_account": dict(common)}


def stage_row(s: StageExecution) -> dict:
    return {f.name: getattr(s, f.name) for f in dataclasses.fields(s)}


def creation_event_row(e: CreationEvent) -> dict:
    return {f.name: getattr(e, f.name) for f in dataclasses.fields(e)}


def child_row(c: ChildEdge) -> dict:
    return {f.name: getattr(c, f.name) for f in dataclasses.fields(c)}


def merge_event_row(e: MergeEvent) -> dict:
    return {f.name: getattr(e, f.name) for f in dataclasses.fields(e)}
