"""The real client path: google-cloud-bigquery against the goccy BigQuery emulator.

The simulator's Hubble export is loaded with load jobs (local/hubble_load.load_bigquery) into
the emulator under Hubble's own names (project crypto-stellar, datasets crypto_stellar and
crypto_stellar_dbt, enriched_history_operations partitioned by closed_at daily and clustered, as on
Hubble). Then the
same SQL text the embedded engine runs goes through BigQueryHubble: dry runs, the cost guard,
process_account, and paging through the airdrop account's 100,000 children.
"""
from __future__ import annotations

import datetime as dt
import json
import shutil

import pytest

from common import pipeline
from common.bootstrap import Container
from common.clock import SettableClock
from common.config import PipelineConfig, Settings
from common.handlers.process_account import process
from common.hubble import sql as S
from common.hubble.bigquery import BigQueryHubble
from common.hubble.duckdb_engine import DuckDBHubble
from common.hubble.port import HubbleUnavailable, tables_from_settings
from common.store import migrations
from common.store.sqlite import SQLiteStore
from local.hubble_load import EMULATOR_CHUNK_BYTES, LoadError, load_bigquery
from local.testing.fakes import RecordingQueue
from tests.support import free_port, require

pytestmark = [pytest.mark.integration, pytest.mark.emulator]

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 1, 1, tzinfo=UTC)
PROJECT = "crypto-stellar"  # the emulator serves one project: Hubble's, so the default table names work


def emulator_class():
    try:
        from local.emulators import BigQueryEmulator, is_built
    except ImportError as exc:  # the tooling itself is missing
        require(False, f"local/emulators.py ({exc})")
    require(is_built("bigquery-emulator"), "the BigQuery emulator binary (.cache/bin/bigquery-emulator): run local/emulators.sh build")
    return BigQueryEmulator


@pytest.fixture(scope="module")
def network(airdrop_world):
    return airdrop_world.network


@pytest.fixture(scope="module")
def exported(airdrop_world):
    return airdrop_world.export_dir


@pytest.fixture(scope="module")
def emulator(exported):
    BigQueryEmulator = emulator_class()
    with BigQueryEmulator(project=PROJECT) as bq:
        report = load_bigquery(bq.client(), exported, "public", chunk_bytes=EMULATOR_CHUNK_BYTES, only_needed_columns=True)
        bq.report = report
        yield bq


@pytest.fixture(scope="module")
def hubble(emulator):
    settings = Settings.from_env(env={}, extra=emulator.env())
    engine = BigQueryHubble.from_settings(settings)
    assert engine.endpoint == emulator.url and engine.project == PROJECT
    yield engine
    engine.close()


@pytest.fixture
def container(hubble, tmp_path):
    store = SQLiteStore(tmp_path / "store.sqlite3")
    migrations.migrate(store)
    c = Container(Settings.from_env(env={}), SettableClock(NOW), store=store, queue=RecordingQueue(), hubble=hubble,
                  pipeline_config=PipelineConfig.from_stored({}))
    yield c
    store.close()


def test_the_export_is_loaded_with_load_jobs(emulator, exported):
    rows = sum(1 for _ in open(exported / "public" / "enriched_history_operations.ndjson"))
    assert emulator.report.tables["enriched_history_operations"]["rows"] == rows
    client = emulator.client()
    table = client.get_table("crypto-stellar.crypto_stellar_dbt.enriched_history_operations")
    assert table.time_partitioning.field == "closed_at" and table.time_partitioning.type_ == "DAY"
    assert table.clustering_fields == ["ledger_sequence", "type"], "the clustering columns among the needed ones"
    assert client.get_table("crypto-stellar.crypto_stellar.accounts_current").time_partitioning is None
    counted = list(client.query("SELECT COUNT(*) AS n FROM `crypto-stellar.crypto_stellar_dbt.enriched_history_operations`").result())
    assert counted[0]["n"] == rows


