"""process_account (internal; the lineage queue): the Hubble path under the cost guard, or the API.

POST {"network", "account", "purpose": "lineage", "generation"} (docs/design.md). In order:
1. internal auth, POST only, schema gate, payload validation (400, nothing written);
2. claim the lineage row (PENDING|RE_INQUIRY -> PROCESSING); a lost claim answers 200 "SKIPPED";
   every later write to the row is fenced by the claim's token, so a claim lost midway (released
   by reset_stale, maybe claimed again) stops the run: 200 "SKIPPED" (claim lost), nothing more written;
3. choose the path from the run-time `pipeline_mode`:
   - API_ONLY: hand the account to the api-fallback queue (pipeline_source=API);
   - a RE_INQUIRY (COMPLETE before, stale now): the lineage is never queried again; the enrichment
     is refreshed (an `enrich` task, or in BIGQUERY_ONLY the guarded accounts_current read) and
     the account is COMPLETE again;
   - otherwise the Hubble path (stage `hubble_lineage`): the creation events and accounts_current
     row in one query, then the children in pages of `children_page_size_bq` up to `children_max`,
     each page checkpointed (`children_cursor`), every query through the cost guard;
4. after it, expansion (stage `expansion`): the creator is requested when unknown, the children's
   enrichment is queued under `children_enrichment_cap`, and the account's own enrichment comes
   from accounts_current when that row is fresh (`accounts_current_max_age_hours`) or in
   BIGQUERY_ONLY mode, else from an `enrich` task; then COMPLETE with pipeline_source=BIGQUERY.

Whenever the Hubble path cannot finish (a guard refusal, the seeds' age filter
`api_age_filter_years`, no Hubble data for the network, the account not in Hubble, Hubble
unreachable or failing), the account goes to the api-fallback queue with
pipeline_source=BIGQUERY_WITH_API_FALLBACK: never an error page, nothing lost. Only a failure of
our own store or queue answers 503 (Retry-After) so that Cloud Tasks retries; the row is released
for that retry (or FAILED after max_retries).

"Lineage already stored" means: the row was COMPLETE (claimed from RE_INQUIRY), or creation events
from an earlier Hubble run (source BIGQUERY) are stored; then only the children crawl resumes.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any

from flask import Request

from common import pipeline
from common.config import ConfigError
from common.domain import GENESIS_ACCOUNT, InvalidInput, life_fields, PipelineMode, PipelineSource, Status
from common.handlers.worker import WorkerTask, give_back, parse_worker_task
from common.http import error_response, internal_post_only, invalid_input_response, json_response, request_params, schema_gate_response
from common.hubble.cost_guard import CostGuard, GuardRefused, Limits
from common.hubble.lineage import find_lives, parse_rows
from common.hubble.port import HubbleError, HubbleUnavailable
from common.hubble.sql import (
    MAX_PAGE_SIZE,
    NETWORK_START,
    ChildCursor,
    children_count_query,
    children_query,
    parse_children,
    parse_count,
    parse_state,
    state_query,
)
from common.deps import ProcessAccountDeps

log = logging.getLogger(__name__)

STAGE_HUBBLE = "hubble_lineage"
STAGE_EXPANSION = "expansion"
BATCH_READ = 1000  # Store.get_lineages batch limit
YEAR = dt.timedelta(days=365.25)


@dataclasses.dataclass
class HubbleOutcome:
    status: str  # COMPLETE | HANDED_TO_API | SKIPPED | RETRY
    network: str
    account: str
    pipeline_source: str | None = None
    reason: str | None = None
    queries: int = 0
    dry_runs: int = 0
    bytes_processed: int = 0
    bytes_billed: int = 0
    cost_micro_usd: int = 0
    children: int | None = None
    claim_token: str | None = dataclasses.field(default=None, repr=False)  # ours once claimed; never in the answer

    def to_json(self) -> dict:
        body = dataclasses.asdict(self)
        body["cost_usd"] = f"{self.cost_micro_usd / 1_000_000:.6f}"
        del body["cost_micro_usd"], body["claim_token"]
        return body


class _Fallback(Exception):
    """The Hubble path stops here; the account goes to the API path."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# ---------------------------------------------------------------------------------- HTTP
