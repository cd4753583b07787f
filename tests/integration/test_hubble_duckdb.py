"""The embedded Hubble: loading exports (simulator NDJSON, Parquet, `bq extract` NDJSON, raw
stellar-etl), the dry run's scanned bytes against an independent count, and engine errors."""
from __future__ import annotations

import datetime as dt
import json
import shutil

import duckdb
import pytest

from common.domain import GENESIS_ACCOUNT
from common.hubble import sql as S
from common.hubble.cost_guard import billable_bytes
from common.hubble.duckdb_engine import DuckDBHubble
from common.hubble.port import HubbleError, HubbleQuery, HubbleTables, HubbleUnavailable, QueryParam
from local import hubble_load
from local.hubble_load import LoadError, load_duckdb
from local.simulator.hubble import export
from local.simulator.network import Network, NetworkConfig

pytestmark = pytest.mark.integration

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 1, 1, tzinfo=UTC)
EHO, ACC = "enriched_history_operations", "accounts_current"
TABLES = HubbleTables.from_datasets("crypto-stellar.crypto_stellar", "crypto-stellar.crypto_stellar_dbt")


@pytest.fixture(scope="module")
def network():
    return Network(NetworkConfig(accounts=400, airdrop_children=1_500, seed=9))


@pytest.fixture(scope="module")
def exported(network, tmp_path_factory):
    root = tmp_path_factory.mktemp("sim-export")
    export({"public": network, "testnet": Network(NetworkConfig(network="testnet", accounts=200, airdrop_children=0, seed=2))}, root)
    return root


@pytest.fixture(scope="module")
def engine(exported, tmp_path_factory):
    db = tmp_path_factory.mktemp("db") / "hubble.duckdb"
    report = load_duckdb(db, exported, "public")
    load_duckdb(db, exported, "testnet")
    hubble = DuckDBHubble(db)
    hubble.report = report
    yield hubble
    hubble.close()


def ndjson(path):
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def answers(hubble, network, accounts):
    """(creation events, children) per account, straight from the engine."""
    out = {}
    for account in accounts:
        lineage = S.parse_lineage("public", account, hubble.run(S.lineage_query(TABLES, "public", account, NOW)).rows)
        first = lineage.first.created_at if lineage.first else S.NETWORK_START["public"]
        page = S.parse_children("public", account, hubble.run(S.children_query(TABLES, "public", account, S.ChildCursor(first, -1), NOW, 10_000)).rows, 10_000)
        out[account] = ([(e.creator, e.created_at, e.operation_id, e.starting_balance) for e in lineage.events],
                        [(c.child, c.operation_id) for c in page.children], lineage.state)
    return out


def sample(network):
    picks = []
    for kind in ("merged", "chain", "airdrop", "failed_target", "ordinary", "exchange", "genesis"):
        picks += [a["account"] for a in network.pick(kind, limit=4)["accounts"]]
    return picks


# ---------------------------------------------------------------------------------- loading
def test_the_simulator_export_loads_with_its_row_counts(engine, exported):
    for table in (EHO, ACC):
        assert engine.report.tables[table]["rows"] == len(ndjson(exported / "public" / f"{table}.ndjson"))
    assert engine.report.tables[EHO]["partitions"] > 50, "one partition per month of history"
    assert engine.report.tables[ACC]["partitions"] == 1, "accounts_current is not partitioned"
    assert engine.tables("public") == TABLES and engine.tables("testnet") is not None


def test_the_engine_answers_the_ground_truth(engine, network):
    for account, (events, kids, state) in answers(engine, "public", sample(network)).items():
        truth = network.truth(account, children_limit=100_000)
        assert [e[0] for e in events] == [e["creator"] for e in truth["creation_events"]]
        assert [e[2] for e in events] == [e["operation_id"] for e in truth["creation_events"]]
        assert [str(e[3]) for e in events] == [e["starting_balance"] for e in truth["creation_events"]]
        assert [k[0] for k in kids] == [i["account"] for i in truth["children"]["items"]]
        assert (state.xlm_balance and format(state.xlm_balance, "f")) == truth["xlm_balance"]


