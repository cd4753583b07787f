"""Cross-check: 500+ simulated accounts through the Hubble path (process_account on the embedded
Hubble, loaded from the simulator's Hubble export) give exactly the simulator's ground truth,
the lineage the API path is tested against: every creation event, the creator, the creation
time, every child, the child count and the whole ancestor chain up to genesis.

Also here: the airdrop account's 100,000 children through process_account, each stored once.
"""
from __future__ import annotations

import datetime as dt

import pytest

from common import pipeline
from common.bootstrap import Container
from common.clock import SettableClock
from common.config import PipelineConfig, Settings
from common.domain import GENESIS_ACCOUNT, iso
from common.handlers.process_account import process
from common.hubble.duckdb_engine import DuckDBHubble
from common.lineage_view import ancestors
from common.store import migrations
from common.store.sqlite import SQLiteStore
from local.testing.fakes import RecordingQueue
from tests.support import simulated_world

pytestmark = pytest.mark.integration

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 1, 1, tzinfo=UTC)


def container(tmp_path, db, config=None):
    store = SQLiteStore(tmp_path / "store.sqlite3")
    migrations.migrate(store)
    return Container(Settings.from_env(env={}), SettableClock(NOW), store=store, queue=RecordingQueue(),
                     hubble=DuckDBHubble(db), pipeline_config=PipelineConfig.from_stored(config or {}))


def drain_lineage(c, network="public"):
    """Run the lineage queue until it is empty (the creators expansion asked for)."""
    outcomes = {}
    while (task := c.queue.pop("lineage")) is not None:
        payload = task["payload"]
        outcomes[payload["account"]] = process(c, payload["network"], payload["account"])
    return outcomes


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return simulated_world(tmp_path_factory.mktemp("crosscheck"), 900, 2_500, 21)


def sample(network, size=520):
    picked: list[str] = []
    for kind in network.KINDS:
        if kind in ("missing", "ghost", "ordinary", "airdrop_child", "hub", "leaf", "old", "recent"):
            continue
        for entry in network.pick(kind, limit=25)["accounts"]:
            if entry["account"] not in picked:
                picked.append(entry["account"])
    for kind in ("airdrop_child", "hub", "leaf", "recent", "old", "ordinary"):
        for entry in network.pick(kind, limit=size)["accounts"]:
            if len(picked) >= size:
                return picked
            if entry["account"] not in picked:
                picked.append(entry["account"])
    return picked


def test_500_accounts_give_exactly_the_ground_truth(world, tmp_path):
    network, db = world.network, world.duckdb
    c = container(tmp_path, db)
    accounts = sample(network)
    assert len(accounts) >= 500
    for account in accounts:
        pipeline.request_lineage(c, "public", account)
    outcomes = drain_lineage(c)
    assert set(accounts) <= set(outcomes)
    kinds_seen = set()
    for account in accounts:
        truth = network.truth(account, children_limit=100_000)
        kinds_seen.update(truth["kinds"])
        out = outcomes[account]
        assert out.status == "COMPLETE" and out.pipeline_source == "BIGQUERY", (account, out)
        if truth["children"]["total"] < 10_000:
            # the state row, the lives query (a re-created account: one wider window; a deleted one: its
            # last merge; a bumped sequence: the window widens up to twice), one page of children
            extra = ("merged_gone" in truth["kinds"]) + 2 * ("bump_sequence" in truth["kinds"])
            assert out.queries == 1 if account == GENESIS_ACCOUNT else 3 <= out.queries <= 3 + extra, (truth["kinds"], out)
        rec = c.store.get_lineage("public", account)
        events = c.store.get_creation_events("public", account)
        assert [(e.creator, iso(e.created_at), e.operation_id, format(e.starting_balance, "f")) for e in events] == [
            (e["creator"], e["created_at"], e["operation_id"], e["starting_balance"]) for e in truth["creation_events"]], account
        assert rec.stellar_creator_account == truth["creator"]
        assert iso(rec.account_creation_date) == truth["created_at"]
        kids = [edge.child for edge in c.store.iter_children("public", account)]
        assert len(kids) == len(set(kids))
        assert set(kids) == {item["account"] for item in truth["children"]["items"]}, account
        assert rec.num_child_accounts == truth["children"]["total"] and rec.children_complete is True
        assert [n["account"] for n in ancestors(c.store, "public", rec)] == truth["ancestors"], account
    assert {"merged", "merged_gone", "failed_target", "chain", "airdrop", "airdrop_child", "exchange", "genesis", "old"} <= kinds_seen
    # never-created addresses (targets of failed creates only) are not in Hubble: the API decides
    for ghost in network.pick("ghost", limit=3)["accounts"]:
        pipeline.request_lineage(c, "public", ghost["account"])
        out = process(c, "public", ghost["account"])
        assert out.status == "HANDED_TO_API" and out.reason.startswith("not_in_hubble")


def test_100000_children_are_each_stored_exactly_once(airdrop_world, tmp_path):
    network = airdrop_world.network
    c = container(tmp_path, airdrop_world.duckdb)
    airdrop = network.pick("airdrop", limit=1)["accounts"][0]["account"]
    pipeline.request_lineage(c, "public", airdrop)
    out = process(c, "public", airdrop)
    assert out.status == "COMPLETE" and out.children == 100_000
    assert out.queries == 2 + 10, "the state and lineage queries and ten pages of 10,000"
    kids = [edge.child for edge in c.store.iter_children("public", airdrop)]
    truth = network.truth(airdrop, children_limit=100_000)["children"]
    assert len(kids) == len(set(kids)) == 100_000
    assert set(kids) == {item["account"] for item in truth["items"]}
    rec = c.store.get_lineage("public", airdrop)
    assert rec.children_complete is True and rec.num_child_accounts == 100_000 and rec.children_cursor is None
    assert len(c.store.get_spend_ledger("2026-01", 100)) == 12
