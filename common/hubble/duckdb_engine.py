"""The embedded Hubble: DuckDB over Hubble-shaped tables, running the BigQuery SQL via sqlglot.

Layout of the DuckDB file (written by local/hubble_load.py, opened here read-only):
- schema `hubble_<network>` with tables `enriched_history_operations` and `accounts_current`,
  as loaded from NDJSON or Parquet exports (simulator, `bq extract`, stellar-etl);
- schema `hubble_meta`: `tables` (what was loaded, its partitioning) and `partition_bytes`
  (BigQuery logical bytes per table, partition and column, computed at load time).

A query is the same BigQuery-dialect text the BigQuery adapter sends. sqlglot parses it, the
fully qualified BigQuery table names (`project.dataset.table`) are rewritten to the local
schema, and the tree is rendered in DuckDB's dialect (@param becomes $param).

The dry run reports the bytes BigQuery would scan, computed the way BigQuery computes them: the
logical size of every column the query references, in every partition its `closed_at` filter
cannot prune (day partitions for enriched_history_operations, as Hubble partitions it;
accounts_current is not partitioned). Only conjuncts of the table's own WHERE clause that compare
the partition column with a constant or a query parameter prune, as in BigQuery; clustering does
not count, as BigQuery's dry run does not count it. A file loaded before the tables were day
partitioned records month partitions in hubble_meta and is estimated by those. The "billed"
bytes follow BigQuery's on-demand rounding (common/hubble/cost_guard.billable_bytes), so the
spend ledger shows what the same queries would cost on BigQuery.
"""
from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import functools
import json
import os
import threading
import uuid
from pathlib import Path
from typing import Any

from common.hubble.cost_guard import billable_bytes
from common.hubble.port import (
    ACCOUNTS_TABLE,
    OPERATIONS_TABLE,
    Hubble,
    HubbleError,
    HubbleJobFailed,
    HubbleQuery,
    HubbleTables,
    HubbleUnavailable,
    DryRun,
    PagedResult,
    QueryResult,
    tables_from_settings,
)

UTC = dt.timezone.utc
META_SCHEMA = "hubble_meta"
UNPARTITIONED = "__UNPARTITIONED__"
NULL_PARTITION = "__NULL__"
# The dataset names a network's SQL uses when no Hubble datasets are configured for it (testnet):
# they only need to be distinct, since this engine rewrites them to its local schemas.
LOCAL_TESTNET_DATASETS = ("hubble-local-testnet.crypto_stellar", "hubble-local-testnet.crypto_stellar_dbt")


@dataclasses.dataclass(frozen=True)
class TableSpec:
    """What the Hubble path needs of a table: its partitioning and the columns its SQL reads."""

    name: str
    partition_column: str | None
    granularity: str | None  # DAY (MONTH in files loaded before)
    required: dict  # column -> BigQuery type
    clustering: tuple = ()


TABLE_SPECS = {
    OPERATIONS_TABLE: TableSpec(
        OPERATIONS_TABLE,
        "closed_at",
        "DAY",  # stellar-dbt-public: enriched_history_operations is partitioned by closed_at, daily
        {
            "op_id": "INTEGER",
            "type": "INTEGER",
            "successful": "BOOLEAN",
            "account": "STRING",
            "funder": "STRING",
            "starting_balance": "FLOAT",
            "closed_at": "TIMESTAMP",
            "ledger_sequence": "INTEGER",
            "into": "STRING",
        },
        ("ledger_sequence", "transaction_id", "op_account_id", "type"),
    ),
    ACCOUNTS_TABLE: TableSpec(
        ACCOUNTS_TABLE,
        None,  # stellar-dbt: accounts_current is an incremental model without partitioning
        None,
        {
            "account_id": "STRING",
            "balance": "FLOAT",
            "flags": "INTEGER",
            "home_domain": "STRING",
            "master_weight": "INTEGER",
            "threshold_low": "INTEGER",
            "threshold_medium": "INTEGER",
            "threshold_high": "INTEGER",
            "deleted": "BOOLEAN",
            "batch_insert_ts": "TIMESTAMP",
            "sequence_number": "INTEGER",
            "last_modified_ledger": "INTEGER",
            "closed_at": "TIMESTAMP",
            "account_creation_date": "DATETIME",
        },
    ),
}


