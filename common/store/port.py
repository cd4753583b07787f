"""The Store port: every read and write the system makes, one method per use.

Public methods validate their input (a bad network, account id or page size raises
InvalidInput, a ValueError, before anything is written) and then call the adapter's
`_`-prefixed primitive. Adapters implement only the primitives.
"""
from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import functools
import inspect
import json
import logging
import re
import threading
import uuid
from decimal import Decimal
from typing import Any, Callable, Iterable, Iterator, Sequence

from common.domain import (
    ACTIVE_STATUSES,
    CLAIMABLE,
    LINEAGE_COLUMNS,
    MAX_PAGE_SIZE,
    SEARCH_CACHE_COLUMNS,
    ChildEdge,
    CreationEvent,
    CronRun,
    HvaEvent,
    InvalidInput,
    LeaderboardEntry,
    LineageRecord,
    MergeEvent,
    Page,
    SearchCacheEntry,
    SYNC_STATUSES,
    StageExecution,
    Status,
    SyncRange,
    SyncState,
    as_utc,
    iso,
    validate_account_id,
    validate_network,
    validate_page_size,
)
from common.store import bulk, counted_state

KINDS = ("cache", "lineage")
LEDGER_ANCHOR_BUCKET = 1 << 17  # about a week of ledgers
STATUSES = tuple(s.value for s in Status)
SCANNABLE_TABLES = (
    "search_cache",
    "account_lineage",
    "creation_events",
    "account_children",
    "stage_executions",
    "cron_health",
    "hva_leaderboard",
    "hva_changes_by_day",
    "bigquery_spend_ledger",
    "merge_events",
)


def balance_magnitude(balance: Decimal) -> int:
    """Order-of-magnitude bucket of the balance index: 0 for < 10 XLM, else floor(log10)."""
    if balance < 10:
        return 0
    return len(str(int(balance))) - 1


def _check_fields(fields: dict, allowed: Sequence[str], table: str) -> None:
    unknown = set(fields) - set(allowed)
    if unknown:
        raise InvalidInput("invalid_column", f"unknown {table} column(s): {', '.join(sorted(unknown))}")
    status = fields.get("status")
    if status is not None and status not in STATUSES:
        raise InvalidInput("invalid_status", f"unknown status {status!r}", "status")


class SchemaBehind(RuntimeError):
    """The database schema is older than the code (the pipeline_source incident)."""

    def __init__(self, missing_migrations: list[str], missing_columns: dict[str, list[str]]):
        cols = "; ".join(f"{t}: {', '.join(c)}" for t, c in sorted(missing_columns.items()))
        super().__init__(
            "database schema is behind the code: missing migrations "
            f"{', '.join(missing_migrations) or '(none recorded)'}; missing columns {cols or '(none)'}; "
            "run `stellarmap migrate`"
        )
        self.missing_migrations = missing_migrations
        self.missing_columns = missing_columns


class StoreUnavailable(ConnectionError):
    """The store did not answer (down, timed out, overloaded): the caller retries later.

    Adapters name their driver's errors of that kind in `unavailable_errors`; every public store
    method raises this instead, so handlers never see a driver's exception types."""


_CALL_DEPTH = threading.local()


def _translating(func: Callable) -> Callable:
    """Wrap a public store method: the outermost call turns the adapter's unavailable errors into
    StoreUnavailable (inner calls pass them through, so an adapter can still catch its own)."""
    if inspect.isgeneratorfunction(func):
        @functools.wraps(func)
        def gen_wrapper(self, *args, **kwargs):
            it = func(self, *args, **kwargs)
            while True:
                try:
                    with _outermost(self):
                        item = next(it)
                except StopIteration:
                    return
                yield item
        wrapper = gen_wrapper
    else:
        @functools.wraps(func)
        def wrapper(self, *args, **kwargs):
            with _outermost(self):
                return func(self, *args, **kwargs)
    wrapper.__store_translated__ = True
    return wrapper


class _outermost:
    def __init__(self, store):
        self.store = store

    def __enter__(self):
        _CALL_DEPTH.n = getattr(_CALL_DEPTH, "n", 0) + 1

    def __exit__(self, kind, exc, tb):
        _CALL_DEPTH.n -= 1
        if exc is None or _CALL_DEPTH.n or isinstance(exc, StoreUnavailable):
            return False
        if isinstance(exc, self.store.unavailable_errors):
            raise StoreUnavailable(f"{self.store.backend} store unavailable: {type(exc).__name__}: {exc}") from exc
        return False

class SchemaPort(abc.ABC):
    """The schema's bookkeeping: migrations applied, columns present, liveness."""

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def ping(self) -> bool:
        """True when the store answers a trivial query."""

    @abc.abstractmethod
    def applied_migrations(self) -> dict[str, dict]:
        """version -> {name, checksum, applied_at}; {} when schema_migrations does not exist yet."""

    @abc.abstractmethod
    def actual_columns(self) -> dict[str, set]:
        """table -> set of column names, as the database itself reports them."""

    @abc.abstractmethod
    def apply_migration_statement(self, statement: str) -> None:
        """Run one DDL statement from cql/ (translated for the backend where needed)."""

    @abc.abstractmethod
    def record_migration(self, version: str, name: str, checksum: str) -> None: ...


class StatusRowsPort(abc.ABC):
    """Rows that carry a pipeline status (search cache, lineage) and the index of active ones."""

    def list_active(self, kind: str, limit: int = 1000) -> list[dict]:
        """Rows in PENDING/PROCESSING/RE_INQUIRY for kind 'cache' or 'lineage': one partition read."""
        if kind not in KINDS:
            raise InvalidInput("invalid_kind", f"kind must be one of {', '.join(KINDS)}", "kind")
        validate_page_size(limit, 10_000)
        return self._list_active(kind, limit)

    def _sync_active(self, kind: str, network: str, account: str, fields: dict) -> None:
        status = fields.get("status")
        if status is None:
            return
        if status in ACTIVE_STATUSES:
            self._put_active(kind, network, account, status, fields.get("updated_at"))
        else:
            self._delete_active(kind, network, account)

    @abc.abstractmethod
    def _put_row(self, table: str, network: str, account: str, fields: dict) -> None: ...

    @abc.abstractmethod
    def _compare_and_set(self, table: str, network: str, account: str, expected: tuple | None, fields: dict,
                         fence: str | None = None) -> bool:
        """Write `fields` iff the status is in `expected` (and, with a fence, claim_token == fence)."""

    @abc.abstractmethod
    def _put_active(self, kind: str, network: str, account: str, status: str, updated_at: dt.datetime | None) -> None: ...

    @abc.abstractmethod
    def _delete_active(self, kind: str, network: str, account: str) -> None: ...

    @abc.abstractmethod
    def _list_active(self, kind: str, limit: int) -> list[dict]: ...


