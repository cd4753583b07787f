"""Ledger -> time: certain bounds from monotone points, interpolated windows, sequence ledgers."""
from __future__ import annotations

import datetime as dt

import pytest

from common.ledger_time import MIN_MARGIN, NETWORK_START, LedgerClock, sequence_ledger, toid_ledger

pytestmark = pytest.mark.unit
UTC = dt.timezone.utc
NOW = dt.datetime(2026, 1, 1, tzinfo=UTC)


def at(ledger: int) -> dt.datetime:  # a network closing a ledger every 5 s, as the simulator does
    return NETWORK_START + dt.timedelta(seconds=5 * (ledger - 1))


def test_sequence_and_operation_ids_name_ledgers():
    assert sequence_ledger(str(37_362_540 << 32)) == 37_362_540
    assert sequence_ledger(160470889244710503) == 37_362_540  # the pre-retention account of issue 13
    assert sequence_ledger((37_362_540 << 32) + 17) == 37_362_540
    assert sequence_ledger("x") is None and sequence_ledger(5) is None
    assert toid_ledger(str((1234 << 32) + (3 << 12) + 1)) == 1234
    assert toid_ledger("expert:1600000000") is None


def test_a_linear_network_is_estimated_exactly_and_windows_stay_narrow():
    clock = LedgerClock([(60_000_000, at(60_000_000))])
    guess, margin = clock.estimate(30_000_000)
    assert guess == at(30_000_000)
    window = clock.window(30_000_000, NOW)
    assert window.lo <= at(30_000_000) < window.hi
    # A guess plus a margin that grows with the distance to the nearest point: a few weeks here,
    # where the nearest point is 4.75 years away; a retry takes the certain window if it misses.
    assert 2 * MIN_MARGIN.days < window.days < 40
    certain = clock.certain_window(30_000_000, NOW)
    assert (certain.lo, certain.hi) == (NETWORK_START, at(60_000_000) + dt.timedelta(seconds=1))
    near = LedgerClock([(29_990_000, at(29_990_000)), (30_010_000, at(30_010_000))]).window(30_000_000, NOW)
    assert near.lo <= at(30_000_000) < near.hi and near.days <= 1.2


def test_windows_never_leave_the_certain_bounds_even_when_close_times_drift():
    # Slow early years: the real close times bend away from the straight line.
    points = [(10_000_000, dt.datetime(2017, 3, 1, tzinfo=UTC)), (10_100_000, dt.datetime(2017, 3, 8, tzinfo=UTC))]
    clock = LedgerClock(points)
    window = clock.window(10_050_000, NOW)
    assert points[0][1] <= window.lo and window.hi <= points[1][1] + dt.timedelta(seconds=1)
    lo, hi = clock.bounds(10_050_000)
    assert (lo, hi) == (points[0][1], points[1][1])
    assert clock.bounds(10_000_000) == (points[0][1], points[0][1])
    assert clock.upper(10_050_000, NOW) == points[1][1] + dt.timedelta(seconds=1)
    assert clock.upper(20_000_000, NOW) == NOW + dt.timedelta(seconds=1)  # beyond every point: up to now


def test_contradicting_points_are_dropped():
    clock = LedgerClock([(100, at(100)), (200, at(50)), (300, at(300))])
    assert [l for l, _ in clock.points] == [1, 100, 300]


def test_beyond_the_last_point_extrapolates_with_a_growing_margin():
    clock = LedgerClock([(1_000_000, at(1_000_000))])
    near = clock.window(1_000_100, NOW)
    far = clock.window(50_000_000, NOW)
    assert near.lo <= at(1_000_100) < near.hi and far.lo <= at(50_000_000) < far.hi
    assert far.days > near.days
