"""Fixtures shared by every test level."""
from __future__ import annotations

import contextlib
import os
import uuid

import pytest

from common.clock import SettableClock
from common.config import Settings
from tests.support import CASSANDRA_PORT, SimulatedWorld, ensure_cassandra, require, simulated_world

STORE_BACKENDS = ("sqlite", "cassandra")


@pytest.fixture(scope="session")
def airdrop_world(tmp_path_factory) -> SimulatedWorld:
    """The simulated public network with a 100,000-child airdrop (300 other accounts, seed 11),
    exported and loaded into DuckDB once per session: several suites read it (the export alone
    takes about 20 s) and none writes to it."""
    return simulated_world(tmp_path_factory.mktemp("airdrop-world"), 300, 100_000, 11)


@pytest.fixture
def clock():
    return SettableClock()


@contextlib.contextmanager
def fresh_keyspace(prefix: str):
    """A new keyspace on the project's real Cassandra, dropped afterwards."""
    ok, why = ensure_cassandra()
    require(ok, f"Cassandra 5.0 on 127.0.0.1:{CASSANDRA_PORT} ({why})")
    from cassandra.cluster import Cluster

    cluster = Cluster(["127.0.0.1"], port=CASSANDRA_PORT)
    session = cluster.connect()
    keyspace = f"{prefix}_{uuid.uuid4().hex[:10]}"
    session.execute(
        f"CREATE KEYSPACE {keyspace} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
    )
    try:
        yield keyspace
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=600)  # snapshots and drops every table: slow on a busy box
        cluster.shutdown()


@pytest.fixture(scope="session")
def cassandra_keyspace():
    """A fresh keyspace for this test session."""
    with fresh_keyspace("stellarmap_test") as keyspace:
        yield keyspace


def cassandra_settings(keyspace: str) -> Settings:
    return Settings.from_env(
        env={},
        store_backend="cassandra",
        cassandra_contact_points=("127.0.0.1",),
        cassandra_port=CASSANDRA_PORT,
        cassandra_keyspace=keyspace,
    )


@pytest.fixture
def sqlite_store(tmp_path):
    from common.store import migrations
    from common.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "store.sqlite3")
    report = migrations.migrate(store)
    assert report.ok, report.summary()
    yield store
    store.close()


def _migrated_cassandra_store(keyspace: str, cls=None):
    """A migrated Cassandra store of `cls` (CassandraStore, or a test subclass of it) on `keyspace`."""
    from common.store import migrations
    from common.store.cassandra import CassandraStore

    store = (cls or CassandraStore)(cassandra_settings(keyspace))
    report = migrations.migrate(store)
    assert report.ok, report.summary()
    return store


@pytest.fixture(scope="session")
def cassandra_store(cassandra_keyspace):
    store = _migrated_cassandra_store(cassandra_keyspace)
    yield store
    store.close()


@pytest.fixture
def own_cassandra_store():
    """A Cassandra store in a keyspace of its own, for tests that compare a whole network with its
    truth (the session's keyspace holds other tests' rows, genesis's children among them)."""
    with fresh_keyspace("stellarmap_own") as keyspace:
        store = _migrated_cassandra_store(keyspace)
        try:
            yield store
        finally:
            store.close()


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


@pytest.fixture(autouse=True)
def _serial_tests_outside_xdist(request):
    """A `serial` test refuses to run in an xdist worker, where it would pass having run a part."""
    if request.node.get_closest_marker("serial") and os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.fail("a serial test in an xdist worker: run it with `pytest -m serial` (no -n), as `make test` does")


def pytest_collection_modifyitems(config, items):
    # Tests parametrized over the store get the cassandra marker on their Cassandra instance,
    # so `-m cassandra` selects them and `-m "not cassandra"` runs the SQLite half alone.
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec and "cassandra" in (callspec.params.get("store"), callspec.params.get("own_store")):
            item.add_marker(pytest.mark.cassandra)
