"""api_fallback (internal; the api-fallback queue): an account's lineage from Horizon + Stellar Expert.

POST {"network", "account", "purpose": "lineage"|"children"|"enrich", "generation", "cursor"?}.
Internal auth, POST only, the schema gate, then the payload (400 on bad input, nothing written).

`lineage` and `children` tasks claim the row (PENDING|RE_INQUIRY -> PROCESSING) and run the
original pipeline's 8 stages, each recorded in stage_executions:

1. parent_lineage     what the store already knows: creation events, a children checkpoint, or a
                      re-inquiry (lineage stored: only the enrichment is refreshed);
2. horizon_data       GET /accounts/{id}: one request for all the enrichment (404: INVALID);
3. attributes         XLM balance (exact Decimal, balance index kept in step), home_domain (as
                      given, hostile or not), thresholds;
4. assets             the other balances (trustlines, pool shares);
5. flags              the four account flags;
   directory_labels   (best effort) Stellar Expert's Open Directory entry -> tags + directory_name,
                      and tag `blocked-domain` when the home_domain (or a parent) is on Expert's
                      blocked list. One attempt each, on spare Expert budget only (never a wait):
                      no budget -> SKIPPED "deferred: Stellar Expert budget" (old labels kept); an
                      upstream failure or a malformed body -> FAILED; the account goes on either way;
   stellar_toml       (best effort) https://{home_domain}/.well-known/stellar.toml through the
                      SSRF-safe fetcher (common/enrichment/toml.py): toml_org_name, toml_org_url,
                      toml_lists_account, toml_checked_at; a refused or broken file -> toml_error
                      "code: message" and the stage FAILED; the account goes on either way;
6. creator_discovery  the first ascending operations page: its first record is the account's
                      creating create_account when Horizon still has it (the first successful one
                      with account == id); the same page starts the children;
7. expert_enrichment  (inside 6) Stellar Expert's creator/created when Horizon's history is pruned
                      or the creation is missing; SKIPPED when Horizon shows the whole history;
8. expansion          the children crawl (ascending pages of 200, successful create_account with
                      funder == id), a checkpoint after every page, the creator's lineage requested
                      when unknown, the children's enrichment queued under children_enrichment_cap.

A task stops after API_TASK_SECONDS (default 120) and enqueues its continuation (`children`,
generation = pages done); a crash loses at most one page. Whatever the task's purpose or cursor,
the stored checkpoint says where a crawl resumes, so a stale duplicate task never rewinds it. An upstream 429 or an empty budget
answers 429 with Retry-After after releasing the claim without counting an attempt; 5xx,
timeouts and malformed bodies that outlast tenacity's retries release the claim for a counted
retry (503), FAILED with last_error after max_retries. A continuation the queue refuses answers 503
too: the row waits PENDING at its checkpoint and this task's retry resumes there. Every write to
the claimed row is fenced by the claim token: a worker whose claim was lost (released by
reset_stale, maybe claimed again) answers 200 SKIPPED "claim lost" and writes nothing more.

`enrich` tasks refresh the enrichment of a known account (stages 2-5 and the two label stages) and
never change its status. Enrichment fresher than cache_ttl_hours (enriched_at) is not fetched again,
labels included.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math

from flask import Request

from common import pipeline
from common.config import ConfigError
from common.domain import (
    NETWORK_START,
    CLAIMABLE,
    GENESIS_ACCOUNT,
    ChildEdge,
    CreationEvent,
    InvalidInput,
    LineageRecord,
    MergeEvent,
    PipelineSource,
    Status,
    as_utc,
    iso,
)
from common.enrichment.toml import TomlFetchError, read_stellar_toml, validate_domain
from common.handlers.worker import WorkerTask, give_back, parse_worker_task
from common.http import error_response, internal_post_only, invalid_input_response, json_response, request_params, schema_gate_response
from common.handlers import api_hubble
from common.ledger_time import sequence_ledger
from common.upstream.errors import RateLimited, Unavailable, UpstreamError
from common.upstream.horizon import MAX_LIMIT, HorizonAccount, Operation, OperationsPage
from common.upstream.calls import tally
from common.deps import ApiFallbackDeps

log = logging.getLogger(__name__)

PARENT_LINEAGE = "parent_lineage"
HORIZON_DATA = "horizon_data"
ATTRIBUTES = "attributes"
ASSETS = "assets"
FLAGS = "flags"
EXPERT_ENRICHMENT = "expert_enrichment"
CREATOR_DISCOVERY = "creator_discovery"
EXPANSION = "expansion"
STAGES = (PARENT_LINEAGE, HORIZON_DATA, ATTRIBUTES, ASSETS, FLAGS, EXPERT_ENRICHMENT, CREATOR_DISCOVERY, EXPANSION)
DIRECTORY_LABELS = "directory_labels"
STELLAR_TOML = "stellar_toml"
LABEL_STAGES = (DIRECTORY_LABELS, STELLAR_TOML)  # best effort: SUCCESS, SKIPPED or FAILED, never fatal
BLOCKED_DOMAIN_TAG = "blocked-domain"
LABEL_MAX_WAIT_S = 0.0  # labels use spare budget only: they never wait for a slot

PURPOSES = ("lineage", "children", "enrich")
CURSOR_PREFIX = "horizon:v1:"
DEFAULT_TASK_SECONDS = 120.0
MAX_INLINE_WAIT_S = 30.0  # the longest a task waits in-process for budget; longer: 429 to the queue
MIN_INLINE_WAIT_S = 2.0
RETRY_AFTER_S = 30  # 503: the queue's own backoff also applies
FULL_HISTORY_ELDER = 2  # a Horizon whose oldest ledger is 1 or 2 keeps the whole history
BATCH_READ = 1000  # Store.get_lineages batch limit


# ---------------------------------------------------------------------------------- values
@dataclasses.dataclass
class ApiOutcome:
    """The task's result (the 200 body; also inside 429/503 error details)."""

    status: str  # COMPLETE | CONTINUED | INVALID | FAILED | SKIPPED | ENRICHED | NOT_FOUND | RATE_LIMITED | RETRY
    network: str
    account: str
    purpose: str
    pipeline_source: str | None = None
    reason: str | None = None
    creator: str | None = None
    children: int | None = None
    pages: int = 0
    calls: dict = dataclasses.field(default_factory=dict)
    retry_after: float | None = None
    claim_token: str | None = dataclasses.field(default=None, repr=False)  # ours once claimed; never in the answer

    def to_json(self) -> dict:
        body = dataclasses.asdict(self)
        del body["claim_token"]
        return body


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """The children crawl's position, stored in children_cursor after every page.

    `horizon:v1:<paging token>:<pages done>:<1 when Horizon shows the account's whole history>`
    """

    cursor: str
    pages: int
    whole_history: bool

    def encode(self) -> str:
        return f"{CURSOR_PREFIX}{self.cursor}:{self.pages}:{1 if self.whole_history else 0}"

    @classmethod
    def decode(cls, raw: str | None) -> "Checkpoint | None":
        """None for no checkpoint, another path's (hubble:...), or one we cannot read (start over)."""
        if not raw or not raw.isascii() or not raw.startswith(CURSOR_PREFIX):  # isdigit() takes '²', int() does not
            return None
        parts = raw[len(CURSOR_PREFIX):].split(":")
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit() or parts[2] not in ("0", "1"):
            return None
        return cls(parts[0], int(parts[1]), parts[2] == "1")


