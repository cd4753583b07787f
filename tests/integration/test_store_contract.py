"""One contract for every Store adapter: runs on the embedded SQLite and on a real Cassandra 5.0."""
from __future__ import annotations

import dataclasses
import datetime as dt
import multiprocessing
import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from common.domain import (
    ChildEdge,
    CreationEvent,
    CronRun,
    HvaEvent,
    InvalidInput,
    LeaderboardEntry,
    MergeEvent,
    StageExecution,
)
from common.store.port import new_reservation_id
from tests.support import claim_worker, quiet_cassandra_store, random_account

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=dt.timezone.utc)


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


def test_search_cache_transitions_and_active_index(store):
    acct = random_account()
    assert store.get_search("public", acct) is None
    assert store.transition_search("public", acct, None, "PENDING", created_at=T0, updated_at=T0)
    assert not store.transition_search("public", acct, None, "PENDING", created_at=T0, updated_at=T0)
    active = {(r["network_name"], r["stellar_account"]): r for r in store.list_active("cache")}
    assert active[("public", acct)]["status"] == "PENDING"
    assert store.transition_search("public", acct, ["PENDING"], "COMPLETE", cached_json='{"a":1}', last_fetched_at=T0)
    assert ("public", acct) not in {(r["network_name"], r["stellar_account"]) for r in store.list_active("cache")}
    entry = store.get_search("public", acct)
    assert entry.status == "COMPLETE" and entry.cached_json == '{"a":1}' and entry.last_fetched_at == T0


def test_lineage_active_index_follows_status(store):
    acct = random_account()
    store.put_lineage("testnet", acct, status="PENDING", updated_at=T0)
    assert store.claim("testnet", acct, T0)
    rows = {(r["network_name"], r["stellar_account"]): r["status"] for r in store.list_active("lineage")}
    assert rows[("testnet", acct)] == "PROCESSING"
    store.transition_lineage("testnet", acct, ["PROCESSING"], "COMPLETE")
    rows = {(r["network_name"], r["stellar_account"]) for r in store.list_active("lineage")}
    assert ("testnet", acct) not in rows


def test_creation_events_keep_every_recreation(store):
    acct, c1, c2 = random_account(), random_account(), random_account()
    e1 = CreationEvent("public", acct, T0, "100", c1, Decimal("1"), "h1", "HORIZON")
    e2 = CreationEvent("public", acct, T0 + dt.timedelta(days=30), "200", c2, Decimal("2.5"), "h2", "HORIZON")
    store.add_creation_event(e2)
    store.add_creation_event(e1)
    store.add_creation_event(e1)  # idempotent
    events = store.get_creation_events("public", acct)
    assert [e.creator for e in events] == [c1, c2]
    assert events[1].starting_balance == Decimal("2.5")


def test_every_life_is_kept_creations_merges_and_ledgers(store):
    acct, c1, c2 = random_account(), random_account(), random_account()
    store.add_creation_event(CreationEvent("public", acct, T0, "100", c1, None, None, "HORIZON", ledger=37_362_540))
    store.add_creation_event(CreationEvent("public", acct, T0 + dt.timedelta(days=90), "expert:1", c2, source="EXPERT"))
    m2 = MergeEvent("public", acct, T0 + dt.timedelta(days=200), "900", c2, 40_000_000, "BIGQUERY")
    m1 = MergeEvent("public", acct, T0 + dt.timedelta(days=30), "500", c1, 37_800_000, "HORIZON")
    for event in (m2, m1, m1):  # out of order, one twice: idempotent, oldest first
        store.add_merge_event(event)
    events = store.get_creation_events("public", acct)
    assert [(e.creator, e.ledger) for e in events] == [(c1, 37_362_540), (c2, None)]
    assert store.get_merge_events("public", acct) == [m1, m2]
    assert store.get_merge_events("public", random_account()) == []
    store.put_lineage("public", acct, creation_ledger=40_000_001, merged_at=m2.merged_at, merged_into=c2, deleted=True,
                      children_gap="history_pruned", children_visible_from=T0)
    rec = store.get_lineage("public", acct)
    assert (rec.creation_ledger, rec.merged_at, rec.merged_into, rec.deleted) == (40_000_001, m2.merged_at, c2, True)
    assert (rec.children_gap, rec.children_visible_from) == ("history_pruned", T0)
    with pytest.raises(InvalidInput):
        store.add_merge_event(MergeEvent("public", acct, T0, "1", "not-an-account"))


