"""Every life of an account from Hubble, pruned to the days around its ledgers (both paths use it).

A new account's lineage used to be one query over the whole history (2015 to now). Now:
1. `state`: its accounts_current row (balance, flags, ... and `sequence_number`, `last_modified_ledger`
   with its `closed_at`, `account_creation_date`, `deleted`);
2. `lineage`: its creations and merges (common/hubble/sql.LIVES_SQL) with ledgers up to
   L = sequence_number >> 32 (the ledger its current life began, or later after bump_sequence),
   in a closed_at window around L's estimated close time (common/ledger_time.py). Only when that
   narrow window finds nothing (a bumped sequence) is it widened: to the window L surely closed in,
   then to everything before L. When the account's first creation (account_creation_date, or a
   creation date already known from a parent's crawl or Stellar Expert) lies before the narrow
   window, the account had an earlier life (re-created) or bumped its sequence: one window from that
   first creation to L holds every life;
3. a deleted account's last merge sits at its row's last_modified_ledger, whose close time the row
   carries: a window of one second.
Every query goes through the cost guard (dry run first). Every (ledger, time) point learned is stored
as a ledger anchor, so later windows are narrower.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Callable

from common import ledger_time
from common.domain import ChildEdge, CreationEvent, MergeEvent, as_utc
from common.hubble.port import HubbleError
from common.hubble.sql import (
    MAX_LEDGER,
    NETWORK_START,
    AccountState,
    ChildCursor,
    children_query,
    lives_query,
    parse_children,
    parse_lives,
    parse_state,
    state_query,
)

FIRST_DAY_BEFORE = dt.timedelta(days=1)  # stellar-dbt's account_creation_date is a batch date within a day of the creation
FIRST_DAY_AFTER = dt.timedelta(days=2)


@dataclasses.dataclass
class HubbleLives:
    events: list[CreationEvent]
    merges: list[MergeEvent]
    state: AccountState | None
    windows: list[tuple[dt.datetime, dt.datetime]]  # the closed_at windows queried, in order

    @property
    def current_ledger(self) -> int | None:
        return self.events[-1].ledger if self.events else None


def parse_rows(fn, *args):
    try:
        return fn(*args)
    except (ValueError, KeyError, TypeError) as exc:  # Hubble returned rows we cannot use
        raise HubbleError(f"unexpected Hubble rows: {exc}") from exc


def read_state(guard, tables, network: str, account: str) -> AccountState | None:
    rows = guard.run(state_query(tables, network, account)).result.rows
    return parse_rows(parse_state, rows[0]) if rows else None


def find_lives(store, guard, tables, network: str, account: str, now: dt.datetime, *,
               state: AccountState | None = None, read_state_row: bool = True,
               hint_ledger: int | None = None, first_seen: dt.datetime | None = None) -> HubbleLives:
    """The account's creations and merges from Hubble (see the module doc). Raises GuardRefused or
    HubbleError as the guard and the engine do."""
    if state is None and read_state_row:
        state = read_state(guard, tables, network, account)
    clock_points = []
    if state is not None and state.modified_ledger and state.modified_at:
        clock_points.append((state.modified_ledger, state.modified_at))
    ledger_time.remember(store, network, clock_points)
    clock = ledger_time.ledger_clock(store, network)
    ledger = ledger_time.sequence_ledger(state.sequence) if state is not None and state.sequence else None
    ledger = ledger or hint_ledger
    known_firsts = [d for d in (state.first_created_day if state else None, first_seen) if d is not None]
    first_day = min(known_firsts) if known_firsts else None

    def run(window: tuple[dt.datetime, dt.datetime], ledger_lo: int = 1, ledger_hi: int | None = None):
        lives.windows.append(window)
        rows = guard.run(lives_query(tables, network, account, window[0], window[1], ledger_lo, ledger_hi)).result.rows
        return parse_rows(parse_lives, network, account, rows)

    lives = HubbleLives([], [], state, [])
    if state is None and ledger is None and first_day is None:
        return lives  # no accounts_current row and no hint: not in Hubble (yet); never a whole-history scan
    upper = as_utc(now) + dt.timedelta(minutes=10)
    guess = clock.estimate(ledger)[0] if ledger is not None else None
    if ledger is None or guess is None or guess > as_utc(now) + dt.timedelta(days=1):
        # No usable sequence (or one bumped far past the present): from the first creation known, or all history.
        start = first_day - FIRST_DAY_BEFORE if first_day is not None else NETWORK_START[network]
        ladder = [((start, upper), None)]
    else:
        narrow = clock.window(ledger, now)
        certain = clock.certain_window(ledger, now)
        if first_day is not None and first_day + FIRST_DAY_AFTER < narrow.lo:
            # An earlier life (or a bumped sequence): one window from the first creation to L.
            ladder = [((first_day - FIRST_DAY_BEFORE, clock.upper(ledger, now)), ledger)]
        else:
            ladder = [((narrow.lo, narrow.hi), ledger), ((certain.lo, certain.hi), ledger),
                      ((NETWORK_START[network], clock.upper(ledger, now)), ledger)]
    found = None
    for window, ledger_hi in ladder:
        if lives.windows and window[0] >= lives.windows[-1][0] and window[1] <= lives.windows[-1][1]:
            continue  # no wider than the one that found nothing
        found = run(window, 1, ledger_hi if ledger_hi is not None else MAX_LEDGER)
        if found.events:
            break
    if found is not None:
        lives.events, lives.merges = found.events, found.merges
    if state is not None and state.deleted and state.modified_ledger and lives.events \
            and not any(m.ledger == state.modified_ledger for m in lives.merges):
        at = state.modified_at
        if at is None:
            guess = clock.window(state.modified_ledger, now)
            window = (guess.lo, guess.hi)
        else:
            window = (at, at + dt.timedelta(seconds=1))
        last = run(window, state.modified_ledger, state.modified_ledger)
        lives.merges = sorted({m.operation_id: m for m in lives.merges + last.merges}.values(),
                              key=lambda m: (m.merged_at, int(m.operation_id)))
    ledger_time.remember(store, network, [(e.ledger, e.created_at) for e in lives.events] +
                         [(m.ledger, m.merged_at) for m in lives.merges])
    return lives


def children_before(guard, tables, network: str, account: str, first_created: dt.datetime, elder_ledger: int,
                    clock: ledger_time.LedgerClock, now: dt.datetime, page_size: int,
                    on_page: Callable[[list[ChildEdge]], None]) -> int:
    """The API path's gap: every child created before Horizon's elder ledger, page by page
    (each page handed to on_page). Returns how many."""
    before = clock.upper(elder_ledger - 1, now)
    cursor = ChildCursor(as_utc(first_created), -1)
    total = 0
    while True:
        query = children_query(tables, network, account, cursor, now, page_size, before_ledger=elder_ledger, before=before)
        page = parse_rows(parse_children, network, account, guard.run(query).result.rows, page_size)
        on_page(page.children)
        total += len(page.children)
        if page.next_cursor is None:
            return total
        cursor = page.next_cursor