def test_a_whole_export_is_laid_out_as_hubble(emulator, exported, tmp_path):
    """Every column: partitioned by closed_at per DAY and clustered by ledger_sequence, transaction_id,
    op_account_id, type (a slice of the export: the emulator is slow, the layout is the point)."""
    src = exported / "public"
    with open(src / "enriched_history_operations.ndjson") as rows:
        head = [next(rows) for _ in range(300)]
    (tmp_path / "enriched_history_operations.ndjson").write_text("".join(head))
    shutil.copy(src / "enriched_history_operations.schema.json", tmp_path)
    client = emulator.client()
    datasets = ("crypto-stellar.whole_main", "crypto-stellar.whole_dbt")
    report = load_bigquery(client, tmp_path, "public", datasets, ["enriched_history_operations"], chunk_bytes=EMULATOR_CHUNK_BYTES)
    assert report.tables["enriched_history_operations"]["rows"] == 300
    table = client.get_table("crypto-stellar.whole_dbt.enriched_history_operations")
    assert (table.time_partitioning.type_, table.time_partitioning.field) == ("DAY", "closed_at")
    assert table.clustering_fields == ["ledger_sequence", "transaction_id", "op_account_id", "type"]
    assert len(table.schema) == len(json.loads((src / "enriched_history_operations.schema.json").read_text()))


def test_stroop_balances_are_uploaded_as_xlm(emulator, tmp_path):
    """An accounts_current export typed INTEGER (old stellar-etl stroops) lands in XLM; an untyped
    ambiguous one is refused, naming --balance-unit, before anything is written."""
    row = {"account_id": "G" + "C" * 55, "balance": 1234567890123, "flags": 0, "home_domain": "", "master_weight": 1,
           "threshold_low": 0, "threshold_medium": 0, "threshold_high": 0, "deleted": False,
           "batch_insert_ts": "2026-01-01T00:00:00Z", "sequence_number": 5 << 32, "last_modified_ledger": 5,
           "closed_at": "2026-01-01T00:00:00Z", "account_creation_date": "2025-06-01T00:00:00"}
    types = {"last_modified_ledger": "INTEGER", "closed_at": "TIMESTAMP", "account_creation_date": "DATETIME", "balance": "INTEGER", "flags": "INTEGER", "master_weight": "INTEGER", "threshold_low": "INTEGER",
             "threshold_medium": "INTEGER", "threshold_high": "INTEGER", "deleted": "BOOLEAN", "batch_insert_ts": "TIMESTAMP",
             "sequence_number": "INTEGER"}
    (tmp_path / "accounts_current.ndjson").write_text(json.dumps(row) + "\n")
    (tmp_path / "accounts_current.schema.json").write_text(json.dumps([{"name": k, "type": types.get(k, "STRING")} for k in row]))
    client = emulator.client()
    datasets = ("crypto-stellar.stroops_main", "crypto-stellar.stroops_dbt")
    report = load_bigquery(client, tmp_path, "public", datasets, ["accounts_current"], chunk_bytes=EMULATOR_CHUNK_BYTES)
    assert report.tables["accounts_current"]["balance_unit"] == "stroops"
    got = list(client.query("SELECT balance FROM `crypto-stellar.stroops_main.accounts_current`").result())
    assert [r["balance"] for r in got] == [123456.7890123]
    (tmp_path / "accounts_current.schema.json").write_text(
        json.dumps([{"name": k, "type": "FLOAT" if k == "balance" else types.get(k, "STRING")} for k in row]))
    (tmp_path / "accounts_current.ndjson").write_text(json.dumps(dict(row, balance=3 * 10**18)) + "\n")
    with pytest.raises(LoadError, match="--balance-unit stroops"):
        load_bigquery(client, tmp_path, "public", ("crypto-stellar.never_main", "crypto-stellar.never_dbt"), ["accounts_current"])
    assert "never_main" not in [d.dataset_id for d in client.list_datasets()]


def test_load_bigquery_refuses_an_incomplete_export(emulator, tmp_path):
    (tmp_path / "enriched_history_operations.ndjson").write_text("{}\n")
    with pytest.raises(LoadError, match="schema.json"):
        load_bigquery(emulator.client(), tmp_path, "public")
    with pytest.raises(LoadError, match="HUBBLE_DATASET"):
        load_bigquery(emulator.client(), tmp_path, "public", datasets=("bad name", "crypto-stellar.x"))


def test_a_dry_run_reports_bytes_and_bills_nothing(hubble, container, network):
    tables = hubble.tables("public")
    account = network.pick("ordinary", limit=1)["accounts"][0]["account"]
    dry = hubble.dry_run(S.lineage_query(tables, "public", account, NOW))
    assert dry.bytes_processed > 0
    assert container.store.get_spend_ledger("2026-01", 10) == []


