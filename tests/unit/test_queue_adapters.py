"""The TaskQueue adapters without a server: the local SQLite queue's Cloud Tasks semantics, the
dispatcher's backoff and token bucket, and the Cloud Tasks task message built offline."""
import datetime as dt
import json
import math
import threading

import pytest

from common.clock import SettableClock
from common.config import ConfigError, Settings
from common.queue.cloud_tasks import CloudTasksQueue
from common.queue.sqlite_queue import SQLiteTaskQueue, TaskDB
from common.queue.port import task_name
from common.queue import rates
from common.queue.rates import QueueLimits
from common.ratelimit import TokenBucket
from local.task_dispatcher import retry_delay
from tests.support import random_account

pytestmark = pytest.mark.unit


def payload(account, network="public", purpose="lineage", gen=0):
    return {"network": network, "account": account, "purpose": purpose, "generation": gen}


@pytest.fixture
def local_queue(tmp_path):
    q = SQLiteTaskQueue(tmp_path / "tasks.sqlite3", SettableClock())
    yield q
    q.close()


# ---------------------------------------------------------------------------------- local queue
def test_a_name_is_created_once_and_a_duplicate_is_success_not_error(local_queue):
    a = random_account()
    assert local_queue.enqueue("lineage", payload(a), purpose="lineage", generation=0) is True
    assert local_queue.enqueue("lineage", payload(a), purpose="lineage", generation=0) is False
    assert local_queue.depth("lineage") == 1
    # Another generation, purpose or queue is another task.
    assert local_queue.enqueue("lineage", payload(a), purpose="lineage", generation=1) is True
    assert local_queue.enqueue("api-fallback", payload(a), purpose="lineage", generation=0) is True
    assert local_queue.depth("lineage") == 2 and local_queue.depth("api-fallback") == 1


def test_concurrent_identical_enqueues_from_many_threads_create_one_task(tmp_path):
    path = tmp_path / "tasks.sqlite3"
    a = random_account()
    barrier = threading.Barrier(32)
    results = []

    def worker():
        q = SQLiteTaskQueue(path)  # its own connection, as a separate function process would have
        barrier.wait()
        results.append(q.enqueue("lineage", payload(a), purpose="lineage", generation=0))
        q.close()

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1 and results.count(False) == 31
    assert len(TaskDB(path).tasks()) == 1


def test_a_finished_name_stays_reserved_for_the_tombstone_period(tmp_path):
    clock = SettableClock()
    q = SQLiteTaskQueue(tmp_path / "t.sqlite3", clock, tombstone_s=3600)
    a = random_account()
    name = task_name("public", a, "lineage", 0)
    assert q.enqueue("lineage", payload(a), purpose="lineage")
    task = q.db.claim_due("lineage", clock.now().timestamp(), "w")
    assert task["name"] == name and task["dispatch_count"] == 1
    assert q.has_live_task("lineage", name)
    q.db.finish("lineage", name, "done", 200, None, clock.now().timestamp())
    assert not q.has_live_task("lineage", name) and q.depth("lineage") == 0
    clock.advance(3599)
    assert q.enqueue("lineage", payload(a), purpose="lineage") is False  # recently finished: refused
    clock.advance(2)
    assert q.enqueue("lineage", payload(a), purpose="lineage") is True  # the reservation expired
    assert q.db.get("lineage", name)["dispatch_count"] == 0 and q.has_live_task("lineage", name)


def test_delay_sets_the_schedule_time_and_the_task_is_not_due_before_it(tmp_path):
    clock = SettableClock()
    q = SQLiteTaskQueue(tmp_path / "t.sqlite3", clock)
    a = random_account()
    q.enqueue("api-fallback", payload(a, purpose="children", gen="p3"), purpose="children", generation="p3", delay_s=30)
    now = clock.now().timestamp()
    assert q.db.claim_due("api-fallback", now + 29, "w") is None
    task = q.db.claim_due("api-fallback", now + 30, "w")
    assert task is not None and json.loads(task["payload"])["generation"] == "p3"


