"""The `stellarmap` command as an operator runs it: exit codes, one-line reasons, progress."""
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from common.domain import GENESIS_ACCOUNT, ChildEdge
from common.store import migrations
from common.store.sqlite import SQLiteStore
from tests.support import CASSANDRA_PORT, random_account

pytestmark = pytest.mark.integration
T0 = dt.datetime(2022, 2, 2, tzinfo=dt.timezone.utc)


def cli(*args, env_extra=None, **kw):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "stellarmap_cli.main", *args], capture_output=True, text=True, env=env, timeout=600, **kw)


@pytest.fixture
def sqlite_env(tmp_path):
    return {"STELLARMAP_STORE": "sqlite", "STELLARMAP_SQLITE_PATH": str(tmp_path / "cli.sqlite3")}


def test_migrate_twice_then_verify_sqlite(sqlite_env):
    dry = cli("migrate", "--dry-run", env_extra=sqlite_env)
    assert dry.returncode == 0 and "would apply 0001_initial_schema" in dry.stderr
    assert "migrate: 0 applied (dry run: nothing applied), 0 already applied, 0 error(s)" in dry.stderr
    first = cli("migrate", "--verify", env_extra=sqlite_env)
    assert first.returncode == 0 and "applied 0001_initial_schema" in first.stderr and "verify: ok" in first.stderr
    n = len(migrations.load_migrations())
    assert f"[{n}/{n}] applying" in first.stderr
    assert re.search(rf"migrate: {n} applied, 0 already applied, 0 error\(s\), verify ok; done in [\d.]+s", first.stderr), first.stderr
    second = cli("migrate", "--verify", env_extra=sqlite_env)
    assert second.returncode == 0 and "nothing to apply" in second.stderr
    assert f"migrate: 0 applied, {n} already applied, 0 error(s), verify ok" in second.stderr


@pytest.mark.cassandra
def test_migrate_twice_then_verify_cassandra(cassandra_keyspace):
    # A keyspace of its own: the session keyspace is already migrated by the store fixture.
    from cassandra.cluster import Cluster

    ks = cassandra_keyspace + "_cli"
    cluster = Cluster(["127.0.0.1"], port=CASSANDRA_PORT)
    session = cluster.connect()
    session.execute(f"CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")
    try:
        env = {"STELLARMAP_STORE": "cassandra", "CASSANDRA_KEYSPACE": ks, "CASSANDRA_PORT": str(CASSANDRA_PORT)}
        first = cli("migrate", "--verify", env_extra=env)
        assert first.returncode == 0, first.stderr
        assert "applied 0001_initial_schema" in first.stderr and "verify: ok" in first.stderr
        second = cli("migrate", "--verify", env_extra=env)
        assert second.returncode == 0 and "nothing to apply" in second.stderr and "verify: ok" in second.stderr
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {ks}")
        cluster.shutdown()


def test_verify_only_on_an_empty_database_fails_with_a_reason(sqlite_env):
    res = cli("migrate", "--verify-only", env_extra=sqlite_env)
    assert res.returncode == 1 and "missing migrations: 0001_initial_schema" in res.stderr
    assert "migrate: 0 applied, 0 already applied, 1 error(s), verify FAILED" in res.stderr


def test_config_get_set(sqlite_env):
    cli("migrate", env_extra=sqlite_env)
    assert cli("config", "set", "cache_ttl_hours", "6", env_extra=sqlite_env).returncode == 0
    got = cli("config", "get", "cache_ttl_hours", env_extra=sqlite_env)
    assert got.returncode == 0 and got.stdout.strip() == "6"
    bad = cli("config", "set", "cache_ttl_hours", "soon", env_extra=sqlite_env)
    assert bad.returncode == 1 and "cache_ttl_hours must be an integer" in bad.stderr and bad.stderr.count("\n") == 1
    assert json.loads(cli("config", "get", env_extra=sqlite_env).stdout)["cache_ttl_hours"] == 6


def test_bad_store_setting_names_the_variable(tmp_path):
    res = cli("status", env_extra={"STELLARMAP_STORE": "mongo"})
    assert res.returncode == 1 and "STELLARMAP_STORE" in res.stderr


def _seed_tree(path, n_children):
    store = SQLiteStore(path)
    migrations.migrate(store)
    parent = random_account()
    store.put_lineage("public", GENESIS_ACCOUNT, status="COMPLETE")
    store.put_lineage("public", parent, stellar_creator_account=GENESIS_ACCOUNT, status="COMPLETE", num_child_accounts=n_children)
    kids = [random_account() for _ in range(n_children)]
    for i in range(0, n_children, 5000):
        store.add_children("public", parent, [ChildEdge("public", parent, k, T0, str(j)) for j, k in enumerate(kids[i:i + 5000], i)])
    store.close()
    return parent, kids


def test_export_to_file(sqlite_env, tmp_path):
    parent, kids = _seed_tree(sqlite_env["STELLARMAP_SQLITE_PATH"], 1500)
    out = tmp_path / "lineage.csv"
    res = cli("export", "--account", parent, "--network", "public", "--output", str(out), env_extra=sqlite_env)
    assert res.returncode == 0, res.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 1 + 2 + 1500 and "wrote" in res.stderr
    assert re.search(r"wrote \S+lineage\.csv: 1,500 children \(csv, [\d,]+ bytes\), 0 errors, in [\d.]+s", res.stderr), res.stderr
    missing = cli("export", "--account", random_account(), "--output", str(tmp_path / "x.json"), env_extra=sqlite_env)
    assert missing.returncode == 1 and "not known" in missing.stderr and not (tmp_path / "x.json").exists()


def test_interrupted_export_leaves_nothing_corrupt(sqlite_env, tmp_path):
    parent, _ = _seed_tree(sqlite_env["STELLARMAP_SQLITE_PATH"], 100_000)
    out = tmp_path / "big.graphml"
    out.write_text("previous complete export\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "stellarmap_cli.main", "export", "--account", parent, "--output", str(out)],
        env=dict(os.environ, **sqlite_env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".export-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(tmp_path.glob(".export-*")), "the export never started writing"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err
    assert out.read_text() == "previous complete export\n"
    assert list(tmp_path.glob(".export-*")) == []
