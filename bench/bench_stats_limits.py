"""stats under an export flood: `/health` latency while 8 clients export a big fan-out at once,
with stats' per-client limits off (the baseline) and on (common/read_models/limits.py), in the same run.

The stats function runs over HTTP on loopback as deployed (functions-framework: gunicorn, one
worker, its default threads) on the embedded SQLite store, behind a trusted proxy hop
(SEARCH_TRUSTED_PROXY_HOPS=1, as Terraform sets it): every request carries X-Forwarded-For, so
the 8 exporters and the health prober are 9 distinct clients. Each exporter loops for the
window: it asks for `/account-lineage?format=csv` of an account with 30,000 children (10,000 in
short mode), reads the whole stream, and on a 429 waits its Retry-After. The prober asks for
`/health` 4 times a second (within its own request rate). Latency is measured per request.

Baseline: limits off (every STATS_* limit far above the load). Ours: the defaults Terraform
deploys (exports: 6/min and burst 3 per client, 1 running per client, 2 per instance). Figures
only, never asserted; the ratio is baseline / ours (> 1: /health is faster with the limits).
"""
from __future__ import annotations

import http.client
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.bench_export import _seed
from bench.bench_search import _function
from bench.common import Result, median, percentile, run_cli

EXPORTERS = 8
PROBE_INTERVAL_S = 0.25
AREA = "stats limits (sqlite, HTTP)"
LIMITS_OFF = {
    "STATS_RATE_PER_MIN": "1000000", "STATS_BURST": "100000", "STATS_EXPORT_RATE_PER_MIN": "1000000", "STATS_EXPORT_BURST": "100000",
    "STATS_MAX_CONCURRENT_EXPORTS": "1000", "STATS_MAX_CONCURRENT_EXPORTS_PER_CLIENT": "1000",
}


def _get(port: int, path: str, client: str, timeout: float) -> tuple[int, int, float]:
    """(status, body bytes, Retry-After) of one GET, the body read to its end and thrown away."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"X-Forwarded-For": client})
        resp = conn.getresponse()
        size = 0
        while True:
            chunk = resp.read(65536)
            if not chunk:
                break
            size += len(chunk)
        return resp.status, size, float(resp.headers.get("Retry-After") or 0)
    finally:
        conn.close()


def _flood(port: int, account: str, seconds: float) -> dict:
    """8 exporters and one prober for `seconds`; returns the prober's latencies and what the exporters got."""
    stop_at = time.monotonic() + seconds
    lock = threading.Lock()
    got = {"exports": 0, "rate_limited": 0, "errors": 0, "rows": 0}
    health_ms: list[float] = []
    health_errors: list = []

    def exporter(i: int) -> None:
        while time.monotonic() < stop_at:
            try:
                status, size, retry = _get(port, f"/account-lineage?account={account}&network=public&format=csv", f"10.0.0.{i}", 600)
            except OSError:
                with lock:
                    got["errors"] += 1
                continue
            with lock:
                if status == 200:
                    got["exports"] += 1
                    got["rows"] += size
                elif status == 429:
                    got["rate_limited"] += 1
                else:
                    got["errors"] += 1
            if status == 429:
                time.sleep(max(0.0, min(retry, stop_at - time.monotonic())))

    def prober() -> None:
        next_at = time.monotonic() + 0.5  # the exports have started
        while next_at < stop_at:
            time.sleep(max(0.0, next_at - time.monotonic()))
            t0 = time.perf_counter()
            try:
                status, _, _ = _get(port, "/health", "192.0.2.1", 600)
            except OSError as exc:
                status = type(exc).__name__
            health_ms.append((time.perf_counter() - t0) * 1000)
            if status != 200:
                health_errors.append(status)
            next_at = max(next_at + PROBE_INTERVAL_S, time.monotonic())  # closed loop when /health is slower than the pace

    threads = [threading.Thread(target=exporter, args=(i,)) for i in range(EXPORTERS)] + [threading.Thread(target=prober)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {**got, "health_ms": health_ms, "health_errors": health_errors}


def _idle(port: int, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        _get(port, "/health", "192.0.2.1", 60)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def run(short: bool = False) -> list[Result]:
    from common.domain import GENESIS_ACCOUNT
    from common.store import migrations
    from common.store.sqlite import SQLiteStore

    children = 10_000 if short else 30_000
    seconds = 15.0 if short else 30.0
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        db = str(tmp / "store.sqlite3")
        store = SQLiteStore(db)
        migrations.migrate(store)
        store.put_lineage("public", GENESIS_ACCOUNT, status="COMPLETE")
        account = _seed(store, children, GENESIS_ACCOUNT)
        store.close()
        env = {"STELLARMAP_STORE": "sqlite", "STELLARMAP_SQLITE_PATH": db, "HUBBLE_ENGINE": "none", "CORS_ORIGINS": "http://127.0.0.1:8080",
               "SEARCH_TRUSTED_PROXY_HOPS": "1"}
        runs = {}
        for mode, extra in (("off", LIMITS_OFF), ("on", {})):
            with _function(tmp, f"stats-limits-{mode}", {**env, **extra}, target="stats") as port:
                idle = _idle(port, 20)
                runs[mode] = {**_flood(port, account, seconds), "idle_ms": idle}

    off, on = runs["off"], runs["on"]

    def note(r: dict) -> str:
        return (f"{r['exports']} exports done, {r['rate_limited']} answered 429, {r['errors']} errors; "
                f"/health: {len(r['health_ms'])} probes, {len(r['health_errors'])} not 200, idle p50 {median(r['idle_ms']):.1f} ms")

    common = (f"{EXPORTERS} clients exporting a {children:,}-child lineage (csv) in a loop for {seconds:.0f} s, one prober at "
              f"{1 / PROBE_INTERVAL_S:.0f}/s; limits on: {note(on)}; limits off: {note(off)}")
    return [
        Result(AREA, "/health p50 under 8 concurrent exports", median(on["health_ms"]), "ms", "limits off (same run)",
               median(off["health_ms"]), False, common),
        Result(AREA, "/health p99 under 8 concurrent exports", percentile(on["health_ms"], 99), "ms", "limits off (same run)",
               percentile(off["health_ms"], 99), False, "p99 of the same probes"),
    ]


def main(argv: list[str] | None = None) -> int:
    return run_cli(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
