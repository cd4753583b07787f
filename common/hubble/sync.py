"""The network-wide Hubble sync, pure parts: its closed_at ranges, their SQL, and their rows in
the store's terms (docs/design.md, "The network-wide Hubble sync"). No I/O here: the handler
(common/handlers/hubble_sync.py) runs the queries through the cost guard and writes the results.

- A sync covers [start, end) in ranges of `range_days` days on a fixed grid from `start`, so a
  re-plan of the same sync gives the same ranges (and the same task names).
- A range is ONE query over enriched_history_operations, pruned to its closed_at range (BigQuery
  reads only those day partitions, so the ranges together scan the history once), reading the
  nine columns a creation or a merge needs: successful create_account (type 0) and account_merge
  (type 8) operations. No ORDER BY: the bulk write path is order-independent, and a sort of a
  month of operations is work BigQuery would do for nothing.
- The accounts task is ONE query over accounts_current (not partitioned: every query of it reads
  the whole table), from an account id on (`account_id > @after`, its resume point) in account
  order, read page by page.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Iterable

from common.domain import NETWORK_START, InvalidInput, MergeEvent, as_utc, is_valid_account_id, validate_network
from common.hubble.port import HubbleQuery, HubbleTables, QueryParam
from common.hubble.sql import amount, parse_state
from common.store.bulk import AccountStateRow, CreationEdge

UTC = dt.timezone.utc
PURPOSE = "sync"
DEFAULT_RANGE_DAYS = 30
MAX_RANGE_DAYS = 366
DAILY_OVERLAP = dt.timedelta(days=1)
# Below every G-address (they start with "G"): the accounts query's first resume point.
FIRST_ACCOUNT = ""

RANGE_SQL = """\
SELECT op_id, type, ledger_sequence, closed_at, funder, account, `into` AS merged_into, starting_balance
FROM `{operations}`
WHERE closed_at >= @lo AND closed_at < @hi
  AND type IN (0, 8) AND successful
"""

ACCOUNTS_SQL = """\
SELECT account_id AS account, balance, flags, home_domain, master_weight, threshold_low,
       threshold_medium, threshold_high, deleted, batch_insert_ts AS state_at, sequence_number
FROM `{accounts}`
WHERE account_id > @after
ORDER BY account_id
"""


# ---------------------------------------------------------------------------------- planning
def plan_ranges(start: dt.datetime, end: dt.datetime, range_days: int = DEFAULT_RANGE_DAYS) -> list[tuple[dt.datetime, dt.datetime]]:
    """[start, end) cut into ranges of `range_days` days (the last one shorter), oldest first."""
    if isinstance(range_days, bool) or not isinstance(range_days, int) or not 1 <= range_days <= MAX_RANGE_DAYS:
        raise InvalidInput("invalid_range_days", f"HUBBLE_SYNC_RANGE_DAYS must be an integer from 1 to {MAX_RANGE_DAYS}", "range_days")
    start, end = as_utc(start), as_utc(end)
    if not start < end:
        raise InvalidInput("invalid_since", f"the sync would start at {start:%Y-%m-%d}, not before its end {end:%Y-%m-%d %H:%M}", "since")
    step = dt.timedelta(days=range_days)
    out, lo = [], start
    while lo < end:
        hi = min(lo + step, end)
        out.append((lo, hi))
        lo = hi
    return out


def sync_start(network: str, since: dt.date | None) -> dt.datetime:
    """Where a full sync starts: `since` (a day, UTC) or the network's first ledger."""
    validate_network(network)
    if since is None:
        return NETWORK_START[network]
    return max(dt.datetime(since.year, since.month, since.day, tzinfo=UTC), NETWORK_START[network])


def parse_since(value) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else _bad_since(value)
    except ValueError:
        return _bad_since(value)


def _bad_since(value):
    raise InvalidInput("invalid_since", f"since must be a day written YYYY-MM-DD, got {str(value)[:40]!r}", "since")


def new_sync_id(mode: str, now: dt.datetime) -> str:
    return f"{mode}-{as_utc(now):%Y%m%dt%H%M%S}"