def test_networks_are_kept_apart(engine):
    testnet = Network(NetworkConfig(network="testnet", accounts=200, airdrop_children=0, seed=2))
    tn = engine.tables("testnet")
    account = testnet.pick("ordinary", limit=1)["accounts"][0]["account"]
    q = S.lineage_query(tn, "testnet", account, NOW)
    assert S.parse_lineage("testnet", account, engine.run(q).rows).first.creator == testnet.truth(account)["creator"]
    assert S.parse_lineage("public", account, engine.run(S.lineage_query(TABLES, "public", account, NOW)).rows).events == []


def test_loading_twice_replaces(engine, exported, tmp_path):
    db = tmp_path / "h.duckdb"
    first = load_duckdb(db, exported, "public")
    second = load_duckdb(db, exported, "public")
    assert first.tables == second.tables
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT COUNT(*) FROM hubble_public.enriched_history_operations").fetchone()[0] == first.tables[EHO]["rows"]


def copy_as(exported, target, transform_ops=None, transform_acc=None, schema=True):
    target.mkdir(parents=True, exist_ok=True)
    for table, transform in ((EHO, transform_ops), (ACC, transform_acc)):
        rows = ndjson(exported / "public" / f"{table}.ndjson")
        with open(target / f"{table}.ndjson", "w") as out:
            for row in rows:
                out.write(json.dumps(transform(row) if transform else row) + "\n")
        if schema:
            shutil.copy(exported / "public" / f"{table}.schema.json", target / f"{table}.schema.json")


def bq_extract_style(row):
    """What `bq extract --destination_format NEWLINE_DELIMITED_JSON` writes: INT64 as strings,
    TIMESTAMP as 'YYYY-MM-DD HH:MM:SS UTC'."""
    out = {}
    for key, value in row.items():
        if isinstance(value, bool) or value is None:
            out[key] = value
        elif isinstance(value, int):
            out[key] = str(value)
        elif isinstance(value, str) and value.endswith("Z") and "T" in value and key in ("closed_at", "batch_insert_ts", "sequence_time"):
            out[key] = value.replace("T", " ").replace("Z", " UTC")
        else:
            out[key] = value
    return out


def test_bq_extract_ndjson_loads_to_the_same_answers(engine, exported, network, tmp_path):
    copy_as(exported, tmp_path / "bq", bq_extract_style, bq_extract_style)
    load_duckdb(tmp_path / "bq.duckdb", tmp_path / "bq", "public")
    other = DuckDBHubble(tmp_path / "bq.duckdb")
    accounts = sample(network)
    assert answers(other, "public", accounts) == answers(engine, "public", accounts)
    query = S.children_query(TABLES, "public", accounts[0], S.ChildCursor(S.NETWORK_START["public"], -1), NOW, 100)
    assert other.dry_run(query) == engine.dry_run(query), "the same data is the same number of bytes"
    other.close()


def test_ndjson_without_a_schema_file_is_detected(engine, exported, network, tmp_path):
    copy_as(exported, tmp_path / "plain", schema=False)
    load_duckdb(tmp_path / "plain.duckdb", tmp_path / "plain", "public")
    other = DuckDBHubble(tmp_path / "plain.duckdb")
    accounts = sample(network)[:8]
    assert answers(other, "public", accounts) == answers(engine, "public", accounts)
    other.close()


