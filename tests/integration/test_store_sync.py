"""The HubbleSyncPort contract (0012: sync_ranges, sync_state): on the embedded SQLite and on a real Cassandra 5.0."""
from __future__ import annotations

import datetime as dt
import uuid

import pytest

from common.domain import InvalidInput
from tests.support import random_account

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=dt.timezone.utc)

def _sync_id(prefix="full"):
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


def test_gone_accounts_names_the_rows_marked_gone(store):
    alive, merged, deleted, unknown = (random_account() for _ in range(4))
    store.put_lineage("testnet", alive, deleted=False)
    store.put_lineage("testnet", merged, merged_at=T0, merged_into=alive, deleted=True)
    store.put_lineage("testnet", deleted, deleted=True)
    assert store.gone_accounts("testnet", [alive, merged, deleted, unknown]) == {merged, deleted}
    assert store.gone_accounts("testnet", []) == set()
    with pytest.raises(InvalidInput):
        store.gone_accounts("testnet", ["GBAD"])
