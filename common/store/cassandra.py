"""The Cassandra / Astra DB Store (the production adapter).

- Connects lazily on first use: to contact points + port, or to Astra DB with a secure-connect
  bundle and an application token (`PlainTextAuthProvider('token', token)`).
- Every statement is prepared once (cached by its text) and takes bound values only.
- Reads and writes at LOCAL_QUORUM; lightweight transactions use LOCAL_SERIAL.
- Status changes are compare-and-set LWTs (`INSERT ... IF NOT EXISTS` / `UPDATE ... IF status IN ?`);
  a claimed row's writes add `AND claim_token = ?` (fenced: a worker that lost its claim writes nothing);
  the monthly BigQuery spend and its reservations change together in one conditional batch on the
  month's version, so two functions can never both spend the last dollar.
- A CAS whose outcome is unknown (a write timeout) is resolved by reading the row back at
  LOCAL_SERIAL, which also finishes any in-flight Paxos round.
- No hot path scans a table or uses ALLOW FILTERING; `_scan` (the bounded query builder) pages
  through the table and filters the network client side.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import os
import random
import threading
import time
from decimal import Decimal
from typing import Any, Callable, Iterable, Iterator

from common.config import ConfigError, Settings
from common.domain import (
    ChildEdge,
    CreationEvent,
    CronRun,
    HvaEvent,
    LeaderboardEntry,
    LineageRecord,
    MergeEvent,
    Page,
    SearchCacheEntry,
    StageExecution,
    as_utc,
)
from common.store import bulk, codec
from common.store.port import SPEND_TOTAL_ROW, Store, StoreUnavailable
from common.store.schema import alter_add

MIGRATIONS_TABLE = "schema_migrations"
MIGRATIONS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (scope text, version text, name text, checksum text, "
    "applied_at timestamp, PRIMARY KEY ((scope), version))"
)
PAGE_FETCH_SIZE = 1000  # driver paging for scans and big partitions
CONCURRENCY = 32  # in-flight statements for multi-row writes and batch reads
CAS_UNKNOWN_RETRIES = 8  # read-back-and-retry rounds after a CAS with an unknown outcome
SCAN_EXAMINE_FACTOR = 20  # a network-filtered scan examines at most this many rows per row wanted
SCAN_EXAMINE_MIN = 20_000
BULK_IN_FLIGHT = 64  # concurrent requests of a bulk write (common/store/bulk.py)
BULK_BATCH_ROWS = 25  # statements per unlogged batch (stays under Cassandra's 5 KiB batch size warning)
BULK_PARTITIONS_PER_BATCH = 10  # partitions per unlogged batch (Cassandra warns above 10)
BULK_KEYS_PER_READ = 20  # partition keys per IN read (Astra refuses long IN lists)


class CassandraUnavailable(StoreUnavailable):
    """The cluster (or the keyspace) cannot be reached; the message says which and where."""


def _now_utc() -> dt.datetime:
    return as_utc(dt.datetime.now(dt.timezone.utc))


class CassandraStore(Store):
    backend = "cassandra"

    @property
    def unavailable_errors(self) -> tuple[type[BaseException], ...]:
        # the driver is imported on first use (clients are created lazily)
        from cassandra import OperationTimedOut, RequestExecutionException
        from cassandra.cluster import NoHostAvailable

        return (RequestExecutionException, OperationTimedOut, NoHostAvailable)

    def __init__(self, settings: Settings, request_timeout_s: float = 30.0, connect_timeout_s: float = 15.0):
        self.settings = settings
        self.keyspace = settings.cassandra_keyspace
        if not self.keyspace or not str(self.keyspace).replace("_", "").isalnum():
            raise ConfigError("CASSANDRA_KEYSPACE", f"must be a plain identifier, got {self.keyspace!r}")
        self._request_timeout = request_timeout_s
        self._connect_timeout = connect_timeout_s
        self._cluster = None
        self._session = None
        self._prepared: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._migrations_table_ready = False

    # ------------------------------------------------------------ connection
    def cluster_kwargs(self) -> dict[str, Any]:
        """The cassandra.cluster.Cluster arguments for these settings (no connection is made).

        Astra DB when a bundle path or a token is configured (both are then required), else the
        contact points and port.
        """
        from cassandra import ConsistencyLevel
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, ExecutionProfile
        from cassandra.policies import DCAwareRoundRobinPolicy, ExponentialReconnectionPolicy, TokenAwarePolicy
        from cassandra.query import dict_factory

        profile = ExecutionProfile(
            load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
            consistency_level=ConsistencyLevel.LOCAL_QUORUM,
            serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL,
            request_timeout=self._request_timeout,
            row_factory=dict_factory,
        )
        kwargs: dict[str, Any] = {
            "execution_profiles": {EXEC_PROFILE_DEFAULT: profile},
            "connect_timeout": self._connect_timeout,
            "control_connection_timeout": self._connect_timeout,
            "max_schema_agreement_wait": 30,
            # After a node restart (or an Astra blip) reconnect within seconds, not the default 10 min cap.
            "reconnection_policy": ExponentialReconnectionPolicy(base_delay=0.5, max_delay=5.0),
        }
        s = self.settings
        if s.astra_bundle_path or s.astra_token:
            from cassandra.auth import PlainTextAuthProvider

            if not s.astra_bundle_path:
                raise ConfigError("ASTRA_SECURE_BUNDLE_PATH", "is not set (ASTRA_TOKEN is; Astra DB needs both)")
            if not s.astra_token:
                raise ConfigError("ASTRA_TOKEN", "is not set (ASTRA_SECURE_BUNDLE_PATH is; Astra DB needs both)")
            bundle = os.path.abspath(os.path.expanduser(s.astra_bundle_path))
            if not os.path.isfile(bundle):
                raise ConfigError("ASTRA_SECURE_BUNDLE_PATH", f"points to {bundle}, which is not a file")
            kwargs["cloud"] = {"secure_connect_bundle": bundle, "connect_timeout": self._connect_timeout}
            kwargs["auth_provider"] = PlainTextAuthProvider("token", s.astra_token)
        else:
            points = tuple(s.cassandra_contact_points or ())
            if not points:
                raise ConfigError("CASSANDRA_CONTACT_POINTS", "is empty")
            kwargs["contact_points"] = list(points)
            kwargs["port"] = int(s.cassandra_port)
            # Cassandra 4.0+ speaks protocol v5; pinning it skips the driver's DSE-version probing
            # (two refused handshakes and a warning per connection). Astra negotiates its own.
            kwargs["protocol_version"] = 5
        return kwargs

    def _where(self) -> str:
        s = self.settings
        if s.astra_bundle_path:
            return f"Astra DB (bundle {s.astra_bundle_path}), keyspace {self.keyspace}"
        return f"Cassandra at {','.join(s.cassandra_contact_points)}:{s.cassandra_port}, keyspace {self.keyspace}"

    def _sess(self):
        if self._session is not None:
            return self._session
        with self._lock:
            if self._session is not None:
                return self._session
            from cassandra import InvalidRequest
            from cassandra.cluster import Cluster, NoHostAvailable

            kwargs = self.cluster_kwargs()
            try:
                cluster = Cluster(**kwargs)
            except Exception as exc:  # noqa: BLE001 - e.g. an unreadable secure-connect bundle
                raise CassandraUnavailable(f"cannot set up the driver for {self._where()}: {type(exc).__name__}: {exc}") from exc
            try:
                session = cluster.connect()
            except NoHostAvailable as exc:
                cluster.shutdown()
                raise CassandraUnavailable(f"cannot reach {self._where()}: {exc}") from exc
            try:
                session.set_keyspace(self.keyspace)
            except InvalidRequest as exc:
                cluster.shutdown()
                raise CassandraUnavailable(
                    f"keyspace {self.keyspace!r} does not exist on {self._where()}: create it first "
                    "(keyspace DDL is the operator's, never a migration's)"
                ) from exc
            self._cluster, self._session = cluster, session
            return session

    def close(self) -> None:
        with self._lock:
            if self._cluster is not None:
                self._cluster.shutdown()
            self._cluster = None
            self._session = None
            self._prepared = {}

    def ping(self) -> bool:
        try:
            self._sess().execute("SELECT release_version FROM system.local")
            return True
        except Exception:  # noqa: BLE001 - ping reports reachability, whatever the reason
            return False

    def _prepare(self, cql: str):
        stmt = self._prepared.get(cql)
        if stmt is None:
            from cassandra import ConsistencyLevel

            session = self._sess()
            with self._lock:
                stmt = self._prepared.get(cql)
                if stmt is None:
                    stmt = session.prepare(cql)
                    stmt.consistency_level = ConsistencyLevel.LOCAL_QUORUM
                    stmt.serial_consistency_level = ConsistencyLevel.LOCAL_SERIAL
                    stmt.fetch_size = PAGE_FETCH_SIZE
                    self._prepared[cql] = stmt
        return stmt

    def _run(self, cql: str, params: Iterable[Any] = (), serial: bool = False):
        stmt = self._prepare(cql).bind(list(params))
        if serial:
            from cassandra import ConsistencyLevel

            stmt.consistency_level = ConsistencyLevel.LOCAL_SERIAL
        return self._sess().execute(stmt)

    def _run_many(self, cql: str, param_rows: list[list[Any]]) -> list:
        """Execute one prepared statement for many rows with bounded concurrency; raise on the first error."""
        if not param_rows:
            return []
        from cassandra.concurrent import execute_concurrent_with_args

        stmt = self._prepare(cql)
        results = execute_concurrent_with_args(self._sess(), stmt, param_rows, concurrency=CONCURRENCY, raise_on_first_error=True)
        return [r for _, r in results]

    # ------------------------------------------------------------ encoding helpers
    @staticmethod
    def _enc(table: str, row: dict) -> list:
        return [codec.to_cassandra(table, c, v) for c, v in row.items()]

    @staticmethod
    def _dec(table: str, row: dict) -> dict:
        convert = _converted_columns(table)
        return {k: codec.from_cassandra(table, k, v) if v is not None and k in convert else v for k, v in row.items()}

    def _insert(self, table: str, row: dict, suffix: str = "") -> Any:
        cols = list(row)
        cql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}){suffix}"
        return self._run(cql, self._enc(table, row))

    def _insert_many(self, table: str, rows: list[dict]) -> None:
        if not rows:
            return
        groups: dict[tuple, list[list]] = {}
        for r in rows:
            groups.setdefault(tuple(r), []).append(self._enc(table, r))
        for cols, params in groups.items():
            cql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            self._run_many(cql, params)

    def _select_rows(self, table: str, where: dict, extra: str = "", params: tuple = (), limit: int | None = None, serial: bool = False) -> list[dict]:
        clause = " AND ".join(f"{k} = ?" for k in where)
        cql = f"SELECT * FROM {table} WHERE {clause}" + (f" AND {extra}" if extra else "")
        values = [codec.to_cassandra(table, k, v) for k, v in where.items()] + list(params)
        if limit is not None:
            cql += " LIMIT ?"
            values.append(int(limit))
        return [self._dec(table, r) for r in self._run(cql, values, serial=serial)]

    # ------------------------------------------------------------ schema admin
    def _table_exists(self, table: str) -> bool:
        rows = self._run(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ? AND table_name = ?", (self.keyspace, table)
        )
        return rows.one() is not None

    def _wait_for_schema_agreement(self) -> None:
        self._sess()
        if not self._cluster.control_connection.wait_for_schema_agreement():
            raise RuntimeError(f"schema agreement was not reached on {self._where()} after a DDL statement")

    def _execute_ddl(self, statement: str) -> None:
        from cassandra.query import SimpleStatement

        self._sess().execute(SimpleStatement(statement), timeout=max(self._request_timeout, 120.0))
        self._wait_for_schema_agreement()

    def _ensure_migrations_table(self) -> None:
        if self._migrations_table_ready:
            return
        if not self._table_exists(MIGRATIONS_TABLE):
            self._execute_ddl(MIGRATIONS_DDL)
        self._migrations_table_ready = True

    def applied_migrations(self) -> dict[str, dict]:
        if not self._migrations_table_ready and not self._table_exists(MIGRATIONS_TABLE):
            return {}
        rows = self._run(f"SELECT version, name, checksum, applied_at FROM {MIGRATIONS_TABLE} WHERE scope = ?", ("cql",))
        return {
            r["version"]: {
                "name": r["name"],
                "checksum": r["checksum"],
                # the same text form as the SQLite adapter's (ISO-8601 UTC, milliseconds)
                "applied_at": codec.to_sqlite("cron_health", "run_at", codec.from_cassandra("cron_health", "run_at", r["applied_at"])),
            }
            for r in rows
        }

    def actual_columns(self) -> dict[str, set]:
        out: dict[str, set] = {}
        for r in self._run("SELECT table_name, column_name FROM system_schema.columns WHERE keyspace_name = ?", (self.keyspace,)):
            if r["table_name"] != MIGRATIONS_TABLE:
                out.setdefault(r["table_name"], set()).add(r["column_name"])
        return out

    def apply_migration_statement(self, statement: str) -> None:
        """Execute one CQL DDL statement, then wait for schema agreement.

        `ALTER TABLE t ADD c type` is not idempotent in CQL (nor on Astra), so it is skipped when
        system_schema already lists the column.
        """
        added = alter_add(statement)
        if added:
            table, column, _ = added
            rows = self._run(
                "SELECT column_name FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ? AND column_name = ?",
                (self.keyspace, table, column),
            )
            if rows.one() is not None:
                return
        self._execute_ddl(statement)

    def record_migration(self, version: str, name: str, checksum: str) -> None:
        self._ensure_migrations_table()
        self._run(
            f"INSERT INTO {MIGRATIONS_TABLE} (scope, version, name, checksum, applied_at) VALUES (?, ?, ?, ?, ?)",
            ("cql", version, name, checksum, _now_utc()),
        )

    # ------------------------------------------------------------ search cache / lineage
    def _get_search(self, network: str, account: str) -> SearchCacheEntry | None:
        rows = self._select_rows("search_cache", {"network_name": network, "stellar_account": account})
        return codec.record(SearchCacheEntry, rows[0]) if rows else None

    def _get_lineage(self, network: str, account: str) -> LineageRecord | None:
        rows = self._select_rows("account_lineage", {"network_name": network, "stellar_account": account})
        return codec.record(LineageRecord, rows[0]) if rows else None

    def _get_lineages(self, network: str, accounts: list[str]) -> dict[str, LineageRecord]:
        return {
            r["stellar_account"]: codec.record(LineageRecord, self._dec("account_lineage", r))
            for r in self._read_lineage_columns(network, accounts, "*")
        }

    def _put_row(self, table: str, network: str, account: str, fields: dict) -> None:
        self._insert(table, {"network_name": network, "stellar_account": account, **fields})

    def _compare_and_set(self, table: str, network: str, account: str, expected: tuple | None, fields: dict,
                         fence: str | None = None) -> bool:
        if fence is not None and (expected is None or None in expected):
            raise ValueError("a fenced write expects a claimed row (a status, never a missing row)")
        if expected is None:
            cas = lambda: self._insert(table, {"network_name": network, "stellar_account": account, **fields}, " IF NOT EXISTS")  # noqa: E731
            return self._cas_with_readback(table, network, account, fields, cas, lambda rows: not rows)
        if not expected:
            return False
        values = [s for s in expected if s is not None]
        sets = ", ".join(f"{c} = ?" for c in fields)
        set_values = [codec.to_cassandra(table, c, v) for c, v in fields.items()]
        key = [network, account]
        base = f"UPDATE {table} SET {sets} WHERE network_name = ? AND stellar_account = ?"
        if fence is not None:
            # Our values on a row that still carries our token can only be our own write.
            cas = lambda: self._run(base + " IF status IN ? AND claim_token = ?", set_values + key + [values, fence])  # noqa: E731
            return self._cas_with_readback(
                table, network, account, {**fields, "claim_token": fence}, cas,
                lambda rows: bool(rows) and rows[0].get("status") in values and rows[0].get("claim_token") == fence,
            )
        if None not in expected:
            cas = lambda: self._run(base + " IF status IN ?", set_values + key + [values])  # noqa: E731
            return self._cas_with_readback(
                table, network, account, fields, cas, lambda rows: bool(rows) and rows[0].get("status") in values
            )
        # A None in `expected` matches an existing row without a status. `IF status = null` would
        # also match (and create) a missing row, so read first and CAS on the exact value seen.
        for _ in range(1000):
            rows = self._read_back(table, network, account)
            if not rows:
                return False
            current = rows[0].get("status")
            if current not in expected:
                return False
            if current is None:
                cas = lambda: self._run(base + " IF status = null", set_values + key)  # noqa: E731
            else:
                cas = lambda current=current: self._run(base + " IF status = ?", set_values + key + [current])  # noqa: E731
            outcome = self._cas_once(table, network, account, fields, cas)
            if outcome is not None:
                if outcome:
                    return True
                continue  # the status moved between the read and the CAS: look again
        raise RuntimeError(f"compare-and-set on {table} {network}/{account} did not settle")

    def _cas_once(self, table: str, network: str, account: str, fields: dict, cas) -> bool | None:
        """True (applied), False (not applied), None (unknown and the row does not show our write)."""
        try:
            return bool(cas().was_applied)
        except Exception as exc:  # noqa: BLE001 - only outcome-unknown errors are handled below
            if not _outcome_unknown(exc):
                raise
        rows = self._read_back(table, network, account)
        if rows and self._row_matches(table, rows[0], fields):
            return True
        return None

    def _cas_with_readback(self, table, network, account, fields, cas, retry_if) -> bool:
        """Run a CAS; after an unknown outcome, read back at LOCAL_SERIAL: our values there mean we
        won, `retry_if(rows)` says whether the CAS can still apply (then it is tried again)."""
        for _ in range(CAS_UNKNOWN_RETRIES):
            try:
                return bool(cas().was_applied)
            except Exception as exc:  # noqa: BLE001
                if not _outcome_unknown(exc):
                    raise
            rows = self._read_back(table, network, account)
            if rows and self._row_matches(table, rows[0], fields):
                return True  # our write landed (claims carry a unique claim_token)
            if not retry_if(rows):
                return False
            time.sleep(random.uniform(0.01, 0.1))
        raise RuntimeError(f"compare-and-set on {table} {network}/{account}: outcome still unknown after {CAS_UNKNOWN_RETRIES} tries")

    def _read_back(self, table: str, network: str, account: str) -> list[dict]:
        last: Exception | None = None
        for _ in range(CAS_UNKNOWN_RETRIES):
            try:
                return self._select_rows(table, {"network_name": network, "stellar_account": account}, serial=True)
            except Exception as exc:  # noqa: BLE001
                if not _outcome_unknown(exc):
                    raise
                last = exc
                time.sleep(random.uniform(0.01, 0.1))
        raise RuntimeError(f"could not read back {table} {network}/{account} at LOCAL_SERIAL: {last}")

    @staticmethod
    def _row_matches(table: str, row: dict, fields: dict) -> bool:
        for c, v in fields.items():
            want = codec.from_cassandra(table, c, codec.to_cassandra(table, c, v))
            if row.get(c) != want:
                return False
        return True

    # ------------------------------------------------------------ active work
    def _put_active(self, kind: str, network: str, account: str, status: str, updated_at: dt.datetime | None) -> None:
        self._insert(
            "active_work", {"kind": kind, "network_name": network, "stellar_account": account, "status": status, "updated_at": updated_at}
        )

    def _delete_active(self, kind: str, network: str, account: str) -> None:
        self._run("DELETE FROM active_work WHERE kind = ? AND network_name = ? AND stellar_account = ?", (kind, network, account))

    def _list_active(self, kind: str, limit: int) -> list[dict]:
        return self._select_rows("active_work", {"kind": kind}, limit=limit)

    # ------------------------------------------------------------ creation events / children
    def _add_creation_event(self, event: CreationEvent) -> None:
        self._insert("creation_events", codec.creation_event_row(event))

    def _get_creation_events(self, network: str, account: str) -> list[CreationEvent]:
        rows = self._select_rows("creation_events", {"network_name": network, "stellar_account": account})
        return [codec.record(CreationEvent, r) for r in rows]

    def _add_merge_event(self, event: MergeEvent) -> None:
        self._insert("merge_events", codec.merge_event_row(event))

    def _get_merge_events(self, network: str, account: str) -> list[MergeEvent]:
        rows = self._select_rows("merge_events", {"network_name": network, "stellar_account": account})
        return [codec.record(MergeEvent, r) for r in rows]

    def _put_ledger_anchors(self, network: str, rows: list[dict]) -> None:
        self._insert_many("ledger_anchors", rows)

    def _get_ledger_anchors(self, network: str) -> list[dict]:
        return self._select_rows("ledger_anchors", {"network_name": network})

    def _add_children(self, network: str, creator: str, children: list[ChildEdge]) -> None:
        self._insert_many("account_children", [codec.child_row(c) for c in children])

    def _get_children_page(self, network: str, creator: str, after: str | None, limit: int) -> Page:
        key = {"network_name": network, "creator": creator}
        if after:
            rows = self._select_rows("account_children", key, extra="child > ?", params=(after,), limit=limit + 1)
        else:
            rows = self._select_rows("account_children", key, limit=limit + 1)
        items = [codec.child_from_row(r) for r in rows[:limit]]
        return Page(items, items[-1].child if len(rows) > limit else None)

    # ------------------------------------------------------------ stages / cron
    def _record_stage(self, execution: StageExecution) -> None:
        self._insert("stage_executions", codec.stage_row(execution))

    def _get_stage_executions(self, network: str, account: str, limit: int) -> list[StageExecution]:
        rows = self._select_rows("stage_executions", {"network_name": network, "stellar_account": account}, limit=limit)
        return [codec.record(StageExecution, r) for r in rows]

    def _record_cron_run(self, run: CronRun) -> None:
        self._insert(
            "cron_health",
            {"job_name": run.job_name, "run_at": run.run_at, "status": run.status, "duration_ms": run.duration_ms, "details": run.details},
        )

    def _get_cron_runs(self, job_name: str, limit: int) -> list[CronRun]:
        rows = self._select_rows("cron_health", {"job_name": job_name}, limit=limit)
        return [codec.record(CronRun, r) for r in rows]

    # ------------------------------------------------------------ balance index / HVA
    def _put_balance(self, network: str, magnitude: int, balance: Decimal, account: str) -> None:
        self._insert("balance_index", {"network_name": network, "magnitude": magnitude, "xlm_balance": balance, "stellar_account": account})

    def _delete_balance(self, network: str, magnitude: int, balance: Decimal, account: str) -> None:
        self._run(
            "DELETE FROM balance_index WHERE network_name = ? AND magnitude = ? AND xlm_balance = ? AND stellar_account = ?",
            (network, magnitude, Decimal(balance), account),
        )

    def _read_balance_bucket(self, network: str, magnitude: int) -> Iterable[tuple[str, Decimal]]:
        rows = self._run(
            "SELECT stellar_account, xlm_balance FROM balance_index WHERE network_name = ? AND magnitude = ?", (network, magnitude)
        )
        return [(r["stellar_account"], r["xlm_balance"]) for r in rows]  # the driver pages through the partition

    def _get_leaderboard(self, network: str, threshold: int) -> tuple[dt.datetime | None, list[LeaderboardEntry]]:
        rows = self._select_rows("hva_leaderboard", {"network_name": network, "threshold": threshold})
        snapshot = rows[0]["snapshot_at"] if rows else None
        return snapshot, [LeaderboardEntry(r["rank"], r["stellar_account"], r["xlm_balance"]) for r in rows]

    def _put_leaderboard(self, network: str, threshold: int, entries: list[LeaderboardEntry], snapshot_at: dt.datetime) -> None:
        # Overwrite ranks 1..n, then drop the ranks beyond n with one range delete: a reader sees
        # either the old or the new entry at each rank, never an empty board.
        self._insert_many(
            "hva_leaderboard",
            [
                {
                    "network_name": network,
                    "threshold": threshold,
                    "rank": e.rank,
                    "stellar_account": e.stellar_account,
                    "xlm_balance": e.xlm_balance,
                    "snapshot_at": snapshot_at,
                }
                for e in entries
            ],
        )
        top = max((e.rank for e in entries), default=0)
        self._run("DELETE FROM hva_leaderboard WHERE network_name = ? AND threshold = ? AND rank > ?", (network, threshold, top))

    def _add_hva_events(self, events: list[HvaEvent]) -> None:
        by_table: dict[str, list[dict]] = {}
        for e in events:
            for table, row in codec.hva_event_rows(e).items():
                by_table.setdefault(table, []).append(row)
        for table, rows in by_table.items():
            self._insert_many(table, rows)

    def _get_hva_events(self, network: str, threshold: int, since: dt.datetime, until: dt.datetime, limit: int) -> list[HvaEvent]:
        out: list[HvaEvent] = []
        day = until.date()
        while day >= since.date() and len(out) < limit:
            rows = self._select_rows(
                "hva_changes_by_day",
                {"network_name": network, "threshold": threshold, "event_day": day},
                extra="event_time >= ? AND event_time <= ?",
                params=(since, until),
                limit=limit - len(out),
            )
            out.extend(codec.hva_event_from_row(r) for r in rows)
            day -= dt.timedelta(days=1)
        return out

    def _get_hva_events_for_account(self, network: str, account: str, day: dt.date) -> list[HvaEvent]:
        rows = self._select_rows("hva_changes_by_account", {"network_name": network, "stellar_account": account, "event_day": day})
        return [codec.hva_event_from_row(r) for r in rows]

    # ------------------------------------------------------------ config
    def _get_config(self) -> dict[str, Any]:
        rows = self._select_rows("pipeline_config", {"scope": "global"})
        return {r["config_key"]: json.loads(r["config_value"]) for r in rows}

    def _set_config(self, key: str, value: Any, now: dt.datetime) -> None:
        self._insert("pipeline_config", {"scope": "global", "config_key": key, "config_value": json.dumps(value), "updated_at": now})

    # ------------------------------------------------------------ spend (one conditional batch per change)
    # The month's total row and a reservation row change together in one single-partition
    # conditional batch on the total's version. An unknown outcome is resolved by a serial read of
    # the reservation row: its last_op is the one this write carried iff the write landed.
    def _get_spend_total(self, month: str, serial: bool = False) -> dict | None:
        return self._get_spend_reservation(month, SPEND_TOTAL_ROW, serial)

    def _legacy_month_spend(self, month: str) -> int:
        row = self._run("SELECT spent_micro_usd FROM bigquery_budget WHERE month = ?", (month,)).one()
        return int(row["spent_micro_usd"]) if row and row["spent_micro_usd"] is not None else 0

    def _get_spend_reservation(self, month: str, reservation_id: str, serial: bool = False) -> dict | None:
        for attempt in range(CAS_UNKNOWN_RETRIES):
            try:
                rows = self._select_rows("bigquery_spend_reservations", {"month": month, "reservation_id": reservation_id}, serial=serial)
                return rows[0] if rows else None
            except Exception as exc:  # noqa: BLE001
                if not serial or not _outcome_unknown(exc) or attempt == CAS_UNKNOWN_RETRIES - 1:
                    raise
                time.sleep(random.uniform(0.01, 0.1))
        return None

    def _total_statement(self, month: str, total: dict | None, spent: int, opened: set, close: set, now: dt.datetime) -> tuple[str, list]:
        """The total row's part of a batch: created (IF NOT EXISTS) or moved (IF version = seen)."""
        if total is None:
            return (
                "INSERT INTO bigquery_spend_reservations (month, reservation_id, spent_micro_usd, version, open_reservations, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS",
                [month, SPEND_TOTAL_ROW, spent, 1, opened, now],
            )
        version = total.get("version")
        ops = []
        params: list = [spent, int(version or 0) + 1]
        if opened:
            ops.append("open_reservations = open_reservations + ?")
            params.append(opened)
        if close:
            ops.append("open_reservations = open_reservations - ?")
            params.append(close)
        sets = ", ".join(["spent_micro_usd = ?", "version = ?", *ops, "updated_at = ?"])
        condition = "IF version = null" if version is None else "IF version = ?"
        params += [now, month, SPEND_TOTAL_ROW] + ([] if version is None else [int(version)])
        return (f"UPDATE bigquery_spend_reservations SET {sets} WHERE month = ? AND reservation_id = ? {condition}", params)

    def _spend_batch(self, month: str, reservation_id: str, op: str, statements: list[tuple[str, list]]) -> bool | None:
        """Run one spend batch. True applied, False refused (a lost race), None: the outcome was
        unknown and the serial read-back shows it did not land (retry)."""
        try:
            return bool(self._run_batch(statements).was_applied)
        except Exception as exc:  # noqa: BLE001
            if not _outcome_unknown(exc):
                raise
        row = self._get_spend_reservation(month, reservation_id, serial=True)
        return True if row is not None and row.get("last_op") == op else None

    def _reserve_spend(self, month: str, row: dict, budget_micro_usd: int) -> bool:
        rid = row["reservation_id"]
        cols = list(row)
        insert = (
            f"INSERT INTO bigquery_spend_reservations ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) IF NOT EXISTS",
            self._enc("bigquery_spend_reservations", row),
        )
        total = self._get_spend_total(month)
        for _ in range(10_000):
            spent = int(total["spent_micro_usd"] or 0) if total else self._legacy_month_spend(month)
            if spent + row["charged_micro_usd"] > budget_micro_usd:
                return False
            stmt = self._total_statement(month, total, spent + row["charged_micro_usd"], {rid}, set(), row["updated_at"])
            applied = self._spend_batch(month, rid, row["last_op"], [stmt, insert])
            if applied:
                return True
            if applied is False and self._get_spend_reservation(month, rid, serial=True) is not None:
                return True  # the id was reserved already (a caller retrying with the same id)
            total = self._get_spend_total(month, serial=True)
            time.sleep(random.uniform(0, 0.005))  # spread out the contenders a little
        raise RuntimeError(f"spend reservation for {month} did not settle")

    def _update_spend_reservation(
        self, month: str, reservation_id: str, expect_state: str, expect_charged: int, fields: dict, delta: int, close: bool
    ) -> bool:
        sets = ", ".join(f"{c} = ?" for c in fields)
        update = (
            f"UPDATE bigquery_spend_reservations SET {sets} WHERE month = ? AND reservation_id = ? IF state = ? AND charged_micro_usd = ?",
            self._enc("bigquery_spend_reservations", fields) + [month, reservation_id, expect_state, expect_charged],
        )
        total = self._get_spend_total(month)
        for _ in range(10_000):
            if total is None:
                return False  # no total row: the reservation cannot exist either
            stmt = self._total_statement(
                month, total, int(total["spent_micro_usd"] or 0) + delta, set(), {reservation_id} if close else set(), fields["updated_at"]
            )
            if self._spend_batch(month, reservation_id, fields["last_op"], [stmt, update]):
                return True
            current = self._get_spend_reservation(month, reservation_id, serial=True)
            if current is None or current["state"] != expect_state or int(current["charged_micro_usd"]) != expect_charged:
                return False  # changed by someone else: the caller re-reads and decides again
            total = self._get_spend_total(month, serial=True)
            time.sleep(random.uniform(0, 0.005))
        raise RuntimeError(f"spend reservation {reservation_id} of {month} did not settle")

    def _insert_spend_row(self, row: dict) -> None:
        self._insert("bigquery_spend_ledger", row)

    def _get_spend_ledger(self, month: str, limit: int) -> list[dict]:
        return self._select_rows("bigquery_spend_ledger", {"month": month}, limit=limit)

    # ------------------------------------------------------------ bounded scans
    def _scan(self, table: str, network: str | None, max_rows: int) -> Iterator[dict]:
        """At most max_rows rows, paged by the driver. With a network, rows of other networks are
        skipped client side (no ALLOW FILTERING), examining at most a bounded number of rows."""
        has_network = "network_name" in codec.column_types()[table]
        if network is None or not has_network:
            rows = self._run(f"SELECT * FROM {table} LIMIT ?", (max_rows,))
            return (self._dec(table, r) for r in rows)
        examine = max(max_rows * SCAN_EXAMINE_FACTOR, SCAN_EXAMINE_MIN)
        rows = self._run(f"SELECT * FROM {table} LIMIT ?", (examine,))

        def gen() -> Iterator[dict]:
            returned = 0
            for r in rows:
                if r["network_name"] == network:
                    yield self._dec(table, r)
                    returned += 1
                    if returned >= max_rows:
                        return

        return gen()

    # ------------------------------------------------------------ exact pipeline counters (common/store/counted_state.py)
    def _apply_pipeline_state(self, network: str, shard: int, account: str, state: Any, delta) -> None:
        """One single-partition conditional batch: the account's counted state and the shard's
        totals row change together, conditional on the totals' version (a lost race re-reads)."""
        from common.store.counted_state import COUNTS_KEY, state_from_row

        key = [network, shard]
        for _ in range(10_000):
            rows = {
                r["stellar_account"]: r
                for r in self._run(
                    "SELECT stellar_account, status, pipeline_source, completed_hour, counts, version FROM pipeline_state "
                    "WHERE network_name = ? AND shard = ? AND stellar_account IN ?",
                    key + [[account, COUNTS_KEY]],
                    serial=True,
                )
            }
            old = state_from_row(rows.get(account))
            if old == state:
                return
            counts_row = rows.get(COUNTS_KEY)
            counts = json.loads(counts_row["counts"]) if counts_row and counts_row["counts"] else {}
            new_counts = json.dumps(delta(counts, old, state), sort_keys=True)
            statements: list[tuple[str, list]] = []
            if counts_row is None:
                statements.append((
                    "INSERT INTO pipeline_state (network_name, shard, stellar_account, counts, version) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS",
                    key + [COUNTS_KEY, new_counts, 1],
                ))
            elif counts_row["version"] is None:
                statements.append((
                    "UPDATE pipeline_state SET counts = ?, version = ? WHERE network_name = ? AND shard = ? AND stellar_account = ? IF version = null",
                    [new_counts, 1] + key + [COUNTS_KEY],
                ))
            else:
                version = int(counts_row["version"])
                statements.append((
                    "UPDATE pipeline_state SET counts = ?, version = ? WHERE network_name = ? AND shard = ? AND stellar_account = ? IF version = ?",
                    [new_counts, version + 1] + key + [COUNTS_KEY, version],
                ))
            if state is None:
                statements.append((
                    "DELETE FROM pipeline_state WHERE network_name = ? AND shard = ? AND stellar_account = ?", key + [account]
                ))
            else:
                st = state.as_row()
                statements.append((
                    "INSERT INTO pipeline_state (network_name, shard, stellar_account, status, pipeline_source, completed_hour, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    key + [account, st["status"], st["pipeline_source"], st["completed_hour"], _now_utc()],
                ))
            try:
                applied = self._run_batch(statements).was_applied
            except Exception as exc:  # noqa: BLE001
                if not _outcome_unknown(exc):
                    raise
                applied = False  # re-read: if it landed, old == state now and we return
            if applied:
                return
            time.sleep(random.uniform(0, 0.005))
        raise RuntimeError(f"pipeline counters for {network} shard {shard} did not settle")

    def _run_batch(self, statements: list[tuple[str, list]]):
        """A single-partition (conditional) logged batch of prepared statements."""
        from cassandra import ConsistencyLevel
        from cassandra.query import BatchStatement, BatchType

        batch = BatchStatement(
            batch_type=BatchType.LOGGED,
            consistency_level=ConsistencyLevel.LOCAL_QUORUM,
            serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL,
        )
        for cql, params in statements:
            batch.add(self._prepare(cql), params)
        return self._sess().execute(batch)

    def _read_pipeline_counts(self, network: str, shards: list[int]) -> list[dict[str, int]]:
        from common.store.counted_state import COUNTS_KEY

        results = self._run_many(
            "SELECT counts FROM pipeline_state WHERE network_name = ? AND shard = ? AND stellar_account = ?",
            [[network, s, COUNTS_KEY] for s in shards],
        )
        return [json.loads(r["counts"]) for rows in results for r in rows if r["counts"]]

    def _mark_stats_dirty(self, network: str, bucket: str, account: str, marked_at: dt.datetime) -> None:
        from common.store.counted_state import DIRTY_TTL_HOURS

        self._run(
            "INSERT INTO pipeline_state_dirty (network_name, bucket, stellar_account, marked_at) VALUES (?, ?, ?, ?) USING TTL ?",
            (network, bucket, account, marked_at, DIRTY_TTL_HOURS * 3600),
        )

    def _read_stats_dirty(self, network: str, bucket: str, limit: int) -> list[str]:
        rows = self._run(
            "SELECT stellar_account FROM pipeline_state_dirty WHERE network_name = ? AND bucket = ? LIMIT ?", (network, bucket, limit)
        )
        return [r["stellar_account"] for r in rows]

    def _prune_stats_dirty(self, network: str, before_bucket: str) -> None:
        """Nothing to do: markers are written with a TTL (DIRTY_TTL_HOURS) and expire by themselves,
        and a past hour's partition is never read again."""

    # ------------------------------------------------------------ children summaries
    def _put_children_summary(self, network: str, creator: str, row: dict) -> None:
        self._insert("children_summary", {"network_name": network, "creator": creator, **row})
        self._insert(
            "children_summary_index",
            {"network_name": network, "creator": creator, "child_count": row["child_count"], "computed_at": row["computed_at"]},
        )

    def _get_children_summary(self, network: str, creator: str) -> dict | None:
        rows = self._select_rows("children_summary", {"network_name": network, "creator": creator})
        return rows[0] if rows else None

    def _list_children_summaries(self, network: str, limit: int) -> list[dict]:
        rows = self._select_rows("children_summary_index", {"network_name": network}, limit=limit)
        return [{"creator": r["creator"], "child_count": r["child_count"], "computed_at": r["computed_at"]} for r in rows]

    # ------------------------------------------------------------ bounded leaderboard, bulk balances
    def _get_leaderboard_top(self, network: str, threshold: int, limit: int) -> tuple[dt.datetime | None, list[LeaderboardEntry]]:
        rows = self._select_rows("hva_leaderboard", {"network_name": network, "threshold": threshold}, limit=limit)
        snapshot = rows[0]["snapshot_at"] if rows else None
        return snapshot, [LeaderboardEntry(r["rank"], r["stellar_account"], r["xlm_balance"]) for r in rows]

    def _put_balances(self, network: str, rows: list[tuple[int, Decimal, str]]) -> None:
        self._run_many(
            "INSERT INTO balance_index (network_name, magnitude, xlm_balance, stellar_account) VALUES (?, ?, ?, ?)",
            [[network, m, Decimal(b), a] for m, b, a in rows],
        )

    # ------------------------------------------------------------ the Hubble sync (0012)
    def _sync_upsert(self, table: str, rows: list[dict]) -> None:
        for row in rows:
            self._insert(table, row)

    def _sync_select(self, table: str, where: dict) -> list[dict]:
        return self._select_rows(table, where)

    def _gone_accounts(self, network: str, accounts: list[str]) -> set[str]:
        rows = self._read_lineage_columns(network, accounts, "deleted, merged_at")
        return {r["stellar_account"] for r in rows if r["deleted"] or r["merged_at"] is not None}

    # ------------------------------------------------------------ bulk writes (common/store/bulk.py)
    # Per chunk, requests are grouped by replica set (token-aware): the stored lineage fields are
    # read with IN lists of at most BULK_KEYS_PER_READ accounts of one replica set, and the writes
    # go as unlogged batches of at most BULK_PARTITIONS_PER_BATCH partitions of one replica set and
    # BULK_BATCH_ROWS statements (an account's creation events and lineage row share the partition
    # key (network, account): one mutation). At most BULK_IN_FLIGHT requests are in flight.
    def _bulk_write_creations(self, chunk: bulk.CreationChunk, now: dt.datetime) -> bulk.BulkCounts:
        types = codec.column_types()
        with_ledger = "creation_ledger" in types["account_lineage"]
        network = chunk.network
        cols = "stellar_creator_account, account_creation_date" + (", creation_ledger" if with_ledger else "")
        stored = {
            r["stellar_account"]: bulk.Stored(r["stellar_creator_account"], as_utc(r["account_creation_date"]), r.get("creation_ledger"))
            for r in self._read_lineage_columns(network, chunk.accounts, cols)
        }

        def earliest_events(ties):
            stmt = self._prepare(
                "SELECT stellar_account, created_at, operation_id, creator FROM creation_events "
                "WHERE network_name = ? AND stellar_account = ? AND created_at = ?"
            )
            out: dict[str, bulk.StoredEvent] = {}
            for r in self._bulk_run(stmt.bind([network, a, at]) for a, at in ties):
                e = bulk.StoredEvent(as_utc(r["created_at"]), r["operation_id"], r["creator"])
                known = out.get(r["stellar_account"])
                if known is None or bulk.operation_key(e.operation_id) < bulk.operation_key(known.operation_id):
                    out[r["stellar_account"]] = e
            return out

        def stored_pairs(pairs):
            stmt = self._prepare(
                "SELECT creator, child, created_at, operation_id FROM account_children WHERE network_name = ? AND creator = ? AND child = ?"
            )
            return {
                (r["creator"], r["child"]): bulk.StoredEvent(as_utc(r["created_at"]), r["operation_id"], r["creator"])
                for r in self._bulk_run(stmt.bind([network, c, a]) for c, a in pairs)
            }

        plan = chunk.plan(stored, now, with_ledger, earliest_events, stored_pairs)
        rows = _BulkRows(self, types)
        rows.add("creation_events", bulk.EVENT_COLUMNS, plan.event_rows())
        rows.add_dicts("account_lineage", plan.lineage)
        rows.add("account_children", bulk.CHILD_COLUMNS, plan.child_rows())
        # All made before the first is sent: made while sending, they hold the GIL from the driver's
        # I/O thread, and fewer requests are in flight (measured: 10-30% fewer rows/s).
        self._bulk_send(list(rows.statements()))
        return plan.counts

    def _bulk_write_states(self, network: str, states: list[bulk.AccountStateRow], now: dt.datetime) -> bulk.BulkCounts:
        types = codec.column_types()
        accounts = list(dict.fromkeys(s.account for s in states))
        stored = {r["stellar_account"]: r["xlm_balance"] for r in self._read_lineage_columns(network, accounts, "xlm_balance")}
        plan = bulk.plan_states(network, states, stored, now, "deleted" in types["account_lineage"])
        rows = _BulkRows(self, types)
        rows.add_dicts("account_lineage", plan.lineage)
        partitions = dict(rows.statements())
        delete = self._prepare(
            "DELETE FROM balance_index WHERE network_name = ? AND magnitude = ? AND xlm_balance = ? AND stellar_account = ?"
        )
        put = self._prepare("INSERT INTO balance_index (network_name, magnitude, xlm_balance, stellar_account) VALUES (?, ?, ?, ?)")
        # A removed entry is never the entry put for the same account (the balance changed), so
        # both can share a batch (and its timestamp). The index partition is (network, magnitude).
        for stmt, entries in ((delete, plan.index_deletes), (put, plan.index_puts)):
            for m, b, a in entries:
                partitions.setdefault(_partition_key(network, m), []).append(stmt.bind([network, m, Decimal(b), a]))
        self._bulk_send(list(partitions.items()))
        return plan.counts

    def _read_lineage_columns(self, network: str, accounts: list[str], columns: str) -> list[dict]:
        """The given lineage columns ("*": all) of those accounts that have a row: IN reads of at
        most BULK_KEYS_PER_READ accounts of one replica set, in parallel. Each goes to a replica of
        all its keys (no coordinator fan-out), and a request costs the driver far more CPU than a
        row: measured on one node, about 10x the rows/s of one single-partition read per account."""
        select = "*" if columns == "*" else f"stellar_account, {columns}"
        stmt = self._prepare(f"SELECT {select} FROM account_lineage WHERE network_name = ? AND stellar_account IN ?")
        routed = _routed_statement_class()
        return self._bulk_run(
            routed(stmt, routing_key=_partition_key(network, keys[0])).bind([network, keys])
            for keys in self._by_replicas([(_partition_key(network, a), a) for a in accounts], BULK_KEYS_PER_READ)
        )

    def _by_replicas(self, items: list[tuple[bytes, Any]], size: int) -> Iterator[list]:
        """Items (routing key, value) grouped by the replica set of their partition, `size` values a
        group at most, in order of first appearance (one group when the driver knows no token map,
        or the cluster has one node)."""
        metadata = self._cluster.metadata if self._cluster is not None else None
        if metadata is not None and len(metadata.all_hosts()) <= 1:
            metadata = None  # every partition has the same replica set
        groups: dict[frozenset, list] = {}
        for key, value in items:
            replicas = frozenset(metadata.get_replicas(self.keyspace, key)) if metadata is not None else frozenset()
            group = groups.setdefault(replicas, [])
            group.append(value)
            if len(group) == size:
                yield group
                groups[replicas] = []
        yield from (g for g in groups.values() if g)

    def _bulk_run(self, statements: Iterable) -> list[dict]:
        """Execute the statements with at most BULK_IN_FLIGHT in flight; return the rows read (a
        single page each: bulk reads are small); raise the first error.

        Requests carry no per-request client timer: the driver's timer and its future form a
        reference cycle that keeps every finished request in memory until a full garbage
        collection (measured: a 6x longer stream, 2x the peak). Instead the call fails when no
        request has finished for the store's request timeout (server-side timeouts still apply)."""
        from cassandra import OperationTimedOut

        session = self._sess()
        progress = threading.Condition()
        state = {"in_flight": 0, "error": None}
        rows: list[dict] = []

        def finished(result=None, error=None):
            with progress:
                state["in_flight"] -= 1
                if error is not None and state["error"] is None:
                    state["error"] = error
                elif result:
                    rows.extend(result)
                progress.notify()

        def wait_until(ready) -> None:
            while not ready():
                if not progress.wait(self._request_timeout):
                    raise OperationTimedOut(f"bulk write: no request finished in {self._request_timeout:.0f} s ({self._where()})")

        for stmt in statements:
            with progress:
                wait_until(lambda: state["in_flight"] < BULK_IN_FLIGHT or state["error"] is not None)
                if state["error"] is not None:
                    break
                state["in_flight"] += 1
            future = session.execute_async(stmt, timeout=None)
            future.add_callbacks(lambda result: finished(result=result), lambda error: finished(error=error))
        with progress:
            wait_until(lambda: state["in_flight"] == 0)
        if state["error"] is not None:
            raise state["error"]
        return rows

    def _bulk_send(self, partitions: Iterable[tuple[bytes, list]]) -> None:
        """Write (routing key, bound statements of that partition) pairs: unlogged batches of one
        replica set, at most BULK_PARTITIONS_PER_BATCH partitions and BULK_BATCH_ROWS statements each
        (a lone statement too: a batch of one), BULK_IN_FLIGHT requests at a time."""
        from cassandra import ConsistencyLevel
        from cassandra.query import BatchStatement, BatchType

        def request(stmts):
            batch = BatchStatement(batch_type=BatchType.UNLOGGED, consistency_level=ConsistencyLevel.LOCAL_QUORUM)
            for s in stmts:
                batch.add(s)
            return batch

        def requests():
            pieces = ((key, stmts[i : i + BULK_BATCH_ROWS]) for key, stmts in partitions for i in range(0, len(stmts), BULK_BATCH_ROWS))
            for group in self._by_replicas(pieces, BULK_PARTITIONS_PER_BATCH):
                batch: list = []
                for stmts in group:
                    if batch and len(batch) + len(stmts) > BULK_BATCH_ROWS:
                        yield request(batch)
                        batch = []
                    batch.extend(stmts)
                if batch:
                    yield request(batch)

        self._bulk_run(requests())