def test_ledger_anchors_keep_one_point_per_bucket(store):
    network = "testnet"
    base = 16_000 * (1 << 17)  # buckets no other test uses (below 2^31)
    assert all(ledger < base for ledger, _ in store.get_ledger_anchors(network))
    store.put_ledger_anchors(network, [(base + 5, T0), (base + 7, T0 + dt.timedelta(seconds=10)),
                                       (base + (1 << 17), T0 + dt.timedelta(days=8))])
    points = [p for p in store.get_ledger_anchors(network) if p[0] >= base]
    assert points == [(base + 7, T0 + dt.timedelta(seconds=10)), (base + (1 << 17), T0 + dt.timedelta(days=8))]
    with pytest.raises(InvalidInput):
        store.put_ledger_anchors(network, [(0, T0)])


def test_children_paging_never_skips_or_repeats(store):
    creator = random_account()
    children = [ChildEdge("public", creator, random_account(), T0, str(i), Decimal("1")) for i in range(2500)]
    store.add_children("public", creator, children[:1500])
    store.add_children("public", creator, children[1000:])  # overlap: must not duplicate
    seen, cursor, pages = [], None, 0
    while True:
        page = store.get_children_page("public", creator, cursor, 1000)
        seen.extend(c.child for c in page.items)
        pages += 1
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert pages == 3
    assert len(seen) == 2500 and len(set(seen)) == 2500
    assert seen == sorted(c.child for c in children)
    assert list(c.child for c in store.iter_children("public", creator, 700)) == seen
    assert store.get_children_page("testnet", creator).items == []


def test_stage_executions_newest_first(store):
    acct = random_account()
    for i, stage in enumerate(["parent_lineage", "horizon_data", "attributes"]):
        store.record_stage(
            StageExecution("public", acct, stage, "SUCCESS", T0 + dt.timedelta(seconds=i), T0 + dt.timedelta(seconds=i, milliseconds=5), 5, None, "API", "r1")
        )
    got = store.get_stage_executions("public", acct)
    assert [s.stage for s in got] == ["attributes", "horizon_data", "parent_lineage"]
    assert got[0].duration_ms == 5 and got[0].pipeline_source == "API"


def test_cron_runs(store):
    job = f"job_{random_account()[:8]}"
    store.record_cron_run(CronRun(job, T0, "SUCCESS", 12, {"reset": 3}))
    store.record_cron_run(CronRun(job, T0 + dt.timedelta(minutes=15), "FAILED", 7, {"error": "x"}))
    runs = store.get_cron_runs(job)
    assert [r.status for r in runs] == ["FAILED", "SUCCESS"]
    assert runs[1].details == {"reset": 3}


def test_balance_index_moves_between_buckets(store):
    net = "testnet"
    a, b, c = random_account(), random_account(), random_account()
    store.set_balance(net, a, Decimal("2000000"), None)
    store.set_balance(net, b, Decimal("15000.5"), None)
    store.set_balance(net, c, Decimal("9999.9999999"), None)
    mine = lambda rows: [x for x in rows if x[0] in (a, b, c)]  # noqa: E731
    assert mine(store.balances_at_least(net, Decimal(10000))) == [(a, Decimal("2000000")), (b, Decimal("15000.5"))]
    store.set_balance(net, a, Decimal("5"), Decimal("2000000"))  # falls out of the 1M bucket
    store.set_balance(net, c, Decimal("10000"), Decimal("9999.9999999"))
    assert mine(store.balances_at_least(net, Decimal(10000))) == [(b, Decimal("15000.5")), (c, Decimal("10000"))]
    assert mine(store.balances_at_least(net, Decimal(1000000))) == []


def test_leaderboard_snapshot_is_replaced(store):
    net, threshold = "public", 123457
    a, b, c = random_account(), random_account(), random_account()
    store.put_leaderboard(net, threshold, [LeaderboardEntry(1, a, Decimal("3")), LeaderboardEntry(2, b, Decimal("2")), LeaderboardEntry(3, c, Decimal("1"))], T0)
    store.put_leaderboard(net, threshold, [LeaderboardEntry(1, b, Decimal("5"))], T0 + dt.timedelta(hours=1))
    snap, entries = store.get_leaderboard(net, threshold)
    assert snap == T0 + dt.timedelta(hours=1)
    assert entries == [LeaderboardEntry(1, b, Decimal("5"))]


