"""Shared benchmark plumbing: every figure is reported beside a baseline measured in the same run."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import uuid
import platform
import statistics
import time
from typing import Callable, Iterator


@dataclasses.dataclass
class Result:
    area: str  # e.g. "store (sqlite)"
    figure: str  # what is measured, e.g. "claim ops/s"
    value: float
    unit: str
    baseline_name: str  # the honest naive version measured in the same run
    baseline_value: float | None
    higher_is_better: bool = True
    note: str = ""
    goal: str = ""

    @property
    def ratio(self) -> float | None:
        if not self.baseline_value or not self.value:
            return None
        return self.value / self.baseline_value if self.higher_is_better else self.baseline_value / self.value


def run_cli(run: Callable[[bool], list[Result]], doc: str | None, argv: list[str] | None = None) -> int:
    """`python -m bench.<module> [--short]`: run one module and print its figures, one JSON object a line."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="the sizes `make bench-short` uses")
    args = parser.parse_args(argv)
    for r in run(args.short):
        print(json.dumps({"area": r.area, "figure": r.figure, "value": r.value, "unit": r.unit, "baseline": r.baseline_name,
                          "baseline_value": r.baseline_value, "ratio": r.ratio, "goal": r.goal, "note": r.note}), flush=True)
    return 0


def percentile(samples: list[float], p: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    k = min(len(ordered) - 1, max(0, int(round(p / 100 * (len(ordered) - 1)))))
    return ordered[k]


def ops_per_second(fn: Callable[[int], None], n: int) -> float:
    """Run fn(i) for i in range(n); return operations per second."""
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - t0)


def latencies_ms(fn: Callable[[int], None], n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def machine_line() -> str:
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except OSError:
        pass
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}){mem}, Python {platform.python_version()}"


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


@contextlib.contextmanager
def cassandra_bench_store(area: str) -> Iterator[tuple[object, object] | Result]:
    """A CassandraStore in a throw-away keyspace (migrated), with its Settings; dropped afterwards.

    Yields a skipped Result when Cassandra is not running on a laptop; in CI (CI=true) that is an
    error, as for the tests."""
    from local.testing.cassandra import CASSANDRA_PORT, cassandra_running

    if not cassandra_running():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            raise RuntimeError(f"{area}: Cassandra is not running on 127.0.0.1:{CASSANDRA_PORT} (local/cassandra.sh start)")
        yield Result(area, "skipped: Cassandra not running (local/cassandra.sh start)", 0, "", "", None)
        return
    from cassandra.cluster import Cluster

    from common.config import Settings
    from common.store import migrations
    from common.store.cassandra import CassandraStore

    keyspace = f"stellarmap_bench_{uuid.uuid4().hex[:8]}"
    cluster = Cluster(["127.0.0.1"], port=CASSANDRA_PORT)
    session = cluster.connect()
    session.execute(f"CREATE KEYSPACE {keyspace} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")
    settings = Settings.from_env(env={}, store_backend="cassandra", cassandra_port=CASSANDRA_PORT, cassandra_keyspace=keyspace)
    store = CassandraStore(settings)
    try:
        migrations.migrate(store)
        yield store, settings
    finally:
        store.close()
        # Dropping a keyspace that holds a big benchmark's data snapshots and drops every table: minutes on a busy box.
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=600)
        cluster.shutdown()


def random_accounts(n: int) -> list[str]:
    from stellar_sdk import StrKey

    return [StrKey.encode_ed25519_public_key(os.urandom(32)) for _ in range(n)]


def seed_chain(store, top: str, depth: int, created_at) -> list[str]:
    """`depth` enriched accounts below `top`, each the only child of the one above; returns the chain."""
    from decimal import Decimal

    from common.domain import ChildEdge

    chain = [top] + random_accounts(depth)
    for parent, child in zip(chain, chain[1:]):
        store.put_lineage("public", child, stellar_creator_account=parent, account_creation_date=created_at, status="COMPLETE",
                          xlm_balance=Decimal("100.5"), home_domain="chain.example", num_child_accounts=1)
        store.add_children("public", parent, [ChildEdge("public", parent, child, created_at, "1")])
    return chain