class Deadline:
    """The task's time budget on the container's clock (limiter waits count against it)."""

    def __init__(self, clock, seconds: float):
        self._clock = clock
        self._end = clock.monotonic() + seconds

    def remaining(self) -> float:
        return self._end - self._clock.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def max_wait(self) -> float:
        return min(MAX_INLINE_WAIT_S, max(self.remaining(), MIN_INLINE_WAIT_S))


# ---------------------------------------------------------------------------------- HTTP
def parse_task(params: dict) -> WorkerTask:
    return parse_worker_task(params, PURPOSES)


def task_seconds(settings) -> float:
    raw = settings.optional("API_TASK_SECONDS", DEFAULT_TASK_SECONDS)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ConfigError("API_TASK_SECONDS", f"must be a number of seconds, got {raw!r}") from None
    if not 1 <= value <= 3600:
        raise ConfigError("API_TASK_SECONDS", f"must be between 1 and 3600, got {raw!r}")
    return value


def handle(request: Request, c: ApiFallbackDeps) -> object:
    refused = internal_post_only(request, c.settings.internal_token, 'use POST {"network", "account", "purpose", "generation"}') \
        or schema_gate_response(c.schema_gate, retry_after_s=RETRY_AFTER_S)
    if refused is not None:
        return refused
    try:
        task = parse_task(request_params(request))
    except InvalidInput as exc:
        return invalid_input_response(exc)
    try:
        config = c.pipeline_config()
        c.upstream.configure(config)
        deadline = Deadline(c.clock, task_seconds(c.settings))
    except ConfigError as exc:
        return error_response("misconfigured", str(exc), 503, headers={"Retry-After": "300"})
    except Exception as exc:  # noqa: BLE001 - the store failed while reading the configuration
        log.warning("api_fallback setup failed: %s", exc)
        return error_response("store_unavailable", f"the store cannot be reached: {type(exc).__name__}", 503, headers={"Retry-After": str(RETRY_AFTER_S)})
    outcome = run_task(c, task, config, deadline)
    return respond(outcome)


