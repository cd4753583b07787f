"""Hubble-shaped NDJSON exports of a simulated network.

Column names and types follow stellar-dbt-public's marts (enriched_history_operations,
accounts_current) as they are in BigQuery: the operation id is `op_id` and the transaction's
success is `successful`. Hubble keeps the whole history (no retention window) and includes
the operations of failed transactions. Each table gets a BigQuery schema file beside it.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Iterable

from local.simulator.network import FLAG_NAMES, Network, iso_z, ledger_close_time, stroops_to_str

EHO = "enriched_history_operations"
ACCOUNTS = "accounts_current"
TABLES = (EHO, ACCOUNTS)

EHO_SCHEMA = (
    ("op_id", "INTEGER", "REQUIRED"),
    ("op_source_account", "STRING", "REQUIRED"),
    ("op_source_account_muxed", "STRING", "NULLABLE"),
    ("transaction_id", "INTEGER", "REQUIRED"),
    ("type", "INTEGER", "REQUIRED"),
    ("type_string", "STRING", "REQUIRED"),
    ("account", "STRING", "NULLABLE"),
    ("op_account_id", "STRING", "NULLABLE"),
    ("funder", "STRING", "NULLABLE"),
    ("starting_balance", "FLOAT", "NULLABLE"),
    ("into", "STRING", "NULLABLE"),
    ("from", "STRING", "NULLABLE"),
    ("to", "STRING", "NULLABLE"),
    ("amount", "FLOAT", "NULLABLE"),
    ("asset_type", "STRING", "NULLABLE"),
    ("asset_code", "STRING", "NULLABLE"),
    ("asset_issuer", "STRING", "NULLABLE"),
    ("bump_to", "STRING", "NULLABLE"),
    ("transaction_hash", "STRING", "REQUIRED"),
    ("ledger_sequence", "INTEGER", "REQUIRED"),
    ("txn_account", "STRING", "REQUIRED"),
    ("successful", "BOOLEAN", "REQUIRED"),
    ("closed_at", "TIMESTAMP", "REQUIRED"),
    ("batch_id", "STRING", "REQUIRED"),
    ("batch_run_date", "DATETIME", "REQUIRED"),
    ("batch_insert_ts", "TIMESTAMP", "REQUIRED"),
)
ACCOUNTS_SCHEMA = (
    ("account_id", "STRING", "REQUIRED"),
    ("account_creation_date", "DATETIME", "NULLABLE"),
    ("min_sequence_number", "INTEGER", "NULLABLE"),
    ("balance", "FLOAT", "REQUIRED"),
    ("buying_liabilities", "FLOAT", "REQUIRED"),
    ("selling_liabilities", "FLOAT", "REQUIRED"),
    ("sequence_number", "INTEGER", "REQUIRED"),
    ("num_subentries", "INTEGER", "REQUIRED"),
    ("num_sponsoring", "INTEGER", "REQUIRED"),
    ("num_sponsored", "INTEGER", "REQUIRED"),
    ("inflation_destination", "STRING", "NULLABLE"),
    ("flags", "INTEGER", "REQUIRED"),
    ("home_domain", "STRING", "NULLABLE"),
    ("master_weight", "INTEGER", "REQUIRED"),
    ("threshold_low", "INTEGER", "REQUIRED"),
    ("threshold_medium", "INTEGER", "REQUIRED"),
    ("threshold_high", "INTEGER", "REQUIRED"),
    ("last_modified_ledger", "INTEGER", "REQUIRED"),
    ("ledger_entry_change", "INTEGER", "REQUIRED"),
    ("closed_at", "TIMESTAMP", "REQUIRED"),
    ("deleted", "BOOLEAN", "REQUIRED"),
    ("sponsor", "STRING", "NULLABLE"),
    ("sequence_ledger", "INTEGER", "NULLABLE"),
    ("sequence_time", "TIMESTAMP", "NULLABLE"),
    ("batch_run_date", "DATETIME", "REQUIRED"),
    ("upstream_insert_ts", "TIMESTAMP", "NULLABLE"),
    ("batch_insert_ts", "TIMESTAMP", "REQUIRED"),
)
SCHEMAS = {EHO: EHO_SCHEMA, ACCOUNTS: ACCOUNTS_SCHEMA}
# How Hubble's tables are laid out in BigQuery (stellar-dbt-public's model configs), in the REST API's
# Table resource terms (`bq show --format=prettyjson`): enriched_history_operations is partitioned by
# closed_at, one partition a day, and clustered; accounts_current is neither.
TABLE_OPTIONS = {
    EHO: {"timePartitioning": {"type": "DAY", "field": "closed_at"},
          "clustering": {"fields": ["ledger_sequence", "transaction_id", "op_account_id", "type"]}},
    ACCOUNTS: {},
}
ETL_BATCH_LEDGERS = 64  # stellar-etl exports ledgers in batches of 64


def _float(text: str | None) -> float | None:
    return float(text) if text is not None else None


def _day(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT00:00:00")


def _batch_id(ledger: int) -> str:
    start = ledger // ETL_BATCH_LEDGERS * ETL_BATCH_LEDGERS
    return f"{start}-{start + ETL_BATCH_LEDGERS}"


def operation_rows(network: Network) -> Iterable[dict]:
    inserted = iso_z(network.now)
    for op_id in network.all_operation_ids():
        op = network.operation(op_id)
        closed = op.closed_at
        d = op.details
        yield {
            "op_id": op.id,
            "op_source_account": op.source_account,
            "op_source_account_muxed": None,
            "transaction_id": op.transaction_id,
            "type": op.type_i,
            "type_string": op.type,
            "account": d.get("account"),
            "op_account_id": None,  # stellar-etl's details.account_id: only revoke_sponsorship of an account sets it
            "funder": d.get("funder"),
            "starting_balance": _float(d.get("starting_balance")),
            "into": d.get("into"),
            "from": d.get("from"),
            "to": d.get("to"),
            "amount": _float(d.get("amount")),
            "asset_type": d.get("asset_type"),
            "asset_code": d.get("asset_code"),
            "asset_issuer": d.get("asset_issuer"),
            "bump_to": d.get("bump_to"),
            "transaction_hash": op.transaction_hash,
            "ledger_sequence": op.ledger,
            "txn_account": op.source_account,
            "successful": op.successful,
            "closed_at": iso_z(closed),
            "batch_id": _batch_id(op.ledger),
            "batch_run_date": _day(closed),
            "batch_insert_ts": inserted,
        }


def account_rows(network: Network) -> Iterable[dict]:
    """accounts_current as stellar-dbt builds it: each account's latest row. A merged account's is
    the removal (deleted, ledger_entry_change 2): stellar-etl writes the entry as it was before the
    merge, so it keeps its last sequence number and the balance the merge moved."""
    inserted = iso_z(network.now)
    for index in range(network.total):
        state = network.state(index)
        closed = ledger_close_time(state.last_modified_ledger)
        if not state.exists:
            change = 2  # removed
        elif state.last_modified_ledger == state.created_ledger:
            change = 0  # created
        else:
            change = 1  # updated
        yield {
            "account_id": state.address,
            "account_creation_date": _day(ledger_close_time(state.first_created_ledger)),
            "min_sequence_number": state.first_created_ledger << 32,  # the first row's: its first life's start
            "balance": float(stroops_to_str(state.last_balance)),
            "buying_liabilities": 0.0,
            "selling_liabilities": 0.0,
            "sequence_number": state.sequence,
            "num_subentries": len(state.trustlines),
            "num_sponsoring": 0,
            "num_sponsored": 0,
            "inflation_destination": None,
            "flags": state.flags,
            "home_domain": state.home_domain or "",
            "master_weight": 1,
            "threshold_low": 0,
            "threshold_medium": 0,
            "threshold_high": 0,
            "last_modified_ledger": state.last_modified_ledger,
            "ledger_entry_change": change,
            "closed_at": iso_z(closed),
            "deleted": not state.exists,
            "sponsor": state.sponsor,
            "sequence_ledger": state.sequence_ledger,
            "sequence_time": iso_z(ledger_close_time(state.sequence_ledger)) if state.sequence_ledger else None,
            "batch_run_date": _day(closed),
            "upstream_insert_ts": inserted,
            "batch_insert_ts": inserted,
        }


def _write(path: Path, rows: Iterable[dict]) -> int:
    tmp = path.with_suffix(path.suffix + ".tmp")
    count = 0
    with open(tmp, "w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
            out.write("\n")
            count += 1
    os.replace(tmp, path)  # readers never see a half-written table
    return count


_DUCKDB_TYPES = {"INTEGER": "BIGINT", "STRING": "VARCHAR", "FLOAT": "DOUBLE", "BOOLEAN": "BOOLEAN",
                 "TIMESTAMP": "TIMESTAMP", "DATETIME": "TIMESTAMP"}


def duckdb_columns(table: str) -> dict[str, str]:
    """Column types for DuckDB's read_json(path, columns=...): explicit types keep timestamps
    plain UTC TIMESTAMPs (auto-detection would make the ...Z values TIMESTAMP WITH TIME ZONE)."""
    return {name: _DUCKDB_TYPES[kind] for name, kind, _ in SCHEMAS[table]}


def schema_json(table: str) -> list[dict]:
    return [{"name": name, "type": kind, "mode": mode} for name, kind, mode in SCHEMAS[table]]


def bq_load_flags(table: str) -> list[str]:
    """`bq load` flags that create the table as Hubble lays it out (schema file given separately)."""
    flags = ["--source_format=NEWLINE_DELIMITED_JSON"]
    options = TABLE_OPTIONS[table]
    if "timePartitioning" in options:
        flags += [f"--time_partitioning_field={options['timePartitioning']['field']}",
                  f"--time_partitioning_type={options['timePartitioning']['type']}"]
    if "clustering" in options:
        flags.append("--clustering_fields=" + ",".join(options["clustering"]["fields"]))
    return flags


def export(networks: dict[str, Network], directory: str | os.PathLike, tables: Iterable[str] = TABLES) -> dict:
    """Write {directory}/{network}/{table}.ndjson (+ .schema.json) for each network; returns a manifest."""
    tables = list(tables)
    for table in tables:
        if table not in SCHEMAS:
            raise ValueError(f"unknown table {table!r}; tables are {', '.join(TABLES)}")
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root} exists and is not a directory")
    manifest: dict = {"tables": tables, "table_options": {t: TABLE_OPTIONS[t] for t in tables},
                      "bq_load_flags": {t: bq_load_flags(t) for t in tables},
                      "networks": {}, "flag_bits": {name: 1 << bit for bit, name in enumerate(FLAG_NAMES)}}
    for name, network in networks.items():
        target = root / name
        target.mkdir(parents=True, exist_ok=True)
        files = {}
        for table in tables:
            rows = operation_rows(network) if table == EHO else account_rows(network)
            path = target / f"{table}.ndjson"
            count = _write(path, rows)
            (target / f"{table}.schema.json").write_text(json.dumps(schema_json(table), indent=2) + "\n")
            files[table] = {"path": str(path), "rows": count}
        manifest["networks"][name] = {**network.describe(), "files": files}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest
