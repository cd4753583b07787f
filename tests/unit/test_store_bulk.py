"""The pure part of the bulk write path (common/store/bulk.py): chunks, validation, the plan.
The adapters carry the plan out; tests/integration/test_store_bulk_write.py runs them both."""
from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest

from common.domain import InvalidInput
from common.store import bulk
from common.store.bulk import AccountStateRow, BulkCounts, CreationChunk, CreationEdge, Stored, StoredEvent
from tests.support import random_account

pytestmark = pytest.mark.unit

T0 = dt.datetime(2017, 5, 1, tzinfo=dt.timezone.utc)
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
A, B, C, X, Y = (random_account() for _ in range(5))


def edge(creator, account, at, op, ledger=None):
    return CreationEdge("public", creator, account, at, str(op), ledger, Decimal("1"))


def no_reads(*_):
    raise AssertionError("this plan must not need an extra read")


def plan(edges, stored=None, with_ledger=True, events=no_reads, pairs=no_reads):
    return CreationChunk("public", edges, "BIGQUERY").plan(stored or {}, NOW, with_ledger, events, pairs)


def test_operation_ids_order_as_numbers():
    ids = ["100", "99", "4294967297", "12884901889", "8589934593"]
    assert sorted(ids, key=bulk.operation_key) == ["99", "100", "4294967297", "8589934593", "12884901889"]


def test_new_account_takes_its_earliest_creation_and_the_largest_ledger():
    p = plan([edge(B, X, T0 + dt.timedelta(days=9), 20, 2_000), edge(A, X, T0, 10, 1_000)])
    (row,) = p.lineage
    assert row == {"network_name": "public", "stellar_account": X, "stellar_creator_account": A, "account_creation_date": T0,
                   "creation_ledger": 2_000, "created_at": NOW, "updated_at": NOW}
    assert {(c["creator"], c["operation_id"]) for c in p.children} == {(A, "10"), (B, "20")}
    assert (p.counts.creation_events, p.counts.children, p.counts.lineage_created) == (2, 2, 1)
    assert "creation_ledger" not in plan([edge(A, X, T0, 10, 1_000)], with_ledger=False).lineage[0]


def test_stored_row_changes_only_for_an_earlier_creation_or_a_later_ledger():
    stored = {X: Stored(A, T0, 5_000)}
    assert plan([edge(B, X, T0 + dt.timedelta(days=1), 20, 4_000)], stored, pairs=lambda _: {}).lineage == []
    (row,) = plan([edge(B, X, T0 + dt.timedelta(days=1), 20, 6_000)], stored, pairs=lambda _: {}).lineage
    assert row == {"network_name": "public", "stellar_account": X, "creation_ledger": 6_000, "updated_at": NOW}
    (row,) = plan([edge(C, X, T0 - dt.timedelta(days=1), 5, 900)], stored).lineage
    assert (row["stellar_creator_account"], row["account_creation_date"]) == (C, T0 - dt.timedelta(days=1))
    assert "creation_ledger" not in row and "created_at" not in row  # an older life's ledger is not the current one
    # A row without creation fields (e.g. only a status) gets them.
    (row,) = plan([edge(A, X, T0, 10)], {X: Stored(None, None, None)}).lineage
    assert row["stellar_creator_account"] == A


def test_a_tie_at_the_same_close_time_reads_the_stored_events_once():
    asked = []

    def events(ties):
        asked.append(ties)
        return {X: StoredEvent(T0, "100", A)}

    stored = {X: Stored(A, T0, None), Y: Stored(A, T0, None)}
    p = plan([edge(B, X, T0, 99), edge(B, Y, T0 + dt.timedelta(days=1), 7)], stored, events=events, pairs=lambda _: {})
    assert asked == [[(X, T0)]]
    assert [r["stellar_creator_account"] for r in p.lineage] == [B]  # "99" < "100"
    assert plan([edge(B, X, T0, 101)], {X: Stored(A, T0, None)}, events=events, pairs=lambda _: {}).lineage == []
    # The stored row names a creator but no stored event is at that time: the edge (with its operation) wins.
    assert plan([edge(B, X, T0, 101)], {X: Stored(A, T0, None)}, events=lambda _: {}, pairs=lambda _: {}).lineage[0][
        "stellar_creator_account"] == B


