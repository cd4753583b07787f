"""The month's budget runs out while several workers spend at once.

Four processes (separate interpreters, separate store connections) run process_account on
different accounts at the same moment, each query dry-run and reserved through the store's
atomic try_reserve_spend, on the embedded SQLite store and on the real Cassandra (lightweight
transactions). The budget is a few queries short of what all accounts would need. Afterwards:
the month's spend never exceeds the budget and equals the ledger; the budget is used up to less
than one query's cost; every account is either COMPLETE by the Hubble path or handed to the
API with pipeline_source=BIGQUERY_WITH_API_FALLBACK and exactly one api-fallback task.
"""
from __future__ import annotations

import datetime as dt
import multiprocessing
import time
from pathlib import Path

import pytest

from common.config import PipelineConfig, Settings
from common.hubble.cost_guard import MIB, Limits
from local.hubble_load import load_duckdb, write_export
from tests.support import CASSANDRA_PORT, random_account

pytestmark = pytest.mark.integration

UTC = dt.timezone.utc
WORKERS = 4
PER_WORKER = 6
# 10 MiB billed at $6.25/TiB = 60 micro-USD: the state, the lineage query and a page read one table each
PER_ACCOUNT = 180
BUDGET_MICRO = PER_ACCOUNT * 13 + 100  # enough for 13 of the 24 accounts, and change


def open_store(backend: str, location: str):
    if backend == "sqlite":
        from common.store.sqlite import SQLiteStore

        return SQLiteStore(location)
    from common.store.cassandra import CassandraStore

    return CassandraStore(Settings.from_env(env={}, store_backend="cassandra", cassandra_port=CASSANDRA_PORT, cassandra_keyspace=location))


def spend_worker(args: tuple) -> list[tuple[str, str, str | None, str | None]]:
    """Runs in its own process: wait for the others, then process its accounts as fast as it can."""
    backend, location, db, accounts, barrier, workers, when, budget = args
    from common import pipeline
    from common.bootstrap import Container
    from common.clock import SettableClock
    from common.handlers.process_account import process
    from common.hubble.duckdb_engine import DuckDBHubble
    from local.testing.fakes import RecordingQueue

    store = open_store(backend, location)
    store.ping()
    c = Container(Settings.from_env(env={}), SettableClock(when), store=store, queue=RecordingQueue(), hubble=DuckDBHubble(db),
                  pipeline_config=PipelineConfig.from_stored({"monthly_budget_usd": budget}))
    c.hubble.tables("public")  # open the engine before the start line
    for account in accounts:
        pipeline.request_lineage(c, "public", account)
    Path(f"{barrier}.{accounts[0]}").touch()
    deadline = time.monotonic() + 120
    while len(list(Path(barrier).parent.glob(Path(barrier).name + ".*"))) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError("workers did not all start")
        time.sleep(0.005)
    results = []
    for account in accounts:
        out = process(c, "public", account)
        api = [t["payload"]["account"] for t in c.queue.tasks if t["queue"] == "api-fallback" and t["payload"]["purpose"] == "lineage"]
        results.append((account, out.status, out.pipeline_source, out.reason, api.count(account)))
    store.close()
    return results


@pytest.fixture(scope="module")
def hubble_db(tmp_path_factory):
    """Every account: one creation by genesis' child, three children (one page each), its accounts_current row."""
    root = tmp_path_factory.mktemp("budget")
    funder = random_account()
    ops, accounts, states, op = [], [], [], 1
    when = dt.datetime(2024, 1, 1, tzinfo=UTC)
    start = dt.datetime(2015, 9, 30, 16, 46, 54, tzinfo=UTC)

    def ledger(at):  # a ledger every 5 s, as the simulator closes them
        return int((at - start).total_seconds()) // 5 + 1

    def create(account, by, at, balance):
        nonlocal op
        ops.append({"op_id": ledger(at) << 32 | op << 12 | 1, "type": 0, "successful": True, "account": account, "funder": by,
                    "starting_balance": balance, "closed_at": at, "ledger_sequence": ledger(at)})
        op += 1

    for i in range(WORKERS * PER_WORKER):
        account = random_account()
        accounts.append(account)
        created = when + dt.timedelta(days=i)
        create(account, funder, created, 5.0)
        states.append({"account_id": account, "balance": 2.0, "flags": 0, "home_domain": "", "master_weight": 1,
                       "threshold_low": 0, "threshold_medium": 0, "threshold_high": 0, "deleted": False,
                       "batch_insert_ts": when, "sequence_number": ledger(created) << 32, "last_modified_ledger": ledger(created),
                       "closed_at": created, "account_creation_date": created.replace(hour=0)})
        for k in range(3):
            create(random_account(), account, created + dt.timedelta(hours=k + 1), 1.0)
    write_export(root / "export", "enriched_history_operations", ops)
    write_export(root / "export", "accounts_current", states)
    load_duckdb(root / "hubble.duckdb", root / "export", "public")
    return root / "hubble.duckdb", accounts


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("cassandra", marks=pytest.mark.cassandra)])
def test_the_budget_runs_out_while_several_workers_spend_at_once(backend, hubble_db, tmp_path, request):
    db, accounts = hubble_db
    if backend == "sqlite":
        from common.store import migrations
        from common.store.sqlite import SQLiteStore

        location = str(tmp_path / "store.sqlite3")
        migrations.migrate(SQLiteStore(location))
    else:
        request.getfixturevalue("cassandra_store")  # the session keyspace, migrated
        location = request.getfixturevalue("cassandra_keyspace")
    # a month no other test spends in, so the shared Cassandra keyspace starts at zero
    when = dt.datetime(2031, 2 if backend == "sqlite" else 3, 1, tzinfo=UTC)
    month = when.strftime("%Y-%m")
    budget = f"{BUDGET_MICRO / 1_000_000:.6f}"
    assert Limits.from_config(PipelineConfig.from_stored({"monthly_budget_usd": budget})).cost_micro_usd(10 * MIB) == 60
    barrier = str(tmp_path / f"barrier-{WORKERS}")
    jobs = [(backend, location, str(db), accounts[w::WORKERS], barrier, WORKERS, when, budget) for w in range(WORKERS)]
    with multiprocessing.get_context("spawn").Pool(WORKERS) as pool:
        results = [r for chunk in pool.map(spend_worker, jobs) for r in chunk]
    assert sorted(r[0] for r in results) == sorted(accounts)

    store = open_store(backend, location)
    spent = store.month_spend_micro_usd(month)
    ledger = store.get_spend_ledger(month, 1000)
    assert spent <= BUDGET_MICRO, "never a cent over the budget"
    assert spent == sum(e["cost_micro_usd"] for e in ledger)
    assert spent > BUDGET_MICRO - 120, "the budget was used up to less than one query's reservation"
    complete = [r for r in results if r[1] == "COMPLETE"]
    fell_back = [r for r in results if r[1] == "HANDED_TO_API"]
    assert len(complete) + len(fell_back) == len(accounts)
    assert 0 < len(complete) <= 13 and len(fell_back) >= len(accounts) - 13
    assert all(r[2] == "BIGQUERY" for r in complete)
    for account, _, source, reason, api_tasks in fell_back:
        assert source == "BIGQUERY_WITH_API_FALLBACK" and reason.startswith("guard_budget_exhausted") and api_tasks == 1
        rec = store.get_lineage("public", account)
        assert rec.status == "PENDING" and rec.pipeline_source == "BIGQUERY_WITH_API_FALLBACK"
    for account, *_ in complete:
        assert store.get_lineage("public", account).status == "COMPLETE"
    store.close()
