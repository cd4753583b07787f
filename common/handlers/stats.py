"""stats (public, read-only): pipeline stats, pending accounts, stage executions, the lineage tree,
the HVA leaderboard and changes, the query builder, health, the network-wide Hubble sync and the
site's run-time config.

Every route is a bounded read: a fixed number of partitions or rows, whatever the table sizes.
Input is validated before the store is touched (400 with a code, a message and the field), an
unknown account is a 404, and a database schema behind the code is a 503 that names what is
missing (except on /health, which reports it). CORS is limited to settings.cors_origins.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any, Callable

from flask import Request, Response, stream_with_context

from common.config import ConfigError
from common.domain import NETWORKS, InvalidInput, as_utc, iso, validate_account_id, validate_network
from common.http import cors_headers, error_response, invalid_input_response, json_response, schema_unavailable, with_headers
from common.deps import StatsDeps

log = logging.getLogger(__name__)

MAX_PAGE = 1000
HVA_CHANGES_MAX_DAYS = 31


class NotFound(LookupError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


# ------------------------------------------------------------------ parameter helpers
def _network(params: dict, default: str | None = "public") -> str:
    """A parameter that is present is validated, even when empty (`network=` is a 400)."""
    raw = params.get("network", default)
    return validate_network(raw)


def _account(params: dict) -> str:
    """G… or M… (muxed → its G… account), else a specific 400 that never echoes the input."""
    from common.addresses import normalize_account_input

    return normalize_account_input(params.get("account"))


_INTEGER = re.compile(r"-?[0-9]{1,11}", re.ASCII)  # not isdigit(): it takes '²' and '١', which int() refuses or reads


def _int(params: dict, name: str, default: int, lo: int, hi: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    text = str(raw).strip()
    if not _INTEGER.fullmatch(text):
        raise InvalidInput(f"invalid_{name}", f"{name} must be an integer from {lo} to {hi}", name)
    value = int(text)
    if not lo <= value <= hi:
        raise InvalidInput(f"invalid_{name}", f"{name} must be an integer from {lo} to {hi}", name)
    return value


def _flag(params: dict, name: str) -> bool:
    raw = params.get(name)
    if raw in (None, "0", "false"):
        return False
    if raw in ("1", "true"):
        return True
    raise InvalidInput(f"invalid_{name}", f"{name} must be 0 or 1", name)


def _threshold(params: dict, config) -> int:
    thresholds = sorted(int(t) for t in config.hva_thresholds)
    raw = params.get("threshold")
    if raw is None:
        return thresholds[0]
    text = str(raw).strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 15 or int(text) not in thresholds:
        raise InvalidInput("invalid_threshold", f"threshold must be one of {', '.join(str(t) for t in thresholds)} (XLM)", "threshold")
    return int(text)


_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))?$", re.ASCII
)


def parse_since(text: str) -> dt.datetime:
    """An RFC 3339 / ISO-8601 time (no offset means UTC; a leap second counts as :59)."""
    m = _RFC3339.match(text.strip()) if len(text) <= 40 else None
    bad = InvalidInput("invalid_since", "since must be an ISO-8601 time such as 2026-01-01T00:00:00Z", "since")
    if not m:
        raise bad
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    micro = int((m.group(7) or "0")[:6].ljust(6, "0"))
    try:
        tz = dt.timezone.utc
        if m.group(9):
            offset = dt.timedelta(hours=int(m.group(10)), minutes=int(m.group(11)))
            tz = dt.timezone(offset if m.group(9) == "+" else -offset)
        if year < 1970:  # older than the 31 days served anyway: the floor applies
            dt.date(max(year, 1), month, day)  # still a real calendar date, or a 400
            return dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
        value = dt.datetime(year, month, day, hour, minute, min(second, 59), micro, tzinfo=tz)
        return as_utc(value.astimezone(dt.timezone.utc))
    except (ValueError, OverflowError):
        raise bad from None


# ------------------------------------------------------------------ routes
def pipeline_stats(c: StatsDeps, params: dict, now: dt.datetime) -> Response:
    from common.read_models.counters import pipeline_stats as stats_body

    networks = [_network(params)] if "network" in params else list(NETWORKS)
    body = stats_body(c.store, now, networks)
    body["networks"] = networks
    return json_response(body)


def pending_accounts(c: StatsDeps, params: dict, now: dt.datetime) -> Response:
    """PENDING, PROCESSING and RE_INQUIRY across the cache and the lineage: exactly 2 partition reads."""
    network = _network(params) if "network" in params else None
    limit = _int(params, "limit", 1000, 1, 10_000)
    stale_after = dt.timedelta(minutes=int(c.pipeline_config()["stale_processing_minutes"]))
    accounts, truncated = [], False
    for kind in ("cache", "lineage"):
        rows = c.store.list_active(kind, limit)
        truncated = truncated or len(rows) >= limit
        for r in rows:
            if network and r["network_name"] != network:
                continue
            updated = as_utc(r.get("updated_at")) if r.get("updated_at") else None
            age = max(0, int((now - updated).total_seconds())) if updated else None
            accounts.append(
                {
                    "account": r["stellar_account"],
                    "network": r["network_name"],
                    "table": kind,
                    "status": r["status"],
                    "updated_at": iso(updated),
                    "age_s": age,
                    "stale": updated is None or now - updated > stale_after,
                }
            )
    accounts.sort(key=lambda a: (-(a["age_s"] if a["age_s"] is not None else 10**12), a["table"], a["account"]))
    return json_response({"timestamp": iso(now), "accounts": accounts, "truncated": truncated, "stale_after_s": int(stale_after.total_seconds())})


def _stage_json(s) -> dict[str, Any]:
    return {
        "stage": s.stage,
        "status": s.status,
        "started_at": iso(s.started_at),
        "finished_at": iso(s.finished_at),
        "duration_ms": s.duration_ms,
        "error": s.error_message,
        "pipeline_source": s.pipeline_source,
    }


def stage_executions(c: StatsDeps, params: dict, now: dt.datetime) -> Response:
    network, account = _network(params), _account(params)
    limit = _int(params, "limit", 100, 1, MAX_PAGE)
    stages = c.store.get_stage_executions(network, account, limit)
    rec = c.store.get_lineage(network, account)
    status = rec.status if rec else None
    if rec is None:
        entry = c.store.get_search(network, account)
        status = entry.status if entry else None
        if entry is None and not stages:
            raise NotFound("account_not_found", f"account {account} is not known on {network}")
    return json_response({"account": account, "network": network, "status": status, "stages": [_stage_json(s) for s in stages]})


def account_lineage(c: StatsDeps, params: dict, now: dt.datetime) -> Response:
    from common.export import FORMATS, ExportNotFound, export_lineage
    from common.lineage_view import lineage_view

    network, account = _network(params), _account(params)
    fmt = params.get("format")  # absent: the paged d3 body; json|csv|graphml: the whole lineage, streamed
    if fmt is not None and fmt not in FORMATS:
        raise InvalidInput("invalid_format", f"format must be one of {', '.join(FORMATS)}", "format")
    limit = _int(params, "limit", 100, 1, MAX_PAGE)
    cursor = params.get("cursor")
    if cursor is not None:
        validate_account_id(cursor, "cursor")
    siblings = _flag(params, "siblings")
    siblings_cursor = params.get("siblings_cursor")
    if siblings_cursor is not None:
        validate_account_id(siblings_cursor, "siblings_cursor")
    if fmt is not None:
        try:
            chunks = export_lineage(c.store, network, account, fmt)
        except ExportNotFound:
            raise NotFound("account_not_found", f"account {account} is not known on {network}") from None
        resp = Response(stream_with_context(chunks), mimetype=FORMATS[fmt].split(";")[0])
        resp.headers["Content-Type"] = FORMATS[fmt]
        resp.headers["Content-Disposition"] = f'attachment; filename="lineage-{network}-{account}.{fmt}"'
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp
    body = lineage_view(c.store, network, account, cursor=cursor, limit=limit, siblings=siblings, siblings_cursor=siblings_cursor)
    if body is None:
        raise NotFound("account_not_found", f"account {account} is not known on {network}: search it first")
    return json_response(body)


def hva_leaderboard(c: StatsDeps, params: dict, now: dt.datetime) -> Response:
    from common.hva import badges

    config = c.pipeline_config()
    network = _network(params)
    threshold = _threshold(params, config)
    limit = _int(params, "limit", 100, 1, MAX_PAGE)
    snapshot_at, entries = c.store.get_leaderboard_top(network, threshold, limit)
    events = c.store.get_hva_events(network, threshold, now - dt.timedelta(hours=24), now, 10_000)
    marks = badges(entries, events)
    recs = c.store.get_lineages(network, [e.stellar_account for e in entries]) if entries else {}
    rows = []
    for e in entries:
        rec = recs.get(e.stellar_account)
        rows.append(
            {
                "rank": e.rank,
                "account": e.stellar_account,
                "xlm_balance": format(e.xlm_balance, "f"),
                "home_domain": rec.home_domain if rec else None,
                "badge": marks.get(e.stellar_account),
            }
        )
    return json_response(
        {
            "network": network,
            "threshold": threshold,
            "thresholds": sorted(int(t) for t in config.hva_thresholds),
            "snapshot_at": iso(snapshot_at),
            "entries": rows,
        }
    )


def hva_changes(c: StatsDeps, params: dict, now: dt.datetime) -> Response:
    config = c.pipeline_config()
    network = _network(params)
    threshold = _threshold(params, config)
    limit = _int(params, "limit", 1000, 1, 10_000)
    raw = params.get("since")
    since = now - dt.timedelta(hours=24) if raw is None else parse_since(str(raw))
    # The feed is one partition per day: at most HVA_CHANGES_MAX_DAYS of them are read.
    since = max(since, now - dt.timedelta(days=HVA_CHANGES_MAX_DAYS))
    if since > now:
        return json_response({"network": network, "threshold": threshold, "since": iso(since), "events": []})
    events = c.store.get_hva_events(network, threshold, since, now, limit)
    return json_response(
        {
            "network": network,
            "threshold": threshold,
            "since": iso(since),
            "events": [
                {
                    "event_type": e.event_type,
                    "account": e.stellar_account,
                    "old_rank": e.old_rank,
                    "new_rank": e.new_rank,
                    "old_balance": format(e.old_balance, "f") if e.old_balance is not None else None,
                    "new_balance": format(e.new_balance, "f") if e.new_balance is not None else None,
                    "pct_change": e.pct_change,
                    "event_time": iso(e.event_time),
                }
                for e in events
            ],
        }
    )


def query(c: StatsDeps, params: dict, now: dt.datetime) -> Response:
    from common.read_models import query as qb

    if "table" not in params and "preset" not in params:
        unknown = set(params) - {"network"}
        if unknown:
            raise InvalidInput("unknown_parameter", f"unknown parameter(s): {', '.join(sorted(unknown))}; give a preset or a table")
        _network(params)
        return json_response(qb.catalogue())
    if "table" in params and "preset" in params:
        raise InvalidInput("invalid_query", "give either a preset or a table, not both", "preset")
    network = _network(params)
    if "preset" in params:
        return json_response(qb.run_preset(c.store, network, params, now, c.pipeline_config()))
    return json_response(qb.run_custom(c.store, network, params))


def health(c: StatsDeps, params: dict, now: dt.datetime) -> Response:
    from common.read_models.health import health as health_body

    return json_response(health_body(c, now))


def config(c: StatsDeps, params: dict, now: dt.datetime) -> Response:
    from common.read_models.query import LIMIT_DEFAULT, LIMIT_MAX, LIMIT_MIN

    cfg = c.pipeline_config()
    return json_response(
        {
            "hva_thresholds": sorted(int(t) for t in cfg.hva_thresholds),
            "networks": list(NETWORKS),
            "cache_ttl_hours": cfg["cache_ttl_hours"],
            "hva_rank_change_min": cfg["hva_rank_change_min"],
            "stale_processing_minutes": cfg["stale_processing_minutes"],
            "max_page_size": MAX_PAGE,
            "query_limit": {"min": LIMIT_MIN, "max": LIMIT_MAX, "default": LIMIT_DEFAULT},
        }
    )


def sync(c: StatsDeps, params: dict, now: dt.datetime) -> Response:
    """The network's Hubble sync (one single-row read); NEVER_SYNCED when it never ran."""
    from common.read_models.sync import sync_body

    network = _network(params)
    return json_response({**sync_body(network, c.store.get_sync_state(network)), "timestamp": iso(now)})


