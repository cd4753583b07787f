"""`/account-lineage` latency for an account with 100,000 children (first page + fan-out summary),
on SQLite and on Cassandra, through the real stats handler (in-process WSGI, no network hop).

The account sits 15 hops below genesis (a deep ancestor chain), 10% of its children are enriched
(have a balance). Ours: one page of the children partition + one batch read of those children +
the precomputed summary row. Baseline, measured in the same run: the naive endpoint, which reads
the whole children partition and every child's row on each request to build the summary.
Goal: p99 of 50 ms or less.
"""
from __future__ import annotations

import datetime as dt
import os
import random
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from bench.common import Result, cassandra_bench_store, latencies_ms, median, percentile, random_accounts, run_cli, seed_chain

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
DEPTH = 15
GOAL = "p99 ≤ 50 ms"


def _seed(store, n_children: int, workers: int) -> str:
    from common.domain import GENESIS_ACCOUNT, ChildEdge

    rng = random.Random(11)
    store.put_lineage("public", GENESIS_ACCOUNT, status="COMPLETE", num_child_accounts=1)
    chain = seed_chain(store, GENESIS_ACCOUNT, DEPTH, T0)
    creator = chain[-1]
    kids = random_accounts(n_children)
    batches = [kids[i : i + 5000] for i in range(0, n_children, 5000)]

    def add(batch):
        store.add_children("public", creator, [ChildEdge("public", creator, k, T0, str(j), Decimal(1)) for j, k in enumerate(batch)])

    enriched = kids[:: 10]

    def enrich(k):
        store.put_lineage("public", k, stellar_creator_account=creator, xlm_balance=Decimal(rng.lognormvariate(4, 3)).quantize(Decimal("0.0000001")),
                          home_domain="kid.example")

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(add, batches))
        list(pool.map(enrich, enriched))
    store.put_lineage("public", creator, num_child_accounts=n_children, status="COMPLETE")
    return creator


def _naive_view(store, network: str, account: str) -> dict:
    """What the original endpoint did: the whole partition and every child's row, per request."""
    from common.lineage_view import ancestors, node
    from common.lineage_view.fanout import compute_summary

    rec = store.get_lineage(network, account)
    summary = compute_summary(store, network, account)  # reads every page and every child
    first = store.get_children_page(network, account, None, 100)
    return {"ancestors": ancestors(store, network, rec), "tree": node(account, rec), "first": first, "summary": summary}


def _measure(area: str, store, n_children: int, n_requests: int, n_naive: int, workers: int) -> list[Result]:
    from flask import Flask, request

    from common.bootstrap import Container
    from common.clock import SettableClock
    from common.config import Settings
    from common.handlers import stats
    from common.lineage_view.fanout import refresh_summary

    t0 = time.perf_counter()
    creator = _seed(store, n_children, workers)
    seed_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    summary = refresh_summary(store, "public", creator, T0)
    summary_s = time.perf_counter() - t0
    assert summary["count"] == n_children

    # one client, a frozen clock: the per-client request limit would refuse after its burst; this measures reads
    from local.stack_env import LOCAL_STATS_LIMITS

    c = Container(Settings.from_env(env={}, extra=dict(LOCAL_STATS_LIMITS)), SettableClock(T0), store=store)
    app = Flask("bench")
    app.add_url_rule("/<path:p>", "h", lambda p: stats.handle(request, c))
    client = app.test_client()
    url = f"/account-lineage?account={creator}&network=public&limit=100"

    def one(_):
        r = client.get(url)
        assert r.status_code == 200, (r.status_code, r.get_data()[:300])
        body = r.get_json()
        assert body["summary"]["count"] == n_children and len(body["tree"]["children"]) == 100 and len(body["ancestors"]) == DEPTH

    for _ in range(5):  # warm: prepared statements, SQLite page cache, schema gate
        one(0)
    ours = latencies_ms(one, n_requests)
    # Any later page is read live: one page of the partition + one batch read of its children.
    cursors = [e.child for e in store.get_children_page("public", creator, None, 1000).items[99::100]]

    def later(i):
        r = client.get(f"/account-lineage?account={creator}&network=public&limit=100&cursor={cursors[i % len(cursors)]}")
        assert r.status_code == 200 and len(r.get_json()["tree"]["children"]) == 100

    live = latencies_ms(later, max(50, n_requests // 4))
    naive = latencies_ms(lambda _: _naive_view(store, "public", creator), n_naive)
    note = (f"{n_children:,} children, {DEPTH}-hop ancestor chain, {n_requests} requests (naive: {n_naive}); "
            f"summary precompute once: {summary_s:.1f} s; seeding {seed_s:.0f} s")
    label = f"/account-lineage first page + summary, {n_children:,} children"
    return [
        Result(area, f"{label}: p50", median(ours), "ms", "naive: whole partition + every child row per request", median(naive), False, note, GOAL),
        Result(area, f"{label}: p99", percentile(ours, 99), "ms", "naive (same samples), worst", max(naive), False, note, GOAL),
        Result(area, "/account-lineage a later page (cursor, read live): p50", median(live), "ms", "naive: whole partition + every child row per request",
               median(naive), False, "100 children: 1 page read + one batch read of those children (SQLite: an IN query; Cassandra: IN reads of 20 keys) + account and view rows"),
        Result(area, "/account-lineage a later page (cursor, read live): p99", percentile(live, 99), "ms", "naive (same samples), worst",
               max(naive), False, f"{len(live)} requests"),
    ]


def run(short: bool = False) -> list[Result]:
    from common.store import migrations
    from common.store.sqlite import SQLiteStore

    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(os.path.join(tmp, "bench.sqlite3"))
        migrations.migrate(store)
        results += _measure("lineage read (sqlite)", store, 100_000, 200 if short else 1000, 3 if short else 5, 1)
        store.close()
    results += _cassandra(short)
    return results


def _cassandra(short: bool) -> list[Result]:
    with cassandra_bench_store("lineage read (cassandra)") as opened:
        if isinstance(opened, Result):
            return [opened]
        return _measure("lineage read (cassandra)", opened[0], 100_000, 200 if short else 1000, 1 if short else 3, 16)


if __name__ == "__main__":
    raise SystemExit(run_cli(run, __doc__))
