"""The local stack (`make demo`, `make dev`, the e2e tests, the chaos run): the whole system on one
machine, no cloud account.

    with LocalStack(workdir, store="sqlite", accounts=5000, seed=7) as stack:
        stack.urls            # site, search, stats, process_account, api_fallback, hva_recalc, reset_stale,
                              # simulator, horizon_public, expert
        stack.kill_function("api_fallback")   # SIGKILL (chaos); it is restarted on the same port
        stack.wait_idle(600)                  # until the dispatcher has no queued or running task
        stack.settings                        # Settings of the stack's store

What runs (every process logs to `workdir/logs/<name>.log`, on loopback addresses only):
- the Stellar network simulator (`python -m local.simulator`), standing in for Horizon and Stellar
  Expert (`--dev`: none; the real services, and BigQuery when credentials are configured);
- the six functions, each under functions-framework (`functions/<name>/main.py`), against the
  embedded SQLite store (migrated here) or a real Cassandra keyspace (`store="cassandra"`);
- the local dispatcher (local/dispatcher.py) delivering the lineage and api-fallback queues with
  Cloud Tasks semantics; the api-fallback queue's rate is derived from the upstream budgets exactly
  as in production (common/queue/rates.py);
- the local scheduler (local/scheduler.py): hva_recalc hourly and reset_stale every 15 minutes,
  per network (`schedule_seconds` shortens them);
- the static site with a generated config.js pointing at the search and stats functions
  (CORS_ORIGINS is set to the site's origin).

Functions whose folder or handler does not exist yet are reported in `stack.missing` and skipped.

`python -m local.stack [--dev] [--urls-file PATH]` runs it in the foreground and prints the URLs;
Ctrl-C stops everything.
"""
from __future__ import annotations

import argparse
import atexit
import dataclasses
import datetime as dt
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from common.config import PIPELINE_CONFIG_DEFAULTS, Settings
from common.queue.local_dispatcher import TaskDB
from common.queue.rates import QueueLimits, api_fallback_limits, lineage_limits

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ("search", "stats", "process_account", "api_fallback", "hva_recalc", "reset_stale", "hubble_sync")
SCHEDULED = {"hva_recalc": 3600.0, "reset_stale": 900.0}  # terraform: hourly, every 15 minutes
QUEUE_TARGET = {"lineage": "process_account", "api-fallback": "api_fallback", "hubble-sync": "hubble_sync"}
PORT_ORDER = ("site", "search", "stats", "process_account", "api_fallback", "hva_recalc", "reset_stale", "hubble_sync")
SIM_PORT_OFFSET = 20  # base 8080 -> simulator on 8100
SIMULATED_HUBBLE = "hubble.duckdb"  # in the workdir: the simulator's Hubble tables, loaded once per network
# Simulator options that change the generated network (the rest are rate limits and faults).
SIM_DATA_OPTIONS = ("airdrop_children", "retention_days", "now")
SIMULATED_HUBBLE_SOURCES = ("local/simulator/network.py", "local/simulator/codec.py", "local/simulator/hubble.py",
                            "local/hubble_load.py", "common/hubble/duckdb_engine.py")
LOOPBACK = "127.0.0.1"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# The demo's simulated upstream budgets: generous enough to watch accounts complete, and the
# queues and in-process limiters are derived from them as they are from the real budgets.
DEMO_SIM_OPTIONS = {"rate_limits": True, "horizon_rate_per_min": 1200, "expert_rate_per_min": 600}


# Every caller of the local stack is one address (loopback): the site, the tests, the benchmarks.
# stats' per-client limits (common/stats/limits.py) are set far above what they send; extra_env overrides.
LOCAL_STATS_LIMITS = {
    "STATS_RATE_PER_MIN": "60000", "STATS_BURST": "10000", "STATS_EXPORT_RATE_PER_MIN": "6000", "STATS_EXPORT_BURST": "1000",
    "STATS_MAX_CONCURRENT_EXPORTS": "16", "STATS_MAX_CONCURRENT_EXPORTS_PER_CLIENT": "16",
}