ROUTES: dict[str, Callable[[Any, dict, dt.datetime], Response]] = {
    "/pipeline-stats": pipeline_stats,
    "/pending-accounts": pending_accounts,
    "/stage-executions": stage_executions,
    "/account-lineage": account_lineage,
    "/hva-leaderboard": hva_leaderboard,
    "/hva-changes": hva_changes,
    "/query": query,
    "/health": health,
    "/config": config,
    "/sync": sync,
}
UNGATED = {"/health"}  # reports the schema instead of refusing


def route_of(path: str) -> str:
    path = "/" + (path or "/").strip("/")
    if path.startswith("/stats/"):
        path = path[len("/stats") :]
    return path


def handle(request: Request, c: StatsDeps) -> Response:
    cors = cors_headers(request, tuple(c.settings.cors_origins))
    return with_headers(_dispatch(request, c), cors)


def _limited(refusal) -> Response:
    return error_response("rate_limited", refusal.message, 429, headers={"Retry-After": str(refusal.retry_after_s)},
                          details={"limit": refusal.limit})


def _dispatch(request: Request, c: StatsDeps) -> Response:
    path = route_of(request.path)
    if request.method == "OPTIONS":
        return Response(status=204)
    try:
        limits = c.stats_limits
    except ConfigError as exc:
        return error_response("misconfigured", str(exc), 503, headers={"Retry-After": "300"})
    who = limits.client(request.remote_addr, request.headers.get("X-Forwarded-For"))
    refused = limits.admit(who, c.clock.monotonic())
    if refused is not None:
        return _limited(refused)
    if path == "/account-lineage" and request.method in ("GET", "HEAD") and "format" in request.args:
        return _export(request, c, limits, who)
    return _route(request, c, path)


