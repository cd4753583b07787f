"""Load Hubble-shaped exports into the embedded Hubble (DuckDB) or into BigQuery / its emulator.

    python -m local.hubble_load --db .local-data/hubble.duckdb [--network public] SOURCE
    python -m local.hubble_load --bigquery --project crypto-stellar --endpoint http://127.0.0.1:9050 SOURCE

SOURCE is a directory holding, for one network (or `SOURCE/<network>/` when it holds several,
as the simulator's export does):
- `enriched_history_operations` and `accounts_current` exports: `<table>.ndjson|.jsonl|.json[.gz]`,
  `<table>.parquet`, shards `<table>-*.json|.parquet` (what `bq extract` writes for a wildcard
  URI) or a folder `<table>/` of shards. `bq extract --destination_format NEWLINE_DELIMITED_JSON`
  (INT64 as strings, timestamps as `2015-09-30 16:46:54 UTC`) and the simulator's NDJSON
  (`2015-09-30T16:46:54Z`) both load. A BigQuery schema file `<table>.schema.json` beside it
  (`bq show --schema --format=prettyjson`, or the simulator's) fixes the column types; without one
  they are detected.
- or raw stellar-etl exports instead: `history_operations` + `history_transactions` (the
  enriched operations are derived as stellar-dbt derives them: operation details joined with the
  transaction's `successful`), and `accounts` (accounts_current = each account's latest ledger
  entry, as stellar-dbt's accounts_current model picks it).

The DuckDB load is one transaction: a bad or incomplete export raises LoadError naming the
problem and leaves the database as it was (a database file this call created is removed).

Functions for the CLI (`stellarmap`):
    load_duckdb(db_path, source, network="public", tables=None, log=None) -> LoadReport
    load_bigquery(client, source, network="public", datasets=(main, dbt), tables=None, log=None) -> LoadReport
    main(argv=None) -> int
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import glob
import json
import os
import sys
from pathlib import Path
from typing import Callable, Iterable

from common.domain import NETWORKS
from common.hubble.duckdb_engine import META_SCHEMA, NULL_PARTITION, TABLE_SPECS, UNPARTITIONED, local_schema
from common.hubble.port import ACCOUNTS_TABLE, OPERATIONS_TABLE, validate_dataset
from common.config import DEFAULT_HUBBLE_DATASET, DEFAULT_HUBBLE_DBT_DATASET, ConfigError

TABLES = (OPERATIONS_TABLE, ACCOUNTS_TABLE)
RAW_SOURCES = {OPERATIONS_TABLE: ("history_operations", "history_transactions"), ACCOUNTS_TABLE: ("accounts",)}
_JSON_EXT = (".ndjson", ".jsonl", ".json", ".ndjson.gz", ".jsonl.gz", ".json.gz")
_PARQUET_EXT = (".parquet",)
_SCALAR = {"STRING", "INTEGER", "INT64", "FLOAT", "FLOAT64", "NUMERIC", "BIGNUMERIC", "BOOLEAN", "BOOL",
           "TIMESTAMP", "DATETIME", "DATE", "TIME", "BYTES"}


class LoadError(ValueError):
    """The export cannot be loaded; nothing was written."""


@dataclasses.dataclass
class LoadReport:
    network: str
    target: str
    tables: dict  # table -> {"rows", "files", "format", "partitions", "bytes"}

    def summary(self) -> str:
        parts = [f"{t}: {v['rows']:,} rows, {v.get('partitions', 0)} partitions, {v.get('bytes', 0):,} logical bytes"
                 for t, v in self.tables.items()]
        return f"{self.target} [{self.network}] " + "; ".join(parts)


# ---------------------------------------------------------------------------------- finding files
def _network_dir(source: Path, network: str) -> Path:
    if not source.exists():
        raise LoadError(f"source {source} does not exist")
    if not source.is_dir():
        raise LoadError(f"source {source} is not a directory")
    nested = source / network
    return nested if nested.is_dir() else source


def find_files(directory: Path, table: str) -> tuple[str, list[str]] | None:
    """(format, files) of one table's export in `directory`, or None."""
    candidates: list[str] = []
    for ext in _JSON_EXT + _PARQUET_EXT:
        candidates += glob.glob(str(directory / f"{table}{ext}"))
        candidates += glob.glob(str(directory / f"{table}-*{ext}"))
        candidates += glob.glob(str(directory / table / f"*{ext}"))
    files = sorted(set(candidates))
    if not files:
        return None
    kinds = {"parquet" if f.endswith(_PARQUET_EXT) else "json" for f in files}
    if len(kinds) > 1:
        raise LoadError(f"{table}: both JSON and Parquet files found in {directory}; keep one format")
    return kinds.pop(), files


