"""reset_stale: what it resets, re-enqueues, fails and leaves alone; dry runs, the network filter,
the cron record, the HTTP surface. SQLite store, a settable clock, and both queue kinds: one that
can list its live tasks (the local dispatcher's) and one that can only look names up."""
import datetime as dt
import json

import pytest
from flask import Flask, request

from common import pipeline
from common.bootstrap import Container
from common.clock import SettableClock
from common.config import Settings
from common.handlers.reset_stale import handle, run
from common.queue.sqlite_queue import SQLiteTaskQueue
from common.queue.port import task_name
from common.store import migrations
from common.store.sqlite import SQLiteStore
from local.testing.fakes import RecordingQueue
from tests.support import random_account

pytestmark = pytest.mark.unit
T0 = dt.datetime(2026, 3, 1, 12, tzinfo=dt.timezone.utc)
TOKEN = "internal-token"


@pytest.fixture(params=["local", "recording"])
def c(request, tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
    migrations.migrate(store)
    clock = SettableClock(T0)
    queue = SQLiteTaskQueue(tmp_path / "tasks.db", clock) if request.param == "local" else RecordingQueue()
    cont = Container(Settings.from_env(env={}, internal_token=TOKEN), clock, store=store, queue=queue)
    yield cont
    store.close()


def lineage_tasks(c, queue="lineage"):
    if isinstance(c.queue, RecordingQueue):
        return [t["name"] for t in c.queue.tasks if t["queue"] == queue and t["name"] in c.queue.live]
    return sorted(c.queue.live_tasks(queue))


def drain(c):
    """The dispatcher delivered everything (tasks done, names still reserved)."""
    if isinstance(c.queue, RecordingQueue):
        c.queue.live.clear()
        return
    now = c.clock.now().timestamp()
    for q in ("lineage", "api-fallback"):
        while (t := c.queue.db.claim_due(q, now + 10**6, "test")) is not None:
            c.queue.db.finish(q, t["name"], "done", 200, None, now)


def searched(c, account=None, network="public"):
    """An account searched at the current time: PENDING with its task queued."""
    account = account or random_account()
    c.store.transition_search(network, account, None, "PENDING", created_at=c.clock.now(), updated_at=c.clock.now())
    assert pipeline.request_lineage(c, network, account)
    return account


def processing(c, account=None, network="public", source=None):
    account = searched(c, account, network)
    drain(c)
    assert c.store.claim(network, account, c.clock.now())
    if source:
        c.store.put_lineage(network, account, pipeline_source=source)
    return account


def held(c, account, network="public"):
    """The claim token of a row claimed in the test (the worker holding it)."""
    return c.store.get_lineage(network, account).claim_token


def test_processing_older_than_the_limit_goes_back_to_pending_and_is_requeued(c):
    a = processing(c)
    c.clock.advance(31 * 60)
    young = processing(c)
    report = run(c, ["public"], c.clock.now())
    rec = c.store.get_lineage("public", a)
    assert rec.status == "PENDING" and rec.retry_count == 1 and "stuck in PROCESSING for 31 min" in rec.last_error
    assert lineage_tasks(c) == [task_name("public", a, "lineage", 1)]
    assert c.store.get_lineage("public", young).status == "PROCESSING"
    assert report["counts"] == {"reset_to_pending": 1}
    assert report["changes"][0]["account"] == a and report["changes"][0]["queue"] == "lineage"


def test_the_api_path_keeps_its_work_on_the_api_fallback_queue(c):
    a = processing(c, source="BIGQUERY_WITH_API_FALLBACK")
    c.clock.advance(3600)
    run(c, ["public"], c.clock.now())
    assert c.store.get_lineage("public", a).status == "PENDING"
    assert lineage_tasks(c, "api-fallback") == [task_name("public", a, "lineage", 1)] and lineage_tasks(c) == []


def test_after_max_retries_it_becomes_failed_with_last_error(c):
    a = processing(c)
    c.store.put_lineage("public", a, retry_count=4)  # max_retries is 5
    c.clock.advance(3600)
    report = run(c, ["public"], c.clock.now())
    rec = c.store.get_lineage("public", a)
    assert rec.status == "FAILED" and rec.last_error.startswith("failed after 5 attempts: stuck in PROCESSING")
    assert c.store.get_search("public", a).status == "FAILED"
    assert report["counts"] == {"failed": 1} and lineage_tasks(c) == []


def test_a_worker_that_is_still_writing_is_not_stale(c):
    a = processing(c)
    c.clock.advance(40 * 60)
    c.store.put_lineage("public", a, updated_at=c.clock.now() - dt.timedelta(minutes=5))  # a page checkpoint 5 min ago
    report = run(c, ["public"], c.clock.now())
    assert c.store.get_lineage("public", a).status == "PROCESSING" and report["counts"] == {}


def test_pending_with_a_live_task_waits_and_without_one_is_requeued(c):
    waiting = searched(c)
    lost = searched(c)
    c.clock.advance(3 * 3600)
    # `lost`'s task was dropped (max attempts spent); `waiting`'s is still queued (a long backlog).
    if isinstance(c.queue, RecordingQueue):
        c.queue.live.discard(task_name("public", lost, "lineage", 0))
    else:
        c.queue.db.finish("lineage", task_name("public", lost, "lineage", 0), "dropped", 503, "gave up", c.clock.now().timestamp())
    report = run(c, ["public"], c.clock.now())
    assert report["counts"] == {"requeued": 1}
    assert c.store.get_lineage("public", waiting).updated_at == T0
    rec = c.store.get_lineage("public", lost)
    assert rec.status == "PENDING" and rec.retry_count == 0 and rec.updated_at == c.clock.now()
    assert "no task in any queue" in rec.last_error
    assert task_name("public", lost, "lineage", f"s{int(T0.timestamp())}") in lineage_tasks(c)


def test_pending_younger_than_the_limit_is_left_alone(c):
    a = searched(c)
    drain(c)
    c.clock.advance(3600)  # 1 h < 2 h
    assert run(c, ["public"], c.clock.now())["counts"] == {}
    assert c.store.get_lineage("public", a).retry_count == 0


def test_a_task_lost_again_is_enqueued_again_under_a_new_name(c):
    a = searched(c)
    drain(c)
    c.clock.advance(3 * 3600)
    assert run(c, ["public"], c.clock.now())["counts"] == {"requeued": 1}
    first = task_name("public", a, "lineage", f"s{int(T0.timestamp())}")
    assert lineage_tasks(c) == [first]
    drain(c)  # that task was lost too (delivered to a function that was down, then dropped)
    c.clock.advance(3 * 3600)
    assert run(c, ["public"], c.clock.now())["counts"] == {"requeued": 1}
    second = task_name("public", a, "lineage", f"s{int((T0 + dt.timedelta(hours=3)).timestamp())}")
    assert lineage_tasks(c) == [second] and second != first


def test_a_waiting_refresh_keeps_its_re_inquiry_status(c):
    a = processing(c)
    c.store.put_lineage("public", a, stellar_creator_account=random_account())
    pipeline.complete_account(c, "public", a, "API", now=c.clock.now(), claim_token=held(c, a))
    c.clock.advance(13 * 3600)  # past the cache TTL: the next request is a re-inquiry
    assert pipeline.request_lineage(c, "public", a, c.clock.now())
    assert c.store.get_lineage("public", a).status == "RE_INQUIRY"
    drain(c)
    c.clock.advance(3 * 3600)
    assert run(c, ["public"], c.clock.now())["counts"] == {"requeued": 1}
    assert c.store.get_lineage("public", a).status == "RE_INQUIRY" and len(lineage_tasks(c)) == 1


def test_failed_and_invalid_are_never_touched(c):
    f = processing(c)
    pipeline.fail_account(c, "public", f, "boom", now=c.clock.now(), claim_token=held(c, f))
    i = processing(c)
    pipeline.fail_account(c, "public", i, "no such account", invalid=True, now=c.clock.now(), claim_token=held(c, i))
    before = (c.store.get_lineage("public", f), c.store.get_lineage("public", i))
    c.clock.advance(30 * 24 * 3600)
    report = run(c, ["public", "testnet"], c.clock.now())
    assert report["counts"] == {} and report["scanned"] == {"lineage": 0, "cache": 0}
    assert (c.store.get_lineage("public", f), c.store.get_lineage("public", i)) == before


def test_dry_run_reports_the_same_changes_and_writes_nothing(c):
    stuck = processing(c)
    lost = searched(c)
    drain(c)
    c.clock.advance(3 * 3600)
    before = {a: c.store.get_lineage("public", a) for a in (stuck, lost)}
    dry = run(c, ["public"], c.clock.now(), dry_run=True)
    assert dry["dry_run"] is True and dry["counts"] == {"requeued": 1, "reset_to_pending": 1}
    assert {a: c.store.get_lineage("public", a) for a in (stuck, lost)} == before
    assert lineage_tasks(c) == []
    real = run(c, ["public"], c.clock.now())
    assert real["counts"] == dry["counts"]
    assert sorted((ch["account"], ch["action"]) for ch in real["changes"]) == sorted((ch["account"], ch["action"]) for ch in dry["changes"])


def test_the_network_filter_limits_the_run(c):
    pub = processing(c, network="public")
    test = processing(c, network="testnet")
    c.clock.advance(3600)
    report = run(c, ["testnet"], c.clock.now())
    assert report["counts"] == {"reset_to_pending": 1}
    assert c.store.get_lineage("public", pub).status == "PROCESSING"
    assert c.store.get_lineage("testnet", test).status == "PENDING"


def test_a_search_row_left_behind_is_brought_in_line(c):
    done = processing(c)
    c.store.put_lineage("public", done, stellar_creator_account=random_account())
    pipeline.complete_account(c, "public", done, "API", now=c.clock.now(), claim_token=held(c, done))
    c.store.put_search("public", done, status="PENDING", updated_at=c.clock.now())  # a race left it PENDING
    orphan = random_account()
    c.store.transition_search("public", orphan, None, "PENDING", created_at=c.clock.now(), updated_at=c.clock.now())  # search died here
    c.clock.advance(3 * 3600)
    report = run(c, ["public"], c.clock.now())
    assert report["counts"] == {"cache_requeued": 1, "cache_synced": 1}
    assert c.store.get_search("public", done).status == "COMPLETE"
    assert c.store.get_lineage("public", orphan).status == "PENDING"
    assert task_name("public", orphan, "lineage", 0) in lineage_tasks(c)


def test_two_runs_on_the_same_stale_rows_reset_each_once(c):
    accounts = [processing(c) for _ in range(5)]
    c.clock.advance(3600)
    first = run(c, ["public"], c.clock.now())
    second = run(c, ["public"], c.clock.now())
    assert first["counts"] == {"reset_to_pending": 5} and second["counts"] == {}
    assert {c.store.get_lineage("public", a).retry_count for a in accounts} == {1}
    assert sorted(lineage_tasks(c)) == sorted(task_name("public", a, "lineage", 1) for a in accounts)


class RacingStore(SQLiteStore):
    """Runs `race` once, right after the first read of `account`: between reset_stale's judgment of the
    row (the record it returns is from before the race) and its release."""

    account: str | None = None
    race = None

    def _get_lineage(self, network, account):
        rec = super()._get_lineage(network, account)
        if account == self.account and self.race is not None:
            race, self.race = self.race, None
            race()
        return rec


@pytest.fixture
def racing(tmp_path):
    store = RacingStore(tmp_path / "racing.db")
    migrations.migrate(store)
    cont = Container(Settings.from_env(env={}, internal_token=TOKEN), SettableClock(T0), store=store, queue=RecordingQueue())
    yield cont
    store.close()


@pytest.mark.parametrize("meanwhile", ["the worker completes", "the worker hands over and another claims"])
def test_the_release_is_fenced_by_the_claim_judged_stale(racing, meanwhile):
    c = racing
    a = processing(c)
    token = held(c, a)
    c.clock.advance(31 * 60)
    newer = []

    def race():
        if meanwhile == "the worker completes":
            assert pipeline.complete_account(c, "public", a, "API", claim_token=token, num_child_accounts=250)
        else:
            assert pipeline.hand_to_api(c, "public", a, "API", claim_token=token)
            newer.append(c.store.claim("public", a, c.clock.now()))

    c.store.account, c.store.race = a, race
    report = run(c, ["public"], c.clock.now())
    assert report["counts"] == {"skipped": 1}, report
    rec = c.store.get_lineage("public", a)
    if newer:
        assert rec.status == "PROCESSING" and rec.claim_token == newer[0] and rec.retry_count == 0
    else:
        assert rec.status == "COMPLETE" and rec.num_child_accounts == 250
    assert lineage_tasks(c) == [] and lineage_tasks(c, "api-fallback") == ([task_name("public", a, "lineage", token)] if newer else [])


# ---------------------------------------------------------------------------------- HTTP
@pytest.fixture
def app(c):
    flask_app = Flask("reset_stale")
    flask_app.add_url_rule("/", "r", lambda: handle(request, c), methods=["GET", "POST"])
    flask_app.c = c
    return flask_app


def post(app, body, token=TOKEN):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return app.test_client().post("/", data=json.dumps(body), content_type="application/json", headers=headers)


def test_only_internal_callers(app):
    assert post(app, {}, token=None).status_code == 401
    assert post(app, {}, token="wrong").status_code == 403
    assert app.test_client().get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 405
    assert app.c.store.get_cron_runs("reset_stale") == []


@pytest.mark.parametrize("body, code", [({"network": "mainnet"}, "invalid_network"), ({"dry_run": "maybe"}, "invalid_dry_run"),
                                        ({"dry_run": 1.5}, "invalid_dry_run"), ({"everything": True}, "unknown_parameter")])
def test_bad_parameters_are_400_and_run_nothing(app, body, code):
    resp = post(app, body)
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == code
    assert app.c.store.get_cron_runs("reset_stale") == []


def test_every_run_writes_a_cron_record(app):
    a = processing(app.c)
    app.c.clock.advance(3600)
    dry = post(app, {"network": "public", "dry_run": True})
    assert dry.status_code == 200 and dry.get_json()["counts"] == {"reset_to_pending": 1}
    app.c.clock.advance(1)
    real = post(app, {"network": "public", "dry_run": "false"})
    body = real.get_json()
    assert real.status_code == 200 and body["status"] == "ok" and body["counts"] == {"reset_to_pending": 1}
    assert app.c.store.get_lineage("public", a).status == "PENDING"
    runs = app.c.store.get_cron_runs("reset_stale")
    assert [r.status for r in runs] == ["SUCCESS", "SUCCESS"]
    assert runs[0].details["dry_run"] is False and runs[1].details["dry_run"] is True
    assert runs[0].details["counts"] == {"reset_to_pending": 1}


class FlakyStore(SQLiteStore):
    fail_for: set = set()

    def _get_lineage(self, network, account):
        if account in self.fail_for:
            raise ConnectionError("timeout reading one row")
        return super()._get_lineage(network, account)


def test_a_failing_row_is_reported_the_rest_is_done_and_the_run_is_failed(tmp_path):
    store = FlakyStore(tmp_path / "f.db")
    migrations.migrate(store)
    clock = SettableClock(T0)
    c = Container(Settings.from_env(env={}, internal_token=TOKEN), clock, store=store, queue=RecordingQueue())
    good, bad = processing(c), processing(c)
    clock.advance(3600)
    store.fail_for = {bad}
    app = Flask("r")
    app.add_url_rule("/", "r", lambda: handle(request, c), methods=["POST"])
    resp = post(app, {})
    body = resp.get_json()
    assert resp.status_code == 503 and body["status"] == "partial" and body["counts"] == {"reset_to_pending": 1}
    assert bad in body["errors"][0]
    assert store.get_cron_runs("reset_stale")[0].status == "FAILED"
    assert store.get_lineage("public", good).status == "PENDING"