def respond(outcome: ApiOutcome):
    if outcome.status == "RATE_LIMITED":
        retry = max(1, math.ceil(outcome.retry_after or 1))
        return error_response("upstream_rate_limited", outcome.reason or "upstream budget exhausted", 429,
                              headers={"Retry-After": str(retry)}, details=outcome.to_json())
    if outcome.status == "RETRY":
        retry = max(1, math.ceil(outcome.retry_after or RETRY_AFTER_S))
        return error_response("retry_later", outcome.reason or "transient failure", 503,
                              headers={"Retry-After": str(retry)}, details=outcome.to_json())
    return json_response(outcome.to_json())


def run_task(c: ApiFallbackDeps, task: WorkerTask, config, deadline: Deadline) -> ApiOutcome:
    """Run one task; never raises. Counts the upstream requests it made into outcome.calls."""
    with tally() as calls:
        if task.purpose == "enrich":
            outcome = enrich(c, task, config, deadline)
        else:
            outcome = crawl_lineage(c, task, config, deadline)
    outcome.calls = dict(calls)
    return outcome


# ---------------------------------------------------------------------------------- lineage / children
def crawl_lineage(c: ApiFallbackDeps, task: WorkerTask, config, deadline: Deadline) -> ApiOutcome:
    network, account, store = task.network, task.account, c.store
    outcome = ApiOutcome("SKIPPED", network, account, task.purpose)
    claimed = False
    try:
        before = store.get_lineage(network, account)
        if before is None or before.status not in CLAIMABLE:
            outcome.reason = "not claimable (unknown, being processed, complete or terminal)"
            return outcome
        fallback = PipelineSource.BIGQUERY_WITH_API_FALLBACK.value
        source = fallback if before.pipeline_source == fallback else PipelineSource.API.value
        now = c.clock.now()
        outcome.claim_token = store.claim(network, account, now, pipeline_source=source, last_pipeline_attempt=now)
        if outcome.claim_token is None:
            outcome.reason = "claimed by another worker"
            return outcome
        claimed = True
        outcome.pipeline_source = source
        return _run(c, outcome, before, config, deadline)
    except pipeline.ClaimLost as exc:  # released by reset_stale (and maybe claimed again): stop, write nothing more
        outcome.status, outcome.reason = "SKIPPED", str(exc)
        return outcome
    except RateLimited as exc:  # back-pressure: release without counting an attempt, the queue retries
        outcome.status, outcome.retry_after, outcome.reason = "RATE_LIMITED", exc.retry_after, str(exc)[:500]
        if claimed:
            _release(c, outcome, count_attempt=False)
        return outcome
    except UpstreamError as exc:  # transient upstream failure after tenacity's retries
        outcome.reason = str(exc)[:500]
        if claimed:
            _release(c, outcome, count_attempt=True)
        return outcome
    except Exception as exc:  # noqa: BLE001 - our store or queue failed: retry later, lose nothing
        log.exception("api_fallback %s/%s failed", network, account)
        outcome.status, outcome.reason = "RETRY", f"{type(exc).__name__}: {exc}"[:500]
        if claimed:
            _release(c, outcome, count_attempt=True)
        return outcome


def _release(c: ApiFallbackDeps, outcome: ApiOutcome, count_attempt: bool) -> None:
    """Give the claim back for the queue's retry; FAILED (200) once max_retries is reached."""
    retry = give_back(c, outcome.network, outcome.account, outcome.claim_token, outcome.reason or "failed", count_attempt=count_attempt)
    if outcome.status == "RATE_LIMITED":
        return
    if retry:
        outcome.status = "RETRY"
        return
    rec = c.store.get_lineage(outcome.network, outcome.account)
    outcome.status = rec.status if rec is not None and rec.status in (Status.FAILED.value, Status.INVALID.value) else "SKIPPED"


