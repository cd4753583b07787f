"""The project's real Cassandra 5.0 (local/cassandra.sh): Astra-like rules, SAI, and the script's lifecycle."""
from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import subprocess
import time
import uuid

import pytest

from common.config import Settings
from common.store import migrations
from common.store.cassandra import CassandraStore
from tests.support import CASSANDRA_PORT, ROOT, ensure_cassandra, free_port, random_account, require

pytestmark = [pytest.mark.integration, pytest.mark.cassandra]

SCRIPT = ROOT / "local" / "cassandra.sh"


def connect(port: int):
    """A driver cluster for one loopback node (protocol v5, round robin: no driver warnings)."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import RoundRobinPolicy

    profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=60)
    return Cluster(["127.0.0.1"], port=port, protocol_version=5, execution_profiles={EXEC_PROFILE_DEFAULT: profile})


def script(*args: str, env: dict | None = None, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


@pytest.fixture(scope="module")
def session():
    ok, why = ensure_cassandra()
    require(ok, f"Cassandra 5.0 on 127.0.0.1:{CASSANDRA_PORT} ({why})")
    cluster = connect(CASSANDRA_PORT)
    s = cluster.connect()
    keyspace = f"server_check_{uuid.uuid4().hex[:8]}"
    s.execute(f"CREATE KEYSPACE {keyspace} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")
    s.set_keyspace(keyspace)
    s.execute("CREATE TABLE accounts (network text, account text, balance bigint, domain text, PRIMARY KEY ((network, account)))")
    try:
        yield s
    finally:
        s.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
        cluster.shutdown()


def setting(session, name: str) -> str | None:
    row = session.execute("SELECT value FROM system_views.settings WHERE name = %s", (name,)).one()
    return row.value if row else None


def test_status_answers_and_start_is_idempotent(session):
    status = script("status")
    assert status.returncode == 0 and "CQL answers" in status.stdout
    again = script("start")
    assert again.returncode == 0 and "already running" in again.stdout


def test_server_runs_the_astra_like_configuration(session):
    assert session.execute("SELECT release_version FROM system.local").one().release_version.startswith("5.0.")
    assert setting(session, "materialized_views_enabled") == "false"
    assert setting(session, "user_defined_functions_enabled") == "false"
    assert setting(session, "sasi_indexes_enabled") == "false"
    assert setting(session, "default_secondary_index") == "sai"
    assert setting(session, "paxos_variant") == "v2"
    assert setting(session, "listen_address") in ("127.0.0.1", "/127.0.0.1", "localhost/127.0.0.1")


@pytest.mark.parametrize(
    "statement, reason",
    [
        (
            "CREATE MATERIALIZED VIEW by_domain AS SELECT * FROM accounts "
            "WHERE domain IS NOT NULL AND network IS NOT NULL AND account IS NOT NULL PRIMARY KEY (domain, network, account)",
            "Materialized views are disabled",
        ),
        (
            "CREATE FUNCTION twice (x bigint) RETURNS NULL ON NULL INPUT RETURNS bigint LANGUAGE java AS 'return x * 2;'",
            "User-defined functions are disabled",
        ),
        (
            "CREATE CUSTOM INDEX sasi_domain ON accounts (domain) USING 'org.apache.cassandra.index.sasi.SASIIndex'",
            "SASI indexes are disabled",
        ),
    ],
    ids=["materialized-view", "udf", "sasi"],
)
def test_features_astra_refuses_are_refused(session, statement, reason):
    from cassandra import InvalidRequest

    with pytest.raises(InvalidRequest, match=reason):
        session.execute(statement)


def test_sai_index_answers_equality_and_range_queries(session):
    session.execute("CREATE CUSTOM INDEX IF NOT EXISTS accounts_balance ON accounts (balance) USING 'StorageAttachedIndex'")
    session.execute("CREATE INDEX IF NOT EXISTS accounts_domain ON accounts (domain)")  # no USING: the default, SAI
    insert = session.prepare("INSERT INTO accounts (network, account, balance, domain) VALUES (?, ?, ?, ?)")
    for i in range(20):
        session.execute(insert, ("public", f"G{i:02d}", i * 1000, "big.example" if i >= 15 else "small.example"))
    rows = session.execute("SELECT account FROM accounts WHERE balance >= %s", (15000,))
    assert sorted(r.account for r in rows) == ["G15", "G16", "G17", "G18", "G19"]
    rows = session.execute("SELECT account FROM accounts WHERE domain = %s", ("big.example",))
    assert len(list(rows)) == 5
    kinds = {
        r.index_name: dict(r.options).get("class_name")
        for r in session.execute("SELECT index_name, options FROM system_schema.indexes WHERE keyspace_name = %s", (session.keyspace,))
    }
    assert kinds["accounts_balance"] == "StorageAttachedIndex"
    assert kinds["accounts_domain"] == "sai"


def test_lightweight_transactions_support_status_in_conditions(session):
    session.execute("CREATE TABLE IF NOT EXISTS claims (k text PRIMARY KEY, status text)")
    session.execute("INSERT INTO claims (k, status) VALUES ('a', 'PENDING')")
    update = session.prepare("UPDATE claims SET status = ? WHERE k = ? IF status IN ?")
    assert session.execute(update, ("PROCESSING", "a", ["PENDING", "RE_INQUIRY"])).one().applied
    lost = session.execute(update, ("PROCESSING", "a", ["PENDING", "RE_INQUIRY"])).one()
    assert not lost.applied and lost.status == "PROCESSING"


# ------------------------------------------------------------------ the script's lifecycle, on a second instance
@pytest.fixture
def java():
    require(shutil.which("java") is not None, "Java 17 (java on PATH) for local/cassandra.sh")


def instance_env(tmp_path, **extra) -> dict:
    return {
        "CASSANDRA_STATE_DIR": str(tmp_path / "cassandra"),
        "CASSANDRA_PORT": str(free_port()),
        "CASSANDRA_STORAGE_PORT": str(free_port()),
        "CASSANDRA_HEAP": "512M",
        **extra,
    }


def test_second_instance_restarts_with_its_data(session, java, tmp_path):
    """start -> write -> restart -> the row is still there -> stop -> status says it is down."""
    env = instance_env(tmp_path)
    port = int(env["CASSANDRA_PORT"])
    assert script("status", env=env).returncode == 1
    try:
        started = script("start", env=env)
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"CQL answers on 127.0.0.1:{port}" in started.stdout
        cluster = connect(port)
        s = cluster.connect()
        s.execute("CREATE KEYSPACE kept WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
        s.execute("CREATE TABLE kept.t (k text PRIMARY KEY, v text)")
        s.execute("INSERT INTO kept.t (k, v) VALUES ('a', 'survives a restart')")
        cluster.shutdown()
        # A long-lived store (a function process) connected across the restart.
        store = CassandraStore(Settings.from_env(env={}, store_backend="cassandra", cassandra_port=port, cassandra_keyspace="kept"))
        assert migrations.migrate(store).ok
        acct = random_account()
        store.put_lineage("public", acct, status="PENDING", home_domain="kept.example")

        restarted = script("restart", env=env)
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        assert "stopped" in restarted.stdout and "up: CQL answers" in restarted.stdout

        cluster = connect(port)
        s = cluster.connect()
        assert s.execute("SELECT v FROM kept.t WHERE k = 'a'").one().v == "survives a restart"
        cluster.shutdown()
        deadline = time.monotonic() + 60  # the driver reconnects by itself (a bound, not a timing assertion)
        while True:
            try:
                rec = store.get_lineage("public", acct)
                break
            except Exception:  # noqa: BLE001 - NoHostAvailable until the driver has reconnected
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        assert rec.status == "PENDING" and rec.home_domain == "kept.example"
        assert store.claim("public", acct, rec.updated_at or dt.datetime.now(dt.timezone.utc))
        store.close()
    finally:
        stopped = script("stop", env=env)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert script("status", env=env).returncode == 1
    again = script("stop", env=env)
    assert again.returncode == 0 and "not running" in again.stdout
    assert (tmp_path / "cassandra" / "data" / "commitlog").is_dir()


def test_a_server_that_dies_at_startup_is_reported_with_its_reason(java, tmp_path):
    failed = script("start", env=instance_env(tmp_path, CASSANDRA_HEAP="lots"))
    assert failed.returncode != 0
    assert "Cassandra exited during startup" in failed.stderr
    assert "heap size" in failed.stderr.lower()
    assert not (tmp_path / "cassandra" / "cassandra.pid").exists()


def test_a_port_taken_by_something_else_is_refused(java, tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        failed = script("start", env=instance_env(tmp_path, CASSANDRA_PORT=str(port)))
    assert failed.returncode != 0
    assert f"port {port} on 127.0.0.1 is taken by something that does not speak CQL" in failed.stderr


def test_unknown_command_prints_usage():
    res = script("explode")
    assert res.returncode == 2 and "usage:" in res.stderr
