"""CassandraStore behaviour beyond the shared contract: connection settings, consistency levels,
schema administration, outcome-unknown lightweight transactions, exact counters, paging."""
from __future__ import annotations

import datetime as dt
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from common.config import ConfigError, Settings
from common.store.cassandra import CassandraStore, CassandraUnavailable
from tests.support import CASSANDRA_PORT, ROOT, ensure_cassandra, free_port, random_account, require

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 5, 1, 8, 30, tzinfo=dt.timezone.utc)


def settings(**explicit) -> Settings:
    base = {"store_backend": "cassandra", "cassandra_contact_points": ("127.0.0.1",), "cassandra_port": CASSANDRA_PORT}
    return Settings.from_env(env={}, **{**base, **explicit})


# ------------------------------------------------------------------ no server needed
def test_astra_connection_arguments_from_bundle_and_token(tmp_path):
    from cassandra import ConsistencyLevel
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import EXEC_PROFILE_DEFAULT

    bundle = tmp_path / "secure-connect-stellarmap.zip"
    bundle.write_bytes(b"PK\x05\x06" + b"\x00" * 18)  # an (empty) zip: the driver reads it only when connecting
    store = CassandraStore(settings(astra_bundle_path=str(bundle), astra_token="AstraCS:abc:123", cassandra_keyspace="stellarmap"))
    kwargs = store.cluster_kwargs()
    assert kwargs["cloud"]["secure_connect_bundle"] == str(bundle)
    auth = kwargs["auth_provider"]
    assert isinstance(auth, PlainTextAuthProvider)
    assert (auth.username, auth.password) == ("token", "AstraCS:abc:123")
    assert "contact_points" not in kwargs and "port" not in kwargs
    profile = kwargs["execution_profiles"][EXEC_PROFILE_DEFAULT]
    assert profile.consistency_level == ConsistencyLevel.LOCAL_QUORUM
    assert profile.serial_consistency_level == ConsistencyLevel.LOCAL_SERIAL
    assert store._session is None, "building the arguments never connects"


def test_contact_point_arguments():
    kwargs = CassandraStore(settings(cassandra_contact_points=("10.0.0.7", "10.0.0.8"), cassandra_port=9142)).cluster_kwargs()
    assert kwargs["contact_points"] == ["10.0.0.7", "10.0.0.8"] and kwargs["port"] == 9142
    assert "cloud" not in kwargs and "auth_provider" not in kwargs


@pytest.mark.parametrize(
    "explicit, variable",
    [
        ({"astra_token": "AstraCS:x"}, "ASTRA_SECURE_BUNDLE_PATH"),
        ({"astra_bundle_path": "BUNDLE"}, "ASTRA_TOKEN"),
        ({"astra_bundle_path": "/nonexistent/secure-connect.zip", "astra_token": "AstraCS:x"}, "ASTRA_SECURE_BUNDLE_PATH"),
        ({"cassandra_contact_points": ()}, "CASSANDRA_CONTACT_POINTS"),
    ],
    ids=["token-without-bundle", "bundle-without-token", "bundle-missing", "no-contact-points"],
)
def test_incomplete_connection_settings_name_the_variable(tmp_path, explicit, variable):
    if explicit.get("astra_bundle_path") == "BUNDLE":
        bundle = tmp_path / "b.zip"
        bundle.write_bytes(b"zip")
        explicit = {"astra_bundle_path": str(bundle)}
    store = CassandraStore(settings(**explicit))
    with pytest.raises(ConfigError) as info:
        store.cluster_kwargs()
    assert info.value.variable == variable and variable in str(info.value)


@pytest.mark.parametrize("keyspace", ["stellar-map", "ks; DROP KEYSPACE x", ""])
def test_keyspace_must_be_an_identifier(keyspace):
    with pytest.raises(ConfigError, match="CASSANDRA_KEYSPACE"):
        CassandraStore(Settings(store_backend="cassandra", cassandra_keyspace=keyspace))