def test_hva_events_by_threshold_and_account(store):
    net, threshold, acct = "public", 987653, random_account()
    events = [
        HvaEvent(net, threshold, acct, T0, "ENTERED", None, 5, None, Decimal("100"), None),
        HvaEvent(net, threshold, acct, T0 + dt.timedelta(days=1), "RANK_UP", 25, 5, Decimal("100"), Decimal("200"), 100.0),
    ]
    store.add_hva_events(events)
    got = store.get_hva_events(net, threshold, T0 - dt.timedelta(hours=1), T0 + dt.timedelta(days=2))
    assert [e.event_type for e in got] == ["RANK_UP", "ENTERED"]
    assert got[0].new_balance == Decimal("200") and got[0].pct_change == 100.0
    assert len(store.get_hva_events(net, threshold, T0 + dt.timedelta(hours=1), T0 + dt.timedelta(days=2))) == 1
    assert [e.event_type for e in store.get_hva_events_for_account(net, acct, T0.date())] == ["ENTERED"]


def test_config_roundtrip_and_validation(store):
    store.set_config("pipeline_mode", "API_ONLY", T0)
    store.set_config("hva_thresholds", [50000, 10000], T0)
    cfg = store.get_config()
    assert cfg["pipeline_mode"] == "API_ONLY" and cfg["hva_thresholds"] == [10000, 50000]
    with pytest.raises(ValueError, match="unknown config key"):
        store.set_config("no_such_key", 1, T0)
    with pytest.raises(ValueError, match="pipeline_mode"):
        store.set_config("pipeline_mode", "FAST", T0)
    assert store.get_config()["pipeline_mode"] == "API_ONLY"


def _unique_month() -> str:
    # The Cassandra keyspace lives for the whole session: each test takes its own month.
    return f"{random.randint(2100, 9999)}-{random.randint(1, 12):02d}"


def test_spend_reservation_is_capped_by_budget(store):
    month = _unique_month()
    assert store.month_spend_micro_usd(month) == 0
    assert store.try_reserve_spend(month, 600_000, 1_000_000, T0)
    assert not store.try_reserve_spend(month, 500_000, 1_000_000, T0)
    rid = new_reservation_id(T0)
    assert store.try_reserve_spend(month, 400_000, 1_000_000, T0, reservation_id=rid)
    assert store.adjust_spend(month, rid, -250_000, T0)
    assert store.month_spend_micro_usd(month) == 750_000
    store.record_spend(month, "q1", 10, 10485760, 62, "lineage", T0)
    assert store.get_spend_ledger(month)[0]["bytes_billed"] == 10485760


def test_concurrent_spend_never_exceeds_budget(store):
    month = _unique_month()
    budget, each, workers = 1_000_000, 90_000, 16

    def spend(_):
        return sum(store.try_reserve_spend(month, each, budget, T0) for _ in range(2))

    with ThreadPoolExecutor(workers) as pool:
        wins = sum(pool.map(spend, range(workers)))
    assert wins == budget // each
    assert store.month_spend_micro_usd(month) == wins * each


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.put_lineage("mainnet", random_account(), status="PENDING"),
        lambda s: s.put_lineage("public", "GNOTANACCOUNT", status="PENDING"),
        lambda s: s.put_lineage("public", random_account()[:-1] + "A", status="PENDING"),
        lambda s: s.put_lineage("public", random_account(), no_such_column=1),
        lambda s: s.put_lineage("public", random_account(), status="DONE"),
        lambda s: s.get_children_page("public", random_account(), None, 1001),
        lambda s: s.get_children_page("public", random_account(), None, 0),
        lambda s: s.transition_search("devnet", random_account(), None, "PENDING"),
        lambda s: s.scan("system_schema", None, 10),
        lambda s: s.try_reserve_spend("November", 1, 2, T0),
    ],
    ids=["network", "malformed", "checksum", "column", "status", "page-over", "page-zero", "search-network", "scan-table", "month"],
)
def test_bad_input_is_a_clear_valueerror_and_writes_nothing(store, call):
    before = {t: sum(1 for _ in store.scan(t, None, 100000)) for t in ("account_lineage", "search_cache", "bigquery_spend_ledger")}
    with pytest.raises(ValueError) as info:
        call(store)
    assert isinstance(info.value, InvalidInput) and str(info.value)
    after = {t: sum(1 for _ in store.scan(t, None, 100000)) for t in before}
    assert after == before


def test_scan_is_bounded_and_filters_network(store):
    for _ in range(5):
        store.put_lineage("testnet", random_account(), status="COMPLETE")
    rows = list(store.scan("account_lineage", "testnet", 3))
    assert len(rows) == 3 and all(r["network_name"] == "testnet" for r in rows)


ROUNDS = 1000
CLAIMERS = 16


def _seed_pending(store, network: str, n: int) -> list[str]:
    accounts = [random_account() for _ in range(n)]
    for a in accounts:
        store.put_lineage(network, a, status="PENDING", updated_at=T0)
    return accounts


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