def test_live_tasks_lists_queued_and_running_names_only(local_queue):
    a, b, c = (random_account() for _ in range(3))
    for acct in (a, b, c):
        local_queue.enqueue("lineage", payload(acct), purpose="lineage")
    now = local_queue.clock.now().timestamp()
    running = local_queue.db.claim_due("lineage", now, "w")
    done = local_queue.db.claim_due("lineage", now, "w")
    local_queue.db.finish("lineage", done["name"], "done", 200, None, now)
    names = local_queue.live_tasks("lineage")
    assert running["name"] in names and done["name"] not in names and len(names) == 2
    assert local_queue.live_tasks("api-fallback") == set()


def test_recover_requeues_tasks_that_were_running_when_the_dispatcher_died(local_queue):
    a = random_account()
    local_queue.enqueue("lineage", payload(a), purpose="lineage")
    local_queue.db.claim_due("lineage", local_queue.clock.now().timestamp(), "dead-dispatcher")
    assert local_queue.db.count(states=("queued",)) == 0
    assert local_queue.db.recover() == 1
    assert local_queue.db.count(states=("queued",)) == 1


def test_unknown_queue_is_refused_before_anything_is_written(local_queue):
    with pytest.raises(ValueError, match="unknown queue"):
        local_queue.enqueue("bogus", payload(random_account()), purpose="lineage")
    assert local_queue.db.tasks() == []


def test_local_queue_requires_its_database_setting():
    with pytest.raises(ConfigError, match="LOCAL_DISPATCHER_DB"):
        SQLiteTaskQueue.from_settings(Settings.from_env(env={}), SettableClock())


def test_local_queue_refuses_an_in_memory_database():
    with pytest.raises(ValueError, match="LOCAL_DISPATCHER_DB"):
        SQLiteTaskQueue(":memory:")


# ---------------------------------------------------------------------------------- dispatcher rules
def test_backoff_doubles_then_grows_linearly_then_caps():
    # The example in the Cloud Tasks documentation: min 10 s, max 300 s, 3 doublings.
    limits = QueueLimits(1.0, 1, 1, max_attempts=20, min_backoff_s=10, max_backoff_s=300, max_doublings=3)
    assert [retry_delay(n, limits) for n in range(1, 10)] == [10, 20, 40, 80, 160, 240, 300, 300, 300]
    no_doubling = QueueLimits(1.0, 1, 1, min_backoff_s=5, max_backoff_s=600, max_doublings=0)
    assert [retry_delay(n, no_doubling) for n in range(1, 5)] == [5, 10, 15, 20]


def test_token_bucket_allows_the_burst_then_the_rate():
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.wait_s(0.0) == pytest.approx(0.5)
    assert bucket.take(0.5) is True and bucket.take(0.5) is False
    assert bucket.take(100.0) is True  # refills up to the burst, never beyond
    assert sum(bucket.take(100.0) for _ in range(10)) == 2


@pytest.mark.parametrize("rate, burst", [(0, 1), (-1, 1), (1, 0)])
def test_token_bucket_rejects_nonsense(rate, burst):
    with pytest.raises(ValueError):
        TokenBucket(rate, burst, 0.0)