class SearchCachePort(StatusRowsPort, abc.ABC):
    """The search cache: one row per searched account and its status."""

    def get_search(self, network: str, account: str) -> SearchCacheEntry | None:
        return self._get_search(validate_network(network), validate_account_id(account))

    def put_search(self, network: str, account: str, **fields: Any) -> None:
        """Upsert the given columns of one search-cache row."""
        validate_network(network)
        validate_account_id(account)
        _check_fields(fields, SEARCH_CACHE_COLUMNS[2:], "search_cache")
        self._put_row("search_cache", network, account, fields)
        self._sync_active("cache", network, account, fields)

    def transition_search(
        self, network: str, account: str, expected: Iterable[str] | None, new_status: str, **fields: Any
    ) -> bool:
        """Atomically set status=new_status (and fields) iff the current status is in `expected`.

        expected=None means "the row must not exist yet"; a None *inside* expected matches an
        existing row that has no status (e.g. a child known from its parent's crawl).
        Exactly one concurrent caller wins.
        """
        validate_network(network)
        validate_account_id(account)
        fields = dict(fields, status=new_status)
        _check_fields(fields, SEARCH_CACHE_COLUMNS[2:], "search_cache")
        won = self._compare_and_set("search_cache", network, account, None if expected is None else tuple(expected), fields)
        if won:
            self._sync_active("cache", network, account, fields)
        return won

    @abc.abstractmethod
    def _get_search(self, network: str, account: str) -> SearchCacheEntry | None: ...


class PipelineCountersPort(abc.ABC):
    """Exact pipeline counters (common/store/counted_state.py): totals per status and source.

    The lineage writes of LineagePort keep them exact; this port reads them and repairs them."""

    def _sync_counted(self, network: str, account: str) -> None:
        """After a status write: bring the counted state in line. A failure here never fails the
        write that succeeded; the dirty marker written before it lets the reconciler finish."""
        try:
            self._converge_counted_state(network, account)
        except Exception:  # noqa: BLE001 - logged; repaired by common.read_models.counters.reconcile
            logging.getLogger(__name__).warning("pipeline counter sync failed for %s/%s", network, account, exc_info=True)

    def _converge_counted_state(self, network: str, account: str) -> bool:
        """Apply the lineage row's counted state; re-read and repeat while the row moves meanwhile."""
        for _ in range(counted_state.SYNC_ROUNDS):
            target = counted_state.state_of(self._get_lineage(network, account))
            self._apply_pipeline_state(network, counted_state.shard_of(account), account, target, counted_state.apply_delta)
            if counted_state.state_of(self._get_lineage(network, account)) == target:
                return True
        return False  # still moving: the dirty marker stays and the reconciler finishes the job

    def sync_pipeline_state(self, network: str, account: str) -> bool:
        """Make one account's counted state equal its lineage row (idempotent). True when converged."""
        return self._converge_counted_state(validate_network(network), validate_account_id(account))

    def get_pipeline_counts(self, network: str) -> dict[str, int]:
        """The network's exact totals (sum of every shard's counts row): SHARDS single-row reads."""
        validate_network(network)
        return counted_state.merge(self._read_pipeline_counts(network, list(range(counted_state.SHARDS))))

    def stats_dirty_accounts(self, network: str, bucket: str, limit: int = 1_000_000) -> list[str]:
        """Accounts whose lineage status was written in hour `bucket` (YYYY-MM-DDTHH): one partition."""
        validate_network(network)
        _check_hour_bucket(bucket)
        validate_page_size(limit, 1_000_000)
        return self._read_stats_dirty(network, bucket, limit)

    def prune_stats_dirty(self, network: str, before_bucket: str) -> None:
        """Forget dirty markers of hours before `before_bucket` (Cassandra: their TTL does it)."""
        self._prune_stats_dirty(validate_network(network), _check_hour_bucket(before_bucket))

    @abc.abstractmethod
    def _get_lineage(self, network: str, account: str) -> LineageRecord | None: ...

    @abc.abstractmethod
    def _apply_pipeline_state(self, network: str, shard: int, account: str, state: Any, delta: Callable) -> None:
        """Atomically (one partition: conditional batch / transaction): read the shard's counts row
        and the account's counted state `old`; unless old == state, write state and
        delta(counts, old, state) together. Retry on a lost race; states are CountedState|None."""

    @abc.abstractmethod
    def _read_pipeline_counts(self, network: str, shards: list[int]) -> list[dict[str, int]]: ...

    @abc.abstractmethod
    def _mark_stats_dirty(self, network: str, bucket: str, account: str, marked_at: dt.datetime) -> None: ...

    @abc.abstractmethod
    def _read_stats_dirty(self, network: str, bucket: str, limit: int) -> list[str]: ...

    @abc.abstractmethod
    def _prune_stats_dirty(self, network: str, before_bucket: str) -> None: ...


class LineagePort(StatusRowsPort, PipelineCountersPort, abc.ABC):
    """Lineage rows and their pipeline state: claims, fenced writes, transitions.

    Every status write here also marks and syncs the account's counted state (PipelineCountersPort)."""

    def get_lineage(self, network: str, account: str) -> LineageRecord | None:
        return self._get_lineage(validate_network(network), validate_account_id(account))

    def get_lineages(self, network: str, accounts: Sequence[str]) -> dict[str, LineageRecord]:
        validate_network(network)
        if len(accounts) > MAX_PAGE_SIZE:
            raise InvalidInput("invalid_limit", f"at most {MAX_PAGE_SIZE} accounts per batch read", "accounts")
        for a in accounts:
            validate_account_id(a)
        return self._get_lineages(network, list(dict.fromkeys(accounts)))

    def put_lineage(self, network: str, account: str, **fields: Any) -> None:
        """Upsert the given columns of one lineage row (columns not given are left as they are)."""
        validate_network(network)
        validate_account_id(account)
        _check_fields(fields, LINEAGE_COLUMNS[2:], "account_lineage")
        if fields.get("stellar_creator_account") is not None:
            validate_account_id(fields["stellar_creator_account"], "stellar_creator_account")
        counted = _mark_counted_change(self, network, account, fields)
        self._put_row("account_lineage", network, account, fields)
        self._sync_active("lineage", network, account, fields)
        if counted:
            self._sync_counted(network, account)

    def transition_lineage(
        self, network: str, account: str, expected: Iterable[str] | None, new_status: str, *, fence: str | None = None,
        **fields: Any,
    ) -> bool:
        """Atomic compare-and-set on the lineage status (see transition_search).

        fence: the claim token of the worker writing; the write then also needs claim_token == fence,
        so a worker whose claim was released and taken by another changes nothing.
        """
        validate_network(network)
        validate_account_id(account)
        fields = dict(fields, status=new_status)
        _check_fields(fields, LINEAGE_COLUMNS[2:], "account_lineage")
        _mark_counted_change(self, network, account, fields)
        won = self._compare_and_set(
            "account_lineage", network, account, None if expected is None else tuple(expected), fields, fence
        )
        if won:
            self._sync_active("lineage", network, account, fields)
            self._sync_counted(network, account)
        return won

    def claim(self, network: str, account: str, now: dt.datetime, **fields: Any) -> str | None:
        """PENDING|RE_INQUIRY -> PROCESSING. Exactly one concurrent claimer wins and gets the claim's
        token (None for the others): every later write of the claim is fenced by it.

        The token is unique, so an adapter whose conditional write timed out with an unknown
        outcome (a Cassandra CAS timeout) can read back and tell whether it won.
        """
        fields.setdefault("processing_started_at", now)
        fields.setdefault("updated_at", now)
        token = fields.setdefault("claim_token", uuid.uuid4().hex)
        return token if self.transition_lineage(network, account, CLAIMABLE, Status.PROCESSING.value, **fields) else None

    def update_claimed(self, network: str, account: str, claim_token: str, /, **fields: Any) -> bool:
        """Write columns of a row this worker holds (PROCESSING with this claim_token), e.g. a
        children checkpoint. False, and nothing written, once the claim is lost."""
        validate_network(network)
        validate_account_id(account)
        if not claim_token:
            raise InvalidInput("invalid_claim", "a claim token is required", "claim_token")
        if not fields:
            raise InvalidInput("invalid_column", "nothing to write", "fields")
        if "status" in fields or "claim_token" in fields:
            raise InvalidInput("invalid_column", "status and claim_token change only through transitions", "status")
        _check_fields(fields, LINEAGE_COLUMNS[2:], "account_lineage")
        if fields.get("stellar_creator_account") is not None:
            validate_account_id(fields["stellar_creator_account"], "stellar_creator_account")
        counted = _mark_counted_change(self, network, account, fields)
        won = self._compare_and_set("account_lineage", network, account, (Status.PROCESSING.value,), fields, claim_token)
        if won and counted:
            self._sync_counted(network, account)
        return won

    @abc.abstractmethod
    def _get_lineages(self, network: str, accounts: list[str]) -> dict[str, LineageRecord]: ...


