"""Store contract, BalanceIndexPort, HvaPort and ChildrenSummaryPort: balance index, leaderboards, HVA events, fan-out landing views.

Runs on the embedded SQLite and on a real Cassandra 5.0 (the `store` fixture)."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from common.domain import (
    HvaEvent,
    InvalidInput,
    LeaderboardEntry,
)
from tests.support import random_account

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=dt.timezone.utc)


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