def _export(request: Request, c: StatsDeps, limits, who: str) -> Response:
    """An export holds one of the client's and the instance's export slots until its stream ends."""
    started = limits.start_export(who, c.clock.monotonic())
    if not callable(started):
        return _limited(started)
    try:
        resp = _route(request, c, "/account-lineage")
    except BaseException:
        started()
        raise
    if resp.status_code == 200 and resp.is_streamed:
        resp.call_on_close(started)  # the WSGI server closes the response when the stream ends or the client leaves
    else:
        started()
    return resp


def _route(request: Request, c: StatsDeps, path: str) -> Response:
    fn = ROUTES.get(path)
    if fn is None:
        return error_response("not_found", f"no such route {path[:100]!r}; routes: {', '.join(ROUTES)}", 404)
    if request.method not in ("GET", "HEAD"):
        # Read-only: a write method is refused before anything else is looked at (405 + Allow,
        # RFC 9110). Anything in a GET /query that is not a whitelisted read is a 400 (query.py).
        return error_response("method_not_allowed", "stats is read-only: use GET", 405, headers={"Allow": "GET, HEAD, OPTIONS"})
    params = {k: v for k, v in request.args.items()}
    for k in request.args:
        if len(request.args.getlist(k)) > 1:
            return error_response("invalid_parameter", f"parameter {k[:40]!r} is given more than once", 400, k[:40])
    try:
        if path not in UNGATED:
            behind = c.schema_gate.check()
            if behind is not None:
                return schema_unavailable(behind)
        now = as_utc(c.clock.now())
        return fn(c, params, now)
    except InvalidInput as exc:
        return invalid_input_response(exc)
    except NotFound as exc:
        return error_response(exc.code, exc.message, 404)
    except Exception as exc:  # noqa: BLE001 - the store is down or timed out: retryable, JSON
        log.exception("stats %s failed", path)
        return error_response("unavailable", f"the store did not answer: {type(exc).__name__}", 503, headers={"Retry-After": "5"})
