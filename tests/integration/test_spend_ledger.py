"""The spend ledger's store contract: reservations with their own ids, settled once, bounded.

Every test takes the `store` fixture (the embedded SQLite and the real Cassandra 5.0). The
Cassandra-only tests inject the driver's WriteTimeout into the spend batch through a subclass of
the adapter (after the batch landed, or instead of it), as a coordinator does when a Paxos round
outlives its timeout, and check that every granted reservation is counted exactly once.
"""
from __future__ import annotations

import datetime as dt
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from common.domain import InvalidInput
from common.store.cassandra import CassandraStore
from common.store.port import new_reservation_id
from tests.conftest import cassandra_settings

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
_months = iter(range(10_000))
_months_lock = threading.Lock()


def unique_month() -> str:
    """The Cassandra keyspace lives for the whole session: each test takes its own month."""
    with _months_lock:
        n = next(_months)
    return f"{3000 + random.randint(0, 5000)}-{n % 12 + 1:02d}"


def reserve(store, month, amount, budget=10**9, when=T0, **kw) -> str | None:
    rid = new_reservation_id(when)
    return rid if store.try_reserve_spend(month, amount, budget, when, reservation_id=rid, **kw) else None


# ------------------------------------------------------------------ the contract on both stores
def test_a_reservation_is_recorded_with_its_job_and_listed_open(store):
    month = unique_month()
    rid = reserve(store, month, 700, job_id="stellarmap_x-1", purpose="lineage")
    r = store.get_spend_reservation(month, rid)
    assert (r["state"], r["reserved_micro_usd"], r["charged_micro_usd"], r["job_id"], r["purpose"]) == ("RESERVED", 700, 700, "stellarmap_x-1", "lineage")
    assert [o["reservation_id"] for o in store.open_spend_reservations(month)] == [rid]
    assert store.month_spend_micro_usd(month) == 700


def test_reserving_the_same_id_twice_counts_it_once(store):
    month = unique_month()
    rid = new_reservation_id(T0)
    assert store.try_reserve_spend(month, 500, 10_000, T0, reservation_id=rid)
    assert store.try_reserve_spend(month, 500, 10_000, T0, reservation_id=rid), "a retry with the same id is answered, not re-counted"
    assert store.month_spend_micro_usd(month) == 500


def test_equal_reservations_with_their_own_ids_are_each_counted(store):
    month = unique_month()
    ids = [reserve(store, month, 280) for _ in range(4)]
    assert all(ids) and len(set(ids)) == 4
    assert store.month_spend_micro_usd(month) == 1120


def test_settle_release_and_unknown(store):
    month = unique_month()
    settled, released, unknown = (reserve(store, month, 1000) for _ in range(3))
    assert store.adjust_spend(month, settled, -400, T0, note="billed 600")
    assert store.adjust_spend(month, released, -1000, T0, state="RELEASED")
    assert store.adjust_spend(month, unknown, 0, T0, state="UNKNOWN", note="ReadTimeout")
    assert store.month_spend_micro_usd(month) == 600 + 0 + 1000
    states = {rid: store.get_spend_reservation(month, rid)["state"] for rid in (settled, released, unknown)}
    assert states == {settled: "SETTLED", released: "RELEASED", unknown: "UNKNOWN"}
    assert [r["reservation_id"] for r in store.open_spend_reservations(month)] == [unknown], "UNKNOWN stays open until settled"
    assert store.adjust_spend(month, unknown, -1000, T0)  # settled later from the job's statistics
    assert store.month_spend_micro_usd(month) == 600 and store.open_spend_reservations(month) == []


def test_a_closed_reservation_is_never_adjusted_again(store):
    month = unique_month()
    rid = reserve(store, month, 1000)
    assert store.adjust_spend(month, rid, -300, T0)
    assert not store.adjust_spend(month, rid, -300, T0), "settled once"
    assert not store.adjust_spend(month, rid, -700, T0, state="RELEASED")
    assert store.month_spend_micro_usd(month) == 700
    assert store.get_spend_reservation(month, rid)["charged_micro_usd"] == 700


def test_open_reservations_are_listed_oldest_first_and_aged_by_their_id(store):
    month = unique_month()
    old = reserve(store, month, 1, when=T0)
    new = reserve(store, month, 1, when=T0 + dt.timedelta(hours=1))
    assert [r["reservation_id"] for r in store.open_spend_reservations(month)] == [old, new]
    assert [r["reservation_id"] for r in store.open_spend_reservations(month, created_before=T0 + dt.timedelta(minutes=30))] == [old]
    assert [r["reservation_id"] for r in store.open_spend_reservations(month, limit=1)] == [old]