def _run(c: ApiFallbackDeps, outcome: ApiOutcome, before: LineageRecord, config, deadline: Deadline) -> ApiOutcome:
    network, account, source, store = outcome.network, outcome.account, outcome.pipeline_source, c.store
    with pipeline.stage(c, network, account, PARENT_LINEAGE, source):
        events = store.get_creation_events(network, account)
        lineage_known = bool(events) or account == GENESIS_ACCOUNT
        # A re-inquiry (COMPLETE before; also when handed over from RE_INQUIRY): never query the lineage again.
        refresh_only = before.status == Status.RE_INQUIRY.value or (lineage_known and before.children_complete is not None)
        checkpoint = None if refresh_only else Checkpoint.decode(before.children_cursor)
    gone = bool(before.deleted)  # a continuation or a fresh enrichment keeps what the last GET /accounts said
    state: HorizonAccount | None = None
    if checkpoint is None:
        if not refresh_only and _fresh(c, before, config):
            _skip(c, network, account, source, (HORIZON_DATA, ATTRIBUTES, ASSETS, FLAGS) + LABEL_STAGES,
                  f"enriched at {iso(before.enriched_at)}, within cache_ttl_hours")
        else:
            state = _enrichment(c, network, account, source, deadline)
            gone = state is None
            if gone:  # Horizon 404: merged (its history stays), or it never existed
                _forget_balance(c, network, account, outcome.claim_token)
    if refresh_only:
        _skip(c, network, account, source, (CREATOR_DISCOVERY, EXPERT_ENRICHMENT, EXPANSION), "lineage already stored; enrichment refreshed")
        done = before.children_complete if before.children_complete is not None else True
        fields = {"deleted": True} if gone else {}
        if not pipeline.complete_account(c, network, account, source, claim_token=outcome.claim_token, children_complete=done, **fields):
            raise pipeline.ClaimLost(network, account)
        outcome.status = Status.COMPLETE.value
        outcome.reason = ("re-inquiry: lineage kept; the account no longer exists on Horizon (merged)" if gone
                          else "re-inquiry: lineage kept, enrichment refreshed")
        outcome.creator, outcome.children = before.stellar_creator_account, before.num_child_accounts
        return outcome
    if checkpoint is None:
        found = _discover_creator(c, outcome, events, deadline, state, gone, before, config)
        if found is None:
            return _invalid(c, outcome, (EXPERT_ENRICHMENT, EXPANSION))
        first_page, creator, whole_history = found
        creator_note = outcome.reason  # set when the creator stays unknown
        crawl = _Crawl(cursor=None, pages=0, count=0, whole_history=whole_history)
    else:
        first_page, creator = None, before.stellar_creator_account
        creator_note = before.last_error
        crawl = _Crawl(cursor=checkpoint.cursor, pages=checkpoint.pages, count=int(before.num_child_accounts or 0),
                       whole_history=checkpoint.whole_history)
    outcome.creator = creator
    with pipeline.stage(c, network, account, EXPANSION, source):
        if checkpoint is None:
            _request_creator(c, network, creator)
        finished = _crawl_horizon_children(c, outcome, crawl, first_page, config, deadline)
        if finished:
            gap = api_hubble.fill_children_gap(c, outcome, crawl.whole_history, config, deadline,
                                               lambda edges, before_count: _store_edges(c, network, account, edges, before_count, config))
            crawl.count += gap.added
    outcome.children, outcome.pages = crawl.count, crawl.pages
    if not finished:
        return outcome
    lives = api_hubble.lives_fields(c, network, account, sequence_ledger(state.sequence) if state else None, gone)
    unknown_creator = creator is None and account != GENESIS_ACCOUNT
    if not pipeline.complete_account(c, network, account, source, claim_token=outcome.claim_token, num_child_accounts=crawl.count,
                                     children_cursor=None, children_complete=gap.code is None, children_gap=gap.code,
                                     children_visible_from=gap.visible_from, **lives,
                                     **({"last_error": creator_note} if unknown_creator else {})):
        raise pipeline.ClaimLost(network, account)
    outcome.status = Status.COMPLETE.value
    if gap.code is not None:
        outcome.reason = f"{gap.code}: {gap.message}"
    elif gap.added:
        outcome.reason = f"{gap.added} children created before Horizon's history came from Hubble"
    return outcome


def _fresh(c: ApiFallbackDeps, rec: LineageRecord, config) -> bool:
    """Enrichment newer than the cache TTL (e.g. from a parent's crawl): no second GET /accounts."""
    if rec.enriched_at is None:
        return False
    age = c.clock.now() - rec.enriched_at
    return dt.timedelta(0) <= age < dt.timedelta(hours=float(config["cache_ttl_hours"]))


def _invalid(c: ApiFallbackDeps, outcome: ApiOutcome, not_run: tuple) -> ApiOutcome:
    network, account = outcome.network, outcome.account
    reason = (f"not found: no history of this account on {network} in Horizon, Stellar Expert"
              f"{' or Hubble' if api_hubble.configured(c, network) else ' (and no Hubble is configured)'}: it never existed there")
    _skip(c, network, account, outcome.pipeline_source, not_run, "account does not exist")
    pipeline.checkpoint(c, network, account, outcome.claim_token, deleted=None)  # it never existed: not "gone"
    if not pipeline.fail_account(c, network, account, reason, invalid=True, claim_token=outcome.claim_token):
        raise pipeline.ClaimLost(network, account)
    outcome.status, outcome.reason = Status.INVALID.value, reason
    return outcome


