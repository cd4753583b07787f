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
    days = {row["closed_at"][:10] for row in ndjson(exported / "public" / f"{EHO}.ndjson")}
    assert engine.report.tables[EHO]["partitions"] == len(days) > 500, "one partition per day with operations"
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
                                    "ledger_entry_change", "batch_insert_ts", "sequence_number")}) + "\n")
    report = load_duckdb(tmp_path / "etl.duckdb", target, "public")
    assert report.tables[EHO]["format"] == report.tables[ACC]["format"] == "stellar-etl"
    other = DuckDBHubble(tmp_path / "etl.duckdb")
    accounts = sample(network)
    assert answers(other, "public", accounts) == answers(engine, "public", accounts)
    # the columns the creation-ledger queries read are derived too: ledger_sequence from the TOID
    with duckdb.connect(str(tmp_path / "etl.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM hubble_public.enriched_history_operations "
                           "WHERE ledger_sequence IS DISTINCT FROM op_id >> 32").fetchone()[0] == 0
        sequences = dict(con.execute("SELECT account_id, sequence_number FROM hubble_public.accounts_current").fetchall())
    assert all(sequences[r["account_id"]] == r["sequence_number"] for r in ndjson(exported / "public" / f"{ACC}.ndjson"))
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


def expected_bytes(exported, table, columns, lo=None, hi=None, hi_exclusive=False, month=False):
    """BigQuery's logical bytes of `columns` in the day (or month) partitions that [lo, hi] (or [lo, hi))
    overlaps, counted in Python."""
    types = {f["name"]: f["type"] for f in json.loads((exported / "public" / f"{table}.schema.json").read_text())}
    total = 0
    for row in ndjson(exported / "public" / f"{table}.ndjson"):
        if table == EHO and (lo or hi):
            when = dt.datetime.fromisoformat(row["closed_at"].replace("Z", "+00:00"))
            start = when.replace(hour=0, minute=0, second=0)
            end = start + dt.timedelta(days=1)
            if month:
                start = start.replace(day=1)
                end = (start + dt.timedelta(days=32)).replace(day=1)
            if (lo and end <= lo) or (hi and (start >= hi if hi_exclusive else start > hi)):
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


def test_day_partitions_prune_to_the_days_a_filter_names(engine, exported):
    """A window of a few days around a ledger reads those days only; `<` a day boundary leaves that day out."""
    lo, hi = dt.datetime(2025, 3, 10, tzinfo=UTC), dt.datetime(2025, 3, 13, tzinfo=UTC)  # the exchanges pay every day then
    strict = HubbleQuery(
        "SELECT op_id FROM `crypto-stellar.crypto_stellar_dbt.enriched_history_operations` WHERE closed_at >= @lo AND closed_at < @hi",
        (QueryParam("lo", "TIMESTAMP", lo), QueryParam("hi", "TIMESTAMP", hi)), "window", (TABLES.operations,))
    inclusive = HubbleQuery(strict.sql.replace("closed_at < @hi", "closed_at <= @hi"), strict.params, "window", strict.tables)
    three_days = expected_bytes(exported, EHO, ("op_id", "closed_at"), lo, hi, hi_exclusive=True)
    assert engine.dry_run(strict).bytes_processed == three_days > 0
    assert engine.dry_run(inclusive).bytes_processed == expected_bytes(exported, EHO, ("op_id", "closed_at"), lo, hi) > three_days
    whole = expected_bytes(exported, EHO, ("op_id", "closed_at"))
    assert three_days * 100 < whole, "three days of ten years (busier than most)"
    # an upper bound given twice, once strict: the strict one decides
    both = HubbleQuery(strict.sql + " AND closed_at <= @hi", strict.params, "window", strict.tables)
    assert engine.dry_run(both).bytes_processed == three_days


def test_a_file_loaded_with_month_partitions_still_estimates_by_month(exported, tmp_path):
    """Files written before the day partitions record MONTH in hubble_meta: they keep working,
    estimated by their month partitions (a reload makes them day partitioned)."""
    db = tmp_path / "month.duckdb"
    load_duckdb(db, exported, "public")
    with duckdb.connect(str(db)) as con:
        con.execute("UPDATE hubble_meta.tables SET granularity = 'MONTH' WHERE table_name = 'enriched_history_operations'")
        con.execute("CREATE TABLE monthly AS SELECT network, table_name, substr(part, 1, 7) AS part, column_name, sum(bytes) AS bytes "
                    "FROM hubble_meta.partition_bytes WHERE table_name = 'enriched_history_operations' GROUP BY ALL")
        con.execute("DELETE FROM hubble_meta.partition_bytes WHERE table_name = 'enriched_history_operations'")
        con.execute("INSERT INTO hubble_meta.partition_bytes SELECT * FROM monthly")
        con.execute("DROP TABLE monthly")
    old = DuckDBHubble(db)
    lo = dt.datetime(2024, 3, 10, tzinfo=UTC)
    page = S.children_query(TABLES, "public", GENESIS_ACCOUNT, S.ChildCursor(lo, -1), NOW, 10)
    cols = ("account", "op_id", "closed_at", "starting_balance", "type", "successful", "funder", "ledger_sequence")
    assert old.dry_run(page).bytes_processed == expected_bytes(exported, EHO, cols, lo, NOW + S.UPPER_MARGIN, month=True)
    old.close()
    with duckdb.connect(str(db)) as con:
        con.execute("UPDATE hubble_meta.tables SET granularity = 'HOUR' WHERE table_name = 'enriched_history_operations'")
    with pytest.raises(HubbleUnavailable, match="reload the embedded Hubble"):
        DuckDBHubble(db).dry_run(page)


# ---------------------------------------------------------------------------------- balance units
def accounts_export(target, balances, schema_type=None, parquet=False):
    """A one-table accounts_current export with the given balances (numbers as JSON writes them)."""
    target.mkdir(parents=True, exist_ok=True)
    rows = [{"account_id": f"G{str(i).rjust(55, 'A')}", "balance": b, "flags": 0, "home_domain": "", "master_weight": 1,
             "threshold_low": 0, "threshold_medium": 0, "threshold_high": 0, "deleted": False,
             "batch_insert_ts": "2026-01-01T00:00:00Z", "sequence_number": 4294967296 * (100 + i),
             "buying_liabilities": 0, "selling_liabilities": 0, "last_modified_ledger": 100 + i,
             "closed_at": "2026-01-01T00:00:00Z", "account_creation_date": "2025-06-01T00:00:00"} for i, b in enumerate(balances)]
    path = target / f"{ACC}.ndjson"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    if schema_type:
        types = {"balance": schema_type, "buying_liabilities": schema_type, "selling_liabilities": schema_type,
                 "flags": "INTEGER", "master_weight": "INTEGER", "threshold_low": "INTEGER", "threshold_medium": "INTEGER",
                 "threshold_high": "INTEGER", "deleted": "BOOLEAN", "batch_insert_ts": "TIMESTAMP", "sequence_number": "INTEGER",
                 "last_modified_ledger": "INTEGER", "closed_at": "TIMESTAMP", "account_creation_date": "DATETIME"}
        (target / f"{ACC}.schema.json").write_text(json.dumps([{"name": k, "type": types.get(k, "STRING")} for k in rows[0]]))
    if parquet:
        with duckdb.connect() as con:
            kind = "BIGINT" if schema_type == "INTEGER" else "DOUBLE"
            con.execute(f"COPY (SELECT * REPLACE (CAST(balance AS {kind}) AS balance) FROM read_json('{path}', format='newline_delimited')) "
                        f"TO '{target / (ACC + '.parquet')}' (FORMAT PARQUET)")
        path.unlink()
        (target / f"{ACC}.schema.json").unlink(missing_ok=True)
    return [r["account_id"] for r in rows]


def loaded_balances(db):
    with duckdb.connect(str(db), read_only=True) as con:
        return [row[0] for row in con.execute("SELECT balance FROM hubble_public.accounts_current ORDER BY account_id").fetchall()]


@pytest.mark.parametrize("case, balances, schema_type, parquet, option, expected_unit", [
    ("xlm ndjson: fractions", [12.5, 100.0000001, 3], None, False, None, "xlm"),
    ("xlm ndjson: typed FLOAT", [12, 100, 3], "FLOAT", False, None, "xlm"),
    ("stroops ndjson: typed INTEGER", [125000000, 1000000001, 30000000], "INTEGER", False, None, "stroops"),
    ("stroops ndjson: more than every lumen", [125000000, 2_000_000_000_000_000, 30000000], None, False, None, "stroops"),
    ("parquet typed INT64", [125000000, 1000000001, 30000000], "INTEGER", True, None, "stroops"),
    ("parquet typed DOUBLE", [12, 100, 3], "FLOAT", True, None, "xlm"),
    ("ambiguous, told stroops", [125000000, 1000000001, 30000000], None, False, "stroops", "stroops"),
    ("ambiguous, told xlm", [12, 100, 3], None, False, "xlm", "xlm"),
])
def test_the_balance_unit_is_detected_or_told(tmp_path, case, balances, schema_type, parquet, option, expected_unit):
    accounts_export(tmp_path / "src", balances, schema_type, parquet)
    (tmp_path / "src" / f"{EHO}.ndjson").write_text("")
    report = load_duckdb(tmp_path / "h.duckdb", tmp_path / "src", "public", [ACC], balance_unit=option)
    assert report.tables[ACC]["balance_unit"] == expected_unit, case
    xlm = [b / 10_000_000 for b in balances] if expected_unit == "stroops" else [float(b) for b in balances]
    assert loaded_balances(tmp_path / "h.duckdb") == pytest.approx(xlm, rel=1e-15), case


@pytest.mark.parametrize("balances, schema_type, option, message", [
    ([125000000, 1000000001, 30000000], None, None, "--balance-unit xlm or --balance-unit stroops"),
    ([125000000, 1000000001, 30000000], "INTEGER", "xlm", "contradicts the export: the balance column is typed INTEGER"),
    ([12.5, 3], None, "stroops", "contradicts the export: some balances are not whole numbers"),
    ([2_000_000_000_000_000, 3], None, "xlm", "contradicts the export"),
    ([2_000_000_000_000_000, 3], "FLOAT", None, "more than every lumen there is; if the export holds stroops, pass --balance-unit stroops"),
])
def test_an_ambiguous_or_contradicted_balance_unit_is_refused_and_writes_nothing(tmp_path, balances, schema_type, option, message):
    accounts_export(tmp_path / "src", balances, schema_type)
    db = tmp_path / "h.duckdb"
    with pytest.raises(LoadError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_duckdb(db, tmp_path / "src", "public", [ACC], balance_unit=option)
    assert not db.exists()


def test_raw_stellar_etl_accounts_in_stroops(tmp_path):
    """An old stellar-etl `accounts` export (int64 stroops, typed in its schema) loads as XLM."""
    src = tmp_path / "etl"
    src.mkdir()
    rows = [{"account_id": f"G{'B' * 55}", "balance": 1234567890123, "flags": 0, "home_domain": "", "master_weight": 1,
             "threshold_low": 0, "threshold_medium": 0, "threshold_high": 0, "deleted": False, "last_modified_ledger": 7,
             "sequence_number": 7 << 32}]
    (src / "accounts.ndjson").write_text(json.dumps(rows[0]) + "\n")
    (src / "accounts.schema.json").write_text(json.dumps([{"name": k, "type": "INTEGER" if isinstance(v, int) and not isinstance(v, bool)
                                                           else "BOOLEAN" if isinstance(v, bool) else "STRING"} for k, v in rows[0].items()]))
    report = load_duckdb(tmp_path / "h.duckdb", src, "public", [ACC])
    assert report.tables[ACC]["balance_unit"] == "stroops"
    assert loaded_balances(tmp_path / "h.duckdb") == [123456.7890123]
    (src / "accounts.schema.json").unlink()
    (src / "accounts.ndjson").write_text(json.dumps(dict(rows[0], balance=1234567890)) + "\n")  # 123.456789 XLM: could be either
    with pytest.raises(LoadError, match="--balance-unit"):
        load_duckdb(tmp_path / "h2.duckdb", src, "public", [ACC])
    assert load_duckdb(tmp_path / "h2.duckdb", src, "public", [ACC], balance_unit="stroops").tables[ACC]["balance_unit"] == "stroops"
    assert loaded_balances(tmp_path / "h2.duckdb") == [123.456789]
