"""The TaskQueue contract, run against both adapters: the local SQLite queue with its dispatcher,
and CloudTasksQueue with the Cloud Tasks emulator delivering. Same tests, same expectations."""
from __future__ import annotations

import time
import uuid

import pytest

from common.queue.port import task_name
from common.queue.rates import QueueLimits
from tests.integration.test_cloud_tasks_emulator import INVOKER, LOCATION, PROJECT, Target, duration, wait_for
from tests.support import random_account, require

pytestmark = pytest.mark.integration


@pytest.fixture(params=["local", pytest.param("cloudtasks", marks=pytest.mark.emulator)])
def adapter(request, tmp_path):
    """(queue, target): a TaskQueue whose tasks are delivered to `target`, retrying failures after ~0.3 s."""
    target = Target()
    urls = {"lineage": target.url + "process_account", "api-fallback": target.url + "api_fallback"}
    if request.param == "local":
        from common.queue.sqlite_queue import SQLiteTaskQueue
        from local.task_dispatcher import Dispatcher, QueueSpec

        limits = QueueLimits(50.0, 10, 4, max_attempts=10, min_backoff_s=0.3, max_backoff_s=1.0, max_doublings=1)
        db = tmp_path / "tasks.sqlite3"
        queue = SQLiteTaskQueue(db)
        dispatcher = Dispatcher(db, [QueueSpec(q, u, limits) for q, u in urls.items()]).start()
        yield queue, target
        dispatcher.stop()
        queue.close()
    else:
        from common.queue.cloud_tasks import CloudTasksQueue
        from local.emulators import CloudTasksEmulator, is_built

        require(is_built("cloud-tasks-emulator"), "the Cloud Tasks emulator (run `local/emulators.sh build`)")
        with CloudTasksEmulator(port=0) as emu:
            client = emu.client()
            parent = f"projects/{PROJECT}/locations/{LOCATION}"
            ids = {q: f"{q}-{uuid.uuid4().hex[:8]}" for q in urls}
            for qid in ids.values():
                client.create_queue(request={"parent": parent, "queue": {
                    "name": f"{parent}/queues/{qid}",
                    "rate_limits": {"max_dispatches_per_second": 50, "max_burst_size": 10, "max_concurrent_dispatches": 4},
                    "retry_config": {"max_attempts": 10, "min_backoff": duration(0.3), "max_backoff": duration(1), "max_doublings": 1},
                }})
            queue = CloudTasksQueue(PROJECT, LOCATION, ids, urls, invoker_sa=INVOKER, emulator_host=emu.host)
            yield queue, target
            queue.close()
            client.transport.close()
    target.close()


def payload(account, purpose="lineage", gen=0):
    return {"network": "public", "account": account, "purpose": purpose, "generation": gen}


def test_a_name_is_created_once(adapter):
    q, _ = adapter
    a = random_account()
    assert q.enqueue("lineage", payload(a), purpose="lineage", generation=0, delay_s=60) is True
    assert q.enqueue("lineage", payload(a), purpose="lineage", generation=0, delay_s=60) is False
    assert q.enqueue("lineage", payload(a), purpose="lineage", generation=1, delay_s=60) is True
    assert q.enqueue("api-fallback", payload(a), purpose="lineage", generation=0, delay_s=60) is True


def test_a_waiting_task_is_live_and_listed(adapter):
    q, _ = adapter
    a = random_account()
    q.enqueue("api-fallback", payload(a, "children", "p7"), purpose="children", generation="p7", delay_s=60)
    name = task_name("public", a, "children", "p7")
    assert q.has_live_task("api-fallback", name) and not q.has_live_task("lineage", name)
    assert name in q.live_tasks("api-fallback") and name not in q.live_tasks("lineage")


def test_a_task_is_delivered_then_finished_and_its_name_stays_reserved(adapter):
    q, target = adapter
    a = random_account()
    name = task_name("public", a, "lineage", 0)
    assert q.enqueue("lineage", payload(a), purpose="lineage")
    wait_for(lambda: target.by_name(name), what="delivery")
    hit = target.by_name(name)[0]
    assert hit["path"] == "/process_account" and hit["body"] == payload(a)
    wait_for(lambda: not q.has_live_task("lineage", name), what="the task to finish")
    assert name not in q.live_tasks("lineage")
    assert q.enqueue("lineage", payload(a), purpose="lineage") is False


def test_a_failing_task_stays_live_and_is_retried_until_it_succeeds(adapter):
    q, target = adapter
    a = random_account()
    name = task_name("public", a, "lineage", 0)
    target.answers[name] = [503, 500]
    q.enqueue("lineage", payload(a), purpose="lineage")
    wait_for(lambda: len(target.by_name(name)) >= 1, what="the first attempt")
    assert q.has_live_task("lineage", name)
    wait_for(lambda: [h["status"] for h in target.by_name(name)] == [503, 500, 200], what="the retries")
    wait_for(lambda: not q.has_live_task("lineage", name), what="the task to finish")


def test_a_delay_is_respected(adapter):
    q, target = adapter
    a = random_account()
    name = task_name("public", a, "children", "p1")
    t0 = time.monotonic()
    q.enqueue("api-fallback", payload(a, "children", "p1"), purpose="children", generation="p1", delay_s=1.0)
    wait_for(lambda: target.by_name(name), what="the delayed delivery")
    assert target.by_name(name)[0]["t"] - t0 >= 0.9


def test_an_unknown_queue_is_refused(adapter):
    q, target = adapter
    with pytest.raises(ValueError, match="unknown queue"):
        q.enqueue("default", payload(random_account()), purpose="lineage")
    with pytest.raises(ValueError, match="unknown queue"):
        q.has_live_task("default", "x")