def _skip(c: ApiFallbackDeps, network: str, account: str, source: str | None, names: tuple, why: str) -> None:
    for name in names:
        with pipeline.stage(c, network, account, name, source) as execution:
            execution.status = "SKIPPED"
            execution.error_message = why


# ---------------------------------------------------------------------------------- enrichment
def _enrichment(c: ApiFallbackDeps, network: str, account: str, source: str | None, deadline: Deadline) -> HorizonAccount | None:
    """Stages horizon_data, attributes, assets, flags: one GET /accounts/{id}. None on 404.
    Then the best-effort label stages directory_labels and stellar_toml (never raise for upstream trouble)."""
    store = c.store
    with pipeline.stage(c, network, account, HORIZON_DATA, source) as execution:
        state = c.upstream.horizon(network).account(account, deadline.max_wait())
        if state is None:
            execution.status = "FAILED"
            execution.error_message = "404: Horizon does not know this account"
            return None
    now = c.clock.now()
    with pipeline.stage(c, network, account, ATTRIBUTES, source):
        rec = store.get_lineage(network, account)
        # The index first: a crash after it is repaired by the next run (old = the stored balance).
        store.set_balance(network, account, state.xlm_balance, rec.xlm_balance if rec else None)
        store.put_lineage(network, account, xlm_balance=state.xlm_balance, home_domain=state.home_domain,
                          thresholds=state.thresholds, updated_at=now)
    with pipeline.stage(c, network, account, ASSETS, source):
        store.put_lineage(network, account, assets=state.assets)
    with pipeline.stage(c, network, account, FLAGS, source):
        store.put_lineage(network, account, flags=state.flags, enriched_at=now)
    _directory_labels(c, network, account, source, state.home_domain)
    _stellar_toml(c, network, account, source, state.home_domain)
    return state


def _host_name(home_domain: str | None) -> str | None:
    """The home_domain as a DNS name, or None (absent, or hostile text that is no host name)."""
    if not home_domain:
        return None
    try:
        return validate_domain(home_domain)
    except TomlFetchError:
        return None


def _directory_labels(c: ApiFallbackDeps, network: str, account: str, source: str | None, home_domain: str | None) -> None:
    """Stage directory_labels: Expert's directory entry and blocked-domain answer -> tags, directory_name.

    Best effort, on spare Expert budget only: no budget leaves the old labels (SKIPPED, deferred);
    a failure is recorded (FAILED) and the account goes on."""
    with pipeline.stage(c, network, account, DIRECTORY_LABELS, source) as execution:
        host = _host_name(home_domain)
        try:
            expert = c.upstream.expert
            entry = expert.directory(account, LABEL_MAX_WAIT_S, best_effort=True)
        except RateLimited as exc:
            execution.status = "SKIPPED"
            execution.error_message = f"deferred: Stellar Expert budget ({exc.message})"[:2000]
            return
        except (UpstreamError, ConfigError) as exc:
            execution.status = "FAILED"
            execution.error_message = f"{exc}; labels kept as they were"[:2000]
            return
        notes = [] if entry is not None else ["not listed in Stellar Expert's directory"]
        blocked: bool | None = False
        if host:
            try:
                blocked = expert.domain_blocked(host, LABEL_MAX_WAIT_S, best_effort=True)
            except RateLimited:
                blocked = None
                notes.append("blocked-domain check deferred: Stellar Expert budget")
            except UpstreamError as exc:
                blocked = None
                execution.status = "FAILED"
                notes.append(f"blocked-domain check failed: {exc}")
        if blocked is None:  # not answered this time: the previous answer stands
            rec = c.store.get_lineage(network, account)
            blocked = bool(rec and rec.tags and BLOCKED_DOMAIN_TAG in rec.tags)
        elif blocked:
            notes.append("home domain blocked")
        tags = set(entry.tags) if entry is not None else set()
        if blocked:
            tags.add(BLOCKED_DOMAIN_TAG)
        c.store.put_lineage(network, account, tags=sorted(tags), directory_name=entry.name if entry else None,
                            updated_at=c.clock.now())
        if notes:
            execution.error_message = "; ".join(notes)[:2000]


