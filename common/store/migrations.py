"""The migration runner behind `stellarmap migrate [--dry-run] [--verify]`, and the startup schema check."""
from __future__ import annotations

import dataclasses
import threading
import time
from typing import Callable

from common.store.port import SchemaBehind, Store
from common.store.schema import Migration, columns_added_by, expected_columns, load_migrations


class ChecksumMismatch(RuntimeError):
    pass


@dataclasses.dataclass
class MigrationReport:
    applied: list[str] = dataclasses.field(default_factory=list)
    already_applied: list[str] = dataclasses.field(default_factory=list)
    not_applied: list[str] = dataclasses.field(default_factory=list)
    failed: str | None = None
    failed_statement: int | None = None  # 1-based index of the statement that failed
    statements_applied_in_failed: int = 0
    error: str | None = None
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return self.failed is None

    def summary(self) -> str:
        if self.failed:
            return (
                f"migration {self.failed} failed at statement {self.failed_statement} "
                f"({self.statements_applied_in_failed} of its statements applied before it): {self.error}. "
                f"applied: {', '.join(self.applied) or 'none'}; not applied: {', '.join(self.not_applied) or 'none'}"
            )
        if self.dry_run:
            return f"dry run: would apply {', '.join(self.not_applied) or 'nothing'}"
        if not self.applied:
            return f"nothing to apply; {len(self.already_applied)} migration(s) already applied"
        return f"applied {', '.join(self.applied)}; {len(self.already_applied)} already applied"


@dataclasses.dataclass
class VerifyResult:
    ok: bool
    missing_migrations: list[str]
    missing_columns: dict[str, list[str]]
    applied: list[str]
    expected: list[str]


# Applied files never change, except these comment-only edits; the checksum each had before is still accepted.
COMMENT_ONLY_EDITS = {
    "0001": {"756354552abdbb0d54e7df6d417ed09c4f41968cc5ecbd2d310c84afbf1a9192"},  # a comment cited a plan outside the repository
    "0006": {"88f0fc180b7ecf8232bf48b832e5a8e24b207bb78543cbe3aec03f4726af04f4"},  # comments named modules since moved
}


def pending(store: Store, migrations: list[Migration] | None = None) -> tuple[list[Migration], list[Migration]]:
    """(already applied, still to apply). A changed applied file is an error."""
    migrations = load_migrations() if migrations is None else migrations
    applied = store.applied_migrations()
    done, todo = [], []
    for m in migrations:
        rec = applied.get(m.version)
        if rec is None:
            todo.append(m)
        elif rec["checksum"] != m.checksum and rec["checksum"] not in COMMENT_ONLY_EDITS.get(m.version, ()):
            raise ChecksumMismatch(
                f"migration {m.label} was applied with checksum {rec['checksum'][:12]}… but the file now has "
                f"{m.checksum[:12]}…; applied migrations must never change: add a new numbered file instead"
            )
        else:
            done.append(m)
    return done, todo


def migrate(
    store: Store,
    dry_run: bool = False,
    migrations: list[Migration] | None = None,
    progress: Callable[[Migration, int, int], None] | None = None,
) -> MigrationReport:
    done, todo = pending(store, migrations)
    report = MigrationReport(already_applied=[m.label for m in done], dry_run=dry_run)
    if dry_run:
        report.not_applied = [m.label for m in todo]
        return report
    for i, m in enumerate(todo):
        if progress:
            progress(m, i, len(todo))
        for n, stmt in enumerate(m.statements, start=1):
            try:
                store.apply_migration_statement(stmt)
            except Exception as exc:  # report exactly where it stopped
                report.failed = m.label
                report.failed_statement = n
                report.statements_applied_in_failed = n - 1
                report.error = f"{type(exc).__name__}: {exc}"
                report.not_applied = [x.label for x in todo[i:]]
                return report
        store.record_migration(m.version, m.name, m.checksum)
        report.applied.append(m.label)
    return report


def verify(store: Store, migrations: list[Migration] | None = None) -> VerifyResult:
    """Compare what the database reports (system_schema / PRAGMA) with what the files declare."""
    migrations = load_migrations() if migrations is None else migrations
    applied = store.applied_migrations()
    actual = store.actual_columns()
    missing_cols: dict[str, list[str]] = {}
    for table, cols in expected_columns(migrations).items():
        missing = sorted(cols - actual.get(table, set()))
        if missing:
            missing_cols[table] = missing
    missing_migs = [m.label for m in migrations if m.version not in applied]
    return VerifyResult(
        ok=not missing_cols and not missing_migs,
        missing_migrations=missing_migs,
        missing_columns=missing_cols,
        applied=sorted(applied),
        expected=[m.version for m in migrations],
    )


class SchemaGate:
    """Startup schema check for a function process.

    A good result is remembered for the life of the process; a bad one is re-checked at most
    every `recheck_s` seconds, so the function recovers as soon as `stellarmap migrate` has run,
    without a restart and without crash-looping.
    """

    def __init__(self, store: Store, recheck_s: float = 5.0, migrations: list[Migration] | None = None):
        self._store = store
        self._recheck_s = recheck_s
        self._migrations = migrations
        self._ok = False
        self._last: tuple[float, VerifyResult] | None = None
        self._lock = threading.Lock()

    def check(self) -> VerifyResult | None:
        """None when the schema is current, else the VerifyResult describing what is missing."""
        if self._ok:
            return None
        with self._lock:
            now = time.monotonic()
            if self._last and now - self._last[0] < self._recheck_s:
                result = self._last[1]
            else:
                result = verify(self._store, self._migrations)
                self._last = (now, result)
            if result.ok:
                self._ok = True
                return None
            return result

    def require(self) -> None:
        result = self.check()
        if result is not None:
            raise SchemaBehind(result.missing_migrations, result.missing_columns)


def columns_by_migration(migrations: list[Migration] | None = None) -> dict[str, dict[str, set]]:
    migrations = load_migrations() if migrations is None else migrations
    return {m.label: columns_added_by(m) for m in migrations}
