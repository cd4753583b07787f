"""Environment assembly for the local stack (local/stack.py): what each child process is given.

- the environment of the functions, the simulator, the dispatcher and the scheduler;
- the run-time configuration written to the store, and the queues' limits derived from it;
- the store: its Settings, a Cassandra keyspace of its own (created, migrated, dropped);
- the embedded Hubble: the simulator's tables in DuckDB, loaded once per network.

Plain functions of their arguments: the orchestrator keeps the state.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from common.config import PIPELINE_CONFIG_DEFAULTS, Settings
from common.queue.rates import QueueLimits, api_fallback_limits, lineage_limits
from local.processes import LOOPBACK, ROOT, http_post_json

SIMULATED_HUBBLE = "hubble.duckdb"  # in the workdir: the simulator's Hubble tables, loaded once per network
# Simulator options that change the generated network (the rest are rate limits and faults).
SIM_DATA_OPTIONS = ("airdrop_children", "retention_days", "now")
SIMULATED_HUBBLE_SOURCES = ("local/simulator/network.py", "local/simulator/codec.py", "local/simulator/hubble.py",
                            "local/hubble_load.py", "common/hubble/duckdb_engine.py")

# Every caller of the local stack is one address (loopback): the site, the tests, the benchmarks.
# stats' per-client limits (common/read_models/limits.py) are set far above what they send; extra_env overrides.
LOCAL_STATS_LIMITS = {
    "STATS_RATE_PER_MIN": "60000", "STATS_BURST": "10000", "STATS_EXPORT_RATE_PER_MIN": "6000", "STATS_EXPORT_BURST": "1000",
    "STATS_MAX_CONCURRENT_EXPORTS": "16", "STATS_MAX_CONCURRENT_EXPORTS_PER_CLIENT": "16",
}


class StackError(RuntimeError):
    """The stack could not start; the message says which part and where its log is."""


# ---------------------------------------------------------------------------------- environments
def base_env(dev: bool) -> dict[str, str]:
    """Every child's environment: this one, with loopback never proxied (the demo drops proxies; --dev keeps them)."""
    env = dict(os.environ)
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        if not dev:
            env.pop(k, None)
    no_proxy = "127.0.0.1,localhost,::1"
    env["NO_PROXY"] = env["no_proxy"] = ",".join(x for x in (env.get("NO_PROXY"), no_proxy) if x)
    env["PYTHONPATH"] = os.pathsep.join(x for x in (str(ROOT), env.get("PYTHONPATH")) if x)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def store_env(settings: Settings) -> dict[str, str]:
    """The variables that point a function at the stack's store."""
    if settings.store_backend == "sqlite":
        return {"STELLARMAP_STORE": "sqlite", "STELLARMAP_SQLITE_PATH": settings.sqlite_path}
    return {"STELLARMAP_STORE": settings.store_backend, "CASSANDRA_CONTACT_POINTS": ",".join(settings.cassandra_contact_points),
            "CASSANDRA_PORT": str(settings.cassandra_port), "CASSANDRA_KEYSPACE": settings.cassandra_keyspace}


def function_env(base: dict[str, str], settings: Settings, urls: dict[str, str], token: str, dispatcher_db: Path,
                 search_rate: tuple[float, int], upstream_env: dict[str, str], hubble_env: dict[str, str],
                 extra_env: dict[str, str]) -> dict[str, str]:
    """The six functions' environment. `upstream_env`: the simulator's URLs (empty with --dev);
    `extra_env` overrides everything."""
    site = urls["site"]
    env = dict(base)
    env.update({
        "STELLARMAP_QUEUE": "local",
        "LOCAL_DISPATCHER_DB": str(dispatcher_db),
        "INTERNAL_TOKEN": token,
        "CORS_ORIGINS": ",".join([site, site.replace(LOOPBACK, "localhost")]),
        "SEARCH_RATE_PER_MIN": str(search_rate[0]),
        "SEARCH_BURST": str(search_rate[1]),
        **LOCAL_STATS_LIMITS,
        "PROCESS_ACCOUNT_URL": urls["process_account"],
        "API_FALLBACK_URL": urls["api_fallback"],
        "HUBBLE_SYNC_URL": urls["hubble_sync"],
    })
    env.update(store_env(settings))
    env.update(upstream_env)
    env.update(hubble_env)
    env.update(extra_env)
    return env


def simulator_argv(port: int, accounts: int, seed: int, sim_options: dict[str, Any], urls_file: Path) -> list[str]:
    """`python -m local.simulator` with the stack's options (it writes its URLs to urls_file when up)."""
    argv = [sys.executable, "-m", "local.simulator", "--host", LOOPBACK, "--port", str(port),
            "--accounts", str(accounts), "--seed", str(seed), "--urls-file", str(urls_file)]
    for key, value in sim_options.items():
        if key == "rate_limits":
            if not value:
                argv.append("--no-rate-limits")
            continue
        if value is None:
            continue
        flag = "--" + key.replace("_", "-")
        argv += [flag, json.dumps(value) if isinstance(value, (dict, list)) else str(value)]
    return argv