class CreationEventsPort(abc.ABC):
    """Creation events, merge events and ledger anchors (ledger -> close time points)."""

    def add_creation_event(self, event: CreationEvent) -> None:
        validate_network(event.network_name)
        validate_account_id(event.stellar_account)
        validate_account_id(event.creator, "creator")
        self._add_creation_event(event)

    def get_creation_events(self, network: str, account: str) -> list[CreationEvent]:
        return self._get_creation_events(validate_network(network), validate_account_id(account))

    def add_merge_event(self, event: MergeEvent) -> None:
        """Idempotent by (merged_at, operation_id)."""
        validate_network(event.network_name)
        validate_account_id(event.stellar_account)
        if event.merged_into is not None:
            validate_account_id(event.merged_into, "merged_into")
        self._add_merge_event(event)

    def get_merge_events(self, network: str, account: str) -> list[MergeEvent]:
        """Oldest first."""
        return self._get_merge_events(validate_network(network), validate_account_id(account))

    def put_ledger_anchors(self, network: str, points: Iterable[tuple[int, dt.datetime]]) -> None:
        """Known (ledger, close time) points; one is kept per bucket of LEDGER_ANCHOR_BUCKET ledgers."""
        validate_network(network)
        rows = {}
        for ledger, closed_at in points:
            if isinstance(ledger, bool) or not isinstance(ledger, int) or not 1 <= ledger < 2**31:
                raise InvalidInput("invalid_ledger", "ledger must be an integer from 1 to 2^31-1", "ledger")
            rows[ledger // LEDGER_ANCHOR_BUCKET] = {"network_name": network, "bucket": ledger // LEDGER_ANCHOR_BUCKET,
                                                    "ledger": ledger, "closed_at": as_utc(closed_at)}
        if rows:
            self._put_ledger_anchors(network, list(rows.values()))

    def get_ledger_anchors(self, network: str) -> list[tuple[int, dt.datetime]]:
        """Every stored (ledger, close time) point of the network, by ledger (one partition)."""
        rows = self._get_ledger_anchors(validate_network(network))
        return sorted((int(r["ledger"]), as_utc(r["closed_at"])) for r in rows)

    @abc.abstractmethod
    def _add_creation_event(self, event: CreationEvent) -> None: ...

    @abc.abstractmethod
    def _get_creation_events(self, network: str, account: str) -> list[CreationEvent]: ...

    @abc.abstractmethod
    def _add_merge_event(self, event: MergeEvent) -> None: ...

    @abc.abstractmethod
    def _get_merge_events(self, network: str, account: str) -> list[MergeEvent]: ...

    @abc.abstractmethod
    def _put_ledger_anchors(self, network: str, rows: list[dict]) -> None: ...

    @abc.abstractmethod
    def _get_ledger_anchors(self, network: str) -> list[dict]: ...


class ChildrenPort(abc.ABC):
    """The children of a creator, one partition per creator, in pages."""

    def add_children(self, network: str, creator: str, children: Sequence[ChildEdge]) -> None:
        """Idempotent: a child already stored is overwritten, never duplicated."""
        validate_network(network)
        validate_account_id(creator, "creator")
        for c in children:
            if c.network_name != network or c.creator != creator:
                raise InvalidInput("invalid_child", "child edge does not belong to this creator/network")
            validate_account_id(c.child, "child")
        if children:
            self._add_children(network, creator, list(children))

    def get_children_page(self, network: str, creator: str, after: str | None = None, limit: int = 100) -> Page:
        """Children ordered by account id; `after` is the previous page's next_cursor."""
        validate_network(network)
        validate_account_id(creator, "creator")
        validate_page_size(limit)
        if after is not None:
            validate_account_id(after, "cursor")
        return self._get_children_page(network, creator, after, limit)

    def iter_children(self, network: str, creator: str, page_size: int = 1000) -> Iterator[ChildEdge]:
        cursor = None
        while True:
            page = self.get_children_page(network, creator, cursor, page_size)
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    @abc.abstractmethod
    def _add_children(self, network: str, creator: str, children: list[ChildEdge]) -> None: ...

    @abc.abstractmethod
    def _get_children_page(self, network: str, creator: str, after: str | None, limit: int) -> Page: ...


