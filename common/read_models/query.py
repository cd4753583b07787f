"""The query builder behind `/query`: ten presets and a whitelisted custom filter builder.

Strictly read-only and never string-built: a request names a whitelisted table, whitelisted
columns and operators, and typed values. Values are parsed into Python values (Decimal, int,
datetime, ...) and compared in memory against rows read by the Store's bounded `scan`, which only
ever receives a whitelisted table name, a validated network and a row cap. No value of a request
reaches the store as text, so there is nothing to inject into.

The scan cap adapts to the table: limit × 10 for dense tables (most rows are of interest) and
limit × 100 for sparse ones (the lineage table is mostly children known only by their creator).
The answer says how many rows were scanned and whether the cap cut the results short.
Presets that have an index read the index instead (active_work, the leaderboard, the HVA feed).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

from common.domain import ACTIVE_STATUSES, GENESIS_ACCOUNT, InvalidInput, as_utc, iso, parse_iso
from common.store.codec import column_types

OPERATORS = ("=", "!=", ">", "<", ">=", "<=", "contains")
LIMIT_MIN, LIMIT_MAX, LIMIT_DEFAULT = 50, 500, 100
DENSE_FACTOR, SPARSE_FACTOR = 10, 100
MAX_FILTERS = 10
MAX_FILTERS_CHARS = 4000
MAX_TEXT_VALUE = 256
CUSTOM_PARAMS = {"network", "table", "filters", "limit", "sort", "order"}
PRESET_PARAMS = {"network", "preset", "limit", "value"}


@dataclasses.dataclass(frozen=True)
class TableSpec:
    dense: bool
    columns: tuple[str, ...]


# Whitelisted tables and the columns a query may read, filter and sort on (network_name is
# enforced, never chosen; claim tokens, cursors and cached bodies are not exposed).
TABLES: dict[str, TableSpec] = {
    "account_lineage": TableSpec(
        False,
        (
            "stellar_account", "stellar_creator_account", "account_creation_date", "xlm_balance", "home_domain",
            "is_hva", "tags", "num_child_accounts", "children_complete", "status", "retry_count", "last_error",
            "pipeline_source", "last_pipeline_attempt", "processing_started_at", "enriched_at", "created_at",
            "updated_at", "toml_org_name", "toml_org_url", "toml_lists_account", "toml_error", "toml_checked_at",
            "directory_name",
        ),
    ),
    "search_cache": TableSpec(True, ("stellar_account", "status", "last_fetched_at", "retry_count", "last_error", "created_at", "updated_at")),
    "stage_executions": TableSpec(
        True, ("stellar_account", "started_at", "stage", "status", "finished_at", "duration_ms", "error_message", "pipeline_source")
    ),
    "creation_events": TableSpec(False, ("stellar_account", "created_at", "creator", "starting_balance", "source", "operation_id", "transaction_hash")),
    "account_children": TableSpec(False, ("creator", "child", "created_at", "starting_balance")),
    "hva_leaderboard": TableSpec(True, ("threshold", "rank", "stellar_account", "xlm_balance", "snapshot_at")),
    "hva_changes_by_day": TableSpec(
        True, ("threshold", "event_day", "event_time", "stellar_account", "event_type", "old_rank", "new_rank", "old_balance", "new_balance", "pct_change")
    ),
}

_ORDERED = ("=", "!=", ">", "<", ">=", "<=")
_OPS_BY_KIND = {"text": OPERATORS, "number": _ORDERED, "time": _ORDERED, "date": _ORDERED, "bool": ("=", "!="), "set": ("contains",)}


def _kind(table: str, column: str) -> str:
    ctype = column_types()[table][column]
    if ctype == "text":
        return "text"
    if ctype in ("int", "bigint", "decimal", "double"):
        return "number"
    if ctype == "timestamp":
        return "time"
    if ctype == "date":
        return "date"
    if ctype == "boolean":
        return "bool"
    return "set"


def _parse_value(table: str, column: str, op: str, raw: Any, field: str) -> Any:
    """A request value as the column's Python type (InvalidInput when it is not one)."""
    if raw is None:
        if op not in ("=", "!="):
            raise InvalidInput("invalid_value", f"{column}: null can only be compared with = or !=", field)
        return None
    kind = _kind(table, column)
    ctype = column_types()[table][column]
    bad = InvalidInput("invalid_value", f"{column} needs a {ctype} value", field)
    if kind in ("text", "set"):
        if not isinstance(raw, str) or len(raw) > MAX_TEXT_VALUE:
            raise InvalidInput("invalid_value", f"{column} needs a text value of at most {MAX_TEXT_VALUE} characters", field)
        return raw
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        if raw in ("true", "false"):
            return raw == "true"
        raise bad
    if kind == "number":
        if isinstance(raw, bool) or not isinstance(raw, (int, float, str)) or (isinstance(raw, str) and (len(raw) > 40 or not raw.isascii())):
            raise bad  # Decimal() also reads other scripts' digits ('١٢'): numbers are ASCII only
        try:
            value = Decimal(str(raw))
        except InvalidOperation:
            raise bad from None
        if not value.is_finite() or not -40 <= value.adjusted() <= 40:
            raise bad
        if ctype in ("int", "bigint") and value != value.to_integral_value():
            raise bad
        return value
    if not isinstance(raw, str) or len(raw) > 40:
        raise bad
    try:
        if kind == "time":
            return parse_iso(raw)
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise bad from None