def _stellar_toml(c: ApiFallbackDeps, network: str, account: str, source: str | None, home_domain: str | None) -> None:
    """Stage stellar_toml: the home domain's stellar.toml (org name and URL, does it list the account)."""
    with pipeline.stage(c, network, account, STELLAR_TOML, source) as execution:
        if not home_domain:
            execution.status, execution.error_message = "SKIPPED", "no home_domain"
            return
        try:
            fetcher = c.toml
        except ConfigError as exc:
            execution.status, execution.error_message = "FAILED", str(exc)[:2000]
            return
        if fetcher is None:
            execution.status, execution.error_message = "SKIPPED", "stellar.toml checks are off (STELLAR_TOML_ENABLED=0)"
            return
        now = c.clock.now()
        try:
            info = read_stellar_toml(fetcher, home_domain, account, LABEL_MAX_WAIT_S)  # raises TomlFetchError only
        except TomlFetchError as exc:
            if exc.code == "rate_limited":
                execution.status, execution.error_message = "SKIPPED", f"deferred: {exc}"[:2000]
                return
            error = f"{exc.code}: {exc}"[:2000]
            # The stored answer is the last check's: a broken file vouches for nothing.
            c.store.put_lineage(network, account, toml_org_name=None, toml_org_url=None, toml_lists_account=None,
                                toml_error=error, toml_checked_at=now, updated_at=now)
            execution.status, execution.error_message = "FAILED", error
            return
        c.store.put_lineage(network, account, toml_org_name=info.org_name, toml_org_url=info.org_url,
                            toml_lists_account=info.lists_account, toml_checked_at=now, toml_error=None, updated_at=now)
        if not info.lists_account:
            execution.error_message = "the stellar.toml does not list this account"


def _forget_balance(c: ApiFallbackDeps, network: str, account: str, claim_token: str | None = None) -> None:
    """The account no longer exists (merged): no balance, out of the balance index, and said to be gone.
    With a claim token the row is written only while the claim is ours (ClaimLost otherwise)."""
    rec = c.store.get_lineage(network, account)
    c.store.set_balance(network, account, None, rec.xlm_balance if rec else None)  # Horizon's 404 is a fact either way
    fields = {"xlm_balance": None, "deleted": True, "enriched_at": c.clock.now()}
    if claim_token is not None:
        pipeline.checkpoint(c, network, account, claim_token, **fields)
    else:
        c.store.put_lineage(network, account, **fields)


def enrich(c: ApiFallbackDeps, task: WorkerTask, config, deadline: Deadline) -> ApiOutcome:
    """purpose=enrich: refresh the enrichment of a known account; its status never changes."""
    network, account, store = task.network, task.account, c.store
    outcome = ApiOutcome("SKIPPED", network, account, task.purpose, pipeline_source=PipelineSource.API.value)
    try:
        rec = store.get_lineage(network, account)
        if rec is None:
            outcome.reason = "unknown account: nothing to enrich"
            return outcome
        if _fresh(c, rec, config):
            outcome.reason = f"enriched at {iso(rec.enriched_at)}, within cache_ttl_hours: nothing to refresh"
            return outcome
        state = _enrichment(c, network, account, PipelineSource.API.value, deadline)
        if state is None:  # gone (merged) since it was found: no balance any more
            _forget_balance(c, network, account)
            outcome.status, outcome.reason = "NOT_FOUND", "Horizon answers 404: the account no longer exists"
            return outcome
        outcome.status = "ENRICHED"
        return outcome
    except RateLimited as exc:
        outcome.status, outcome.retry_after, outcome.reason = "RATE_LIMITED", exc.retry_after, str(exc)[:500]
        return outcome
    except Exception as exc:  # noqa: BLE001 - upstream or store trouble: the queue retries the task
        if not isinstance(exc, UpstreamError):
            log.exception("api_fallback enrich %s/%s failed", network, account)
        outcome.status, outcome.reason = "RETRY", f"{type(exc).__name__}: {exc}"[:500]
        return outcome


# ---------------------------------------------------------------------------------- creator
def _event(network: str, account: str, op: Operation) -> CreationEvent:
    return CreationEvent(network, account, as_utc(op.created_at), op.id, op.funder, op.starting_balance, op.transaction_hash,
                         "HORIZON", op.ledger)


