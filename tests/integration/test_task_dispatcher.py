"""The local dispatcher end to end: tasks written by SQLiteTaskQueue, delivered over real HTTP
to a target server, with Cloud Tasks semantics (rate, burst, concurrency, retries with backoff, max
attempts), and no task lost when the dispatcher process is SIGKILLed and started again."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from common.queue.sqlite_queue import SQLiteTaskQueue, TaskDB
from common.queue.rates import QueueLimits
from local.task_dispatcher import Dispatcher, DispatcherBusy, QueueSpec
from tests.support import ROOT, free_port, random_account

pytestmark = pytest.mark.integration
TOKEN = "dispatch-token"


class Target:
    """An HTTP target recording every delivery; `answers` maps a task name to a list of statuses
    served in order (then 200); `delay_s` holds each request that long."""

    def __init__(self, port: int = 0, delay_s: float = 0.0):
        self.hits: list[dict] = []
        self.answers: dict[str, list[int]] = {}
        self.delay_s = delay_s
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                name = self.headers.get("X-CloudTasks-TaskName", "")
                with target.lock:
                    target.in_flight += 1
                    target.max_in_flight = max(target.max_in_flight, target.in_flight)
                    queued = target.answers.get(name) or []
                    status = queued.pop(0) if queued else 200
                if target.delay_s:
                    time.sleep(target.delay_s)
                with target.lock:
                    target.in_flight -= 1
                    target.hits.append({"t": time.monotonic(), "name": name, "status": status, "body": json.loads(body),
                                        "headers": {k.lower(): v for k, v in self.headers.items()}})
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def names(self) -> list[str]:
        with self.lock:
            return [h["name"] for h in self.hits]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def target():
    t = Target()
    yield t
    t.close()


def limits(**kw) -> QueueLimits:
    base = dict(max_dispatches_per_second=100.0, max_burst_size=100, max_concurrent_dispatches=10, max_attempts=5,
                min_backoff_s=0.2, max_backoff_s=2.0, max_doublings=3)
    base.update(kw)
    return QueueLimits(**base)


def enqueue(db_path, n: int, queue: str = "lineage", delay_s: float = 0.0) -> list[str]:
    q = SQLiteTaskQueue(db_path)
    accounts = [random_account() for _ in range(n)]
    for a in accounts:
        assert q.enqueue(queue, {"network": "public", "account": a, "purpose": "lineage", "generation": 0}, purpose="lineage", delay_s=delay_s)
    q.close()
    return [f"public-{a}-lineage-0" for a in accounts]


def wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def states(db_path) -> dict[str, str]:
    db = TaskDB(db_path)
    try:
        return {t["name"]: t["state"] for t in db.tasks()}
    finally:
        db.close()


def task(db_path, name) -> dict:
    db = TaskDB(db_path)
    try:
        return db.get("lineage", name)
    finally:
        db.close()


def test_a_task_is_posted_with_its_payload_headers_and_token(tmp_path, target):
    db = tmp_path / "tasks.db"
    [name] = enqueue(db, 1)
    with Dispatcher(db, [QueueSpec("lineage", target.url, limits())], token=TOKEN):
        wait_for(lambda: states(db)[name] == "done", what="delivery")
    hit = target.hits[0]
    assert hit["name"] == name and hit["body"]["purpose"] == "lineage" and hit["body"]["network"] == "public"
    assert hit["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert hit["headers"]["x-cloudtasks-queuename"] == "lineage" and hit["headers"]["x-cloudtasks-taskretrycount"] == "0"
    assert hit["headers"]["content-type"] == "application/json"


def test_a_503_is_retried_with_backoff_until_it_succeeds(tmp_path, target):
    db = tmp_path / "tasks.db"
    [name] = enqueue(db, 1)
    target.answers[name] = [503, 503, 429]
    lim = limits(min_backoff_s=0.3, max_doublings=2)
    with Dispatcher(db, [QueueSpec("lineage", target.url, lim)]):
        wait_for(lambda: states(db)[name] == "done", what="the retries")
    hits = target.hits
    assert [h["status"] for h in hits] == [503, 503, 429, 200]
    assert [h["headers"]["x-cloudtasks-taskretrycount"] for h in hits] == ["0", "1", "2", "3"]
    # Each retry waited at least its backoff: 0.3, 0.6, 1.2 s (a lower bound: a slow machine only adds).
    gaps = [b["t"] - a["t"] for a, b in zip(hits, hits[1:])]
    for gap, backoff in zip(gaps, (0.3, 0.6, 1.2)):
        assert gap >= backoff * 0.95, (gaps, backoff)
    row = task(db, name)
    assert row["dispatch_count"] == 4 and row["last_status"] == 200


def test_after_max_attempts_the_task_is_dropped(tmp_path, target):
    db = tmp_path / "tasks.db"
    [name] = enqueue(db, 1)
    target.answers[name] = [500] * 10
    with Dispatcher(db, [QueueSpec("lineage", target.url, limits(max_attempts=3, min_backoff_s=0.05))]):
        wait_for(lambda: states(db)[name] == "dropped", what="the drop")
        time.sleep(0.3)  # no further attempt follows the drop
    assert target.names() == [name] * 3
    assert SQLiteTaskQueue(db).has_live_task("lineage", name) is False


def test_an_unreachable_target_is_retried_until_it_answers(tmp_path):
    db = tmp_path / "tasks.db"
    port = free_port()
    [name] = enqueue(db, 1)
    with Dispatcher(db, [QueueSpec("lineage", f"http://127.0.0.1:{port}/", limits(max_attempts=50, min_backoff_s=0.1, max_backoff_s=0.3))]):
        wait_for(lambda: "Connection" in (task(db, name)["last_error"] or "") and task(db, name)["dispatch_count"] >= 2, what="failed attempts")
        assert states(db)[name] in ("queued", "running")
        late = Target(port=port)  # the function comes up
        try:
            wait_for(lambda: states(db)[name] == "done", what="delivery once the target is up")
        finally:
            late.close()
    assert late.names() == [name]


def test_the_dispatch_rate_and_burst_are_honoured(tmp_path, target):
    db = tmp_path / "tasks.db"
    names = enqueue(db, 14)
    rate, burst = 5.0, 2
    with Dispatcher(db, [QueueSpec("lineage", target.url, limits(max_dispatches_per_second=rate, max_burst_size=burst))]):
        wait_for(lambda: set(states(db).values()) == {"done"}, what="all deliveries")
    times = sorted(h["t"] for h in target.hits)
    assert len(times) == len(names)
    # Token bucket: any k consecutive dispatches span at least (k - burst) / rate seconds
    # (one token of slack for the time between dispatch and arrival).
    for i in range(len(times)):
        for j in range(i + 1, len(times)):
            k = j - i + 1
            assert times[j] - times[i] >= (k - burst - 1) / rate, (i, j, times[j] - times[i])


def test_concurrency_never_exceeds_the_limit(tmp_path):
    slow = Target(delay_s=0.2)
    try:
        db = tmp_path / "tasks.db"
        enqueue(db, 12)
        with Dispatcher(db, [QueueSpec("lineage", slow.url, limits(max_concurrent_dispatches=3))]):
            wait_for(lambda: set(states(db).values()) == {"done"}, what="all deliveries")
        assert len(slow.hits) == 12 and 1 <= slow.max_in_flight <= 3
    finally:
        slow.close()


def test_a_delayed_task_is_not_delivered_before_its_time(tmp_path, target):
    db = tmp_path / "tasks.db"
    t0 = time.monotonic()
    [name] = enqueue(db, 1, delay_s=1.0)
    with Dispatcher(db, [QueueSpec("lineage", target.url, limits())]):
        wait_for(lambda: states(db)[name] == "done", what="the delayed delivery")
    assert target.hits[0]["t"] - t0 >= 0.95


def test_queues_are_dispatched_separately(tmp_path, target):
    other = Target()
    try:
        db = tmp_path / "tasks.db"
        a = enqueue(db, 2, "lineage")
        b = enqueue(db, 3, "api-fallback")
        with Dispatcher(db, [QueueSpec("lineage", target.url, limits()), QueueSpec("api-fallback", other.url, limits())]):
            wait_for(lambda: set(states(db).values()) == {"done"}, what="both queues")
        assert sorted(target.names()) == sorted(a) and sorted(other.names()) == sorted(b)
    finally:
        other.close()


def test_one_dispatcher_per_task_file(tmp_path, target):
    db = tmp_path / "tasks.db"
    with Dispatcher(db, [QueueSpec("lineage", target.url, limits())]):
        with pytest.raises(DispatcherBusy, match="another dispatcher"):
            Dispatcher(db, [QueueSpec("lineage", target.url, limits())]).start()


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="queue name"):
        QueueSpec.from_json({"name": "nope", "url": "http://127.0.0.1:1/", "limits": {}})
    with pytest.raises(ValueError, match="url"):
        QueueSpec.from_json({"name": "lineage", "url": "ftp://x", "limits": {}})
    with pytest.raises(ValueError, match="max_dispatches_per_second"):
        Dispatcher("/tmp/x.db", [QueueSpec("lineage", "http://127.0.0.1:1/", limits(max_dispatches_per_second=0))])


def _dispatcher_proc(tmp_path: Path, db: Path, url: str) -> subprocess.Popen:
    cfg = tmp_path / "dispatcher.json"
    cfg.write_text(json.dumps({"db": str(db), "queues": [QueueSpec("lineage", url, limits(max_concurrent_dispatches=1, max_dispatches_per_second=20)).to_json()]}))
    log = open(tmp_path / "dispatcher.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "local.task_dispatcher", "--config", str(cfg)], cwd=ROOT,
                            env={**os.environ, "INTERNAL_TOKEN": TOKEN}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def test_a_sigkilled_dispatcher_loses_no_task_after_restart(tmp_path):
    slow = Target(delay_s=0.1)
    db = tmp_path / "tasks.db"
    names = enqueue(db, 30)
    proc = _dispatcher_proc(tmp_path, db, slow.url)
    try:
        wait_for(lambda: len(slow.hits) >= 5, what="the first deliveries")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        left = [n for n, s in states(db).items() if s != "done"]
        assert left, "the kill came too late to leave work queued"
        more = enqueue(db, 5)  # functions keep enqueueing while no dispatcher runs
        proc = _dispatcher_proc(tmp_path, db, slow.url)
        wait_for(lambda: set(states(db).values()) == {"done"}, timeout=120, what="every task after the restart")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        slow.close()
    delivered = slow.names()
    assert set(names + more) <= set(delivered)
    # At least once: only a task in flight at the kill may have been delivered twice.
    assert len(delivered) - len(set(delivered)) <= 1
    assert "recovered" in (tmp_path / "dispatcher.log").read_text() or len(delivered) == len(set(delivered))


def test_the_dispatcher_command_stops_cleanly_on_sigterm(tmp_path, target):
    db = tmp_path / "tasks.db"
    proc = _dispatcher_proc(tmp_path, db, target.url)
    [name] = enqueue(db, 1)
    wait_for(lambda: states(db).get(name) == "done", what="delivery")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def test_the_dispatcher_command_reports_a_bad_config(tmp_path):
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"queues": []}))
    out = subprocess.run([sys.executable, "-m", "local.task_dispatcher", "--config", str(cfg)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and out.stderr.startswith("dispatcher: ")