@dataclasses.dataclass(frozen=True)
class Filter:
    column: str
    op: str
    value: Any

    def matches(self, row: dict) -> bool:
        actual = row.get(self.column)
        if self.value is None:  # IS NULL / IS NOT NULL
            return (actual is None) == (self.op == "=")
        if actual is None:
            return False  # SQL semantics: a missing value matches nothing
        if self.op == "contains":
            if isinstance(actual, (list, set, tuple)):
                return any(self.value.lower() == str(a).lower() for a in actual)
            return self.value.lower() in str(actual).lower()
        if isinstance(self.value, Decimal):
            actual = Decimal(str(actual))
        elif isinstance(self.value, dt.datetime):
            actual = as_utc(actual)
        return _COMPARE[self.op](actual, self.value)


@dataclasses.dataclass(frozen=True)
class OneOf:
    """Presets only: the column's value is one of a fixed set (an OR the custom builder does not offer)."""

    column: str
    values: tuple

    def matches(self, row: dict) -> bool:
        return row.get(self.column) in self.values


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
}


def parse_limit(raw: Any) -> int:
    if raw is None:
        return LIMIT_DEFAULT
    try:
        value = int(raw) if not isinstance(raw, bool) else None
    except (TypeError, ValueError):
        value = None
    if value is None or str(raw).strip() != str(value) or not LIMIT_MIN <= value <= LIMIT_MAX:
        raise InvalidInput("invalid_limit", f"limit must be an integer from {LIMIT_MIN} to {LIMIT_MAX}", "limit")
    return value


def parse_table(raw: Any) -> str:
    if raw not in TABLES:
        raise InvalidInput("invalid_table", f"table must be one of {', '.join(TABLES)}", "table")
    return raw


def parse_column(table: str, raw: Any, field: str) -> str:
    if raw not in TABLES[table].columns:
        raise InvalidInput("invalid_column", f"unknown column for {table}; columns: {', '.join(TABLES[table].columns)}", field)
    return raw


def parse_filters(table: str, raw: Any) -> list[Filter]:
    if raw is None:
        return []
    if isinstance(raw, str):
        if len(raw) > MAX_FILTERS_CHARS:
            raise InvalidInput("invalid_filters", f"filters must be at most {MAX_FILTERS_CHARS} characters", "filters")
        try:
            raw = json.loads(raw)
        except ValueError:
            raise InvalidInput("invalid_filters", 'filters must be a JSON array like [{"column":"status","op":"=","value":"FAILED"}]', "filters") from None
    if not isinstance(raw, list) or len(raw) > MAX_FILTERS:
        raise InvalidInput("invalid_filters", f"filters must be a JSON array of at most {MAX_FILTERS} objects", "filters")
    out = []
    for i, item in enumerate(raw):
        field = f"filters[{i}]"
        if not isinstance(item, dict) or set(item) != {"column", "op", "value"}:
            raise InvalidInput("invalid_filters", f"{field} must be an object with exactly column, op and value", field)
        column = parse_column(table, item["column"], f"{field}.column")
        op = item["op"]
        if op not in OPERATORS:
            raise InvalidInput("invalid_operator", f"{field}.op must be one of {' '.join(OPERATORS)}", f"{field}.op")
        kind = _kind(table, column)
        if item["value"] is not None and op not in _OPS_BY_KIND[kind]:
            raise InvalidInput("invalid_operator", f"{column} accepts {' '.join(_OPS_BY_KIND[kind])}", f"{field}.op")
        out.append(Filter(column, op, _parse_value(table, column, op, item["value"], f"{field}.value")))
    return out


