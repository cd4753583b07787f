"""request_lineage against writers racing its read-then-write, on SQLite and the real Cassandra.

Seen in the e2e run: a search read no lineage row; before its insert (PENDING), an api-fallback
crawl of the account's creator stored it as a child (a row with no status). The insert lost, the
`lineage-0` task found nothing to claim and answered 200, and the next search's request made the
row PENDING under the same task name, which the queue refused as a duplicate: PENDING with no task.
"""
from __future__ import annotations

import datetime as dt

import pytest

from common import pipeline
from common.bootstrap import Container
from common.clock import SettableClock
from common.config import Settings
from common.store import migrations
from common.store.cassandra import CassandraStore
from common.store.sqlite import SQLiteStore
from local.testing.fakes import RecordingQueue, StealsClaims
from tests.conftest import STORE_BACKENDS, _migrated_cassandra_store
from tests.support import random_account

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.timezone.utc)


class RacingSQLite(StealsClaims, SQLiteStore):
    pass


class RacingCassandra(StealsClaims, CassandraStore):
    pass


@pytest.fixture(scope="module")
def racing_cassandra(cassandra_keyspace):
    store = _migrated_cassandra_store(cassandra_keyspace, RacingCassandra)
    yield store
    store.close()


@pytest.fixture(params=STORE_BACKENDS)
def racing(request, tmp_path):
    if request.param == "cassandra":
        request.applymarker(pytest.mark.cassandra)
        yield request.getfixturevalue("racing_cassandra")
        return
    store = RacingSQLite(tmp_path / "racing.sqlite3")
    migrations.migrate(store)
    yield store
    store.close()


@pytest.fixture
def c(racing):
    return Container(Settings.from_env(env={}), SettableClock(T0), store=racing, queue=RecordingQueue())


def lineage_tasks(c, account):
    return [t for t in c.queue.tasks if t["queue"] == pipeline.LINEAGE_QUEUE and t["payload"]["account"] == account]


def test_a_row_created_between_the_read_and_the_insert_still_gets_its_run(c):
    account, creator = random_account(), random_account()
    # The creator's crawl stores the account as its child right after request_lineage read "no row".
    c.store.arm("get_lineage", account, lambda: c.store.put_lineage("public", account, stellar_creator_account=creator))
    assert pipeline.request_lineage(c, "public", account)
    assert c.store.stolen
    rec = c.store.get_lineage("public", account)
    assert rec.status == "PENDING" and rec.stellar_creator_account == creator, rec
    assert [t["payload"]["generation"] for t in lineage_tasks(c, account)] == [0]
    assert c.store.claim("public", account, c.clock.now()), "the queued task finds a row to claim"
    assert [r for r in c.store.list_active("lineage") if r["stellar_account"] == account]


def test_a_concurrent_requester_winning_the_transition_leaves_one_task(c):
    account = random_account()
    c.store.put_lineage("public", account, stellar_creator_account=random_account())  # known as a child, never searched
    inner = []
    c.store.arm("get_lineage", account, lambda: inner.append(pipeline.request_lineage(c, "public", account)))
    outer = pipeline.request_lineage(c, "public", account)
    assert inner == [True] and outer is False, "the second enqueue of the same name is refused"
    assert c.store.get_lineage("public", account).status == "PENDING"
    assert len(lineage_tasks(c, account)) == 1
    assert c.store.claim("public", account, c.clock.now())


def test_two_racing_first_requests_make_one_pending_row_and_one_task(c):
    account = random_account()
    inner = []
    c.store.arm("get_lineage", account, lambda: inner.append(pipeline.request_lineage(c, "public", account)))
    outer = pipeline.request_lineage(c, "public", account)
    assert sorted([inner[0], outer]) == [False, True]
    rec = c.store.get_lineage("public", account)
    assert rec.status == "PENDING" and rec.created_at == T0
    assert len(lineage_tasks(c, account)) == 1


class NeverWins(SQLiteStore):
    """Every lineage compare-and-set loses, as if another writer always got there first."""

    reads = 0

    def get_lineage(self, network, account):
        self.reads += 1
        return super().get_lineage(network, account)

    def _compare_and_set(self, table, network, account, expected, fields, fence=None):
        if table == "account_lineage":
            return False
        return super()._compare_and_set(table, network, account, expected, fields, fence)


def test_a_row_that_keeps_changing_is_left_after_bounded_reads(tmp_path, caplog):
    store = NeverWins(tmp_path / "never.sqlite3")
    migrations.migrate(store)
    c = Container(Settings.from_env(env={}), SettableClock(T0), store=store, queue=RecordingQueue())
    account = random_account()
    assert pipeline.request_lineage(c, "public", account) is False
    assert store.reads == pipeline.REQUEST_ROUNDS
    assert not lineage_tasks(c, account), "no task for a row this request never made PENDING"
    assert "left to reset_stale" in caplog.text
    store.close()