class ChildrenSummaryPort(abc.ABC):
    """The precomputed landing views of huge fan-outs (common/lineage_view/fanout.py)."""

    def put_children_summary(self, network: str, creator: str, summary: dict, computed_at: dt.datetime) -> None:
        """Store the precomputed landing view of a creator's children (one row) and index it:
        count, histogram, top-N, and (optional keys) first_page, first_page_next, ancestors, landing_at."""
        validate_network(network)
        validate_account_id(creator, "creator")
        if summary.get("first_page_next") is not None:
            validate_account_id(summary["first_page_next"], "first_page_next")

        def dump(value):
            return None if value is None else json.dumps(value, separators=(",", ":"), ensure_ascii=False)

        row = {
            "child_count": int(summary["count"]),
            "known_balances": int(summary["known_balances"]),
            "histogram": dump(summary["balance_histogram"]),
            "top_by_balance": dump(summary["top_by_balance"]),
            "computed_at": as_utc(computed_at),
            "first_page": dump(summary.get("first_page")),
            "first_page_next": summary.get("first_page_next"),
            "ancestors": dump(summary.get("ancestors")),
            "landing_at": as_utc(summary.get("landing_at") or computed_at),
        }
        self._put_children_summary(network, creator, row)

    def get_children_summary(self, network: str, creator: str) -> dict | None:
        validate_network(network)
        validate_account_id(creator, "creator")
        row = self._get_children_summary(network, creator)
        if row is None:
            return None
        return {
            "count": int(row["child_count"] or 0),
            "known_balances": int(row["known_balances"] or 0),
            "balance_histogram": json.loads(row["histogram"] or "[]"),
            "top_by_balance": json.loads(row["top_by_balance"] or "[]"),
            "computed_at": as_utc(row["computed_at"]),
            "first_page": json.loads(row["first_page"]) if row.get("first_page") else None,
            "first_page_next": row.get("first_page_next"),
            "ancestors": json.loads(row["ancestors"]) if row.get("ancestors") else None,
            "landing_at": as_utc(row.get("landing_at")),
        }

    def list_children_summaries(self, network: str, limit: int = 10_000) -> list[dict]:
        """[{creator, child_count, computed_at}] of the network's summarised creators: one partition."""
        validate_network(network)
        validate_page_size(limit, 100_000)
        return self._list_children_summaries(network, limit)

    @abc.abstractmethod
    def _put_children_summary(self, network: str, creator: str, row: dict) -> None: ...

    @abc.abstractmethod
    def _get_children_summary(self, network: str, creator: str) -> dict | None: ...

    @abc.abstractmethod
    def _list_children_summaries(self, network: str, limit: int) -> list[dict]: ...


class BalanceIndexPort(abc.ABC):
    """The XLM balance index by order of magnitude (hva_recalc reads it, never the lineage table)."""

    def put_balances(self, network: str, rows: Sequence[tuple[str, Decimal]]) -> None:
        """Bulk path for the balance index (backfill, benchmarks): accounts not indexed before."""
        validate_network(network)
        batch = []
        for account, bal in rows:
            validate_account_id(account)
            if not isinstance(bal, Decimal) or bal < 0:
                raise InvalidInput("invalid_balance", "balance must be a non-negative Decimal", "xlm_balance")
            batch.append((balance_magnitude(bal), bal, account))
        if batch:
            self._put_balances(network, batch)

    def set_balance(self, network: str, account: str, new: Decimal | None, old: Decimal | None) -> None:
        """Keep the balance index in step with an account's XLM balance (old is the stored one)."""
        validate_network(network)
        validate_account_id(account)
        for v in (new, old):
            if v is not None and (not isinstance(v, Decimal) or v < 0):
                raise InvalidInput("invalid_balance", "balance must be a non-negative Decimal", "xlm_balance")
        if old is not None and old != new:
            self._delete_balance(network, balance_magnitude(old), old, account)
        if new is not None:
            self._put_balance(network, balance_magnitude(new), new, account)

    def balances_at_least(self, network: str, threshold: Decimal) -> list[tuple[str, Decimal]]:
        """(account, balance) with balance >= threshold, highest first, reading only the needed buckets."""
        validate_network(network)
        threshold = Decimal(threshold)
        out: list[tuple[str, Decimal]] = []
        for magnitude in range(20, balance_magnitude(threshold) - 1, -1):
            for account, bal in self._read_balance_bucket(network, magnitude):
                if bal >= threshold:
                    out.append((account, bal))
        out.sort(key=lambda ab: (-ab[1], ab[0]))
        return out

    @abc.abstractmethod
    def _put_balance(self, network: str, magnitude: int, balance: Decimal, account: str) -> None: ...

    @abc.abstractmethod
    def _delete_balance(self, network: str, magnitude: int, balance: Decimal, account: str) -> None: ...

    @abc.abstractmethod
    def _read_balance_bucket(self, network: str, magnitude: int) -> Iterable[tuple[str, Decimal]]: ...

    @abc.abstractmethod
    def _put_balances(self, network: str, rows: list[tuple[int, Decimal, str]]) -> None: ...


_COUNTED_FIELDS = ("status", "pipeline_source", "last_pipeline_attempt")


class HvaPort(abc.ABC):
    """HVA leaderboards and their rank-change events."""

    def get_leaderboard_top(self, network: str, threshold: int, limit: int) -> tuple[dt.datetime | None, list[LeaderboardEntry]]:
        """The first `limit` ranks of one leaderboard snapshot (a bounded partition read)."""
        validate_network(network)
        validate_page_size(limit, 10_000)
        return self._get_leaderboard_top(network, int(threshold), limit)

    def get_leaderboard(self, network: str, threshold: int) -> tuple[dt.datetime | None, list[LeaderboardEntry]]:
        validate_network(network)
        return self._get_leaderboard(network, int(threshold))

    def put_leaderboard(self, network: str, threshold: int, entries: Sequence[LeaderboardEntry], snapshot_at: dt.datetime) -> None:
        """Replace the snapshot of one (network, threshold) partition."""
        validate_network(network)
        self._put_leaderboard(network, int(threshold), list(entries), as_utc(snapshot_at))

    def add_hva_events(self, events: Sequence[HvaEvent]) -> None:
        for e in events:
            validate_network(e.network_name)
            validate_account_id(e.stellar_account)
            if e.event_type not in ("ENTERED", "EXITED", "RANK_UP", "RANK_DOWN"):
                raise InvalidInput("invalid_event", f"unknown HVA event type {e.event_type!r}")
        if events:
            self._add_hva_events(list(events))

    def get_hva_events(self, network: str, threshold: int, since: dt.datetime, until: dt.datetime, limit: int = 1000) -> list[HvaEvent]:
        validate_network(network)
        validate_page_size(limit, 10_000)
        return self._get_hva_events(network, int(threshold), as_utc(since), as_utc(until), limit)

    def get_hva_events_for_account(self, network: str, account: str, day: dt.date) -> list[HvaEvent]:
        return self._get_hva_events_for_account(validate_network(network), validate_account_id(account), day)

    @abc.abstractmethod
    def _get_leaderboard(self, network: str, threshold: int) -> tuple[dt.datetime | None, list[LeaderboardEntry]]: ...

    @abc.abstractmethod
    def _put_leaderboard(self, network: str, threshold: int, entries: list[LeaderboardEntry], snapshot_at: dt.datetime) -> None: ...

    @abc.abstractmethod
    def _add_hva_events(self, events: list[HvaEvent]) -> None: ...

    @abc.abstractmethod
    def _get_hva_events(self, network: str, threshold: int, since: dt.datetime, until: dt.datetime, limit: int) -> list[HvaEvent]: ...

    @abc.abstractmethod
    def _get_hva_events_for_account(self, network: str, account: str, day: dt.date) -> list[HvaEvent]: ...

    @abc.abstractmethod
    def _get_leaderboard_top(self, network: str, threshold: int, limit: int) -> tuple[dt.datetime | None, list[LeaderboardEntry]]: ...


class StageExecutionsPort(abc.ABC):
    """What each pipeline stage did for an account."""

    def record_stage(self, execution: StageExecution) -> None:
        validate_network(execution.network_name)
        validate_account_id(execution.stellar_account)
        self._record_stage(execution)

    def get_stage_executions(self, network: str, account: str, limit: int = 100) -> list[StageExecution]:
        validate_network(network)
        validate_account_id(account)
        validate_page_size(limit)
        return self._get_stage_executions(network, account, limit)

    @abc.abstractmethod
    def _record_stage(self, execution: StageExecution) -> None: ...

    @abc.abstractmethod
    def _get_stage_executions(self, network: str, account: str, limit: int) -> list[StageExecution]: ...