def test_unreadable_astra_bundle_is_a_clear_error(tmp_path):
    bundle = tmp_path / "secure-connect.zip"
    bundle.write_bytes(b"this is not a zip file")
    store = CassandraStore(settings(astra_bundle_path=str(bundle), astra_token="AstraCS:x", cassandra_keyspace="stellarmap"))
    assert store.ping() is False
    with pytest.raises(CassandraUnavailable, match="Astra DB"):
        store.get_config()


def test_unreachable_cluster_is_a_clear_error_and_ping_is_false():
    port = free_port()  # nothing listens there
    store = CassandraStore(settings(cassandra_port=port, cassandra_keyspace="stellarmap"), connect_timeout_s=2)
    assert store.ping() is False
    with pytest.raises(CassandraUnavailable, match=f"127.0.0.1:{port}"):
        store.get_lineage("public", random_account())
    store.close()


def test_adapter_never_filters_on_the_server():
    """No CQL string of the adapter uses ALLOW FILTERING (docstrings may say that it does not)."""
    import ast

    tree = ast.parse((ROOT / "common" / "store" / "cassandra.py").read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body
        and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }
    strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]
    assert any("SELECT" in s for s in strings)
    assert not [s for s in strings if "ALLOW FILTERING" in s.upper()]


# ------------------------------------------------------------------ against the real Cassandra
@pytest.fixture(scope="module")
def admin():
    ok, why = ensure_cassandra()
    require(ok, f"Cassandra 5.0 on 127.0.0.1:{CASSANDRA_PORT} ({why})")
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import RoundRobinPolicy

    profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=120)
    cluster = Cluster(["127.0.0.1"], port=CASSANDRA_PORT, protocol_version=5, execution_profiles={EXEC_PROFILE_DEFAULT: profile})
    session = cluster.connect()
    yield session
    cluster.shutdown()


@pytest.fixture(scope="module")
def keyspace(admin):
    name = f"store_check_{uuid.uuid4().hex[:8]}"
    admin.execute(f"CREATE KEYSPACE {name} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")
    yield name
    admin.execute(f"DROP KEYSPACE IF EXISTS {name}")


@pytest.fixture(scope="module")
def fresh_store(keyspace):
    """A store on a keyspace of this module's own, before any migration."""
    store = CassandraStore(settings(cassandra_keyspace=keyspace))
    yield store
    store.close()


@pytest.fixture(scope="module")
def store(fresh_store):
    from common.store import migrations

    report = migrations.migrate(fresh_store)
    assert report.ok, report.summary()
    return fresh_store


