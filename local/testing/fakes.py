"""Test doubles that subclass our ports (never mock.patch of our own code)."""
from __future__ import annotations

import heapq
import threading
from collections import Counter

from common.queue.port import TaskQueue, task_name_of, validate_queue


class _NamedTasks(TaskQueue):
    """Cloud Tasks' name semantics, shared by the fakes: a duplicate name is refused (and that is success)."""

    def __init__(self):
        self.tasks: list[dict] = []  # every task ever created, in order
        self.names: set[str] = set()
        self.live: set[str] = set()
        self.refused = 0
        self._lock = threading.Lock()

    def enqueue(self, queue, payload, *, purpose, generation=0, delay_s=0.0):
        validate_queue(queue)
        name = task_name_of(payload, purpose, generation)
        with self._lock:
            if name in self.names:
                self.refused += 1
                return False
            self.names.add(name)
            self.live.add(name)
            task = {"queue": queue, "name": name, "payload": dict(payload), "delay_s": delay_s}
            self.tasks.append(task)
            self._accepted(task)
            return True

    def _accepted(self, task: dict) -> None:
        """A new task was taken (under the lock)."""

    def has_live_task(self, queue, name):
        return name in self.live


class RecordingQueue(_NamedTasks):
    """An in-memory TaskQueue that only records: tests pop its tasks themselves."""

    def depth(self, queue):
        return sum(1 for t in self.tasks if t["queue"] == queue and t["name"] in self.live)

    def pop(self, queue: str | None = None) -> dict | None:
        with self._lock:
            for t in self.tasks:
                if t["name"] in self.live and (queue is None or t["queue"] == queue):
                    self.live.discard(t["name"])
                    return t
        return None


class StealsClaims:
    """Store mixin (`class S(StealsClaims, SQLiteStore)`): after the `at`-th matching call of one write
    primitive for `account`, run `steal()` once and carry on. It stands for a worker paused at that
    point while reset_stale released its claim and another worker claimed (and maybe finished) the account.

        store.arm("_add_children", account, steal, at=2)   # also: _add_creation_event, _record_stage, update_claimed,
                                                            # get_lineage (a writer racing a read-then-write)
    """

    _steal = None

    def arm(self, on: str, account: str, steal, at: int = 1, when=None) -> None:
        self._on, self._account, self._steal, self._at, self._when, self._seen = on, account, steal, at, when, 0
        self.stolen = False

    def _after(self, on: str, account: str, detail=None) -> None:
        if self._steal is None or on != self._on or account != self._account or (self._when and not self._when(detail)):
            return
        self._seen += 1
        if self._seen == self._at:
            steal, self._steal = self._steal, None
            steal()
            self.stolen = True

    def _add_children(self, network, creator, children):
        super()._add_children(network, creator, children)
        self._after("_add_children", creator)

    def _add_creation_event(self, event):
        super()._add_creation_event(event)
        self._after("_add_creation_event", event.stellar_account)

    def _record_stage(self, execution):
        super()._record_stage(execution)
        self._after("_record_stage", execution.stellar_account, execution)

    def update_claimed(self, network, account, claim_token, /, **fields):
        won = super().update_claimed(network, account, claim_token, **fields)
        self._after("update_claimed", account)
        return won

    def get_lineage(self, network, account):
        rec = super().get_lineage(network, account)
        self._after("get_lineage", account)
        return rec


class TaskRunner(_NamedTasks):
    """A TaskQueue that runs its own tasks: for tests and benchmarks that drive handlers in-process.

    Cloud Tasks' semantics where they matter: a duplicate name is refused (and that is success),
    `delay_s` and retries wait on the given clock (a SettableClock advances instead of blocking),
    a non-2xx answer is retried after its Retry-After (else `min_backoff_s`) up to `max_attempts`
    dispatches, then dropped (recorded in `dropped`). Delivery is at least once and the order is
    by time of eligibility, then by enqueue order.

        runner = TaskRunner(clock)
        runner.drain({"lineage": lambda payload: (200, None), "api-fallback": ...})
    """

    def __init__(self, clock=None, max_attempts: int = 50, min_backoff_s: float = 5.0):
        super().__init__()
        self.clock = clock
        self.max_attempts = max_attempts
        self.min_backoff_s = min_backoff_s
        self.dispatches: Counter = Counter()  # per queue
        self.answers: Counter = Counter()  # per (queue, status)
        self.dropped: list[dict] = []
        self._heap: list = []
        self._seq = 0

    def _now(self) -> float:
        return self.clock.monotonic() if self.clock is not None else 0.0

    def _accepted(self, task: dict) -> None:
        task["attempts"] = 0
        self._seq += 1
        heapq.heappush(self._heap, (self._now() + max(0.0, task["delay_s"]), self._seq, task))

    def depth(self, queue):
        with self._lock:
            return sum(1 for _, _, t in self._heap if t["queue"] == queue)

    def live_tasks(self, queue):
        with self._lock:
            return {t["name"] for _, _, t in self._heap if t["queue"] == queue}

    def drain(self, handlers: dict, max_dispatches: int = 10_000_000) -> int:
        """Run tasks until none is left; returns the number of dispatches."""
        done = 0
        while done < max_dispatches:
            with self._lock:
                if not self._heap:
                    return done
                eligible_at, _, task = heapq.heappop(self._heap)
            wait = eligible_at - self._now()
            if wait > 0 and self.clock is not None:
                self.clock.sleep(wait)
            task["attempts"] += 1
            self.dispatches[task["queue"]] += 1
            done += 1
            status, retry_after = handlers[task["queue"]](dict(task["payload"]))
            self.answers[(task["queue"], status)] += 1
            if 200 <= status < 300:
                self.live.discard(task["name"])
                continue
            if task["attempts"] >= self.max_attempts:
                self.live.discard(task["name"])
                self.dropped.append(task)
                continue
            backoff = retry_after if retry_after is not None else self.min_backoff_s
            with self._lock:
                self._seq += 1
                heapq.heappush(self._heap, (self._now() + max(0.0, backoff), self._seq, task))
        return done


def call_handler(handle, c, payload=None, method: str = "POST", headers: dict | None = None, raw: bytes | None = None):
    """Call a function handler in-process with a real Flask request (what functions-framework passes)."""
    import flask

    app = flask.Flask("stellarmap-handler-test")
    kwargs = {"data": raw, "content_type": "application/json"} if raw is not None else ({"json": payload} if payload is not None else {})
    with app.test_request_context("/", method=method, headers=headers or {}, **kwargs):
        return handle(flask.request, c)


def http_answer(response) -> tuple[int, float | None]:
    """(status, Retry-After seconds or None) of a handler's Flask response, for TaskRunner.drain."""
    retry = response.headers.get("Retry-After")
    return response.status_code, float(retry) if retry else None