# ---------------------------------------------------------------------------------- configuration and queues
def pipeline_config(dev: bool, sim_options: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """What the stack writes to the store before start: the upstream budgets the simulator
    enforces (so the in-process limiters match them), then the caller's overrides."""
    cfg: dict[str, Any] = {}
    if not dev and sim_options.get("rate_limits", True):
        cfg["horizon_max_per_hour"] = int(float(sim_options.get("horizon_rate_per_min", 60)) * 60)
        cfg["expert_max_per_minute"] = int(float(sim_options.get("expert_rate_per_min", 50)))
    cfg.update(overrides)
    return cfg


def queue_limits(dev: bool, sim_options: dict[str, Any], config: dict[str, Any],
                 overrides: dict[str, dict[str, Any]]) -> dict[str, QueueLimits]:
    """The queues' limits, derived from the upstream budgets as in production (common/queue/rates.py)."""
    cfg = {**PIPELINE_CONFIG_DEFAULTS, **config}
    if not dev and not sim_options.get("rate_limits", True):
        api = QueueLimits(max_dispatches_per_second=50.0, max_burst_size=10, max_concurrent_dispatches=4)
    else:
        api = api_fallback_limits(float(cfg["horizon_max_per_hour"]), float(cfg["expert_max_per_minute"]), float(cfg["upstream_rate_pct"]))
    # The sync's ranges run one at a time (its bulk writes are exact one after another).
    sync = QueueLimits(max_dispatches_per_second=5.0, max_burst_size=1, max_concurrent_dispatches=1)
    base = {"lineage": lineage_limits(), "api-fallback": api, "hubble-sync": sync}
    return {q: dataclasses.replace(limits, **overrides.get(q, {})) for q, limits in base.items()}


# ---------------------------------------------------------------------------------- the store
def _contact_points() -> tuple[str, ...]:
    return tuple(p.strip() for p in os.environ.get("CASSANDRA_CONTACT_POINTS", LOOPBACK).split(",") if p.strip())


def cassandra_session(fn: Callable[[Any], Any]) -> Any:
    """fn(session) on a short-lived connection to the Cassandra of CASSANDRA_CONTACT_POINTS / CASSANDRA_PORT."""
    from cassandra.cluster import Cluster

    cluster = Cluster(list(_contact_points()), port=int(os.environ.get("CASSANDRA_PORT", "9042")), protocol_version=5, connect_timeout=15)
    try:
        return fn(cluster.connect())
    finally:
        cluster.shutdown()


def new_keyspace() -> str:
    return f"stellarmap_stack_{uuid.uuid4().hex[:10]}"


def create_keyspace(keyspace: str) -> None:
    cassandra_session(lambda s: s.execute(
        f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"))


def drop_keyspace(keyspace: str) -> None:
    cassandra_session(lambda s: s.execute(f"DROP KEYSPACE IF EXISTS {keyspace}"))


def store_settings(backend: str, workdir: Path, keyspace: str | None) -> Settings:
    if backend == "cassandra":
        return Settings.from_env(env={}, store_backend="cassandra", cassandra_contact_points=_contact_points(),
                                 cassandra_port=int(os.environ.get("CASSANDRA_PORT", "9042")), cassandra_keyspace=keyspace)
    return Settings.from_env(env={}, store_backend="sqlite", sqlite_path=str(workdir / "stellarmap.sqlite3"))


def prepare_store(settings: Settings, config: dict[str, Any]) -> None:
    """Migrate the store and write the run-time configuration to it."""
    from common.bootstrap import build_store
    from common.store import migrations

    store = build_store(settings)
    try:
        report = migrations.migrate(store)
        if not report.ok:
            raise StackError(f"migrating the {settings.store_backend} store failed: {report.summary()}")
        now = dt.datetime.now(dt.timezone.utc)
        for key, value in config.items():
            store.set_config(key, value, now)
    finally:
        store.close()


# ---------------------------------------------------------------------------------- the embedded Hubble
def simulated_hubble_key(accounts: int, seed: int, sim_options: dict[str, Any]) -> str:
    """What the simulated Hubble's tables depend on: the network's parameters and the code that
    builds, exports and loads them. The same key means the loaded file can be used again."""
    digest = hashlib.sha256(json.dumps({"accounts": accounts, "seed": seed, "sim": {
        k: v for k, v in sorted(sim_options.items()) if k in SIM_DATA_OPTIONS}}, sort_keys=True).encode())
    for source in SIMULATED_HUBBLE_SOURCES:
        digest.update((ROOT / source).read_bytes())
    return digest.hexdigest()


def load_simulated_hubble(path: Path, key: str, simulator_url: str, workdir: Path, log: Callable[[str], None]) -> str:
    """The simulator's Hubble tables in DuckDB at `path`: "reused" when they were loaded for this very
    network (the key beside the file), else "loaded" (exported, loaded into a temporary file, renamed when whole)."""
    from local.hubble_load import load_duckdb

    key_file = path.with_name(path.name + ".key")
    if path.exists() and key_file.exists() and key_file.read_text().strip() == key:
        log(f"embedded Hubble: reusing {path} (loaded earlier for this network)")
        return "reused"
    started = time.monotonic()
    export = workdir / "hubble-export"
    partial_db = path.with_name(path.name + ".loading")
    for stale in (path, key_file, partial_db, Path(str(partial_db) + ".wal")):
        stale.unlink(missing_ok=True)
    log("embedded Hubble: exporting the simulator's Hubble tables ...")
    status, body = http_post_json(f"{simulator_url}/_sim/export", {"directory": str(export)}, timeout=1800)
    if status != 200:
        raise StackError(f"the simulator could not export its Hubble tables: {status} {body}")
    try:
        for network in ("public", "testnet"):
            load_duckdb(partial_db, export, network, log=log)
    finally:
        shutil.rmtree(export, ignore_errors=True)  # the DuckDB file is what is kept
    os.replace(partial_db, path)
    key_file.write_text(key + "\n")
    log(f"embedded Hubble loaded into {path} in {time.monotonic() - started:.1f} s")
    return "loaded"