def _schema_file(directory: Path, table: str) -> list[dict] | None:
    path = directory / f"{table}.schema.json"
    if not path.is_file():
        return None
    try:
        fields = json.loads(path.read_text())
    except ValueError as exc:
        raise LoadError(f"{path} is not valid JSON: {exc}") from None
    if isinstance(fields, dict):
        fields = fields.get("fields") or fields.get("schema", {}).get("fields")
    if not isinstance(fields, list) or not all(isinstance(f, dict) and "name" in f and "type" in f for f in fields):
        raise LoadError(f"{path} is not a BigQuery schema (a list of {{name, type, mode}})")
    return fields


def write_export(directory: str | os.PathLike, table: str, rows: Iterable[dict]) -> Path:
    """Write a small hand-made Hubble table (`<table>.ndjson` + `<table>.schema.json`) for tests and demos.

    Columns are the ones the Hubble path reads (TABLE_SPECS); datetimes are written as ...Z text.
    """
    if table not in TABLE_SPECS:
        raise LoadError(f"table must be one of {', '.join(TABLES)}")
    spec = TABLE_SPECS[table]
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"{table}.ndjson"
    with open(path, "w", encoding="utf-8") as out:
        for row in rows:
            unknown = set(row) - set(spec.required)
            if unknown:
                raise LoadError(f"{table}: unknown column(s) {', '.join(sorted(unknown))}")
            values = {c: row.get(c) for c in spec.required}
            for column, value in values.items():
                if isinstance(value, dt.datetime):
                    values[column] = value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            out.write(json.dumps(values) + "\n")
    schema = [{"name": c, "type": t, "mode": "NULLABLE"} for c, t in spec.required.items()]
    (target / f"{table}.schema.json").write_text(json.dumps(schema, indent=2) + "\n")
    return path


# ---------------------------------------------------------------------------------- DuckDB
_DUCK_TO_BQ = {"VARCHAR": "STRING", "BIGINT": "INTEGER", "INTEGER": "INTEGER", "SMALLINT": "INTEGER", "TINYINT": "INTEGER",
               "HUGEINT": "INTEGER", "UBIGINT": "INTEGER", "UINTEGER": "INTEGER", "DOUBLE": "FLOAT", "FLOAT": "FLOAT",
               "BOOLEAN": "BOOLEAN", "DATE": "DATE", "TIMESTAMP": "DATETIME", "TIMESTAMP WITH TIME ZONE": "TIMESTAMP",
               "BLOB": "BYTES", "JSON": "JSON"}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _file_list(files: list[str]) -> str:
    return "[" + ", ".join(_lit(f) for f in files) + "]"


def _bq_type(field: dict) -> str:
    kind = str(field["type"]).upper()
    if field.get("mode", "").upper() == "REPEATED" or kind in ("RECORD", "STRUCT", "JSON", "GEOGRAPHY", "RANGE"):
        return "JSON"
    return {"INT64": "INTEGER", "FLOAT64": "FLOAT", "BOOL": "BOOLEAN"}.get(kind, kind)


