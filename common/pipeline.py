"""The account flow's shared state changes (docs/design.md, "The account flow").

Every status change of a lineage row goes through here, so the status machine
(docs/architecture.md) lives in one place. Each function takes PipelineDeps (common/deps.py).

Every write after a claim is fenced by the claim's token (Store.claim returns it): a worker
whose claim was released by reset_stale, and perhaps taken and finished by another worker,
changes nothing. Transitions then return False; checkpoint() raises ClaimLost.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from typing import Any, Iterator

from common.domain import Status, StageExecution, as_utc
from common.deps import PipelineDeps

LINEAGE_QUEUE = "lineage"
API_QUEUE = "api-fallback"
# request_lineage re-reads a row another writer changed under it at most this often.
REQUEST_ROUNDS = 5

log = logging.getLogger(__name__)


class ClaimLost(Exception):
    """The row is no longer PROCESSING under this worker's claim token: stop, write nothing more."""

    def __init__(self, network: str, account: str):
        super().__init__(f"claim lost: {network}/{account} was released or claimed by another worker")


class ContinuationNotEnqueued(Exception):
    """The crawl is checkpointed and released (PENDING), but its continuation task was not created."""


def _now(c: PipelineDeps, now: dt.datetime | None) -> dt.datetime:
    return as_utc(now or c.clock.now())


def is_stale(rec, now: dt.datetime, ttl_hours: float) -> bool:
    last = rec.updated_at or rec.last_pipeline_attempt or rec.created_at
    return last is None or now - last > dt.timedelta(hours=ttl_hours)


def task_payload(network: str, account: str, purpose: str, generation: Any, **extra: Any) -> dict:
    return {"network": network, "account": account, "purpose": purpose, "generation": generation, **extra}


def request_lineage(c: PipelineDeps, network: str, account: str, now: dt.datetime | None = None, generation: Any = None) -> bool:
    """Make sure the account's lineage is (re)computed: PENDING + one `lineage` task.

    Safe under any number of concurrent identical requests: status changes are
    compare-and-set and the task name is deterministic, so the queue refuses duplicates.
    Returns True when this call created the task.
    """
    now = _now(c, now)
    store = c.store
    for _ in range(REQUEST_ROUNDS):
        rec = store.get_lineage(network, account)
        if complete_from_sync(c, network, account, rec, now):
            return False
        if rec is None:
            # Lost when a concurrent writer created the row first (a parent's crawl storing it as a
            # child, status null): read it again, or its task would find nothing to claim.
            if not store.transition_lineage(network, account, None, Status.PENDING.value, created_at=now, updated_at=now, retry_count=0):
                continue
            gen = 0
        elif rec.status is None:
            # Known from a parent's crawl but never searched: its own lineage run starts now.
            if not store.transition_lineage(network, account, (None,), Status.PENDING.value, updated_at=now, retry_count=rec.retry_count or 0):
                continue
            gen = rec.retry_count or 0
        elif rec.status in (Status.PENDING.value, Status.RE_INQUIRY.value):
            gen = rec.retry_count or 0  # waiting already: re-enqueueing the same name is a no-op
        elif rec.status == Status.COMPLETE.value:
            ttl = float(c.pipeline_config()["cache_ttl_hours"])
            if not is_stale(rec, now, ttl):
                return False
            # Deterministic for requests in the same TTL window, new for the next window: a
            # concurrent requester that won this transition enqueues the same name.
            gen = f"r{int(now.timestamp() // (ttl * 3600))}"
            store.transition_lineage(network, account, (Status.COMPLETE.value,), Status.RE_INQUIRY.value, updated_at=now)
        else:
            return False  # PROCESSING (being worked on) or terminal (FAILED, INVALID)
        break
    else:
        log.warning("request_lineage: %s/%s changed under %d reads in a row; left to reset_stale", network, account, REQUEST_ROUNDS)
        return False
    if generation is not None:
        gen = generation
    return c.queue.enqueue(LINEAGE_QUEUE, task_payload(network, account, "lineage", gen), purpose="lineage", generation=gen)


