"""Helpers shared by the test levels (not fixtures: plain functions)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(available: bool, what: str) -> None:
    """Infrastructure check: in CI a missing piece FAILS the test; on a laptop it skips, naming it."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"required infrastructure missing in CI: {what}", pytrace=False)
    pytest.skip(f"skipped: {what}")


def quiet_cassandra_store(settings):
    """A CassandraStore whose driver does not track schema changes, for memory measurements: on
    the shared test Cassandra other keyspaces come and go all the time, and the driver's metadata
    of them would be counted (in production the keyspace is ours alone)."""
    from common.store.cassandra import CassandraStore

    class QuietCassandraStore(CassandraStore):
        def cluster_kwargs(self):
            return {**super().cluster_kwargs(), "schema_metadata_enabled": False}

    return QuietCassandraStore(settings)


def random_account() -> str:
    from stellar_sdk import StrKey

    return StrKey.encode_ed25519_public_key(os.urandom(32))


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CASSANDRA_PORT = int(os.environ.get("CASSANDRA_PORT", "9042"))


def ensure_cassandra() -> tuple[bool, str]:
    """(available, reason). Starts the project's Cassandra with local/cassandra.sh if it is not up."""
    if port_open("127.0.0.1", CASSANDRA_PORT):
        return True, ""
    script = ROOT / "local" / "cassandra.sh"
    if not script.exists():
        return False, "local/cassandra.sh is missing"
    if shutil.which("java") is None:
        return False, "Cassandra needs Java 17 (java not on PATH); start it with local/cassandra.sh start"
    proc = subprocess.run(["bash", str(script), "start"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        return False, f"local/cassandra.sh start failed: {(proc.stdout + proc.stderr)[-800:]}"
    return port_open("127.0.0.1", CASSANDRA_PORT), "Cassandra did not open its CQL port"


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
