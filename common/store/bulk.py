"""The bulk write path of the network-wide sync: input rows, validation, chunks, and the plan
both adapters carry out ("earliest creation wins").

A stream of creation edges (an account created by a creator at a time, with the operation id,
ledger and starting balance) is consumed `chunk_size` rows at a time, so memory is bounded by
one chunk whatever the stream's length (a generator of millions is fine).

Bad rows: each chunk is validated as a whole before any of it is written. A bad row refuses its
whole chunk: BulkRowRefused (an InvalidInput) names the row's position in the stream, the field
and the chunk, and carries the counts of the chunks written before it. Those stay written;
every write is idempotent, so the caller fixes or drops the row and runs the stream again.

Per chunk the adapter reads, for each distinct account, its lineage row's creator, creation
date and creation ledger (`Stored`), and `CreationChunk.plan` decides what to write:
- creation_events: every distinct (account, created_at, operation_id), an upsert.
- lineage row: creator and creation date of the account's EARLIEST creation (order: created_at,
  then the operation id as a number), whatever order the rows and chunks arrive in; ties at the
  same close time are settled by the stored events' operation ids. `creation_ledger` (when the
  schema has it) is the largest creating-operation ledger known: the current life's. Only a
  change is written; a new row gets created_at, every change updated_at. No status is written.
- account_children: one row per (creator, account); the creator's earliest creation of the
  account when it created it more than once (a merged-then-recreated account is a child of
  each of its creators).
Only the rare ambiguous cases cost an extra read (a tie; a pair whose creator is not the
account's first): `plan` asks the adapter for exactly those.

Concurrency: the decision is a read-compare-write, exact when the bulk writes of one network run
one after another (the sync runs its ranges one at a time); SQLite makes each chunk one
transaction, so concurrent writers are exact there too.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from common.domain import InvalidInput, as_utc, is_valid_account_id, validate_network

DEFAULT_CHUNK_SIZE = 5_000
MAX_CHUNK_SIZE = 100_000
CREATION_SOURCES = ("BIGQUERY", "HORIZON", "EXPERT")
MAX_LEDGER = 2**31 - 1  # the columns are CQL int
MAX_OPERATION_ID_LENGTH = 64


@dataclasses.dataclass(frozen=True, slots=True)
class CreationEdge:
    """One successful create_account: `account` (the child) created by `creator`."""

    network_name: str
    creator: str
    account: str
    created_at: dt.datetime
    operation_id: str
    ledger: int | None = None
    starting_balance: Decimal | None = None
    transaction_hash: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class AccountStateRow:
    """One accounts_current row in the lineage record's terms (as common.hubble.sql.AccountState)."""

    network_name: str
    account: str
    xlm_balance: Decimal | None
    home_domain: str | None = None
    flags: dict | None = None
    thresholds: dict | None = None
    deleted: bool = False
    as_of: dt.datetime | None = None  # when the state was true; stored as enriched_at (else now)


@dataclasses.dataclass
class BulkCounts:
    """What one bulk call did. Re-running the same input writes the same rows again (upserts)."""

    rows: int = 0  # input rows consumed (written chunks only)
    chunks: int = 0
    creation_events: int = 0  # distinct events upserted
    children: int = 0  # account_children rows upserted
    lineage_created: int = 0  # lineage rows that did not exist
    lineage_updated: int = 0  # lineage rows changed (earlier creation, later ledger, new state)
    balance_index: int = 0  # balance index entries written (account states)

    def add(self, other: "BulkCounts") -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class BulkRowRefused(InvalidInput):
    """A bad row: its whole chunk was refused (nothing of it written); earlier chunks were written."""

    def __init__(self, row: int, chunk: tuple[int, int], cause: InvalidInput, written: BulkCounts):
        super().__init__(
            cause.code,
            f"row {row}: {cause.message}; rows {chunk[0]}-{chunk[1]} (its chunk) were not written, "
            f"the {written.rows} rows before them were",
            cause.field,
        )
        self.row = row
        self.chunk = chunk
        self.written = written


T = TypeVar("T")


def chunk_size_or_default(chunk_size: int | None, default: int = DEFAULT_CHUNK_SIZE) -> int:
    size = default if chunk_size is None else chunk_size
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_CHUNK_SIZE:
        raise InvalidInput("invalid_chunk_size", f"chunk_size must be an integer from 1 to {MAX_CHUNK_SIZE}", "chunk_size")
    return size