class _BulkRows:
    """The statements of one bulk write, grouped by partition (an account's creation events and
    lineage row share one; its children rows are its creator's), their values serialized here
    rather than by bind(): each distinct non-text value once (a timestamp shared by an event and
    its child row, the network, the source, repeated balances), text as bind() would. The columns
    the schema lacks (e.g. `ledger` before 0008) are dropped; JSON and set values go through codec.to_cassandra."""

    def __init__(self, store: "CassandraStore", types: dict):
        self.store = store
        self.types = types
        self.memos: dict = {}
        self.partitions: dict[tuple, list] = {}  # partition key values -> [(make, row)]

    def add(self, table: str, columns: tuple[str, ...], rows: Iterable[tuple]) -> None:
        """A statement per row (value tuples in `columns` order), under its partition."""
        make, key_at = self._maker(table, columns)
        partitions = self.partitions
        for row in rows:
            key = tuple([row[i] for i in key_at])
            group = partitions.get(key)
            if group is None:
                partitions[key] = [(make, row)]
            else:
                group.append((make, row))

    def add_dicts(self, table: str, rows: list[dict]) -> None:
        """add() for dict rows, by set of keys."""
        groups: dict[tuple, list] = {}
        for row in rows:
            groups.setdefault(tuple(row), []).append(tuple(row.values()))
        for columns, values in groups.items():
            self.add(table, columns, values)

    def statements(self) -> Iterator[tuple[bytes, list]]:
        """(routing key, statements) per partition, made as they are asked for."""
        for group in self.partitions.values():
            stmts = [make(row) for make, row in group]
            yield stmts[0].routing_key, stmts

    def _maker(self, table: str, columns: tuple[str, ...]) -> tuple[Callable, list[int]]:
        """A function row -> its statement, and where the row holds the partition key columns."""
        have = self.types[table]
        keep = [i for i, c in enumerate(columns) if c in have]
        cols = tuple(columns[i] for i in keep)
        prepared = self.store._prepare(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})")
        proto = prepared.protocol_version
        serializers = [
            self._serializer(spec.type, proto, table, spec.name if convert else None)
            for spec, convert in zip(prepared.column_metadata, _bulk_converted(table, cols))
        ]
        key_at = list(prepared.routing_key_indexes)
        cls, keyspace, pack = _prebound_class(), self.store.keyspace, _key_component
        all_columns = len(keep) == len(columns)

        def make(row):
            if not all_columns:
                row = [row[i] for i in keep]
            values = [None if v is None else ser(v) for ser, v in zip(serializers, row)]
            key = values[key_at[0]] if len(key_at) == 1 else b"".join([pack(values[i]) for i in key_at])
            return cls(prepared, values, key, keyspace)

        return make, [keep[i] for i in key_at]

    def _serializer(self, cqltype, proto: int, table: str, json_column: str | None):
        serialize = cqltype.serialize
        if json_column is not None:
            return lambda v: serialize(codec.to_cassandra(table, json_column, v), proto)
        if cqltype.typename in ("text", "varchar"):
            return str.encode  # UTF8Type.serialize of a str
        memo = self.memos.setdefault(cqltype.typename, {})
        decimal = cqltype.typename == "decimal"  # 1.5 and 1.50 are equal but keep their own scale

        def cached(v):
            k = v.as_tuple() if decimal else v
            b = memo.get(k)
            if b is None:
                b = memo[k] = serialize(v, proto)
            return b

        return cached


