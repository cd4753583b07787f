"""CloudTasksQueue (the real google-cloud-tasks client) against the aertje Cloud Tasks emulator
(built by local/emulators.sh from the Go module proxy): queues with rate limits and a retry
config created through the API, deterministic names (a duplicate is refused and that counts as
success), HTTP targets with an OIDC token, schedule_time, the dispatch rate honoured end to end,
and a 503 retried with backoff."""
from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from common.queue.cloud_tasks import CloudTasksQueue
from common.queue.port import task_name
from tests.support import random_account, require

pytestmark = [pytest.mark.integration, pytest.mark.emulator]
PROJECT, LOCATION = "stellarmap-test", "europe-west1"
INVOKER = "tasks-invoker@stellarmap-test.iam.gserviceaccount.com"


class Target:
    """Records deliveries; `answers[name]` lists statuses served in order (then 200)."""

    def __init__(self):
        self.hits: list[dict] = []
        self.answers: dict[str, list[int]] = {}
        self.lock = threading.Lock()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                name = headers.get("x-cloudtasks-taskname", "")
                with target.lock:
                    queued = target.answers.get(name) or []
                    status = queued.pop(0) if queued else 200
                    target.hits.append({"t": time.monotonic(), "name": name, "status": status, "body": json.loads(body or b"{}"),
                                        "headers": headers, "path": self.path})
                self.send_response(status)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def by_name(self, name: str) -> list[dict]:
        with self.lock:
            return [h for h in self.hits if h["name"] == name]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def emulator():
    from local.emulators import CloudTasksEmulator, is_built

    require(is_built("cloud-tasks-emulator"), "the Cloud Tasks emulator (run `local/emulators.sh build`)")
    with CloudTasksEmulator(port=0) as emu:
        yield emu


def duration(seconds: float):
    from google.protobuf import duration_pb2

    d = duration_pb2.Duration()
    d.FromTimedelta(dt.timedelta(seconds=seconds))
    return d


@pytest.fixture
def queues(emulator, request):
    """Two fresh queues created through the API, with rate limits and a retry config."""
    client = emulator.client()
    suffix = uuid.uuid4().hex[:10]
    parent = f"projects/{PROJECT}/locations/{LOCATION}"
    rate = getattr(request, "param", {"rate": 4.0, "burst": 2, "concurrent": 2})
    ids = {"lineage": f"lineage-{suffix}", "api-fallback": f"api-fallback-{suffix}"}
    for qid in ids.values():
        client.create_queue(request={"parent": parent, "queue": {
            "name": f"{parent}/queues/{qid}",
            "rate_limits": {"max_dispatches_per_second": rate["rate"], "max_burst_size": rate["burst"],
                            "max_concurrent_dispatches": rate["concurrent"]},
            "retry_config": {"max_attempts": 5, "min_backoff": duration(0.5), "max_backoff": duration(4), "max_doublings": 3},
        }})
    got = client.get_queue(request={"name": f"{parent}/queues/{ids['lineage']}"})
    assert got.rate_limits.max_dispatches_per_second == rate["rate"] and got.rate_limits.max_burst_size == rate["burst"]
    assert got.retry_config.min_backoff.total_seconds() == 0.5 and got.retry_config.max_attempts == 5
    target = Target()
    q = CloudTasksQueue(PROJECT, LOCATION, ids, {"lineage": target.url + "process_account", "api-fallback": target.url + "api_fallback"},
                        invoker_sa=INVOKER, emulator_host=emulator.host)
    yield q, target
    q.close()
    target.close()
    client.transport.close()


def payload(account, purpose="lineage", gen=0):
    return {"network": "public", "account": account, "purpose": purpose, "generation": gen}