class CronHealthPort(abc.ABC):
    """Runs of the scheduled jobs."""

    def record_cron_run(self, run: CronRun) -> None:
        if not run.job_name or not isinstance(run.job_name, str):
            raise InvalidInput("invalid_job", "job_name is required", "job_name")
        self._record_cron_run(run)

    def get_cron_runs(self, job_name: str, limit: int = 20) -> list[CronRun]:
        validate_page_size(limit)
        return self._get_cron_runs(job_name, limit)

    @abc.abstractmethod
    def _record_cron_run(self, run: CronRun) -> None: ...

    @abc.abstractmethod
    def _get_cron_runs(self, job_name: str, limit: int) -> list[CronRun]: ...


class ConfigPort(abc.ABC):
    """Run-time configuration (pipeline_config)."""

    def get_config(self) -> dict[str, Any]:
        return self._get_config()

    def set_config(self, key: str, value: Any, now: dt.datetime) -> None:
        from common.config import parse_config_value

        parsed = parse_config_value(key, value)  # ValueError for unknown keys / bad values
        self._set_config(key, parsed, as_utc(now))

    @abc.abstractmethod
    def _get_config(self) -> dict[str, Any]: ...

    @abc.abstractmethod
    def _set_config(self, key: str, value: Any, now: dt.datetime) -> None: ...


class SpendLedgerPort(abc.ABC):
    """The BigQuery spend ledger: monthly totals, reservations, billed jobs."""

    # The month's total and its reservations live in one partition (bigquery_spend_reservations):
    # a reservation is a row with its own id, written together with the total (one transaction /
    # one conditional batch), so a write whose outcome was unknown is resolved by reading that id.
    def month_spend_micro_usd(self, month: str) -> int:
        """What the month has spent: settled charges plus every open reservation at its maximum."""
        total = self._get_spend_total(_check_month(month))
        return int(total["spent_micro_usd"] or 0) if total else self._legacy_month_spend(month)

    def try_reserve_spend(
        self, month: str, micro_usd: int, budget_micro_usd: int, now: dt.datetime,
        reservation_id: str | None = None, job_id: str | None = None, purpose: str | None = None,
    ) -> bool:
        """Atomically add micro_usd to the month's spend iff the total stays within budget, as an
        open reservation (RESERVED) named `reservation_id` (new_reservation_id(); one is made when
        absent). Reserving an id that exists already changes nothing and answers True."""
        _check_month(month)
        _check_micro_usd(micro_usd, "micro_usd")
        _check_micro_usd(budget_micro_usd, "budget_micro_usd")
        now = as_utc(now)
        rid = _check_reservation_id(reservation_id) if reservation_id is not None else new_reservation_id(now)
        if job_id is not None and not (isinstance(job_id, str) and _JOB_ID.match(job_id)):
            raise InvalidInput("invalid_job_id", "job_id must be 1 to 1024 letters, digits, _ or -", "job_id")
        if purpose is not None and not (isinstance(purpose, str) and 0 < len(purpose) <= 64):
            raise InvalidInput("invalid_purpose", "purpose must be a short text (1 to 64 characters)", "purpose")
        row = {
            "month": month, "reservation_id": rid, "job_id": job_id, "purpose": purpose, "state": SPEND_RESERVED,
            "reserved_micro_usd": micro_usd, "charged_micro_usd": micro_usd, "last_op": uuid.uuid4().hex,
            "created_at": now, "updated_at": now,
        }
        return self._reserve_spend(month, row, budget_micro_usd)

    def adjust_spend(
        self, month: str, reservation_id: str, delta_micro_usd: int, now: dt.datetime, state: str = "SETTLED", note: str | None = None
    ) -> bool:
        """Move one open reservation's charge by `delta_micro_usd` and set its state:
        SETTLED (final: the billed figure), RELEASED (final: the job never ran, the charge drops to 0)
        or UNKNOWN (still open: the outcome is unknown and the reservation stays charged in full
        until the job's statistics settle it).

        Bounded: the charge stays within 0..reserved (BigQuery cannot bill above maximum_bytes_billed),
        so a bad delta is an InvalidInput and nothing is written. Each reservation is closed once:
        adjusting one that is closed already changes nothing and answers False.
        """
        _check_month(month)
        _check_reservation_id(reservation_id)
        if isinstance(delta_micro_usd, bool) or not isinstance(delta_micro_usd, int):
            raise InvalidInput("invalid_amount", "delta_micro_usd must be a whole number of micro-USD", "delta_micro_usd")
        if state not in (SPEND_SETTLED, SPEND_RELEASED, SPEND_UNKNOWN):
            raise InvalidInput("invalid_state", f"state must be {SPEND_SETTLED}, {SPEND_RELEASED} or {SPEND_UNKNOWN}", "state")
        now = as_utc(now)
        for _ in range(100):
            current = self._get_spend_reservation(month, reservation_id)
            if current is None:
                raise InvalidInput("unknown_reservation", f"no spend reservation {reservation_id} in {month}", "reservation_id")
            if current["state"] not in OPEN_SPEND_STATES:
                return False
            reserved, charged = int(current["reserved_micro_usd"]), int(current["charged_micro_usd"])
            new = charged + delta_micro_usd
            if not 0 <= new <= reserved:
                raise InvalidInput(
                    "invalid_amount", f"a delta of {delta_micro_usd} would charge {new} micro-USD, outside 0..{reserved} (the reservation)",
                    "delta_micro_usd",
                )
            if state == SPEND_RELEASED and new != 0:
                raise InvalidInput("invalid_amount", "a released reservation is charged 0: the delta must cancel the charge", "delta_micro_usd")
            if state == SPEND_UNKNOWN and new != reserved:
                raise InvalidInput("invalid_amount", "an unknown outcome keeps the whole reservation charged", "delta_micro_usd")
            fields = {"state": state, "charged_micro_usd": new, "updated_at": now, "last_op": uuid.uuid4().hex}
            if note is not None:
                fields["note"] = str(note)[:500]
            if self._update_spend_reservation(month, reservation_id, current["state"], charged, fields, delta_micro_usd, state != SPEND_UNKNOWN):
                return True
        raise RuntimeError(f"spend reservation {reservation_id} of {month} did not settle")

    def get_spend_reservation(self, month: str, reservation_id: str) -> dict | None:
        return self._get_spend_reservation(_check_month(month), _check_reservation_id(reservation_id))

    def open_spend_reservations(self, month: str, created_before: dt.datetime | None = None, limit: int = 100) -> list[dict]:
        """Open reservations (RESERVED, UNKNOWN), oldest first; with `created_before` only older ones.
        One read of the month's total row (it lists the open ids), then one row read per id."""
        _check_month(month)
        validate_page_size(limit)
        total = self._get_spend_total(month)
        ids = sorted(total.get("open_reservations") or ()) if total else []
        if created_before is not None:
            cutoff = reservation_id_time(as_utc(created_before))
            ids = [i for i in ids if i[:16] < cutoff]
        out = []
        for rid in ids[:limit]:
            row = self._get_spend_reservation(month, rid)
            if row is not None and row["state"] in OPEN_SPEND_STATES:
                out.append(row)
        return out

    def record_spend(self, month: str, query_id: str, bytes_processed: int, bytes_billed: int, cost_micro_usd: int, purpose: str, now: dt.datetime) -> None:
        self._insert_spend_row({
            "month": _check_month(month), "recorded_at": as_utc(now), "query_id": query_id, "bytes_processed": int(bytes_processed),
            "bytes_billed": int(bytes_billed), "cost_micro_usd": int(cost_micro_usd), "purpose": purpose,
        })

    def get_spend_ledger(self, month: str, limit: int = 100) -> list[dict]:
        validate_page_size(limit)
        return self._get_spend_ledger(_check_month(month), limit)

    @abc.abstractmethod
    def _get_spend_total(self, month: str) -> dict | None:
        """The month's total row (spent_micro_usd, version, open_reservations), or None."""

    @abc.abstractmethod
    def _legacy_month_spend(self, month: str) -> int:
        """The month's total as kept before reservations (bigquery_budget), 0 when absent."""

    @abc.abstractmethod
    def _get_spend_reservation(self, month: str, reservation_id: str) -> dict | None: ...

    @abc.abstractmethod
    def _reserve_spend(self, month: str, row: dict, budget_micro_usd: int) -> bool:
        """Atomically: unless the reservation row exists already (then True), add its charge to the
        month's total (seeded from _legacy_month_spend) iff the total stays within budget, insert
        the row and list its id as open. A write with an unknown outcome is resolved by reading
        the row back (its `last_op`)."""

    @abc.abstractmethod
    def _update_spend_reservation(
        self, month: str, reservation_id: str, expect_state: str, expect_charged: int, fields: dict, delta: int, close: bool
    ) -> bool:
        """Atomically: iff the reservation still has expect_state and expect_charged, write `fields`,
        move the total by delta and (close) drop the id from the open ones. False when it had changed."""

    @abc.abstractmethod
    def _insert_spend_row(self, row: dict) -> None:
        """One bigquery_spend_ledger row (columns as named in cql/)."""

    @abc.abstractmethod
    def _get_spend_ledger(self, month: str, limit: int) -> list[dict]: ...


