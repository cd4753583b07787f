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
- the local dispatcher (local/task_dispatcher.py) delivering the lineage and api-fallback queues with
  Cloud Tasks semantics; the api-fallback queue's rate is derived from the upstream budgets exactly
  as in production (common/queue/rates.py);
- the local scheduler (local/scheduler.py): hva_recalc hourly and reset_stale every 15 minutes,
  per network (`schedule_seconds` shortens them);
- the static site with a generated config.js pointing at the search and stats functions
  (CORS_ORIGINS is set to the site's origin).

Functions whose folder or handler does not exist yet are reported in `stack.missing` and skipped.

`python -m local.stack [--dev] [--urls-file PATH]` runs it in the foreground and prints the URLs;
Ctrl-C stops everything.

This module orchestrates; the parts are local/processes.py (supervised processes, ports),
local/site_server.py (the static site), local/stack_env.py (environments, store, configuration,
queue limits, the embedded Hubble) and local/stack_cli.py (the command line).
"""
from __future__ import annotations

import atexit
import dataclasses
import datetime as dt
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from common.config import PIPELINE_CONFIG_DEFAULTS, Settings
from common.queue.rates import QueueLimits
from common.queue.sqlite_queue import TaskDB
from local import stack_env
from local.processes import LOOPBACK, ROOT, Proc, free_port, functions_framework_argv, port_free, tail, wait_http
from local.site_server import SiteServer
from local.stack_env import StackError

__all__ = ["LocalStack", "StackError", "main"]

FUNCTIONS = ("search", "stats", "process_account", "api_fallback", "hva_recalc", "reset_stale", "hubble_sync")
SCHEDULED = {"hva_recalc": 3600.0, "reset_stale": 900.0}  # terraform: hourly, every 15 minutes
QUEUE_TARGET = {"lineage": "process_account", "api-fallback": "api_fallback", "hubble-sync": "hubble_sync"}
PORT_ORDER = ("site", "search", "stats", "process_account", "api_fallback", "hva_recalc", "reset_stale", "hubble_sync")
SIM_PORT_OFFSET = 20  # base 8080 -> simulator on 8100

# The demo's simulated upstream budgets: generous enough to watch accounts complete, and the
# queues and in-process limiters are derived from them as they are from the real budgets.
DEMO_SIM_OPTIONS = {"rate_limits": True, "horizon_rate_per_min": 1200, "expert_rate_per_min": 600}


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
        self._site: SiteServer | None = None
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
            self._site.stop()
            self._site = None
        if self._toml_front is not None:
            self._toml_front.__exit__(None, None, None)
            self._toml_front = None
        if self._drop_keyspace and self.keyspace:
            try:
                stack_env.drop_keyspace(self.keyspace)
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
    def _start_simulator(self) -> None:
        urls_file = self.workdir / "simulator-urls.json"
        urls_file.unlink(missing_ok=True)
        argv = stack_env.simulator_argv(self.ports["simulator"], self.accounts, self.seed, self.sim_options, urls_file)
        proc = Proc("simulator", argv, stack_env.base_env(self.dev), self.logs / "simulator.log")
        proc.start()
        self.procs["simulator"] = proc
        deadline = time.monotonic() + 180
        while not urls_file.exists():
            if not proc.alive:
                raise StackError(f"the simulator exited during startup (log {proc.log_path}):\n{tail(proc.log_path)}")
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

    # ------------------------------------------------------------ store, configuration, environment
    def _prepare_store(self) -> None:
        if self.store_backend == "cassandra":
            if not self.keyspace:
                self.keyspace = stack_env.new_keyspace()
                self._drop_keyspace = True
            stack_env.create_keyspace(self.keyspace)
        self.settings = stack_env.store_settings(self.store_backend, self.workdir, self.keyspace)
        stack_env.prepare_store(self.settings, self.pipeline_config())
        self.log(f"store: {self.store_backend} ({self.keyspace or self.settings.sqlite_path}), migrated")

    def pipeline_config(self) -> dict[str, Any]:
        """What the stack writes to the store before start (local/stack_env.py pipeline_config)."""
        return stack_env.pipeline_config(self.dev, self.sim_options, self.pipeline_overrides)

    def _derive_limits(self) -> None:
        self.queue_limits = stack_env.queue_limits(self.dev, self.sim_options, self.pipeline_config(), self.queue_overrides)

    def function_env(self) -> dict[str, str]:
        return stack_env.function_env(stack_env.base_env(self.dev), self.settings, self.urls, self.token, self.dispatcher_db,
                                      self.search_rate, {} if self.dev else self.sim_env, self._hubble_env(), self.extra_env)

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
            path = self.workdir / stack_env.SIMULATED_HUBBLE
            self.hubble_loaded = stack_env.load_simulated_hubble(path, self.simulated_hubble_key(), self.simulator_url,
                                                                 self.workdir, self.log)
        self.hubble_path = str(path)  # the stack file names it (`stellarmap hubble sync` reads it)
        return {"HUBBLE_ENGINE": "duckdb", "HUBBLE_DUCKDB_PATH": str(path)}

    def simulated_hubble_key(self) -> str:
        return stack_env.simulated_hubble_key(self.accounts, self.seed, self.sim_options)

    # ------------------------------------------------------------ functions
    def _why_missing(self, name: str) -> str | None:
        main = ROOT / "functions" / name / "main.py"
        if not main.is_file():
            return f"functions/{name}/main.py does not exist yet"
        handler = ROOT / "common" / "handlers" / f"{name}.py"
        if not handler.is_file():
            return f"common/handlers/{name}.py does not exist yet"
        return None

    def _function_proc(self, name: str, env: dict[str, str]) -> Proc:
        return Proc(name, functions_framework_argv(name, self.ports[name]), dict(env), self.logs / f"{name}.log")

    def _wait_function(self, name: str, timeout_s: float = 120.0) -> None:
        proc = self.procs[name]
        wait_http(self.urls[name] + "/", proc.popen, proc.log_path, f"function {name}", timeout_s, error=StackError)

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
        env = stack_env.base_env(self.dev)
        env["INTERNAL_TOKEN"] = self.token
        proc = self.procs.get("dispatcher") or Proc("dispatcher", [sys.executable, "-m", "local.task_dispatcher", "--config", str(cfg)], env, self.logs / "dispatcher.log")
        if proc.alive:
            return
        proc.start()
        self.procs["dispatcher"] = proc
        time.sleep(0.3)
        if not proc.alive:
            raise StackError(f"the dispatcher exited during startup (log {proc.log_path}):\n{tail(proc.log_path)}")
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
        env = stack_env.base_env(self.dev)
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
        self._site = SiteServer(lambda base: self.site_config(), port=self.ports["site"], generated_by="local/stack.py").start()
        if not (self._site.site_dir / "index.html").exists():
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
def main(argv: list[str] | None = None) -> int:
    """`python -m local.stack`: local/stack_cli.py (imported here, as it imports this module)."""
    from local.stack_cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