def parse_task(params: dict) -> WorkerTask:
    return parse_worker_task(params, ("lineage",), "process_account runs lineage tasks; enrich and children tasks go to api_fallback")


def handle(request: Request, c: ProcessAccountDeps) -> object:
    refused = internal_post_only(request, c.settings.internal_token, 'use POST {"network", "account", "purpose", "generation"}') \
        or schema_gate_response(c.schema_gate)
    if refused is not None:
        return refused
    try:
        task = parse_task(request_params(request))
    except InvalidInput as exc:
        return invalid_input_response(exc)
    outcome = process(c, task.network, task.account)
    if outcome.status == "RETRY":
        return error_response("retry_later", outcome.reason or "transient failure", 503, headers={"Retry-After": "30"}, details=outcome.to_json())
    return json_response(outcome.to_json())


# ---------------------------------------------------------------------------------- the flow
def process(c: ProcessAccountDeps, network: str, account: str) -> HubbleOutcome:
    """Claim and process one account. Never raises for Hubble or guard trouble; RETRY on our own."""
    outcome = HubbleOutcome("SKIPPED", network, account)
    claimed = False
    try:
        store = c.store
        before = store.get_lineage(network, account)
        now = c.clock.now()
        outcome.claim_token = store.claim(network, account, now)
        if outcome.claim_token is None:
            outcome.reason = "not claimable (being processed, complete, or terminal)"
            return outcome
        claimed = True
        was_re_inquiry = before is not None and before.status == Status.RE_INQUIRY.value
        config = c.pipeline_config()
        mode = config["pipeline_mode"]
        if mode == PipelineMode.API_ONLY.value:
            return _hand_over(c, outcome, PipelineSource.API.value, "pipeline_mode is API_ONLY")
        if was_re_inquiry:
            return _refresh(c, outcome, config, mode)
        return _hubble_path(c, outcome, config, mode)
    except pipeline.ClaimLost as exc:  # released by reset_stale (and maybe claimed again): stop, write nothing more
        outcome.status, outcome.reason = "SKIPPED", str(exc)
        return outcome
    except Exception as exc:  # noqa: BLE001 - our store or queue failed: retry later, lose nothing
        log.exception("process_account %s/%s failed", network, account)
        outcome.status = "RETRY"
        outcome.reason = f"{type(exc).__name__}: {exc}"[:500]
        if claimed:
            give_back(c, network, account, outcome.claim_token, outcome.reason)
        return outcome


def _record_guard(outcome: HubbleOutcome, guard: CostGuard | None) -> None:
    if guard is not None:
        outcome.queries = guard.stats.queries
        outcome.dry_runs = guard.stats.dry_runs
        outcome.bytes_processed = guard.stats.bytes_processed
        outcome.bytes_billed = guard.stats.bytes_billed
        outcome.cost_micro_usd = guard.stats.cost_micro_usd


def _hand_over(c: ProcessAccountDeps, outcome: HubbleOutcome, source: str, reason: str) -> HubbleOutcome:
    rec = c.store.get_lineage(outcome.network, outcome.account)
    # The API path pages children its own way; our checkpoint would mean nothing to it.
    clear = {"children_cursor": None} if rec is not None and ChildCursor.is_hubble(rec.children_cursor) else {}
    if pipeline.hand_to_api(c, outcome.network, outcome.account, source, reason=reason, claim_token=outcome.claim_token, **clear):
        outcome.status = "HANDED_TO_API"
        outcome.pipeline_source = source
    else:
        outcome.status, reason = "SKIPPED", f"claim lost before the hand-over to the API ({reason})"
    outcome.reason = reason
    log.info("process_account %s/%s -> API (%s): %s", outcome.network, outcome.account, source, reason)
    return outcome


