"""Helpers shared by the test levels (not fixtures: plain functions)."""
from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from local.processes import ROOT, free_port, port_open  # noqa: F401 - the tests' names for them
from local.testing.cassandra import CASSANDRA_PORT, ensure_cassandra, quiet_cassandra_store  # noqa: F401

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(available: bool, what: str) -> None:
    """Infrastructure check: in CI a missing piece FAILS the test; on a laptop it skips, naming it."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"required infrastructure missing in CI: {what}", pytrace=False)
    pytest.skip(f"skipped: {what}")


@dataclasses.dataclass(frozen=True)
class SimulatedWorld:
    network: Any  # local.simulator.network.Network
    export_dir: Path  # Hubble's tables as NDJSON (local.simulator.hubble.export)
    duckdb: Path  # the same tables in an embedded DuckDB Hubble


def simulated_world(root: Path, accounts: int, airdrop_children: int, seed: int) -> SimulatedWorld:
    """A simulated public network, exported as Hubble's tables into `root` and loaded into DuckDB."""
    from local.hubble_load import load_duckdb
    from local.simulator.hubble import export
    from local.simulator.network import Network, NetworkConfig

    network = Network(NetworkConfig(accounts=accounts, airdrop_children=airdrop_children, seed=seed))
    export({"public": network}, root)
    load_duckdb(root / "hubble.duckdb", root, "public")
    return SimulatedWorld(network, root, root / "hubble.duckdb")


def random_account() -> str:
    from stellar_sdk import StrKey

    return StrKey.encode_ed25519_public_key(os.urandom(32))


def claim_worker(args: tuple) -> list[str]:
    """Runs in a separate process: claim every account in order, return the ones this worker won."""
    backend, location, network, accounts, barrier_path, worker = args
    import datetime as dt
    import time

    if backend == "sqlite":
        from common.store.sqlite import SQLiteStore

        store = SQLiteStore(location)
    else:
        from common.store.cassandra import CassandraStore
        from common.config import Settings

        store = CassandraStore(
            Settings.from_env(env={}, store_backend="cassandra", cassandra_port=CASSANDRA_PORT, cassandra_keyspace=location)
        )
    store.ping()
    # Start together: wait until every worker has connected.
    Path(f"{barrier_path}.{worker}").touch()
    deadline = time.monotonic() + 120
    while len(list(Path(barrier_path).parent.glob(Path(barrier_path).name + ".*"))) < int(barrier_path.rsplit("-", 1)[1]):
        if time.monotonic() > deadline:
            raise RuntimeError("workers did not all start")
        time.sleep(0.01)
    won = []
    now = dt.datetime.now(dt.timezone.utc)
    for account in accounts:
        if store.claim(network, account, now):
            won.append(account)
    store.close()
    return won


def operator_cli(*args: str, cwd, env_extra: dict | None = None, **kw) -> subprocess.CompletedProcess:
    """`stellarmap ARGS` as an operator runs it after `make demo`: in `cwd`, with no store or queue
    variable set (so the command finds the stack through cwd's .local-data/stack-urls.json)."""
    import sys

    from stellarmap_cli.main import DEPLOYMENT_VARIABLES

    env = {k: v for k, v in os.environ.items() if k not in (*DEPLOYMENT_VARIABLES, "STELLARMAP_STACK_FILE")}
    env.update(env_extra or {})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "stellarmap_cli.main", *args], capture_output=True, text=True, env=env,
                          timeout=600, cwd=cwd, **kw)