# ------------------------------------------------------------------ HVA / stats read models (0006)
def _counts_delta(before: dict, after: dict) -> dict:
    """Changed counters, leaving out completion hours that fell out of the retained window: the
    Cassandra keyspace is shared by the suite, and a completion at T0 rightly prunes older hours."""
    from common.stats.counters import RETAIN_HOURS, hour_bucket

    oldest = hour_bucket(T0 - dt.timedelta(hours=RETAIN_HOURS))
    keys = {k for k in set(before) | set(after) if not (k.startswith("d:") and k[2:15] < oldest)}
    return {k: after.get(k, 0) - before.get(k, 0) for k in keys if after.get(k, 0) != before.get(k, 0)}


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


def test_children_summary_roundtrip_and_index(store):
    creator = random_account()
    summary = {
        "count": 2500,
        "known_balances": 900,
        "balance_histogram": [{"label": "≥ 10M", "min": 10_000_000, "max": None, "count": 3}],
        "top_by_balance": [{"account": creator, "xlm_balance": "1.5", "home_domain": "<b>ü</b>"}],
        "first_page": [{"account": creator}],
        "first_page_next": creator,
        "ancestors": [],
    }
    store.put_children_summary("public", creator, summary, T0)
    got = store.get_children_summary("public", creator)
    assert got["count"] == 2500 and got["known_balances"] == 900 and got["computed_at"] == T0 and got["landing_at"] == T0
    assert got["balance_histogram"] == summary["balance_histogram"] and got["top_by_balance"] == summary["top_by_balance"]
    assert got["first_page"] == [{"account": creator}] and got["first_page_next"] == creator and got["ancestors"] == []
    assert {"creator": creator, "child_count": 2500, "computed_at": T0} in store.list_children_summaries("public")
    assert store.get_children_summary("testnet", creator) is None
    with pytest.raises(InvalidInput):
        store.put_children_summary("public", creator, dict(summary, first_page_next="x' OR 1=1"), T0)


def test_leaderboard_top_is_a_bounded_prefix_and_bulk_balances(store):
    threshold = 7_777_777
    entries = [LeaderboardEntry(i + 1, random_account(), Decimal(9_000_000 - i)) for i in range(30)]
    store.put_leaderboard("testnet", threshold, entries, T0)
    snapshot, top = store.get_leaderboard_top("testnet", threshold, 5)
    assert snapshot == T0 and top == entries[:5]
    with pytest.raises(InvalidInput):
        store.get_leaderboard_top("testnet", threshold, 0)
    rich = [(random_account(), Decimal("123456789012.1234567")), (random_account(), Decimal("99999999999.0000001"))]
    store.put_balances("public", rich)
    found = dict(store.balances_at_least("public", Decimal("99999999999")))
    assert found[rich[0][0]] == rich[0][1] and found[rich[1][0]] == rich[1][1]
    for bad in ([("x", Decimal(1))], [(random_account(), Decimal(-1))], [(random_account(), 5)]):
        with pytest.raises(InvalidInput):
            store.put_balances("public", bad)


# ------------------------------------------------------------ bulk writes (common/store/bulk.py)
from common.store import codec  # noqa: E402
from common.store.bulk import AccountStateRow, BulkRowRefused, CreationEdge  # noqa: E402

NOW = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.timezone.utc)


def _edge(creator, account, at, op, ledger=None, balance=Decimal("1.5"), network="public"):
    return CreationEdge(network, creator, account, at, str(op), ledger, balance)


def _has_column(table: str, column: str) -> bool:
    return column in codec.column_types()[table]


def _children(store, creator, network="public"):
    return {c.child: c for c in store.iter_children(network, creator)}


def test_bulk_creations_write_events_children_lineage_and_a_rerun_changes_nothing(store):
    creators = [random_account() for _ in range(3)]
    kids = [random_account() for _ in range(23)]
    edges = [_edge(creators[i % 3], k, T0 + dt.timedelta(minutes=i), 1000 + i, 5000 + i) for i, k in enumerate(kids)]
    counts = store.bulk_add_creations("public", iter(edges), now=NOW, chunk_size=7)
    assert counts.as_dict() == {"rows": 23, "chunks": 4, "creation_events": 23, "children": 23, "lineage_created": 23,
                                "lineage_updated": 0, "balance_index": 0}

    def snapshot():
        return (
            {k: store.get_creation_events("public", k) for k in kids},
            {c: _children(store, c) for c in creators},
            {k: store.get_lineage("public", k) for k in kids},
        )

    events, children, lineage = snapshot()
    for i, k in enumerate(kids):
        (event,) = events[k]
        assert (event.creator, event.created_at, event.operation_id, event.starting_balance, event.source) == (
            creators[i % 3], T0 + dt.timedelta(minutes=i), str(1000 + i), Decimal("1.5"), "BIGQUERY")
        rec = lineage[k]
        assert (rec.stellar_creator_account, rec.account_creation_date, rec.status) == (creators[i % 3], T0 + dt.timedelta(minutes=i), None)
        assert rec.created_at == NOW and rec.updated_at == NOW
        if _has_column("account_lineage", "creation_ledger"):
            assert rec.creation_ledger == 5000 + i
        child = children[creators[i % 3]][k]
        assert (child.created_at, child.operation_id, child.starting_balance) == (T0 + dt.timedelta(minutes=i), str(1000 + i), Decimal("1.5"))
    assert sorted(len(v) for v in children.values()) == [7, 8, 8]

    again = store.bulk_add_creations("public", edges, now=NOW + dt.timedelta(hours=1), chunk_size=5)
    assert (again.rows, again.lineage_created, again.lineage_updated) == (23, 0, 0)
    assert snapshot() == (events, children, lineage)  # no duplicate, nothing moved (not even updated_at)


