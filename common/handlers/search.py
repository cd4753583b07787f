"""search (public): answer from the store, or mark the account PENDING and queue it once.

GET|POST `/` or `/search` with `account` (G…, or M… for its G… account) and `network`
(`public` | `testnet`, default public); a POST may carry them as a JSON object. In order:

1. CORS (only settings.cors_origins; OPTIONS answers the preflight), the per-client rate limit
   (429 rate_limited + Retry-After: common/ratelimit_clients.py), method and path;
2. validation before the store is touched: a 400 {"error": {code, message, field}} says what is
   wrong (a secret seed, a contract id, a bad checksum, too long, empty) and never echoes the
   input; nothing is written;
3. a fresh COMPLETE search-cache row (last_fetched_at within cache_ttl_hours) with its rendered
   answer (cached_json, re-rendered at most every SEARCH_RENDER_MAX_AGE_S) is served with one read;
4. a fresh COMPLETE lineage row is rendered with common/lineage_view.py, stored in the search
   cache, and served (200);
5. INVALID: 404 account_not_found; FAILED: 409 lineage_failed with the last error;
6. otherwise the search-cache row becomes PENDING (inserted if absent, or from a stale state)
   and pipeline.request_lineage makes the lineage row PENDING (or RE_INQUIRY when a COMPLETE one
   is stale) and enqueues one `lineage` task with a deterministic name: any number of identical
   concurrent searches create one task. 202 {status, stages, poll_after_s}.

A store that cannot be reached is a 503 store_unavailable; a queue that refuses is a 503
queue_unavailable (the rows stay PENDING: the next search, or reset_stale, enqueues it).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from flask import Request, Response

from common import pipeline
from common.addresses import normalize_account_input
from common.config import ConfigError, ascii_number_text
from common.domain import InvalidInput, Status, as_utc, iso, validate_network
from common.http import JSON_TYPE, cors_headers, error_response, invalid_input_response, json_response, request_params, schema_unavailable, with_headers
from common.ratelimit_clients import client_id, trusted_hops
from common.deps import SearchDeps

log = logging.getLogger(__name__)

PATHS = ("/", "/search")
ALLOWED_METHODS = "GET, HEAD, POST, OPTIONS"
MAX_BODY_BYTES = 16_384
STAGES_LIMIT = 100
WAITING = (Status.PENDING.value, Status.PROCESSING.value, Status.RE_INQUIRY.value)
DEFAULT_POLL_AFTER_S = 3
DEFAULT_RENDER_MAX_AGE_S = 60


class _Unavailable(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def options_from_settings(settings) -> dict[str, Any]:
    """SEARCH_POLL_AFTER_S, SEARCH_RENDER_MAX_AGE_S and the trusted proxy hops (built once, in bootstrap)."""
    out = {}
    for name, default in (("SEARCH_POLL_AFTER_S", DEFAULT_POLL_AFTER_S), ("SEARCH_RENDER_MAX_AGE_S", DEFAULT_RENDER_MAX_AGE_S)):
        raw = settings.optional(name, default)
        try:
            out[name] = max(0, int(ascii_number_text(raw)))
        except (TypeError, ValueError):
            raise ConfigError(name, f"must be a whole number of seconds, got {raw!r}") from None
    out["hops"] = trusted_hops(settings)
    return out


def _is_store_error(exc: BaseException) -> bool:
    return isinstance(exc, (ConnectionError, TimeoutError))  # StoreUnavailable is a ConnectionError


# ---------------------------------------------------------------------------------- HTTP
def handle(request: Request, c: SearchDeps) -> Response:
    cors = cors_headers(request, c.settings.cors_origins)
    try:
        resp = _handle(request, c)
    except InvalidInput as exc:
        resp = invalid_input_response(exc)
    except _Unavailable as exc:
        resp = error_response(exc.code, exc.message, 503, headers={"Retry-After": "5"})
    except Exception as exc:  # noqa: BLE001 - always a JSON answer; the input is never logged
        if _is_store_error(exc):
            log.warning("search: store unavailable: %s: %s", type(exc).__name__, exc)
            resp = error_response("store_unavailable", "the database cannot be reached right now; try again shortly", 503, headers={"Retry-After": "5"})
        else:
            log.exception("search failed")
            resp = error_response("internal_error", "search failed unexpectedly; try again shortly", 500)
    return with_headers(resp, cors)


def _handle(request: Request, c: SearchDeps) -> Response:
    if request.method == "OPTIONS":
        resp = Response(status=204)
        resp.headers["Allow"] = ALLOWED_METHODS
        return resp
    opts = c.search_options
    who = client_id(request.remote_addr, request.headers.get("X-Forwarded-For"), opts["hops"])
    allowed, retry_after = c.search_rate_limiter.check(who, c.clock.monotonic())
    if not allowed:
        return error_response(
            "rate_limited",
            f"too many searches from your address; try again in {retry_after} s",
            429,
            headers={"Retry-After": str(retry_after)},
        )
    if request.method not in ("GET", "HEAD", "POST"):
        return error_response("method_not_allowed", "use GET or POST", 405, headers={"Allow": ALLOWED_METHODS})
    if request.path.rstrip("/") not in ("", "/search"):
        return error_response("not_found", "no such route: search answers on / and /search", 404)
    params = request_params(request, MAX_BODY_BYTES)
    account = normalize_account_input(params.get("account"))
    network = validate_network(params.get("network", "public"))
    behind = c.schema_gate.check()
    if behind is not None:
        return schema_unavailable(behind)
    return search(c, network, account, opts)


# ---------------------------------------------------------------------------------- the flow
def search(c: SearchDeps, network: str, account: str, opts: dict[str, Any] | None = None) -> Response:
    opts = opts or c.search_options
    store = c.store
    now = as_utc(c.clock.now())
    ttl = dt.timedelta(hours=float(c.pipeline_config()["cache_ttl_hours"]))
    entry = store.get_search(network, account)
    if entry is not None and entry.status == Status.COMPLETE.value and entry.last_fetched_at and now - entry.last_fetched_at <= ttl:
        max_age = dt.timedelta(seconds=opts["SEARCH_RENDER_MAX_AGE_S"])
        if entry.cached_json and entry.updated_at and now - entry.updated_at <= max_age:
            return _raw_json(entry.cached_json)  # the hot path: one read
        rec = store.get_lineage(network, account)
        if rec is not None and rec.status == Status.COMPLETE.value:
            return _complete(c, network, account, rec, entry, now)
    else:
        rec = store.get_lineage(network, account)
    if rec is not None and rec.status == Status.COMPLETE.value and not pipeline.is_stale(rec, now, ttl.total_seconds() / 3600):
        return _complete(c, network, account, rec, entry, now)
    if rec is not None and rec.status in (Status.INVALID.value, Status.FAILED.value):
        return _terminal(c, network, account, rec, entry, now)
    _search_pending(store, network, account, entry, now)
    try:
        created = pipeline.request_lineage(c, network, account, now)
    except Exception as exc:
        if _is_store_error(exc):
            raise
        log.error("search: could not enqueue %s/%s: %s: %s", network, account, type(exc).__name__, exc)
        raise _Unavailable("queue_unavailable", "the account is saved but could not be queued right now; search again shortly") from exc
    if created:
        log.info("search: queued %s/%s", network, account)
    rec = store.get_lineage(network, account)
    if rec is not None and rec.status == Status.COMPLETE.value and not pipeline.is_stale(rec, now, ttl.total_seconds() / 3600):
        return _complete(c, network, account, rec, store.get_search(network, account), now)  # finished meanwhile
    status = rec.status if rec is not None and rec.status in WAITING else Status.PENDING.value
    stages = store.get_stage_executions(network, account, STAGES_LIMIT)
    poll = 2 if status == Status.PROCESSING.value else opts["SEARCH_POLL_AFTER_S"]
    return json_response(
        {"status": status, "account": account, "network": network, "stages": [stage_json(s) for s in stages], "poll_after_s": poll},
        202,
    )


def stage_json(s) -> dict[str, Any]:
    return {
        "stage": s.stage,
        "status": s.status,
        "started_at": iso(s.started_at),
        "finished_at": iso(s.finished_at),
        "duration_ms": s.duration_ms,
        "error": s.error_message,
        "pipeline_source": s.pipeline_source,
    }


def _raw_json(text: str, status: int = 200) -> Response:
    """An already-serialised JSON body, with the headers json_response sets."""
    resp = Response(text, status=status, mimetype=JSON_TYPE)
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


def _complete(c: SearchDeps, network: str, account: str, rec, entry, now: dt.datetime) -> Response:
    from common.lineage_view import lineage_view

    store = c.store
    view = lineage_view(store, network, account)
    body = {"status": Status.COMPLETE.value, "account": account, "network": network, "lineage": view, "cached_at": iso(now)}
    text = json.dumps(body, ensure_ascii=False, default=str, separators=(",", ":"))
    fetched = rec.last_pipeline_attempt or rec.updated_at or now
    fields = {"cached_json": text, "last_fetched_at": fetched, "updated_at": now, "last_error": None}
    if entry is None:
        if store.transition_search(network, account, None, Status.COMPLETE.value, created_at=now, retry_count=0, **fields):
            return _raw_json(text)
    store.put_search(network, account, status=Status.COMPLETE.value, **fields)
    return _raw_json(text)


def _terminal(c: SearchDeps, network: str, account: str, rec, entry, now: dt.datetime) -> Response:
    """INVALID: 404 account_not_found. FAILED: 409 lineage_failed with the last error."""
    if entry is None or entry.status != rec.status:
        c.store.put_search(network, account, status=rec.status, last_error=rec.last_error, updated_at=now, cached_json=None)
    when = iso(rec.last_pipeline_attempt or rec.updated_at)
    if rec.status == Status.INVALID.value:
        return error_response(
            "account_not_found",
            f"account {account} does not exist on the {network} network",
            404,
            "account",
            details={"status": rec.status, "checked_at": when},
        )
    reason = (rec.last_error or "no reason recorded")[:500]
    return error_response(
        "lineage_failed",
        f"StellarMap could not build the lineage of {account} on {network}: {reason[:300]}",
        409,
        "account",
        details={"status": rec.status, "last_error": reason, "failed_at": when, "retry_count": rec.retry_count or 0},
    )


def _search_pending(store, network: str, account: str, entry, now: dt.datetime) -> None:
    """The search-cache row becomes PENDING: inserted if absent, else moved from whatever it was."""
    if entry is None:
        if store.transition_search(network, account, None, Status.PENDING.value, created_at=now, updated_at=now, retry_count=0):
            return
        entry = store.get_search(network, account)
        if entry is None:
            return
    if entry.status != Status.PENDING.value:
        store.transition_search(network, account, (entry.status,), Status.PENDING.value, updated_at=now, cached_json=None)
