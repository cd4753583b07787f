"""The local task dispatcher, Cloud Tasks' stand-in: the process that delivers the tasks
common/queue/sqlite_queue.py wrote, with Cloud Tasks' semantics, so the demo behaves like the deployment.

Per queue (the same knobs as a Cloud Tasks queue, common/queue/rates.py:QueueLimits):
- a token bucket of `max_burst_size` tokens refilled at `max_dispatches_per_second`: every
  dispatch takes one token;
- at most `max_concurrent_dispatches` tasks in flight;
- a task is an HTTP POST of its JSON payload to the queue's target, with the X-CloudTasks-*
  headers and, locally, `Authorization: Bearer $INTERNAL_TOKEN` (on GCP: an OIDC token);
- a 2xx answer finishes it; anything else (4xx, 5xx, a refused connection, a timeout after
  `dispatch_deadline_s`) is retried after min_backoff, doubling `max_doublings` times, then
  growing linearly, capped at max_backoff; after `max_attempts` dispatches it is dropped (logged);
- tasks are claimed from SQLite atomically; after a crash or SIGKILL, tasks that were running
  are queued again on the next start, so none is lost (delivery is at least once).

Only one dispatcher may serve a task file at a time (an exclusive lock beside it).

Run it: `python -m local.task_dispatcher --config dispatcher.json` (written by local/stack.py), with the
bearer token in the INTERNAL_TOKEN environment variable.
"""
from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from pathlib import Path
from typing import Any, Callable

from common.clock import Clock, SystemClock
from common.ratelimit import TokenBucket
from common.queue.sqlite_queue import TOMBSTONE_S, TaskDB, epoch
from common.queue.port import ALL_QUEUES
from common.queue.rates import QueueLimits

log = logging.getLogger("local.task_dispatcher")
PURGE_EVERY_S = 60.0
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback targets: never via a proxy


class DispatcherBusy(RuntimeError):
    """Another dispatcher holds the task file's lock."""


def retry_delay(dispatch_count: int, limits: QueueLimits) -> float:
    """Cloud Tasks' backoff before the next attempt, after `dispatch_count` failed dispatches.

    min_backoff doubles `max_doublings` times, then grows linearly by min_backoff * 2^max_doublings,
    capped at max_backoff (e.g. min 10 s, max 300 s, 3 doublings: 10, 20, 40, 80, 160, 240, 300, 300).
    """
    k = max(1, int(dispatch_count))
    d = max(0, int(limits.max_doublings))
    lo = float(limits.min_backoff_s)
    if k - 1 <= d:
        delay = lo * (2 ** (k - 1))
    else:
        delay = lo * (2**d) * (k - d)
    return min(float(limits.max_backoff_s), delay)


@dataclasses.dataclass(frozen=True)
class QueueSpec:
    name: str  # "lineage" | "api-fallback"
    url: str  # the HTTP target (the function's URL)
    limits: QueueLimits

    def to_json(self) -> dict:
        return {"name": self.name, "url": self.url, "limits": dataclasses.asdict(self.limits)}

    @classmethod
    def from_json(cls, raw: dict) -> "QueueSpec":
        if raw.get("name") not in ALL_QUEUES:
            raise ValueError(f"queue name must be one of {', '.join(ALL_QUEUES)}, got {raw.get('name')!r}")
        if not str(raw.get("url", "")).startswith(("http://", "https://")):
            raise ValueError(f"queue {raw['name']}: url must be http(s)://..., got {raw.get('url')!r}")
        return cls(raw["name"], raw["url"], QueueLimits(**raw["limits"]))