@pytest.mark.parametrize(
    "delta, state, code",
    [
        (True, "SETTLED", "invalid_amount"),
        (-1.5, "SETTLED", "invalid_amount"),
        ("-1", "SETTLED", "invalid_amount"),
        (-1001, "SETTLED", "invalid_amount"),  # below zero
        (1, "SETTLED", "invalid_amount"),  # beyond what the reservation allowed
        (-999, "RELEASED", "invalid_amount"),  # a release charges 0
        (-1, "UNKNOWN", "invalid_amount"),  # an unknown outcome keeps the whole charge
        (0, "CANCELLED", "invalid_state"),
    ],
    ids=["bool", "float", "text", "below-zero", "above-reserved", "partial-release", "unknown-with-delta", "state"],
)
def test_adjust_spend_is_validated_and_writes_nothing(store, delta, state, code):
    month = unique_month()
    rid = reserve(store, month, 1000)
    with pytest.raises(InvalidInput) as info:
        store.adjust_spend(month, rid, delta, T0, state=state)
    assert info.value.code == code and info.value.message
    r = store.get_spend_reservation(month, rid)
    assert (r["state"], r["charged_micro_usd"]) == ("RESERVED", 1000)
    assert store.month_spend_micro_usd(month) == 1000


@pytest.mark.parametrize(
    "call, code",
    [
        (lambda s, m, rid: s.adjust_spend(m, new_reservation_id(T0), -1, T0), "unknown_reservation"),
        (lambda s, m, rid: s.adjust_spend(m, "not-an-id", -1, T0), "invalid_reservation_id"),
        (lambda s, m, rid: s.adjust_spend("2026-1", rid, -1, T0), "invalid_month"),
        (lambda s, m, rid: s.try_reserve_spend(m, -1, 10, T0), "invalid_amount"),
        (lambda s, m, rid: s.try_reserve_spend(m, 1.5, 10, T0), "invalid_amount"),
        (lambda s, m, rid: s.try_reserve_spend(m, 1, 10, T0, reservation_id="x"), "invalid_reservation_id"),
        (lambda s, m, rid: s.try_reserve_spend(m, 1, 10, T0, job_id="a b"), "invalid_job_id"),
        (lambda s, m, rid: s.try_reserve_spend("2026-1²", 1, 10, T0), "invalid_month"),
    ],
    ids=["unknown", "bad-id", "month", "negative", "float", "reserve-bad-id", "job-id", "unicode-month"],
)
def test_bad_spend_input_is_a_clear_error(store, call, code):
    month = unique_month()
    rid = reserve(store, month, 1000)
    with pytest.raises(InvalidInput) as info:
        call(store, month, rid)
    assert info.value.code == code
    assert store.month_spend_micro_usd(month) == 1000 and len(store.open_spend_reservations(month)) == 1


def test_a_month_kept_before_reservations_carries_on(store):
    """A month whose total lives in the legacy bigquery_budget table (before 0009) starts from it."""
    month = unique_month()
    if store.backend == "sqlite":
        store._conn().execute("INSERT INTO bigquery_budget (month, spent_micro_usd) VALUES (?, ?)", (month, 900))
    else:
        store._run("INSERT INTO bigquery_budget (month, spent_micro_usd) VALUES (?, ?)", (month, 900))
    assert store.month_spend_micro_usd(month) == 900
    assert not store.try_reserve_spend(month, 200, 1000, T0)
    assert reserve(store, month, 100, budget=1000)
    assert store.month_spend_micro_usd(month) == 1000


def test_concurrent_reservations_and_settlements_count_each_once(store):
    month = unique_month()
    budget, each = 15_000, 700

    def work(_):
        granted = []
        for _ in range(4):
            rid = reserve(store, month, each, budget)
            if rid:
                granted.append(rid)
        for rid in granted[::2]:
            store.adjust_spend(month, rid, -200, T0)
        return granted

    with ThreadPoolExecutor(8) as pool:
        granted = [rid for got in pool.map(work, range(8)) for rid in got]
    # settlements give budget back while others reserve: at least budget // each are granted, never too many
    assert budget // each <= len(granted) < 32
    rows = [store.get_spend_reservation(month, rid) for rid in granted]
    assert store.month_spend_micro_usd(month) == sum(r["charged_micro_usd"] for r in rows) <= budget
    assert {r["charged_micro_usd"] for r in rows} <= {each, each - 200}


def test_one_reservation_settled_by_two_racers_is_settled_once(store):
    month = unique_month()
    rid = reserve(store, month, 1000)
    barrier = threading.Barrier(6)

    def settle(i):
        barrier.wait()
        return store.adjust_spend(month, rid, -100 * (i + 1), T0)

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(settle, range(6)))
    assert results.count(True) == 1
    charged = store.get_spend_reservation(month, rid)["charged_micro_usd"]
    assert store.month_spend_micro_usd(month) == charged and charged in {900, 800, 700, 600, 500, 400}