class ScanPort(abc.ABC):
    """Bounded scans of whole tables (the read-only query builder)."""

    def scan(self, table: str, network: str | None, max_rows: int) -> Iterator[dict]:
        """Read at most max_rows rows of a whitelisted table (optionally one network). Read-only."""
        if table not in SCANNABLE_TABLES:
            raise InvalidInput("invalid_table", f"table must be one of {', '.join(SCANNABLE_TABLES)}", "table")
        if network is not None:
            validate_network(network)
        validate_page_size(max_rows, 1_000_000)
        return self._scan(table, network, max_rows)

    @abc.abstractmethod
    def _scan(self, table: str, network: str | None, max_rows: int) -> Iterator[dict]: ...


class BulkWritePort(abc.ABC):
    """The bulk write path of the network-wide sync (common/store/bulk.py)."""

    BULK_CHUNK_SIZE = bulk.DEFAULT_CHUNK_SIZE  # rows per chunk when the caller gives none

    def bulk_add_creations(
        self, network: str, edges: Iterable[bulk.CreationEdge], *, now: dt.datetime, source: str = "BIGQUERY",
        chunk_size: int | None = None,
    ) -> bulk.BulkCounts:
        """Write a stream of creation edges: creation events, children rows, and each account's
        status-less lineage fields (the creator and date of its earliest creation, the current
        life's creation ledger). Idempotent and order-independent; memory bounded by one chunk.
        A bad row refuses its whole chunk with bulk.BulkRowRefused (see common/store/bulk.py)."""
        bulk.check_network(network)
        bulk.check_source(source)
        _check_now(now)
        size = bulk.chunk_size_or_default(chunk_size, self.BULK_CHUNK_SIZE)
        return bulk.run_chunks(
            edges, size, lambda edge: bulk.check_edge(edge, network),
            lambda chunk: self._bulk_write_creations(bulk.CreationChunk(network, chunk, source), as_utc(now)),
            lambda chunk: bulk.edges_ok(chunk, network),
        )

    def bulk_put_account_states(
        self, network: str, states: Iterable[bulk.AccountStateRow], *, now: dt.datetime, chunk_size: int | None = None
    ) -> bulk.BulkCounts:
        """Write a stream of accounts_current rows onto the lineage rows (balance, home_domain,
        flags, thresholds, deleted, enriched_at) and keep the balance index in step. Same chunking
        and bad-row rule as bulk_add_creations."""
        bulk.check_network(network)
        _check_now(now)
        size = bulk.chunk_size_or_default(chunk_size, self.BULK_CHUNK_SIZE)
        return bulk.run_chunks(
            states, size, lambda state: bulk.check_state(state, network),
            lambda chunk: self._bulk_write_states(network, chunk, as_utc(now)),
        )

    @abc.abstractmethod
    def _bulk_write_creations(self, chunk: bulk.CreationChunk, now: dt.datetime) -> bulk.BulkCounts:
        """Read the chunk's stored lineage creation fields, `chunk.plan(...)`, write the plan."""

    @abc.abstractmethod
    def _bulk_write_states(self, network: str, states: list[bulk.AccountStateRow], now: dt.datetime) -> bulk.BulkCounts:
        """Read the stored balances, `bulk.plan_states(...)`, write the plan."""