def _reader(con, fmt: str, files: list[str], fields: list[dict] | None) -> tuple[str, list[tuple[str, str]]]:
    """(FROM clause, [(column, BigQuery type)]) reading the files; JSON scalars come in as text."""
    if fmt == "parquet":
        relation = f"read_parquet({_file_list(files)}, union_by_name = true)"
        described = con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
        detected = {name: _DUCK_TO_BQ.get(kind.split("(")[0], "JSON" if kind.startswith(("STRUCT", "MAP")) or kind.endswith("[]") else "STRING")
                    for name, kind, *_ in described}
        columns = [(f["name"], _bq_type(f)) for f in fields] if fields else list(detected.items())
        missing = [c for c, _ in columns if c not in detected]
        if missing:
            raise LoadError(f"columns in the schema file but not in the Parquet files: {', '.join(missing)}")
        return relation, columns
    if fields:
        columns = [(f["name"], _bq_type(f)) for f in fields]
    else:
        described = con.execute(
            f"DESCRIBE SELECT * FROM read_json({_file_list(files)}, format = 'newline_delimited', union_by_name = true, sample_size = -1)"
        ).fetchall()
        columns = [(name, _DUCK_TO_BQ.get(kind.split("(")[0], "JSON" if kind.startswith(("STRUCT", "MAP")) or kind.endswith("[]") else "STRING"))
                   for name, kind, *_ in described]
    spec = ", ".join(f"{_lit(name)}: {_lit('JSON' if kind == 'JSON' else 'VARCHAR')}" for name, kind in columns)
    return f"read_json({_file_list(files)}, format = 'newline_delimited', columns = {{{spec}}})", columns


# BigQuery type -> the local DuckDB column type (TIMESTAMP and nested values are special below).
_DUCK_TYPE = {"STRING": "VARCHAR", "INTEGER": "BIGINT", "FLOAT": "DOUBLE", "NUMERIC": "DECIMAL(38, 9)",
              "BIGNUMERIC": "DECIMAL(38, 9)", "BOOLEAN": "BOOLEAN", "DATETIME": "TIMESTAMP", "DATE": "DATE",
              "TIME": "TIME", "BYTES": "BLOB"}
# BigQuery's fixed logical sizes in bytes (STRING and BYTES are 2 + length).
_FIXED_SIZE = {"BOOLEAN": 1, "NUMERIC": 16, "BIGNUMERIC": 32, "INTEGER": 8, "FLOAT": 8, "TIMESTAMP": 8,
               "DATETIME": 8, "DATE": 8, "TIME": 8}


def _cast(expr: str, bq: str) -> str:
    """Cast a source value (text from JSON, or a typed Parquet value) to the local column type."""
    if bq == "TIMESTAMP":  # ...Z, +00:00 and bq extract's " UTC" all become a plain UTC TIMESTAMP
        return f"CAST(CAST(replace(CAST({expr} AS VARCHAR), ' UTC', '+00:00') AS TIMESTAMPTZ) AS TIMESTAMP)"
    if bq in _DUCK_TYPE:
        return f"CAST({expr} AS {_DUCK_TYPE[bq]})"
    return f"CAST(to_json({expr}) AS JSON)"


def _size(col: str, bq: str) -> str:
    """BigQuery's logical size of one value (NULL is 0 bytes; STRING/BYTES 2 + length)."""
    c = _q(col)
    if bq == "STRING":
        return f"COALESCE(2 + strlen({c}), 0)"
    if bq == "BYTES":
        return f"COALESCE(2 + octet_length({c}), 0)"
    if bq in _FIXED_SIZE:
        return f"CASE WHEN {c} IS NULL THEN 0 ELSE {_FIXED_SIZE[bq]} END"
    return f"COALESCE(strlen(CAST({c} AS VARCHAR)), 0)"  # nested values: their JSON text's size, an approximation