@pytest.mark.cassandra
def test_migrations_bookkeeping_and_verify(admin, keyspace, fresh_store):
    from common.store import migrations

    assert fresh_store.applied_migrations() == {}
    tables = {r.table_name for r in admin.execute("SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (keyspace,))}
    assert "schema_migrations" not in tables, "reading the bookkeeping never creates it"
    report = migrations.migrate(fresh_store)
    assert report.ok and report.applied
    applied = fresh_store.applied_migrations()
    assert set(applied) == {m.version for m in migrations.load_migrations()}
    assert all(rec["applied_at"].endswith("Z") and len(rec["checksum"]) == 64 for rec in applied.values())
    assert migrations.verify(fresh_store).ok
    again = migrations.migrate(fresh_store)
    assert again.ok and not again.applied


@pytest.mark.cassandra
def test_alter_add_is_skipped_when_the_column_exists(admin, keyspace, store):
    from cassandra import InvalidRequest

    statement = "ALTER TABLE account_lineage ADD pipeline_source text"
    with pytest.raises(InvalidRequest):
        admin.execute(f"ALTER TABLE {keyspace}.account_lineage ADD pipeline_source text")  # CQL itself is not idempotent
    store.apply_migration_statement(statement)  # no error: skipped
    store.apply_migration_statement("ALTER TABLE account_lineage ADD probe_extra text")
    store.apply_migration_statement("ALTER TABLE account_lineage ADD probe_extra text")
    assert "probe_extra" in store.actual_columns()["account_lineage"]


@pytest.mark.cassandra
def test_ddl_waits_for_schema_agreement(store):
    store.apply_migration_statement("CREATE TABLE IF NOT EXISTS probe_agreement (k text PRIMARY KEY, v text)")
    assert store._cluster.control_connection.wait_for_schema_agreement(wait_time=5)
    # usable at once by a prepared statement: the schema change is everywhere it needs to be
    store._run("INSERT INTO probe_agreement (k, v) VALUES (?, ?)", ("a", "b"))
    assert store._run("SELECT v FROM probe_agreement WHERE k = ?", ("a",)).one()["v"] == "b"
    assert "probe_agreement" in store.actual_columns()


@pytest.mark.cassandra
def test_missing_keyspace_is_a_clear_error():
    store = CassandraStore(settings(cassandra_keyspace=f"absent_{uuid.uuid4().hex[:8]}"))
    with pytest.raises(CassandraUnavailable, match="does not exist"):
        store.get_config()
    store.close()


@pytest.mark.cassandra
def test_every_statement_runs_at_local_quorum_and_lwts_at_local_serial(store):
    from cassandra import ConsistencyLevel

    seen = []
    session = store._sess()

    def listen(future):
        q = future.query
        text = getattr(q, "query_string", None) or getattr(getattr(q, "prepared_statement", None), "query_string", None)
        msg = future.message
        seen.append((text or type(q).__name__, msg.consistency_level, msg.serial_consistency_level))

    session.add_request_init_listener(listen)
    try:
        acct = random_account()
        store.put_lineage("public", acct, status="PENDING", updated_at=T0)
        assert store.claim("public", acct, T0)
        store.get_lineage("public", acct)
        store.try_reserve_spend("2301-01", 5, 100, T0)
        store.get_children_page("public", acct)
        store.set_config("cache_ttl_hours", 6, T0)
    finally:
        session.remove_request_init_listener(listen)
    assert seen
    for cql, cl, serial in seen:
        assert cl in (ConsistencyLevel.LOCAL_QUORUM, ConsistencyLevel.LOCAL_SERIAL), (cql, cl)
        assert serial in (None, ConsistencyLevel.LOCAL_SERIAL), (cql, serial)
    lwts = [s for s in seen if " IF " in s[0]]
    assert lwts and all(s[1] == ConsistencyLevel.LOCAL_QUORUM and s[2] == ConsistencyLevel.LOCAL_SERIAL for s in lwts)


@pytest.mark.cassandra
def test_conditional_update_on_a_missing_row_never_creates_it(store):
    acct = random_account()
    assert not store.transition_lineage("public", acct, (None, "COMPLETE"), "PENDING", updated_at=T0)
    assert store.get_lineage("public", acct) is None


class TimeoutOnLwt(CassandraStore):
    """A fault-injecting store: the next `failures` conditional writes report a WriteTimeout (CAS),
    as a coordinator does when a Paxos round outlives the timeout. With `landed=True` the write
    really ran on the server first, so the outcome is "applied, but the client does not know"."""

    def __init__(self, settings, failures: int, landed: bool):
        super().__init__(settings)
        self.failures = failures
        self.landed = landed
        self.injected = 0

    def _run(self, cql, params=(), serial=False):
        if self.failures and " IF " in cql:
            from cassandra import ConsistencyLevel, WriteTimeout, WriteType

            self.failures -= 1
            self.injected += 1
            if self.landed:
                super()._run(cql, params, serial)
            raise WriteTimeout(
                "injected: CAS timed out", consistency=ConsistencyLevel.LOCAL_SERIAL, required_responses=1, received_responses=0, write_type=WriteType.CAS
            )
        return super()._run(cql, params, serial)


@pytest.mark.cassandra
@pytest.mark.parametrize("landed", [True, False], ids=["write-landed", "write-lost"])
def test_claim_with_unknown_outcome_is_resolved_by_reading_back(keyspace, store, landed):
    acct = random_account()
    store.put_lineage("public", acct, status="PENDING", updated_at=T0)
    faulty = TimeoutOnLwt(settings(cassandra_keyspace=keyspace), failures=1, landed=landed)
    try:
        assert faulty.claim("public", acct, T0), "the claim is ours either way: read back (landed) or retried (lost)"
        assert faulty.injected == 1
        assert store.get_lineage("public", acct).status == "PROCESSING"
        assert not store.claim("public", acct, T0), "and nobody else gets it"
    finally:
        faulty.close()


@pytest.mark.cassandra
def test_claim_lost_to_another_worker_during_a_timeout_is_not_ours(keyspace, store):
    acct = random_account()
    store.put_lineage("public", acct, status="PENDING", updated_at=T0)
    assert store.claim("public", acct, T0)  # the other worker
    faulty = TimeoutOnLwt(settings(cassandra_keyspace=keyspace), failures=1, landed=False)
    try:
        assert not faulty.claim("public", acct, T0)
    finally:
        faulty.close()


@pytest.mark.cassandra
@pytest.mark.parametrize("landed", [True, False], ids=["write-landed", "write-lost"])
def test_a_fenced_write_with_unknown_outcome_is_resolved_by_reading_back(keyspace, store, landed):
    acct = random_account()
    store.put_lineage("public", acct, status="PENDING", updated_at=T0)
    token = store.claim("public", acct, T0)
    faulty = TimeoutOnLwt(settings(cassandra_keyspace=keyspace), failures=1, landed=landed)
    try:
        assert faulty.update_claimed("public", acct, token, children_cursor="horizon:v1:1:1:1", num_child_accounts=200)
        faulty.failures = 1
        assert faulty.transition_lineage("public", acct, ("PROCESSING",), "COMPLETE", fence=token, num_child_accounts=250)
        assert faulty.injected == 2
        rec = store.get_lineage("public", acct)
        assert (rec.status, rec.num_child_accounts, rec.children_cursor, rec.claim_token) == ("COMPLETE", 250, "horizon:v1:1:1:1", token)
    finally:
        faulty.close()


@pytest.mark.cassandra
def test_a_stale_worker_s_timed_out_write_is_not_taken_for_its_own(keyspace, store):
    """B already wrote the very values A now writes: the row matches A's fields, but not A's token."""
    acct = random_account()
    store.put_lineage("public", acct, status="PENDING", updated_at=T0)
    a = store.claim("public", acct, T0)
    assert store.transition_lineage("public", acct, ("PROCESSING",), "PENDING", fence=a, retry_count=1)  # reset_stale
    b = store.claim("public", acct, T0)
    assert store.update_claimed("public", acct, b, children_cursor="horizon:v1:7:3:1", num_child_accounts=600)
    faulty = TimeoutOnLwt(settings(cassandra_keyspace=keyspace), failures=2, landed=False)
    try:
        assert not faulty.update_claimed("public", acct, a, children_cursor="horizon:v1:7:3:1", num_child_accounts=600)
        assert not faulty.transition_lineage("public", acct, ("PROCESSING",), "COMPLETE", fence=a)
        assert faulty.injected == 2
    finally:
        faulty.close()
    rec = store.get_lineage("public", acct)
    assert rec.status == "PROCESSING" and rec.claim_token == b


@pytest.mark.cassandra
def test_pipeline_counters_stay_exact_under_concurrent_status_writes(store):
    """Many accounts per shard, written from 12 threads: every shard's conditional batch serialises."""
    net = "testnet"
    accounts = [random_account() for _ in range(160)]
    before = store.get_pipeline_counts(net)

    def run(acct):
        store.put_lineage(net, acct, status="PENDING", updated_at=T0)
        assert store.claim(net, acct, T0)
        store.transition_lineage(net, acct, ["PROCESSING"], "COMPLETE", pipeline_source="API", last_pipeline_attempt=T0, updated_at=T0)

    with ThreadPoolExecutor(12) as pool:
        list(pool.map(run, accounts))
    after = store.get_pipeline_counts(net)
    assert after.get("s:COMPLETE", 0) - before.get("s:COMPLETE", 0) == len(accounts)
    assert after.get("p:API", 0) - before.get("p:API", 0) == len(accounts)
    assert after.get("s:PENDING", 0) == before.get("s:PENDING", 0)
    assert after.get("s:PROCESSING", 0) == before.get("s:PROCESSING", 0)


@pytest.mark.cassandra
def test_big_partitions_are_paged_through(store):
    net = "public"
    rows = [(random_account(), Decimal(f"123456.{i:07d}")) for i in range(2500)]  # one magnitude bucket, 2.5 fetch pages
    store.put_balances(net, rows)
    got = dict(store.balances_at_least(net, Decimal("123456")))
    assert all(got[a] == b for a, b in rows)


@pytest.mark.cassandra
def test_network_filtered_scan_is_bounded_and_exact(store):
    for _ in range(3):
        store.put_lineage("testnet", random_account(), status="COMPLETE")
    rows = list(store.scan("account_lineage", "testnet", 2))
    assert len(rows) == 2 and all(r["network_name"] == "testnet" for r in rows)
    assert all(isinstance(r["stellar_account"], str) for r in rows)


@pytest.mark.cassandra
def test_leaderboard_shrinks_without_leftover_ranks(store):
    net, threshold = "public", 4242
    a, b, c = random_account(), random_account(), random_account()
    from common.domain import LeaderboardEntry

    store.put_leaderboard(net, threshold, [LeaderboardEntry(i + 1, x, Decimal(10 - i)) for i, x in enumerate((a, b, c))], T0)
    store.put_leaderboard(net, threshold, [LeaderboardEntry(1, c, Decimal(99))], T0 + dt.timedelta(hours=1))
    snap, entries = store.get_leaderboard(net, threshold)
    assert entries == [LeaderboardEntry(1, c, Decimal(99))] and snap == T0 + dt.timedelta(hours=1)
    store.put_leaderboard(net, threshold, [], T0 + dt.timedelta(hours=2))
    assert store.get_leaderboard(net, threshold) == (None, [])


@pytest.mark.cassandra
def test_close_then_use_reconnects(keyspace):
    store = CassandraStore(settings(cassandra_keyspace=keyspace))
    assert store.ping()
    store.close()
    assert store._session is None
    assert store.ping()
    store.close()



# ------------------------------------------------------------------ bulk writes (common/store/bulk.py)
class _ObservedSession:
    """The driver session as the bulk path sees it, recording every request and the most requests
    in flight at once; `fail_at` makes the n-th request fail on the server, `hang_at` never answer."""

    def __init__(self, session, owner):
        self._session = session
        self._owner = owner

    def __getattr__(self, name):
        return getattr(self._session, name)

    def execute_async(self, query, *args, **kwargs):
        from cassandra.query import SimpleStatement

        o = self._owner
        with o.lock:
            o.requests.append(query)
            n = len(o.requests)
            o.live += 1
            o.max_live = max(o.max_live, o.live)
        if n == o.hang_at:
            return _SilentFuture()
        if n == o.fail_at:
            query = SimpleStatement("INSERT INTO no_such_table (k) VALUES (1)")
        future = self._session.execute_async(query, *args, **kwargs)

        def done(*_):
            with o.lock:
                o.live -= 1

        future.add_callbacks(done, done)
        return future


class _SilentFuture:
    """A request the server never answers."""

    def add_callbacks(self, callback, errback):
        pass


class ObservedBulkStore(CassandraStore):
    def __init__(self, settings, fail_at=None, hang_at=None, **kw):
        import threading

        super().__init__(settings, **kw)
        self.lock = threading.Lock()
        self.requests, self.live, self.max_live = [], 0, 0
        self.fail_at, self.hang_at = fail_at, hang_at

    def _sess(self):
        return _ObservedSession(super()._sess(), self)


@pytest.mark.cassandra
def test_bulk_routing_key_is_the_drivers(store):
    from common.store.cassandra import _partition_key

    account = random_account()
    bound = store._prepare("SELECT * FROM account_lineage WHERE network_name = ? AND stellar_account = ?").bind(["public", account])
    assert bound.routing_key == _partition_key("public", account)
    bound = store._prepare("SELECT * FROM balance_index WHERE network_name = ? AND magnitude = ?").bind(["public", 7])
    assert bound.routing_key == _partition_key("public", 7)


@pytest.mark.cassandra
def test_bulk_requests_are_bounded_unlogged_batches_at_local_quorum(keyspace, store):
    from cassandra import ConsistencyLevel
    from cassandra.query import BatchStatement, BatchType

    from common.store import cassandra as adapter
    from common.store.bulk import CreationEdge

    observed = ObservedBulkStore(settings(cassandra_keyspace=keyspace))
    try:
        big, creators = random_account(), [random_account() for _ in range(30)]
        edges = [CreationEdge("public", big, random_account(), T0, str(i), 10 + i) for i in range(120)]  # one partition of 120 children
        edges += [CreationEdge("public", c, random_account(), T0, str(1000 + i), 10) for i, c in enumerate(creators)]
        counts = observed.bulk_add_creations("public", edges, now=T0, chunk_size=1000)
        assert (counts.creation_events, counts.children, counts.lineage_created) == (150, 150, 150)
        reads = [q for q in observed.requests if not isinstance(q, BatchStatement) and "SELECT" in q.prepared_statement.query_string]
        writes = [q for q in observed.requests if q not in reads]
        assert len(reads) == -(-150 // adapter.BULK_KEYS_PER_READ)  # IN lists of one replica set (one node here)
        assert all(q.routing_key for q in reads)
        batches = [q for q in writes if isinstance(q, BatchStatement)]
        assert batches and all(b.batch_type == BatchType.UNLOGGED for b in batches)
        assert all(len(b) <= adapter.BULK_BATCH_ROWS for b in batches)
        assert all(q.consistency_level == ConsistencyLevel.LOCAL_QUORUM for q in writes + reads)
        statements = sum(len(b) for b in batches) + len(writes) - len(batches)
        assert statements == 150 + 150 + 150  # events, lineage rows, children: each once
        assert len(writes) < statements / 5, "batched: far fewer requests than rows"
        assert 1 < observed.max_live <= adapter.BULK_IN_FLIGHT
        assert len(list(store.iter_children("public", big))) == 120
    finally:
        observed.close()


@pytest.mark.cassandra
def test_bulk_write_failing_mid_chunk_raises_and_a_rerun_completes_it(keyspace, store):
    from common.store.bulk import CreationEdge

    creator = random_account()
    edges = [CreationEdge("public", creator, random_account(), T0, str(i), 10 + i) for i in range(60)]
    failing = ObservedBulkStore(settings(cassandra_keyspace=keyspace), fail_at=6)
    try:
        with pytest.raises(Exception) as info:
            failing.bulk_add_creations("public", edges, now=T0)
        assert "no_such_table" in str(info.value)
    finally:
        failing.close()
    missing = [e for e in edges if store.get_lineage("public", e.account) is None]
    assert missing, "the failed request's rows were not written"
    counts = store.bulk_add_creations("public", edges, now=T0)
    assert counts.rows == 60 and counts.lineage_created == len(missing)
    assert all(store.get_lineage("public", e.account).stellar_creator_account == creator for e in edges)
    assert len(list(store.iter_children("public", creator))) == 60


@pytest.mark.cassandra
def test_bulk_write_with_a_request_never_answered_times_out(keyspace, store):
    from cassandra import OperationTimedOut

    from common.store.bulk import CreationEdge
    from common.store.port import StoreUnavailable

    stuck = ObservedBulkStore(settings(cassandra_keyspace=keyspace), hang_at=2, request_timeout_s=1.0)
    try:
        with pytest.raises(StoreUnavailable, match="no request finished") as info:
            stuck.bulk_add_creations("public", [CreationEdge("public", random_account(), random_account(), T0, "1")], now=T0)
        assert isinstance(info.value.__cause__, OperationTimedOut)  # the port's error, the driver's as its cause
    finally:
        stuck.close()