def _discover_creator(c: ApiFallbackDeps, outcome: ApiOutcome, stored: list[CreationEvent], deadline: Deadline, state: HorizonAccount | None,
                      gone: bool, before: LineageRecord, config) -> tuple[OperationsPage | None, str | None, bool] | None:
    """Stage creator_discovery (with expert_enrichment inside it): (first page, creator, does Horizon
    show the whole history?), or None when the account never existed (no history in Horizon, Stellar
    Expert or Hubble). A merged account (Horizon 404 on /accounts) still has its operations, its
    Expert record (deleted) and its Hubble rows: it is found like any other."""
    network, account, source, store = outcome.network, outcome.account, outcome.pipeline_source, c.store
    horizon = c.upstream.horizon(network)
    with pipeline.stage(c, network, account, CREATOR_DISCOVERY, source) as execution:
        page = horizon.operations(account, None, MAX_LIMIT, deadline.max_wait())
        records = page.records if page is not None else []
        seen = [_event(network, account, op) for op in records if op.creates(account)]
        for op in records:
            if op.merges(account):
                store.add_merge_event(_merge(network, account, op))
        first_visible = bool(records) and records[0].creates(account)
        pruned = horizon.history_elder_ledger(deadline.max_wait()) > FULL_HISTORY_ELDER
        api_hubble.remember_root(c, network, horizon)
        need_expert = account != GENESIS_ACCOUNT and not stored and (pruned or not first_visible)
        with pipeline.stage(c, network, account, EXPERT_ENRICHMENT, source) as expert_stage:
            info = None
            if not need_expert:
                expert_stage.status = "SKIPPED"
                expert_stage.error_message = ("genesis has no creator" if account == GENESIS_ACCOUNT else
                                              "lineage already stored" if stored else "Horizon keeps the whole history")
            else:
                try:
                    info = c.upstream.expert.account(network, account, deadline.max_wait())
                except RateLimited:
                    raise
                except UpstreamError as exc:
                    if not first_visible:
                        raise
                    expert_stage.status = "FAILED"  # degraded: Horizon's visible creation stands
                    expert_stage.error_message = f"{exc}; the creator comes from Horizon's visible history"[:2000]
                if expert_stage.status == "RUNNING" and (info is None or not info.creator or info.created is None):
                    expert_stage.status = "FAILED"
                    expert_stage.error_message = "Stellar Expert does not know this account's creator"
        seq_ledger = sequence_ledger(state.sequence) if state is not None else None
        whole = False
        if account == GENESIS_ACCOUNT:
            first, whole = None, not pruned
            creator, created = None, NETWORK_START[network]
        elif stored:
            first = stored[0]
            creator, created = first.creator, first.created_at
            whole = bool(records) and records[0].id == first.operation_id
        else:
            first = None
            if info is not None and info.creator and info.created is not None:
                if first_visible and seen[0].creator == info.creator and abs((seen[0].created_at - info.created).total_seconds()) < 1:
                    first, whole = seen[0], True
                else:
                    ledger = api_hubble.expert_ledger(c, network, info.created, seq_ledger if not seen else None)
                    first = CreationEvent(network, account, as_utc(info.created), f"expert:{int(info.created.timestamp())}",
                                          info.creator, None, None, "EXPERT", ledger)
            elif first_visible and not pruned:
                first, whole = seen[0], True
            hubble = None
            if not whole:
                # Horizon's history does not reach the first creation: Hubble (configured, within budget)
                # has every life (creations with their ledgers, merges); Stellar Expert only the first creator.
                hubble = api_hubble.lives_from_hubble(c, network, account, seq_ledger,
                                                      first.created_at if first else before.account_creation_date, config)
            if hubble is not None and hubble.events:
                for merge in hubble.merges:
                    store.add_merge_event(merge)
                known = {e.operation_id for e in hubble.events}
                first, seen = hubble.events[0], hubble.events[1:] + [e for e in seen if e.operation_id not in known]
                if info is None or not info.creator:
                    execution.error_message = "creator from Hubble: Horizon's history is pruned and Stellar Expert does not know it"
            elif first is None and first_visible:
                first = seen[0]  # pruned history, nobody older to ask: the visible creation stands
            elif first is None and state is None and not records and info is None and hubble is not None and hubble.conclusive:
                execution.status = "FAILED"
                execution.error_message = "no history in Horizon, Stellar Expert or Hubble: the account never existed"
                return None
            elif first is None:
                # It exists (or existed) but nobody we may ask knows its creation: COMPLETE without a
                # creator, saying so, instead of retrying what cannot change.
                execution.status = "FAILED"
                execution.error_message = f"creator unknown: {hubble.reason if hubble else 'no source'}"[:2000]
                outcome.reason = execution.error_message
            if first is not None:
                seen = [e for e in seen if e.operation_id != first.operation_id]
            creator, created = (first.creator, first.created_at) if first is not None else (None, None)
        for event in ([first] if first is not None else []) + seen:
            store.add_creation_event(event)
        api_hubble.remember_events(c, network, ([first] if first is not None else []) + seen)
        pipeline.checkpoint(c, network, account, outcome.claim_token, stellar_creator_account=creator, account_creation_date=created,
                            last_error=execution.error_message if first is None and account != GENESIS_ACCOUNT else None,
                            updated_at=c.clock.now())
    return page, creator, whole


def _merge(network: str, account: str, op: Operation) -> MergeEvent:
    return MergeEvent(network, account, as_utc(op.created_at), op.id, op.into, op.ledger, "HORIZON")