def _hubble_or_fallback(c: ProcessAccountDeps, network: str):
    """(hubble, tables) or raise _Fallback when this deployment has no Hubble for the network."""
    try:
        hubble = c.hubble
        tables = hubble.tables(network) if hubble is not None else None
    except ConfigError as exc:
        raise _Fallback("hubble_misconfigured", str(exc)) from exc
    except HubbleError as exc:
        raise _Fallback(_error_code(exc), str(exc)) from exc
    if hubble is None:
        raise _Fallback("hubble_disabled", "HUBBLE_ENGINE is none")
    if tables is None:
        raise _Fallback("hubble_no_network", f"no Hubble tables for the {network} network")
    return hubble, tables


def _error_code(exc: HubbleError) -> str:
    return "hubble_unavailable" if isinstance(exc, HubbleUnavailable) else "hubble_error"


def _too_old(created: dt.datetime | None, now: dt.datetime, years: int) -> bool:
    return bool(years) and created is not None and now - created > years * YEAR


def _enqueue_enrich(c: ProcessAccountDeps, network: str, account: str, generation: Any) -> bool:
    payload = pipeline.task_payload(network, account, "enrich", generation)
    return c.queue.enqueue(pipeline.API_QUEUE, payload, purpose="enrich", generation=generation)


def _state_fields(c: ProcessAccountDeps, network: str, account: str, state, now: dt.datetime) -> dict:
    """Lineage fields from an accounts_current row, keeping the balance index in step."""
    rec = c.store.get_lineage(network, account)
    old = rec.xlm_balance if rec else None
    c.store.set_balance(network, account, state.xlm_balance, old)
    return {**state.lineage_fields(), "enriched_at": state.as_of or now}


def _hubble_path(c: ProcessAccountDeps, outcome: HubbleOutcome, config, mode: str) -> HubbleOutcome:
    network, account, store = outcome.network, outcome.account, c.store
    now = c.clock.now()
    guard = None
    fallback: _Fallback | None = None
    result: dict | None = None
    try:
        hubble, tables = _hubble_or_fallback(c, network)
        rec = store.get_lineage(network, account)
        if rec.claim_token != outcome.claim_token:  # rec is the row we hold: its token fences every write below
            raise pipeline.ClaimLost(network, account)
        if account != GENESIS_ACCOUNT and _too_old(rec.account_creation_date, now, int(config["api_age_filter_years"])):
            raise _Fallback("age_filter", f"created {rec.account_creation_date:%Y-%m-%d}, older than {config['api_age_filter_years']} years")
        guard = CostGuard(hubble, store, c.clock, Limits.from_config(config))
        with pipeline.stage(c, network, account, STAGE_HUBBLE, PipelineSource.BIGQUERY.value) as execution:
            try:
                result = _lineage_and_children(c, guard, tables, rec, config, now)
            except GuardRefused as exc:
                execution.status = "SKIPPED"
                execution.error_message = f"cost guard: {exc.code}: {exc.message}"[:2000]
                fallback = _Fallback(f"guard_{exc.code}", exc.message)
            except _Fallback as exc:
                execution.status = "SKIPPED"
                execution.error_message = str(exc)[:2000]
                fallback = exc
    except _Fallback as exc:
        fallback = exc
    except HubbleError as exc:  # unreachable or failing: the stage recorded it as FAILED
        fallback = _Fallback(_error_code(exc), str(exc))
    finally:
        _record_guard(outcome, guard)
    if fallback is not None:
        # The path that ran: BIGQUERY_WITH_API_FALLBACK only when a Hubble query was tried (the guard
        # was reached); API when Hubble was never possible (no engine, no tables, unreachable, age filter).
        tried = guard is not None
        source = PipelineSource.BIGQUERY_WITH_API_FALLBACK.value if tried else PipelineSource.API.value
        return _hand_over(c, outcome, source, f"{fallback.code}: {fallback.message}"[:500])
    assert result is not None
    fields = result["fields"]
    with pipeline.stage(c, network, account, STAGE_EXPANSION, PipelineSource.BIGQUERY.value):
        state = result["state"]
        fresh_after = now - dt.timedelta(hours=float(config["accounts_current_max_age_hours"]))
        if state is not None and (mode == PipelineMode.BIGQUERY_ONLY.value or (state.as_of is not None and state.as_of >= fresh_after)):
            fields.update(_state_fields(c, network, account, state, now))
        elif mode != PipelineMode.BIGQUERY_ONLY.value:
            rec = store.get_lineage(network, account)
            _enqueue_enrich(c, network, account, rec.claim_token or "0")
        creator = fields.get("stellar_creator_account")
        if creator and creator != GENESIS_ACCOUNT:
            known = store.get_lineage(network, creator)
            if known is None or known.stellar_creator_account is None:
                pipeline.request_lineage(c, network, creator, now)
        if mode != PipelineMode.BIGQUERY_ONLY.value:
            for child in result["enrich"]:
                _enqueue_enrich(c, network, child, 0)
    if not pipeline.complete_account(c, network, account, PipelineSource.BIGQUERY.value, now=c.clock.now(),
                                     claim_token=outcome.claim_token, **fields):
        raise pipeline.ClaimLost(network, account)
    outcome.status = "COMPLETE"
    outcome.pipeline_source = PipelineSource.BIGQUERY.value
    outcome.children = fields.get("num_child_accounts")
    return outcome