# ---------------------------------------------------------------------------------- api-fallback rate
def test_api_fallback_rate_is_the_share_over_the_calls_per_task_rounded_down():
    # The simulator's budgets (85 Horizon/min, 35 Expert/min, 71%): Horizon binds for the lightest task.
    limits = rates.api_fallback_limits(85 * 60, 35, 71)
    assert limits.max_dispatches_per_second == 1.0058  # 85 x 0.71 / 60 = 1.00583.. tasks/s
    assert limits.max_concurrent_dispatches == rates.API_FALLBACK_MAX_CONCURRENT and limits.max_burst_size == 1
    # With the old assumption (4 Horizon, 1 Expert call per task) and with the measured means.
    assert rates.api_fallback_limits(85 * 60, 35, 71, 4, 1).max_dispatches_per_second == 0.2514
    assert rates.api_fallback_limits(85 * 60, 35, 71, 1.4, 0.4).max_dispatches_per_second == 0.7184
    # Stellar Expert binds when its share per lookup is the smaller one.
    assert rates.api_fallback_limits(3600, 6, 100, 1, 1).max_dispatches_per_second == 0.1
    # The public defaults: 3600/h x 71% / 1 call, exactly (no float rounding down to 0.7099).
    assert rates.api_fallback_limits().max_dispatches_per_second == 0.71


def test_api_fallback_ceiling_is_horizon_share_per_lightest_task_unless_expert_is_starved():
    # The deployed and simulated budgets: the queue may start one task per Horizon call of the share
    # (the lightest task makes one), so it never binds before the limiter does.
    for horizon_per_hour, expert_per_min in ((3600, 50), (85 * 60, 35), (255 * 60, 105)):
        rate = rates.api_fallback_limits(horizon_per_hour, expert_per_min, 71).max_dispatches_per_second
        assert rate == math.floor(horizon_per_hour * 71 / 100 / 3600 * 10_000 + 1e-9) / 10_000
    # A small Stellar Expert budget slows the queue instead (0.4 lookups per task on average).
    assert rates.api_fallback_limits(3600, 6, 71).max_dispatches_per_second == 0.1775  # 6 x 0.71 / 60 / 0.4


@pytest.mark.parametrize("calls", [(0, 1), (1, 0), (-1, 1)])
def test_api_fallback_rate_refuses_calls_per_task_that_are_not_positive(calls):
    with pytest.raises(ValueError, match="calls per task"):
        rates.api_fallback_limits(3600, 50, 71, *calls)


# ---------------------------------------------------------------------------------- Cloud Tasks message
def cloud_queue(**kw):
    args = dict(
        project="proj",
        location="europe-west1",
        queue_ids={"lineage": "stellarmap-lineage", "api-fallback": "projects/proj/locations/europe-west1/queues/stellarmap-api-fallback"},
        target_urls={"lineage": "https://pa.example.run.app", "api-fallback": "https://af.example.run.app"},
        invoker_sa="tasks@proj.iam.gserviceaccount.com",
        clock=SettableClock(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)),
    )
    args.update(kw)
    return CloudTasksQueue(**args)


def test_cloud_task_is_an_http_post_with_oidc_and_a_deterministic_name():
    q = cloud_queue()
    a = random_account()
    task = q.build_task("lineage", payload(a, gen=2), "lineage", 2, 0)
    assert task["name"] == f"projects/proj/locations/europe-west1/queues/stellarmap-lineage/tasks/public-{a}-lineage-2"
    req = task["http_request"]
    assert req["http_method"] == "POST" and req["url"] == "https://pa.example.run.app"
    assert req["oidc_token"] == {"service_account_email": "tasks@proj.iam.gserviceaccount.com", "audience": "https://pa.example.run.app"}
    assert "Authorization" not in req["headers"] and json.loads(req["body"]) == payload(a, gen=2)
    assert "schedule_time" not in task


def test_cloud_task_delay_is_a_schedule_time_and_full_queue_names_are_kept():
    q = cloud_queue()
    a = random_account()
    task = q.build_task("api-fallback", payload(a, purpose="children", gen="p4"), "children", "p4", 90)
    assert task["name"].startswith("projects/proj/locations/europe-west1/queues/stellarmap-api-fallback/tasks/public-")
    assert task["schedule_time"].ToDatetime() == dt.datetime(2026, 1, 1, 0, 1, 30)
    assert task["http_request"]["url"] == "https://af.example.run.app"


