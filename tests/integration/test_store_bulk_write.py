"""Store contract, BulkWritePort: the bulk write path of the network-wide sync.

Runs on the embedded SQLite and on a real Cassandra 5.0 (the `store` fixture)."""
from __future__ import annotations

import dataclasses
import datetime as dt
import random
from decimal import Decimal

import pytest

from common.domain import InvalidInput
from common.store import codec
from common.store.bulk import AccountStateRow, BulkRowRefused, CreationEdge
from tests.support import quiet_cassandra_store, random_account

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=dt.timezone.utc)


NOW = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.timezone.utc)


def _edge(creator, account, at, op, ledger=None, balance=Decimal("1.5"), network="public"):
    return CreationEdge(network, creator, account, at, str(op), ledger, balance)


def _has_column(table: str, column: str) -> bool:
    return column in codec.column_types()[table]


def _children(store, creator, network="public"):
    return {c.child: c for c in store.iter_children(network, creator)}


def _lives(creator_a, creator_b, account):
    """Three lives of one account: A creates it, B re-creates it after a merge, A re-creates it again."""
    return [
        _edge(creator_a, account, T0, 1 << 32, 1_000, Decimal("10")),
        _edge(creator_b, account, T0 + dt.timedelta(days=40), 2 << 32, 2_000, Decimal("20")),
        _edge(creator_a, account, T0 + dt.timedelta(days=90), 3 << 32, 3_000, Decimal("30")),
    ]


_RUN_SALT = random.getrandbits(64)


def _account_from(tag: int, i: int) -> str:
    """A valid account id derived from (run, tag, i): unique per test run, cheap to make."""
    import hashlib

    from stellar_sdk import StrKey

    return StrKey.encode_ed25519_public_key(hashlib.sha256(f"{_RUN_SALT}:{tag}:{i}".encode()).digest())


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


def test_bulk_balances_keep_their_own_scale_within_a_chunk(store):
    """Equal balances of another scale (1.5, 1.50) are written as given, not as the first of them."""
    creator, kids = random_account(), [random_account() for _ in range(4)]
    balances = [Decimal("1.5"), Decimal("1.50"), Decimal("1.5000000"), Decimal("1.5")]
    edges = [_edge(creator, k, T0 + dt.timedelta(seconds=i), 700 + i, balance=b) for i, (k, b) in enumerate(zip(kids, balances))]
    store.bulk_add_creations("public", edges, now=NOW)
    children = _children(store, creator)
    for k, b in zip(kids, balances):
        (event,) = store.get_creation_events("public", k)
        assert (str(event.starting_balance), str(children[k].starting_balance)) == (str(b), str(b))


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
    bench/bench_bulk_write.py measures 1,000,000). tracemalloc also counts other threads (the test
    runner's, drivers'), hence 2 MB of slack: holding the larger stream alone would take 6.9 MB (sqlite)
    or 3.4 MB (cassandra, whose sizes keep its run short)."""
    import tracemalloc

    sizes, chunk_size = ((2_000, 20_000), 250) if store.backend == "sqlite" else ((1_000, 10_000), 100)
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
    assert big < small * 1.5 + 2_000_000, f"peak grew from {small} to {big} bytes with 10x the rows"
    last = _account_from(1, sizes[1] - 1)
    assert store.get_lineage("public", last).stellar_creator_account == creators[(sizes[1] - 1) % 50]


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