def range_generation(sync_id: str, start: dt.datetime) -> str:
    """The range task's generation: with the network, its deterministic task name."""
    return f"{sync_id}-{as_utc(start):%Y%m%dT%H%M%S}"


# ---------------------------------------------------------------------------------- queries
def range_query(tables: HubbleTables, network: str, start: dt.datetime, end: dt.datetime) -> HubbleQuery:
    validate_network(network)
    return HubbleQuery(
        sql=RANGE_SQL.format(operations=tables.operations),
        params=(QueryParam("lo", "TIMESTAMP", as_utc(start)), QueryParam("hi", "TIMESTAMP", as_utc(end))),
        purpose=PURPOSE,
        tables=(tables.operations,),
    )


def accounts_query(tables: HubbleTables, network: str, after: str | None) -> HubbleQuery:
    validate_network(network)
    if after is not None and not is_valid_account_id(after):
        raise InvalidInput("invalid_account", "after must be a valid Stellar account id", "after")
    return HubbleQuery(
        sql=ACCOUNTS_SQL.format(accounts=tables.accounts),
        params=(QueryParam("after", "STRING", after or FIRST_ACCOUNT),),
        purpose=PURPOSE,
        tables=(tables.accounts,),
    )


# ---------------------------------------------------------------------------------- rows
@dataclasses.dataclass
class RangePage:
    """One page of a range's rows: creation edges (each also a child row of its funder) and merges."""

    edges: list[CreationEdge]
    merges: list[MergeEvent]


def _timestamp(value) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not isinstance(value, dt.datetime):
        raise InvalidInput("invalid_row", f"closed_at is not a timestamp: {value!r}", "closed_at")
    return as_utc(value)


def parse_range_rows(network: str, rows: Iterable[dict]) -> RangePage:
    """Rows of RANGE_SQL as creation edges and merge events. A row Hubble could not have produced
    (an unknown type, a missing party) raises InvalidInput: the range fails rather than guess."""
    page = RangePage([], [])
    for row in rows:
        op_id = int(row["op_id"])
        kind = int(row["type"])
        closed_at = _timestamp(row["closed_at"])
        ledger = int(row["ledger_sequence"]) if row.get("ledger_sequence") is not None else op_id >> 32
        account = row.get("account")
        if kind == 0:
            page.edges.append(CreationEdge(network, row.get("funder"), account, closed_at, str(op_id), ledger,
                                           amount(row.get("starting_balance"))))
        elif kind == 8:
            into = row.get("merged_into")
            if not is_valid_account_id(account) or (into is not None and not is_valid_account_id(into)):
                raise InvalidInput("invalid_row", f"merge {op_id} names an invalid account ({account!r} into {into!r})", "account")
            page.merges.append(MergeEvent(network, account, closed_at, str(op_id), into, ledger, "BIGQUERY"))
        else:
            raise InvalidInput("invalid_row", f"operation {op_id} is of type {kind}, not 0 or 8", "type")
    return page


MAX_HOME_DOMAIN = 255  # what the store keeps (the ledger itself caps home_domain at 32 bytes)


@dataclasses.dataclass
class AccountsPage:
    states: list[AccountStateRow]
    dropped_home_domains: list[str]  # accounts whose home_domain no ledger could hold: stored without it


def parse_account_rows(network: str, rows: Iterable[dict]) -> AccountsPage:
    """Rows of ACCOUNTS_SQL as the bulk path's account states (as the per-account Hubble path reads
    them). A home_domain longer than the store keeps (impossible on the real ledger) is left out,
    and the account is named in `dropped_home_domains` so the caller reports it."""
    page = AccountsPage([], [])
    for row in rows:
        state = parse_state(row)
        if state is None:
            continue
        domain = state.home_domain
        if domain is not None and len(domain) > MAX_HOME_DOMAIN:
            page.dropped_home_domains.append(row["account"])
            domain = None
        page.states.append(AccountStateRow(network, row["account"], state.xlm_balance, domain, state.flags,
                                           state.thresholds, state.deleted, state.as_of))
    return page
