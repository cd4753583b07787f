"""The embedded SQLite Store: the zero-setup default (WAL, safe across threads and processes)."""
from __future__ import annotations

import datetime as dt
import functools
import json
import operator
import os
import sqlite3
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Iterator

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
)
from common.store import bulk, codec
from common.store.port import SPEND_TOTAL_ROW, Store
from common.store.schema import alter_add, to_sqlite
from common.sqlite_writer import writer_lock


class SQLiteStore(Store):
    backend = "sqlite"
    unavailable_errors = (sqlite3.OperationalError,)
    # A chunk is one transaction. Its random account ids dirty pages all over six B-trees, and each
    # commit writes every dirty page, so at a million rows commits dominate: larger chunks write
    # each page for more rows (measured at 1,000,000 rows: 7,300 rows/s with 20,000 a chunk, 10,000
    # with 50,000, 11,100 with 100,000), for Python memory of about 1.5 KB a row of the chunk and a
    # write lock held about 5 s (the busy timeout is 60 s).
    BULK_CHUNK_SIZE = 50_000

    def __init__(self, path: str | os.PathLike, timeout_s: float = 60.0):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._timeout = timeout_s
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------ connections
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _tx(self):
        return _Transaction(self._conn(), writer_lock(self.path))

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.ProgrammingError:
                    pass
            self._all.clear()
        self._local = threading.local()

    def ping(self) -> bool:
        try:
            self._conn().execute("SELECT 1").fetchone()
            return True
        except sqlite3.Error:
            return False

    # ------------------------------------------------------------ schema admin
    def _ensure_migrations_table(self) -> None:
        self._conn().execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (scope TEXT, version TEXT, name TEXT, checksum TEXT, "
            "applied_at TEXT, PRIMARY KEY (scope, version))"
        )

    def applied_migrations(self) -> dict[str, dict]:
        self._ensure_migrations_table()
        rows = self._conn().execute("SELECT version, name, checksum, applied_at FROM schema_migrations WHERE scope='cql'")
        return {r["version"]: {"name": r["name"], "checksum": r["checksum"], "applied_at": r["applied_at"]} for r in rows}

    def actual_columns(self) -> dict[str, set]:
        conn = self._conn()
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: {r[1] for r in conn.execute(f'PRAGMA table_info("{t}")')} for t in tables if t != "schema_migrations"}

    def apply_migration_statement(self, statement: str) -> None:
        added = alter_add(statement)
        if added and added[1] in self.actual_columns().get(added[0], set()):
            return  # already there: ALTER ADD is not idempotent
        for sql in to_sqlite(statement):
            self._conn().execute(sql)

    def record_migration(self, version: str, name: str, checksum: str) -> None:
        self._ensure_migrations_table()
        self._conn().execute(
            "INSERT OR REPLACE INTO schema_migrations (scope, version, name, checksum, applied_at) VALUES ('cql', ?, ?, ?, ?)",
            (version, name, checksum, codec.to_sqlite("cron_health", "run_at", dt.datetime.now(dt.timezone.utc))),
        )

    # ------------------------------------------------------------ generic row helpers
    def _decode(self, table: str, row: sqlite3.Row) -> dict:
        return {k: codec.from_sqlite(table, k, row[k]) for k in row.keys()}

    @staticmethod
    @functools.lru_cache(maxsize=512)
    def _upsert_sql(table: str, cols: tuple[str, ...]) -> str:
        key = codec.primary_key(table)
        updates = [c for c in cols if c not in key]
        sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        if updates:
            sql += f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET " + ", ".join(f"{c}=excluded.{c}" for c in updates)
        else:
            sql += " ON CONFLICT DO NOTHING"
        return sql

    def _upsert(self, conn: sqlite3.Connection, table: str, row: dict) -> None:
        cols = tuple(row)
        conn.execute(self._upsert_sql(table, cols), [codec.to_sqlite(table, c, row[c]) for c in cols])

    def _upsert_many(self, conn: sqlite3.Connection, table: str, rows: list[dict]) -> None:
        if not rows:
            return
        cols = tuple(rows[0])
        conn.executemany(self._upsert_sql(table, cols), [[codec.to_sqlite(table, c, r[c]) for c in cols] for r in rows])

    def _select(self, table: str, where: dict, order: str = "", limit: int | None = None, extra: str = "", params: tuple = ()) -> list[dict]:
        clause = " AND ".join(f"{k}=?" for k in where)
        sql = f"SELECT * FROM {table}" + (f" WHERE {clause}" if clause else "")
        if extra:
            sql += (" AND " if clause else " WHERE ") + extra
        if order:
            sql += f" ORDER BY {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        vals = tuple(codec.to_sqlite(table, k, v) for k, v in where.items()) + params
        return [self._decode(table, r) for r in self._conn().execute(sql, vals)]

    # ------------------------------------------------------------ search cache / lineage
    def _get_search(self, network: str, account: str) -> SearchCacheEntry | None:
        rows = self._select("search_cache", {"network_name": network, "stellar_account": account})
        return codec.record(SearchCacheEntry, rows[0]) if rows else None

    def _get_lineage(self, network: str, account: str) -> LineageRecord | None:
        rows = self._select("account_lineage", {"network_name": network, "stellar_account": account})
        return codec.record(LineageRecord, rows[0]) if rows else None

    def _get_lineages(self, network: str, accounts: list[str]) -> dict[str, LineageRecord]:
        out: dict[str, LineageRecord] = {}
        for i in range(0, len(accounts), 500):
            chunk = accounts[i : i + 500]
            rows = self._select(
                "account_lineage", {"network_name": network}, extra=f"stellar_account IN ({', '.join('?' * len(chunk))})", params=tuple(chunk)
            )
            for r in rows:
                out[r["stellar_account"]] = codec.record(LineageRecord, r)
        return out

    def _put_row(self, table: str, network: str, account: str, fields: dict) -> None:
        row = {"network_name": network, "stellar_account": account, **fields}
        self._upsert(self._conn(), table, row)

    def _compare_and_set(self, table: str, network: str, account: str, expected: tuple | None, fields: dict,
                         fence: str | None = None) -> bool:
        conn = self._conn()
        if fence is not None and (expected is None or None in expected):
            raise ValueError("a fenced write expects a claimed row (a status, never a missing row)")
        if expected is None:
            row = {"network_name": network, "stellar_account": account, **fields}
            cols = list(row)
            cur = conn.execute(
                f"INSERT OR IGNORE INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                [codec.to_sqlite(table, c, row[c]) for c in cols],
            )
            return cur.rowcount == 1
        if not expected:
            return False
        values = [s for s in expected if s is not None]
        conds = []
        if values:
            conds.append(f"status IN ({', '.join('?' * len(values))})")
        if None in expected:
            conds.append("status IS NULL")
        sets = ", ".join(f"{c}=?" for c in fields)
        fenced = "" if fence is None else " AND claim_token=?"
        # One statement: the check and the write are atomic (no other writer between them).
        cur = conn.execute(
            f"UPDATE {table} SET {sets} WHERE network_name=? AND stellar_account=? AND ({' OR '.join(conds)}){fenced}",
            [codec.to_sqlite(table, c, v) for c, v in fields.items()] + [network, account, *values]
            + ([] if fence is None else [fence]),
        )
        return cur.rowcount == 1

    # ------------------------------------------------------------ active work
    def _put_active(self, kind: str, network: str, account: str, status: str, updated_at: dt.datetime | None) -> None:
        self._upsert(
            self._conn(),
            "active_work",
            {"kind": kind, "network_name": network, "stellar_account": account, "status": status, "updated_at": updated_at},
        )

    def _delete_active(self, kind: str, network: str, account: str) -> None:
        self._conn().execute(
            "DELETE FROM active_work WHERE kind=? AND network_name=? AND stellar_account=?", (kind, network, account)
        )

    def _list_active(self, kind: str, limit: int) -> list[dict]:
        return self._select("active_work", {"kind": kind}, order="network_name, stellar_account", limit=limit)

    # ------------------------------------------------------------ creation events / children
    def _add_creation_event(self, event: CreationEvent) -> None:
        self._upsert(self._conn(), "creation_events", codec.creation_event_row(event))

    def _get_creation_events(self, network: str, account: str) -> list[CreationEvent]:
        rows = self._select("creation_events", {"network_name": network, "stellar_account": account}, order="created_at, operation_id")
        return [codec.record(CreationEvent, r) for r in rows]

    def _add_merge_event(self, event: MergeEvent) -> None:
        self._upsert(self._conn(), "merge_events", codec.merge_event_row(event))

    def _get_merge_events(self, network: str, account: str) -> list[MergeEvent]:
        rows = self._select("merge_events", {"network_name": network, "stellar_account": account}, order="merged_at, operation_id")
        return [codec.record(MergeEvent, r) for r in rows]

    def _put_ledger_anchors(self, network: str, rows: list[dict]) -> None:
        with self._tx() as conn:
            self._upsert_many(conn, "ledger_anchors", rows)

    def _get_ledger_anchors(self, network: str) -> list[dict]:
        return self._select("ledger_anchors", {"network_name": network})

    def _add_children(self, network: str, creator: str, children: list[ChildEdge]) -> None:
        with self._tx() as conn:
            self._upsert_many(conn, "account_children", [codec.child_row(c) for c in children])

    def _get_children_page(self, network: str, creator: str, after: str | None, limit: int) -> Page:
        rows = self._select(
            "account_children",
            {"network_name": network, "creator": creator},
            order="child",
            limit=limit + 1,
            extra="child > ?" if after else "",
            params=(after,) if after else (),
        )
        items = [codec.child_from_row(r) for r in rows[:limit]]
        return Page(items, items[-1].child if len(rows) > limit else None)

    # ------------------------------------------------------------ stages / cron
    def _record_stage(self, execution: StageExecution) -> None:
        self._upsert(self._conn(), "stage_executions", codec.stage_row(execution))

    def _get_stage_executions(self, network: str, account: str, limit: int) -> list[StageExecution]:
        rows = self._select(
            "stage_executions", {"network_name": network, "stellar_account": account}, order="started_at DESC, stage", limit=limit
        )
        return [codec.record(StageExecution, r) for r in rows]

    def _record_cron_run(self, run: CronRun) -> None:
        self._upsert(
            self._conn(),
            "cron_health",
            {"job_name": run.job_name, "run_at": run.run_at, "status": run.status, "duration_ms": run.duration_ms, "details": run.details},
        )

    def _get_cron_runs(self, job_name: str, limit: int) -> list[CronRun]:
        rows = self._select("cron_health", {"job_name": job_name}, order="run_at DESC", limit=limit)
        return [codec.record(CronRun, r) for r in rows]

    # ------------------------------------------------------------ balance index / HVA
    def _put_balance(self, network: str, magnitude: int, balance: Decimal, account: str) -> None:
        self._upsert(
            self._conn(), "balance_index", {"network_name": network, "magnitude": magnitude, "xlm_balance": balance, "stellar_account": account}
        )

    def _delete_balance(self, network: str, magnitude: int, balance: Decimal, account: str) -> None:
        self._conn().execute(
            "DELETE FROM balance_index WHERE network_name=? AND magnitude=? AND xlm_balance=? AND stellar_account=?",
            (network, magnitude, codec.to_sqlite("balance_index", "xlm_balance", balance), account),
        )

    def _read_balance_bucket(self, network: str, magnitude: int) -> Iterable[tuple[str, Decimal]]:
        cur = self._conn().execute(
            "SELECT stellar_account, xlm_balance FROM balance_index WHERE network_name=? AND magnitude=?", (network, magnitude)
        )
        return [(r[0], Decimal(r[1])) for r in cur]

    def _get_leaderboard(self, network: str, threshold: int) -> tuple[dt.datetime | None, list[LeaderboardEntry]]:
        rows = self._select("hva_leaderboard", {"network_name": network, "threshold": threshold}, order="rank")
        snapshot = rows[0]["snapshot_at"] if rows else None
        return snapshot, [LeaderboardEntry(r["rank"], r["stellar_account"], r["xlm_balance"]) for r in rows]

    def _put_leaderboard(self, network: str, threshold: int, entries: list[LeaderboardEntry], snapshot_at: dt.datetime) -> None:
        with self._tx() as conn:
            conn.execute("DELETE FROM hva_leaderboard WHERE network_name=? AND threshold=?", (network, threshold))
            for e in entries:
                self._upsert(
                    conn,
                    "hva_leaderboard",
                    {
                        "network_name": network,
                        "threshold": threshold,
                        "rank": e.rank,
                        "stellar_account": e.stellar_account,
                        "xlm_balance": e.xlm_balance,
                        "snapshot_at": snapshot_at,
                    },
                )

    def _add_hva_events(self, events: list[HvaEvent]) -> None:
        with self._tx() as conn:
            for e in events:
                for table, row in codec.hva_event_rows(e).items():
                    self._upsert(conn, table, row)

    def _get_hva_events(self, network: str, threshold: int, since: dt.datetime, until: dt.datetime, limit: int) -> list[HvaEvent]:
        out: list[HvaEvent] = []
        day = until.date()
        while day >= since.date() and len(out) < limit:
            rows = self._select(
                "hva_changes_by_day",
                {"network_name": network, "threshold": threshold, "event_day": day},
                order="event_time DESC, stellar_account",
                extra="event_time >= ? AND event_time <= ?",
                params=(codec.to_sqlite("hva_changes_by_day", "event_time", since), codec.to_sqlite("hva_changes_by_day", "event_time", until)),
                limit=limit - len(out),
            )
            out.extend(codec.hva_event_from_row(r) for r in rows)
            day -= dt.timedelta(days=1)
        return out

    def _get_hva_events_for_account(self, network: str, account: str, day: dt.date) -> list[HvaEvent]:
        rows = self._select(
            "hva_changes_by_account", {"network_name": network, "stellar_account": account, "event_day": day}, order="event_time DESC, threshold"
        )
        return [codec.hva_event_from_row(r) for r in rows]

    # ------------------------------------------------------------ config
    def _get_config(self) -> dict[str, Any]:
        rows = self._select("pipeline_config", {"scope": "global"})
        return {r["config_key"]: json.loads(r["config_value"]) for r in rows}

    def _set_config(self, key: str, value: Any, now: dt.datetime) -> None:
        self._upsert(
            self._conn(), "pipeline_config", {"scope": "global", "config_key": key, "config_value": json.dumps(value), "updated_at": now}
        )

    # ------------------------------------------------------------ spend (one transaction per change)
    def _get_spend_total(self, month: str) -> dict | None:
        return self._get_spend_reservation(month, SPEND_TOTAL_ROW)

    def _legacy_month_spend(self, month: str) -> int:
        row = self._conn().execute("SELECT spent_micro_usd FROM bigquery_budget WHERE month=?", (month,)).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def _get_spend_reservation(self, month: str, reservation_id: str) -> dict | None:
        rows = self._select("bigquery_spend_reservations", {"month": month, "reservation_id": reservation_id})
        return rows[0] if rows else None

    def _reserve_spend(self, month: str, row: dict, budget_micro_usd: int) -> bool:
        with self._tx() as conn:
            if self._get_spend_reservation(month, row["reservation_id"]) is not None:
                return True
            total = self._get_spend_total(month)
            spent = int(total["spent_micro_usd"] or 0) if total else self._legacy_month_spend(month)
            if spent + row["charged_micro_usd"] > budget_micro_usd:
                return False
            opened = sorted(set(total.get("open_reservations") or ()) | {row["reservation_id"]}) if total else [row["reservation_id"]]
            self._upsert(conn, "bigquery_spend_reservations", {
                "month": month, "reservation_id": SPEND_TOTAL_ROW, "spent_micro_usd": spent + row["charged_micro_usd"],
                "version": int(total["version"] or 0) + 1 if total else 1, "open_reservations": opened, "updated_at": row["updated_at"],
            })
            self._upsert(conn, "bigquery_spend_reservations", row)
            return True

    def _update_spend_reservation(
        self, month: str, reservation_id: str, expect_state: str, expect_charged: int, fields: dict, delta: int, close: bool
    ) -> bool:
        with self._tx() as conn:
            current = self._get_spend_reservation(month, reservation_id)
            if current is None or current["state"] != expect_state or int(current["charged_micro_usd"]) != expect_charged:
                return False
            total = self._get_spend_total(month)
            opened = set(total.get("open_reservations") or ())
            if close:
                opened.discard(reservation_id)
            self._upsert(conn, "bigquery_spend_reservations", {
                "month": month, "reservation_id": SPEND_TOTAL_ROW, "spent_micro_usd": int(total["spent_micro_usd"] or 0) + delta,
                "version": int(total["version"] or 0) + 1, "open_reservations": sorted(opened), "updated_at": fields["updated_at"],
            })
            self._upsert(conn, "bigquery_spend_reservations", {"month": month, "reservation_id": reservation_id, **fields})
            return True

    def _insert_spend_row(self, row: dict) -> None:
        self._upsert(self._conn(), "bigquery_spend_ledger", row)

    def _get_spend_ledger(self, month: str, limit: int) -> list[dict]:
        return self._select("bigquery_spend_ledger", {"month": month}, order="recorded_at DESC, query_id", limit=limit)

    # ------------------------------------------------------------ scans
    def _scan(self, table: str, network: str | None, max_rows: int) -> Iterator[dict]:
        has_network = "network_name" in codec.column_types()[table]
        where = {"network_name": network} if network is not None and has_network else {}
        # Materialised before yielding so a long-lived cursor never holds the read snapshot open.
        return iter(self._select(table, where, limit=max_rows))


    # ------------------------------------------------------------ exact pipeline counters (common/store/counted_state.py)
    def _apply_pipeline_state(self, network: str, shard: int, account: str, state, delta) -> None:
        from common.store.counted_state import COUNTS_KEY, state_from_row

        with self._tx() as conn:  # BEGIN IMMEDIATE: the read-modify-write is serialised
            key = (network, shard)
            row = conn.execute(
                "SELECT status, pipeline_source, completed_hour FROM pipeline_state WHERE network_name=? AND shard=? AND stellar_account=?",
                (*key, account),
            ).fetchone()
            old = state_from_row(dict(row) if row else None)
            if old == state:
                return
            counts_row = conn.execute(
                "SELECT counts, version FROM pipeline_state WHERE network_name=? AND shard=? AND stellar_account=?", (*key, COUNTS_KEY)
            ).fetchone()
            counts = json.loads(counts_row["counts"]) if counts_row and counts_row["counts"] else {}
            version = int(counts_row["version"] or 0) if counts_row else 0
            self._upsert(
                conn,
                "pipeline_state",
                {"network_name": network, "shard": shard, "stellar_account": COUNTS_KEY,
                 "counts": json.dumps(delta(counts, old, state), sort_keys=True), "version": version + 1},
            )
            if state is None:
                conn.execute("DELETE FROM pipeline_state WHERE network_name=? AND shard=? AND stellar_account=?", (*key, account))
            else:
                self._upsert(conn, "pipeline_state", {"network_name": network, "shard": shard, "stellar_account": account, **state.as_row()})

    def _read_pipeline_counts(self, network: str, shards: list[int]) -> list[dict[str, int]]:
        from common.store.counted_state import COUNTS_KEY

        rows = self._conn().execute(
            f"SELECT counts FROM pipeline_state WHERE network_name=? AND shard IN ({', '.join('?' * len(shards))}) AND stellar_account=?",
            (network, *shards, COUNTS_KEY),
        )
        return [json.loads(r[0]) for r in rows if r[0]]

    def _mark_stats_dirty(self, network: str, bucket: str, account: str, marked_at: dt.datetime) -> None:
        self._upsert(
            self._conn(),
            "pipeline_state_dirty",
            {"network_name": network, "bucket": bucket, "stellar_account": account, "marked_at": marked_at},
        )

    def _read_stats_dirty(self, network: str, bucket: str, limit: int) -> list[str]:
        rows = self._conn().execute(
            "SELECT stellar_account FROM pipeline_state_dirty WHERE network_name=? AND bucket=? ORDER BY stellar_account LIMIT ?",
            (network, bucket, limit),
        )
        return [r[0] for r in rows]

    def _prune_stats_dirty(self, network: str, before_bucket: str) -> None:
        self._conn().execute("DELETE FROM pipeline_state_dirty WHERE network_name=? AND bucket<?", (network, before_bucket))

    # ------------------------------------------------------------ children summaries
    def _put_children_summary(self, network: str, creator: str, row: dict) -> None:
        with self._tx() as conn:
            self._upsert(conn, "children_summary", {"network_name": network, "creator": creator, **row})
            self._upsert(
                conn,
                "children_summary_index",
                {"network_name": network, "creator": creator, "child_count": row["child_count"], "computed_at": row["computed_at"]},
            )

    def _get_children_summary(self, network: str, creator: str) -> dict | None:
        rows = self._select("children_summary", {"network_name": network, "creator": creator})
        return rows[0] if rows else None

    def _list_children_summaries(self, network: str, limit: int) -> list[dict]:
        rows = self._select("children_summary_index", {"network_name": network}, order="creator", limit=limit)
        return [{"creator": r["creator"], "child_count": r["child_count"], "computed_at": r["computed_at"]} for r in rows]

    # ------------------------------------------------------------ bounded leaderboard, bulk balances
    def _get_leaderboard_top(self, network: str, threshold: int, limit: int) -> tuple[dt.datetime | None, list[LeaderboardEntry]]:
        rows = self._select("hva_leaderboard", {"network_name": network, "threshold": threshold}, order="rank", limit=limit)
        snapshot = rows[0]["snapshot_at"] if rows else None
        return snapshot, [LeaderboardEntry(r["rank"], r["stellar_account"], r["xlm_balance"]) for r in rows]

    def _put_balances(self, network: str, rows: list[tuple[int, Decimal, str]]) -> None:
        with self._tx() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO balance_index (network_name, magnitude, xlm_balance, stellar_account) VALUES (?, ?, ?, ?)",
                [(network, m, format(b, "f"), a) for m, b, a in rows],
            )

    # ------------------------------------------------------------ the Hubble sync (0012)
    def _sync_upsert(self, table: str, rows: list[dict]) -> None:
        with self._tx() as conn:
            for row in rows:
                self._upsert(conn, table, row)

    def _sync_select(self, table: str, where: dict) -> list[dict]:
        return self._select(table, where)

    def _gone_accounts(self, network: str, accounts: list[str]) -> set[str]:
        out: set[str] = set()
        for i in range(0, len(accounts), 500):
            chunk = accounts[i : i + 500]
            rows = self._conn().execute(
                f"SELECT stellar_account FROM account_lineage WHERE network_name=? AND stellar_account IN ({', '.join('?' * len(chunk))}) "
                "AND (deleted = 1 OR merged_at IS NOT NULL)", (network, *chunk))
            out.update(r[0] for r in rows)
        return out

    # ------------------------------------------------------------ bulk writes (common/store/bulk.py)
    # One transaction per chunk (read, plan, executemany): a chunk is all-or-nothing, and writers
    # in other threads or processes are serialised, so "earliest creation wins" is exact here.
    def _bulk_write_creations(self, chunk: bulk.CreationChunk, now: dt.datetime) -> bulk.BulkCounts:
        types = codec.column_types()
        with_ledger = "creation_ledger" in types["account_lineage"]
        network = chunk.network
        with self._tx() as conn:
            cols = "stellar_creator_account, account_creation_date" + (", creation_ledger" if with_ledger else "")
            stored = {
                r[0]: bulk.Stored(r[1], _timestamp(r[2]), r[3] if with_ledger else None)
                for r in self._bulk_lineage(conn, network, chunk.accounts, cols, decode=False)
            }

            def earliest_events(ties):
                out = {}
                for account, at in ties:
                    rows = conn.execute(
                        "SELECT created_at, operation_id, creator FROM creation_events WHERE network_name=? AND stellar_account=? AND created_at=?",
                        (network, account, codec.to_sqlite("creation_events", "created_at", at)),
                    ).fetchall()
                    if rows:
                        r = min(rows, key=lambda r: bulk.operation_key(r[1]))
                        out[account] = bulk.StoredEvent(at, r[1], r[2])
                return out

            def stored_pairs(pairs):
                out = {}
                for creator, account in pairs:
                    r = conn.execute(
                        "SELECT created_at, operation_id FROM account_children WHERE network_name=? AND creator=? AND child=?",
                        (network, creator, account),
                    ).fetchone()
                    if r is not None:
                        out[(creator, account)] = bulk.StoredEvent(codec.from_sqlite("account_children", "created_at", r[0]), r[1], creator)
                return out

            plan = chunk.plan(stored, now, with_ledger, earliest_events, stored_pairs)
            times: dict = {}
            self._bulk_upsert(conn, "creation_events", bulk.EVENT_COLUMNS, plan.event_rows(), times)
            self._bulk_upsert(conn, "account_children", bulk.CHILD_COLUMNS, plan.child_rows(), times)
            self._bulk_upsert_dicts(conn, "account_lineage", plan.lineage, times)
        return plan.counts

    def _bulk_write_states(self, network: str, states: list[bulk.AccountStateRow], now: dt.datetime) -> bulk.BulkCounts:
        types = codec.column_types()
        accounts = list(dict.fromkeys(s.account for s in states))
        with self._tx() as conn:
            stored = {r["stellar_account"]: r["xlm_balance"] for r in self._bulk_lineage(conn, network, accounts, "xlm_balance")}
            plan = bulk.plan_states(network, states, stored, now, "deleted" in types["account_lineage"])
            self._bulk_upsert_dicts(conn, "account_lineage", plan.lineage, {})
            conn.executemany(
                "DELETE FROM balance_index WHERE network_name=? AND magnitude=? AND xlm_balance=? AND stellar_account=?",
                [(network, m, format(b, "f"), a) for m, b, a in plan.index_deletes],
            )
            conn.executemany(
                "INSERT OR REPLACE INTO balance_index (network_name, magnitude, xlm_balance, stellar_account) VALUES (?, ?, ?, ?)",
                [(network, m, format(b, "f"), a) for m, b, a in plan.index_puts],
            )
        return plan.counts

    def _bulk_lineage(self, conn: sqlite3.Connection, network: str, accounts: list[str], columns: str, decode: bool = True) -> Iterator:
        """The given lineage columns of those accounts that have a row, 500 ids a query: decoded
        dicts, or (decode=False) the raw rows (stellar_account first)."""
        for i in range(0, len(accounts), 500):
            part = accounts[i : i + 500]
            rows = conn.execute(
                f"SELECT stellar_account, {columns} FROM account_lineage WHERE network_name=? AND stellar_account IN ({', '.join('?' * len(part))})",
                (network, *part),
            )
            for r in rows:
                yield self._decode("account_lineage", r) if decode else r

    def _bulk_upsert(self, conn: sqlite3.Connection, table: str, columns: tuple[str, ...], rows: Iterable[tuple], times: dict) -> None:
        """One executemany of value tuples in `columns` order; columns the schema lacks (before a
        migration) are dropped. `times` memoises timestamp texts across the chunk's tables (an event
        and its child share one)."""
        cols, get, convert = _bulk_shape(table, columns)
        values = list(rows) if get is None else [get(row) for row in rows]
        if not values:
            return
        if convert:  # column by column
            by_column = list(zip(*values))
            for i, kind in convert:
                column = cols[i]
                if kind == "timestamp":
                    def text(v, column=column):
                        t = times[v] = codec.to_sqlite(table, column, v)
                        return t

                    by_column[i] = [None if v is None else times.get(v) or text(v) for v in by_column[i]]
                elif kind == "decimal":  # bulk rows carry validated Decimals: codec.to_sqlite's text
                    by_column[i] = [None if v is None else format(v, "f") for v in by_column[i]]
                else:
                    by_column[i] = [codec.to_sqlite(table, column, v) for v in by_column[i]]
            values = list(zip(*by_column))
        values.sort(key=operator.itemgetter(*[cols.index(c) for c in codec.primary_key(table)]))  # B-tree pages in order
        conn.executemany(self._upsert_sql(table, cols), values)

    def _bulk_upsert_dicts(self, conn: sqlite3.Connection, table: str, rows: list[dict], times: dict) -> None:
        """_bulk_upsert of dict rows, one executemany per set of keys."""
        groups: dict[tuple, list] = {}
        for row in rows:
            groups.setdefault(tuple(row), []).append(tuple(row.values()))
        for columns, values in groups.items():
            self._bulk_upsert(conn, table, columns, values, times)


@functools.lru_cache(maxsize=256)
def _bulk_shape(table: str, columns: tuple[str, ...]) -> tuple:
    """For value tuples in `columns` order: the columns the schema has, a getter of their values
    (None: all of them), and the (index, CQL type) of those that need converting (plain text and
    integers are stored as they are)."""
    types = codec.column_types()[table]
    keep = [i for i, c in enumerate(columns) if c in types]
    cols = tuple(columns[i] for i in keep)
    convert = tuple(
        (i, types[c]) for i, c in enumerate(cols) if types[c] not in ("text", "int", "bigint") or (table, c) in codec.JSON_COLUMNS
    )
    if len(keep) == len(columns):
        get = None
    else:
        get = operator.itemgetter(*keep) if len(keep) > 1 else (lambda row, i=keep[0]: (row[i],))
    return cols, get, convert


def _timestamp(value: str | None) -> dt.datetime | None:
    return codec.from_sqlite("account_lineage", "account_creation_date", value)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT: one writer at a time across threads (the lock) and processes
    (SQLite's own write lock)."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock):
        self.conn = conn
        self.lock = lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.lock.release()
