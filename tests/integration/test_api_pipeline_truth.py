"""The issue's done-criterion: for 200+ simulated accounts, the lineage api_fallback stores equals
the simulator's ground truth (creators, creation times, creation events, children, child counts,
the ancestor chain up to genesis), on SQLite and on the real Cassandra.

The run is the real flow: pipeline.request_lineage (what search does) -> process_account
(pipeline_mode API_ONLY) -> api_fallback, every task delivered by a TaskRunner until none is
left, with the simulator's rate limits on and both limiters on one SettableClock: no 429 may
arrive and no task may be dropped.

Two Horizons: one that keeps the whole history (children and creations all visible), and the
default one that prunes history older than 365 days, where creators come from Stellar Expert
and the children older than the window are out of the API's reach (children_complete is false
exactly for those accounts; the Hubble path has them).
"""
from __future__ import annotations

import pytest

from local.testing.truth import compare_lineage
from common import pipeline
from common.bootstrap import Container
from common.clock import SettableClock
from common.config import PipelineConfig, Settings
from common.domain import GENESIS_ACCOUNT, iso, parse_iso
from common.handlers import api_fallback, process_account
from common.lineage_view import ancestors
from local.simulator import Simulator
from local.simulator.network import ledger_close_time
from local.testing.fakes import TaskRunner, call_handler, http_answer

pytestmark = pytest.mark.integration

SPECIAL = ("missing", "ghost", "ordinary", "airdrop_child", "hub", "leaf", "old", "recent")


def sample(sim, size: int) -> list[str]:
    """Every kind of account the simulator has (a dozen of each), then ordinary ones up to size."""
    net = sim.network("public")
    picked: list[str] = []
    for kind in net.KINDS:
        if kind in SPECIAL:
            continue
        for entry in net.pick(kind, limit=12)["accounts"]:
            if entry["account"] not in picked and entry.get("num_children", 0) <= 20_000:
                picked.append(entry["account"])
    picked += [a for a in sim.pick("public", "missing", limit=3) + sim.pick("public", "ghost", limit=3) if a not in picked]
    for kind in ("airdrop_child", "hub", "leaf", "recent", "old", "ordinary"):
        for entry in net.pick(kind, limit=size)["accounts"]:
            if len(picked) >= size:
                return picked
            if entry["account"] not in picked:
                picked.append(entry["account"])
    return picked


def run_pipeline(sim, store, clock, accounts):
    runner = TaskRunner(clock, max_attempts=30)
    settings = Settings.from_env(env={**sim.env(), "HUBBLE_ENGINE": "none"}, extra={"UPSTREAM_TIMEOUT_S": "2"})
    c = Container(settings, clock, store=store, queue=runner,
                  pipeline_config=PipelineConfig.from_stored({"pipeline_mode": "API_ONLY", "children_enrichment_cap": 3}))
    answers = []

    def api(payload):
        response = call_handler(api_fallback.handle, c, payload)
        answers.append(response.status_code)
        return http_answer(response)

    for account in accounts:
        pipeline.request_lineage(c, "public", account)
    runner.drain({"lineage": lambda p: http_answer(call_handler(process_account.handle, c, p)), "api-fallback": api})
    assert not runner.dropped, [t["payload"] for t in runner.dropped]
    assert set(answers) == {200}, "no retry was needed: no fault, no 429"
    assert sim.stats()["totals"]["sent_429"] == 0
    return c


def full_truth(sim, account):
    t = sim.network("public").truth(account, children_limit=10_000)
    assert t["children"]["next_cursor"] is None
    t["all_children"] = t["children"]["items"]
    return t


def test_200_accounts_equal_the_ground_truth_on_a_full_history_horizon(store):
    clock = SettableClock()
    with Simulator(accounts=1_200, airdrop_children=1_500, seed=41, port=0, clock=clock, retention_days=0) as sim:
        accounts = sample(sim, 220)
        assert len(accounts) >= 200
        c = run_pipeline(sim, store, clock, accounts)
        kinds, deepest = set(), 0
        for account in accounts:
            t = full_truth(sim, account)
            kinds.update(t["kinds"])
            deepest = max(deepest, t["depth"] or 0)
            assert compare_lineage(store, "public", account, t) == [], account
            rec = store.get_lineage("public", account)
            if not t["ever_existed"]:
                continue
            events = store.get_creation_events("public", account)
            assert [(e.creator, iso(e.created_at), e.operation_id, format(e.starting_balance, "f")) for e in events] == [
                (e["creator"], e["created_at"], e["operation_id"], e["starting_balance"]) for e in t["creation_events"]], account
            assert rec.num_child_accounts == t["children"]["total"] and rec.children_complete is True, account
            assert [n["account"] for n in ancestors(store, "public", rec)] == t["ancestors"], account
            assert rec.pipeline_source == "API"
        assert {"merged", "merged_gone", "failed_target", "chain", "airdrop", "airdrop_child", "exchange", "genesis", "hostile",
                "missing", "ghost"} <= kinds
        assert deepest >= 12 and GENESIS_ACCOUNT in accounts
        c.close()


def test_200_accounts_on_a_pruned_horizon_get_their_creators_from_stellar_expert(sqlite_store):
    clock = SettableClock()
    with Simulator(accounts=1_500, airdrop_children=1_000, seed=43, port=0, clock=clock) as sim:
        net = sim.network("public")
        window = ledger_close_time(net.elder_ledger)
        accounts = sample(sim, 210)
        run_pipeline(sim, sqlite_store, clock, accounts)
        pruned = 0
        for account in accounts:
            t = full_truth(sim, account)
            rec = sqlite_store.get_lineage("public", account)
            if not t["ever_existed"]:
                assert rec.status == "INVALID" and rec.last_error
                continue
            assert rec.status == "COMPLETE", (account, rec.last_error)
            assert rec.stellar_creator_account == t["creator"], (account, t["kinds"])
            assert iso(rec.account_creation_date) == t["created_at"], (account, t["kinds"])
            stored = {(e.creator, iso(e.created_at)) for e in sqlite_store.get_creation_events("public", account)}
            assert {(e["creator"], e["created_at"]) for e in t["creation_events"] if e["in_horizon_history"]} <= stored
            whole = account == GENESIS_ACCOUNT or t["creation_events"][0]["in_horizon_history"]
            if account == GENESIS_ACCOUNT:
                whole = net.elder_ledger <= 2
            assert rec.children_complete is whole, (account, t["kinds"])
            pruned += not whole
            kids = {e.child for e in sqlite_store.iter_children("public", account)}
            in_window = {c["account"] for c in t["all_children"] if parse_iso(c["created_at"]) >= window}
            assert kids == in_window, account
            if whole:
                assert kids == {c["account"] for c in t["all_children"]}
        assert pruned >= 50, "most of the network is older than Horizon's window"