def _lineage_and_children(c: ProcessAccountDeps, guard: CostGuard, tables, rec, config, now: dt.datetime) -> dict:
    network, account, store = rec.network_name, rec.stellar_account, c.store
    state = None
    if account == GENESIS_ACCOUNT:
        events = []
        first_created = NETWORK_START[network]
        fields: dict[str, Any] = {"stellar_creator_account": None, "account_creation_date": first_created}
    else:
        events = [e for e in store.get_creation_events(network, account) if e.source == "BIGQUERY"]
        if not events:  # lineage not stored yet: the state row, then every life in a pruned window
            lives = find_lives(store, guard, tables, network, account, now, first_seen=rec.account_creation_date)
            if not lives.events:
                raise _Fallback("not_in_hubble", "Hubble has no successful create_account for this account (too new, or not on this network)")
            for event in lives.events:
                store.add_creation_event(event)
            for merge in lives.merges:
                store.add_merge_event(merge)
            events, state = lives.events, lives.state
            pipeline.checkpoint(c, network, account, rec.claim_token, updated_at=c.clock.now(),
                                **life_fields(events, lives.merges, state.deleted if state is not None else None))
        first_created = events[0].created_at
        fields = {"stellar_creator_account": events[0].creator, "account_creation_date": first_created,
                  "creation_ledger": events[-1].ledger}
        if _too_old(first_created, now, int(config["api_age_filter_years"])):
            raise _Fallback("age_filter", f"created {first_created:%Y-%m-%d}, older than {config['api_age_filter_years']} years")
    crawl = _crawl_hubble_children(c, guard, tables, rec, first_created, config, now)
    fields.update(num_child_accounts=crawl["total"], children_complete=crawl["complete"], children_cursor=None,
                  children_gap=None if crawl["complete"] else "children_cap", children_visible_from=None)
    return {"fields": fields, "state": state, "enrich": crawl["enrich"]}


def _crawl_hubble_children(c: ProcessAccountDeps, guard: CostGuard, tables, rec, first_created: dt.datetime, config, now: dt.datetime) -> dict:
    network, account = rec.network_name, rec.stellar_account
    page_size = max(1, min(int(config["children_page_size_bq"]), MAX_PAGE_SIZE))
    cap = int(config["children_max"])
    enrich_cap = int(config["children_enrichment_cap"])
    if ChildCursor.is_hubble(rec.children_cursor):  # resume after a crash: at most one page is redone
        cursor = ChildCursor.decode(rec.children_cursor)
        fetched = int(rec.num_child_accounts or 0)
    else:
        cursor = ChildCursor(first_created, -1)
        fetched = 0
    enrich: list[str] = []
    more = True
    while more and fetched < cap:
        size = min(page_size, cap - fetched)
        rows = guard.run(children_query(tables, network, account, cursor, now, size)).result.rows
        page = parse_rows(parse_children, network, account, rows, size)
        _store_hubble_children(c, network, account, page.children, enrich, enrich_cap)
        fetched += len(page.children)
        more = page.next_cursor is not None
        if more:
            cursor = page.next_cursor
            pipeline.checkpoint(c, network, account, rec.claim_token, children_cursor=cursor.encode(), num_child_accounts=fetched)
    total = fetched
    if more:  # the cap stopped the crawl: count them all (one query), or keep what we know
        try:
            total = parse_rows(parse_count, guard.run(children_count_query(tables, network, account, first_created, now)).result.rows)
        except (GuardRefused, HubbleError) as exc:
            log.warning("children count of %s/%s not available: %s", network, account, exc)
    return {"total": max(total, fetched), "complete": not more, "enrich": enrich}