def to_json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return iso(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (set, tuple)):
        return sorted(value)
    return value


def _project(row: dict, columns: tuple[str, ...]) -> dict:
    return {c: to_json_value(row.get(c)) for c in columns}


def _sort(rows: list[dict], column: str, descending: bool) -> list[dict]:
    present = [r for r in rows if r.get(column) is not None]
    missing = [r for r in rows if r.get(column) is None]
    present.sort(key=lambda r: _sort_key(r[column]), reverse=descending)
    return present + missing  # nulls last either way


def _sort_key(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return as_utc(value)
    if isinstance(value, (list, set, tuple)):
        return ",".join(sorted(map(str, value)))
    return value


def result(columns, rows, limit, scan_cap, scanned, cap_hit, **extra) -> dict[str, Any]:
    return {"columns": list(columns), "rows": rows, "limit": limit, "scan_cap": scan_cap, "scanned": scanned, "cap_hit": cap_hit, **extra}


def run_custom(store, network: str, params: dict[str, Any]) -> dict[str, Any]:
    unknown = set(params) - CUSTOM_PARAMS
    if unknown:
        raise InvalidInput("unknown_parameter", f"unknown parameter(s): {', '.join(sorted(unknown))}; the query builder is read-only")
    table = parse_table(params.get("table"))
    filters = parse_filters(table, params.get("filters"))
    limit = parse_limit(params.get("limit"))
    sort = params.get("sort")
    if sort is not None:
        sort = parse_column(table, sort, "sort")
    order = params.get("order", "asc")
    if order not in ("asc", "desc"):
        raise InvalidInput("invalid_order", "order must be asc or desc", "order")
    return scan_query(store, network, table, filters, limit, sort, order == "desc")


def scan_query(store, network: str, table: str, filters: list, limit: int, sort: str | None = None, descending: bool = False) -> dict[str, Any]:
    spec = TABLES[table]
    cap = limit * (DENSE_FACTOR if spec.dense else SPARSE_FACTOR)
    matched: list[dict] = []
    scanned = 0
    cap_hit = False
    for row in store.scan(table, network, cap + 1):
        if scanned == cap:
            cap_hit = True  # there was at least one more row the cap kept us from reading
            break
        scanned += 1
        if all(f.matches(row) for f in filters):
            matched.append(row)
            if sort is None and len(matched) == limit:
                break
    if sort:
        matched = _sort(matched, sort, descending)
    rows = [_project(r, spec.columns) for r in matched[:limit]]
    return result(spec.columns, rows, limit, cap, scanned, cap_hit, table=table)


# ------------------------------------------------------------------ presets
@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    description: str
    run: Callable[..., dict[str, Any]]
    value: str | None = None  # what `value` means for this preset, when it takes one


def _age_s(now: dt.datetime, when: dt.datetime | None) -> int | None:
    return None if when is None else max(0, int((now - as_utc(when)).total_seconds()))


def _active(store, network: str, now: dt.datetime, statuses: tuple[str, ...]) -> tuple[list[dict], int, int]:
    rows, bound, scanned = [], 0, 0
    for kind, table in (("cache", "cache"), ("lineage", "lineage")):
        items = store.list_active(kind, 10_000)
        bound += 10_000
        scanned += len(items)
        for r in items:
            if r["network_name"] == network and r["status"] in statuses:
                rows.append({"table": table, **r})
    return rows, bound, scanned


def _stuck(store, network, limit, now, config, value):
    proc_min = int(config["stale_processing_minutes"])
    pend_h = int(config["stale_pending_hours"])
    rows, bound, scanned = _active(store, network, now, ACTIVE_STATUSES)
    out = []
    for r in rows:
        age = _age_s(now, r.get("updated_at"))
        limit_s = proc_min * 60 if r["status"] == "PROCESSING" else pend_h * 3600
        if age is None or age > limit_s:
            out.append({"account": r["stellar_account"], "table": r["table"], "status": r["status"], "updated_at": iso(r.get("updated_at")), "age_s": age})
    out.sort(key=lambda r: -(r["age_s"] or 0))
    return result(("account", "table", "status", "updated_at", "age_s"), out[:limit], limit, bound, scanned, scanned >= bound)


def _processing(store, network, limit, now, config, value):
    proc_min = int(config["stale_processing_minutes"])
    rows, bound, scanned = _active(store, network, now, ("PROCESSING",))
    out = []
    for r in rows:
        age = _age_s(now, r.get("updated_at"))
        stale = age is None or age > proc_min * 60
        out.append({"flag": "[STALE]" if stale else "", "account": r["stellar_account"], "table": r["table"], "status": r["status"],
                    "updated_at": iso(r.get("updated_at")), "age_s": age, "stale": stale})
    out.sort(key=lambda r: -(r["age_s"] or 0))
    return result(("flag", "account", "table", "status", "updated_at", "age_s", "stale"), out[:limit], limit, bound, scanned, scanned >= bound)


def _orphans(store, network, limit, now, config, value):
    filters = [Filter("stellar_creator_account", "=", None), Filter("stellar_account", "!=", GENESIS_ACCOUNT)]
    return scan_query(store, network, "account_lineage", filters, limit)


def _failed_stages(store, network, limit, now, config, value):
    return scan_query(store, network, "stage_executions", [Filter("status", "=", "FAILED")], limit, "started_at", True)


def _recent_cache(store, network, limit, now, config, value):
    return scan_query(store, network, "search_cache", [], limit, "updated_at", True)


def _failed_lookups(store, network, limit, now, config, value):
    return scan_query(store, network, "search_cache", [OneOf("status", ("FAILED", "INVALID"))], limit, "updated_at", True)


def _by_home_domain(store, network, limit, now, config, value):
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("invalid_value", "accounts_by_home_domain needs value=<part of a home domain>", "value")
    value = _parse_value("account_lineage", "home_domain", "contains", value.strip(), "value")
    return scan_query(store, network, "account_lineage", [Filter("home_domain", "contains", value)], limit, "home_domain", False)


def _threshold_value(config, value, default: int) -> int:
    thresholds = sorted(int(t) for t in config.hva_thresholds)
    if value is None:
        return default
    text = str(value)
    t = int(text) if text.isascii() and text.isdigit() and len(text) <= 15 else None
    if t is None or t < thresholds[0]:
        raise InvalidInput("invalid_value", f"value must be an integer XLM amount of at least {thresholds[0]}", "value")
    return t


def _board_rows(store, network, threshold_for_read: int, minimum: int, limit: int, now):
    snapshot, entries = store.get_leaderboard_top(network, threshold_for_read, limit)
    entries = [e for e in entries if e.xlm_balance >= minimum]
    recs = store.get_lineages(network, [e.stellar_account for e in entries]) if entries else {}
    rows = []
    for e in entries:
        rec = recs.get(e.stellar_account)
        rows.append({"rank": e.rank, "account": e.stellar_account, "xlm_balance": format(e.xlm_balance, "f"),
                     "home_domain": rec.home_domain if rec else None, "snapshot_at": iso(snapshot)})
    return rows, len(entries)


def _high_balance(store, network, limit, now, config, value):
    thresholds = sorted(int(t) for t in config.hva_thresholds)
    minimum = _threshold_value(config, value, 1_000_000 if 1_000_000 >= thresholds[0] else thresholds[0])
    board = max(t for t in thresholds if t <= minimum)  # ranked by balance: its top rows are the answer
    rows, read = _board_rows(store, network, board, minimum, limit, now)
    return result(("rank", "account", "xlm_balance", "home_domain", "snapshot_at"), rows, limit, limit, read, False, min_xlm=minimum)


def _hva_accounts(store, network, limit, now, config, value):
    thresholds = sorted(int(t) for t in config.hva_thresholds)
    t = _threshold_value(config, value, thresholds[0])
    if t not in thresholds:
        raise InvalidInput("invalid_value", f"value must be one of the HVA thresholds {thresholds}", "value")
    rows, read = _board_rows(store, network, t, t, limit, now)
    return result(("rank", "account", "xlm_balance", "home_domain", "snapshot_at"), rows, limit, limit, read, False, threshold=t)


def _recent_hva(store, network, limit, now, config, value):
    events = []
    per = LIMIT_MAX
    for t in sorted(int(x) for x in config.hva_thresholds):
        events.extend(store.get_hva_events(network, t, now - dt.timedelta(hours=24), now, per))
    events.sort(key=lambda e: (as_utc(e.event_time), e.threshold, e.stellar_account), reverse=True)
    rows = [
        {"event_time": iso(e.event_time), "threshold": e.threshold, "event_type": e.event_type, "account": e.stellar_account,
         "old_rank": e.old_rank, "new_rank": e.new_rank, "old_balance": to_json_value(e.old_balance),
         "new_balance": to_json_value(e.new_balance), "pct_change": e.pct_change}
        for e in events[:limit]
    ]
    bound = per * len(config.hva_thresholds)
    cols = ("event_time", "threshold", "event_type", "account", "old_rank", "new_rank", "old_balance", "new_balance", "pct_change")
    return result(cols, rows, limit, bound, len(events), len(events) >= bound)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("stuck_accounts", "PROCESSING longer than stale_processing_minutes or PENDING longer than stale_pending_hours (cache and lineage)", _stuck),
        Preset("orphan_accounts", "Lineage rows with no known creator (other than genesis)", _orphans),
        Preset("failed_stages", "Stage executions that FAILED, newest first", _failed_stages),
        Preset("high_xlm_balance", "Accounts with at least `value` XLM (default 1,000,000), from the latest ranking", _high_balance, "minimum XLM balance"),
        Preset("recent_cache_entries", "Search cache entries, most recently updated first", _recent_cache),
        Preset("processing_accounts", "PROCESSING accounts in the cache and the lineage, [STALE] past stale_processing_minutes", _processing),
        Preset("hva_accounts", "The HVA ranking at threshold `value` (default the lowest threshold)", _hva_accounts, "HVA threshold"),
        Preset("accounts_by_home_domain", "Accounts whose home_domain contains `value`", _by_home_domain, "part of a home domain"),
        Preset("failed_lookups", "Searches that ended FAILED or INVALID, newest first", _failed_lookups),
        Preset("recent_hva_changes", "HVA standing changes of the last 24 h over every threshold, newest first", _recent_hva),
    )
}


def run_preset(store, network: str, params: dict[str, Any], now: dt.datetime, config) -> dict[str, Any]:
    unknown = set(params) - PRESET_PARAMS
    if unknown:
        raise InvalidInput("unknown_parameter", f"unknown parameter(s) for a preset: {', '.join(sorted(unknown))}")
    name = params.get("preset")
    if name not in PRESETS:
        raise InvalidInput("invalid_preset", f"preset must be one of {', '.join(PRESETS)}", "preset")
    preset = PRESETS[name]
    if preset.value is None and "value" in params:
        raise InvalidInput("invalid_value", f"preset {name} takes no value", "value")
    limit = parse_limit(params.get("limit"))
    out = preset.run(store, network, limit, as_utc(now), config, params.get("value"))
    out["preset"] = name
    return out


def catalogue() -> dict[str, Any]:
    """`/query` without a table or preset: what can be asked."""
    return {
        "presets": [{"name": p.name, "description": p.description, "value": p.value} for p in PRESETS.values()],
        "tables": {t: list(spec.columns) for t, spec in TABLES.items()},
        "operators": list(OPERATORS),
        "limit": {"min": LIMIT_MIN, "max": LIMIT_MAX, "default": LIMIT_DEFAULT},
    }