class HubbleSyncPort(abc.ABC):
    """The network-wide Hubble sync's ranges and state (0012; common/handlers/hubble_sync.py)."""

    def get_sync_state(self, network: str) -> SyncState | None:
        """The network's latest sync, or None when it never synced (one single-row read)."""
        rows = self._sync_select("sync_state", {"network": validate_network(network)})
        return _sync_state(rows[0]) if rows else None

    def list_sync_ranges(self, network: str, sync_id: str) -> list[SyncRange]:
        """Every range of one sync, oldest first (one partition)."""
        rows = self._sync_select("sync_ranges", {"network": validate_network(network), "sync_id": _check_sync_id(sync_id)})
        return sorted((_sync_range(r) for r in rows), key=lambda r: r.range_start)

    def start_sync(self, network: str, sync_id: str, mode: str, ranges: Sequence[tuple[dt.datetime, dt.datetime]],
                   now: dt.datetime, synced_through: dt.datetime | None = None) -> SyncState:
        """Record a planned sync: its ranges (PENDING; a range already stored keeps its status, so a
        re-plan never redoes one) and the network's state (RUNNING). `synced_through` carries the
        previous sync's mark into a daily sync, whose ranges start before it."""
        validate_network(network)
        _check_sync_id(sync_id)
        if mode not in ("full", "daily"):
            raise InvalidInput("invalid_mode", "mode must be full or daily", "mode")
        _check_now(now)
        checked = _check_ranges(ranges)
        known = {r.range_start for r in self.list_sync_ranges(network, sync_id)}
        new = [{"network": network, "sync_id": sync_id, "range_start": a, "range_end": b, "status": "PENDING",
                "rows": 0, "edges": 0, "merges": 0, "bytes_billed": 0, "spent_micro_usd": 0} for a, b in checked if a not in known]
        if new:
            self._sync_upsert("sync_ranges", new)
        state = self.get_sync_state(network)
        fields = {"sync_id": sync_id, "mode": mode, "status": "RUNNING", "last_error": None, "updated_at": as_utc(now)}
        if state is None or state.sync_id != sync_id:
            fields.update(started_at=as_utc(now), accounts=0, accounts_after=None,
                          synced_through=as_utc(synced_through) if synced_through else None)
        self._sync_upsert("sync_state", [{"network": network, **fields}])
        return self.refresh_sync_state(network, sync_id, now)

    def mark_sync_range_started(self, network: str, sync_id: str, range_start: dt.datetime, now: dt.datetime) -> SyncRange | None:
        """PENDING|FAILED|RUNNING -> RUNNING; None when the range is unknown; a DONE range is returned unchanged."""
        current = self._sync_range(network, sync_id, range_start)
        if current is None or current.status == "DONE":
            return current
        _check_now(now)
        self._sync_upsert("sync_ranges", [{"network": network, "sync_id": sync_id, "range_start": current.range_start,
                                           "status": "RUNNING", "started_at": as_utc(now), "last_error": None}])
        return dataclasses.replace(current, status="RUNNING", started_at=as_utc(now), last_error=None)

    def mark_sync_range_done(self, network: str, sync_id: str, range_start: dt.datetime, *, rows: int, edges: int, merges: int,
                             bytes_billed: int, spent_micro_usd: int, now: dt.datetime) -> SyncState:
        """The range is written: DONE with its counts; the network's state is recomputed from the ranges."""
        current = self._sync_range(network, sync_id, range_start)
        if current is None:
            raise InvalidInput("unknown_range", f"sync {sync_id} of {network} has no range starting {iso(range_start)}", "start")
        counts = {k: _check_count(v, k) for k, v in (("rows", rows), ("edges", edges), ("merges", merges),
                                                     ("bytes_billed", bytes_billed), ("spent_micro_usd", spent_micro_usd))}
        _check_now(now)
        if current.status != "DONE":
            self._sync_upsert("sync_ranges", [{"network": network, "sync_id": sync_id, "range_start": current.range_start,
                                               "status": "DONE", "finished_at": as_utc(now), "last_error": None, **counts}])
        return self.refresh_sync_state(network, sync_id, now)

    def mark_sync_range_failed(self, network: str, sync_id: str, range_start: dt.datetime, error: str, now: dt.datetime) -> SyncState | None:
        """The range's attempt failed (its task is retried): FAILED with the reason, on the range and the state."""
        current = self._sync_range(network, sync_id, range_start)
        if current is None or current.status == "DONE":
            return self.get_sync_state(network)
        _check_now(now)
        reason = str(error)[:500]
        self._sync_upsert("sync_ranges", [{"network": network, "sync_id": sync_id, "range_start": current.range_start,
                                           "status": "FAILED", "last_error": reason, "finished_at": as_utc(now)}])
        self._sync_upsert("sync_state", [{"network": network, "last_error": reason, "updated_at": as_utc(now)}])
        return self.refresh_sync_state(network, sync_id, now)

    def update_sync_accounts(self, network: str, sync_id: str, after: str | None, last: str, loaded: int, now: dt.datetime) -> bool:
        """Count one accounts_current page (accounts after `after` up to `last`) once: False, nothing
        written, when the state's resume point is not `after` (a retried page already counted)."""
        validate_network(network)
        validate_account_id(last, "last")
        _check_count(loaded, "loaded")
        _check_now(now)
        state = self.get_sync_state(network)
        if state is None or state.sync_id != sync_id or state.accounts_after != after:
            return False
        self._sync_upsert("sync_state", [{"network": network, "accounts": state.accounts + loaded, "accounts_after": last,
                                          "updated_at": as_utc(now)}])
        return True

    def finish_sync(self, network: str, sync_id: str, status: str, now: dt.datetime, error: str | None = None) -> SyncState:
        """Set the state's status (DONE once the accounts are loaded, FAILED with a reason)."""
        if status not in SYNC_STATUSES:
            raise InvalidInput("invalid_status", f"status must be one of {', '.join(SYNC_STATUSES)}", "status")
        state = self.get_sync_state(network)
        if state is None or state.sync_id != _check_sync_id(sync_id):
            raise InvalidInput("unknown_sync", f"{network}'s current sync is not {sync_id}", "sync_id")
        _check_now(now)
        self._sync_upsert("sync_state", [{"network": network, "status": status, "last_error": error, "updated_at": as_utc(now)}])
        return self.get_sync_state(network)

    def refresh_sync_state(self, network: str, sync_id: str, now: dt.datetime) -> SyncState:
        """Recompute the state's range counts and synced_through from the sync's ranges (idempotent)."""
        ranges = self.list_sync_ranges(network, sync_id)
        state = self.get_sync_state(network)
        if state is None or state.sync_id != sync_id:
            raise InvalidInput("unknown_sync", f"{network}'s current sync is not {sync_id}", "sync_id")
        through = state.synced_through
        for r in ranges:  # the done prefix; a daily sync's first range starts before the previous mark
            if r.status != "DONE":
                break
            if through is None and r is ranges[0] or through is not None and r.range_start <= through:
                through = max(through or r.range_end, r.range_end)
        done = [r for r in ranges if r.status == "DONE"]
        fields = {
            "ranges_total": len(ranges), "ranges_done": len(done), "synced_through": through,
            "edges": sum(r.edges for r in done), "merges": sum(r.merges for r in done),
            "bytes_billed": sum(r.bytes_billed for r in done), "spent_micro_usd": sum(r.spent_micro_usd for r in done),
            "updated_at": as_utc(now),
        }
        self._sync_upsert("sync_state", [{"network": network, **fields}])
        return dataclasses.replace(state, **fields)

    def gone_accounts(self, network: str, accounts: Sequence[str]) -> set[str]:
        """Those of `accounts` whose lineage row says gone (deleted, or a merged_at): the sync's
        check for a re-created account, reading two columns of each row (at most MAX_PAGE_SIZE)."""
        validate_network(network)
        if len(accounts) > MAX_PAGE_SIZE:
            raise InvalidInput("invalid_limit", f"at most {MAX_PAGE_SIZE} accounts per batch read", "accounts")
        for a in accounts:
            validate_account_id(a)
        return self._gone_accounts(network, list(dict.fromkeys(accounts))) if accounts else set()

    def _sync_range(self, network: str, sync_id: str, range_start: dt.datetime) -> SyncRange | None:
        validate_network(network)
        _check_sync_id(sync_id)
        _check_now(range_start)
        rows = self._sync_select("sync_ranges", {"network": network, "sync_id": sync_id, "range_start": as_utc(range_start)})
        return _sync_range(rows[0]) if rows else None

    @abc.abstractmethod
    def _sync_upsert(self, table: str, rows: list[dict]) -> None:
        """Upsert rows of sync_ranges / sync_state (the columns given; others left as they are)."""

    @abc.abstractmethod
    def _sync_select(self, table: str, where: dict) -> list[dict]:
        """Rows of sync_ranges / sync_state matching the key columns in `where`."""

    @abc.abstractmethod
    def _gone_accounts(self, network: str, accounts: list[str]) -> set[str]: ...


