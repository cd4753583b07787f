"""reset_stale (internal; Cloud Scheduler every 15 minutes, once per network): recover stuck work.

POST JSON `{"network"?: "public"|"testnet", "dry_run"?: bool}` (both networks when absent).
Run-time settings (pipeline_config): stale_processing_minutes (30), stale_pending_hours (2),
max_retries (5).

- PROCESSING for longer than stale_processing_minutes (since its claim or its last write): the
  worker died. pipeline.release_for_retry puts it back to PENDING with retry_count + 1 (or FAILED,
  with last_error, once max_retries is reached) and it is enqueued again on the queue that owns
  its work: the api-fallback queue when its pipeline_source says the API path has it, else the
  lineage queue (pipeline.request_lineage).
- PENDING or RE_INQUIRY for longer than stale_pending_hours with no live task of purpose
  lineage/children on either queue (TaskQueue.live_tasks, listed once per run): its task was lost
  (dropped after max attempts while a function was down, or never created because the queue
  failed). It keeps its status and retry_count (nothing ran, nothing failed), gets updated_at =
  now and last_error saying why, and is enqueued again under a generation derived from the stale
  row (`s<updated_at epoch>`): a new name, since the lost task's may still be reserved.
- A search-cache row PENDING for longer than stale_pending_hours whose lineage row finished is
  brought in line with it; one whose lineage row never got a status (the search died between its
  two writes) is requested again.
- FAILED and INVALID are never touched. dry_run reports the same changes and writes nothing but
  the cron record. Every run writes a cron health record (SUCCESS, or FAILED with the error).

Two runs at the same time do no harm: every status change is a compare-and-set (one run wins, the
other skips that account) and task names are deterministic (a second enqueue is refused).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from typing import Any

from flask import Request

from common import pipeline
from common.domain import NETWORKS, CronRun, InvalidInput, PipelineSource, Status, as_utc, iso, validate_network
from common.http import error_response, internal_post_only, invalid_input_response, json_response, request_params, schema_gate_response
from common.queue.port import QUEUES, task_name
from common.deps import ScheduledDeps

log = logging.getLogger(__name__)
JOB = "reset_stale"
ACTIVE_LIMIT = 10_000  # Store.list_active's maximum per kind
REPORT_LIMIT = 1000  # changes listed in the answer (counts are always complete)
API_SOURCES = (PipelineSource.API.value, PipelineSource.BIGQUERY_WITH_API_FALLBACK.value)
WAITING = (Status.PENDING.value, Status.RE_INQUIRY.value)
LINEAGE_PURPOSES = ("lineage", "children")


@dataclasses.dataclass
class Change:
    network: str
    account: str
    table: str  # lineage | cache
    action: str  # reset_to_pending | failed | requeued | cache_synced | cache_requeued | skipped
    from_status: str | None
    to_status: str | None
    retry_count: int | None = None
    queue: str | None = None
    reason: str = ""

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


class LiveTasks:
    """Which accounts have a live lineage/children task, from one listing per queue and run."""

    def __init__(self, queue):
        self.queue = queue
        self._keys: dict[str, set[str] | None] = {}

    def _listing(self, q: str) -> set[str] | None:
        if q not in self._keys:
            names = self.queue.live_tasks(q)
            if names is None:
                self._keys[q] = None
            else:
                keys = set()
                for name in names:
                    parts = name.split("-", 3)
                    if len(parts) == 4 and parts[2] in LINEAGE_PURPOSES:
                        keys.add(f"{parts[0]}-{parts[1]}")
                self._keys[q] = keys
        return self._keys[q]

    def has(self, rec) -> bool:
        key = f"{rec.network_name}-{rec.stellar_account}"
        for q in QUEUES:
            keys = self._listing(q)
            if keys is None:
                if any(self.queue.has_live_task(q, n) for n in self._candidates(rec, q)):
                    return True
            elif key in keys:
                return True
        return False

    @staticmethod
    def _candidates(rec, q: str) -> list[str]:
        """The names a live task of this row can have when the queue cannot list its tasks."""
        net, acc, rc = rec.network_name, rec.stellar_account, rec.retry_count or 0
        names = [task_name(net, acc, "lineage", rc)]
        if q != "lineage" and rec.claim_token:
            names.append(task_name(net, acc, "lineage", rec.claim_token))
        return names


def _owner_queue(rec) -> str:
    """The API path's work stays on its queue; a refresh (RE_INQUIRY) and the rest start at process_account."""
    if rec.status == Status.RE_INQUIRY.value:
        return pipeline.LINEAGE_QUEUE
    return pipeline.API_QUEUE if rec.pipeline_source in API_SOURCES else pipeline.LINEAGE_QUEUE


