"""A store that does not answer raises the port's StoreUnavailable on every adapter, so handlers
answer 503 store_unavailable without knowing a driver's exception types."""
from __future__ import annotations

import datetime as dt
import pytest

from common.config import Settings
from common.store.port import StoreUnavailable
from tests.support import free_port, random_account

pytestmark = pytest.mark.integration
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def test_sqlite_store_that_cannot_open_its_file_raises_store_unavailable(tmp_path):
    from common.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path)  # a directory: SQLite cannot open it as a database
    with pytest.raises(StoreUnavailable) as info:
        store.get_lineage("public", random_account())
    assert "sqlite" in str(info.value) and info.value.__cause__ is not None
    with pytest.raises(StoreUnavailable):
        list(store.iter_children("public", random_account()))  # a generator method too


@pytest.mark.cassandra
def test_cassandra_store_without_a_cluster_raises_store_unavailable():
    from common.store.cassandra import CassandraStore

    settings = Settings.from_env(env={}, store_backend="cassandra", cassandra_contact_points=("127.0.0.1",),
                                 cassandra_port=free_port(), cassandra_keyspace="stellarmap_nowhere")
    store = CassandraStore(settings, connect_timeout_s=2.0)
    try:
        with pytest.raises(StoreUnavailable):
            store.get_lineage("public", random_account())
    finally:
        store.close()


def test_an_adapter_still_sees_its_own_errors_inside_a_call(sqlite_store):
    """Only the outermost public call translates: a nested public call's error reaches the adapter's
    own handler untranslated (the Cassandra CAS read-back relies on this)."""
    import sqlite3

    from common.store.sqlite import SQLiteStore

    class Probe(SQLiteStore):
        def ping(self) -> bool:
            try:
                self.get_lineage("public", "not checked: raises below")
            except sqlite3.OperationalError:
                return True
            return False

        def get_lineage(self, network, account):
            raise sqlite3.OperationalError("database is locked")

    probe = Probe(sqlite_store.path)
    assert probe.ping() is True
    with pytest.raises(StoreUnavailable):
        probe.get_lineage("public", random_account())
    assert issubclass(StoreUnavailable, ConnectionError)
