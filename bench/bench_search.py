"""The search function over HTTP on loopback, as deployed (functions-framework: gunicorn, one
worker, its default threads), against the embedded SQLite store and the local persistent queue.

1. Cached searches: COMPLETE accounts (each with a 15-hop ancestor chain and 50 children) whose
   answer is already rendered; a load generator (2 processes x 8 threads, keep-alive
   connections) asks for them at random for a fixed time: requests per second; then the same
   clients paced to 500 req/s in all (open loop; latency from the scheduled send): p99.
   Baseline, same run: the naive search that renders the lineage from the store on every
   request (SEARCH_RENDER_MAX_AGE_S=0: no rendered answer is reused).
2. The enqueue path: searches of accounts never seen (insert the search row, the lineage row and
   the task, each a compare-and-set or a unique name), 8 concurrent clients: latency p50 and p99.
   Baseline, same run: the naive way to make "enqueue once" safe, one search at a time behind a
   process-wide lock.
Goal (the issue): cached, 500 req/s or more with a p99 of 50 ms or less on this 2-core machine.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import multiprocessing
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import Result, median, percentile, run_cli
from local.processes import serve_function

ROOT = Path(__file__).resolve().parents[1]
DEPTH = 15
CHILDREN = 50
GOAL_RPS = "≥ 500 req/s"
GOAL_P99 = "p99 ≤ 50 ms"
OFFERED = 500.0  # req/s, the goal's load

NAIVE_LOCKED_MAIN = '''"""Naive search for the benchmark: one request at a time behind a process-wide lock."""
import threading

import functions_framework

from common.bootstrap import container
from common.handlers.search import handle

_lock = threading.Lock()


@functions_framework.http
def search(request):
    with _lock:
        return handle(request, container())
'''


def _accounts(n: int) -> list[str]:
    from stellar_sdk import StrKey

    return [StrKey.encode_ed25519_public_key(os.urandom(32)) for _ in range(n)]


def _seed(db_path: str, n_accounts: int) -> list[str]:
    from common.domain import GENESIS_ACCOUNT, ChildEdge
    from common.store import migrations
    from common.store.sqlite import SQLiteStore

    store = SQLiteStore(db_path)
    migrations.migrate(store)
    now = dt.datetime.now(dt.timezone.utc)
    chain = [GENESIS_ACCOUNT] + _accounts(DEPTH - 1)
    store.put_lineage("public", GENESIS_ACCOUNT, status="COMPLETE", updated_at=now)
    for parent, child in zip(chain, chain[1:]):
        store.put_lineage("public", child, stellar_creator_account=parent, status="COMPLETE", updated_at=now, account_creation_date=now)
    searched = _accounts(n_accounts)
    for a in searched:
        kids = _accounts(CHILDREN)
        store.put_lineage("public", a, stellar_creator_account=chain[-1], status="COMPLETE", pipeline_source="API", updated_at=now,
                          last_pipeline_attempt=now, account_creation_date=now, num_child_accounts=CHILDREN, home_domain="bench.example")
        store.add_children("public", a, [ChildEdge("public", a, k, now, str(i)) for i, k in enumerate(kids)])
    store.close()
    return searched


@contextlib.contextmanager
def _function(tmp: Path, name: str, env: dict, source: Path | None = None, target: str = "search"):
    """functions-framework serving functions/<target>/main.py (or `source`) on a free port (yielded), until the block ends."""
    full_env = {**os.environ, **env, "PYTHONPATH": str(ROOT), "NO_PROXY": "127.0.0.1,localhost"}
    with serve_function(target, full_env, tmp / f"{name}.log", source=source) as url:
        yield int(url.rsplit(":", 1)[1])


# ---------------------------------------------------------------------------------- load generator
class _Conn:
    """A minimal keep-alive HTTP/1.1 client (GET, Content-Length bodies): the load generator shares
    the machine's two cores with the server, so it must cost far less per request than http.client."""

    def __init__(self, port: int):
        import socket

        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = b""

    def get(self, path: str) -> int:
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        while len(rest) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            rest += chunk
        self.buf = rest[length:]
        return status

    def close(self) -> None:
        self.sock.close()