def _enqueue(c: ScheduledDeps, rec, now: dt.datetime, generation: Any = None) -> bool:
    """Enqueue the row's work again on the queue that owns it (the row is PENDING or RE_INQUIRY).
    The generation defaults to the row's retry_count. True when this call created the task."""
    if _owner_queue(rec) == pipeline.LINEAGE_QUEUE:
        return pipeline.request_lineage(c, rec.network_name, rec.stellar_account, now, generation=generation)
    gen = (rec.retry_count or 0) if generation is None else generation
    payload = pipeline.task_payload(rec.network_name, rec.stellar_account, "lineage", gen)
    return c.queue.enqueue(pipeline.API_QUEUE, payload, purpose="lineage", generation=gen)


def _minutes(delta: dt.timedelta) -> int:
    return int(delta.total_seconds() // 60)


class Run:
    def __init__(self, c: ScheduledDeps, networks: list[str], now: dt.datetime, dry_run: bool):
        self.c = c
        self.networks = networks
        self.now = now
        self.dry_run = dry_run
        config = c.pipeline_config()
        self.stale_processing = dt.timedelta(minutes=float(config["stale_processing_minutes"]))
        self.stale_pending = dt.timedelta(hours=float(config["stale_pending_hours"]))
        self.max_retries = int(config["max_retries"])
        self.live = LiveTasks(c.queue)
        self.changes: list[Change] = []
        self.counts: dict[str, int] = {}
        self.errors: list[str] = []
        self.scanned = {"lineage": 0, "cache": 0}
        self.truncated = False

    def note(self, change: Change) -> None:
        self.counts[change.action] = self.counts.get(change.action, 0) + 1
        if len(self.changes) < REPORT_LIMIT:
            self.changes.append(change)

    # ------------------------------------------------------------ lineage rows
    def lineage(self) -> None:
        rows = self.c.store.list_active("lineage", ACTIVE_LIMIT)
        self.truncated = self.truncated or len(rows) >= ACTIVE_LIMIT
        for row in rows:
            if row["network_name"] not in self.networks:
                continue
            self.scanned["lineage"] += 1
            status, changed = row.get("status"), row.get("updated_at")
            limit = self.stale_processing if status == Status.PROCESSING.value else self.stale_pending
            if changed is not None and self.now - changed <= limit:
                continue  # its last status change is recent
            try:
                self._lineage_row(row["network_name"], row["stellar_account"])
            except Exception as exc:  # noqa: BLE001 - one bad row never stops the run
                log.exception("reset_stale: %s/%s", row["network_name"], row["stellar_account"])
                self.errors.append(f"{row['network_name']}/{row['stellar_account']}: {type(exc).__name__}: {exc}"[:300])

    def _lineage_row(self, network: str, account: str) -> None:
        rec = self.c.store.get_lineage(network, account)
        if rec is None:
            return
        if rec.status == Status.PROCESSING.value:
            since = max([t for t in (rec.processing_started_at, rec.updated_at) if t is not None], default=None)
            if since is None or self.now - since > self.stale_processing:
                self._reset_processing(rec, since)
        elif rec.status in WAITING:
            since = rec.updated_at or rec.created_at
            if (since is None or self.now - since > self.stale_pending) and not self.live.has(rec):
                self._requeue_waiting(rec, since)

    def _reset_processing(self, rec, since: dt.datetime | None) -> None:
        network, account = rec.network_name, rec.stellar_account
        age = f"{_minutes(self.now - since)} min" if since else "an unknown time"
        reason = f"stuck in PROCESSING for {age} (limit {_minutes(self.stale_processing)} min); reset by reset_stale"
        retries = (rec.retry_count or 0) + 1
        will_fail = retries >= self.max_retries
        if self.dry_run:
            self.note(Change(network, account, "lineage", "failed" if will_fail else "reset_to_pending", rec.status,
                             Status.FAILED.value if will_fail else Status.PENDING.value, retries, None if will_fail else _owner_queue(rec), reason))
            return
        # Fenced by the claim judged stale: a worker that finished meanwhile, or a newer claim, is left alone.
        released = pipeline.release_for_retry(self.c, network, account, reason, now=self.now, claim_token=rec.claim_token)
        after = self.c.store.get_lineage(network, account)
        if will_fail and after is not None and after.status == Status.FAILED.value:
            self.note(Change(network, account, "lineage", "failed", rec.status, after.status, retries, None, after.last_error or reason))
        elif released and after is not None and after.status == Status.PENDING.value:
            _enqueue(self.c, after, self.now)
            self.note(Change(network, account, "lineage", "reset_to_pending", rec.status, after.status, after.retry_count, _owner_queue(after), reason))
        else:
            self.note(Change(network, account, "lineage", "skipped", rec.status, after.status if after else None, None, None,
                             "changed by someone else during the run"))

    def _requeue_waiting(self, rec, since: dt.datetime | None) -> None:
        network, account = rec.network_name, rec.stellar_account
        age = f"{_minutes(self.now - since)} min" if since else "an unknown time"
        reason = f"{rec.status} for {age} (limit {_minutes(self.stale_pending)} min) with no task in any queue; re-enqueued by reset_stale"
        # The new task's name comes from the stale version of the row (its updated_at): runs that
        # judged the same version stale enqueue the same name, and the queue keeps one.
        generation = f"s{int((since or self.now).timestamp())}"
        if self.dry_run:
            self.note(Change(network, account, "lineage", "requeued", rec.status, rec.status, rec.retry_count, _owner_queue(rec), reason))
            return
        if not self.c.store.transition_lineage(network, account, (rec.status,), rec.status, updated_at=self.now, last_error=reason):
            self.note(Change(network, account, "lineage", "skipped", rec.status, None, None, None, "changed by someone else during the run"))
            return
        if _enqueue(self.c, rec, self.now, generation):
            self.note(Change(network, account, "lineage", "requeued", rec.status, rec.status, rec.retry_count, _owner_queue(rec), reason))
        else:
            self.note(Change(network, account, "lineage", "skipped", rec.status, rec.status, None, None, "already re-enqueued by another run"))

    # ------------------------------------------------------------ search-cache rows
    def cache(self) -> None:
        rows = self.c.store.list_active("cache", ACTIVE_LIMIT)
        self.truncated = self.truncated or len(rows) >= ACTIVE_LIMIT
        for row in rows:
            if row["network_name"] not in self.networks:
                continue
            self.scanned["cache"] += 1
            changed = row.get("updated_at")
            if changed is not None and self.now - changed <= self.stale_pending:
                continue
            try:
                self._cache_row(row["network_name"], row["stellar_account"])
            except Exception as exc:  # noqa: BLE001
                log.exception("reset_stale: cache %s/%s", row["network_name"], row["stellar_account"])
                self.errors.append(f"cache {row['network_name']}/{row['stellar_account']}: {type(exc).__name__}: {exc}"[:300])

    def _cache_row(self, network: str, account: str) -> None:
        store = self.c.store
        entry = store.get_search(network, account)
        if entry is None or entry.status not in (Status.PENDING.value, Status.PROCESSING.value, Status.RE_INQUIRY.value):
            return
        rec = store.get_lineage(network, account)
        if rec is not None and rec.status in (Status.COMPLETE.value, Status.FAILED.value, Status.INVALID.value):
            reason = f"the lineage row is {rec.status}"
            if not self.dry_run:
                fields: dict[str, Any] = {"updated_at": self.now, "last_error": rec.last_error, "cached_json": None}
                if rec.status == Status.COMPLETE.value:
                    fields["last_fetched_at"] = rec.last_pipeline_attempt or rec.updated_at or self.now
                if not store.transition_search(network, account, (entry.status,), rec.status, **fields):
                    return
            self.note(Change(network, account, "cache", "cache_synced", entry.status, rec.status, None, None, reason))
        elif rec is None or rec.status is None:
            reason = "searched, but the lineage was never requested (the search stopped between its writes)"
            q = None if self.dry_run else pipeline.LINEAGE_QUEUE
            if not self.dry_run:
                pipeline.request_lineage(self.c, network, account, self.now)
            self.note(Change(network, account, "cache", "cache_requeued", entry.status, Status.PENDING.value, None, q or pipeline.LINEAGE_QUEUE, reason))

    def report(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "networks": self.networks,
            "scanned": self.scanned,
            "truncated": self.truncated,
            "counts": dict(sorted(self.counts.items())),
            "changes": [ch.to_json() for ch in self.changes],
            "errors": self.errors[:100],
        }


def run(c: ScheduledDeps, networks: list[str], now: dt.datetime, dry_run: bool = False) -> dict[str, Any]:
    """One pass (the handler's work; also callable from the CLI and tests)."""
    r = Run(c, networks, now, dry_run)
    r.lineage()
    r.cache()
    return r.report()


def _dry_run(raw: Any) -> bool:
    if raw is None:
        return False
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("true", "1", "false", "0"):
        return raw.strip().lower() in ("true", "1")
    raise InvalidInput("invalid_dry_run", "dry_run must be true or false", "dry_run")


def handle(request: Request, c: ScheduledDeps) -> object:
    refused = internal_post_only(request, c.settings.internal_token, 'use POST with JSON {"network"?: "public"|"testnet", "dry_run"?: bool}')
    if refused is not None:
        return refused
    try:
        params = request_params(request)
        unknown = set(params) - {"network", "dry_run"}
        if unknown:
            raise InvalidInput("unknown_parameter", f"unknown parameter(s): {', '.join(sorted(unknown))}")
        networks = [validate_network(params["network"])] if params.get("network") is not None else list(NETWORKS)
        dry_run = _dry_run(params.get("dry_run"))
    except InvalidInput as exc:
        return invalid_input_response(exc)
    refused = schema_gate_response(c.schema_gate, retry_after_s=60)
    if refused is not None:
        return refused
    now = as_utc(c.clock.now())
    t0 = time.monotonic()
    try:
        report = run(c, networks, now, dry_run)
    except Exception as exc:  # noqa: BLE001 - recorded, then 503 so the scheduler retries
        log.exception("reset_stale failed")
        error = f"{type(exc).__name__}: {exc}"[:500]
        _record(c, CronRun(JOB, now, "FAILED", int((time.monotonic() - t0) * 1000), {"networks": networks, "dry_run": dry_run, "error": error}))
        return error_response("reset_failed", f"reset_stale failed: {error}", 503, headers={"Retry-After": "60"})
    duration_ms = int((time.monotonic() - t0) * 1000)
    failed = bool(report["errors"])
    details = {k: report[k] for k in ("networks", "dry_run", "scanned", "truncated", "counts")}
    if failed:
        details["errors"] = report["errors"][:10]
    _record(c, CronRun(JOB, now, "FAILED" if failed else "SUCCESS", duration_ms, details))
    body = {"status": "partial" if failed else "ok", "run_at": iso(now), "duration_ms": duration_ms, **report}
    if failed:
        return json_response(body, 503, headers={"Retry-After": "60"})
    return json_response(body)


def _record(c: ScheduledDeps, run: CronRun) -> None:
    try:
        c.store.record_cron_run(run)
    except Exception:  # noqa: BLE001 - the store itself may be what failed
        log.exception("could not record the reset_stale run")