def test_parquet_shards_load_to_the_same_answers(engine, exported, network, tmp_path):
    target = tmp_path / "parquet"
    (target / EHO).mkdir(parents=True)
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        src = exported / "public" / f"{EHO}.ndjson"
        from local.simulator.hubble import duckdb_columns

        cols = duckdb_columns(EHO)
        cols["closed_at"] = "TIMESTAMPTZ"  # as BigQuery writes TIMESTAMP to Parquet: UTC-adjusted
        rel = f"read_json('{src}', format='newline_delimited', columns={cols})"
        con.execute(f"COPY (SELECT * FROM {rel} WHERE op_id % 2 = 0) TO '{target / EHO / 'part-0.parquet'}' (FORMAT PARQUET)")
        con.execute(f"COPY (SELECT * FROM {rel} WHERE op_id % 2 = 1) TO '{target / EHO / 'part-1.parquet'}' (FORMAT PARQUET)")
        acc = exported / "public" / f"{ACC}.ndjson"
        con.execute(f"COPY (SELECT * FROM read_json('{acc}', format='newline_delimited', columns={duckdb_columns(ACC)})) "
                    f"TO '{target / (ACC + '-000000000000.parquet')}' (FORMAT PARQUET)")
    report = load_duckdb(tmp_path / "pq.duckdb", target, "public")
    assert report.tables[EHO]["format"] == "parquet" and report.tables[EHO]["files"] == 2
    other = DuckDBHubble(tmp_path / "pq.duckdb")
    accounts = sample(network)
    assert answers(other, "public", accounts) == answers(engine, "public", accounts)
    other.close()


def test_raw_stellar_etl_exports_are_derived(engine, exported, network, tmp_path):
    """history_operations (details struct) + history_transactions (successful) + accounts (every
    ledger-entry version) give the same answers once derived as stellar-dbt derives them."""
    target = tmp_path / "etl"
    target.mkdir()
    ops = ndjson(exported / "public" / f"{EHO}.ndjson")
    with open(target / "history_operations.ndjson", "w") as o, open(target / "history_transactions.ndjson", "w") as t:
        seen = set()
        for row in ops:
            details = {k: row[k] for k in ("account", "funder", "starting_balance", "from", "to", "amount", "into") if row[k] is not None}
            o.write(json.dumps({"id": row["op_id"], "source_account": row["op_source_account"], "type": row["type"],
                                "type_string": row["type_string"], "details": details, "transaction_id": row["transaction_id"],
                                "closed_at": row["closed_at"].replace("T", " ").replace("Z", " UTC")}) + "\n")
            if row["transaction_id"] not in seen:
                seen.add(row["transaction_id"])
                t.write(json.dumps({"id": row["transaction_id"], "transaction_hash": row["transaction_hash"],
                                    "successful": row["successful"]}) + "\n")
    with open(target / "accounts.ndjson", "w") as a:
        for row in ndjson(exported / "public" / f"{ACC}.ndjson"):
            older = dict(row, balance=row["balance"] + 1000, last_modified_ledger=row["last_modified_ledger"] - 5, deleted=False)
            for version in (older, row):  # the latest ledger entry must win
                a.write(json.dumps({k: version[k] for k in ("account_id", "balance", "flags", "home_domain", "master_weight",
                                    "threshold_low", "threshold_medium", "threshold_high", "deleted", "last_modified_ledger",
                                    "ledger_entry_change", "batch_insert_ts")}) + "\n")
    report = load_duckdb(tmp_path / "etl.duckdb", target, "public")
    assert report.tables[EHO]["format"] == report.tables[ACC]["format"] == "stellar-etl"
    other = DuckDBHubble(tmp_path / "etl.duckdb")
    accounts = sample(network)
    assert answers(other, "public", accounts) == answers(engine, "public", accounts)
    other.close()


