"""Lineage export (`/account-lineage?format=`, `stellarmap export`): memory and time of the streaming
exporter (common/export.py) for an account with 100,000 children, in json, csv and graphml.

Embedded SQLite store. The account sits 15 hops below genesis; 10% of its children are enriched
(have a lineage row with a balance and a home_domain), the rest are bare edges. Ours: the streaming
exporter, chunks written to a file as they come (what the CLI does; the HTTP handler streams the
same chunks). Baseline, measured in the same run: build the whole document in memory first (read
every child edge, build every child's node, serialise the whole document into one string: a
`json.dumps` of the full dict, the full CSV text, the full GraphML text), then write it.

Peak memory is the Python heap peak (tracemalloc) during one export, measured in a run of its own
(the SQLite page cache, outside the Python heap, is the same for both); time and rows/s come from
later runs without tracemalloc (best of 3; 1 in short mode). "Flat" compares the streaming peak for 10x the
children: a ratio near 1 means memory does not grow with the fan-out. Short mode (CI) seeds 20,000
and 2,000 children instead of 100,000 and 10,000. Timings are figures only, never asserted.
"""
from __future__ import annotations

import csv
import datetime as dt
import gc
import io
import json
import os
import random
import tempfile
import time
import tracemalloc
from decimal import Decimal
from typing import Callable

from bench.common import Result, random_accounts, run_cli, seed_chain

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
DEPTH = 15
FORMATS = ("json", "csv", "graphml")
AREA = "lineage export (sqlite)"
MIB = 2**20


def _seed(store, n_children: int, chain_top: str) -> str:
    """An account `DEPTH` hops below genesis with n_children children (10% enriched); returns it."""
    from common.domain import ChildEdge

    rng = random.Random(n_children)
    chain = seed_chain(store, chain_top, DEPTH, T0)
    creator = chain[-1]
    kids = random_accounts(n_children)
    for i in range(0, n_children, 5000):  # the batch API: one transaction per 5,000 edges
        store.add_children("public", creator, [ChildEdge("public", creator, k, T0, str(j), Decimal(1))
                                               for j, k in enumerate(kids[i : i + 5000], i)])
    for k in kids[::10]:
        store.put_lineage("public", k, stellar_creator_account=creator, account_creation_date=T0, status="COMPLETE",
                          xlm_balance=Decimal(rng.lognormvariate(4, 3)).quantize(Decimal("0.0000001")),
                          home_domain="kid.example", tags=["bench"])
    store.put_lineage("public", creator, num_child_accounts=n_children, status="COMPLETE")
    return creator


# ------------------------------------------------------------------ the two ways to export
def _streaming(store, account: str, fmt: str, out) -> None:
    from common.export import export_lineage

    for chunk in export_lineage(store, "public", account, fmt):
        out.write(chunk)


def _whole_document(store, account: str, fmt: str, out) -> None:
    """The naive export: every child and the whole serialised document in memory, then one write."""
    from common.domain import MAX_PAGE_SIZE
    from common.export import CSV_COLUMNS, GRAPHML_KEYS, _csv_safe, _graphml_edge, _graphml_node
    from common.lineage_view import ancestors, children_nodes, node

    rec = store.get_lineage("public", account)
    chain = ancestors(store, "public", rec)
    me = node(account, rec)
    edges = list(store.iter_children("public", account, MAX_PAGE_SIZE))
    kids: list[dict] = []
    for i in range(0, len(edges), MAX_PAGE_SIZE):
        kids += children_nodes(store, "public", edges[i : i + MAX_PAGE_SIZE])
    if fmt == "json":
        text = json.dumps({"account": account, "network": "public", "ancestors": chain, "account_node": me, "children": kids},
                          ensure_ascii=False)
    elif fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        for relation, n in [("ancestor", a) for a in chain] + [("account", me)] + [("child", n) for n in kids]:
            w.writerow([relation] + [_csv_safe(n.get(col)) for col in CSV_COLUMNS[1:]])
        text = buf.getvalue()
    else:
        keys = "".join(f'<key id="{k}" for="node" attr.name="{k}" attr.type="string"/>' for k in GRAPHML_KEYS)
        path = [a["account"] for a in chain] + [account]
        parts = [f'<?xml version="1.0" encoding="UTF-8"?>\n<graphml xmlns="http://graphml.graphdrawing.org/xmlns">{keys}'
                 f'<graph id="public:{account}" edgedefault="directed">']
        parts += [_graphml_node(a, "ancestor") for a in chain] + [_graphml_node(me, "account")]
        parts += [_graphml_edge(p, c) for p, c in zip(path, path[1:])]
        parts += [_graphml_node(n, "child") + _graphml_edge(account, n["account"]) for n in kids]
        parts.append("</graph></graphml>")
        text = "\n".join(parts) + "\n"
    out.write(text)