def _lives(creator_a, creator_b, account):
    """Three lives of one account: A creates it, B re-creates it after a merge, A re-creates it again."""
    return [
        _edge(creator_a, account, T0, 1 << 32, 1_000, Decimal("10")),
        _edge(creator_b, account, T0 + dt.timedelta(days=40), 2 << 32, 2_000, Decimal("20")),
        _edge(creator_a, account, T0 + dt.timedelta(days=90), 3 << 32, 3_000, Decimal("30")),
    ]


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 2, 0), (2, 0, 1)], ids=["in-order", "reversed", "middle-first", "last-first"])
def test_bulk_earliest_creation_wins_whatever_the_order_across_calls(store, order):
    a, b, account = random_account(), random_account(), random_account()
    lives = _lives(a, b, account)
    for i in order:
        store.bulk_add_creations("public", [lives[i]], now=NOW)
    rec = store.get_lineage("public", account)
    assert (rec.stellar_creator_account, rec.account_creation_date) == (a, T0)
    if _has_column("account_lineage", "creation_ledger"):
        assert rec.creation_ledger == 3_000  # the current (last) life's
    assert [(e.creator, e.operation_id) for e in store.get_creation_events("public", account)] == [
        (a, str(1 << 32)), (b, str(2 << 32)), (a, str(3 << 32))]
    # A merged-then-recreated account is a child of each creator; A's row is A's first creation of it.
    assert _children(store, a)[account].operation_id == str(1 << 32)
    assert _children(store, b)[account].operation_id == str(2 << 32)
    store.bulk_add_creations("public", list(reversed(lives)), now=NOW)  # all three in one chunk, again
    assert store.get_lineage("public", account) == rec
    assert len(store.get_creation_events("public", account)) == 3


def test_bulk_merge_recreate_in_one_stream_and_over_a_pipeline_row(store):
    a, b, c, account, known = random_account(), random_account(), random_account(), random_account(), random_account()
    lives = _lives(a, b, account)
    counts = store.bulk_add_creations("public", [lives[2], lives[1], lives[0]], now=NOW)
    assert (counts.creation_events, counts.children, counts.lineage_created) == (3, 2, 1)
    assert store.get_lineage("public", account).stellar_creator_account == a
    # A row the pipeline completed keeps its status and enrichment; only an earlier creation changes it.
    store.put_lineage("public", known, stellar_creator_account=b, account_creation_date=T0 + dt.timedelta(days=40),
                      status="COMPLETE", xlm_balance=Decimal("5.5"), home_domain="example.com", updated_at=T0)
    store.bulk_add_creations("public", [_edge(c, known, T0 + dt.timedelta(days=99), 9 << 32)], now=NOW)
    rec = store.get_lineage("public", known)
    assert (rec.stellar_creator_account, rec.status, rec.updated_at) == (b, "COMPLETE", T0)  # a later life: no change
    counts = store.bulk_add_creations("public", [_edge(a, known, T0, 7 << 32)], now=NOW)
    rec = store.get_lineage("public", known)
    assert (counts.lineage_created, counts.lineage_updated) == (0, 1)
    assert (rec.stellar_creator_account, rec.account_creation_date, rec.status, rec.xlm_balance, rec.home_domain, rec.updated_at) == (
        a, T0, "COMPLETE", Decimal("5.5"), "example.com", NOW)


