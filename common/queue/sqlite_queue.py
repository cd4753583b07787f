"""The SQLite TaskQueue adapter (the local stack's queue): tasks persisted in SQLite (LOCAL_DISPATCHER_DB), with Cloud Tasks'
naming semantics. The dispatch loop that delivers them (rate, burst, concurrency, retries with
backoff, max attempts) is local/task_dispatcher.py; both share the table defined here.

- A task is one row keyed by (queue, name). Creating a name that exists, or that finished less
  than `tombstone_s` ago, is refused (enqueue returns False), as Cloud Tasks refuses a name it has
  seen recently. Refusal is atomic (one INSERT ... ON CONFLICT), so concurrent identical
  enqueues from any number of processes create one task.
- A row is written (and committed, WAL, synchronous=FULL) before enqueue returns: a task the caller
  was told about survives any crash of the caller or of the dispatcher.
- States: queued -> running -> done | queued (retry) | dropped (max attempts spent).
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path

from common.clock import Clock, SystemClock
from common.queue.port import TaskQueue, task_name_of, validate_queue
from common.sqlite_writer import writer_lock

TOMBSTONE_S = 3600.0  # Cloud Tasks keeps a finished task's name reserved for about an hour
LIVE_STATES = ("queued", "running")
FINISHED_STATES = ("done", "dropped")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS tasks (
        queue TEXT NOT NULL,
        name TEXT NOT NULL,
        payload TEXT NOT NULL,
        purpose TEXT,
        state TEXT NOT NULL,
        schedule_time REAL NOT NULL,
        created_at REAL NOT NULL,
        dispatch_count INTEGER NOT NULL DEFAULT 0,
        response_count INTEGER NOT NULL DEFAULT 0,
        first_dispatch_at REAL,
        last_dispatch_at REAL,
        last_status INTEGER,
        last_error TEXT,
        lease_owner TEXT,
        finished_at REAL,
        PRIMARY KEY (queue, name)
    )""",
    "CREATE INDEX IF NOT EXISTS tasks_due ON tasks (queue, state, schedule_time)",
    "CREATE INDEX IF NOT EXISTS tasks_finished ON tasks (state, finished_at)",
)


def epoch(clock: Clock) -> float:
    return clock.now().timestamp()