class StackError(RuntimeError):
    """The stack could not start; the message says which part and where its log is."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    """Nothing listens on the port. The probe binds as the servers do (SO_REUSEADDR), so a port whose
    last connections still wait in TIME_WAIT (a demo stopped a moment ago) is free; a listener is not."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
            return True
        except OSError:
            return False


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with _DIRECT.open(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_post_json(url: str, body: dict, token: str | None = None, timeout: float = 60.0) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers=headers)
    try:
        with _DIRECT.open(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw or b"{}")
        except ValueError:
            return exc.code, {"raw": raw[:500].decode("utf-8", "replace")}


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclasses.dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== {dt.datetime.now(dt.timezone.utc).isoformat()} start: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.popen is not None and self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(timeout=30)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.popen is None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
        # Whatever the group still holds (a gunicorn worker) goes too.
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class _SiteHandler(SimpleHTTPRequestHandler):
    config_js = b""

    def log_message(self, fmt, *args):  # noqa: D401 - quiet
        pass

    def end_headers(self):
        self.send_header("X-Content-Type-Options", "nosniff")
        super().end_headers()

    def do_GET(self):  # noqa: N802
        if self.path.split("?", 1)[0] == "/config.js":
            body = self.config_js
            self.send_response(200)
            self.send_header("Content-Type", "text/javascript; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()


_SiteHandler.extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript", ".mjs": "text/javascript", ".svg": "image/svg+xml"}


class LocalStack:
    def __init__(
        self,
        workdir: str | os.PathLike,
        store: str = "sqlite",
        accounts: int = 5000,
        seed: int = 7,
        sim_options: dict[str, Any] | None = None,
        schedule_seconds: dict[str, float] | None = None,
        pipeline_config: dict[str, Any] | None = None,
        queue_limits: dict[str, dict[str, Any]] | None = None,
        base_port: int | None = None,
        dev: bool = False,
        hubble: str = "none",
        extra_env: dict[str, str] | None = None,
        search_rate_per_min: float = 6000,
        search_burst: int = 200,
        cassandra_keyspace: str | None = None,
        log: Callable[[str], None] | None = None,
    ):
        if store not in ("sqlite", "cassandra"):
            raise ValueError(f"store must be sqlite or cassandra, got {store!r}")
        if hubble not in ("none", "duckdb", "bigquery"):
            raise ValueError(f"hubble must be none, duckdb or bigquery, got {hubble!r}")
        unknown = set(schedule_seconds or {}) - set(SCHEDULED)
        if unknown:
            raise ValueError(f"schedule_seconds: unknown job(s) {', '.join(sorted(unknown))}; jobs are {', '.join(SCHEDULED)}")
        bad = set(queue_limits or {}) - set(QUEUE_TARGET)
        if bad:
            raise ValueError(f"queue_limits: unknown queue(s) {', '.join(sorted(bad))}")
        for key in pipeline_config or {}:
            if key not in PIPELINE_CONFIG_DEFAULTS:
                raise ValueError(f"pipeline_config: unknown key {key!r}")
        self.workdir = Path(workdir).resolve()
        self.store_backend = store
        self.accounts = int(accounts)
        self.seed = int(seed)
        self.dev = bool(dev)
        self.sim_options = {**({} if dev else DEMO_SIM_OPTIONS), **(sim_options or {})}
        self.schedule = {**SCHEDULED, **(schedule_seconds or {})}
        self.pipeline_overrides = dict(pipeline_config or {})
        self.queue_overrides = {k: dict(v) for k, v in (queue_limits or {}).items()}
        self.base_port = base_port
        self.hubble = hubble
        self.extra_env = dict(extra_env or {})
        self.search_rate = (search_rate_per_min, search_burst)
        self.keyspace = cassandra_keyspace
        self._drop_keyspace = False
        self._log = log or (lambda msg: None)
        self.token = secrets.token_urlsafe(24)
        self.ports: dict[str, int] = {}
        self.urls: dict[str, str] = {}
        self.missing: dict[str, str] = {}
        self.procs: dict[str, Proc] = {}
        self.queue_limits: dict[str, QueueLimits] = {}
        self.sim_env: dict[str, str] = {}
        self.settings: Settings | None = None
        self._site: ThreadingHTTPServer | None = None
        self.hubble_loaded: str | None = None  # the simulated Hubble at start: "loaded" or "reused"
        self._toml_front = None  # local.tls_front.TlsFront: the simulator's stellar.toml files over https
        self._started = False
        self._lock = threading.RLock()

    # ------------------------------------------------------------ paths
    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    @property
    def dispatcher_db(self) -> Path:
        return self.workdir / "dispatcher.sqlite3"

    @property
    def simulator_url(self) -> str | None:
        return self.urls.get("simulator")

    def log(self, msg: str) -> None:
        self._log(msg)
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / "stack.log", "a") as f:
            f.write(f"{dt.datetime.now(dt.timezone.utc).isoformat()} {msg}\n")

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> "LocalStack":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "LocalStack":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)
        self._started = True
        self._allocate_ports()
        if not self.dev:
            self._start_simulator()
        self._prepare_store()
        self._derive_limits()
        self._start_site()
        env = self.function_env()
        starting = []
        for name in FUNCTIONS:
            why = self._why_missing(name)
            if why:
                self.missing[name] = why
                self.log(f"{name}: not started ({why})")
                continue
            proc = self._function_proc(name, env)
            proc.start()
            self.procs[name] = proc
            starting.append(name)
        for name in starting:
            self._wait_function(name)
        self.start_dispatcher()
        self._start_scheduler()
        self.log("stack ready: " + json.dumps(self.urls))
        return self

    def stop(self) -> None:
        with self._lock:
            if not self._started:
                return
            self._started = False
        for name in ("scheduler", "dispatcher", *FUNCTIONS, "simulator"):
            proc = self.procs.get(name)
            if proc is not None:
                proc.stop()
        if self._site is not None:
            self._site.shutdown()
            self._site.server_close()
            self._site = None
        if self._toml_front is not None:
            self._toml_front.__exit__(None, None, None)
            self._toml_front = None
        if self._drop_keyspace and self.keyspace:
            try:
                self._cassandra_session(lambda s: s.execute(f"DROP KEYSPACE IF EXISTS {self.keyspace}"))
            except Exception as exc:  # noqa: BLE001 - Cassandra may be down (chaos); report, never raise on stop
                self.log(f"could not drop keyspace {self.keyspace}: {exc}")
        try:
            atexit.unregister(self.stop)
        except Exception:  # noqa: BLE001
            pass
        self.log("stack stopped")

    # ------------------------------------------------------------ ports
    def _allocate_ports(self) -> None:
        names = list(PORT_ORDER) + ([] if self.dev else ["simulator"])
        if self.base_port:
            wanted = {n: self.base_port + i for i, n in enumerate(PORT_ORDER)}
            wanted["simulator"] = self.base_port + SIM_PORT_OFFSET
            busy = [f"{n} {p}" for n, p in wanted.items() if n in names and not port_free(p)]
            if busy:
                raise StackError(f"port(s) in use: {', '.join(busy)}; stop what uses them or pass another --base-port (0 picks free ports)")
            self.ports = {n: wanted[n] for n in names}
        else:
            taken: set[int] = set()
            for n in names:
                p = free_port()
                while p in taken:
                    p = free_port()
                taken.add(p)
                self.ports[n] = p
        for n in PORT_ORDER:
            self.urls[n] = f"http://{LOOPBACK}:{self.ports[n]}"

    # ------------------------------------------------------------ simulator
    def _sim_argv(self, urls_file: Path) -> list[str]:
        argv = [sys.executable, "-m", "local.simulator", "--host", LOOPBACK, "--port", str(self.ports["simulator"]),
                "--accounts", str(self.accounts), "--seed", str(self.seed), "--urls-file", str(urls_file)]
        for key, value in self.sim_options.items():
            if key == "rate_limits":
                if not value:
                    argv.append("--no-rate-limits")
                continue
            if value is None:
                continue
            flag = "--" + key.replace("_", "-")
            argv += [flag, json.dumps(value) if isinstance(value, (dict, list)) else str(value)]
        return argv

    def _start_simulator(self) -> None:
        urls_file = self.workdir / "simulator-urls.json"
        urls_file.unlink(missing_ok=True)
        proc = Proc("simulator", self._sim_argv(urls_file), self._base_env(), self.logs / "simulator.log")
        proc.start()
        self.procs["simulator"] = proc
        deadline = time.monotonic() + 180
        while not urls_file.exists():
            if not proc.alive:
                raise StackError(f"the simulator exited during startup (log {proc.log_path}):\n{_tail(proc.log_path)}")
            if time.monotonic() > deadline:
                raise StackError(f"the simulator did not start within 180 s (log {proc.log_path})")
            time.sleep(0.1)
        info = json.loads(urls_file.read_text())
        self.sim_env = dict(info["env"])
        self.urls["simulator"] = info["simulator"]
        self.urls["horizon_public"] = info["horizon_public"]
        self.urls["horizon_testnet"] = info.get("horizon_testnet", self.sim_env.get("HORIZON_URL_TESTNET"))
        self.urls["expert"] = info["expert"]
        self.log(f"simulator on {self.urls['simulator']}")
        self._start_toml_front()

    def _start_toml_front(self) -> None:
        """stellar.toml is fetched over https only: a TLS front on loopback (a throw-away CA) relays
        to the simulator's toml files, and the functions reach it through the local-only settings."""
        from local.tls_front import TlsFront

        try:
            front = TlsFront(self.urls["simulator"], ["stellarmap.test"], workdir=self.workdir / "toml-tls").__enter__()
        except (OSError, subprocess.CalledProcessError) as exc:  # no openssl: toml checks record their errors
            self.log(f"stellar.toml TLS front not started ({exc}); toml enrichment will record connection errors")
            return
        self._toml_front = front
        self.sim_env.update({
            "STELLAR_TOML_CONNECT_TO": f"{LOOPBACK}:{front.port}",
            "STELLAR_TOML_CA_FILE": str(front.ca_file),
            "STELLAR_TOML_ALLOW_NETWORKS": f"{LOOPBACK}/32",
        })
        self.log(f"stellar.toml TLS front on {LOOPBACK}:{front.port}")

    # ------------------------------------------------------------ store
    def _cassandra_session(self, fn):
        from cassandra.cluster import Cluster

        points = [p.strip() for p in os.environ.get("CASSANDRA_CONTACT_POINTS", LOOPBACK).split(",") if p.strip()]
        cluster = Cluster(points, port=int(os.environ.get("CASSANDRA_PORT", "9042")), protocol_version=5, connect_timeout=15)
        try:
            return fn(cluster.connect())
        finally:
            cluster.shutdown()

    def _prepare_store(self) -> None:
        from common.bootstrap import build_store
        from common.store import migrations

        if self.store_backend == "cassandra":
            if not self.keyspace:
                self.keyspace = f"stellarmap_stack_{uuid.uuid4().hex[:10]}"
                self._drop_keyspace = True
            ks = self.keyspace
            self._cassandra_session(lambda s: s.execute(
                f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"))
            self.settings = Settings.from_env(
                env={}, store_backend="cassandra",
                cassandra_contact_points=tuple(p.strip() for p in os.environ.get("CASSANDRA_CONTACT_POINTS", LOOPBACK).split(",") if p.strip()),
                cassandra_port=int(os.environ.get("CASSANDRA_PORT", "9042")), cassandra_keyspace=ks,
            )
        else:
            self.settings = Settings.from_env(env={}, store_backend="sqlite", sqlite_path=str(self.workdir / "stellarmap.sqlite3"))
        store = build_store(self.settings)
        try:
            report = migrations.migrate(store)
            if not report.ok:
                raise StackError(f"migrating the {self.store_backend} store failed: {report.summary()}")
            now = dt.datetime.now(dt.timezone.utc)
            for key, value in self.pipeline_config().items():
                store.set_config(key, value, now)
        finally:
            store.close()
        self.log(f"store: {self.store_backend} ({self.keyspace or self.settings.sqlite_path}), migrated")

    def pipeline_config(self) -> dict[str, Any]:
        """What the stack writes to the store before start: the upstream budgets the simulator
        enforces (so the in-process limiters match them), then the caller's overrides."""
        cfg: dict[str, Any] = {}
        if not self.dev and self.sim_options.get("rate_limits", True):
            cfg["horizon_max_per_hour"] = int(float(self.sim_options.get("horizon_rate_per_min", 60)) * 60)
            cfg["expert_max_per_minute"] = int(float(self.sim_options.get("expert_rate_per_min", 50)))
        cfg.update(self.pipeline_overrides)
        return cfg

    # ------------------------------------------------------------ queue limits
    def _derive_limits(self) -> None:
        cfg = {**PIPELINE_CONFIG_DEFAULTS, **self.pipeline_config()}
        if not self.dev and not self.sim_options.get("rate_limits", True):
            api = QueueLimits(max_dispatches_per_second=50.0, max_burst_size=10, max_concurrent_dispatches=4)
        else:
            api = api_fallback_limits(float(cfg["horizon_max_per_hour"]), float(cfg["expert_max_per_minute"]), float(cfg["upstream_rate_pct"]))
        # The sync's ranges run one at a time (its bulk writes are exact one after another).
        sync = QueueLimits(max_dispatches_per_second=5.0, max_burst_size=1, max_concurrent_dispatches=1)
        base = {"lineage": lineage_limits(), "api-fallback": api, "hubble-sync": sync}
        for q, limits in base.items():
            self.queue_limits[q] = dataclasses.replace(limits, **self.queue_overrides.get(q, {}))

    # ------------------------------------------------------------ functions
    def _base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            if not self.dev:
                env.pop(k, None)
        no_proxy = "127.0.0.1,localhost,::1"
        env["NO_PROXY"] = env["no_proxy"] = ",".join(x for x in (env.get("NO_PROXY"), no_proxy) if x)
        env["PYTHONPATH"] = os.pathsep.join(x for x in (str(ROOT), env.get("PYTHONPATH")) if x)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def function_env(self) -> dict[str, str]:
        env = self._base_env()
        s = self.settings
        site = self.urls["site"]
        env.update({
            "STELLARMAP_STORE": s.store_backend,
            "STELLARMAP_QUEUE": "local",
            "LOCAL_DISPATCHER_DB": str(self.dispatcher_db),
            "INTERNAL_TOKEN": self.token,
            "CORS_ORIGINS": ",".join([site, site.replace(LOOPBACK, "localhost")]),
            "SEARCH_RATE_PER_MIN": str(self.search_rate[0]),
            "SEARCH_BURST": str(self.search_rate[1]),
            **LOCAL_STATS_LIMITS,
            "PROCESS_ACCOUNT_URL": self.urls["process_account"],
            "API_FALLBACK_URL": self.urls["api_fallback"],
            "HUBBLE_SYNC_URL": self.urls["hubble_sync"],
        })
        if s.store_backend == "sqlite":
            env["STELLARMAP_SQLITE_PATH"] = s.sqlite_path
        else:
            env["CASSANDRA_CONTACT_POINTS"] = ",".join(s.cassandra_contact_points)
            env["CASSANDRA_PORT"] = str(s.cassandra_port)
            env["CASSANDRA_KEYSPACE"] = s.cassandra_keyspace
        if not self.dev:
            env.update(self.sim_env)
        env.update(self._hubble_env())
        env.update(self.extra_env)
        return env

    def _hubble_env(self) -> dict[str, str]:
        if self.hubble == "none":
            return {"HUBBLE_ENGINE": "none"}
        if self.hubble == "bigquery":
            return {"HUBBLE_ENGINE": "bigquery"}
        given = self.extra_env.get("HUBBLE_DUCKDB_PATH") or os.environ.get("HUBBLE_DUCKDB_PATH")
        if given:  # someone else's Hubble (a real export): used as it is
            path = Path(given)
            if not path.exists():
                raise StackError(f"HUBBLE_ENGINE=duckdb needs a DuckDB Hubble at {path}: load one with `python -m local.hubble_load --db {path} EXPORT`")
        elif self.dev or not self.simulator_url:
            raise StackError("HUBBLE_ENGINE=duckdb needs HUBBLE_DUCKDB_PATH (a DuckDB Hubble loaded with `python -m local.hubble_load`)")
        else:
            path = self.workdir / SIMULATED_HUBBLE
            self._simulated_hubble(path)
        self.hubble_path = str(path)
        return {"HUBBLE_ENGINE": "duckdb", "HUBBLE_DUCKDB_PATH": str(path)}

    def simulated_hubble_key(self) -> str:
        """What the simulated Hubble's tables depend on: the network's parameters and the code that
        builds, exports and loads them. The same key means the loaded file can be used again."""
        digest = hashlib.sha256(json.dumps({"accounts": self.accounts, "seed": self.seed, "sim": {
            k: v for k, v in sorted(self.sim_options.items()) if k in SIM_DATA_OPTIONS}}, sort_keys=True).encode())
        for source in SIMULATED_HUBBLE_SOURCES:
            digest.update((ROOT / source).read_bytes())
        return digest.hexdigest()

    def _simulated_hubble(self, path: Path) -> None:
        """The simulator's Hubble tables in DuckDB: reused when they were loaded for this very network
        (the key beside the file), else exported and loaded (into a temporary file, renamed when whole)."""
        from local.hubble_load import load_duckdb

        key = self.simulated_hubble_key()
        key_file = path.with_name(path.name + ".key")
        if path.exists() and key_file.exists() and key_file.read_text().strip() == key:
            self.log(f"embedded Hubble: reusing {path} (loaded earlier for this network)")
            self.hubble_loaded = "reused"
            return
        started = time.monotonic()
        export = self.workdir / "hubble-export"
        partial_db = path.with_name(path.name + ".loading")
        for stale in (path, key_file, partial_db, Path(str(partial_db) + ".wal")):
            stale.unlink(missing_ok=True)
        self.log("embedded Hubble: exporting the simulator's Hubble tables ...")
        status, body = http_post_json(f"{self.simulator_url}/_sim/export", {"directory": str(export)}, timeout=1800)
        if status != 200:
            raise StackError(f"the simulator could not export its Hubble tables: {status} {body}")
        try:
            for network in ("public", "testnet"):
                load_duckdb(partial_db, export, network, log=self.log)
        finally:
            shutil.rmtree(export, ignore_errors=True)  # the DuckDB file is what is kept
        os.replace(partial_db, path)
        key_file.write_text(key + "\n")
        self.hubble_loaded = "loaded"
        self.log(f"embedded Hubble loaded into {path} in {time.monotonic() - started:.1f} s")

    def _why_missing(self, name: str) -> str | None:
        main = ROOT / "functions" / name / "main.py"
        if not main.is_file():
            return f"functions/{name}/main.py does not exist yet"
        handler = ROOT / "common" / "handlers" / f"{name}.py"
        if not handler.is_file():
            return f"common/handlers/{name}.py does not exist yet"
        return None

    def _function_proc(self, name: str, env: dict[str, str]) -> Proc:
        exe = Path(sys.executable).with_name("functions-framework")
        argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "functions_framework"]
        argv += ["--target", name, "--source", str(ROOT / "functions" / name / "main.py"), "--host", LOOPBACK, "--port", str(self.ports[name])]
        return Proc(name, argv, dict(env), self.logs / f"{name}.log")

    def _wait_function(self, name: str, timeout_s: float = 120.0) -> None:
        proc = self.procs[name]
        deadline = time.monotonic() + timeout_s
        while True:
            if not proc.alive:
                raise StackError(f"function {name} exited during startup (log {proc.log_path}):\n{_tail(proc.log_path)}")
            try:
                http_get(self.urls[name] + "/", timeout=2.0)
                return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise StackError(f"function {name} did not answer within {timeout_s:.0f} s (log {proc.log_path})")
            time.sleep(0.1)

    def kill_function(self, name: str) -> None:
        """SIGKILL a function's processes (mid-task, for chaos tests), then start it again on its port."""
        proc = self.procs.get(name)
        if proc is None or name not in FUNCTIONS:
            raise KeyError(f"no running function {name!r}; running: {', '.join(n for n in FUNCTIONS if n in self.procs)}")
        proc.kill()
        self.log(f"{name}: SIGKILLed")
        deadline = time.monotonic() + 30
        while not port_free(self.ports[name]) and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.start()
        self._wait_function(name)
        self.log(f"{name}: restarted")

    # ------------------------------------------------------------ dispatcher and scheduler
    def dispatcher_config(self) -> dict[str, Any]:
        return {
            "db": str(self.dispatcher_db),
            "queues": [
                {"name": q, "url": self.urls[QUEUE_TARGET[q]], "limits": dataclasses.asdict(self.queue_limits[q])}
                for q in ("lineage", "api-fallback", "hubble-sync")
            ],
            "dispatch_deadline_s": 600,
        }

    def start_dispatcher(self) -> None:
        cfg = self.workdir / "dispatcher.json"
        cfg.write_text(json.dumps(self.dispatcher_config(), indent=2))
        env = self._base_env()
        env["INTERNAL_TOKEN"] = self.token
        proc = self.procs.get("dispatcher") or Proc("dispatcher", [sys.executable, "-m", "local.dispatcher", "--config", str(cfg)], env, self.logs / "dispatcher.log")
        if proc.alive:
            return
        proc.start()
        self.procs["dispatcher"] = proc
        time.sleep(0.3)
        if not proc.alive:
            raise StackError(f"the dispatcher exited during startup (log {proc.log_path}):\n{_tail(proc.log_path)}")
        self.log("dispatcher started")

    def kill_dispatcher(self) -> None:
        """SIGKILL the dispatcher (its tasks stay in SQLite; start_dispatcher() resumes them)."""
        proc = self.procs.get("dispatcher")
        if proc is not None:
            proc.kill()
            self.log("dispatcher: SIGKILLed")

    def stop_dispatcher(self) -> None:
        proc = self.procs.get("dispatcher")
        if proc is not None:
            proc.stop()
            self.log("dispatcher: stopped")

    def scheduler_config(self) -> dict[str, Any]:
        jobs = []
        for job, interval in self.schedule.items():
            if job in self.missing:
                continue
            extra = {"dry_run": False} if job == "reset_stale" else {}
            jobs.append({"name": job, "url": self.urls[job], "interval_s": float(interval),
                         "bodies": [{**extra, "network": n} for n in ("public", "testnet")], "first_run_s": 3.0})
        return {"jobs": jobs, "retries": 3}

    def _start_scheduler(self) -> None:
        cfg_data = self.scheduler_config()
        if not cfg_data["jobs"]:
            return
        cfg = self.workdir / "scheduler.json"
        cfg.write_text(json.dumps(cfg_data, indent=2))
        env = self._base_env()
        env["INTERNAL_TOKEN"] = self.token
        proc = Proc("scheduler", [sys.executable, "-m", "local.scheduler", "--config", str(cfg)], env, self.logs / "scheduler.log")
        proc.start()
        self.procs["scheduler"] = proc

    def task_db(self) -> TaskDB:
        return TaskDB(self.dispatcher_db)

    def queue_counts(self) -> dict[str, dict[str, int]]:
        db = self.task_db()
        try:
            out: dict[str, dict[str, int]] = {}
            for row in db.conn().execute("SELECT queue, state, COUNT(*) FROM tasks GROUP BY queue, state"):
                out.setdefault(row[0], {})[row[1]] = int(row[2])
            return out
        finally:
            db.close()

    def wait_idle(self, timeout: float = 600.0) -> None:
        """Block until no task is queued or running (seen twice, a second apart); TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        db = self.task_db()
        try:
            quiet = 0
            while True:
                live = db.count()
                quiet = quiet + 1 if live == 0 else 0
                if quiet >= 2:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the dispatcher still has {live} live task(s) after {timeout:.0f} s: {self.queue_counts()}")
                time.sleep(0.5 if live == 0 else 1.0)
        finally:
            db.close()

    # ------------------------------------------------------------ the site
    def site_config(self) -> dict[str, Any]:
        cfg = {**PIPELINE_CONFIG_DEFAULTS, **self.pipeline_config()}
        return {
            "searchUrl": self.urls["search"],
            "statsUrl": self.urls["stats"],
            "networks": ["public", "testnet"],
            "defaultNetwork": "public",
            "hvaThresholds": list(cfg["hva_thresholds"]),
            "pageSize": 100,
            "siblingsPageSize": 50,
            "budgetWarnPct": 80,
            "dashboardRefreshS": 30,
        }

    def _start_site(self) -> None:
        site_dir = ROOT / "static_site"
        config_js = ("// Generated by local/stack.py for this run.\nwindow.STELLARMAP_CONFIG = "
                     + json.dumps(self.site_config(), indent=2) + ";\n").encode()
        handler = type("SiteHandler", (_SiteHandler,), {"config_js": config_js})
        self._site = ThreadingHTTPServer((LOOPBACK, self.ports["site"]), partial(handler, directory=str(site_dir)))
        self._site.daemon_threads = True
        threading.Thread(target=self._site.serve_forever, name="site", daemon=True).start()
        if not (site_dir / "index.html").exists():
            self.missing["site"] = "static_site/index.html does not exist yet"
        self.log(f"site on {self.urls['site']}")

    # ------------------------------------------------------------ for scripts
    def describe(self) -> dict[str, Any]:
        return {
            "urls": self.urls,
            "workdir": str(self.workdir),
            "logs": {name: str(p.log_path) for name, p in self.procs.items()} | {"stack": str(self.logs / "stack.log")},
            "store": {"backend": self.store_backend, "sqlite_path": self.settings.sqlite_path if self.store_backend == "sqlite" else None,
                      "cassandra_keyspace": self.keyspace, "cassandra_contact_points": list(self.settings.cassandra_contact_points),
                      "cassandra_port": self.settings.cassandra_port},  # what `stellarmap` reads to act on this stack
            "dispatcher_db": str(self.dispatcher_db),
            "queues": {q: dataclasses.asdict(lim) for q, lim in self.queue_limits.items()},
            "schedules_s": self.schedule,
            "missing": self.missing,
            "dev": self.dev,
            "hubble": {"engine": self.hubble, "simulated": self.hubble_loaded, "duckdb_path": getattr(self, "hubble_path", None)},
            "internal_token": self.token,  # the bearer the internal functions accept in this run
        }

    def write_urls_file(self, path: str | os.PathLike) -> Path:
        target = Path(path).resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds this run's internal token
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps({**self.urls, "stack": self.describe()}, indent=2) + "\n")
        tmp.replace(target)
        return target


# ---------------------------------------------------------------------------------- command line
def _dev_hubble() -> str:
    """BigQuery for `make dev` when credentials and a project are configured, else none."""
    creds = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    adc = Path.home() / ".config" / "gcloud" / "application_default_credentials.json"
    has_creds = bool(creds and Path(creds).is_file()) or adc.is_file()
    return "bigquery" if has_creds and os.environ.get("BIGQUERY_PROJECT") else "none"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m local.stack", description="Run the whole StellarMap stack locally (Ctrl-C stops it).")
    p.add_argument("--dev", action="store_true", help="use the real Horizon and Stellar Expert (and BigQuery when configured) instead of the simulator")
    p.add_argument("--workdir", type=Path, help="data and logs (default .local-data/demo, or .local-data/dev with --dev)")
    p.add_argument("--fresh", action="store_true", help="delete the workdir first (store, queued tasks, logs)")
    p.add_argument("--urls-file", type=Path, help="write the URLs (and the stack's layout) as JSON here")
    p.add_argument("--store", choices=("sqlite", "cassandra"), default="sqlite")
    p.add_argument("--base-port", type=int, default=8080, help="site on BASE, search BASE+1, stats BASE+2, ... simulator BASE+20 (0: free ports)")
    p.add_argument("--accounts", type=int, default=5000, help="simulated accounts per network")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--airdrop-children", type=int, help="children of the simulated airdrop account (simulator default 100,000)")
    p.add_argument("--hubble", choices=("none", "duckdb", "bigquery"),
                   help="Hubble path: duckdb (the simulator's Hubble tables, embedded; the demo's default), none (the API path "
                        "only), bigquery (make dev's default when credentials are configured)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    workdir = (args.workdir or ROOT / ".local-data" / ("dev" if args.dev else "demo")).resolve()
    if args.fresh and workdir.exists():
        shutil.rmtree(workdir)
    # The workdir keeps the store and the queued tasks between runs; they belong to one simulated network.
    params = {"dev": args.dev, "store": args.store} | ({} if args.dev else {"accounts": args.accounts, "seed": args.seed,
                                                                         "airdrop_children": args.airdrop_children})
    params_file = workdir / "stack-params.json"
    if params_file.exists() and json.loads(params_file.read_text()) != params:
        print(f"stack: {workdir} holds data of another network ({params_file.read_text().strip()}); "
              "add --fresh to start over, or pass another --workdir", file=sys.stderr)
        return 1
    workdir.mkdir(parents=True, exist_ok=True)
    params_file.write_text(json.dumps(params) + "\n")
    hubble = args.hubble or (_dev_hubble() if args.dev else "duckdb")
    sim_options = {"airdrop_children": args.airdrop_children} if args.airdrop_children is not None else {}
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stack = LocalStack(workdir, store=args.store, accounts=args.accounts, seed=args.seed, sim_options=sim_options,
                       base_port=args.base_port or None, dev=args.dev, hubble=hubble, log=lambda m: print(f"stack: {m}", flush=True))
    try:
        stack.start()
    except (StackError, OSError, ValueError) as exc:
        stack.stop()
        print(f"stack: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        stack.stop()
        return 130
    # The default workdir's file is the one `stellarmap` reads by default (and `make demo` names).
    urls_file = stack.write_urls_file(args.urls_file or (workdir / "stack-urls.json" if args.workdir else ROOT / ".local-data" / "stack-urls.json"))
    u = stack.urls
    print("\nStellarMap is running" + (" against the real Horizon and Stellar Expert" if args.dev else " on the simulated Stellar network") + ":")
    print(f"  site             {u['site']}/")
    print(f"  search           {u['search']}/search?account=G...&network=public")
    print(f"  stats            {u['stats']}/health")
    for name in ("process_account", "api_fallback", "hva_recalc", "reset_stale", "hubble_sync"):
        print(f"  {name:<16} {u[name]}  (internal: Authorization: Bearer <stack.internal_token in the URLs file>)")
    if not args.dev:
        print(f"  simulator        {u['simulator']}/_sim/health  (try: {u['simulator']}/_sim/accounts/public?kind=chain&limit=5)")
    for name, why in stack.missing.items():
        print(f"  ! {name}: {why}")
    print(f"URLs for scripts: {urls_file}")
    print(f"Logs: {stack.logs}/   Data: {workdir}/   Ctrl-C stops everything.", flush=True)
    try:
        while not stop.wait(1.0):
            dead = [n for n, p in stack.procs.items() if not p.alive]
            if dead:
                print(f"stack: {', '.join(dead)} stopped unexpectedly; see {stack.logs}/", file=sys.stderr, flush=True)
                break
    finally:
        print("stack: stopping ...", flush=True)
        stack.stop()
    return 0 if stop.is_set() else 1


if __name__ == "__main__":
    sys.exit(main())
