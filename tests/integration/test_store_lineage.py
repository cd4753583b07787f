"""Store contract, LineagePort, StatusRowsPort and PipelineCountersPort: lineage rows, claims, transitions, exact counters.

Runs on the embedded SQLite and on a real Cassandra 5.0 (the `store` fixture)."""
from __future__ import annotations

import datetime as dt
import multiprocessing
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from common.domain import InvalidInput
from tests.support import claim_worker, random_account

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=dt.timezone.utc)


ROUNDS = 1000


CLAIMERS = 16


def _seed_pending(store, network: str, n: int) -> list[str]:
    accounts = [random_account() for _ in range(n)]
    for a in accounts:
        store.put_lineage(network, a, status="PENDING", updated_at=T0)
    return accounts


def _counts_delta(before: dict, after: dict) -> dict:
    """Changed counters, leaving out completion hours that fell out of the retained window: the
    Cassandra keyspace is shared by the suite, and a completion at T0 rightly prunes older hours."""
    from common.read_models.counters import RETAIN_HOURS, hour_bucket

    oldest = hour_bucket(T0 - dt.timedelta(hours=RETAIN_HOURS))
    keys = {k for k in set(before) | set(after) if not (k.startswith("d:") and k[2:15] < oldest)}
    return {k: after.get(k, 0) - before.get(k, 0) for k in keys if after.get(k, 0) != before.get(k, 0)}


def test_lineage_roundtrip_keeps_every_type_exact(store):
    acct, creator = random_account(), random_account()
    store.put_lineage(
        "public",
        acct,
        stellar_creator_account=creator,
        account_creation_date=T0,
        xlm_balance=Decimal("12345678.1234567"),
        home_domain="<script>alert(1)</script>ü" + "x" * 1000,
        flags={"auth_required": True, "auth_revocable": False, "auth_immutable": False, "auth_clawback_enabled": True},
        assets=[{"code": "USDC", "issuer": creator, "balance": "10.0000000"}],
        thresholds={"low": 1, "med": 2, "high": 3},
        is_hva=True,
        tags=["exchange", "anchor"],
        num_child_accounts=3,
        status="COMPLETE",
        retry_count=0,
        pipeline_source="API",
        last_pipeline_attempt=T0,
        processing_started_at=T0,
        created_at=T0,
        updated_at=T0,
    )
    rec = store.get_lineage("public", acct)
    assert rec.stellar_creator_account == creator
    assert rec.account_creation_date == T0
    assert rec.xlm_balance == Decimal("12345678.1234567") and isinstance(rec.xlm_balance, Decimal)
    assert rec.home_domain.startswith("<script>") and rec.home_domain.endswith("x" * 1000)
    assert rec.flags["auth_clawback_enabled"] is True
    assert rec.assets[0]["code"] == "USDC"
    assert rec.is_hva is True
    assert sorted(rec.tags) == ["anchor", "exchange"]
    assert rec.pipeline_source == "API"
    assert store.get_lineage("testnet", acct) is None  # networks never mix


def test_partial_update_leaves_other_columns(store):
    acct = random_account()
    store.put_lineage("public", acct, home_domain="a.example", status="PENDING", updated_at=T0)
    store.put_lineage("public", acct, xlm_balance=Decimal("1.5"))
    rec = store.get_lineage("public", acct)
    assert rec.home_domain == "a.example" and rec.status == "PENDING" and rec.xlm_balance == Decimal("1.5")


def test_get_lineages_batch(store):
    accts = [random_account() for _ in range(5)]
    for i, a in enumerate(accts[:4]):
        store.put_lineage("public", a, num_child_accounts=i)
    got = store.get_lineages("public", accts)
    assert set(got) == set(accts[:4])
    assert got[accts[2]].num_child_accounts == 2


def test_get_lineages_of_many_accounts_equals_each_row_read_alone(store):
    """More accounts than one batched read takes (Cassandra: IN reads of 20 keys), repeats included."""
    creator = random_account()
    accts = [random_account() for _ in range(70)]
    for i, a in enumerate(accts[:64]):
        store.put_lineage("public", a, stellar_creator_account=creator, num_child_accounts=i, home_domain=f"d{i}.example",
                          xlm_balance=(Decimal(i) / 7).quantize(Decimal("0.0000001")), account_creation_date=T0 + dt.timedelta(seconds=i))
    got = store.get_lineages("public", accts + accts[:5])
    assert set(got) == set(accts[:64])
    assert [got[a] for a in accts[:64]] == [store.get_lineage("public", a) for a in accts[:64]]


def test_claim_state_machine(store):
    acct = random_account()
    assert not store.claim("public", acct, T0), "a missing row cannot be claimed"
    assert store.transition_lineage("public", acct, None, "PENDING", updated_at=T0)
    assert not store.transition_lineage("public", acct, None, "PENDING", updated_at=T0), "insert-if-absent twice"
    assert store.claim("public", acct, T0)
    assert not store.claim("public", acct, T0), "PROCESSING is not claimable"
    rec = store.get_lineage("public", acct)
    assert rec.status == "PROCESSING" and rec.processing_started_at == T0 and rec.claim_token
    assert store.transition_lineage("public", acct, ["PROCESSING"], "COMPLETE", updated_at=T0)
    assert not store.claim("public", acct, T0), "COMPLETE is not claimable"
    assert store.transition_lineage("public", acct, ["COMPLETE"], "RE_INQUIRY", updated_at=T0)
    assert store.claim("public", acct, T0), "RE_INQUIRY is claimable"
    assert store.transition_lineage("public", acct, ["PROCESSING"], "FAILED", last_error="boom")
    assert not store.claim("public", acct, T0), "FAILED is terminal"