def _client_proc(port: int, paths: list[str], threads: int, seconds: float, expect: int, out, interval: float | None = None,
                 unique: tuple[int, int] | None = None) -> None:
    """One load-generator process: `threads` clients on keep-alive connections. Closed loop, or,
    with `interval`, each client paced to one request per interval (open loop: latency counts from
    the scheduled send time, so a server falling behind is charged for the queueing it causes).
    With `unique` = (this process's index, processes), every path is asked once, in order."""
    stop_at = time.perf_counter() + seconds
    lat: list[float] = []
    errors: list = []
    lock = threading.Lock()

    def client(seed: int, slot: int) -> None:
        rng = random.Random(seed)
        own = None
        if unique is not None:
            own = iter(paths[unique[0] * threads + slot :: unique[1] * threads])
        conn = _Conn(port)
        mine = []
        next_at = time.perf_counter() + (rng.random() * interval if interval else 0.0)
        while time.perf_counter() < stop_at:
            path = paths[rng.randrange(len(paths))] if own is None else next(own, None)
            if path is None:
                break
            if interval:
                pause = next_at - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                t0 = next_at
                next_at += interval
            else:
                t0 = time.perf_counter()
            try:
                status = conn.get(path)
            except (OSError, ValueError) as exc:
                conn.close()
                conn = _Conn(port)
                status = type(exc).__name__
            mine.append((time.perf_counter() - t0) * 1000)
            if status != expect:
                with lock:
                    errors.append(status)
        conn.close()
        with lock:
            lat.extend(mine)

    ts = [threading.Thread(target=client, args=(os.getpid() * 100 + i, i)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put((lat, errors))


def load(port: int, paths: list[str], seconds: float, procs: int = 2, threads: int = 8, expect: int = 200,
         rate: float | None = None, unique: bool = False) -> tuple[float, list[float], dict]:
    """(requests per second, latencies in ms, errors): closed loop, or open loop at `rate` req/s;
    `unique`: each path once (until the time is up)."""
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    interval = procs * threads / rate if rate else None
    ps = [ctx.Process(target=_client_proc, args=(port, paths, threads, seconds, expect, q, interval, (i, procs) if unique else None))
          for i in range(procs)]
    t0 = time.perf_counter()
    for p in ps:
        p.start()
    lat: list[float] = []
    errors: dict = {}
    for _ in ps:
        got, err = q.get(timeout=seconds + 120)
        lat += got
        for e in err:
            errors[e] = errors.get(e, 0) + 1
    for p in ps:
        p.join()
    wall = time.perf_counter() - t0
    return len(lat) / (max(wall, seconds) if not unique else wall), lat, errors


def _sequential(port: int, paths: list[str], expect: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out = []
    for p in paths:
        t0 = time.perf_counter()
        conn.request("GET", p)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == expect, (resp.status, p)
        out.append((time.perf_counter() - t0) * 1000)
    conn.close()
    return out


def _errs(errors: dict) -> str:
    """'0 errors', or the unexpected answers by status (or exception) and count."""
    return "0 errors" if not errors else "unexpected answers " + ", ".join(f"{k}: {v}" for k, v in sorted(errors.items(), key=str))


# ---------------------------------------------------------------------------------- the benchmark
def run(short: bool = False) -> list[Result]:
    seconds = 5.0 if short else 20.0
    n_accounts = 200 if short else 1000

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        db = str(tmp / "store.sqlite3")
        searched = _seed(db, n_accounts)
        base_env = {"STELLARMAP_STORE": "sqlite", "STELLARMAP_SQLITE_PATH": db, "STELLARMAP_QUEUE": "local",
                    "LOCAL_DISPATCHER_DB": str(tmp / "tasks.sqlite3"), "SEARCH_RATE_PER_MIN": "100000000",
                    "SEARCH_BURST": "1000000", "CORS_ORIGINS": "http://127.0.0.1:8080", "HUBBLE_ENGINE": "none"}
        paths = [f"/search?account={a}&network=public" for a in searched]

        with _function(tmp, "search", base_env) as port:
            _sequential(port, paths, 200)  # renders and stores every answer once (the cache is warm)
            rps, lat_closed, errors = load(port, paths, seconds, procs=2, threads=8)
            _, lat, paced_errors = load(port, paths, seconds, procs=2, threads=8, rate=OFFERED)
            new = [f"/search?account={a}&network=public" for a in _accounts(3000 if short else 12000)]
            enq_rps, enq_lat, enq_err = load(port, new, seconds / 2, procs=1, threads=8, expect=202, unique=True)
            alone = _sequential(port, [f"/search?account={a}&network=public" for a in _accounts(100 if short else 400)], 202)
        with _function(tmp, "search-naive-render", {**base_env, "SEARCH_RENDER_MAX_AGE_S": "0"}) as port:
            n_rps, n_lat_closed, n_errors = load(port, paths, seconds, procs=2, threads=8)
            _, n_lat, n_paced_errors = load(port, paths, seconds, procs=2, threads=8, rate=OFFERED)
        naive_src = tmp / "naive_main.py"
        naive_src.write_text(NAIVE_LOCKED_MAIN)
        with _function(tmp, "search-naive-locked", base_env, naive_src) as port:
            new = [f"/search?account={a}&network=public" for a in _accounts(3000 if short else 12000)]
            l_rps, l_lat, l_err = load(port, new, seconds / 2, procs=1, threads=8, expect=202, unique=True)

    cached_note = (f"{n_accounts} COMPLETE accounts ({DEPTH}-hop chain, {CHILDREN} children each), {seconds:.0f} s closed loop, "
                   f"2 procs x 8 keep-alive clients on the same 2 cores; {len(lat_closed)} requests, {_errs(errors)} (naive: {_errs(n_errors)})")
    paced_note = (f"offered {OFFERED:.0f} req/s open loop (16 paced clients; latency from the scheduled send), {seconds:.0f} s: "
                  f"p50 {median(lat):.1f} ms, {len(lat)} requests, {_errs(paced_errors)}; naive p50 {median(n_lat):.1f} ms, {_errs(n_paced_errors)}")
    enq_note = (f"each request a never-seen account, 8 concurrent clients, {seconds / 2:.0f} s; ours {len(enq_lat)} requests at {enq_rps:.0f}/s "
                f"({_errs(enq_err)}), naive {len(l_lat)} at {l_rps:.0f}/s ({_errs(l_err)}); each request: search row + lineage row "
                f"(compare-and-set) + task insert (fsync). One client alone: p50 {median(alone):.1f} ms, p99 {percentile(alone, 99):.1f} ms. "
                "SQLite has one writer at a time, so in one process the global lock costs little; it cannot exist across "
                "function instances, where the compare-and-set and the task name keep 'enqueue once' true")
    area = "search (sqlite, HTTP)"
    return [
        Result(area, "cached search throughput", rps, "req/s", "naive: render from the store on every request", n_rps, True, cached_note, GOAL_RPS),
        Result(area, f"cached search latency p99 at {OFFERED:.0f} req/s offered", percentile(lat, 99), "ms",
               "naive: render from the store on every request", percentile(n_lat, 99), False, paced_note, GOAL_P99),
        Result(area, "cached search latency p99, closed loop (16 clients)", percentile(lat_closed, 99), "ms",
               "naive: render from the store on every request", percentile(n_lat_closed, 99), False,
               f"p50 {median(lat_closed):.1f} ms (naive {median(n_lat_closed):.1f} ms): 16 clients queue behind each other"),
        Result(area, "enqueue path latency p50", median(enq_lat), "ms", "naive: one search at a time (global lock)", median(l_lat), False, enq_note),
        Result(area, "enqueue path latency p99", percentile(enq_lat, 99), "ms", "naive: one search at a time (global lock)",
               percentile(l_lat, 99), False, enq_note),
    ]


def main(argv: list[str] | None = None) -> int:
    return run_cli(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
