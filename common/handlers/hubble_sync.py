"""hubble_sync (internal; the hubble-sync queue): the network-wide Hubble sync (docs/design.md,
"The network-wide Hubble sync"). Three bodies:

- plan `{"network", "mode": "full"|"daily", "since"?, "dry_run"?}`: [since or the network's start,
  now) (daily: from `synced_through` minus a day) cut into closed_at ranges of
  HUBBLE_SYNC_RANGE_DAYS days; every range query (and, for a full sync, the accounts_current read)
  is dry-run; above HUBBLE_SYNC_BUDGET_USD: 409 `sync_over_budget`, nothing written. Otherwise
  the ranges are recorded and one task per range is enqueued (name from network + sync + range: a
  re-plan never doubles one). A sync still RUNNING in the same mode from the same start is resumed:
  its done ranges stay done.
- range `{"network", "sync_id", "start", "end"}`: one pruned query, read page by page into the
  bulk write path (creation events, children, earliest creator) plus its merges; the lives
  columns (deleted, merged_at, merged_into) of the accounts whose lives changed are recomputed
  from every stored creation and merge. Then the range is DONE (a done range answers SKIPPED).
  The last range of a full sync enqueues the accounts task; of a daily sync, ends it.
- accounts `{"network", "sync_id", "accounts_current": true, "after"?}`: accounts_current read page
  by page into Store.bulk_put_account_states; each page's progress is kept in the sync state, so a
  retry resumes after the last page written; a task near its time budget continues in a new task.

Every query goes through the cost guard (dry run, reservation, spend ledger, purpose `sync`) with
the sync's own limits: a query may cost up to HUBBLE_SYNC_BUDGET_USD, and the month's ledger may
exceed `monthly_budget_usd` by that much (the sync never eats the per-account budget).
Everything is idempotent: a range or a page written twice writes the same rows.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from decimal import Decimal

from flask import Request

from common.config import ConfigError, bounded_number
from common.deps import HubbleSyncDeps
from common.domain import InvalidInput, MergeEvent, iso, life_fields, parse_iso, validate_network
from common.http import error_response, internal_post_only, invalid_input_response, json_response, request_params, schema_gate_response
from common.hubble import sync as plan_sql
from common.hubble.cost_guard import MICRO, CostGuard, GuardRefused, Limits, billable_bytes
from common.hubble.port import HubbleError
from common.queue.port import SYNC_QUEUE
from common.store.bulk import BulkRowRefused

log = logging.getLogger(__name__)

PAGE_ROWS = 10_000  # rows read per page of a result (HUBBLE_SYNC_PAGE_ROWS): memory is one page (two bulk chunks)
BATCH_READ = 1000  # Store.get_lineages limit
TASK_SECONDS = 480  # an accounts task continues in a new task after this (Cloud Functions' 540 s limit)
DEFAULT_BUDGET_USD = Decimal(5)
PLAN_KEYS = {"network", "mode", "since", "dry_run"}
RANGE_KEYS = {"network", "sync_id", "start", "end"}
ACCOUNTS_KEYS = {"network", "sync_id", "accounts_current", "after"}


class SyncRefused(Exception):
    """A plan the handler will not carry out: an HTTP status and a machine-readable code."""

    def __init__(self, code: str, message: str, status: int = 409, details: dict | None = None):
        super().__init__(message)
        self.code, self.message, self.status, self.details = code, message, status, details


@dataclasses.dataclass(frozen=True)
class SyncSettings:
    range_days: int
    budget_usd: Decimal
    page_rows: int = PAGE_ROWS

    @classmethod
    def from_settings(cls, settings) -> "SyncSettings":
        days = bounded_number("HUBBLE_SYNC_RANGE_DAYS", settings.optional("HUBBLE_SYNC_RANGE_DAYS", plan_sql.DEFAULT_RANGE_DAYS),
                              1, plan_sql.MAX_RANGE_DAYS, int)
        budget = bounded_number("HUBBLE_SYNC_BUDGET_USD", settings.optional("HUBBLE_SYNC_BUDGET_USD", str(DEFAULT_BUDGET_USD)),
                                0, 1_000_000, Decimal)
        page_rows = bounded_number("HUBBLE_SYNC_PAGE_ROWS", settings.optional("HUBBLE_SYNC_PAGE_ROWS", PAGE_ROWS), 100, 100_000, int)
        return cls(days, budget, page_rows)


# ---------------------------------------------------------------------------------- HTTP
def handle(request: Request, c: HubbleSyncDeps) -> object:
    refused = internal_post_only(request, c.settings.internal_token,
                                 'use POST {"network", "mode"} (plan), {"network", "sync_id", "start", "end"} (range) '
                                 'or {"network", "sync_id", "accounts_current": true} (accounts)') \
        or schema_gate_response(c.schema_gate)
    if refused is not None:
        return refused
    try:
        body = request_params(request)
        kind = task_kind(body)
        if kind == "plan":
            network, mode, since, dry_run = parse_plan(body)
            return json_response(plan(c, network, mode, since, dry_run))
        if kind == "range":
            network, sync_id, start, end = parse_range(body)
            answer = run_range(c, network, sync_id, start, end)
        else:
            network, sync_id, after = parse_accounts(body)
            answer = load_accounts(c, network, sync_id, after)
    except InvalidInput as exc:
        return invalid_input_response(exc)
    except SyncRefused as exc:
        return error_response(exc.code, exc.message, exc.status, details=exc.details)
    except ConfigError as exc:
        return error_response("sync_misconfigured", str(exc), 500)
    except Exception as exc:  # noqa: BLE001 - our store or queue failed: the task is retried, nothing is lost
        log.warning("hubble_sync: %s: %s", type(exc).__name__, exc, exc_info=True)
        return error_response("retry_later", f"the store or the queue failed: {type(exc).__name__}", 503, headers={"Retry-After": "30"})
    if answer.get("status") == "RETRY":
        return error_response("retry_later", answer.get("reason") or "transient failure", 503, headers={"Retry-After": "30"}, details=answer)
    return json_response(answer)


def task_kind(body: dict) -> str:
    if not isinstance(body, dict):
        raise InvalidInput("invalid_body", "the body must be a JSON object")
    if body.get("accounts_current") is True:
        return "accounts"
    if "start" in body or "end" in body:
        return "range"
    if "sync_id" in body:
        raise InvalidInput("invalid_body", "a sync task is a range (start, end) or the accounts load (accounts_current: true)", "sync_id")
    return "plan"


def _only(body: dict, allowed: set) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInput("invalid_body", f"unknown field(s): {', '.join(unknown)[:200]}", unknown[0][:64])


def parse_plan(body: dict) -> tuple[str, str, dt.date | None, bool]:
    _only(body, PLAN_KEYS)
    network = validate_network(body.get("network"))
    mode = body.get("mode", "full")
    if mode not in ("full", "daily"):
        raise InvalidInput("invalid_mode", "mode must be full or daily", "mode")
    since = plan_sql.parse_since(body.get("since"))
    if since is not None and mode == "daily":
        raise InvalidInput("invalid_since", "a daily sync starts from the last sync: since is for a full sync", "since")
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise InvalidInput("invalid_dry_run", "dry_run must be true or false", "dry_run")
    return network, mode, since, dry_run


def _sync_id(body: dict) -> str:
    sync_id = body.get("sync_id")
    if not isinstance(sync_id, str) or not sync_id or len(sync_id) > 63:
        raise InvalidInput("invalid_sync_id", "sync_id is required (as the plan named it)", "sync_id")
    return sync_id


def _instant(body: dict, field: str) -> dt.datetime:
    value = body.get(field)
    try:
        parsed = parse_iso(value) if isinstance(value, str) and "T" in value else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise InvalidInput("invalid_range", f"{field} must be an ISO-8601 instant (e.g. 2020-01-01T00:00:00Z)", field)
    return parsed


def parse_range(body: dict) -> tuple[str, str, dt.datetime, dt.datetime]:
    _only(body, RANGE_KEYS)
    network = validate_network(body.get("network"))
    start, end = _instant(body, "start"), _instant(body, "end")
    if not start < end:
        raise InvalidInput("invalid_range", "start must be before end", "end")
    return network, _sync_id(body), start, end


def parse_accounts(body: dict) -> tuple[str, str, str | None]:
    _only(body, ACCOUNTS_KEYS)
    network = validate_network(body.get("network"))
    after = body.get("after")
    if after is not None:
        from common.domain import validate_account_id

        validate_account_id(after, "after")
    return network, _sync_id(body), after


# ---------------------------------------------------------------------------------- the guard
def sync_guard(c: HubbleSyncDeps) -> CostGuard:
    """A cost guard with the sync's limits: one query may cost the whole sync budget, and the month
    may go that far past the per-account budget."""
    hubble = c.hubble
    if hubble is None:
        raise SyncRefused("hubble_disabled", "HUBBLE_ENGINE is none: there is no Hubble to sync from", 409)
    budget = SyncSettings.from_settings(c.settings).budget_usd
    base = Limits.from_config(c.pipeline_config())
    limits = Limits(cost_limit_usd=budget, size_limit_bytes=2**62, price_per_tib_usd=base.price_per_tib_usd,
                    monthly_budget_usd=base.monthly_budget_usd + budget)
    return CostGuard(hubble, c.store, c.clock, limits)


def _tables(c: HubbleSyncDeps, network: str):
    hubble = c.hubble
    if hubble is None:
        raise SyncRefused("hubble_disabled", "HUBBLE_ENGINE is none: there is no Hubble to sync from", 409)
    try:
        tables = hubble.tables(network)
    except HubbleError as exc:
        raise SyncRefused("hubble_unavailable", f"Hubble cannot be reached: {exc}", 503) from exc
    if tables is None:
        raise SyncRefused("hubble_no_network", f"Hubble has no tables for the {network} network", 409)
    return tables


# ---------------------------------------------------------------------------------- plan
def plan(c: HubbleSyncDeps, network: str, mode: str = "full", since: dt.date | None = None, dry_run: bool = False) -> dict:
    """Dry-run every query of the sync; unless dry_run (or over budget), record and enqueue its ranges."""
    store, now = c.store, c.clock.now()
    settings = SyncSettings.from_settings(c.settings)
    tables = _tables(c, network)
    state = store.get_sync_state(network)
    end = now.replace(microsecond=0)
    if mode == "daily":
        if state is None or state.synced_through is None:
            raise SyncRefused("sync_never_ran", f"{network} has no synced_through yet: run a full sync first", 409)
        start = state.synced_through - plan_sql.DAILY_OVERLAP
    else:
        start = plan_sql.sync_start(network, since)
    resumed = state is not None and state.status == "RUNNING" and state.mode == mode and not dry_run and \
        (stored := store.list_sync_ranges(network, state.sync_id)) and stored[0].range_start == start
    retry_tags: dict = {}
    if resumed:
        sync_id = state.sync_id
        ranges = [(r.range_start, r.range_end) for r in stored]
        done = {r.range_start for r in stored if r.status == "DONE"}
        # a FAILED range's task has finished: its name stays taken for a while, so the new one gets its own
        retry_tags = {r.range_start: f"{r.finished_at:%Y%m%dT%H%M%S}" for r in stored if r.status == "FAILED" and r.finished_at}
    else:
        sync_id = plan_sql.new_sync_id(mode, now)
        ranges = plan_sql.plan_ranges(start, end, settings.range_days)
        done = set()
    guard = sync_guard(c)
    queries = [plan_sql.range_query(tables, network, a, b) for a, b in ranges if a not in done]
    if mode == "full":
        queries.append(plan_sql.accounts_query(tables, network, None))
    estimate, billable = 0, 0
    try:
        for query in queries:
            nbytes = int(c.hubble.dry_run(query).bytes_processed)
            estimate += nbytes
            billable += billable_bytes(nbytes, len(query.tables))
    except HubbleError as exc:
        raise SyncRefused("hubble_unavailable", f"the sync's dry run failed: {exc}", 503) from exc
    cost = guard.limits.cost_usd(billable)
    answer = {"sync_id": sync_id, "network": network, "mode": mode, "ranges": len(ranges), "ranges_to_run": len(ranges) - len(done),
              "start": iso(ranges[0][0]), "end": iso(ranges[-1][1]), "bytes": estimate, "bytes_billed": billable,
              "cost_usd": f"{cost:.6f}", "budget_usd": str(settings.budget_usd), "dry_run": dry_run, "queries": len(queries)}
    if cost > settings.budget_usd:
        raise SyncRefused("sync_over_budget", f"the sync would read {estimate:,} bytes (${cost:.4f}), over HUBBLE_SYNC_BUDGET_USD "
                          f"${settings.budget_usd}", 409, details=answer)
    if dry_run:
        return answer
    store.start_sync(network, sync_id, mode, ranges, now, synced_through=state.synced_through if mode == "daily" and state else None)
    enqueued = 0
    for a, b in ranges:
        if a not in done:
            enqueued += enqueue_range(c, network, sync_id, a, b, retry_tags.get(a))
    if len(done) == len(ranges):
        _after_last_range(c, network, sync_id, mode)
    answer["enqueued"] = enqueued
    return answer


def enqueue_range(c: HubbleSyncDeps, network: str, sync_id: str, start: dt.datetime, end: dt.datetime, retry_tag: str | None = None) -> bool:
    payload = {"network": network, "sync_id": sync_id, "start": iso(start), "end": iso(end)}
    generation = plan_sql.range_generation(sync_id, start) + (f"-retry-{retry_tag}" if retry_tag else "")
    return c.queue.enqueue(SYNC_QUEUE, payload, purpose="sync", generation=generation)


def enqueue_accounts(c: HubbleSyncDeps, network: str, sync_id: str, after: str | None) -> bool:
    payload = {"network": network, "sync_id": sync_id, "accounts_current": True}
    if after:
        payload["after"] = after
    return c.queue.enqueue(SYNC_QUEUE, payload, purpose="sync", generation=f"{sync_id}-accounts-{after or 'first'}")


def _after_last_range(c: HubbleSyncDeps, network: str, sync_id: str, mode: str) -> None:
    """Every range is done: a full sync loads accounts_current next; a daily one is finished."""
    if mode == "full":
        enqueue_accounts(c, network, sync_id, c.store.get_sync_state(network).accounts_after)
    else:
        c.store.finish_sync(network, sync_id, "DONE", c.clock.now())


# ---------------------------------------------------------------------------------- a range
def run_range(c: HubbleSyncDeps, network: str, sync_id: str, start: dt.datetime, end: dt.datetime) -> dict:
    store = c.store
    state = store.get_sync_state(network)
    if state is None or state.sync_id != sync_id:  # a later plan replaced this sync: its ranges stop here
        return {"status": "SKIPPED", "reason": f"{network}'s current sync is not {sync_id}", "sync_id": sync_id, "start": iso(start)}
    rng = store.mark_sync_range_started(network, sync_id, start, c.clock.now())
    if rng is None or rng.range_end != end:
        raise SyncRefused("unknown_range", f"sync {sync_id} of {network} has no range [{iso(start)}, {iso(end)})", 404)
    if rng.status == "DONE":
        return {"status": "SKIPPED", "reason": "range already done", "sync_id": sync_id, "start": iso(start)}
    tables = _tables(c, network)
    guard = sync_guard(c)
    answer = {"status": "DONE", "network": network, "sync_id": sync_id, "start": iso(start), "end": iso(end)}
    try:
        guarded = guard.run_pages(plan_sql.range_query(tables, network, start, end), SyncSettings.from_settings(c.settings).page_rows)
        rows = edges = merges = 0
        for page_rows in guarded.result.pages:
            page = plan_sql.parse_range_rows(network, page_rows)
            rows += len(page_rows)
            now = c.clock.now()
            store.bulk_add_creations(network, page.edges, now=now, source="BIGQUERY")
            for merge in page.merges:
                store.add_merge_event(merge)
            _settle_lives(store, network, page.edges, page.merges)
            edges += len(page.edges)
            merges += len(page.merges)
    except GuardRefused as exc:
        store.mark_sync_range_failed(network, sync_id, start, f"guard_{exc.code}: {exc.message}", c.clock.now())
        return {**answer, "status": "FAILED", "reason": f"guard_{exc.code}: {exc.message}"}
    except (InvalidInput, BulkRowRefused) as exc:  # Hubble gave a row the store refuses: the range cannot finish as is
        store.mark_sync_range_failed(network, sync_id, start, f"bad_row: {exc}", c.clock.now())
        return {**answer, "status": "FAILED", "reason": f"bad_row: {exc}"}
    except HubbleError as exc:
        store.mark_sync_range_failed(network, sync_id, start, f"hubble_error: {exc}", c.clock.now())
        return {**answer, "status": "RETRY", "reason": f"hubble_error: {exc}"}
    stats = guard.stats
    after = store.mark_sync_range_done(network, sync_id, start, rows=rows, edges=edges, merges=merges,
                                       bytes_billed=stats.bytes_billed, spent_micro_usd=stats.cost_micro_usd, now=c.clock.now())
    if after.ranges_done == after.ranges_total:
        _after_last_range(c, network, sync_id, state.mode or "full")
    return {**answer, "rows": rows, "edges": edges, "merges": merges, "bytes_billed": stats.bytes_billed,
            "cost_usd": f"{Decimal(stats.cost_micro_usd) / MICRO:.6f}", "synced_through": iso(after.synced_through)}


def _settle_lives(store, network: str, edges: list, merges: list[MergeEvent]) -> None:
    """The lives columns (deleted, merged_at, merged_into) of every account whose lives this page
    changed: its merges, and a creation of an account stored as gone (re-created after a merge,
    whatever order the ranges ran in). Recomputed from every stored creation and merge."""
    touched = {m.stellar_account for m in merges}
    created = list(dict.fromkeys(e.account for e in edges))
    for i in range(0, len(created), BATCH_READ):
        touched |= store.gone_accounts(network, created[i : i + BATCH_READ])
    for account in sorted(touched):
        events = store.get_creation_events(network, account)
        fields = life_fields(events, store.get_merge_events(network, account), None)
        for key in ("stellar_creator_account", "account_creation_date", "creation_ledger"):
            fields.pop(key, None)  # the bulk path keeps these (earliest creator, current life's ledger)
        store.put_lineage(network, account, **fields)


# ---------------------------------------------------------------------------------- accounts_current
def load_accounts(c: HubbleSyncDeps, network: str, sync_id: str, after: str | None, task_seconds: float = TASK_SECONDS) -> dict:
    store = c.store
    state = store.get_sync_state(network)
    if state is None or state.sync_id != sync_id:
        return {"status": "SKIPPED", "reason": f"{network}'s current sync is not {sync_id}"}
    if state.status == "DONE":
        return {"status": "SKIPPED", "reason": "accounts already loaded", "accounts": state.accounts}
    resume = state.accounts_after  # the last page written: a retried or continued task starts after it
    tables = _tables(c, network)
    guard = sync_guard(c)
    started = time.monotonic()
    loaded, dropped = 0, 0
    try:
        guarded = guard.run_pages(plan_sql.accounts_query(tables, network, resume), SyncSettings.from_settings(c.settings).page_rows)
        for page_rows in guarded.result.pages:
            page = plan_sql.parse_account_rows(network, page_rows)
            if not page_rows:
                continue
            if page.dropped_home_domains:
                dropped += len(page.dropped_home_domains)
                log.warning("hubble_sync: %d home_domain(s) longer than %d characters not stored (e.g. %s)",
                            len(page.dropped_home_domains), plan_sql.MAX_HOME_DOMAIN, page.dropped_home_domains[0])
            store.bulk_put_account_states(network, page.states, now=c.clock.now())
            last = page_rows[-1]["account"]
            store.update_sync_accounts(network, sync_id, resume, last, len(page.states), c.clock.now())
            resume, loaded = last, loaded + len(page.states)
            if time.monotonic() - started > task_seconds:
                enqueue_accounts(c, network, sync_id, resume)
                return {"status": "CONTINUED", "network": network, "sync_id": sync_id, "loaded": loaded, "after": resume,
                        "home_domains_not_stored": dropped}
    except GuardRefused as exc:
        store.finish_sync(network, sync_id, "FAILED", c.clock.now(), f"guard_{exc.code}: {exc.message}")
        return {"status": "FAILED", "reason": f"guard_{exc.code}: {exc.message}"}
    except (InvalidInput, BulkRowRefused) as exc:
        store.finish_sync(network, sync_id, "FAILED", c.clock.now(), f"bad_row: {exc}")
        return {"status": "FAILED", "reason": f"bad_row: {exc}"}
    except HubbleError as exc:
        return {"status": "RETRY", "reason": f"hubble_error: {exc}"}
    done = store.finish_sync(network, sync_id, "DONE", c.clock.now())
    return {"status": "DONE", "network": network, "sync_id": sync_id, "loaded": loaded, "accounts": done.accounts,
            "home_domains_not_stored": dropped}
