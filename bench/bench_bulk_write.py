"""The bulk write path of the network-wide sync (Store.bulk_add_creations), on both stores.

Input: a deterministic creation stream in time order, as the sync reads it from Hubble: account
i is created by an earlier account (a third of the edges by one of 100 big funders, the rest by
any earlier account), and 1% of the edges re-create an earlier account after a merge (a second
life, another creator). Each edge carries its operation id, ledger and starting balance. Account
ids are made once, outside the timings, into one bytes blob; edges are built lazily from it, so
the stream itself is never a list.

1. Rows per second: every edge of the stream written through bulk_add_creations (creation
   event, child row, the lineage row's earliest creator; a row = an edge, which writes 3 table
   rows), against the one-statement-per-row path measured in the same run on a subset
   (add_creation_event + add_children + get_lineage, and put_lineage when the edge is earlier:
   what the crawls do per child), reported per row, after a 100-row warm-up of the store (the
   connection and prepared statements, once per process). The note adds an idempotent re-run of
   the first rows (the resume case).
   Goal: >= 20,000 rows/s on SQLite, >= 5,000 rows/s on Cassandra, on 2 cores, 1,000,000 rows.
2. Peak memory (tracemalloc) of the bulk write as the input grows 10x: the peak for 10N rows
   beside the peak for N rows, both in the same run (flat memory: ratio ~1).
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import os
import random
import tempfile
import time
import tracemalloc
from decimal import Decimal
from typing import Iterator

from bench.common import Result, cassandra_bench_store, run_cli
from local.testing.cassandra import quiet_cassandra_store
from common.domain import GENESIS_ACCOUNT, ChildEdge, CreationEvent
from common.store.bulk import CreationEdge

T0 = dt.datetime(2016, 1, 1, tzinfo=dt.timezone.utc)
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
ID_LEN = 56
BIG_FUNDERS = 100
RECREATE_SHARE = 0.01
EDGE_INTERVAL = dt.timedelta(seconds=5)
STARTING_BALANCE = Decimal("1.5000000")  # one immutable value for every edge


def account_blob(n: int, seed: int) -> bytes:
    """n valid account ids (G..., StrKey checksum), 56 ASCII bytes each, in one bytes object."""
    rng = random.Random(seed)
    out = bytearray()
    for _ in range(n):
        raw = bytes([6 << 3]) + rng.randbytes(32)
        crc = binascii.crc_hqx(raw, 0)
        out += base64.b32encode(raw + bytes([crc & 0xFF, crc >> 8]))
    return bytes(out)


class Stream:
    """Edges of accounts [start, start + n) of the blob, in time order; see the module docstring."""

    def __init__(self, blob: bytes, network: str = "public"):
        self.blob = blob
        self.network = network

    def account(self, i: int) -> str:
        return self.blob[i * ID_LEN : (i + 1) * ID_LEN].decode()

    def edges(self, start: int, n: int, seed: int = 7) -> Iterator[CreationEdge]:
        rng = random.Random(seed)
        random_, randrange, account, network = rng.random, rng.randrange, self.account, self.network
        created = start  # accounts created so far end here
        at = T0 + dt.timedelta(seconds=5 * start)
        for k in range(n):
            ledger = 1_000_000 + start + k
            if created - start > 10 and random_() < RECREATE_SHARE:  # a second life of an earlier account
                child = account(randrange(start + 1, created - 1))
                creator = account(randrange(start, created))
            else:
                child = account(created)
                if created == start:
                    creator = GENESIS_ACCOUNT
                elif random_() < 1 / 3:
                    creator = account(start + randrange(min(BIG_FUNDERS, created - start)))
                else:
                    creator = account(randrange(start, created))
                created += 1
            if creator == child:
                creator = GENESIS_ACCOUNT
            yield CreationEdge(network, creator, child, at, str((ledger << 32) + 4097), ledger, STARTING_BALANCE)
            at += EDGE_INTERVAL


def one_statement_per_row(store, edge: CreationEdge) -> None:
    """The per-row path the crawls take for each child (common/handlers/*: _store_hubble_children, _store_edges)."""
    net = edge.network_name
    store.add_creation_event(CreationEvent(net, edge.account, edge.created_at, edge.operation_id, edge.creator,
                                           edge.starting_balance, None, "BIGQUERY"))
    store.add_children(net, edge.creator, [ChildEdge(net, edge.creator, edge.account, edge.created_at, edge.operation_id, edge.starting_balance)])
    rec = store.get_lineage(net, edge.account)
    if rec is None or rec.account_creation_date is None or edge.created_at < rec.account_creation_date:
        store.put_lineage(net, edge.account, stellar_creator_account=edge.creator, account_creation_date=edge.created_at, updated_at=NOW)


def _rate(n: int, fn) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def _peak(fn) -> tuple[int, object]:
    tracemalloc.start()
    try:
        out = fn()
        return tracemalloc.get_traced_memory()[1], out
    finally:
        tracemalloc.stop()


def _measure(area: str, store, rows: int, baseline_rows: int, memory_rows: int, goal: str, memory_store=None) -> list[Result]:
    blob = account_blob(max(rows + baseline_rows, 12 * memory_rows), seed=len(area))
    public, testnet = Stream(blob, "public"), Stream(blob, "testnet")

    # 1. rows per second: ours on [0, rows), the baseline on the accounts after them; first a
    # warm-up of 100 rows on the other network (connect, prepare: once per process, not per row)
    chunk = min(store.BULK_CHUNK_SIZE, memory_rows // 2)  # the store's own chunk when the sizes allow
    store.bulk_add_creations("testnet", testnet.edges(11 * memory_rows + chunk, 100), now=NOW)
    t0, cpu0 = time.perf_counter(), time.process_time()
    counts = store.bulk_add_creations("public", public.edges(0, rows), now=NOW)
    ours = rows / (time.perf_counter() - t0)
    ours_cpu = rows / max(time.process_time() - cpu0, 1e-9)
    load = os.getloadavg()[0]
    base = _rate(baseline_rows, lambda: [one_statement_per_row(store, e) for e in public.edges(rows, baseline_rows)])
    rerun_rows = min(rows, 100_000)
    rerun = _rate(rerun_rows, lambda: store.bulk_add_creations("public", public.edges(0, rerun_rows), now=NOW))
    gen = _rate(rows, lambda: sum(1 for _ in public.edges(0, rows)))
    note = (f"{rows:,} rows (edges) in {counts.chunks} chunks (of up to {store.BULK_CHUNK_SIZE:,}): {counts.creation_events:,} events, {counts.children:,} children rows, "
            f"{counts.lineage_created:,} lineage rows created, {counts.lineage_updated:,} changed; "
            f"1% of the rows are second lives; baseline on {baseline_rows:,} rows; idempotent re-run of {rerun_rows:,} rows: {rerun:,.0f} rows/s; "
            f"building the input alone: {gen:,.0f} rows/s (included); after a 100-row warm-up (connect, prepare); this process's CPU: {ours_cpu:,.0f} rows per CPU-second "
            f"({'the whole write path' if store.backend == 'sqlite' else 'the client side only'}); load average {load:.1f} on {os.cpu_count()} cores")

    # 2. peak memory as the input grows 10x (fresh accounts on the other network; several chunks either way)
    mem = memory_store or store
    mem.bulk_add_creations("testnet", testnet.edges(11 * memory_rows, chunk), now=NOW, chunk_size=chunk)  # connect, prepare
    small, _ = _peak(lambda: mem.bulk_add_creations("testnet", testnet.edges(0, memory_rows), now=NOW, chunk_size=chunk))
    big, _ = _peak(lambda: mem.bulk_add_creations("testnet", testnet.edges(memory_rows, 10 * memory_rows), now=NOW, chunk_size=chunk))
    mem_note = (f"tracemalloc peak of bulk_add_creations, chunks of {chunk:,} rows: {memory_rows:,} rows {small / 1e6:.1f} MB, "
                f"{10 * memory_rows:,} rows {big / 1e6:.1f} MB (the stream is a generator)")
    return [
        Result(area, f"bulk write, creation edges, {rows:,} rows", ours, "rows/s",
               "one statement per row (add_creation_event + add_children + get/put_lineage)", base, True, note, goal),
        Result(area, f"bulk write peak memory, {10 * memory_rows:,} rows (10x)", big / 1e6, "MB",
               f"the same at {memory_rows:,} rows", small / 1e6, False, mem_note, "flat (ratio ~1)"),
    ]


def run(short: bool = False) -> list[Result]:
    from common.store import migrations
    from common.store.sqlite import SQLiteStore

    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(os.path.join(tmp, "bulk.sqlite3"))
        migrations.migrate(store)
        sizes = (20_000, 5_000, 10_000) if short else (1_000_000, 20_000, 100_000)
        results += _measure("bulk write (sqlite)", store, *sizes, "≥ 20,000 rows/s (1,000,000 rows, 2 cores)")
        store.close()
    with cassandra_bench_store("bulk write (cassandra)") as opened:
        if isinstance(opened, Result):
            return results + [opened]
        quiet = quiet_cassandra_store(opened[1])
        try:
            sizes = (5_000, 500, 2_000) if short else (1_000_000, 5_000, 20_000)
            results += _measure("bulk write (cassandra)", opened[0], *sizes, "≥ 5,000 rows/s (1,000,000 rows, 2 cores)", quiet)
        finally:
            quiet.close()
    return results


if __name__ == "__main__":
    raise SystemExit(run_cli(run, __doc__))
