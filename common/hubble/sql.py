"""The SQL the Hubble path runs: one BigQuery-dialect text per question, for every engine.

Rules (the issue's, enforced here and by tests/unit/test_hubble_sql.py):
- values go in as named query parameters (@account, @lo, ...), never formatted into the text; only
  the table names are, and they are validated identifiers (common/hubble/port.py);
- only successful create_account operations count (`type = 0 AND successful`);
- every read of enriched_history_operations filters its partition column `closed_at` with the
  narrowest range known: a lineage query from the network's first ledger to now (an account can be
  re-created after a merge, so no later lower bound is safe); a children page from the later of the
  account's first creation and the previous page's last child, to now;
- children come in a stable order (closed_at, op_id) and are paged by keyset on that pair, so a page
  neither skips nor repeats a child, whatever arrives meanwhile;
- a new account takes two queries: its lineage (creation events + accounts_current row, one
  query), then its first page of children. A page asks for one row more than it keeps, so the
  last page is known without an extra query; the total is counted (one more query) only when
  the `children_max` cap stops a crawl before its end.

Columns are the stellar-dbt marts' (enriched_history_operations: op_id, type, successful, account,
funder, starting_balance, closed_at; accounts_current: account_id, balance, flags, home_domain,
master_weight, threshold_*, deleted, batch_insert_ts). transaction_hash is deliberately not read:
BigQuery bills every byte of every referenced column in the scanned partitions, and a 64-character
hash over the whole history would cost more than everything else together.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
from decimal import Decimal
from typing import Iterable

from common.domain import NETWORK_START, ChildEdge, CreationEvent, InvalidInput, MergeEvent, as_utc, validate_account_id, validate_network
from common.hubble.port import HubbleQuery, HubbleTables, QueryParam

UTC = dt.timezone.utc
# The upper bound is "now" plus a margin for clock skew between us and the ledger's close times.
UPPER_MARGIN = dt.timedelta(minutes=10)
CURSOR_PREFIX = "hubble:v1:"
FLAG_BITS = {"auth_required": 1, "auth_revocable": 2, "auth_immutable": 4, "auth_clawback_enabled": 8}
MAX_PAGE_SIZE = 10_000
MAX_LEDGER = 2**31 - 1
# The shape of a G-address. Children are checked for shape here (cheap, 10,000 a page); the
# store checks every checksum before it writes, and a failure there ends the Hubble path too.
_ADDRESS_SHAPE = re.compile(r"^G[A-Z2-7]{55}$")

LINEAGE_SQL = """\
SELECT
  q.account_id AS account,
  e.op_id AS op_id,
  e.closed_at AS closed_at,
  e.funder AS funder,
  e.starting_balance AS starting_balance,
  s.balance AS balance,
  s.flags AS flags,
  s.home_domain AS home_domain,
  s.master_weight AS master_weight,
  s.threshold_low AS threshold_low,
  s.threshold_medium AS threshold_medium,
  s.threshold_high AS threshold_high,
  s.deleted AS deleted,
  s.batch_insert_ts AS state_at
FROM (SELECT @account AS account_id) AS q
LEFT JOIN (
  SELECT account, op_id, closed_at, funder, starting_balance
  FROM `{operations}`
  WHERE closed_at >= @lo AND closed_at < @hi
    AND type = 0 AND successful
    AND account = @account
) AS e ON e.account = q.account_id
LEFT JOIN (
  SELECT account_id, balance, flags, home_domain, master_weight, threshold_low, threshold_medium,
         threshold_high, deleted, batch_insert_ts
  FROM `{accounts}`
  WHERE account_id = @account
) AS s ON s.account_id = q.account_id
ORDER BY closed_at, op_id
"""

CHILDREN_SQL = """\
SELECT account, op_id, closed_at, starting_balance
FROM `{operations}`
WHERE closed_at >= @lo AND closed_at < @hi
  AND ledger_sequence < @before_ledger
  AND type = 0 AND successful
  AND funder = @account
  AND (closed_at > @after_closed_at OR (closed_at = @after_closed_at AND op_id > @after_op_id))
ORDER BY closed_at, op_id
LIMIT @page_limit
"""

# Only when the children_max cap stops a crawl early: how many children there are in all.
CHILDREN_COUNT_SQL = """\
SELECT COUNT(*) AS children
FROM `{operations}`
WHERE closed_at >= @lo AND closed_at < @hi
  AND type = 0 AND successful
  AND funder = @account