def complete_from_sync(c: PipelineDeps, network: str, account: str, rec, now: dt.datetime) -> bool:
    """An account the network-wide Hubble sync stored, created before its `synced_through`: COMPLETE
    at once from the store (pipeline_source HUBBLE_SYNC), no task. The sync wrote its earliest
    creation (a stored BIGQUERY event at its creation date), so every creation edge from then to
    synced_through is stored: its lives and its children. Anything else: False, the pipelines run."""
    if rec is None or rec.status is not None or not rec.stellar_creator_account or rec.account_creation_date is None:
        return False
    store = c.store
    state = store.get_sync_state(network)
    if state is None or state.synced_through is None or rec.account_creation_date >= state.synced_through:
        return False
    events = store.get_creation_events(network, account)
    if not events or events[0].source != "BIGQUERY" or events[0].created_at != rec.account_creation_date:
        return False
    children = sum(1 for _ in store.iter_children(network, account))
    won = store.transition_lineage(
        network, account, (None,), Status.COMPLETE.value, pipeline_source="HUBBLE_SYNC", children_complete=True,
        num_child_accounts=children, children_gap=None, children_cursor=None, last_error=None, retry_count=0,
        updated_at=now, last_pipeline_attempt=now,
    )
    if won:
        _mirror_search(c, network, account, Status.COMPLETE.value, now, None)
    return won


def checkpoint(c: PipelineDeps, network: str, account: str, claim_token: str, /, **fields: Any) -> None:
    """Write columns of the row this worker holds (a children checkpoint, the creator found);
    ClaimLost, with nothing written, once the claim is no longer ours."""
    if not c.store.update_claimed(network, account, claim_token, **fields):
        raise ClaimLost(network, account)


def hand_to_api(c: PipelineDeps, network: str, account: str, pipeline_source: str, now: dt.datetime | None = None, reason: str | None = None,
                *, claim_token: str | None, **fields: Any) -> bool:
    """process_account gives the account to the rate-limited API pipeline.

    PROCESSING -> PENDING first, then the api-fallback task (named by the claim token, so a
    retried hand-over never enqueues twice). If enqueueing raises, the caller answers 503
    and the lineage task is retried: the row is PENDING again, so nothing is lost.
    """
    now = _now(c, now)
    fields.update(pipeline_source=pipeline_source, updated_at=now, last_pipeline_attempt=now)
    if reason:
        fields["last_error"] = reason[:500]
    if not c.store.transition_lineage(network, account, (Status.PROCESSING.value,), Status.PENDING.value, fence=claim_token, **fields):
        return False
    token = claim_token or "0"
    c.queue.enqueue(API_QUEUE, task_payload(network, account, "lineage", token), purpose="lineage", generation=token)
    return True


def continue_later(c: PipelineDeps, network: str, account: str, cursor: str, pages_done: int, now: dt.datetime | None = None, delay_s: float = 0.0,
                   *, claim_token: str | None) -> bool:
    """A children crawl used up its time budget: checkpoint, release, enqueue the continuation.

    False when the claim was lost. ContinuationNotEnqueued when the queue failed: the row is
    PENDING with its checkpoint, so the caller answers 5xx and the queue's retry of its own task
    claims it again and resumes from the checkpoint (no wait for reset_stale's sweep).
    """
    now = _now(c, now)
    if not c.store.transition_lineage(
        network, account, (Status.PROCESSING.value,), Status.PENDING.value, fence=claim_token, children_cursor=cursor, updated_at=now
    ):
        return False
    gen = f"p{pages_done}"
    try:
        c.queue.enqueue(API_QUEUE, task_payload(network, account, "children", gen, cursor=cursor), purpose="children", generation=gen, delay_s=delay_s)
    except Exception as exc:  # noqa: BLE001 - any queue failure: the caller's task is retried instead
        raise ContinuationNotEnqueued(f"continuation of {network}/{account} not enqueued: {type(exc).__name__}: {exc}") from exc
    return True