@pytest.mark.parametrize("first_call", ["op-99-first", "op-100-first"])
def test_bulk_same_close_time_is_settled_by_operation_order(store, first_call):
    """Two lives that began at the same close time: the lower TOID came first ("99" < "100" as numbers)."""
    a, b, account = random_account(), random_account(), random_account()
    early, late = _edge(a, account, T0, 99), _edge(b, account, T0, 100)
    for edge in ([early, late] if first_call == "op-99-first" else [late, early]):
        store.bulk_add_creations("public", [edge], now=NOW)
    assert store.get_lineage("public", account).stellar_creator_account == a
    assert [e.operation_id for e in store.get_creation_events("public", account)] in (["99", "100"], ["100", "99"])


@pytest.mark.parametrize("bad", [
    lambda e: dataclasses.replace(e, account=e.account[:-1] + ("A" if e.account[-1] != "A" else "B")),
    lambda e: dataclasses.replace(e, creator="GNOTANACCOUNT"),
    lambda e: dataclasses.replace(e, network_name="testnet"),
    lambda e: dataclasses.replace(e, creator=e.account),
    lambda e: dataclasses.replace(e, created_at="2016-01-01"),
    lambda e: dataclasses.replace(e, operation_id=""),
    lambda e: dataclasses.replace(e, ledger=0),
    lambda e: dataclasses.replace(e, ledger=True),
    lambda e: dataclasses.replace(e, starting_balance=Decimal("-1")),
    lambda e: ("not", "an", "edge"),
], ids=["checksum", "malformed-creator", "wrong-network", "self-created", "time-text", "no-operation", "ledger-zero",
        "ledger-bool", "negative-balance", "not-an-edge"])
def test_bulk_bad_row_refuses_its_whole_chunk_and_names_the_row(store, bad):
    creator = random_account()
    kids = [random_account() for _ in range(8)]
    edges = [_edge(creator, k, T0 + dt.timedelta(seconds=i), 500 + i) for i, k in enumerate(kids)]
    edges[4] = bad(edges[4])
    with pytest.raises(BulkRowRefused) as info:
        store.bulk_add_creations("public", iter(edges), now=NOW, chunk_size=3)
    err = info.value
    assert isinstance(err, InvalidInput) and err.code.startswith("invalid_")
    assert (err.row, err.chunk, err.written.rows, err.written.chunks) == (4, (3, 5), 3, 1)
    assert "row 4" in err.message and "rows 3-5" in err.message
    for i, k in enumerate(kids):
        written = i < 3
        assert (store.get_lineage("public", k) is not None) == written, i
        assert bool(store.get_creation_events("public", k)) == written, i
    assert set(_children(store, creator)) == set(kids[:3])


@pytest.mark.parametrize("kwargs", [
    {"network": "mainnet"}, {"source": "GUESS"}, {"chunk_size": 0}, {"chunk_size": True}, {"now": "today"},
], ids=["network", "source", "chunk-zero", "chunk-bool", "now"])
def test_bulk_bad_call_is_refused_before_reading_the_stream(store, kwargs):
    consumed = []

    def stream():
        consumed.append(1)
        yield _edge(random_account(), random_account(), T0, 1)

    args = {"network": "public", "now": NOW, **kwargs}
    with pytest.raises(InvalidInput):
        store.bulk_add_creations(args.pop("network"), stream(), **args)
    assert consumed == []


def test_bulk_huge_generator_is_written_in_bounded_memory(store, request):
    """10x the rows, the same peak (tracemalloc): only one chunk is ever held (modest sizes here;
    bench/bench_bulk_write.py measures 1,000,000)."""
    import tracemalloc

    sizes, chunk_size = ((1_000, 10_000), 250) if store.backend == "sqlite" else ((300, 3_000), 100)
    if store.backend == "cassandra":
        store = quiet_cassandra_store(store.settings)  # the shared server's other keyspaces would count
        request.addfinalizer(store.close)
    creators = [random_account() for _ in range(50)]

    def stream(n, tag):  # accounts made from the row number: the stream is never materialised
        for i in range(n):
            child = _account_from(tag, i)
            yield _edge(creators[i % 50], child, T0 + dt.timedelta(seconds=i), 10_000 + i, 100 + i)

    store.bulk_add_creations("public", stream(chunk_size, 9), now=NOW, chunk_size=chunk_size)  # warm up statement caches
    peaks = []
    for tag, n in enumerate(sizes):
        tracemalloc.start()
        counts = store.bulk_add_creations("public", stream(n, tag), now=NOW, chunk_size=chunk_size)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert (counts.rows, counts.lineage_created) == (n, n)
    small, big = peaks
    assert big < small * 1.5 + 1_000_000, f"peak grew from {small} to {big} bytes with 10x the rows"
    last = _account_from(1, sizes[1] - 1)
    assert store.get_lineage("public", last).stellar_creator_account == creators[(sizes[1] - 1) % 50]


_RUN_SALT = random.getrandbits(64)