# ------------------------------------------------------------------ Cassandra: unknown outcomes
class TimeoutOnSpendBatch(CassandraStore):
    """Injects the driver's WriteTimeout (CAS) into spend batches. `landed`: the batch ran first
    (applied or refused, as the server decided), so the client does not know what happened.
    `during`: run while the outcome is unknown (another worker's write, from the same start)."""

    def __init__(self, settings, failures: int = 0, landed: bool = True, chance: float = 0.0, during=None, seed: int = 0):
        super().__init__(settings)
        self.failures = failures
        self.landed = landed
        self.chance = chance
        self.during = during
        self.rng = random.Random(seed)
        self.injected = 0
        self._lock = threading.Lock()

    def _run_batch(self, statements):
        from cassandra import ConsistencyLevel, WriteTimeout, WriteType

        spend = any("bigquery_spend_reservations" in cql for cql, _ in statements)
        with self._lock:
            inject = spend and (self.failures > 0 or self.rng.random() < self.chance)
            landed = self.landed if self.failures > 0 else self.rng.random() < 0.5
            if inject:
                self.failures = max(0, self.failures - 1)
                self.injected += 1
        if not inject:
            return super()._run_batch(statements)
        if landed:
            super()._run_batch(statements)
        if self.during is not None:
            during, self.during = self.during, None
            during()
        raise WriteTimeout("injected: CAS timed out", consistency=ConsistencyLevel.LOCAL_SERIAL, required_responses=1,
                           received_responses=0, write_type=WriteType.CAS)


@pytest.fixture
def faulty(cassandra_keyspace, cassandra_store):
    made = []

    def make(**kw):
        s = TimeoutOnSpendBatch(cassandra_settings(cassandra_keyspace), **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


@pytest.mark.cassandra
@pytest.mark.parametrize("landed", [True, False], ids=["write-landed", "write-lost"])
def test_two_equal_reservations_from_the_same_start_are_both_counted(faulty, cassandra_store, landed):
    """The issue's reproduction: A's reservation times out; meanwhile B reserves the same amount
    from the same total. Before, A read back B's total, took it for its own and both were granted
    but counted once (1,060 recorded instead of 1,120). A reservation is now found by its own id."""
    month = unique_month()
    assert reserve(cassandra_store, month, 500)
    other = []
    a = faulty(failures=1, landed=landed, during=lambda: other.append(reserve(cassandra_store, month, 280)))
    rid = reserve(a, month, 280)
    assert rid and other[0] and a.injected == 1
    assert cassandra_store.month_spend_micro_usd(month) == 500 + 280 + 280 == 1060
    assert {r["reservation_id"] for r in cassandra_store.open_spend_reservations(month, limit=10)} >= {rid, other[0]}


@pytest.mark.cassandra
@pytest.mark.parametrize("landed", [True, False], ids=["write-landed", "write-lost"])
def test_a_settlement_with_an_unknown_outcome_is_applied_once(faulty, cassandra_store, landed):
    month = unique_month()
    rid = reserve(cassandra_store, month, 1000)
    a = faulty(failures=1, landed=landed)
    assert a.adjust_spend(month, rid, -250, T0)
    assert a.injected == 1
    assert cassandra_store.month_spend_micro_usd(month) == 750
    assert cassandra_store.get_spend_reservation(month, rid)["state"] == "SETTLED"
    assert not a.adjust_spend(month, rid, -250, T0)


@pytest.mark.cassandra
def test_concurrent_reservations_with_unknown_outcomes_are_counted_exactly(faulty, cassandra_store):
    """8 workers, each on its own connection, a third of whose spend batches time out (half of
    those after landing): every granted reservation is counted once, refused ones not at all."""
    month = unique_month()
    budget, each = 12_000, 280  # room for 42 of the 64 attempts
    workers = [faulty(chance=0.33, seed=i) for i in range(8)]

    def reserve_some(store):
        return [rid for rid in (reserve(store, month, each, budget) for _ in range(8)) if rid]

    def settle_some(args):
        store, got = args
        for rid in got[::3]:
            assert store.adjust_spend(month, rid, -80, T0)

    with ThreadPoolExecutor(8) as pool:
        per_worker = list(pool.map(reserve_some, workers))
        list(pool.map(settle_some, zip(workers, per_worker)))
    granted = [rid for got in per_worker for rid in got]
    assert sum(w.injected for w in workers) > 5, "the faults were exercised"
    assert len(granted) == len(set(granted)) == budget // each
    rows = [cassandra_store.get_spend_reservation(month, rid) for rid in granted]
    assert all(r is not None for r in rows)
    assert cassandra_store.month_spend_micro_usd(month) == sum(r["charged_micro_usd"] for r in rows) <= budget
    opened = {r["reservation_id"] for r in cassandra_store.open_spend_reservations(month, limit=1000)}
    assert opened == {r["reservation_id"] for r in rows if r["state"] == "RESERVED"}
