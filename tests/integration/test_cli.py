"""The `stellarmap` command as an operator runs it: exit codes, one-line reasons, progress."""
import datetime as dt
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time

import pytest

from common.domain import GENESIS_ACCOUNT, ChildEdge
from common.store import migrations
from common.queue.sqlite_queue import TaskDB
from common.store.sqlite import SQLiteStore
from tests.support import CASSANDRA_PORT, operator_cli, random_account

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
    interrupted = 0
    for _attempt in range(5):  # on a loaded machine the export can finish before the signal lands: try again
        out.write_text("previous complete export\n")
        proc = subprocess.Popen(
            [sys.executable, "-m", "stellarmap_cli.main", "export", "--account", parent, "--output", str(out)],
            env=dict(os.environ, **sqlite_env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            # As at an operator's terminal: a runner started in the background (`cmd &`) ignores SIGINT,
            # and its children would inherit that and never see the Ctrl-C.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".export-*")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert proc.poll() is not None or list(tmp_path.glob(".export-*")), "the export never started writing"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert list(tmp_path.glob(".export-*")) == [], "no temporary file is left behind either way"
        if proc.returncode == 0:  # finished first: the export is whole
            assert out.read_text().rstrip().endswith("</graphml>")
            continue
        assert proc.returncode == 130 and "interrupted" in err
        assert out.read_text() == "previous complete export\n"
        interrupted += 1
        break
    assert interrupted == 1, "five exports all finished before SIGINT reached them"


# ------------------------------------------------------------------ the demo's stack, with no flags
@pytest.fixture
def demo_dir(tmp_path):
    """A directory laid out as the repository after `make demo`: .local-data/stack-urls.json (the part of
    LocalStack.describe() the command reads) beside the demo's migrated store and its queue file."""
    work = tmp_path / ".local-data" / "demo"
    work.mkdir(parents=True)
    store = SQLiteStore(work / "stellarmap.sqlite3")
    migrations.migrate(store)
    store.close()
    stack = {"store": {"backend": "sqlite", "sqlite_path": str(work / "stellarmap.sqlite3"), "cassandra_keyspace": None,
                       "cassandra_contact_points": ["127.0.0.1"], "cassandra_port": 9042},
             "dispatcher_db": str(work / "dispatcher.sqlite3")}
    (tmp_path / ".local-data" / "stack-urls.json").write_text(json.dumps({"site": "http://127.0.0.1:8080", "stack": stack}))
    return tmp_path


def test_after_the_demo_status_config_and_queue_need_no_flags(demo_dir):
    status = operator_cli("status", "--json", cwd=demo_dir)
    assert status.returncode == 0, status.stderr
    body = json.loads(status.stdout)
    assert body["store"] == {"backend": "sqlite", "reachable": True} and body["schema"]["ok"] is True
    assert body["queues"] == {"lineage": 0, "api-fallback": 0}
    assert "using the local stack of .local-data/stack-urls.json" in status.stderr
    assert operator_cli("config", "set", "cache_ttl_hours", "6", cwd=demo_dir).returncode == 0
    assert operator_cli("config", "get", "cache_ttl_hours", cwd=demo_dir).stdout.strip() == "6"
    accounts = [random_account() for _ in range(3)]
    queued = operator_cli("queue", "--file", "-", input="\n".join(accounts) + "\n", cwd=demo_dir)
    assert queued.returncode == 0 and "3 enqueued" in queued.stderr, queued.stderr
    db = TaskDB(demo_dir / ".local-data" / "demo" / "dispatcher.sqlite3")
    try:
        assert sorted(t["name"] for t in db.tasks()) == sorted(f"public-{a}-lineage-0" for a in accounts)
    finally:
        db.close()
    store = SQLiteStore(demo_dir / ".local-data" / "demo" / "stellarmap.sqlite3")
    try:
        assert {store.get_lineage("public", a).status for a in accounts} == {"PENDING"}
        assert store.get_config()["cache_ttl_hours"] == 6
    finally:
        store.close()


def test_a_store_setting_wins_over_the_demo_s_file(demo_dir, tmp_path):
    other = tmp_path / "other.sqlite3"
    assert operator_cli("migrate", cwd=demo_dir, env_extra={"STELLARMAP_SQLITE_PATH": str(other)}).returncode == 0
    res = operator_cli("config", "set", "cache_ttl_hours", "7", cwd=demo_dir, env_extra={"STELLARMAP_SQLITE_PATH": str(other)})
    assert res.returncode == 0 and "using the local stack" not in res.stderr
    assert operator_cli("config", "get", "cache_ttl_hours", cwd=demo_dir).stdout.strip() == "12", "the demo's store is untouched"
    flag = operator_cli("--sqlite-path", str(other), "config", "get", "cache_ttl_hours", cwd=demo_dir)
    assert flag.stdout.strip() == "7"


def test_a_named_stack_file_that_is_missing_or_whose_store_is_gone_is_a_one_line_error(demo_dir, tmp_path):
    missing = operator_cli("--stack-file", str(tmp_path / "nope.json"), "status", cwd=tmp_path)
    assert missing.returncode == 1 and "cannot read the stack file" in missing.stderr and missing.stderr.count("\n") == 1
    (demo_dir / ".local-data" / "demo" / "stellarmap.sqlite3").unlink()
    gone = operator_cli("status", cwd=demo_dir)
    assert gone.returncode == 1 and "is gone: start `make demo` again" in gone.stderr and gone.stderr.count("\n") == 1
    assert not (demo_dir / ".local-data" / "demo" / "stellarmap.sqlite3").exists(), "no empty store created in its place"
    junk = tmp_path / "junk.json"
    junk.write_text("{}")
    bad = operator_cli("status", cwd=tmp_path, env_extra={"STELLARMAP_STACK_FILE": str(junk)})
    assert bad.returncode == 1 and "is not a stack file" in bad.stderr


def test_queue_without_a_queue_setting_writes_nothing(sqlite_env, tmp_path):
    cli("migrate", env_extra=sqlite_env)
    accounts = [random_account() for _ in range(3)]
    env = {**sqlite_env, "STELLARMAP_QUEUE": "local"}
    res = operator_cli("queue", "--file", "-", input="\n".join(accounts) + "\n", cwd=tmp_path, env_extra=env)
    assert res.returncode == 1 and "LOCAL_DISPATCHER_DB is not set" in res.stderr and res.stderr.count("\n") == 1
    cloud = operator_cli("queue", "--file", "-", input=accounts[0] + "\n", cwd=tmp_path, env_extra={**sqlite_env, "STELLARMAP_QUEUE": "cloudtasks"})
    assert cloud.returncode == 1 and "CLOUD_TASKS_PROJECT" in cloud.stderr
    store = SQLiteStore(sqlite_env["STELLARMAP_SQLITE_PATH"])
    try:
        assert all(store.get_lineage("public", a) is None for a in accounts), "no account marked PENDING"
    finally:
        store.close()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_exports_get_ordinary_permissions(sqlite_env, tmp_path, umask, mode):
    parent, _ = _seed_tree(sqlite_env["STELLARMAP_SQLITE_PATH"], 3)
    out = tmp_path / "lineage.json"
    res = subprocess.run([sys.executable, "-m", "stellarmap_cli.main", "export", "--account", parent, "--output", str(out)],
                         capture_output=True, text=True, env=dict(os.environ, **sqlite_env), timeout=120,
                         preexec_fn=lambda: os.umask(umask))
    assert res.returncode == 0, res.stderr
    assert stat.S_IMODE(out.stat().st_mode) == mode
    assert list(tmp_path.glob(".export-*")) == []


def test_other_digits_in_counts_are_refused(sqlite_env, tmp_path):
    res = cli("queue", "--file", "-", "--workers", "١٦", input="", env_extra=sqlite_env)
    assert res.returncode == 2 and "--workers" in res.stderr