def _account_from(tag: int, i: int) -> str:
    """A valid account id derived from (run, tag, i): unique per test run, cheap to make."""
    import hashlib

    from stellar_sdk import StrKey

    return StrKey.encode_ed25519_public_key(hashlib.sha256(f"{_RUN_SALT}:{tag}:{i}".encode()).digest())


def test_bulk_account_states_keep_the_balance_index_in_step(store):
    network = "testnet"
    creator, rich, poor, gone = random_account(), random_account(), random_account(), random_account()
    store.bulk_add_creations(network, [_edge(creator, k, T0, i + 1, network=network) for i, k in enumerate((rich, poor))], now=NOW)
    store.put_lineage(network, gone, status="COMPLETE", xlm_balance=Decimal("70000000.5"))
    store.set_balance(network, gone, Decimal("70000000.5"), None)
    flags = {"auth_required": True, "auth_revocable": False, "auth_immutable": False, "auth_clawback_enabled": False}
    states = [
        AccountStateRow(network, rich, Decimal("12345678.9000000"), "rich.example", flags, {"master_key_weight": 1}, False, T0),
        AccountStateRow(network, poor, Decimal("2.5"), None, flags, None, False, None),
        AccountStateRow(network, gone, None, None, None, None, True, T0),
    ]
    counts = store.bulk_put_account_states(network, states, now=NOW, chunk_size=2)
    assert (counts.rows, counts.lineage_created, counts.lineage_updated, counts.balance_index) == (3, 0, 3, 2)
    rec = store.get_lineage(network, rich)
    assert (rec.xlm_balance, rec.home_domain, rec.flags, rec.thresholds, rec.enriched_at, rec.stellar_creator_account) == (
        Decimal("12345678.9000000"), "rich.example", flags, {"master_key_weight": 1}, T0, creator)
    assert store.get_lineage(network, poor).enriched_at == NOW
    rec = store.get_lineage(network, gone)
    assert (rec.xlm_balance, rec.status) == (None, "COMPLETE")
    if _has_column("account_lineage", "deleted"):
        assert rec.deleted is True
    indexed = dict(store.balances_at_least(network, Decimal("2")))
    assert indexed[rich] == Decimal("12345678.9000000") and indexed[poor] == Decimal("2.5") and gone not in indexed
    # The balance moves: the old index entry goes, the new one comes; a re-run changes nothing more.
    moved = [dataclasses.replace(states[0], xlm_balance=Decimal("99.0000000"))]
    for _ in range(2):
        store.bulk_put_account_states(network, moved, now=NOW)
        indexed = store.balances_at_least(network, Decimal("2"))
        assert [b for a, b in indexed if a == rich] == [Decimal("99.0000000")]
    with pytest.raises(BulkRowRefused) as info:
        store.bulk_put_account_states(network, [dataclasses.replace(states[1], xlm_balance=Decimal("1"), deleted=True)], now=NOW)
    assert info.value.field == "xlm_balance" and store.get_lineage(network, poor).xlm_balance == Decimal("2.5")


# ------------------------------------------------------------ the network-wide Hubble sync (0012)
def _sync_id(prefix="full"):
    import uuid

    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _month_ranges(n, start=dt.datetime(2015, 10, 1, tzinfo=dt.timezone.utc)):
    return [(start + dt.timedelta(days=30 * i), start + dt.timedelta(days=30 * (i + 1))) for i in range(n)]


def test_sync_state_follows_its_ranges(store):
    sid = _sync_id()
    ranges = _month_ranges(3)
    state = store.start_sync("testnet", sid, "full", ranges, T0)
    assert (state.sync_id, state.status, state.ranges_total, state.ranges_done, state.synced_through) == (sid, "RUNNING", 3, 0, None)
    assert store.get_sync_state("testnet") == state
    assert [(r.range_start, r.range_end, r.status) for r in store.list_sync_ranges("testnet", sid)] == [(a, b, "PENDING") for a, b in ranges]
    assert store.mark_sync_range_started("testnet", sid, ranges[1][0], T0).status == "RUNNING"
    # the second range is done first: nothing is synced through until the first is
    state = store.mark_sync_range_done("testnet", sid, ranges[1][0], rows=10, edges=7, merges=3, bytes_billed=2**20,
                                       spent_micro_usd=5, now=T0)
    assert (state.ranges_done, state.synced_through, state.edges, state.merges) == (1, None, 7, 3)
    state = store.mark_sync_range_done("testnet", sid, ranges[0][0], rows=4, edges=4, merges=0, bytes_billed=2**20,
                                       spent_micro_usd=5, now=T0)
    assert (state.ranges_done, state.synced_through, state.edges, state.bytes_billed, state.spent_micro_usd) == (
        2, ranges[1][1], 11, 2**21, 10)
    # done twice (a retried task): counted once
    again = store.mark_sync_range_done("testnet", sid, ranges[0][0], rows=99, edges=99, merges=99, bytes_billed=0,
                                       spent_micro_usd=0, now=T0)
    assert (again.edges, again.ranges_done) == (11, 2)
    assert store.mark_sync_range_started("testnet", sid, ranges[0][0], T0).status == "DONE", "a done range stays done"
    failed = store.mark_sync_range_failed("testnet", sid, ranges[2][0], "hubble_error: boom", T0)
    assert failed.last_error == "hubble_error: boom" and failed.status == "RUNNING"
    assert store.list_sync_ranges("testnet", sid)[2].status == "FAILED"
    store.mark_sync_range_done("testnet", sid, ranges[2][0], rows=0, edges=0, merges=0, bytes_billed=0, spent_micro_usd=0, now=T0)
    done = store.finish_sync("testnet", sid, "DONE", T0)
    assert (done.status, done.ranges_done, done.synced_through, done.last_error) == ("DONE", 3, ranges[2][1], None)