def _select_table(con, directory: Path, table: str) -> tuple[str, list[tuple[str, str]], dict]:
    """The SELECT that produces one Hubble table from what the directory holds, its columns, file info."""
    found = find_files(directory, table)
    if found is not None:
        fmt, files = found
        relation, columns = _reader(con, fmt, files, _schema_file(directory, table))
        names = {c for c, _ in columns}
        missing = [c for c in TABLE_SPECS[table].required if c not in names]
        if missing:
            raise LoadError(f"{table} export in {directory} lacks the column(s) {', '.join(missing)}")
        types = dict(columns)
        for column, required_type in TABLE_SPECS[table].required.items():
            types[column] = required_type  # the columns our SQL reads get Hubble's types whatever was detected
        exprs = ", ".join(f"{_cast(_q(c), types[c])} AS {_q(c)}" for c, _ in columns)
        order = " ORDER BY closed_at, op_id" if table == OPERATIONS_TABLE else ""
        return f"SELECT {exprs} FROM {relation}{order}", [(c, types[c]) for c, _ in columns], {"format": fmt, "files": len(files)}
    raw = RAW_SOURCES[table]
    located = {name: find_files(directory, name) for name in raw}
    absent = [name for name, f in located.items() if f is None]
    if absent:
        tried = f"{table}.ndjson|.jsonl|.json[.gz]|.parquet, {table}-*.…, {table}/*.…"
        raise LoadError(f"no {table} export in {directory} (tried {tried}), nor the stellar-etl export(s) "
                        f"{' + '.join(raw)} to derive it from (missing: {', '.join(absent)})")
    readers = {name: _reader(con, located[name][0], located[name][1], _schema_file(directory, name)) for name in raw}
    for name, (_, columns) in readers.items():
        need = {"history_operations": ("id", "type", "details", "transaction_id", "closed_at"),
                "history_transactions": ("id", "successful"),
                "accounts": ("account_id", "balance", "flags", "home_domain", "master_weight", "threshold_low",
                             "threshold_medium", "threshold_high", "deleted", "last_modified_ledger")}[name]
        missing = [c for c in need if c not in {c for c, _ in columns}]
        if missing:
            raise LoadError(f"stellar-etl {name} export in {directory} lacks the column(s) {', '.join(missing)}")
    info = {"format": "stellar-etl", "files": sum(len(located[n][1]) for n in raw)}
    if table == OPERATIONS_TABLE:
        ops, txs = readers["history_operations"][0], readers["history_transactions"][0]
        details = "to_json(o.details)"
        select = (
            f"SELECT {_cast('o.id', 'INTEGER')} AS op_id, {_cast('o.type', 'INTEGER')} AS type, "
            f"{_cast('t.successful', 'BOOLEAN')} AS successful, "
            f"json_extract_string({details}, '$.account') AS account, json_extract_string({details}, '$.funder') AS funder, "
            f"CAST(json_extract_string({details}, '$.starting_balance') AS DOUBLE) AS starting_balance, "
            f"{_cast('o.closed_at', 'TIMESTAMP')} AS closed_at, "
            f"CAST({_cast('o.id', 'INTEGER')} >> 32 AS BIGINT) AS ledger_sequence, "  # a TOID's high 32 bits
            f"json_extract_string({details}, '$.into') AS \"into\", "
            f"{_cast('o.transaction_id', 'INTEGER')} AS transaction_id "
            f"FROM {ops} AS o JOIN {txs} AS t ON {_cast('o.transaction_id', 'INTEGER')} = {_cast('t.id', 'INTEGER')} "
            "ORDER BY closed_at, op_id"
        )
        columns = list(TABLE_SPECS[table].required.items()) + [("transaction_id", "INTEGER")]
        return select, columns, info
    accounts, columns_in = readers["accounts"]
    have = {c for c, _ in columns_in}
    inserted = "a.batch_insert_ts" if "batch_insert_ts" in have else "current_timestamp"
    change = "a.ledger_entry_change" if "ledger_entry_change" in have else "0"
    sequence = "a.sequence_number" if "sequence_number" in have else "NULL"
    modified_at = "a.closed_at" if "closed_at" in have else "NULL"
    select = (
        f"SELECT {_cast('a.account_id', 'STRING')} AS account_id, {_cast('a.balance', 'FLOAT')} AS balance, "
        f"{_cast('a.flags', 'INTEGER')} AS flags, {_cast('a.home_domain', 'STRING')} AS home_domain, "
        f"{_cast('a.master_weight', 'INTEGER')} AS master_weight, {_cast('a.threshold_low', 'INTEGER')} AS threshold_low, "
        f"{_cast('a.threshold_medium', 'INTEGER')} AS threshold_medium, {_cast('a.threshold_high', 'INTEGER')} AS threshold_high, "
        f"{_cast('a.deleted', 'BOOLEAN')} AS deleted, {_cast(inserted, 'TIMESTAMP')} AS batch_insert_ts, "
        f"{_cast(sequence, 'INTEGER')} AS sequence_number, {_cast('a.last_modified_ledger', 'INTEGER')} AS last_modified_ledger, "
        f"{_cast(modified_at, 'TIMESTAMP')} AS closed_at, "
        f"{_cast(f'min({modified_at}) OVER (PARTITION BY a.account_id)', 'DATETIME')} AS account_creation_date "
        f"FROM {accounts} AS a QUALIFY row_number() OVER (PARTITION BY a.account_id "
        f"ORDER BY {_cast('a.last_modified_ledger', 'INTEGER')} DESC, {_cast(change, 'INTEGER')} DESC) = 1"
    )
    return select, list(TABLE_SPECS[table].required.items()), info