def test_children_rows_keep_each_creators_first_creation():
    # A created X first (stored), B re-created it: B's pair must be checked against B's stored row.
    stored = {X: Stored(A, T0, None)}
    p = plan([edge(B, X, T0 + dt.timedelta(days=5), 50)], stored, pairs=lambda pairs: {})
    assert [c["creator"] for c in p.children] == [B]
    p = plan([edge(B, X, T0 + dt.timedelta(days=5), 50)], stored,
             pairs=lambda pairs: {(B, X): StoredEvent(T0 + dt.timedelta(days=2), "20", B)})
    assert p.children == [] and p.counts.children == 0
    # A's own later life: A's stored first creation stays.
    p = plan([edge(A, X, T0 + dt.timedelta(days=9), 90)], stored, pairs=lambda pairs: {(A, X): StoredEvent(T0, "10", A)})
    assert p.children == []
    # A re-run of the stored first life, and an earlier life, are written without a read.
    assert len(plan([edge(A, X, T0, 10)], stored).children) == 1
    assert len(plan([edge(C, X, T0 - dt.timedelta(days=1), 5)], stored).children) == 1


def test_duplicate_rows_in_a_chunk_are_one_event():
    e = edge(A, X, T0, 10)
    p = plan([e, e, e])
    assert (len(p.events), len(p.children), len(p.lineage)) == (1, 1, 1)


def test_naive_and_microsecond_times_are_normalised_like_the_rest_of_the_store():
    p = plan([edge(A, X, dt.datetime(2017, 5, 1, 0, 0, 0, 123456), 10)])
    assert p.events[0]["created_at"] == dt.datetime(2017, 5, 1, 0, 0, 0, 123000, tzinfo=dt.timezone.utc)


def test_chunks_are_consumed_one_at_a_time():
    produced = []

    def rows():
        for i in range(7):
            produced.append(i)
            yield i

    seen = []

    def write(chunk):
        seen.append((list(chunk), len(produced)))
        return BulkCounts(creation_events=len(chunk))

    total = bulk.run_chunks(rows(), 3, lambda r: None, write)
    assert seen == [([0, 1, 2], 3), ([3, 4, 5], 6), ([6], 7)]  # never more than one chunk read ahead
    assert (total.rows, total.chunks, total.creation_events) == (7, 3, 7)


def test_a_bad_row_names_itself_and_what_was_written():
    def check(r):
        if r == 4:
            raise InvalidInput("invalid_account", "account 'x' is not valid", "account")

    written = []
    with pytest.raises(bulk.BulkRowRefused) as info:
        bulk.run_chunks(range(9), 3, check, lambda chunk: written.append(chunk) or BulkCounts())
    err = info.value
    assert written == [[0, 1, 2]]
    assert (err.row, err.chunk, err.code, err.field, err.written.rows) == (4, (3, 5), "invalid_account", "account", 3)
    assert err.message == "row 4: account 'x' is not valid; rows 3-5 (its chunk) were not written, the 3 rows before them were"


@pytest.mark.parametrize("state, field", [
    (AccountStateRow("testnet", X, Decimal(1)), "network_name"),
    (AccountStateRow("public", "G123", Decimal(1)), "account"),
    (AccountStateRow("public", X, 5), "xlm_balance"),
    (AccountStateRow("public", X, Decimal("NaN")), "xlm_balance"),
    (AccountStateRow("public", X, Decimal(1), "x" * 256), "home_domain"),
    (AccountStateRow("public", X, Decimal(1), flags=[1]), "flags"),
    (AccountStateRow("public", X, None, deleted="yes"), "deleted"),
    (AccountStateRow("public", X, Decimal(1), deleted=True), "xlm_balance"),
    (AccountStateRow("public", X, Decimal(1), as_of="2020"), "as_of"),
])
def test_bad_account_states_are_named(state, field):
    with pytest.raises(InvalidInput) as info:
        bulk.check_state(state, "public")
    assert info.value.field == field