def test_a_replanned_sync_keeps_its_done_ranges_and_a_daily_sync_carries_the_mark(store):
    sid = _sync_id()
    ranges = _month_ranges(2)
    store.start_sync("testnet", sid, "full", ranges, T0)
    store.mark_sync_range_done("testnet", sid, ranges[0][0], rows=1, edges=1, merges=0, bytes_billed=1, spent_micro_usd=1, now=T0)
    again = store.start_sync("testnet", sid, "full", ranges, T0)
    assert [r.status for r in store.list_sync_ranges("testnet", sid)] == ["DONE", "PENDING"]
    assert again.ranges_done == 1 and again.synced_through == ranges[0][1]
    mark = ranges[0][1]
    daily = _sync_id("daily")
    day = [(mark - dt.timedelta(days=1), mark + dt.timedelta(days=1))]
    state = store.start_sync("testnet", daily, "daily", day, T0, synced_through=mark)
    assert state.synced_through == mark and state.mode == "daily"
    state = store.mark_sync_range_done("testnet", daily, day[0][0], rows=1, edges=1, merges=0, bytes_billed=1, spent_micro_usd=1, now=T0)
    assert state.synced_through == day[0][1]


def test_sync_accounts_are_counted_once_per_page(store):
    sid = _sync_id()
    store.start_sync("testnet", sid, "full", _month_ranges(1), T0)
    a, b = sorted([random_account(), random_account()])
    assert store.update_sync_accounts("testnet", sid, None, a, 500, T0)
    assert not store.update_sync_accounts("testnet", sid, None, a, 500, T0), "a retried page is not counted again"
    assert store.update_sync_accounts("testnet", sid, a, b, 20, T0)
    state = store.get_sync_state("testnet")
    assert (state.accounts, state.accounts_after) == (520, b)


def test_sync_inputs_are_checked_before_anything_is_written(store):
    with pytest.raises(InvalidInput) as bad:
        store.start_sync("testnet", "Bad Id!", "full", _month_ranges(1), T0)
    assert bad.value.code == "invalid_sync_id"
    sid = _sync_id()
    for ranges, code in (([], "invalid_range"), (list(reversed(_month_ranges(2))), "invalid_range"),
                         ([(T0, T0)], "invalid_range")):
        with pytest.raises(InvalidInput) as bad:
            store.start_sync("testnet", sid, "full", ranges, T0)
        assert bad.value.code == code
    with pytest.raises(InvalidInput) as bad:
        store.start_sync("testnet", sid, "weekly", _month_ranges(1), T0)
    assert bad.value.code == "invalid_mode"
    assert store.list_sync_ranges("testnet", sid) == []
    store.start_sync("testnet", sid, "full", _month_ranges(1), T0)
    with pytest.raises(InvalidInput) as bad:
        store.mark_sync_range_done("testnet", sid, T0, rows=1, edges=1, merges=0, bytes_billed=0, spent_micro_usd=0, now=T0)
    assert bad.value.code == "unknown_range"
    with pytest.raises(InvalidInput) as bad:
        store.mark_sync_range_done("testnet", sid, _month_ranges(1)[0][0], rows=-1, edges=1, merges=0, bytes_billed=0,
                                   spent_micro_usd=0, now=T0)
    assert bad.value.code == "invalid_count"
    assert store.list_sync_ranges("testnet", sid)[0].status == "PENDING"
    with pytest.raises(InvalidInput):
        store.get_sync_state("mainnet")