"""

STATE_SQL = """\
SELECT account_id AS account, balance, flags, home_domain, master_weight, threshold_low,
       threshold_medium, threshold_high, deleted, batch_insert_ts AS state_at,
       sequence_number, last_modified_ledger, closed_at AS modified_at, account_creation_date
FROM `{accounts}`
WHERE account_id = @account
"""

# Every life of an account inside one closed_at window: its successful creations (type 0, the
# account is `account`) and merges (type 8, the merged account is `account`, the receiver `into`).
# The window comes from the ledger of its sequence number (common/ledger_time.py); the ledger
# range keeps the answer exact whatever the window's margin, and lets BigQuery's clustering on
# ledger_sequence skip blocks inside the partitions the window leaves.
LIVES_SQL = """\
SELECT op_id, type, ledger_sequence, closed_at, funder, `into` AS merged_into, starting_balance
FROM `{operations}`
WHERE closed_at >= @lo AND closed_at < @hi
  AND ledger_sequence >= @ledger_lo AND ledger_sequence <= @ledger_hi
  AND type IN (0, 8) AND successful
  AND account = @account
ORDER BY closed_at, op_id
"""


# ---------------------------------------------------------------------------------- cursors
@dataclasses.dataclass(frozen=True)
class ChildCursor:
    """The last child returned: the next page starts strictly after (closed_at, op_id)."""

    closed_at: dt.datetime
    op_id: int

    def encode(self) -> str:
        return f"{CURSOR_PREFIX}{as_utc(self.closed_at).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}:{self.op_id}"

    @classmethod
    def decode(cls, text: str) -> "ChildCursor":
        if not isinstance(text, str) or not text.startswith(CURSOR_PREFIX):
            raise InvalidInput("invalid_cursor", "not a Hubble children cursor", "cursor")
        when, _, op = text[len(CURSOR_PREFIX):].rpartition(":")
        try:
            closed_at = dt.datetime.strptime(when, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
            op_id = int(op)
        except ValueError:
            raise InvalidInput("invalid_cursor", "malformed Hubble children cursor", "cursor") from None
        return cls(closed_at, op_id)

    @staticmethod
    def is_hubble(text: str | None) -> bool:
        return isinstance(text, str) and text.startswith(CURSOR_PREFIX)


# ---------------------------------------------------------------------------------- builders
def _check(network: str, account: str, tables: HubbleTables) -> None:
    validate_network(network)
    validate_account_id(account)
    if not isinstance(tables, HubbleTables):
        raise TypeError("tables must be HubbleTables")


def _upper(now: dt.datetime) -> dt.datetime:
    return as_utc(now) + UPPER_MARGIN


def lineage_query(tables: HubbleTables, network: str, account: str, now: dt.datetime) -> HubbleQuery:
    """Every successful creation of `account` (oldest first) and its accounts_current row."""
    _check(network, account, tables)
    return HubbleQuery(
        sql=LINEAGE_SQL.format(operations=tables.operations, accounts=tables.accounts),
        params=(
            QueryParam("account", "STRING", account),
            QueryParam("lo", "TIMESTAMP", NETWORK_START[network]),
            QueryParam("hi", "TIMESTAMP", _upper(now)),
        ),
        purpose="lineage",
        tables=tables.all(),
    )


def children_query(
    tables: HubbleTables, network: str, account: str, after: ChildCursor, now: dt.datetime, page_size: int,
    before_ledger: int | None = None, before: dt.datetime | None = None,
) -> HubbleQuery:
    """One page of the accounts `account` created, strictly after `after`, oldest first.

    For the first page, `after` is (first creation time, -1): nothing can be created by an account
    before the account itself exists, so that is also the partition filter's lower bound.
    `before_ledger` (with `before`, a close time no earlier ledger reaches) limits the crawl to the
    ledgers before it: the API path's gap below Horizon's elder ledger.
    """
    _check(network, account, tables)
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInput("invalid_limit", f"page size must be an integer from 1 to {MAX_PAGE_SIZE}", "page_size")
    lo = max(as_utc(after.closed_at), NETWORK_START[network])
    return HubbleQuery(
        sql=CHILDREN_SQL.format(operations=tables.operations),
        params=(
            QueryParam("account", "STRING", account),
            QueryParam("lo", "TIMESTAMP", lo),
            QueryParam("hi", "TIMESTAMP", min(_upper(now), as_utc(before)) if before is not None else _upper(now)),
            QueryParam("before_ledger", "INT64", int(before_ledger) if before_ledger is not None else MAX_LEDGER),
            QueryParam("after_closed_at", "TIMESTAMP", as_utc(after.closed_at)),
            QueryParam("after_op_id", "INT64", int(after.op_id)),
            QueryParam("page_limit", "INT64", page_size + 1),  # one more: is there a next page?
        ),
        purpose="children",
        tables=(tables.operations,),
    )


def children_count_query(tables: HubbleTables, network: str, account: str, first_created: dt.datetime, now: dt.datetime) -> HubbleQuery:
    """How many accounts `account` created (successful creates since its first creation)."""
    _check(network, account, tables)
    return HubbleQuery(
        sql=CHILDREN_COUNT_SQL.format(operations=tables.operations),
        params=(
            QueryParam("account", "STRING", account),
            QueryParam("lo", "TIMESTAMP", max(as_utc(first_created), NETWORK_START[network])),
            QueryParam("hi", "TIMESTAMP", _upper(now)),
        ),
        purpose="children_count",
        tables=(tables.operations,),
    )


def lives_query(tables: HubbleTables, network: str, account: str, lo: dt.datetime, hi: dt.datetime,
                ledger_lo: int = 1, ledger_hi: int | None = None, purpose: str = "lineage") -> HubbleQuery:
    """The account's creations and merges with close times in [lo, hi) and ledgers in [ledger_lo, ledger_hi]."""
    _check(network, account, tables)
    lo = max(as_utc(lo), NETWORK_START[network])
    return HubbleQuery(
        sql=LIVES_SQL.format(operations=tables.operations),
        params=(
            QueryParam("account", "STRING", account),
            QueryParam("lo", "TIMESTAMP", lo),
            QueryParam("hi", "TIMESTAMP", max(as_utc(hi), lo)),
            QueryParam("ledger_lo", "INT64", max(1, int(ledger_lo))),
            QueryParam("ledger_hi", "INT64", int(ledger_hi) if ledger_hi is not None else MAX_LEDGER),
        ),
        purpose=purpose,
        tables=(tables.operations,),
    )


