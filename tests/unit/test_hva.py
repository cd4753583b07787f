"""HVA ranking and diff logic (pure functions): ranks, the four event types, Δrank, pct, badges."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from common.domain import HvaEvent, LeaderboardEntry
from common.hva import badges, diff, pct_change, rank

pytestmark = pytest.mark.unit

T0 = dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone.utc)
A = [f"G{c * 55}" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]  # shapes only: pure functions never validate


def entries(*pairs):
    return [LeaderboardEntry(i + 1, a, Decimal(b)) for i, (a, b) in enumerate(pairs)]


def test_rank_is_a_prefix_at_or_above_the_threshold_and_ties_keep_account_order():
    balances = [(A[0], Decimal("900000")), (A[1], Decimal("50000")), (A[2], Decimal("50000")), (A[3], Decimal("49999.9999999"))]
    board = rank(balances, 50_000)
    assert [(e.rank, e.stellar_account) for e in board] == [(1, A[0]), (2, A[1]), (3, A[2])]
    assert rank(balances, 1_000_000) == []
    assert [e.stellar_account for e in rank(balances, 10_000)] == A[:4]


def test_no_change_means_no_events():
    board = entries((A[0], 100), (A[1], 90))
    assert diff("public", 10, board, list(board), T0, 10) == []


def test_entered_and_exited_carry_ranks_balances_and_pct():
    before = entries((A[0], 300), (A[1], 200))
    after = entries((A[0], 310), (A[2], 250))
    events = diff("public", 100, before, after, T0, 10, old_balance_hint={A[2]: Decimal(50)}, new_balance_hint={A[1]: Decimal(20)})
    kinds = {(e.event_type, e.stellar_account) for e in events}
    assert kinds == {("ENTERED", A[2]), ("EXITED", A[1])}
    entered = next(e for e in events if e.event_type == "ENTERED")
    assert (entered.old_rank, entered.new_rank, entered.old_balance, entered.new_balance) == (None, 2, Decimal(50), Decimal(250))
    assert entered.pct_change == 400.0
    exited = next(e for e in events if e.event_type == "EXITED")
    assert (exited.old_rank, exited.new_rank, exited.old_balance, exited.new_balance, exited.pct_change) == (2, None, Decimal(200), Decimal(20), -90.0)
    assert all(e.event_time == T0 and e.threshold == 100 and e.network_name == "public" for e in events)


def test_entered_without_a_known_previous_balance_has_no_pct():
    events = diff("public", 10, [], entries((A[0], 100)), T0, 10)
    assert [(e.event_type, e.old_balance, e.pct_change) for e in events] == [("ENTERED", None, None)]


def _board(order, balances=None):
    return [LeaderboardEntry(i + 1, a, Decimal((balances or {}).get(a, 1000 - i))) for i, a in enumerate(order)]


def test_rank_moves_of_at_least_the_minimum_are_events_smaller_ones_are_not():
    order = A[:20]
    moved = order[:]
    mover = moved.pop(15)  # rank 16 -> rank 6: up 10
    moved.insert(5, mover)
    events = diff("public", 10, _board(order), _board(moved), T0, 10)
    ups = [e for e in events if e.event_type == "RANK_UP"]
    assert [(e.stellar_account, e.old_rank, e.new_rank) for e in ups] == [(mover, 16, 6)]
    assert not [e for e in events if e.event_type == "RANK_DOWN"]  # the others moved by 1
    nine = order[:]
    m9 = nine.pop(14)  # rank 15 -> rank 6: up 9, below the minimum
    nine.insert(5, m9)
    assert diff("public", 10, _board(order), _board(nine), T0, 10) == []


def test_rank_down_and_a_configurable_minimum():
    order = A[:12]
    moved = order[1:] + order[:1]  # rank 1 -> rank 12: down 11; the others up 1
    events = diff("public", 10, _board(order), _board(moved), T0, 10)
    assert [(e.event_type, e.stellar_account, e.old_rank, e.new_rank) for e in events] == [("RANK_DOWN", order[0], 1, 12)]
    events = diff("public", 10, _board(order), _board(moved), T0, 1)
    assert sum(e.event_type == "RANK_UP" for e in events) == 11 and sum(e.event_type == "RANK_DOWN" for e in events) == 1


def test_pct_change():
    assert pct_change(Decimal(100), Decimal(150)) == 50.0
    assert pct_change(Decimal(3), Decimal(1)) == -66.6667
    assert pct_change(None, Decimal(1)) is None and pct_change(Decimal(1), None) is None
    assert pct_change(Decimal(0), Decimal(5)) is None


def _event(account, kind, old, new, hours_ago):
    return HvaEvent("public", 10, account, T0 - dt.timedelta(hours=hours_ago), kind, old, new, None, None, None)


def test_badges_new_up_down_and_none():
    board = _board(A[:5])
    events = [
        _event(A[0], "RANK_UP", 30, 15, 20),
        _event(A[0], "RANK_UP", 15, 1, 2),  # first move in the window counts: 30 -> 1 = up 29
        _event(A[1], "RANK_DOWN", 1, 12, 5),
        _event(A[1], "RANK_UP", 12, 2, 1),  # 1 -> 2 overall: down 1
        _event(A[2], "EXITED", 3, None, 10),
        _event(A[2], "ENTERED", None, 3, 4),
        _event(A[3], "RANK_UP", 4, 4, 3),  # net zero
    ]
    assert badges(board, events) == {A[0]: "↑29", A[1]: "↓1", A[2]: "NEW", A[3]: None, A[4]: None}