def jwt_claims(token: str) -> dict:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_a_task_reaches_its_function_with_an_oidc_token_and_a_duplicate_is_refused(queues):
    q, target = queues
    a = random_account()
    assert q.enqueue("lineage", payload(a), purpose="lineage", generation=0) is True
    assert q.enqueue("lineage", payload(a), purpose="lineage", generation=0) is False  # AlreadyExists -> success
    name = task_name("public", a, "lineage", 0)
    wait_for(lambda: target.by_name(name), what="the delivery")
    time.sleep(1.0)  # a duplicate would have been dispatched by now
    [hit] = target.by_name(name)
    assert hit["path"] == "/process_account" and hit["body"] == payload(a)
    assert hit["headers"]["content-type"] == "application/json"
    scheme, token = hit["headers"]["authorization"].split(" ", 1)
    claims = jwt_claims(token)
    assert scheme == "Bearer" and claims["email"] == INVOKER and claims["aud"] == target.url + "process_account"
    # Once done, the name is still refused for a while (Cloud Tasks' de-duplication window).
    wait_for(lambda: not q.has_live_task("lineage", name), what="the task to finish")
    assert q.enqueue("lineage", payload(a), purpose="lineage", generation=0) is False
    assert q.enqueue("lineage", payload(a), purpose="lineage", generation=1) is True


def test_live_tasks_and_has_live_task(queues):
    q, target = queues
    a = random_account()
    q.enqueue("api-fallback", payload(a, "children", "p2"), purpose="children", generation="p2", delay_s=30)
    name = task_name("public", a, "children", "p2")
    assert q.has_live_task("api-fallback", name) is True
    assert name in q.live_tasks("api-fallback")
    assert q.has_live_task("api-fallback", task_name("public", a, "children", "p3")) is False
    assert q.live_tasks("lineage") == set()


def test_schedule_time_delays_the_dispatch(queues):
    q, target = queues
    a = random_account()
    t0 = time.monotonic()
    q.enqueue("api-fallback", payload(a, "children", "p1"), purpose="children", generation="p1", delay_s=1.5)
    name = task_name("public", a, "children", "p1")
    wait_for(lambda: target.by_name(name), what="the delayed delivery")
    assert target.by_name(name)[0]["t"] - t0 >= 1.4
    assert target.by_name(name)[0]["path"] == "/api_fallback"


def test_the_dispatch_rate_is_honoured_end_to_end(queues):
    q, target = queues
    rate, burst = 4.0, 2
    names = []
    for _ in range(12):
        a = random_account()
        q.enqueue("lineage", payload(a), purpose="lineage")
        names.append(task_name("public", a, "lineage", 0))
    wait_for(lambda: all(target.by_name(n) for n in names), what="all deliveries")
    times = sorted(h["t"] for n in names for h in target.by_name(n))
    assert len(times) == 12
    # Token bucket: any k consecutive dispatches span at least (k - burst) / rate seconds (one token of slack).
    for i in range(len(times)):
        for j in range(i + 1, len(times)):
            assert times[j] - times[i] >= (j - i + 1 - burst - 1) / rate, (i, j, times[j] - times[i])


def test_a_503_is_retried_with_backoff(queues):
    q, target = queues
    a = random_account()
    name = task_name("public", a, "lineage", 0)
    target.answers[name] = [503, 503]
    q.enqueue("lineage", payload(a), purpose="lineage")
    wait_for(lambda: len(target.by_name(name)) >= 3, what="two retries")
    hits = target.by_name(name)
    assert [h["status"] for h in hits] == [503, 503, 200]
    assert [h["headers"]["x-cloudtasks-taskretrycount"] for h in hits] == ["0", "1", "2"]
    gaps = [b["t"] - a_["t"] for a_, b in zip(hits, hits[1:])]
    assert gaps[0] >= 0.45 and gaps[1] >= 0.95, gaps  # min_backoff 0.5 s, then doubled (lower bounds)
    wait_for(lambda: not q.has_live_task("lineage", name), what="the task to finish")


def test_a_missing_queue_is_an_error_not_a_silent_loss(emulator):
    q = CloudTasksQueue(PROJECT, LOCATION, {"lineage": "no-such-queue", "api-fallback": "no-such-either"},
                        {"lineage": "http://127.0.0.1:9/", "api-fallback": "http://127.0.0.1:9/"}, invoker_sa=INVOKER,
                        emulator_host=emulator.host)
    from google.api_core import exceptions

    with pytest.raises(exceptions.NotFound):
        q.enqueue("lineage", payload(random_account()), purpose="lineage")
    q.close()