# What each handler's code may call on the store (common/deps.py types its `store` with one of these).
# The port order is the same in each, so the bundle below has one consistent MRO.
class FlowStore(SearchCachePort, LineagePort, CreationEventsPort, ChildrenPort, ChildrenSummaryPort, StageExecutionsPort,
                HubbleSyncPort, abc.ABC):
    """common/pipeline.py and search: the account flow, the lineage view, the sync's state."""


class WorkerStore(FlowStore, BalanceIndexPort, ConfigPort, SpendLedgerPort, abc.ABC):
    """process_account and api_fallback: the flow plus what a crawl writes and the BigQuery budget."""


class SyncStore(WorkerStore, BulkWritePort, abc.ABC):
    """hubble_sync: a worker's ports plus the bulk writes."""


class ScheduledStore(FlowStore, BalanceIndexPort, HvaPort, CronHealthPort, ConfigPort, abc.ABC):
    """hva_recalc and reset_stale: recovery, rankings, counters, landing views, their cron runs."""


class StatsStore(ScheduledStore, SchemaPort, SpendLedgerPort, ScanPort, abc.ABC):
    """stats: every read model, the query builder's scans, health, and /config."""


class Store(SyncStore, StatsStore, abc.ABC):
    """Every port in one object, for wiring: an adapter implements them all; a handler receives
    only the ports it uses (common/bootstrap.py)."""

    backend: str = "abstract"
    # the driver's "did not answer" errors, raised by every public method as StoreUnavailable
    unavailable_errors: tuple[type[BaseException], ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        names = {name for klass in cls.__mro__ for name in vars(klass) if not name.startswith("_")}
        for name in names:
            value = inspect.getattr_static(cls, name)
            if inspect.isfunction(value) and not getattr(value, "__store_translated__", False) \
                    and not getattr(value, "__isabstractmethod__", False):
                setattr(cls, name, _translating(value))


def _mark_counted_change(store: "Store", network: str, account: str, fields: dict) -> bool:
    """Before a lineage write that can change what /pipeline-stats counts: leave a dirty marker
    (hour bucket of the write) so a writer dying before its counter sync is repaired."""
    if not any(f in fields for f in _COUNTED_FIELDS):
        return False
    when = as_utc(fields.get("updated_at") or fields.get("last_pipeline_attempt") or dt.datetime.now(dt.timezone.utc))
    store._mark_stats_dirty(network, counted_state.hour_bucket(when), account, when)
    return True


def _check_hour_bucket(bucket: str) -> str:
    try:
        ok = isinstance(bucket, str) and len(bucket) == 13 and dt.datetime.strptime(bucket, "%Y-%m-%dT%H") is not None
    except ValueError:
        ok = False
    if not ok:
        raise InvalidInput("invalid_bucket", "hour bucket must look like 2026-11-30T14", "bucket")
    return bucket


_SYNC_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def _check_sync_id(sync_id: Any) -> str:
    if not isinstance(sync_id, str) or not _SYNC_ID.match(sync_id):
        raise InvalidInput("invalid_sync_id", "sync_id must be 1-63 lower-case letters, digits and hyphens", "sync_id")
    return sync_id


def _check_count(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput("invalid_count", f"{field} must be a whole number >= 0", field)
    return value


def _check_ranges(ranges: Any) -> list[tuple[dt.datetime, dt.datetime]]:
    out = []
    for pair in ranges:
        start, end = pair
        _check_now(start)
        _check_now(end)
        start, end = as_utc(start), as_utc(end)
        if not start < end or (out and start < out[-1][1]):
            raise InvalidInput("invalid_range", "ranges must be [start, end) with start < end, in order, not overlapping", "ranges")
        out.append((start, end))
    if not out:
        raise InvalidInput("invalid_range", "a sync has at least one range", "ranges")
    return out


def _sync_range(row: dict) -> SyncRange:
    names = {f.name for f in dataclasses.fields(SyncRange)}
    fields = {k: v for k, v in row.items() if k in names and v is not None}
    for k in ("range_start", "range_end", "started_at", "finished_at"):
        if k in fields:
            fields[k] = as_utc(fields[k])
    return SyncRange(**fields)


def _sync_state(row: dict) -> SyncState:
    names = {f.name for f in dataclasses.fields(SyncState)}
    fields = {k: v for k, v in row.items() if k in names and v is not None}
    for k in ("synced_through", "updated_at", "started_at"):
        if k in fields:
            fields[k] = as_utc(fields[k])
    fields.setdefault("status", "RUNNING")
    fields.setdefault("sync_id", "")
    return SyncState(**fields)


def _check_now(now: Any) -> None:
    if not isinstance(now, dt.datetime):
        raise InvalidInput("invalid_timestamp", "now must be a datetime", "now")


def _check_month(month: str) -> str:
    if not isinstance(month, str) or len(month) != 7 or month[4] != "-" or not (month[:4] + month[5:]).isascii() or not (month[:4] + month[5:]).isdigit():
        raise InvalidInput("invalid_month", "month must look like 2026-11", "month")
    return month


# BigQuery spend reservations (bigquery_spend_reservations): open while RESERVED (the query runs)
# or UNKNOWN (its outcome is unknown: charged in full until the job's statistics settle it).
SPEND_RESERVED, SPEND_UNKNOWN, SPEND_SETTLED, SPEND_RELEASED = "RESERVED", "UNKNOWN", "SETTLED", "RELEASED"
OPEN_SPEND_STATES = (SPEND_RESERVED, SPEND_UNKNOWN)
SPEND_TOTAL_ROW = "~total"  # the month's total; sorts after every reservation id
_RESERVATION_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{16,32}$")
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,1024}$")  # BigQuery's job id alphabet


def reservation_id_time(when: dt.datetime) -> str:
    return as_utc(when).strftime("%Y%m%dT%H%M%SZ")


def new_reservation_id(now: dt.datetime) -> str:
    """Creation time (so the open ones can be aged without reading them) and 80 random bits."""
    return f"{reservation_id_time(now)}-{uuid.uuid4().hex[:20]}"


def _check_reservation_id(reservation_id: Any) -> str:
    if not isinstance(reservation_id, str) or not _RESERVATION_ID.match(reservation_id):
        raise InvalidInput("invalid_reservation_id", "reservation_id must be made by new_reservation_id (e.g. 20260101T000000Z-0a1b...)", "reservation_id")
    return reservation_id


def _check_micro_usd(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput("invalid_amount", f"{field} must be a whole number of micro-USD >= 0", field)
    return value