@pytest.mark.parametrize("problem", ["missing_dir", "not_dir", "no_files", "missing_column", "bad_json", "mixed", "bad_network", "bad_table"])
def test_a_bad_export_is_refused_and_writes_nothing(exported, tmp_path, problem):
    db = tmp_path / "target.duckdb"
    good = tmp_path / "good"
    copy_as(exported, good)
    load_duckdb(db, good, "public")
    before = db.read_bytes()
    src = tmp_path / "bad"
    network, tables = "public", None
    if problem == "missing_dir":
        src = tmp_path / "nope"
    elif problem == "not_dir":
        src.write_text("x")
    elif problem == "no_files":
        src.mkdir()
    elif problem == "missing_column":
        copy_as(exported, src, transform_ops=lambda r: {k: v for k, v in r.items() if k != "successful"}, schema=False)
    elif problem == "bad_json":
        copy_as(exported, src)
        with open(src / f"{ACC}.ndjson", "a") as out:
            out.write("{this is not json\n")
    elif problem == "mixed":
        copy_as(exported, src)
        (src / f"{EHO}-1.parquet").write_bytes(b"PAR1")
    elif problem == "bad_network":
        copy_as(exported, src)
        network = "mars"
    elif problem == "bad_table":
        copy_as(exported, src)
        tables = ["history_effects"]
    with pytest.raises(LoadError):
        load_duckdb(db, src, network, tables)
    assert db.read_bytes() == before, "the previous load is intact"
    fresh = tmp_path / "fresh.duckdb"
    with pytest.raises(LoadError):
        load_duckdb(fresh, src, network, tables)
    assert not fresh.exists(), "a database this call created is removed"