def complete_account(c: PipelineDeps, network: str, account: str, pipeline_source: str, now: dt.datetime | None = None,
                     *, claim_token: str | None, **fields: Any) -> bool:
    """PROCESSING -> COMPLETE, and the search cache row (if the account was searched) too."""
    now = _now(c, now)
    fields.setdefault("children_complete", True)
    fields.setdefault("last_error", None)
    won = c.store.transition_lineage(
        network,
        account,
        (Status.PROCESSING.value,),
        Status.COMPLETE.value,
        fence=claim_token,
        pipeline_source=pipeline_source,
        updated_at=now,
        last_pipeline_attempt=now,
        **fields,
    )
    if won:
        _mirror_search(c, network, account, Status.COMPLETE.value, now, None)
        from common.lineage_view.fanout import summarize_after_crawl

        summarize_after_crawl(c.store, network, account, now)  # huge fan-outs only; never raises
    return won


def fail_account(c: PipelineDeps, network: str, account: str, error: str, invalid: bool = False, now: dt.datetime | None = None,
                 *, claim_token: str | None) -> bool:
    """PROCESSING -> FAILED (after max attempts) or INVALID (no such account on that network)."""
    now = _now(c, now)
    status = Status.INVALID.value if invalid else Status.FAILED.value
    won = c.store.transition_lineage(
        network, account, (Status.PROCESSING.value,), status, fence=claim_token, last_error=error[:2000], updated_at=now,
        last_pipeline_attempt=now,
    )
    if won:
        _mirror_search(c, network, account, status, now, error[:2000])
    return won


def release_for_retry(c: PipelineDeps, network: str, account: str, error: str, now: dt.datetime | None = None, count_attempt: bool = True,
                      *, claim_token: str | None) -> bool:
    """A transient failure: PROCESSING -> PENDING with retry_count + 1 so the queue's retry can claim it.

    After max_retries the account becomes FAILED instead. Returns True when a retry should follow.
    count_attempt=False (an upstream's 429, our limiter out of budget: back-pressure, not a
    failure) releases without counting an attempt, so waiting for budget never makes an account FAILED.
    claim_token: the worker's own, or the one reset_stale judged stale (never a newer claim's).
    """
    now = _now(c, now)
    rec = c.store.get_lineage(network, account)
    if rec is None or rec.status != Status.PROCESSING.value or (claim_token is not None and rec.claim_token != claim_token):
        return False
    retries = (rec.retry_count or 0) + (1 if count_attempt else 0)
    if count_attempt and retries >= int(c.pipeline_config()["max_retries"]):
        fail_account(c, network, account, f"failed after {retries} attempts: {error}", now=now, claim_token=claim_token)
        return False
    return c.store.transition_lineage(
        network, account, (Status.PROCESSING.value,), Status.PENDING.value, fence=claim_token, retry_count=retries,
        last_error=error[:2000], updated_at=now,
    )


def _mirror_search(c: PipelineDeps, network: str, account: str, status: str, now: dt.datetime, error: str | None) -> None:
    entry = c.store.get_search(network, account)
    if entry is None:
        return
    fields: dict[str, Any] = {"status": status, "updated_at": now, "last_error": error}
    if status == Status.COMPLETE.value:
        fields["last_fetched_at"] = now
        fields["cached_json"] = None  # rebuilt from the store on the next read
    c.store.put_search(network, account, **fields)


@contextlib.contextmanager
def stage(c: PipelineDeps, network: str, account: str, name: str, pipeline_source: str | None = None, run_id: str | None = None) -> Iterator[StageExecution]:
    """Record one stage execution: RUNNING, then SUCCESS or FAILED with its duration and error.

    The body may set `execution.status = "SKIPPED"` to record a skipped stage.
    """
    started = _now(c, None)
    t0 = time.monotonic()
    execution = StageExecution(network, account, name, "RUNNING", started, pipeline_source=pipeline_source, run_id=run_id)
    c.store.record_stage(execution)
    try:
        yield execution
    except BaseException as exc:
        execution.status = "FAILED"
        execution.error_message = f"{type(exc).__name__}: {exc}"[:2000]
        raise
    else:
        if execution.status == "RUNNING":
            execution.status = "SUCCESS"
    finally:
        execution.finished_at = _now(c, None)
        execution.duration_ms = int((time.monotonic() - t0) * 1000)
        c.store.record_stage(execution)