def state_query(tables: HubbleTables, network: str, account: str) -> HubbleQuery:
    """The account's accounts_current row (enrichment refresh without the API)."""
    _check(network, account, tables)
    return HubbleQuery(
        sql=STATE_SQL.format(accounts=tables.accounts),
        params=(QueryParam("account", "STRING", account),),
        purpose="state",
        tables=(tables.accounts,),
    )


# ---------------------------------------------------------------------------------- results
@dataclasses.dataclass(frozen=True)
class AccountState:
    """An accounts_current row, in the lineage record's terms."""

    xlm_balance: Decimal | None
    flags: dict
    home_domain: str | None
    thresholds: dict
    deleted: bool
    as_of: dt.datetime | None
    sequence: int | None = None  # sequence_number: its ledger (>> 32) is where the current life began
    modified_ledger: int | None = None  # last_modified_ledger (for a deleted row: its merge)
    modified_at: dt.datetime | None = None  # closed_at of last_modified_ledger
    first_created_day: dt.datetime | None = None  # account_creation_date (stellar-dbt: the first batch's date)

    def lineage_fields(self) -> dict:
        return {"xlm_balance": self.xlm_balance, "flags": self.flags, "home_domain": self.home_domain, "thresholds": self.thresholds}


@dataclasses.dataclass(frozen=True)
class LineageAnswer:
    events: list[CreationEvent]
    state: AccountState | None

    @property
    def first(self) -> CreationEvent | None:
        return self.events[0] if self.events else None


@dataclasses.dataclass(frozen=True)
class ChildrenPage:
    children: list[ChildEdge]
    next_cursor: ChildCursor | None  # None when this page was the last


def amount(value) -> Decimal | None:
    """Hubble amounts are FLOAT64 with 7 decimals; read them back as the 7-decimal strings they were."""
    if value is None:
        return None
    return Decimal(f"{float(value):.7f}")


def _utc(value) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not isinstance(value, dt.datetime):
        raise ValueError(f"expected a timestamp, got {value!r}")
    return as_utc(value)