def test_the_cli(exported, tmp_path, capsys):
    assert hubble_load.main(["--db", str(tmp_path / "cli.duckdb"), "--network", "testnet", str(exported)]) == 0
    assert "enriched_history_operations" in capsys.readouterr().out
    assert hubble_load.main(["--db", str(tmp_path / "cli2.duckdb"), str(tmp_path / "nothing")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert hubble_load.main(["--bigquery", str(exported)]) == 1
    assert "--project" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- the dry run
SIZES = {"STRING": lambda v: 2 + len(v.encode()), "INTEGER": lambda v: 8, "FLOAT": lambda v: 8, "BOOLEAN": lambda v: 1,
         "TIMESTAMP": lambda v: 8, "DATETIME": lambda v: 8}


def expected_bytes(exported, table, columns, lo=None, hi=None):
    """BigQuery's logical bytes of `columns` in the month partitions [lo, hi] overlaps, counted in Python."""
    types = {f["name"]: f["type"] for f in json.loads((exported / "public" / f"{table}.schema.json").read_text())}
    total = 0
    for row in ndjson(exported / "public" / f"{table}.ndjson"):
        if table == EHO and (lo or hi):
            when = dt.datetime.fromisoformat(row["closed_at"].replace("Z", "+00:00"))
            start = when.replace(day=1, hour=0, minute=0, second=0)
            end = (start + dt.timedelta(days=32)).replace(day=1)
            if (lo and end <= lo) or (hi and start > hi):
                continue
        total += sum(SIZES[types[c]](row[c]) for c in columns if row[c] is not None)
    return total


EHO_LINEAGE_COLS = ("account", "op_id", "closed_at", "funder", "starting_balance", "type", "successful")
ACC_COLS = ("account_id", "balance", "flags", "home_domain", "master_weight", "threshold_low", "threshold_medium",
            "threshold_high", "deleted", "batch_insert_ts")


def test_the_dry_run_counts_the_bytes_bigquery_would_scan(engine, exported, network):
    account = network.pick("ordinary", limit=1)["accounts"][0]["account"]
    lineage = S.lineage_query(TABLES, "public", account, NOW)
    assert engine.dry_run(lineage).bytes_processed == expected_bytes(exported, EHO, EHO_LINEAGE_COLS) + expected_bytes(exported, ACC, ACC_COLS)
    lo = dt.datetime(2024, 3, 10, tzinfo=UTC)
    page = S.children_query(TABLES, "public", account, S.ChildCursor(lo, -1), NOW, 10_000)
    cols = ("account", "op_id", "closed_at", "starting_balance", "type", "successful", "funder", "ledger_sequence")
    assert engine.dry_run(page).bytes_processed == expected_bytes(exported, EHO, cols, lo, NOW + S.UPPER_MARGIN)
    run = engine.run(page)
    assert run.bytes_processed == engine.dry_run(page).bytes_processed
    assert run.bytes_billed == billable_bytes(run.bytes_processed, 1)


def test_partition_filters_prune_and_their_absence_scans_everything(engine, exported, network):
    account = network.pick("airdrop", limit=1)["accounts"][0]["account"]
    whole = S.children_query(TABLES, "public", account, S.ChildCursor(S.NETWORK_START["public"], -1), NOW, 10_000)
    later = S.children_query(TABLES, "public", account, S.ChildCursor(dt.datetime(2025, 6, 1, tzinfo=UTC), -1), NOW, 10_000)
    assert 0 < engine.dry_run(later).bytes_processed < engine.dry_run(whole).bytes_processed
    naive = HubbleQuery(
        "SELECT account, op_id FROM `crypto-stellar.crypto_stellar_dbt.enriched_history_operations` "
        "WHERE type = 0 AND successful AND funder = @account ORDER BY op_id LIMIT 10 OFFSET 0",
        (QueryParam("account", "STRING", account),), "naive", (TABLES.operations,))
    assert engine.dry_run(naive).bytes_processed == expected_bytes(exported, EHO, ("account", "op_id", "type", "successful", "funder"))
    star = HubbleQuery("SELECT * FROM `crypto-stellar.crypto_stellar.accounts_current`", (), "star", (TABLES.accounts,))
    all_cols = [f["name"] for f in json.loads((exported / "public" / f"{ACC}.schema.json").read_text())]
    assert engine.dry_run(star).bytes_processed == expected_bytes(exported, ACC, all_cols)
    between = HubbleQuery(
        "SELECT op_id FROM `crypto-stellar.crypto_stellar_dbt.enriched_history_operations` WHERE closed_at BETWEEN @a AND @b",
        (QueryParam("a", "TIMESTAMP", dt.datetime(2020, 1, 5, tzinfo=UTC)), QueryParam("b", "TIMESTAMP", dt.datetime(2020, 2, 5, tzinfo=UTC))),
        "between", (TABLES.operations,))
    assert engine.dry_run(between).bytes_processed == expected_bytes(
        exported, EHO, ("op_id", "closed_at"), dt.datetime(2020, 1, 5, tzinfo=UTC), dt.datetime(2020, 2, 5, tzinfo=UTC))


def test_engine_errors(engine, tmp_path):
    unknown = HubbleQuery("SELECT 1 FROM `other-proj.x.y`", (), "x", ("other-proj.x.y",))
    with pytest.raises(HubbleError, match="not a Hubble table"):
        engine.dry_run(unknown)
    with pytest.raises(HubbleError, match="valid BigQuery SQL"):
        engine.dry_run(HubbleQuery("SELEC FROM WHERE (", (), "x", ()))
    page = S.children_query(TABLES, "public", GENESIS_ACCOUNT,
                            S.ChildCursor(S.NETWORK_START["public"], -1), NOW, 10)
    with pytest.raises(HubbleError, match="maximum_bytes_billed"):
        engine.run(page, max_bytes_billed=1)
    with pytest.raises(HubbleUnavailable, match="no embedded Hubble"):
        DuckDBHubble(tmp_path / "missing.duckdb").tables("public")
    plain = tmp_path / "plain.duckdb"
    duckdb.connect(str(plain)).close()
    with pytest.raises(HubbleUnavailable, match="not an embedded Hubble"):
        DuckDBHubble(plain).dry_run(page)


def test_the_same_sql_text_runs_transpiled(engine):
    text = S.CHILDREN_SQL.format(operations=TABLES.operations)
    local = engine.to_duckdb(text)
    assert "hubble_public.enriched_history_operations" in local and "$page_limit" in local and "@" not in local
