"""Fixtures shared by every test level."""
from __future__ import annotations

import uuid

import pytest

from common.clock import SettableClock
from common.config import Settings
from tests.support import CASSANDRA_PORT, ensure_cassandra, require

STORE_BACKENDS = ("sqlite", "cassandra")


@pytest.fixture
def clock():
    return SettableClock()


@pytest.fixture(scope="session")
def cassandra_keyspace():
    """A fresh keyspace on the project's real Cassandra for this test session."""
    ok, why = ensure_cassandra()
    require(ok, f"Cassandra 5.0 on 127.0.0.1:{CASSANDRA_PORT} ({why})")
    from cassandra.cluster import Cluster

    cluster = Cluster(["127.0.0.1"], port=CASSANDRA_PORT)
    session = cluster.connect()
    keyspace = f"stellarmap_test_{uuid.uuid4().hex[:10]}"
    session.execute(
        f"CREATE KEYSPACE {keyspace} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
    )
    try:
        yield keyspace
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=600)  # snapshots and drops every table: slow on a busy box
        cluster.shutdown()


def cassandra_settings(keyspace: str) -> Settings:
    return Settings.from_env(
        env={},
        store_backend="cassandra",
        cassandra_contact_points=("127.0.0.1",),
        cassandra_port=CASSANDRA_PORT,
        cassandra_keyspace=keyspace,
    )


@pytest.fixture(scope="session")
def cassandra_store(cassandra_keyspace):
    from common.store import migrations
    from common.store.cassandra import CassandraStore

    store = CassandraStore(cassandra_settings(cassandra_keyspace))
    report = migrations.migrate(store)
    assert report.ok, report.summary()
    yield store
    store.close()


@pytest.fixture
def sqlite_store(tmp_path):
    from common.store import migrations
    from common.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "store.sqlite3")
    report = migrations.migrate(store)
    assert report.ok, report.summary()
    yield store
    store.close()


@pytest.fixture
def own_cassandra_store():
    """A Cassandra store in a keyspace of its own, for tests that compare a whole network with its
    truth (the session's keyspace holds other tests' rows, genesis's children among them)."""
    ok, why = ensure_cassandra()
    require(ok, f"Cassandra 5.0 on 127.0.0.1:{CASSANDRA_PORT} ({why})")
    from cassandra.cluster import Cluster

    from common.store import migrations
    from common.store.cassandra import CassandraStore

    keyspace = f"stellarmap_own_{uuid.uuid4().hex[:10]}"
    cluster = Cluster(["127.0.0.1"], port=CASSANDRA_PORT)
    session = cluster.connect()
    session.execute(f"CREATE KEYSPACE {keyspace} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")
    store = CassandraStore(cassandra_settings(keyspace))
    try:
        report = migrations.migrate(store)
        assert report.ok, report.summary()
        yield store
    finally:
        store.close()
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=600)
        cluster.shutdown()


def _backend(request, cassandra_fixture: str):
    if request.param == "cassandra":
        request.applymarker(pytest.mark.cassandra)
        return request.getfixturevalue(cassandra_fixture)
    return request.getfixturevalue("sqlite_store")


@pytest.fixture(params=STORE_BACKENDS)
def own_store(request):
    """Like `store`, but the Cassandra half has a keyspace of its own (see own_cassandra_store)."""
    return _backend(request, "own_cassandra_store")


@pytest.fixture(params=STORE_BACKENDS)
def store(request):
    """The contract fixture: every test using it runs on SQLite and on the real Cassandra."""
    return _backend(request, "cassandra_store")


def pytest_collection_modifyitems(config, items):
    # Tests parametrized over the store get the cassandra marker on their Cassandra instance,
    # so `-m cassandra` selects them and `-m "not cassandra"` runs the SQLite half alone.
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec and "cassandra" in (callspec.params.get("store"), callspec.params.get("own_store")):
            item.add_marker(pytest.mark.cassandra)