def test_state_plan_moves_the_balance_index_entry():
    stored = {X: Decimal("150"), Y: None}
    states = [AccountStateRow("public", X, Decimal("15")), AccountStateRow("public", Y, Decimal("2")),
              AccountStateRow("public", C, None, deleted=True), AccountStateRow("public", X, Decimal("15000"))]
    p = bulk.plan_states("public", states, stored, NOW, with_deleted=False)
    assert p.index_deletes == [(2, Decimal("150"), X)]
    assert p.index_puts == [(4, Decimal("15000"), X), (0, Decimal("2"), Y)]  # the last row of X wins
    assert [r["stellar_account"] for r in p.lineage] == [X, Y, C]
    assert "deleted" not in p.lineage[2] and p.lineage[2]["created_at"] == NOW
    assert (p.counts.lineage_created, p.counts.lineage_updated, p.counts.balance_index) == (1, 2, 2)
    assert bulk.plan_states("public", states[2:3], {}, NOW, with_deleted=True).lineage[0]["deleted"] is True


class _Edge(CreationEdge):
    """A subclass: check_edge accepts it; the fast path leaves it to check_edge."""


GOOD = edge(A, X, T0, 10, 5)
BAD_EDGES = [
    dataclasses.replace(GOOD, account=X[:-1] + ("A" if X[-1] != "A" else "B")),  # checksum
    dataclasses.replace(GOOD, creator="GNOTANACCOUNT"),
    dataclasses.replace(GOOD, creator=None),
    dataclasses.replace(GOOD, network_name="testnet"),
    dataclasses.replace(GOOD, creator=X),  # self-created
    dataclasses.replace(GOOD, created_at="2017-05-01"),
    dataclasses.replace(GOOD, created_at=T0.date()),
    dataclasses.replace(GOOD, operation_id=""),
    dataclasses.replace(GOOD, operation_id="1" * 65),
    dataclasses.replace(GOOD, operation_id=10),
    dataclasses.replace(GOOD, ledger=0),
    dataclasses.replace(GOOD, ledger=2**31),
    dataclasses.replace(GOOD, ledger=True),
    dataclasses.replace(GOOD, ledger=5.0),
    dataclasses.replace(GOOD, starting_balance=Decimal("-1")),
    dataclasses.replace(GOOD, starting_balance=Decimal("NaN")),
    dataclasses.replace(GOOD, starting_balance=1.5),
    dataclasses.replace(GOOD, transaction_hash=b"ab"),
    ("not", "an", "edge"),
]


@pytest.mark.parametrize("bad", BAD_EDGES)
def test_the_chunk_fast_check_refuses_every_row_check_edge_refuses(bad):
    with pytest.raises(InvalidInput):
        bulk.check_edge(bad, "public")
    assert bulk.edges_ok([GOOD, edge(B, Y, T0, 11), bad], "public") is False
    with pytest.raises(bulk.BulkRowRefused) as info:  # the fallback names the row
        bulk.run_chunks([GOOD, GOOD, bad, GOOD], 4, lambda e: bulk.check_edge(e, "public"), lambda c: BulkCounts(),
                        lambda c: bulk.edges_ok(c, "public"))
    assert info.value.row == 2


def test_the_chunk_fast_check_accepts_good_rows_and_leaves_the_rest_to_check_edge():
    good = [GOOD, edge(A, Y, T0, 11), edge(B, X, T0 + dt.timedelta(days=1), 12),
            dataclasses.replace(GOOD, ledger=None, starting_balance=None, transaction_hash="ab" * 32)]
    assert bulk.edges_ok(good, "public") is True
    other = _Edge(*dataclasses.astuple(GOOD))
    assert bulk.edges_ok([other], "public") is False  # not refused: check_edge decides
    bulk.check_edge(other, "public")
    written = []
    bulk.run_chunks(good + [other], 10, lambda e: bulk.check_edge(e, "public"), lambda c: written.append(c) or BulkCounts(),
                    lambda c: bulk.edges_ok(c, "public"))
    assert written == [good + [other]]


def test_plan_rows_follow_the_column_tuples():
    p = plan([edge(A, X, T0, 10, 5)])
    (event,) = p.event_rows()
    assert dict(zip(bulk.EVENT_COLUMNS, event)) == p.events[0] and p.events[0]["source"] == "BIGQUERY"
    assert p.events[0]["ledger"] == 5 and p.events[0]["creator"] == A
    assert p.children == [{"network_name": "public", "creator": A, "child": X, "created_at": T0, "operation_id": "10",
                           "starting_balance": Decimal("1")}]