def _store_hubble_children(c: ProcessAccountDeps, network: str, creator: str, children: list, enrich: list, enrich_cap: int) -> None:
    """Edges, and a status-less lineage row per child with its (earliest known) creator."""
    store = c.store
    if not children:
        return
    known = {}
    accounts = list(dict.fromkeys(edge.child for edge in children))
    try:
        for i in range(0, len(accounts), BATCH_READ):
            known.update(store.get_lineages(network, accounts[i:i + BATCH_READ]))
    except InvalidInput as exc:  # a checksum Hubble got wrong: its data, not our store, is at fault
        raise HubbleError(f"Hubble returned an invalid child account: {exc.message}") from exc
    store.add_children(network, creator, children)
    now = c.clock.now()
    for edge in children:
        rec = known.get(edge.child)
        if rec is None:
            store.put_lineage(network, edge.child, stellar_creator_account=creator, account_creation_date=edge.created_at,
                              created_at=now, updated_at=now)
        elif rec.stellar_creator_account is None or rec.account_creation_date is None or edge.created_at < rec.account_creation_date:
            # A merged-then-recreated account: its creator is the one of its first creation.
            store.put_lineage(network, edge.child, stellar_creator_account=creator, account_creation_date=edge.created_at, updated_at=now)
        if len(enrich) < enrich_cap and (rec is None or rec.enriched_at is None) and edge.child not in enrich:
            enrich.append(edge.child)


def _refresh(c: ProcessAccountDeps, outcome: HubbleOutcome, config, mode: str) -> HubbleOutcome:
    """RE_INQUIRY: lineage and children are stored; refresh the enrichment only."""
    network, account, store = outcome.network, outcome.account, c.store
    rec = store.get_lineage(network, account)
    source = rec.pipeline_source or PipelineSource.BIGQUERY.value
    fields: dict[str, Any] = {"children_complete": rec.children_complete}
    with pipeline.stage(c, network, account, STAGE_EXPANSION, source) as execution:
        refreshed = False
        if mode == PipelineMode.BIGQUERY_ONLY.value:
            guard = None
            try:
                hubble, tables = _hubble_or_fallback(c, network)
                guard = CostGuard(hubble, store, c.clock, Limits.from_config(config))
                rows = guard.run(state_query(tables, network, account)).result.rows
                state = parse_rows(parse_state, rows[0]) if rows else None
                if state is not None:
                    fields.update(_state_fields(c, network, account, state, c.clock.now()))
                    refreshed = True
            except (_Fallback, GuardRefused, HubbleError) as exc:
                execution.error_message = f"accounts_current refresh not possible: {exc}"[:2000]
            finally:
                _record_guard(outcome, guard)
        if not refreshed:
            _enqueue_enrich(c, network, account, rec.claim_token or "0")
    if not pipeline.complete_account(c, network, account, source, now=c.clock.now(), claim_token=outcome.claim_token, **fields):
        raise pipeline.ClaimLost(network, account)
    outcome.status = "COMPLETE"
    outcome.pipeline_source = source
    outcome.reason = "re-inquiry: lineage kept, enrichment refreshed"
    outcome.children = rec.num_child_accounts
    return outcome
