"""hva_recalc on both stores: rankings from the balance index (never a lineage scan), events,
0 events on a quiet rerun, is_hva, configuration, the cron record, and the handler's failure paths."""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from common.clock import SettableClock
from common.domain import CronRun
from common.handlers import hva_recalc
from common.hva import recalc_network
from tests.integration.stats_fixtures import app_for, auth, container, recording
from tests.support import random_account

pytestmark = pytest.mark.integration
T0 = dt.datetime(2026, 2, 1, 10, tzinfo=dt.timezone.utc)
THRESHOLDS = [10_000, 50_000, 100_000]


def _seed(store, balances: dict[str, int], network="public"):
    for account, bal in balances.items():
        old = store.get_lineage(network, account)
        new = Decimal(bal)
        store.put_lineage(network, account, xlm_balance=new)
        store.set_balance(network, account, new, old.xlm_balance if old else None)


def _board(store, t, network="public"):
    return [(e.rank, e.stellar_account, e.xlm_balance) for e in store.get_leaderboard(network, t)[1]]


def test_first_run_ranks_every_threshold_and_marks_hvas(own_store):
    store = own_store
    accts = {random_account(): b for b in (5, 9_999, 10_000, 49_999, 50_000, 75_000, 120_000, 2_000_000)}
    _seed(store, accts)
    _seed(store, {random_account(): 3_000_000}, network="testnet")  # never mixed in
    res = recalc_network(store, "public", THRESHOLDS, 10, T0)
    rich = sorted(((b, a) for a, b in accts.items() if b >= 10_000), key=lambda x: -x[0])
    assert _board(store, 10_000) == [(i + 1, a, Decimal(b)) for i, (b, a) in enumerate(rich)]
    assert [a for _, a, _ in _board(store, 50_000)] == [a for b, a in rich if b >= 50_000]
    assert [a for _, a, _ in _board(store, 100_000)] == [a for b, a in rich if b >= 100_000]
    assert res.accounts_read == 6 and res.hva_set == 6
    assert {t.threshold: t.events["ENTERED"] for t in res.thresholds} == {10_000: 6, 50_000: 4, 100_000: 2}
    for a, b in accts.items():
        assert store.get_lineage("public", a).is_hva is (True if b >= 10_000 else None)
    events = store.get_hva_events("public", 50_000, T0 - dt.timedelta(hours=1), T0, 100)
    assert {e.event_type for e in events} == {"ENTERED"} and len(events) == 4
    top = next(e for e in events if e.new_rank == 1)
    assert top.new_balance == Decimal(2_000_000) and top.old_rank is None


def test_second_run_with_no_balance_change_writes_zero_events_and_no_snapshot(own_store):
    store = own_store
    _seed(store, {random_account(): 10_000 * (i + 1) for i in range(30)})
    recalc_network(store, "public", THRESHOLDS, 10, T0)
    rec = recording(store)
    try:
        res = recalc_network(rec, "public", THRESHOLDS, 10, T0 + dt.timedelta(hours=1))
        assert res.events_written == 0 and res.hva_flag_writes == 0
        names = [n for n, _ in rec.calls]
        assert "_add_hva_events" not in names and "_put_leaderboard" not in names and "_put_row" not in names
        # The lineage table is never scanned: balance buckets and leaderboard partitions only.
        assert "_scan" not in names and "_get_lineages" not in names
        assert set(names) <= {"_read_balance_bucket", "_get_leaderboard"}
        assert len(store.get_hva_events("public", 10_000, T0, T0 + dt.timedelta(hours=2), 1000)) == 30
    finally:
        rec.close()