def _request_creator(c: ApiFallbackDeps, network: str, creator: str | None) -> None:
    """Expansion upward: the creator's own lineage, when it is not known yet (genesis ends the chain)."""
    if not creator or creator == GENESIS_ACCOUNT:
        return
    known = c.store.get_lineage(network, creator)
    if known is None or known.stellar_creator_account is None:
        pipeline.request_lineage(c, network, creator, c.clock.now())


# ---------------------------------------------------------------------------------- children
@dataclasses.dataclass
class _Crawl:
    cursor: str | None
    pages: int
    count: int
    whole_history: bool


def _crawl_horizon_children(c: ApiFallbackDeps, outcome: ApiOutcome, crawl: _Crawl, page: OperationsPage | None, config, deadline: Deadline) -> bool:
    """Page through the operations; True when the last page is done, False when a continuation
    was enqueued (time budget spent, or out of upstream budget after some progress)."""
    network, account, store = outcome.network, outcome.account, c.store
    horizon = c.upstream.horizon(network)
    progressed = False
    while True:
        if page is None:
            if progressed and deadline.expired():
                return _continue(c, outcome, crawl, 0.0)
            try:
                page = horizon.operations(account, crawl.cursor, MAX_LIMIT, deadline.max_wait())
            except RateLimited as exc:
                if not progressed:
                    raise
                return _continue(c, outcome, crawl, exc.retry_after)
            if page is None:
                raise Unavailable("horizon", "operations answer 404 for an account that exists")
        for op in page.records:
            if op.creates(account):  # a re-creation after a merge: one more creation event
                store.add_creation_event(_event(network, account, op))
            elif op.merges(account):  # the end of one of its lives
                store.add_merge_event(_merge(network, account, op))
        kids = [ChildEdge(network, account, op.account, as_utc(op.created_at), op.id, op.starting_balance)
                for op in page.records if op.child_of(account)]
        _store_edges(c, network, account, kids, crawl.count, config)
        crawl.count += len(kids)
        crawl.pages += 1
        progressed = True
        nxt = page.next_cursor
        if nxt is None:
            return True
        crawl.cursor = nxt
        pipeline.checkpoint(c, network, account, outcome.claim_token, num_child_accounts=crawl.count, updated_at=c.clock.now(),
                            children_cursor=Checkpoint(nxt, crawl.pages, crawl.whole_history).encode())
        page = None


def _continue(c: ApiFallbackDeps, outcome: ApiOutcome, crawl: _Crawl, delay_s: float) -> bool:
    cursor = Checkpoint(crawl.cursor, crawl.pages, crawl.whole_history).encode()
    try:
        continued = pipeline.continue_later(c, outcome.network, outcome.account, cursor, crawl.pages, delay_s=delay_s,
                                            claim_token=outcome.claim_token)
    except pipeline.ContinuationNotEnqueued as exc:  # PENDING at the checkpoint: this task's retry resumes there
        outcome.status, outcome.reason, outcome.retry_after = "RETRY", str(exc)[:500], delay_s or None
        return False
    if continued:
        outcome.status = "CONTINUED"
        outcome.reason = f"{crawl.pages} pages done; continuation enqueued" + (f" after {delay_s:.0f} s" if delay_s else "")
    else:
        outcome.status, outcome.reason = "SKIPPED", "claim lost before the continuation"
    return False


def _store_edges(c: ApiFallbackDeps, network: str, creator: str, edges: list[ChildEdge], before: int, config) -> None:
    """Edges, a status-less lineage row per child (its creator + creation date), enrichment tasks
    for the first children_enrichment_cap children of the crawl that are not enriched yet."""
    if not edges:
        return
    store = c.store
    cap = int(config["children_enrichment_cap"])
    accounts = list(dict.fromkeys(edge.child for edge in edges))
    known: dict[str, LineageRecord] = {}
    for i in range(0, len(accounts), BATCH_READ):
        known.update(store.get_lineages(network, accounts[i:i + BATCH_READ]))
    store.add_children(network, creator, edges)
    now = c.clock.now()
    for index, edge in enumerate(edges, start=before):
        rec = known.get(edge.child)
        created = as_utc(edge.created_at)
        if rec is None:
            store.put_lineage(network, edge.child, stellar_creator_account=creator, account_creation_date=created,
                              created_at=now, updated_at=now)
        elif rec.stellar_creator_account is None or rec.account_creation_date is None or created < rec.account_creation_date:
            # Children keep the creator of their earliest known creation (a re-creation never overrides it).
            store.put_lineage(network, edge.child, stellar_creator_account=creator, account_creation_date=created, updated_at=now)
        if index < cap and (rec is None or rec.enriched_at is None):
            payload = pipeline.task_payload(network, edge.child, "enrich", 0)
            c.queue.enqueue(pipeline.API_QUEUE, payload, purpose="enrich", generation=0)