class Dispatcher:
    def __init__(
        self,
        db_path: str | os.PathLike,
        queues: list[QueueSpec],
        token: str | None = None,
        clock: Clock | None = None,
        dispatch_deadline_s: float = 600.0,
        poll_s: float = 0.05,
        tombstone_s: float = TOMBSTONE_S,
        on_attempt: Callable[[dict], None] | None = None,
    ):
        if not queues:
            raise ValueError("the dispatcher needs at least one queue")
        for q in queues:
            if not q.limits.max_dispatches_per_second > 0:
                raise ValueError(f"queue {q.name}: max_dispatches_per_second must be > 0")
            if q.limits.max_burst_size < 1:
                raise ValueError(f"queue {q.name}: max_burst_size must be >= 1")
            if q.limits.max_concurrent_dispatches < 1:
                raise ValueError(f"queue {q.name}: max_concurrent_dispatches must be >= 1")
        self.db_path = str(db_path)
        self.db = TaskDB(db_path)
        self.queues = list(queues)
        self.token = token
        self.clock = clock or SystemClock()
        self.deadline = float(dispatch_deadline_s)
        self.poll_s = float(poll_s)
        self.tombstone_s = float(tombstone_s)
        self.on_attempt = on_attempt
        self.owner = uuid.uuid4().hex
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pools: list[ThreadPoolExecutor] = []
        self._lock_file = None
        self._inflight: set = set()
        self._inflight_lock = threading.Lock()
        self.recovered = 0

    # ------------------------------------------------------------ lifecycle
    def start(self) -> "Dispatcher":
        lock_path = self.db_path + ".dispatcher.lock"
        self._lock_file = open(lock_path, "a+")
        try:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.close()
            self._lock_file = None
            raise DispatcherBusy(f"another dispatcher is serving {self.db_path} (lock {lock_path})") from None
        self.recovered = self.db.recover()
        if self.recovered:
            log.warning("recovered %d task(s) that were running when the last dispatcher stopped", self.recovered)
        for spec in self.queues:
            pool = ThreadPoolExecutor(spec.limits.max_concurrent_dispatches, thread_name_prefix=f"deliver-{spec.name}")
            self._pools.append(pool)
            t = threading.Thread(target=self._loop, args=(spec, pool), name=f"dispatch-{spec.name}", daemon=True)
            self._threads.append(t)
            t.start()
        t = threading.Thread(target=self._purge_loop, name="dispatch-purge", daemon=True)
        self._threads.append(t)
        t.start()
        return self

    def stop(self, wait_s: float = 10.0) -> None:
        """Stop taking tasks; in-flight deliveries get wait_s to finish (any left are recovered on the next start)."""
        self._stop.set()
        deadline = time.monotonic() + wait_s
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        for pool in self._pools:
            pool.shutdown(wait=False, cancel_futures=True)
        with self._inflight_lock:
            pending = list(self._inflight)
        _, not_done = futures_wait(pending, timeout=max(0.0, deadline - time.monotonic()))
        self._threads.clear()
        self._pools.clear()
        if self._lock_file is not None:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None
        if not_done:
            # Deliveries still running keep their connections (closing one under a running
            # statement is unsafe); their tasks are recovered by the next start if they never finish.
            log.warning("%d delivery(ies) still in flight at stop", len(not_done))
        else:
            self.db.close()

    def __enter__(self) -> "Dispatcher":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def idle(self) -> bool:
        return self.db.count() == 0

    # ------------------------------------------------------------ the loop
    def _loop(self, spec: QueueSpec, pool: ThreadPoolExecutor) -> None:
        limits = spec.limits
        bucket = TokenBucket(limits.max_dispatches_per_second, limits.max_burst_size, self.clock.monotonic())
        slots = threading.BoundedSemaphore(limits.max_concurrent_dispatches)
        while not self._stop.is_set():
            try:
                if not slots.acquire(timeout=self.poll_s):
                    continue
                wait = bucket.wait_s(self.clock.monotonic())
                if wait > 0:
                    slots.release()
                    self._stop.wait(min(wait, 1.0))
                    continue
                task = self.db.claim_due(spec.name, epoch(self.clock), self.owner)
                if task is None:
                    slots.release()
                    due = self.db.next_due(spec.name)
                    pause = self.poll_s if due is None else min(max(due - epoch(self.clock), 0.0), self.poll_s)
                    self._stop.wait(max(pause, 0.005))
                    continue
                bucket.take(self.clock.monotonic())
                fut = pool.submit(self._deliver_and_release, spec, task, slots)
                with self._inflight_lock:
                    self._inflight.add(fut)
                fut.add_done_callback(self._forget)
            except Exception:  # noqa: BLE001 - a locked or busy database: try again, never die
                log.exception("dispatcher loop error on queue %s", spec.name)
                self._stop.wait(0.5)

    def _forget(self, fut) -> None:
        with self._inflight_lock:
            self._inflight.discard(fut)

    def _deliver_and_release(self, spec: QueueSpec, task: dict, slots: threading.BoundedSemaphore) -> None:
        try:
            self.deliver(spec, task)
        except Exception:  # noqa: BLE001 - the task stays running and is recovered on restart
            log.exception("delivery bookkeeping failed for %s/%s", spec.name, task.get("name"))
        finally:
            slots.release()

    def headers(self, spec: QueueSpec, task: dict) -> dict[str, str]:
        h = {
            "Content-Type": "application/json",
            "User-Agent": "Google-Cloud-Tasks (stellarmap local dispatcher)",
            "X-CloudTasks-QueueName": spec.name,
            "X-CloudTasks-TaskName": task["name"],
            "X-CloudTasks-TaskRetryCount": str(int(task["dispatch_count"]) - 1),
            "X-CloudTasks-TaskExecutionCount": str(int(task["response_count"])),
            "X-CloudTasks-TaskETA": f"{float(task['schedule_time']):.6f}",
        }
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        return h

    def deliver(self, spec: QueueSpec, task: dict) -> int | None:
        """One attempt; records the outcome. Returns the HTTP status (None: no answer)."""
        status: int | None = None
        error: str | None = None
        t0 = time.monotonic()
        req = urllib.request.Request(spec.url, data=task["payload"].encode(), method="POST", headers=self.headers(spec, task))
        try:
            with _DIRECT.open(req, timeout=self.deadline) as resp:
                status = resp.status
                resp.read()
        except urllib.error.HTTPError as exc:
            status = exc.code
            try:
                error = exc.read(500).decode("utf-8", "replace")
            except Exception:  # noqa: BLE001
                error = exc.reason if isinstance(exc.reason, str) else None
        except Exception as exc:  # noqa: BLE001 - refused, reset, timeout: all retried
            error = f"{type(exc).__name__}: {exc}"[:500]
        now = epoch(self.clock)
        attempts = int(task["dispatch_count"])
        ms = int((time.monotonic() - t0) * 1000)
        if status is not None and 200 <= status < 300:
            self.db.finish(spec.name, task["name"], "done", status, None, now)
            outcome = "done"
        elif 0 <= spec.limits.max_attempts <= attempts:
            self.db.finish(spec.name, task["name"], "dropped", status, error, now)
            outcome = "dropped"
            log.error("task %s/%s dropped after %d attempts (last: %s %s)", spec.name, task["name"], attempts, status, error)
        else:
            delay = retry_delay(attempts, spec.limits)
            self.db.retry_later(spec.name, task["name"], status, error, now + delay)
            outcome = f"retry in {delay:g}s"
        log.info("%s %s attempt %d -> %s in %d ms: %s", spec.name, task["name"], attempts, status if status is not None else "no answer", ms, outcome)
        if self.on_attempt is not None:
            self.on_attempt({"queue": spec.name, "name": task["name"], "attempt": attempts, "status": status, "outcome": outcome})
        return status

    def _purge_loop(self) -> None:
        while not self._stop.wait(PURGE_EVERY_S):
            try:
                self.db.purge_finished(epoch(self.clock) - self.tombstone_s)
            except Exception:  # noqa: BLE001
                log.exception("purge of finished tasks failed")


# ---------------------------------------------------------------------------------- command line
def load_config(path: str | os.PathLike) -> dict[str, Any]:
    raw = json.loads(Path(path).read_text())
    if not isinstance(raw, dict) or "db" not in raw or not isinstance(raw.get("queues"), list):
        raise ValueError(f"{path}: expected {{\"db\": PATH, \"queues\": [{{name, url, limits}}], ...}}")
    return raw


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m local.task_dispatcher", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help='JSON: {"db", "queues": [{"name", "url", "limits"}], "dispatch_deadline_s"?}')
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config)
        specs = [QueueSpec.from_json(q) for q in cfg["queues"]]
        d = Dispatcher(cfg["db"], specs, token=os.environ.get("INTERNAL_TOKEN") or None,
                       dispatch_deadline_s=float(cfg.get("dispatch_deadline_s", 600)))
        d.start()
    except (OSError, ValueError, TypeError, KeyError, DispatcherBusy) as exc:
        print(f"dispatcher: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    log.info("dispatching %s from %s", ", ".join(f"{s.name} -> {s.url}" for s in specs), cfg["db"])
    while not stop.wait(0.5):
        pass
    d.stop()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
