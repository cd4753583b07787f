"""Store operations per second on both adapters: claim, lineage upsert, one 1,000-row children page.

Baselines, measured in the same run:
- claim / upsert: the same operation with a new connection per request (what a naive function does);
- children page: reading the whole creator partition and slicing the page out of it.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
from decimal import Decimal

from bench.common import Result, cassandra_bench_store, ops_per_second
from common.domain import ChildEdge

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


def _accounts(n: int) -> list[str]:
    from stellar_sdk import StrKey

    return [StrKey.encode_ed25519_public_key(os.urandom(32)) for _ in range(n)]


def _measure(area: str, store, new_store, n_ops: int, n_children: int) -> list[Result]:
    results = []
    accts = _accounts(n_ops * 2)
    for a in accts:
        store.put_lineage("public", a, status="PENDING", updated_at=T0)

    claim = ops_per_second(lambda i: store.claim("public", accts[i], T0), n_ops)

    def claim_new_connection(i):
        s = new_store()
        s.claim("public", accts[n_ops + i], T0)
        s.close()

    n_base = max(5, n_ops // 20) if store.backend == "cassandra" else n_ops
    claim_base = ops_per_second(claim_new_connection, n_base)
    results.append(Result(area, "claim (LWT / transaction) ops/s", claim, "ops/s", "new connection per claim", claim_base))

    upsert_accts = _accounts(n_ops)
    upsert = ops_per_second(
        lambda i: store.put_lineage("public", upsert_accts[i], xlm_balance=Decimal("123.4567890"), home_domain="x.example", updated_at=T0),
        n_ops,
    )

    def upsert_new_connection(i):
        s = new_store()
        s.put_lineage("public", upsert_accts[i], xlm_balance=Decimal("1"), updated_at=T0)
        s.close()

    upsert_base = ops_per_second(upsert_new_connection, n_base)
    results.append(Result(area, "lineage upsert ops/s", upsert, "ops/s", "new connection per upsert", upsert_base))

    creator = _accounts(1)[0]
    kids = _accounts(n_children)
    batch = 5000
    for i in range(0, n_children, batch):
        store.add_children("public", creator, [ChildEdge("public", creator, k, T0, str(j)) for j, k in enumerate(kids[i : i + batch], i)])
    middle = sorted(kids)[n_children // 2]
    reads = 20 if n_children > 20000 else 50
    page = ops_per_second(lambda i: store.get_children_page("public", creator, middle, 1000), reads)

    def whole_partition(i):
        everything = list(store.iter_children("public", creator, 1000))
        start = next(k for k, c in enumerate(everything) if c.child > middle)
        return everything[start : start + 1000]

    base = ops_per_second(whole_partition, max(2, reads // 10))
    results.append(
        Result(area, f"1,000-row page of a {n_children:,}-children partition, reads/s", page, "reads/s", "read whole partition, slice", base)
    )
    return results


def run(short: bool = False) -> list[Result]:
    from common.store import migrations
    from common.store.sqlite import SQLiteStore

    results: list[Result] = []
    n_ops = 300 if short else 2000
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.sqlite3")
        store = SQLiteStore(path)
        migrations.migrate(store)
        results += _measure("store (sqlite)", store, lambda: SQLiteStore(path), n_ops, 100_000)
        store.close()

    results += _cassandra(short, n_ops)
    return results


def _cassandra(short: bool, n_ops: int) -> list[Result]:
    with cassandra_bench_store("store (cassandra)") as opened:
        if isinstance(opened, Result):
            return [opened]
        store, settings = opened
        from common.store.cassandra import CassandraStore

        return _measure("store (cassandra)", store, lambda: CassandraStore(settings), n_ops // 2, 20_000 if short else 100_000)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--short", action="store_true")
    for r in run(ap.parse_args().short):
        print(f"{r.area:20} {r.figure:60} {r.value:12.1f} {r.unit:8} baseline {r.baseline_value or 0:10.1f} ratio {r.ratio or 0:6.1f}x")
