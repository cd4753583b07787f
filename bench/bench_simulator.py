"""Simulator benchmarks: each figure beside a naive baseline measured in the same run.

    .venv/bin/python bench/bench_simulator.py                  # 100k accounts + 100k airdrop children
    .venv/bin/python bench/bench_simulator.py --accounts 1000000 --airdrop-children 1000000
    .venv/bin/python bench/bench_simulator.py --quick --json bench/results/simulator.json

1. Building a network: the simulator's compact, procedural build vs a naive eager build that
   encodes every address with stellar_sdk and keeps a dict of per-account records.
2. One page of an exchange's operations (limit 200, newest first): bisect over sorted streams
   vs collecting, sorting and slicing the account's whole history.
3. HTTP: GET /accounts/{id} from 8 keep-alive clients vs one client opening a connection per request.
"""
from __future__ import annotations

import argparse
import gc
import hashlib
import json
import sys
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402
from stellar_sdk import StrKey  # noqa: E402

from local.simulator import Network, NetworkConfig, Simulator  # noqa: E402
from local.simulator.codec import toid  # noqa: E402


def timed(fn, repeat=1):
    best, result = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def peak_memory(fn) -> int:
    gc.collect()
    tracemalloc.start()
    keep = fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del keep
    return peak


def naive_network(total: int) -> dict:
    """What a straightforward generator keeps: every address encoded, one dict per account."""
    records = {}
    previous = None
    for index in range(total):
        payload = hashlib.blake2b(index.to_bytes(8, "big"), digest_size=32).digest()
        address = StrKey.encode_ed25519_public_key(payload)
        records[address] = {"index": index, "creator": previous, "balance": index * 7 % 10**14, "ledger": index + 2}
        if index % 3 == 0:
            previous = address
    return records


def naive_page(net: Network, address: str, limit: int) -> list[int]:
    streams, _ = net.operation_streams(address)
    every = sorted((i for s in streams for i in s), reverse=True)
    floor = toid(net.elder_ledger, 0, 0)
    return [i for i in every if i > floor][:limit]


def http_figures(sim: Simulator, requests_count: int) -> tuple[float, float]:
    net = sim.network()
    urls = [f"{sim.horizon_url()}/accounts/{net.address(1 + i % (net.size - 1))}" for i in range(requests_count)]

    def concurrent():
        def worker(chunk):
            with requests.Session() as session:
                for url in chunk:
                    session.get(url, timeout=60).raise_for_status()

        chunks = [urls[k::8] for k in range(8)]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(worker, chunks))

    def sequential_new_connections():
        for url in urls:
            requests.get(url, timeout=60, headers={"Connection": "close"}).raise_for_status()

    fast, _ = timed(concurrent)
    slow, _ = timed(sequential_new_connections)
    return requests_count / fast, requests_count / slow


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--airdrop-children", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--quick", action="store_true", help="20k accounts, 20k airdrop children, 500 requests")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.quick:
        args.accounts, args.airdrop_children, args.requests = 20_000, 20_000, 500
    config = NetworkConfig(accounts=args.accounts, airdrop_children=args.airdrop_children)
    total = args.accounts + args.airdrop_children
    rows = []

    build_s, net = timed(lambda: Network(config))
    naive_s, _ = timed(lambda: naive_network(total))
    rows.append(("build network: seconds", build_s, naive_s, naive_s / build_s))
    ours_mem = peak_memory(lambda: Network(config))
    naive_mem = peak_memory(lambda: naive_network(total))
    rows.append(("build network: peak MiB", ours_mem / 2**20, naive_mem / 2**20, naive_mem / ours_mem))

    exchange = net.address(net.exchanges[0])
    ours_page, page = timed(lambda: net.operation_page_ids(exchange, "desc", None, 200), repeat=20)
    naive_page_s, expected = timed(lambda: naive_page(net, exchange, 200), repeat=5)
    assert page == expected, "the two page methods disagree"
    rows.append(("exchange ops page: ms", ours_page * 1e3, naive_page_s * 1e3, naive_page_s / ours_page))

    with Simulator(accounts=min(args.accounts, 20_000), airdrop_children=0, port=0, rate_limits=False) as sim:
        concurrent_rps, sequential_rps = http_figures(sim, args.requests)
    rows.append(("GET /accounts: requests/s", concurrent_rps, sequential_rps, concurrent_rps / sequential_rps))

    print(f"simulator benchmark: {args.accounts:,} accounts + {args.airdrop_children:,} airdrop children per network")
    print(f"{'figure':32} {'simulator':>12} {'naive':>12} {'ratio':>8}")
    for name, ours, naive, ratio in rows:
        print(f"{name:32} {ours:12.3f} {naive:12.3f} {ratio:7.1f}x")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "accounts": args.accounts, "airdrop_children": args.airdrop_children,
            "figures": [{"figure": n, "simulator": o, "naive": b, "ratio": r} for n, o, b, r in rows],
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