# ------------------------------------------------------------------ measuring
def _peak_bytes(fn: Callable[[], None]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _seconds(fn: Callable[[], None], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _rows(fmt: str, path: str) -> int:
    """Children in an export file (checked against the seed, outside the measurements)."""
    with open(path, encoding="utf-8") as f:
        if fmt == "json":
            return len(json.load(f)["children"])
        if fmt == "csv":
            return sum(1 for row in csv.reader(f) if row and row[0] == "child")
        return sum(line.count('"relation">child<') for line in f)


def _export_once(tmp: str, name: str, fn: Callable[[object], None]) -> Callable[[], None]:
    path = os.path.join(tmp, name)

    def go() -> None:
        with open(path, "w", encoding="utf-8") as out:
            fn(out)

    return go


def run(short: bool = False) -> list[Result]:
    from common.domain import GENESIS_ACCOUNT
    from common.store import migrations
    from common.store.sqlite import SQLiteStore

    big = 20_000 if short else 100_000
    small = big // 10
    repeats = 1 if short else 3
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(os.path.join(tmp, "bench.sqlite3"))
        try:
            migrations.migrate(store)
            store.put_lineage("public", GENESIS_ACCOUNT, status="COMPLETE", num_child_accounts=2)
            t0 = time.perf_counter()
            big_acct = _seed(store, big, GENESIS_ACCOUNT)
            small_acct = _seed(store, small, GENESIS_ACCOUNT)
            seed_s = time.perf_counter() - t0
            mode = "short mode: " if short else ""
            note = (f"{mode}{big:,} children (10% enriched), {DEPTH}-hop ancestor chain, 1,000-child pages; "
                    f"best of {repeats}; seeding {seed_s:.0f} s")
            flat_peaks: dict[str, tuple[int, int]] = {}
            for fmt in FORMATS:
                ours = _export_once(tmp, f"stream.{fmt}", lambda out, f=fmt: _streaming(store, big_acct, f, out))
                naive = _export_once(tmp, f"whole.{fmt}", lambda out, f=fmt: _whole_document(store, big_acct, f, out))
                small_export = _export_once(tmp, f"small.{fmt}", lambda out, f=fmt: _streaming(store, small_acct, f, out))
                small_export()  # imports and one-time caches stay out of the traced peaks
                # The traced runs come next: they also warm the SQLite page cache for the timed runs,
                # and leave the two files, checked to hold every child.
                mem_ours, mem_naive = _peak_bytes(ours), _peak_bytes(naive)
                for name in ("stream", "whole"):
                    got = _rows(fmt, os.path.join(tmp, f"{name}.{fmt}"))
                    if got != big:
                        raise AssertionError(f"{name} {fmt} export has {got} children, expected {big}")
                size = os.path.getsize(os.path.join(tmp, f"stream.{fmt}"))
                t_ours, t_naive = _seconds(ours, repeats), _seconds(naive, repeats)
                small_peak = _peak_bytes(small_export)
                flat_peaks[fmt] = (small_peak, mem_ours)
                base = "whole document in memory, then written"
                fnote = f"{note}; {fmt} file {size / MIB:,.1f} MiB"
                results += [
                    Result(AREA, f"{fmt} export of {big:,} children: peak Python memory", mem_ours / MIB, "MiB", base,
                           mem_naive / MIB, False, fnote, "bounded: one page"),
                    Result(AREA, f"{fmt} export of {big:,} children: time", t_ours, "s", base, t_naive, False, fnote),
                    Result(AREA, f"{fmt} export: children/s", big / t_ours, "rows/s", base, big / t_naive, True, fnote),
                ]
            for fmt, (small_peak, big_peak) in flat_peaks.items():
                results.append(Result(
                    AREA, f"{fmt} streaming peak memory, {big:,} vs {small:,} children", big_peak / MIB, "MiB",
                    f"same streaming export, {small:,} children", small_peak / MIB, False,
                    f"{mode}ratio ≈ 1 means memory stays flat as the fan-out grows 10x (tracemalloc peak)",
                    "flat (ratio ≈ 1)",
                ))
        finally:
            store.close()
    return results


if __name__ == "__main__":
    raise SystemExit(run_cli(run, __doc__))