def _write_stats(con, network: str, table: str, columns: list[tuple[str, str]], source: str) -> tuple[int, int, int]:
    """BigQuery logical bytes per (partition, column) of the loaded table, into hubble_meta."""
    spec = TABLE_SPECS[table]
    target = f"{local_schema(network)}.{_q(table)}"
    part = f"COALESCE(strftime({_q(spec.partition_column)}, '%Y-%m'), '{NULL_PARTITION}')" if spec.partition_column else f"'{UNPARTITIONED}'"
    sizes = ", ".join(f"SUM({_size(c, t)})::BIGINT AS {_q('b_' + c)}" for c, t in columns)
    con.execute(f"DELETE FROM {META_SCHEMA}.partition_bytes WHERE network = ? AND table_name = ?", [network, table])
    con.execute(f"DELETE FROM {META_SCHEMA}.tables WHERE network = ? AND table_name = ?", [network, table])
    con.execute(
        f"INSERT INTO {META_SCHEMA}.partition_bytes "
        f"SELECT {_lit(network)}, {_lit(table)}, part, substr(column_name, 3), bytes FROM "
        f"(SELECT {part} AS part, {sizes} FROM {target} GROUP BY 1) "
        f"UNPIVOT (bytes FOR column_name IN ({', '.join(_q('b_' + c) for c, _ in columns)}))"
    )
    total_rows = con.execute(f"SELECT COUNT(*) FROM {target}").fetchone()[0]
    partitions, total_bytes = con.execute(
        f"SELECT COUNT(DISTINCT part), COALESCE(SUM(bytes), 0) FROM {META_SCHEMA}.partition_bytes WHERE network = ? AND table_name = ?",
        [network, table],
    ).fetchone()
    con.execute(
        f"INSERT INTO {META_SCHEMA}.tables VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [network, table, spec.partition_column, spec.granularity, json.dumps(dict(columns)), total_rows,
         dt.datetime.now(dt.timezone.utc).replace(tzinfo=None), source],
    )
    return int(total_rows), int(partitions), int(total_bytes)


