"""Store contract, SpendLedgerPort: budgets, reservations, billed jobs.

Runs on the embedded SQLite and on a real Cassandra 5.0 (the `store` fixture)."""
from __future__ import annotations

import datetime as dt
import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from common.store.port import new_reservation_id

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=dt.timezone.utc)


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