def parse_state(row: dict) -> AccountState | None:
    if row.get("balance") is None and row.get("deleted") is None:
        return None  # no accounts_current row
    flags_int = int(row.get("flags") or 0)
    deleted = bool(row.get("deleted"))
    return AccountState(
        xlm_balance=None if deleted else amount(row.get("balance")),
        flags={name: bool(flags_int & bit) for name, bit in FLAG_BITS.items()},
        home_domain=row.get("home_domain") or None,
        thresholds={
            "master_key_weight": int(row.get("master_weight") or 0),
            "low_threshold": int(row.get("threshold_low") or 0),
            "med_threshold": int(row.get("threshold_medium") or 0),
            "high_threshold": int(row.get("threshold_high") or 0),
        },
        deleted=deleted,
        as_of=_utc(row.get("state_at")),
        sequence=_int(row.get("sequence_number")),
        modified_ledger=_int(row.get("last_modified_ledger")),
        modified_at=_utc(row.get("modified_at")),
        first_created_day=_utc(row.get("account_creation_date")),
    )


def _int(value) -> int | None:
    return None if value is None else int(value)


def parse_lineage(network: str, account: str, rows: Iterable[dict]) -> LineageAnswer:
    rows = list(rows)
    events: dict[int, CreationEvent] = {}
    for row in rows:
        if row.get("op_id") is None:
            continue
        funder = row.get("funder")
        if row.get("account") not in (None, account) or not funder:
            raise ValueError(f"lineage row for another account or without a funder: {row!r}")
        op_id = int(row["op_id"])
        events[op_id] = CreationEvent(
            network_name=network,
            stellar_account=account,
            created_at=_utc(row["closed_at"]),
            operation_id=str(op_id),
            creator=validate_account_id(funder, "funder"),
            starting_balance=amount(row.get("starting_balance")),
            source="BIGQUERY",
            ledger=op_id >> 32,
        )
    ordered = sorted(events.values(), key=lambda e: (e.created_at, int(e.operation_id)))
    state = parse_state(rows[0]) if rows else None
    return LineageAnswer(ordered, state)


@dataclasses.dataclass(frozen=True)
class Lives:
    """What one lives query found: creation events and merges, oldest first."""

    events: list[CreationEvent]
    merges: list[MergeEvent]


def parse_lives(network: str, account: str, rows: Iterable[dict]) -> Lives:
    events: dict[int, CreationEvent] = {}
    merges: dict[int, MergeEvent] = {}
    for row in rows:
        op_id, kind = int(row["op_id"]), int(row["type"])
        closed_at = _utc(row["closed_at"])
        ledger = _int(row.get("ledger_sequence")) or (op_id >> 32)
        if kind == 0:
            events[op_id] = CreationEvent(network, account, closed_at, str(op_id), validate_account_id(row.get("funder"), "funder"),
                                          amount(row.get("starting_balance")), None, "BIGQUERY", ledger)
        elif kind == 8:
            into = row.get("merged_into")
            merges[op_id] = MergeEvent(network, account, closed_at, str(op_id),
                                       validate_account_id(into, "merged_into") if into else None, ledger, "BIGQUERY")
        else:
            raise ValueError(f"a lives row of type {kind}")
    return Lives(sorted(events.values(), key=lambda e: (e.created_at, int(e.operation_id))),
                 sorted(merges.values(), key=lambda m: (m.merged_at, int(m.operation_id))))


def parse_children(network: str, creator: str, rows: Iterable[dict], page_size: int) -> ChildrenPage:
    """A page asked for page_size + 1 rows: the extra row only says that another page follows."""
    rows = list(rows)
    more = len(rows) > page_size
    children = []
    last: tuple[dt.datetime, int] | None = None
    for row in rows:
        closed_at, op_id = _utc(row["closed_at"]), int(row["op_id"])
        key = (closed_at, op_id)
        if last is not None and key <= last:
            raise ValueError("children rows are not in (closed_at, op_id) order")
        if len(children) == page_size:
            break
        last = key
        child = row["account"]
        if not isinstance(child, str) or not _ADDRESS_SHAPE.match(child):
            raise InvalidInput("invalid_child", f"Hubble returned a child that is not an account id: {child!r}", "child")
        children.append(
            ChildEdge(
                network_name=network,
                creator=creator,
                child=child,
                created_at=closed_at,
                operation_id=str(op_id),
                starting_balance=amount(row.get("starting_balance")),
            )
        )
    return ChildrenPage(children, ChildCursor(*last) if more and last is not None else None)


def parse_count(rows: Iterable[dict]) -> int:
    rows = list(rows)
    if len(rows) != 1:
        raise ValueError(f"a count query returned {len(rows)} rows")
    return int(rows[0]["children"])
