"""reset_stale on both stores (the embedded SQLite and the real Cassandra), with the persistent
local queue: two runs at the same time reset each stuck account once and enqueue it once, and
FAILED/INVALID rows are left as they are."""
from __future__ import annotations

import datetime as dt
import threading

import pytest

from common import pipeline
from common.bootstrap import Container
from common.clock import SettableClock
from common.config import Settings
from common.handlers.reset_stale import run
from common.queue.sqlite_queue import SQLiteTaskQueue
from common.queue.port import task_name
from tests.support import random_account

pytestmark = pytest.mark.integration
T0 = dt.datetime(2026, 5, 1, 8, tzinfo=dt.timezone.utc)


def container(store, db_path, when):
    clock = SettableClock(when)
    return Container(Settings.from_env(env={}), clock, store=store, queue=SQLiteTaskQueue(db_path, clock))


def test_two_concurrent_runs_do_no_harm(store, tmp_path):
    db = tmp_path / "tasks.sqlite3"
    setup = container(store, db, T0)
    stuck = [random_account() for _ in range(6)]
    lost = [random_account() for _ in range(4)]
    for a in stuck + lost:
        assert pipeline.request_lineage(setup, "public", a, T0)
    now = T0.timestamp()
    for a in stuck + lost:  # the dispatcher delivered every task ...
        t = setup.queue.db.claim_due("lineage", now, "d")
        setup.queue.db.finish("lineage", t["name"], "done" if t["name"].split("-")[1] in stuck else "dropped", 200, None, now)
    for a in stuck:  # ... and the workers of these died after their claim
        assert store.claim("public", a, T0)
    failed, invalid = random_account(), random_account()
    for a, inv in ((failed, False), (invalid, True)):
        pipeline.request_lineage(setup, "public", a, T0)
        token = store.claim("public", a, T0)
        pipeline.fail_account(setup, "public", a, "terminal", invalid=inv, now=T0, claim_token=token)
    terminal_before = {a: store.get_lineage("public", a) for a in (failed, invalid)}

    later = T0 + dt.timedelta(hours=3)
    runs = [container(store, db, later), container(store, db, later + dt.timedelta(milliseconds=5))]
    barrier = threading.Barrier(2)
    reports = [None, None]

    def go(i):
        barrier.wait()
        reports[i] = run(runs[i], ["public"], runs[i].clock.now())

    threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    for a in stuck:
        rec = store.get_lineage("public", a)
        assert rec.status == "PENDING" and rec.retry_count == 1, (a, rec.status, rec.retry_count)
    for a in lost:
        rec = store.get_lineage("public", a)
        assert rec.status == "PENDING" and rec.retry_count == 0, (a, rec.status, rec.retry_count)
    live = setup.queue.live_tasks("lineage")
    mine = {n for n in live if n.split("-")[1] in set(stuck + lost)}
    assert mine == ({task_name("public", a, "lineage", 1) for a in stuck}
                    | {task_name("public", a, "lineage", f"s{int(T0.timestamp())}") for a in lost})
    assert {a: store.get_lineage("public", a) for a in (failed, invalid)} == terminal_before
    # Between them, the two runs changed each account once.
    changed = [(ch["account"], ch["action"]) for r in reports for ch in r["changes"] if ch["account"] in set(stuck + lost)]
    done = [x for x in changed if x[1] != "skipped"]
    assert sorted(a for a, _ in done if _ == "reset_to_pending") == sorted(stuck)
    assert sorted(a for a, _ in done if _ == "requeued") == sorted(lost)


def test_every_run_records_its_cron_row(store, tmp_path):
    c = container(store, tmp_path / "t.sqlite3", T0 + dt.timedelta(days=400))
    from flask import Flask, request

    from common.handlers.reset_stale import handle

    app = Flask("r")
    app.add_url_rule("/", "r", lambda: handle(request, c), methods=["POST"])
    before = len(store.get_cron_runs("reset_stale", 1000))
    for i in range(3):
        c.clock.advance(1)
        resp = app.test_client().post("/", json={"network": "testnet", "dry_run": i == 0})
        assert resp.status_code == 200, resp.get_json()
    runs = store.get_cron_runs("reset_stale", 1000)
    assert len(runs) == before + 3 and runs[0].status == "SUCCESS" and runs[2].details["dry_run"] is True