def _key_component(value: bytes) -> bytes:
    """One serialized partition key column in a composite routing key (as the driver packs it)."""
    return len(value).to_bytes(2, "big") + value + b"\x00"


def _partition_key(*parts) -> bytes:
    """The routing key of a partition key of text/int columns, as the driver builds it for a
    composite key (each part: 2-byte length, bytes, 0); a single column is its bytes alone."""
    raw = [p.encode() if isinstance(p, str) else int(p).to_bytes(4, "big", signed=True) for p in parts]
    if len(raw) == 1:
        return raw[0]
    return b"".join(_key_component(r) for r in raw)


@functools.lru_cache(maxsize=1)
def _prebound_class():
    from cassandra.query import BoundStatement

    class PreboundStatement(BoundStatement):
        """A bound statement of values serialized already (_BulkRows), for a BatchStatement:
        the batch takes the prepared statement's id, `values` and the routing key."""

        def __init__(self, prepared_statement, values: list, routing_key: bytes, keyspace: str):
            self.prepared_statement = prepared_statement
            self.values = values
            self._routing_key = routing_key
            self.keyspace = keyspace

        @property
        def routing_key(self):
            return self._routing_key

    return PreboundStatement


@functools.lru_cache(maxsize=1)
def _routed_statement_class():
    from cassandra.query import BoundStatement

    class RoutedBoundStatement(BoundStatement):
        """A bound statement with a given routing key: an IN read whose keys share one replica set
        (the driver computes no routing key for a list-valued partition key column)."""

        @property
        def routing_key(self):
            return self._routing_key

    return RoutedBoundStatement