def load_duckdb(
    db_path: str | os.PathLike,
    source: str | os.PathLike,
    network: str = "public",
    tables: Iterable[str] | None = None,
    log: Callable[[str], None] | None = None,
    on_table: Callable[[str, dict], None] | None = None,
) -> LoadReport:
    """Load (replace) a network's Hubble tables into the DuckDB file at db_path, in one transaction.

    on_table(table, info) is called as each table is loaded (info: rows, files, partitions, bytes);
    the load commits only after the last one."""
    import duckdb

    if network not in NETWORKS:
        raise LoadError(f"network must be one of {', '.join(NETWORKS)}, got {network!r}")
    selected = list(tables) if tables is not None else list(TABLES)
    unknown = [t for t in selected if t not in TABLES]
    if unknown or not selected:
        raise LoadError(f"tables must be among {', '.join(TABLES)}; got {', '.join(unknown) or 'none'}")
    directory = _network_dir(Path(source), network)
    db_path = Path(db_path)
    created = not db_path.exists()
    db_path.parent.mkdir(parents=True, exist_ok=True)
    report = LoadReport(network, str(db_path), {})
    con = duckdb.connect(str(db_path))
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("BEGIN TRANSACTION")
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {META_SCHEMA}")
        con.execute(f"CREATE TABLE IF NOT EXISTS {META_SCHEMA}.tables (network VARCHAR, table_name VARCHAR, partition_column VARCHAR, "
                    "granularity VARCHAR, column_types VARCHAR, row_count BIGINT, loaded_at TIMESTAMP, source VARCHAR)")
        con.execute(f"CREATE TABLE IF NOT EXISTS {META_SCHEMA}.partition_bytes (network VARCHAR, table_name VARCHAR, part VARCHAR, "
                    "column_name VARCHAR, bytes BIGINT)")
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {local_schema(network)}")
        for table in selected:
            if log:
                log(f"loading {network} {table} from {directory}")
            select, columns, info = _select_table(con, directory, table)
            con.execute(f"CREATE OR REPLACE TABLE {local_schema(network)}.{_q(table)} AS {select}")
            rows, partitions, nbytes = _write_stats(con, network, table, columns, str(directory))
            report.tables[table] = {**info, "rows": rows, "partitions": partitions, "bytes": nbytes}
            if on_table:
                on_table(table, report.tables[table])
        con.execute("COMMIT")
    except BaseException as exc:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:
            pass
        con.close()
        if created:
            for leftover in (db_path, Path(str(db_path) + ".wal")):
                leftover.unlink(missing_ok=True)
        if isinstance(exc, duckdb.Error):
            raise LoadError(f"could not load {network} Hubble tables from {directory}: {exc}") from exc
        raise
    con.close()
    return report


