"""The two paths agree with the simulator's truth, kind by kind (issue 13, item 7).

One small simulated network, every kind that the real network makes hard (merged, merged_gone,
re-created, bump_sequence, pre-retention `old`, the airdrop and its children, chains, genesis),
run three ways from a search (pipeline.request_lineage) until no task is left:
- the API path alone: Horizon (365-day history) + Stellar Expert over HTTP, HUBBLE_ENGINE=none;
- the Hubble path: process_account on the embedded DuckDB loaded from the simulator's export;
- the API path with Hubble filling what Horizon cannot see (creators, children before its elder ledger).
Each account's stored lineage is compared with `/_sim/truth` (local/testing/truth.compare_lineage: status,
creator, creation date, creation events, merges, creation ledgers, children): 100% agreement,
within what each path can see; where the API path alone cannot see, the answer must say so
(children_gap, a completeness message). Never-existing accounts are INVALID on every path.
"""
from __future__ import annotations

import datetime as dt

import pytest

from local.testing.truth import compare_lineage
from common import pipeline
from common.bootstrap import Container
from common.clock import SettableClock
from common.config import PipelineConfig, Settings
from common.domain import GENESIS_ACCOUNT
from common.handlers import api_fallback, process_account
from common.lineage_view import lineage_view
from common.store import migrations
from common.store.sqlite import SQLiteStore
from local.hubble_load import load_duckdb
from local.simulator import Simulator
from local.simulator.network import ledger_close_time
from local.testing.fakes import TaskRunner, call_handler, http_answer

pytestmark = pytest.mark.integration

KINDS = {"merged": 3, "merged_gone": 3, "bump_sequence": 4, "old": 3, "recent": 2, "airdrop": 1, "airdrop_child": 2,
         "chain": 2, "genesis": 1, "exchange_child": 1, "missing": 1, "ghost": 1}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("two-paths")
    with Simulator(accounts=600, airdrop_children=3_000, seed=13, port=0, rate_limits=False) as sim:
        sim.export_hubble(root / "export", networks=["public"])
        load_duckdb(root / "hubble.duckdb", root / "export" / "public", "public")
        net = sim.network("public")
        picked = []
        for kind, count in KINDS.items():
            for account in sim.pick("public", kind, limit=count):
                if account not in picked:
                    picked.append(account)
        yield sim, net, root / "hubble.duckdb", picked


def _container(sim, store, clock, hubble_db=None, mode="API_ONLY"):
    env = {**sim.env(), "HUBBLE_ENGINE": "duckdb" if hubble_db else "none"}
    extra = {"UPSTREAM_TIMEOUT_S": "5"}
    if hubble_db:
        extra["HUBBLE_DUCKDB_PATH"] = str(hubble_db)
    settings = Settings.from_env(env=env, extra=extra)
    config = PipelineConfig.from_stored({"pipeline_mode": mode, "children_enrichment_cap": 0, "api_age_filter_years": 0})
    return Container(settings, clock, store=store, queue=TaskRunner(clock, max_attempts=10), pipeline_config=config)


def _run(c, accounts, lineage_handler):
    api = lambda p: http_answer(call_handler(api_fallback.handle, c, p))  # noqa: E731
    for account in accounts:
        pipeline.request_lineage(c, "public", account)
    c.queue.drain({"lineage": lineage_handler(c, api), "api-fallback": api})
    assert not c.queue.dropped, [t["payload"] for t in c.queue.dropped]


def _hubble_path(c, api):
    return lambda p: http_answer(call_handler(process_account.handle, c, p))


def _api_directly(c, api):
    return api  # the API path with Hubble configured: every lineage task goes to api_fallback


def _truth(net, account):
    t = net.truth(account, children_limit=10_000)
    assert t["children"]["next_cursor"] is None
    t["all_children"] = t["children"]["items"]
    return t


def _store(tmp_path, name):
    store = SQLiteStore(tmp_path / f"{name}.sqlite3")
    assert migrations.migrate(store).ok
    return store


def _compare_every_account(c, net, history_from):
    """Every account the run processed (the sample and every ancestor it requested)."""
    problems, checked = [], 0
    for row in c.store.scan("account_lineage", "public", 100_000):
        if row.get("status") is None:
            continue  # known from a crawl, never searched
        checked += 1
        problems += compare_lineage(c.store, "public", row["stellar_account"], _truth(net, row["stellar_account"]), history_from)
    return problems, checked


def test_the_api_path_alone_agrees_and_says_what_it_cannot_see(world, tmp_path):
    sim, net, _, picked = world
    store = _store(tmp_path, "api")
    c = _container(sim, store, SettableClock())
    _run(c, picked, _hubble_path)
    elder = ledger_close_time(net.elder_ledger)
    problems, checked = _compare_every_account(c, net, elder)
    assert problems == [] and checked >= len(picked)
    for account in picked:
        t = _truth(net, account)
        rec = store.get_lineage("public", account)
        if not t["ever_existed"]:
            assert rec.status == "INVALID"
            continue
        hidden = [k for k in t["all_children"] if dt.datetime.fromisoformat(k["created_at"].replace("Z", "+00:00")) < elder]
        body = lineage_view(store, "public", account)
        if hidden and account != GENESIS_ACCOUNT:
            assert rec.children_gap == "history_pruned", account
            assert "not visible without Hubble" in body["completeness"]["message"]
        if t["creation_events"] and t["creation_events"][0]["in_horizon_history"]:
            assert body["completeness"]["children_complete"] is True, (account, t["kinds"])
        else:  # Horizon cannot show whether older children exist: it says so, whether there are some or not
            assert body["completeness"]["children_complete"] is False, (account, t["kinds"])
        assert rec.pipeline_source == "API", "no Hubble query was ever possible"


def test_the_hubble_path_agrees_on_everything(world, tmp_path):
    sim, net, db, picked = world
    store = _store(tmp_path, "hubble")
    c = _container(sim, store, SettableClock(), hubble_db=db, mode="BIGQUERY_ONLY")
    _run(c, picked, _hubble_path)
    problems, checked = _compare_every_account(c, net, None)
    assert problems == [] and checked >= len(picked)
    for account in picked:
        rec = store.get_lineage("public", account)
        if rec.status == "COMPLETE" and account != GENESIS_ACCOUNT:
            assert rec.pipeline_source == "BIGQUERY" and rec.children_complete is True, account
    bumped = [a for a in picked if "bump_sequence" in net.truth(a)["kinds"]]
    assert bumped and all(store.get_lineage("public", a).creation_ledger == net.truth(a)["creation_ledger"] for a in bumped)


def test_the_api_path_with_hubble_sees_everything(world, tmp_path):
    sim, net, db, picked = world
    store = _store(tmp_path, "api-hubble")
    c = _container(sim, store, SettableClock(), hubble_db=db, mode="BIGQUERY_WITH_API_FALLBACK")
    _run(c, picked, _api_directly)
    problems, checked = _compare_every_account(c, net, None)
    assert problems == [] and checked >= len(picked)
    airdrop = sim.pick("public", "airdrop", limit=1)[0]
    rec = store.get_lineage("public", airdrop)
    assert rec.children_complete is True and rec.num_child_accounts == net.truth(airdrop)["children"]["total"]
    assert lineage_view(store, "public", airdrop)["completeness"]["reason"] is None