class TaskDB:
    """The SQLite file of the local queue (one connection per thread; safe across processes)."""

    def __init__(self, path: str | os.PathLike, timeout_s: float = 30.0):
        self.path = str(path)
        if not self.path or self.path == ":memory:":
            raise ValueError("the local dispatcher needs a file (LOCAL_DISPATCHER_DB), shared by the functions and the dispatcher")
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._timeout = timeout_s
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._ready = False

    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # an acknowledged task survives a power cut too
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
            if not self._ready:
                for ddl in SCHEMA:
                    conn.execute(ddl)
                self._ready = True
        return conn

    def close(self) -> None:
        with self._lock:
            for c in self._all:
                try:
                    c.close()
                except sqlite3.ProgrammingError:
                    pass
            self._all.clear()
        self._local = threading.local()

    # ------------------------------------------------------------ writes used by enqueue
    def insert(self, queue: str, name: str, payload: dict, purpose: str, schedule_time: float, now: float, tombstone_s: float) -> bool:
        """Create the task unless the name is live or finished less than tombstone_s ago."""
        with writer_lock(self.path):
            cur = self._insert(queue, name, payload, purpose, schedule_time, now, tombstone_s)
        return cur.rowcount == 1

    def _insert(self, queue: str, name: str, payload: dict, purpose: str, schedule_time: float, now: float, tombstone_s: float):
        return self.conn().execute(
            """INSERT INTO tasks (queue, name, payload, purpose, state, schedule_time, created_at)
               VALUES (?, ?, ?, ?, 'queued', ?, ?)
               ON CONFLICT (queue, name) DO UPDATE SET
                 payload = excluded.payload, purpose = excluded.purpose, state = 'queued',
                 schedule_time = excluded.schedule_time, created_at = excluded.created_at,
                 dispatch_count = 0, response_count = 0, first_dispatch_at = NULL, last_dispatch_at = NULL,
                 last_status = NULL, last_error = NULL, lease_owner = NULL, finished_at = NULL
               WHERE tasks.state IN ('done', 'dropped') AND tasks.finished_at < ?""",
            (queue, name, json.dumps(payload, separators=(",", ":"), sort_keys=True), purpose, schedule_time, now, now - tombstone_s),
        )

    # ------------------------------------------------------------ reads
    def get(self, queue: str, name: str) -> dict | None:
        row = self.conn().execute("SELECT * FROM tasks WHERE queue = ? AND name = ?", (queue, name)).fetchone()
        return dict(row) if row else None

    def count(self, queue: str | None = None, states: tuple[str, ...] = LIVE_STATES) -> int:
        marks = ", ".join("?" * len(states))
        if queue is None:
            row = self.conn().execute(f"SELECT COUNT(*) FROM tasks WHERE state IN ({marks})", states).fetchone()
        else:
            row = self.conn().execute(f"SELECT COUNT(*) FROM tasks WHERE queue = ? AND state IN ({marks})", (queue, *states)).fetchone()
        return int(row[0])

    def live_names(self, queue: str) -> set[str]:
        rows = self.conn().execute("SELECT name FROM tasks WHERE queue = ? AND state IN ('queued', 'running')", (queue,))
        return {r[0] for r in rows}

    def tasks(self, queue: str | None = None, states: tuple[str, ...] | None = None) -> list[dict]:
        sql, args = "SELECT * FROM tasks", []
        conds = []
        if queue is not None:
            conds.append("queue = ?")
            args.append(queue)
        if states:
            conds.append(f"state IN ({', '.join('?' * len(states))})")
            args.extend(states)
        if conds:
            sql += " WHERE " + " AND ".join(conds)
        return [dict(r) for r in self.conn().execute(sql + " ORDER BY created_at, name", args)]

    # ------------------------------------------------------------ the dispatch loop's writes
    def recover(self) -> int:
        """After a restart: tasks that were running when the dispatcher died are queued again
        (delivery is at least once; the functions' atomic claims make a repeat harmless)."""
        cur = self.conn().execute("UPDATE tasks SET state = 'queued', lease_owner = NULL WHERE state = 'running'")
        return cur.rowcount

    def next_due(self, queue: str) -> float | None:
        row = self.conn().execute(
            "SELECT MIN(schedule_time) FROM tasks WHERE queue = ? AND state = 'queued'", (queue,)
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def claim_due(self, queue: str, now: float, owner: str) -> dict | None:
        """Atomically take the earliest due task of the queue (queued -> running)."""
        conn = self.conn()
        for _ in range(10):
            row = conn.execute(
                "SELECT name FROM tasks WHERE queue = ? AND state = 'queued' AND schedule_time <= ? ORDER BY schedule_time, created_at LIMIT 1",
                (queue, now),
            ).fetchone()
            if row is None:
                return None
            cur = conn.execute(
                """UPDATE tasks SET state = 'running', lease_owner = ?, dispatch_count = dispatch_count + 1,
                     last_dispatch_at = ?, first_dispatch_at = COALESCE(first_dispatch_at, ?)
                   WHERE queue = ? AND name = ? AND state = 'queued'""",
                (owner, now, now, queue, row[0]),
            )
            if cur.rowcount == 1:
                return self.get(queue, row[0])
        return None

    def finish(self, queue: str, name: str, state: str, status: int | None, error: str | None, now: float) -> None:
        self.conn().execute(
            """UPDATE tasks SET state = ?, last_status = ?, last_error = ?, finished_at = ?, lease_owner = NULL,
                 response_count = response_count + CASE WHEN ? IS NULL THEN 0 ELSE 1 END
               WHERE queue = ? AND name = ?""",
            (state, status, error, now, status, queue, name),
        )

    def retry_later(self, queue: str, name: str, status: int | None, error: str | None, schedule_time: float) -> None:
        self.conn().execute(
            """UPDATE tasks SET state = 'queued', last_status = ?, last_error = ?, schedule_time = ?, lease_owner = NULL,
                 response_count = response_count + CASE WHEN ? IS NULL THEN 0 ELSE 1 END
               WHERE queue = ? AND name = ?""",
            (status, error, schedule_time, status, queue, name),
        )

    def purge_finished(self, before: float) -> int:
        cur = self.conn().execute("DELETE FROM tasks WHERE state IN ('done', 'dropped') AND finished_at < ?", (before,))
        return cur.rowcount


class SQLiteTaskQueue(TaskQueue):
    """TaskQueue over the local SQLite task table; local/task_dispatcher.py delivers the tasks."""

    def __init__(self, db_path: str | os.PathLike, clock: Clock | None = None, tombstone_s: float = TOMBSTONE_S):
        self.db = TaskDB(db_path)
        self.clock = clock or SystemClock()
        self.tombstone_s = float(tombstone_s)

    @classmethod
    def from_settings(cls, settings, clock: Clock | None = None) -> "SQLiteTaskQueue":
        # Required (no default): a task written to a file no dispatcher reads would be lost.
        return cls(settings.require("LOCAL_DISPATCHER_DB"), clock)

    def enqueue(self, queue: str, payload: dict, *, purpose: str, generation: int | str = 0, delay_s: float = 0.0) -> bool:
        validate_queue(queue)
        name = task_name_of(payload, purpose, generation)
        now = epoch(self.clock)
        delay = max(0.0, float(delay_s or 0.0))
        return self.db.insert(queue, name, dict(payload), purpose, now + delay, now, self.tombstone_s)

    def depth(self, queue: str) -> int | None:
        return self.db.count(validate_queue(queue))

    def has_live_task(self, queue: str, name: str) -> bool:
        row = self.db.get(validate_queue(queue), name)
        return row is not None and row["state"] in LIVE_STATES

    def live_tasks(self, queue: str) -> set[str] | None:
        return self.db.live_names(validate_queue(queue))

    def close(self) -> None:
        self.db.close()