def test_transition_from_no_status(store):
    """A child known from its parent's crawl has a row but no status; searching it starts its run."""
    acct, creator = random_account(), random_account()
    store.put_lineage("public", acct, stellar_creator_account=creator, account_creation_date=T0)
    assert not store.transition_lineage("public", acct, ("COMPLETE",), "PENDING")
    assert store.transition_lineage("public", acct, (None, "COMPLETE"), "PENDING", updated_at=T0)
    assert not store.transition_lineage("public", acct, (None,), "PENDING", updated_at=T0)
    rec = store.get_lineage("public", acct)
    assert rec.status == "PENDING" and rec.stellar_creator_account == creator
    assert not store.transition_lineage("public", random_account(), (None,), "PENDING"), "no row, nothing to update"


def test_lineage_active_index_follows_status(store):
    acct = random_account()
    store.put_lineage("testnet", acct, status="PENDING", updated_at=T0)
    assert store.claim("testnet", acct, T0)
    rows = {(r["network_name"], r["stellar_account"]): r["status"] for r in store.list_active("lineage")}
    assert rows[("testnet", acct)] == "PROCESSING"
    store.transition_lineage("testnet", acct, ["PROCESSING"], "COMPLETE")
    rows = {(r["network_name"], r["stellar_account"]) for r in store.list_active("lineage")}
    assert ("testnet", acct) not in rows


def test_concurrent_claim_threads_exactly_one_winner(store):
    accounts = _seed_pending(store, "public", ROUNDS)
    barrier = threading.Barrier(CLAIMERS)

    def worker(_):
        barrier.wait()
        return [a for a in accounts if store.claim("public", a, T0)]

    with ThreadPoolExecutor(CLAIMERS) as pool:
        results = list(pool.map(worker, range(CLAIMERS)))
    wins = Counter(a for r in results for a in r)
    assert len(wins) == ROUNDS, f"{ROUNDS - len(wins)} accounts were claimed by nobody"
    assert max(wins.values()) == 1, "an account was claimed twice"


def test_concurrent_claim_processes_exactly_one_winner(store, tmp_path, request):
    accounts = _seed_pending(store, "testnet", ROUNDS)
    if store.backend == "sqlite":
        location = store.path
    else:
        location = request.getfixturevalue("cassandra_keyspace")
    barrier = str(tmp_path / f"barrier-{CLAIMERS}")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(CLAIMERS) as pool:
        results = pool.map(claim_worker, [(store.backend, location, "testnet", accounts, barrier, i) for i in range(CLAIMERS)])
    wins = Counter(a for r in results for a in r)
    assert len(wins) == ROUNDS
    assert max(wins.values()) == 1


def test_pipeline_counters_follow_every_status_write_and_resync_is_idempotent(store):
    a = random_account()
    before = store.get_pipeline_counts("testnet")
    store.transition_lineage("testnet", a, None, "PENDING", updated_at=T0)
    assert _counts_delta(before, store.get_pipeline_counts("testnet")) == {"s:PENDING": 1}
    assert store.claim("testnet", a, T0)
    store.transition_lineage("testnet", a, ("PROCESSING",), "COMPLETE", pipeline_source="API", last_pipeline_attempt=T0, updated_at=T0)
    done = {"s:COMPLETE": 1, "p:API": 1, "d:2026-03-01T12:API": 1}
    assert _counts_delta(before, store.get_pipeline_counts("testnet")) == done
    assert not store.transition_lineage("testnet", a, ("PROCESSING",), "FAILED")  # a lost CAS counts nothing
    for _ in range(3):
        assert store.sync_pipeline_state("testnet", a)
    assert _counts_delta(before, store.get_pipeline_counts("testnet")) == done
    store.put_lineage("testnet", random_account(), xlm_balance=Decimal("5"))  # no status: not counted
    assert _counts_delta(before, store.get_pipeline_counts("testnet")) == done


def test_stats_dirty_markers_by_hour(store):
    a = random_account()
    when = dt.datetime(2026, 3, 1, 7, 15, tzinfo=dt.timezone.utc)
    store.put_lineage("public", a, status="PENDING", updated_at=when)
    assert a in store.stats_dirty_accounts("public", "2026-03-01T07")
    assert a not in store.stats_dirty_accounts("public", "2026-03-01T08")
    with pytest.raises(InvalidInput):
        store.stats_dirty_accounts("public", "2026-03-01 07; DROP TABLE x")
    store.prune_stats_dirty("public", "2026-03-01T08")
    if store.backend == "sqlite":  # Cassandra: the markers' TTL does it
        assert a not in store.stats_dirty_accounts("public", "2026-03-01T07")