def run_chunks(
    rows: Iterable[T],
    chunk_size: int,
    check: Callable[[T], None],
    write: Callable[[list[T]], BulkCounts],
    chunk_ok: Callable[[list[T]], bool] | None = None,
) -> BulkCounts:
    """Consume `rows` chunk by chunk: check every row of a chunk, then write it. Bounded memory.
    `chunk_ok(chunk)`, when given, is a faster check of a whole chunk that accepts only what
    `check` accepts; when it says no, `check` runs row by row to name the bad row."""
    total = BulkCounts()
    start = 0
    for chunk in _chunks(rows, chunk_size):
        if chunk_ok is None or not chunk_ok(chunk):
            for offset, row in enumerate(chunk):
                try:
                    check(row)
                except InvalidInput as exc:
                    raise BulkRowRefused(start + offset, (start, start + len(chunk) - 1), exc, total) from exc
        counts = write(chunk)
        counts.rows, counts.chunks = len(chunk), 1
        total.add(counts)
        start += len(chunk)
    return total


def _chunks(rows: Iterable[T], size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# ---------------------------------------------------------------------------------- validation
def _account(value: Any, field: str) -> None:
    if not is_valid_account_id(value):
        raise InvalidInput("invalid_account", f"{field} {value!r} is not a valid Stellar account id (G..., 56 characters, valid checksum)", field)


def _network(value: Any, network: str) -> None:
    if value != network:
        raise InvalidInput("invalid_network", f"row is for network {value!r}, this write is for {network!r}", "network_name")


def _balance(value: Any, field: str) -> None:
    if value is not None and (not isinstance(value, Decimal) or not value.is_finite() or value < 0):
        raise InvalidInput("invalid_balance", f"{field} must be a non-negative Decimal or None, got {value!r}", field)


def _timestamp(value: Any, field: str) -> None:
    if not isinstance(value, dt.datetime):
        raise InvalidInput("invalid_timestamp", f"{field} must be a datetime, got {value!r}", field)


def _row(row: Any, cls: type, network: str) -> None:
    if not isinstance(row, cls):
        raise InvalidInput("invalid_row", f"expected a {cls.__name__}, got {type(row).__name__}")
    _network(row.network_name, network)


def check_edge(edge: Any, network: str) -> None:
    _row(edge, CreationEdge, network)
    _account(edge.creator, "creator")
    _account(edge.account, "account")
    if edge.creator == edge.account:
        raise InvalidInput("invalid_edge", f"account {edge.account} cannot be its own creator", "creator")
    _timestamp(edge.created_at, "created_at")
    op = edge.operation_id
    if not isinstance(op, str) or not op or len(op) > MAX_OPERATION_ID_LENGTH:
        raise InvalidInput("invalid_operation_id", f"operation_id must be a non-empty string of at most {MAX_OPERATION_ID_LENGTH} characters, got {op!r}", "operation_id")
    ledger = edge.ledger
    if ledger is not None and (isinstance(ledger, bool) or not isinstance(ledger, int) or not 1 <= ledger <= MAX_LEDGER):
        raise InvalidInput("invalid_ledger", f"ledger must be an integer from 1 to {MAX_LEDGER} or None, got {ledger!r}", "ledger")
    _balance(edge.starting_balance, "starting_balance")
    if edge.transaction_hash is not None and not isinstance(edge.transaction_hash, str):
        raise InvalidInput("invalid_transaction_hash", "transaction_hash must be a string or None", "transaction_hash")


def edges_ok(edges: Sequence[Any], network: str) -> bool:
    """True when every edge passes check_edge (the same rules, inlined for speed, and each distinct
    account id's StrKey checksum verified once per chunk); False: run check_edge row by row."""
    valid: set[str] = set()
    for edge in edges:
        if type(edge) is not CreationEdge or edge.network_name != network:
            return False
        creator, account, op, ledger, balance = edge.creator, edge.account, edge.operation_id, edge.ledger, edge.starting_balance
        if type(creator) is not str or type(account) is not str or creator == account:
            return False
        if creator not in valid:
            if not is_valid_account_id(creator):
                return False
            valid.add(creator)
        if account not in valid:
            if not is_valid_account_id(account):
                return False
            valid.add(account)
        if type(edge.created_at) is not dt.datetime or type(op) is not str or not 0 < len(op) <= MAX_OPERATION_ID_LENGTH:
            return False
        if ledger is not None and (type(ledger) is not int or not 1 <= ledger <= MAX_LEDGER):
            return False
        if balance is not None and (type(balance) is not Decimal or not balance.is_finite() or balance < 0):
            return False
        if edge.transaction_hash is not None and type(edge.transaction_hash) is not str:
            return False
    return True


def check_state(state: Any, network: str) -> None:
    _row(state, AccountStateRow, network)
    _account(state.account, "account")
    _balance(state.xlm_balance, "xlm_balance")
    if state.home_domain is not None and (not isinstance(state.home_domain, str) or len(state.home_domain) > 255):
        raise InvalidInput("invalid_home_domain", "home_domain must be a string of at most 255 characters or None", "home_domain")
    for name in ("flags", "thresholds"):
        if getattr(state, name) is not None and not isinstance(getattr(state, name), dict):
            raise InvalidInput(f"invalid_{name}", f"{name} must be a dict or None", name)
    if not isinstance(state.deleted, bool):
        raise InvalidInput("invalid_deleted", "deleted must be a bool", "deleted")
    if state.deleted and state.xlm_balance is not None:
        raise InvalidInput("invalid_balance", "a deleted account has no balance", "xlm_balance")
    if state.as_of is not None:
        _timestamp(state.as_of, "as_of")


def check_source(source: Any) -> str:
    if source not in CREATION_SOURCES:
        raise InvalidInput("invalid_source", f"source must be one of {', '.join(CREATION_SOURCES)}", "source")
    return source


def check_network(network: Any) -> str:
    return validate_network(network)


# ---------------------------------------------------------------------------------- the plan
def operation_key(operation_id: str | None) -> tuple[int, str]:
    """Operation ids in execution order: TOIDs are decimal numbers, so (length, text) orders them
    numerically (and any other id deterministically)."""
    op = operation_id or ""
    return (len(op), op)


def _edge_key(edge: CreationEdge) -> tuple:
    return (edge.created_at, operation_key(edge.operation_id))


@dataclasses.dataclass(frozen=True, slots=True)
class Stored:
    """The creation fields of an account's lineage row before the chunk (None: no row)."""

    creator: str | None
    created_at: dt.datetime | None
    ledger: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class StoredEvent:
    created_at: dt.datetime
    operation_id: str | None
    creator: str | None


EVENT_COLUMNS = ("network_name", "stellar_account", "created_at", "operation_id", "creator", "starting_balance",
                 "transaction_hash", "source", "ledger")
CHILD_COLUMNS = ("network_name", "creator", "child", "created_at", "operation_id", "starting_balance")


@dataclasses.dataclass
class CreationPlan:
    network: str
    source: str
    event_edges: list[CreationEdge]  # one creation_events row each
    child_edges: list[CreationEdge]  # one account_children row each
    lineage: list[dict]  # account_lineage partial rows (network_name, stellar_account + changed columns)
    counts: BulkCounts

    def event_rows(self) -> Iterator[tuple]:
        """creation_events rows as value tuples in EVENT_COLUMNS order."""
        net, source = self.network, self.source
        for e in self.event_edges:
            yield (net, e.account, e.created_at, e.operation_id, e.creator, e.starting_balance, e.transaction_hash, source, e.ledger)

    def child_rows(self) -> Iterator[tuple]:
        """account_children rows as value tuples in CHILD_COLUMNS order."""
        net = self.network
        for e in self.child_edges:
            yield (net, e.creator, e.account, e.created_at, e.operation_id, e.starting_balance)

    @property
    def events(self) -> list[dict]:
        return [dict(zip(EVENT_COLUMNS, row)) for row in self.event_rows()]

    @property
    def children(self) -> list[dict]:
        return [dict(zip(CHILD_COLUMNS, row)) for row in self.child_rows()]


class CreationChunk:
    """One chunk of validated edges, de-duplicated and grouped by account."""

    def __init__(self, network: str, edges: Sequence[CreationEdge], source: str):
        self.network = network
        self.source = source
        self.events: dict[tuple, CreationEdge] = {}
        self.first: dict[str, CreationEdge] = {}  # account -> its earliest edge in the chunk
        self.max_ledger: dict[str, int] = {}
        self.pairs: dict[tuple[str, str], CreationEdge] = {}  # (creator, account) -> earliest edge
        events, first, pairs, max_ledger = self.events, self.first, self.pairs, self.max_ledger
        first_key: dict[str, tuple] = {}
        pair_key: dict[tuple[str, str], tuple] = {}
        for edge in edges:
            at = edge.created_at
            if _needs_utc(at):
                edge = dataclasses.replace(edge, created_at=as_utc(at))
                at = edge.created_at
            account, op = edge.account, edge.operation_id
            events[(account, at, op)] = edge
            key = (at, (len(op), op))  # _edge_key(edge)
            known = first_key.get(account)
            if known is None or key < known:
                first[account] = edge
                first_key[account] = key
            pair = (edge.creator, account)
            known = pair_key.get(pair)
            if known is None or key < known:
                pairs[pair] = edge
                pair_key[pair] = key
            ledger = edge.ledger
            if ledger is not None and ledger > max_ledger.get(account, 0):
                max_ledger[account] = ledger

    @property
    def accounts(self) -> list[str]:
        return list(self.first)

    def plan(
        self,
        stored: dict[str, Stored],
        now: dt.datetime,
        with_ledger: bool,
        earliest_events: Callable[[list[tuple[str, dt.datetime]]], dict[str, StoredEvent]],
        stored_pairs: Callable[[list[tuple[str, str]]], dict[tuple[str, str], StoredEvent]],
    ) -> CreationPlan:
        """Decide the writes. `stored` holds the lineage row of every account that has one;
        `earliest_events([(account, at)])` -> the stored event at `at` that comes first, per account
        (ties); `stored_pairs([(creator, account)])` -> the stored account_children row per pair."""
        now = as_utc(now)
        network, max_ledger = self.network, self.max_ledger
        counts = BulkCounts(creation_events=len(self.events))
        ties = [
            (a, f.created_at) for a, f in self.first.items()
            if (s := stored.get(a)) and s.created_at == f.created_at and s.creator is not None and s.creator != f.creator
        ]
        tie_events = earliest_events(ties) if ties else {}
        lineage: list[dict] = []
        first_wins: set[str] = set()
        for account, first in self.first.items():
            s = stored.get(account)
            row: dict[str, Any] = {"network_name": network, "stellar_account": account}
            if s is None or s.creator is None or s.created_at is None or first.created_at < s.created_at:
                takes_first = True
            elif first.created_at == s.created_at and first.creator != s.creator:
                e = tie_events.get(account)  # the stored event that comes first at that time
                takes_first = e is None or _edge_key(first) <= (e.created_at, operation_key(e.operation_id))
            else:
                takes_first = False
            if takes_first:
                row["stellar_creator_account"] = first.creator
                row["account_creation_date"] = first.created_at
                first_wins.add(account)
            if with_ledger:
                stored_ledger = s.ledger if s is not None else None
                ledger = max_ledger.get(account)
                if ledger is None or (stored_ledger is not None and stored_ledger > ledger):
                    ledger = stored_ledger
                if ledger is not None and ledger != stored_ledger:
                    row["creation_ledger"] = ledger
            if len(row) == 2:
                continue
            if s is None:
                row["created_at"] = now
                counts.lineage_created += 1
            else:
                counts.lineage_updated += 1
            row["updated_at"] = now
            lineage.append(row)
        children, to_check = [], []
        first_of = self.first
        for pair, edge in self.pairs.items():
            account = pair[1]
            s = stored.get(account)
            if s is None or (account in first_wins and first_of[account] is edge):
                children.append(edge)  # no stored row, or the account's first creation: nothing can be earlier
            elif s.created_at is None or edge.created_at < s.created_at:
                children.append(edge)
            elif s.creator == pair[0] and s.created_at == edge.created_at:
                children.append(edge)  # the stored first life itself (a re-run)
            else:
                to_check.append(pair)
        if to_check:
            rows = stored_pairs(to_check)
            for pair in to_check:
                edge, row = self.pairs[pair], rows.get(pair)
                if row is None or row.created_at is None or _edge_key(edge) < (row.created_at, operation_key(row.operation_id)):
                    children.append(edge)
        counts.children = len(children)
        return CreationPlan(network, self.source, list(self.events.values()), children, lineage, counts)


def _needs_utc(value: dt.datetime) -> bool:
    return value.tzinfo is not dt.timezone.utc or value.microsecond % 1000 != 0


@dataclasses.dataclass
class StatePlan:
    lineage: list[dict]  # account_lineage partial rows
    index_deletes: list[tuple[int, Decimal, str]]  # balance_index (magnitude, balance, account) to remove
    index_puts: list[tuple[int, Decimal, str]]
    counts: BulkCounts


def plan_states(
    network: str, states: Sequence[AccountStateRow], stored: dict[str, Decimal | None], now: dt.datetime, with_deleted: bool
) -> StatePlan:
    """The lineage columns each accounts_current row sets (as process_account's _state_fields),
    and the balance index kept in step: `stored` maps every account that has a lineage row to its
    stored balance. The last row of an account in the chunk wins."""
    from common.store.port import balance_magnitude

    latest = {s.account: s for s in states}
    counts = BulkCounts()
    lineage, deletes, puts = [], [], []
    for account, state in latest.items():
        row = {
            "network_name": network,
            "stellar_account": account,
            "xlm_balance": state.xlm_balance,
            "home_domain": state.home_domain,
            "flags": state.flags,
            "thresholds": state.thresholds,
            "enriched_at": as_utc(state.as_of or now),
        }
        if with_deleted:
            row["deleted"] = state.deleted
        if account in stored:
            counts.lineage_updated += 1
            old = stored[account]
        else:
            row["created_at"] = as_utc(now)
            counts.lineage_created += 1
            old = None
        lineage.append(row)
        new = state.xlm_balance
        if old is not None and old != new:
            deletes.append((balance_magnitude(old), old, account))
        if new is not None:
            puts.append((balance_magnitude(new), new, account))
    counts.balance_index = len(puts)
    return StatePlan(lineage, deletes, puts, counts)