def test_process_account_on_the_emulator_matches_the_truth_and_the_embedded_engine(container, network, airdrop_world):
    embedded = DuckDBHubble(airdrop_world.duckdb)
    # each emulator query takes seconds (it evaluates every row through SQLite functions), so a few
    # accounts of the kinds that matter; the 500-account cross-check runs on the embedded engine
    picks = [network.pick(kind, limit=1)["accounts"][0]["account"] for kind in ("merged", "failed_target", "deep", "exchange_child")]
    queries = 0
    for account in picks:
        pipeline.request_lineage(container, "public", account)
        out = process(container, "public", account)
        queries += out.queries
        truth = network.truth(account, children_limit=1000)
        # the state row, the lives query (one more window for a deleted account), one page of children
        most = 3 + ("merged_gone" in truth["kinds"]) + 2 * ("bump_sequence" in truth["kinds"])
        assert out.status == "COMPLETE" and 3 <= out.queries <= most and out.dry_runs == out.queries, out
        events = container.store.get_creation_events("public", account)
        assert [(e.creator, e.operation_id, format(e.starting_balance, "f")) for e in events] == [
            (e["creator"], e["operation_id"], e["starting_balance"]) for e in truth["creation_events"]]
        rec = container.store.get_lineage("public", account)
        assert rec.stellar_creator_account == truth["creator"] and rec.num_child_accounts == truth["children"]["total"]
        kids = {e.child for e in container.store.iter_children("public", account)}
        assert kids == {i["account"] for i in truth["children"]["items"]}
        # one SQL text, two engines, the same answer
        q = S.lineage_query(embedded.tables("public"), "public", account, NOW)
        assert S.parse_lineage("public", account, embedded.run(q).rows).events == events
    ledger = container.store.get_spend_ledger("2026-01", 100)
    # the emulator bills what it reports: the bytes of the result (see common/hubble/bigquery.py)
    assert len(ledger) == queries and all(e["query_id"] and e["bytes_billed"] == e["bytes_processed"] for e in ledger)
    assert container.store.month_spend_micro_usd("2026-01") == sum(e["cost_micro_usd"] for e in ledger)
    embedded.close()


def test_paging_through_100000_children_returns_each_exactly_once(hubble, container, network):
    """The pages process_account would fetch, through the real client (the guard's dry run of
    each page is left out here: the emulator executes a dry run in full, doubling the time; the
    guarded flow is exercised above and, with every page, on the embedded engine)."""
    airdrop = network.pick("airdrop", limit=1)["accounts"][0]["account"]
    truth = network.truth(airdrop, children_limit=100_000)["children"]
    assert truth["total"] == 100_000
    tables = hubble.tables("public")
    first = dt.datetime.fromisoformat(network.truth(airdrop)["created_at"].replace("Z", "+00:00"))
    cursor, seen, pages = S.ChildCursor(first, -1), [], 0
    while True:
        rows = hubble.run(S.children_query(tables, "public", airdrop, cursor, NOW, 10_000)).rows
        page = S.parse_children("public", airdrop, rows, 10_000)
        seen += [edge.child for edge in page.children]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == 10
    count = S.parse_count(hubble.run(S.children_count_query(tables, "public", airdrop, first, NOW)).rows)
    assert count == 100_000
    assert len(seen) == len(set(seen)) == 100_000
    assert seen == [item["account"] for item in truth["items"]], "in creation order, nothing skipped or repeated"


def test_an_unreachable_emulator_makes_the_account_fall_back(network, tmp_path):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    engine = BigQueryHubble(PROJECT, tables_from_settings(Settings.from_env(env={})), endpoint=url, deadline_s=2.0)
    account = network.pick("ordinary", limit=1)["accounts"][0]["account"]
    with pytest.raises(HubbleUnavailable):
        engine.dry_run(S.lineage_query(engine.tables("public"), "public", account, NOW))
    store = SQLiteStore(tmp_path / "s.sqlite3")
    migrations.migrate(store)
    c = Container(Settings.from_env(env={}), SettableClock(NOW), store=store, queue=RecordingQueue(), hubble=engine,
                  pipeline_config=PipelineConfig.from_stored({}))
    pipeline.request_lineage(c, "public", account)
    out = process(c, "public", account)
    assert out.status == "HANDED_TO_API" and out.pipeline_source == "BIGQUERY_WITH_API_FALLBACK"
    assert out.reason.startswith("hubble_unavailable")
    rec = store.get_lineage("public", account)
    assert rec.status == "PENDING" and rec.pipeline_source == "BIGQUERY_WITH_API_FALLBACK"
    assert [t["payload"]["account"] for t in c.queue.tasks if t["queue"] == "api-fallback"] == [account]
    assert store.month_spend_micro_usd("2026-01") == 0
    store.close()