def test_with_an_internal_token_the_task_carries_the_bearer_instead_of_oidc():
    q = cloud_queue(invoker_sa=None, internal_token="tok")
    req = q.build_task("lineage", payload(random_account()), "lineage", 0, 0)["http_request"]
    assert req["headers"]["Authorization"] == "Bearer tok" and "oidc_token" not in req


def test_cloud_tasks_settings_name_the_missing_variable():
    env = {"CLOUD_TASKS_PROJECT": "p", "CLOUD_TASKS_LOCATION": "l", "LINEAGE_QUEUE": "q1", "API_FALLBACK_QUEUE": "q2",
           "PROCESS_ACCOUNT_URL": "https://a", "API_FALLBACK_URL": "https://b"}
    for missing in env:
        partial = {k: v for k, v in env.items() if k != missing}
        settings = Settings.from_env(env={}, extra=partial)
        with pytest.raises(ConfigError, match=missing):
            CloudTasksQueue.from_settings(settings, SettableClock())
    with pytest.raises(ConfigError, match="TASKS_INVOKER_SA"):
        CloudTasksQueue.from_settings(Settings.from_env(env={}, extra=env), SettableClock())
    with pytest.raises(ConfigError, match="TASKS_DISPATCH_DEADLINE_S"):
        CloudTasksQueue.from_settings(Settings.from_env(env={}, extra={**env, "TASKS_INVOKER_SA": "sa", "TASKS_DISPATCH_DEADLINE_S": "5"}), SettableClock())
    ok = CloudTasksQueue.from_settings(Settings.from_env(env={}, extra={**env, "TASKS_INVOKER_SA": "sa"}), SettableClock())
    assert ok._client is None  # lazy: nothing is contacted until the first call
    assert ok.paths["lineage"] == "projects/p/locations/l/queues/q1"



def test_the_hubble_sync_queue_is_optional_and_a_sync_task_is_named_by_its_range():
    env = {"CLOUD_TASKS_PROJECT": "p", "CLOUD_TASKS_LOCATION": "l", "LINEAGE_QUEUE": "q1", "API_FALLBACK_QUEUE": "q2",
           "PROCESS_ACCOUNT_URL": "https://a", "API_FALLBACK_URL": "https://b", "TASKS_INVOKER_SA": "sa"}
    without = CloudTasksQueue.from_settings(Settings.from_env(env={}, extra=env), SettableClock())
    body = {"network": "public", "sync_id": "full-20260101t000000", "start": "2020-01-01T00:00:00Z", "end": "2020-01-31T00:00:00Z"}
    with pytest.raises(ConfigError, match="HUBBLE_SYNC_QUEUE"):
        without.build_task("hubble-sync", body, "sync", "full-20260101t000000-20200101T000000", 0)
    for half in ({"HUBBLE_SYNC_QUEUE": "q3"}, {"HUBBLE_SYNC_URL": "https://c"}):
        with pytest.raises(ConfigError, match="HUBBLE_SYNC_"):
            CloudTasksQueue.from_settings(Settings.from_env(env={}, extra={**env, **half}), SettableClock())
    q = CloudTasksQueue.from_settings(Settings.from_env(env={}, extra={**env, "HUBBLE_SYNC_QUEUE": "q3", "HUBBLE_SYNC_URL": "https://c"}),
                                      SettableClock())
    task = q.build_task("hubble-sync", body, "sync", "full-20260101t000000-20200101T000000", 0)
    again = q.build_task("hubble-sync", body, "sync", "full-20260101t000000-20200101T000000", 0)
    other = q.build_task("hubble-sync", {**body, "start": "2020-01-31T00:00:00Z"}, "sync", "full-20260101t000000-20200131T000000", 0)
    assert task["name"] == again["name"] != other["name"] and task["name"].startswith("projects/p/locations/l/queues/q3/tasks/public-sync-sync-")
    assert task["http_request"]["url"] == "https://c" and json.loads(task["http_request"]["body"]) == body