def local_schema(network: str) -> str:
    return f"hubble_{network}"


# How a time partition's key is written (hubble_meta.partition_bytes.part), by granularity.
PARTITION_KEY_FORMATS = {"DAY": "%Y-%m-%d", "MONTH": "%Y-%m"}


def partition_key(value: dt.datetime | dt.date | None, granularity: str | None) -> str:
    if granularity is None:
        return UNPARTITIONED
    if value is None:
        return NULL_PARTITION
    return value.strftime(PARTITION_KEY_FORMATS[granularity])


def partition_bounds(key: str, granularity: str) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a time partition."""
    try:
        if granularity == "DAY":
            start = dt.datetime.strptime(key, "%Y-%m-%d").replace(tzinfo=UTC)
            return start, start + dt.timedelta(days=1)
        if granularity == "MONTH":
            start = dt.datetime.strptime(key, "%Y-%m").replace(tzinfo=UTC)
            return start, (start + dt.timedelta(days=32)).replace(day=1)
    except ValueError:
        raise HubbleUnavailable(f"partition {key!r} is not a {granularity} partition key: reload the embedded Hubble") from None
    raise HubbleUnavailable(f"partition granularity {granularity!r} is not one this engine knows (DAY, MONTH): reload the embedded Hubble")


@dataclasses.dataclass
class _TableStats:
    partition_column: str | None
    granularity: str | None
    columns: dict  # column -> BigQuery type
    parts: dict  # partition key -> {column: bytes}
    # time partitions in order, with per-column running totals: a dry run sums a range in O(columns)
    starts: list = dataclasses.field(default_factory=list)
    ends: list = dataclasses.field(default_factory=list)
    running: dict = dataclasses.field(default_factory=dict)  # column -> [0, p0, p0+p1, ...]

    def index(self) -> None:
        timed = sorted((partition_bounds(k, self.granularity), v) for k, v in self.parts.items()
                       if k not in (UNPARTITIONED, NULL_PARTITION))
        self.starts = [b[0] for b, _ in timed]
        self.ends = [b[1] for b, _ in timed]
        self.running = {}
        for column in self.columns:
            total, sums = 0, [0]
            for _, per_column in timed:
                total += per_column.get(column, 0)
                sums.append(total)
            self.running[column] = sums

    def scanned(self, columns: set[str], lo: dt.datetime | None, hi: dt.datetime | None, hi_exclusive: bool) -> int:
        """Bytes of `columns` in the partitions a filter lo <= closed_at <= hi (or < hi) cannot prune."""
        total = 0
        for key in (UNPARTITIONED, NULL_PARTITION):
            if key in self.parts and (key == UNPARTITIONED or (lo is None and hi is None)):
                total += sum(self.parts[key].get(c, 0) for c in columns)
        first = 0 if lo is None else bisect.bisect_right(self.ends, lo)  # the first partition ending after lo
        if hi is None:
            last = len(self.starts)
        else:
            last = (bisect.bisect_left if hi_exclusive else bisect.bisect_right)(self.starts, hi)
        if last > first:
            total += sum(self.running[c][last] - self.running[c][first] for c in columns if c in self.running)
        return total


def _full_name(table) -> str:
    return ".".join(p for p in (table.catalog, table.db, table.name) if p)


class DuckDBHubble(Hubble):
    engine = "duckdb"

    def __init__(self, path: str | os.PathLike, tables: dict[str, HubbleTables] | None = None):
        self.path = Path(path)
        if tables is None:
            tables = {"public": HubbleTables.from_datasets("crypto-stellar.crypto_stellar", "crypto-stellar.crypto_stellar_dbt")}
        tables = dict(tables)
        tables.setdefault("testnet", HubbleTables.from_datasets(*LOCAL_TESTNET_DATASETS))
        self._configured = tables
        # BigQuery full name -> (network, local table name)
        self._names: dict[str, tuple[str, str]] = {}
        for network, t in tables.items():
            self._names[t.operations] = (network, OPERATIONS_TABLE)
            self._names[t.accounts] = (network, ACCOUNTS_TABLE)
        self._lock = threading.Lock()
        self._con = None
        self._stats: dict[tuple[str, str], _TableStats] = {}

    @classmethod
    def from_settings(cls, settings, clock=None) -> "DuckDBHubble":
        path = settings.require("HUBBLE_DUCKDB_PATH")
        return cls(path, tables_from_settings(settings))

    # ------------------------------------------------------------------ connection and metadata
    def _connection(self):
        if self._con is not None:
            return self._con
        with self._lock:
            if self._con is not None:
                return self._con
            if not self.path.is_file():
                raise HubbleUnavailable(
                    f"no embedded Hubble at {self.path}: load one with `python -m local.hubble_load --db {self.path} SOURCE`"
                )
            import duckdb  # lazy: only this engine needs it

            con = None
            try:
                con = duckdb.connect(str(self.path), read_only=True)
                con.execute("SET TimeZone = 'UTC'")
                stats = self._read_stats(con)
            except (duckdb.Error, HubbleUnavailable) as exc:
                if con is not None:
                    con.close()
                if isinstance(exc, HubbleUnavailable):
                    raise
                raise HubbleUnavailable(f"embedded Hubble at {self.path} cannot be opened: {exc}") from exc
            self._stats = stats
            self._con = con
            return con

    @staticmethod
    def _read_stats(con) -> dict[tuple[str, str], _TableStats]:
        try:
            tables = con.execute(
                f"SELECT network, table_name, partition_column, granularity, column_types FROM {META_SCHEMA}.tables"
            ).fetchall()
            parts = con.execute(f"SELECT network, table_name, part, column_name, bytes FROM {META_SCHEMA}.partition_bytes").fetchall()
        except Exception as exc:
            raise HubbleUnavailable(f"not an embedded Hubble (no {META_SCHEMA} tables; load it with local/hubble_load.py): {exc}") from exc
        stats = {
            (n, t): _TableStats(pc, g, json.loads(types), {}) for n, t, pc, g, types in tables
        }
        for n, t, part, column, nbytes in parts:
            if (n, t) in stats:
                stats[(n, t)].parts.setdefault(part, {})[column] = int(nbytes)
        for table_stats in stats.values():
            if table_stats.partition_column:
                table_stats.index()
        return stats

    def tables(self, network: str) -> HubbleTables | None:
        self._connection()
        if (network, OPERATIONS_TABLE) in self._stats and (network, ACCOUNTS_TABLE) in self._stats:
            return self._configured.get(network)
        return None

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    # ------------------------------------------------------------------ SQL
    @functools.lru_cache(maxsize=64)
    def _parse(self, sql: str):
        import sqlglot

        try:
            return sqlglot.parse_one(sql, read="bigquery")
        except sqlglot.errors.ParseError as exc:
            raise HubbleError(f"query is not valid BigQuery SQL: {exc}") from exc

    def _lookup(self, table) -> tuple[str, str] | None:
        return self._names.get(_full_name(table))

    def _check_tables(self, tree) -> list[tuple[str, str]]:
        from sqlglot import exp

        used = []
        for table in tree.find_all(exp.Table):
            key = self._lookup(table)
            if key is None:
                raise HubbleError(f"table {_full_name(table)} is not a Hubble table this engine serves")
            if key not in self._stats:
                raise HubbleError(f"table {_full_name(table)} ({key[0]} {key[1]}) is not loaded in {self.path}")
            used.append(key)
        return used

    @functools.lru_cache(maxsize=64)
    def to_duckdb(self, sql: str) -> str:
        """The BigQuery text rendered for DuckDB, with Hubble tables pointing at the local schemas."""
        from sqlglot import exp

        tree = self._parse(sql).copy()

        def rewrite(node):
            if isinstance(node, exp.Table):
                key = self._lookup(node)
                if key is not None:
                    local = exp.Table(this=exp.to_identifier(key[1]), db=exp.to_identifier(local_schema(key[0])))
                    if node.args.get("alias") is not None:
                        local.set("alias", node.args["alias"])
                    return local
            return node

        return tree.transform(rewrite).sql(dialect="duckdb")

    # ------------------------------------------------------------------ the dry run
    def estimate_bytes(self, query: HubbleQuery) -> int:
        from sqlglot import exp

        self._connection()
        tree = self._parse(query.sql)
        self._check_tables(tree)
        params = query.param_values()
        total = 0
        for table in tree.find_all(exp.Table):
            stats = self._stats[self._lookup(table)]
            select = table.find_ancestor(exp.Select)
            columns = self._referenced_columns(select, table, stats.columns)
            lo, hi, hi_exclusive = None, None, False
            if stats.partition_column:
                lo, hi, hi_exclusive = self._partition_bounds(select, table, stats.partition_column, params)
            total += stats.scanned(columns, lo, hi, hi_exclusive)
        return total

    @staticmethod
    def _in_scope(node, select) -> bool:
        from sqlglot import exp

        return node.find_ancestor(exp.Select) is select

    def _referenced_columns(self, select, table, columns: dict) -> set[str]:
        from sqlglot import exp

        if select is None:
            return set(columns)
        alias = table.alias_or_name
        for projection in select.expressions:
            if isinstance(projection, exp.Star) or (isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star)):
                return set(columns)
        found = set()
        for column in select.find_all(exp.Column):
            if not self._in_scope(column, select):
                continue
            if column.table and column.table != alias:
                continue
            if column.name in columns:
                found.add(column.name)
        return found

    @staticmethod
    def _constant(node, params: dict) -> dt.datetime | None:
        from sqlglot import exp

        value: Any = None
        if isinstance(node, exp.Parameter):
            value = params.get(node.name)
        elif isinstance(node, exp.Cast) and isinstance(node.this, exp.Literal) and node.this.is_string:
            value = node.this.this
        elif isinstance(node, exp.Literal) and node.is_string:
            value = node.this
        elif isinstance(node, exp.TimeStrToTime) and isinstance(node.this, exp.Literal):
            value = node.this.this
        if isinstance(value, str):
            try:
                value = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace(" UTC", "+00:00"))
            except ValueError:
                return None
        if isinstance(value, dt.datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, dt.date):
            return dt.datetime(value.year, value.month, value.day, tzinfo=UTC)
        return None

    def _partition_bounds(self, select, table, column: str, params: dict) -> tuple[dt.datetime | None, dt.datetime | None, bool]:
        """(lo, hi, hi is exclusive) of the partition column that the WHERE clause's conjuncts imply."""
        from sqlglot import exp

        where = select.args.get("where") if select is not None else None
        if where is None:
            return None, None, False
        alias = table.alias_or_name

        def is_partition(node) -> bool:
            return isinstance(node, exp.Column) and node.name == column and node.table in ("", alias)

        lo = hi = None
        hi_exclusive = False

        def raise_lo(v):
            nonlocal lo
            lo = v if lo is None else max(lo, v)

        def lower_hi(v, exclusive=False):
            nonlocal hi, hi_exclusive
            if hi is None or v < hi:
                hi, hi_exclusive = v, exclusive
            elif v == hi:
                hi_exclusive = hi_exclusive or exclusive

        for conjunct in where.this.flatten() if isinstance(where.this, exp.And) else [where.this]:
            if isinstance(conjunct, exp.Between) and is_partition(conjunct.this):
                low, high = self._constant(conjunct.args.get("low"), params), self._constant(conjunct.args.get("high"), params)
                if low:
                    raise_lo(low)
                if high:
                    lower_hi(high)
                continue
            if not isinstance(conjunct, (exp.GT, exp.GTE, exp.LT, exp.LTE, exp.EQ)):
                continue
            left, right = conjunct.this, conjunct.expression
            kind = type(conjunct)
            if is_partition(right) and not is_partition(left):
                left, right = right, left
                kind = {exp.GT: exp.LT, exp.GTE: exp.LTE, exp.LT: exp.GT, exp.LTE: exp.GTE, exp.EQ: exp.EQ}[kind]
            if not is_partition(left):
                continue
            value = self._constant(right, params)
            if value is None:
                continue
            if kind in (exp.GT, exp.GTE, exp.EQ):
                raise_lo(value)
            if kind in (exp.LT, exp.LTE, exp.EQ):
                lower_hi(value, kind is exp.LT)
        return lo, hi, hi_exclusive

    def dry_run(self, query: HubbleQuery) -> DryRun:
        return DryRun(self.estimate_bytes(query))

    # ------------------------------------------------------------------ running
    def run(self, query: HubbleQuery, max_bytes_billed: int | None = None, job_id: str | None = None) -> QueryResult:
        """Runs in-process, so every outcome is known: a failure is a finished job that billed
        nothing (BigQuery bills no failed query), and no job is left to look up or cancel."""
        paged = self.run_pages(query, max_bytes_billed, job_id, page_rows=None)
        rows = [row for page in paged.pages for row in page]
        return QueryResult(rows=rows, bytes_processed=paged.bytes_processed, bytes_billed=paged.bytes_billed, job_id=paged.job_id)

    def run_pages(self, query: HubbleQuery, max_bytes_billed: int | None = None, job_id: str | None = None,
                  page_rows: int | None = 10_000) -> PagedResult:
        """The query runs at once; its rows are fetched `page_rows` at a time (None: all in one page)."""
        import duckdb

        job_id = job_id or f"duckdb-{uuid.uuid4().hex}"
        processed = self.estimate_bytes(query)
        billed = billable_bytes(processed, len(query.tables))
        if max_bytes_billed is not None and billed > max_bytes_billed:
            # BigQuery's behaviour for maximum_bytes_billed: the job fails before reading anything.
            raise HubbleJobFailed(f"query would bill {billed:,} bytes, over maximum_bytes_billed {max_bytes_billed:,}", job_id, 0, 0)
        sql = self.to_duckdb(query.sql)
        params = {}
        for p in query.params:
            value = p.value
            if p.type == "TIMESTAMP":
                value = value.astimezone(UTC).replace(tzinfo=None)  # the local tables hold UTC TIMESTAMPs
            params[p.name] = value
        cursor = self._connection().cursor()
        try:
            cursor.execute(sql, params)
            names = [d[0] for d in cursor.description]
            first = cursor.fetchall() if page_rows is None else cursor.fetchmany(page_rows)
        except duckdb.Error as exc:
            cursor.close()
            raise HubbleJobFailed(f"embedded Hubble query failed: {exc}", job_id, 0, 0) from exc

        def pages():
            try:
                batch = first
                while batch:
                    yield [dict(zip(names, map(_utc_value, row))) for row in batch]
                    if page_rows is None:
                        return
                    try:
                        batch = cursor.fetchmany(page_rows)
                    except duckdb.Error as exc:
                        raise HubbleError(f"embedded Hubble rows could not be read: {exc}") from exc
            finally:
                cursor.close()

        return PagedResult(pages(), processed, billed, job_id)


def _utc_value(value):
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value