def test_moves_exits_and_entries_between_runs(own_store):
    store = own_store
    accts = [random_account() for _ in range(25)]
    # ranks 1..25 at 100,000+ (all on every board)
    _seed(store, {a: 200_000 - i * 1000 for i, a in enumerate(accts)})
    recalc_network(store, "public", THRESHOLDS, 10, T0)
    climber, faller, leaver, newcomer = accts[20], accts[2], accts[5], random_account()
    _seed(store, {climber: 500_000, faller: 150_000, leaver: 9_000, newcomer: 60_000})
    t1 = T0 + dt.timedelta(hours=1)
    res = recalc_network(store, "public", THRESHOLDS, 10, t1)
    ev = {(e.event_type, e.stellar_account): e for e in store.get_hva_events("public", 10_000, t1, t1, 100)}
    up = ev[("RANK_UP", climber)]
    assert (up.old_rank, up.new_rank, up.old_balance, up.new_balance, up.pct_change) == (21, 1, Decimal(180_000), Decimal(500_000), 177.7778)
    down = ev[("RANK_DOWN", faller)]
    assert (down.old_rank, down.new_rank) == (3, 24)
    gone = ev[("EXITED", leaver)]
    assert (gone.old_rank, gone.new_rank, gone.new_balance, gone.pct_change) == (6, None, Decimal(9_000), -95.3846)
    came = ev[("ENTERED", newcomer)]
    assert came.new_rank == 25 and came.old_balance is None
    # the same moves at 100,000: the newcomer (60,000) and the leaver are not on it
    ev100 = {(e.event_type, e.stellar_account) for e in store.get_hva_events("public", 100_000, t1, t1, 100)}
    assert ("EXITED", leaver) in ev100 and ("ENTERED", newcomer) not in ev100
    assert store.get_lineage("public", leaver).is_hva is False
    assert store.get_lineage("public", newcomer).is_hva is True
    assert res.hva_flag_writes == 2
    # per-account feed
    feed = store.get_hva_events_for_account("public", leaver, t1.date())  # newest first
    assert [(e.event_type, e.event_time) for e in feed] == [("EXITED", t1)] * 3 + [("ENTERED", T0)] * 3


def test_thresholds_and_rank_change_minimum_come_from_config(own_store):
    store = own_store
    clock = SettableClock(T0)
    store.set_config("hva_thresholds", [25_000, 1_000], T0)
    store.set_config("hva_rank_change_min", 2, T0)
    accts = [random_account() for _ in range(5)]
    _seed(store, {a: 30_000 - i * 1000 for i, a in enumerate(accts)})
    c = container(store, clock)
    report = hva_recalc.run(c, ["public"], T0)
    per = {t["threshold"]: t for t in report["networks"][0]["thresholds"]}
    assert set(per) == {1_000, 25_000} and per[25_000]["ranked"] == 5
    _seed(store, {accts[4]: 40_000})  # rank 5 -> 1: up 4 >= 2
    _seed(store, {accts[0]: 29_500})  # rank 1 -> 2: down 1 < 2, no event
    report = hva_recalc.run(c, ["public"], T0 + dt.timedelta(hours=1))
    per = {t["threshold"]: t["events"] for t in report["networks"][0]["thresholds"]}
    assert per[25_000]["RANK_UP"] == 1 and per[25_000]["RANK_DOWN"] == 0


def test_a_retired_lowest_threshold_clears_its_flags(own_store):
    store = own_store
    mid, rich = random_account(), random_account()
    _seed(store, {mid: 20_000, rich: 80_000})
    recalc_network(store, "public", [10_000, 50_000], 10, T0)
    assert store.get_lineage("public", mid).is_hva is True
    recalc_network(store, "public", [50_000], 10, T0 + dt.timedelta(hours=1))
    assert store.get_lineage("public", mid).is_hva is False and store.get_lineage("public", rich).is_hva is True
    assert store.get_leaderboard("public", 10_000)[1] == []