# ---------------------------------------------------------------------------------- BigQuery
def load_bigquery(
    client,
    source: str | os.PathLike,
    network: str = "public",
    datasets: tuple[str, str] = (DEFAULT_HUBBLE_DATASET, DEFAULT_HUBBLE_DBT_DATASET),
    tables: Iterable[str] | None = None,
    log: Callable[[str], None] | None = None,
    chunk_bytes: int | None = None,
    only_needed_columns: bool = False,
    on_table: Callable[[str, dict], None] | None = None,
) -> LoadReport:
    """Create the datasets and (re)load the tables through google-cloud-bigquery load jobs.

    For a private copy of Hubble in BigQuery, or the BigQuery emulator in tests. Needs
    `<table>.ndjson` exports with their `<table>.schema.json`; enriched_history_operations is
    created partitioned by closed_at (MONTH), as Hubble's is.

    chunk_bytes: upload each file as line-aligned pieces of at most this size, one load job
    each. The emulator needs it (EMULATOR_CHUNK_BYTES): the client sends files over 5 MiB as a
    resumable upload in several PUTs, and goccy/bigquery-emulator v0.8.1 parses each PUT as a
    whole JSON document, so anything above 5 MiB fails there. Real BigQuery takes whole files.
    only_needed_columns: load just the columns the Hubble path reads (the emulator inserts a few
    thousand rows a second, so a narrower table loads several times faster).
    """
    from google.cloud import bigquery

    if network not in NETWORKS:
        raise LoadError(f"network must be one of {', '.join(NETWORKS)}, got {network!r}")
    try:
        main, dbt = (validate_dataset("HUBBLE_DATASET", datasets[0]), validate_dataset("HUBBLE_DBT_DATASET", datasets[1]))
    except ConfigError as exc:
        raise LoadError(str(exc)) from None
    selected = list(tables) if tables is not None else list(TABLES)
    unknown = [t for t in selected if t not in TABLES]
    if unknown or not selected:
        raise LoadError(f"tables must be among {', '.join(TABLES)}; got {', '.join(unknown) or 'none'}")
    directory = _network_dir(Path(source), network)
    plan = []
    for table in selected:  # check everything before writing anything
        found = find_files(directory, table)
        fields = _schema_file(directory, table)
        if found is None or found[0] != "json" or fields is None:
            raise LoadError(f"{table}: the BigQuery load needs {table}.ndjson (or shards) and {table}.schema.json in {directory}")
        missing = [c for c in TABLE_SPECS[table].required if c not in {f["name"] for f in fields}]
        if missing:
            raise LoadError(f"{table} schema in {directory} lacks the column(s) {', '.join(missing)}")
        if only_needed_columns:
            fields = [f for f in fields if f["name"] in TABLE_SPECS[table].required]
        plan.append((table, found[1], fields))
    report = LoadReport(network, f"bigquery:{client.project}", {})
    for table, files, fields in plan:
        dataset = dbt if table == OPERATIONS_TABLE else main
        client.create_dataset(dataset, exists_ok=True)
        schema = [bigquery.SchemaField.from_api_repr(f) for f in fields]
        ref = f"{dataset}.{table}"
        definition = bigquery.Table(ref, schema=schema)
        spec = TABLE_SPECS[table]
        if spec.partition_column:
            definition.time_partitioning = bigquery.TimePartitioning(type_=bigquery.TimePartitioningType.MONTH, field=spec.partition_column)
        client.delete_table(ref, not_found_ok=True)
        client.create_table(definition)
        rows = 0
        config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON, schema=schema,
                                        write_disposition=bigquery.WriteDisposition.WRITE_APPEND)
        keep = [f["name"] for f in fields] if only_needed_columns else None
        for path in files:
            if log:
                log(f"loading {path} into {ref}")
            for piece, lines in _pieces(path, chunk_bytes, keep):
                job = client.load_table_from_file(piece, ref, job_config=config, rewind=True)
                job.result()
                rows += lines
        report.tables[table] = {"format": "json", "files": len(files), "rows": rows, "columns": len(fields)}
        if on_table:
            on_table(table, report.tables[table])
    return report


EMULATOR_CHUNK_BYTES = 4 * 2**20  # under the client's 5 MiB multipart limit