@functools.lru_cache(maxsize=256)
def _bulk_converted(table: str, cols: tuple[str, ...]) -> tuple[bool, ...]:
    """Which bulk values need codec.to_cassandra: JSON text and sets. Bulk rows carry exact
    Decimals and aware UTC datetimes already (common/store/bulk.py), which the driver takes as they are."""
    types = codec.column_types()[table]
    return tuple((table, c) in codec.JSON_COLUMNS or types.get(c, "text").startswith("set<") for c in cols)


@functools.lru_cache(maxsize=None)
def _converted_columns(table: str) -> frozenset:
    """Columns whose driver value codec.from_cassandra changes (timestamps, dates, sets, JSON text);
    every other value is returned as the driver gives it, which is what the codec would return."""
    types = codec.column_types().get(table, {})
    return frozenset(
        c for c, t in types.items() if t in ("timestamp", "date") or t.startswith("set<") or (table, c) in codec.JSON_COLUMNS
    )


def _outcome_unknown(exc: BaseException) -> bool:
    """A timeout (server- or client-side) after which a conditional write may or may not have landed."""
    from cassandra import OperationTimedOut, ReadTimeout, WriteTimeout
    from cassandra.protocol import ErrorMessage

    if isinstance(exc, (WriteTimeout, ReadTimeout, OperationTimedOut)):
        return True
    # Protocol v5 CAS_WRITE_UNKNOWN (0x1700), reported by Cassandra 4.0+ when a Paxos round may have applied.
    return isinstance(exc, ErrorMessage) and getattr(exc, "code", None) == 0x1700