def test_handler_runs_records_cron_and_maintains_stats(own_store):
    store = own_store
    clock = SettableClock(T0)
    c = container(store, clock)
    app = app_for(hva_recalc.handle, c).test_client()
    _seed(store, {random_account(): 60_000, random_account(): 15_000})
    r = app.post("/", json={"network": "public"}, headers=auth())
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["status"] == "ok" and body["events_written"] == 3 and body["networks"][0]["network"] == "public"
    assert body["reconcile"]["through"] == {"public": "2026-02-01T09"}
    run = store.get_cron_runs("hva_recalc", 1)[0]
    assert run.status == "SUCCESS" and run.details["events_written"] == 3 and run.run_at == T0
    clock.advance(3600)
    r = app.post("/", data="", headers=auth())  # no body: both networks
    assert r.status_code == 200 and r.get_json()["events_written"] == 0
    assert [n["network"] for n in r.get_json()["networks"]] == ["public", "testnet"]


@pytest.mark.parametrize(
    "kwargs, status, code",
    [
        ({}, 401, "unauthenticated"),
        ({"headers": {"Authorization": "Bearer wrong"}}, 403, "forbidden"),
        ({"headers": auth(), "method": "GET"}, 405, "method_not_allowed"),
        ({"headers": auth(), "json": {"network": "mainnet"}}, 400, "invalid_network"),
        ({"headers": auth(), "json": {"network": "public", "drop": True}}, 400, "unknown_parameter"),
        ({"headers": auth(), "data": "{not json", "content_type": "application/json"}, 400, "invalid_json"),
        ({"headers": auth(), "json": ["public"]}, 400, "invalid_json"),
    ],
)
def test_handler_refuses_bad_callers_and_input_and_writes_nothing(own_store, kwargs, status, code):
    store = own_store
    _seed(store, {random_account(): 60_000})
    app = app_for(hva_recalc.handle, container(store, SettableClock(T0))).test_client()
    kwargs = dict(kwargs)
    method = kwargs.pop("method", "POST")
    r = app.open("/", method=method, **kwargs)
    assert r.status_code == status and r.get_json()["error"]["code"] == code and r.get_json()["error"]["message"]
    assert store.get_leaderboard("public", 10_000)[1] == [] and store.get_cron_runs("hva_recalc", 5) == []


def test_a_failing_run_answers_503_and_records_failed(own_store):
    store = own_store
    _seed(store, {random_account(): 60_000})
    broken = recording(store, fail={"_read_balance_bucket": ConnectionError("balance index unreachable")})
    try:
        app = app_for(hva_recalc.handle, container(broken, SettableClock(T0))).test_client()
        r = app.post("/", json={"network": "public"}, headers=auth())
        assert r.status_code == 503 and r.headers["Retry-After"] == "60"
        assert r.get_json()["error"]["code"] == "recalc_failed" and "balance index unreachable" in r.get_json()["error"]["message"]
        run = store.get_cron_runs("hva_recalc", 1)[0]
        assert run.status == "FAILED" and "balance index unreachable" in run.details["error"]
        assert store.get_leaderboard("public", 10_000)[1] == []
    finally:
        broken.close()


def test_schema_behind_is_503_naming_what_is_missing(tmp_path):
    from common.store.schema import load_migrations
    from common.store.sqlite import SQLiteStore
    from common.store import migrations

    store = SQLiteStore(tmp_path / "old.db")
    migrations.migrate(store, migrations=[m for m in load_migrations() if m.version != "0006"])
    app = app_for(hva_recalc.handle, container(store, SettableClock(T0))).test_client()
    r = app.post("/", json={}, headers=auth())
    body = r.get_json()
    assert r.status_code == 503 and body["error"]["code"] == "schema_behind"
    assert "0006_hva_stats" in body["error"]["details"]["missing_migrations"]
    assert "pipeline_state" in body["error"]["details"]["missing_columns"]
    store.close()


def test_cron_health_keeps_every_run(own_store):
    store = own_store
    for i in range(3):
        store.record_cron_run(CronRun("hva_recalc", T0 + dt.timedelta(hours=i), "SUCCESS", 5, {"i": i}))
    runs = store.get_cron_runs("hva_recalc", 10)
    assert [r.details["i"] for r in runs] == [2, 1, 0]
    assert json.dumps(runs[0].details) == '{"i": 2}'