def _pieces(path: str, chunk_bytes: int | None, keep: list[str] | None = None):
    """(stream, lines) of the file: whole, or line-aligned in-memory pieces of at most chunk_bytes,
    each row cut down to the `keep` columns when given."""
    import io

    if not chunk_bytes and keep is None:
        with open(path, "rb") as handle:
            lines = sum(1 for line in handle if line.strip())
            handle.seek(0)
            yield handle, lines
        return
    limit = chunk_bytes or 2**62
    buffer, count = bytearray(), 0
    with open(path, "rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            if keep is not None:
                row = json.loads(line)
                line = (json.dumps({k: row.get(k) for k in keep}, separators=(",", ":")) + "\n").encode()
            if len(line) > limit:
                raise LoadError(f"{path}: a line of {len(line):,} bytes is larger than the upload piece size")
            if buffer and len(buffer) + len(line) > limit:
                yield io.BytesIO(bytes(buffer)), count
                buffer.clear()
                count = 0
            buffer += line
            count += 1
    if buffer:
        yield io.BytesIO(bytes(buffer)), count


# ---------------------------------------------------------------------------------- CLI
def build_parser(prog: str = "python -m local.hubble_load") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Load Hubble-shaped exports into the embedded Hubble (DuckDB) or BigQuery.")
    parser.add_argument("source", help="export directory (a network's files, or <network>/ subfolders)")
    parser.add_argument("--network", default="public", choices=NETWORKS)
    parser.add_argument("--table", action="append", choices=TABLES, help="load only this table (repeatable; default: both)")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--db", help="DuckDB file of the embedded Hubble (default: HUBBLE_DUCKDB_PATH)")
    target.add_argument("--bigquery", action="store_true", help="load into BigQuery (or the emulator with --endpoint)")
    parser.add_argument("--project", help="BigQuery project, with --bigquery (default: BIGQUERY_PROJECT)")
    parser.add_argument("--endpoint", help="BigQuery emulator URL, e.g. http://127.0.0.1:9050, with --bigquery (default: BIGQUERY_EMULATOR_HOST)")
    parser.add_argument("--dataset", default=DEFAULT_HUBBLE_DATASET)
    parser.add_argument("--dbt-dataset", default=DEFAULT_HUBBLE_DBT_DATASET)
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m local.hubble_load") -> int:
    """Load with a progress bar (tables loaded of tables selected) and a one-line summary on stderr:
    tables, rows, errors and elapsed time. The per-table report is printed on stdout."""
    import time

    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from common.config import setting

    args = build_parser(prog).parse_args(argv)
    console = Console(stderr=True)
    started = time.monotonic()
    selected = list(dict.fromkeys(args.table)) if args.table else list(TABLES)
    loaded: dict[str, dict] = {}

    def summary(errors: int, target: str) -> str:
        rows = sum(int(v.get("rows", 0)) for v in loaded.values())
        state = "FAILED; " if errors else ""
        where = f"; into {target}" if target else ""
        return (f"hubble load: {state}{len(loaded)} of {len(selected)} table(s) loaded, {rows:,} rows, {errors} error(s)"
                f"{where} ({args.network}) in {time.monotonic() - started:.1f}s")

    target = ""
    try:
        db = None if args.bigquery else setting("HUBBLE_DUCKDB_PATH", args.db, None)
        if not args.bigquery and not db:
            raise LoadError("say where to load: --db PATH (or HUBBLE_DUCKDB_PATH) for the embedded Hubble, or --bigquery")
        project = setting("BIGQUERY_PROJECT", args.project, None) if args.bigquery else None
        if args.bigquery and not project:
            raise LoadError("--project (or BIGQUERY_PROJECT) is required with --bigquery")
        target = str(db) if db else f"bigquery:{project}"
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("tables"), TimeElapsedColumn(), console=console, transient=False) as bar:
            task = bar.add_task(f"loading {args.network}", total=len(selected))

            def log(message: str) -> None:
                bar.update(task, description=escape(message))

            def on_table(table: str, info: dict) -> None:
                loaded[table] = info
                bar.console.print(f"{table}: {int(info.get('rows', 0)):,} rows from {info.get('files', 0)} file(s)", markup=False, highlight=False)
                bar.update(task, advance=1)

            if db:
                report = load_duckdb(db, args.source, args.network, selected, log, on_table)
            else:
                from common.hubble.bigquery import make_client

                endpoint = setting("BIGQUERY_EMULATOR_HOST", args.endpoint, None)
                client = make_client(project, endpoint)
                chunk = EMULATOR_CHUNK_BYTES if endpoint else None
                report = load_bigquery(client, args.source, args.network, (args.dataset, args.dbt_dataset), selected, log, chunk,
                                       on_table=on_table)
            bar.update(task, description=f"loaded {args.network}")
    except (LoadError, OSError, ConfigError) as exc:
        print(f"hubble_load: {exc}", file=sys.stderr)
        if not target.startswith("bigquery:"):
            loaded.clear()  # the DuckDB load is one transaction: it was rolled back, nothing was kept
        console.print(summary(1, target), markup=False, highlight=False, soft_wrap=True)
        return 1
    print(report.summary())
    console.print(summary(0, report.target), markup=False, highlight=False, soft_wrap=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
