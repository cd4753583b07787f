"""High Value Account rankings: rank from the balance index, diff against the previous snapshot.

hva_recalc never scans the lineage table. For each network it reads the balance index once, from
the lowest configured threshold up (only the order-of-magnitude buckets that can hold such
balances; enrichment keeps the index current through Store.set_balance). Each threshold's ranking
is a prefix of that one sorted list. The previous snapshot of each (network, threshold) partition
is diffed against the new ranking:

* ENTERED / EXITED: the account joined / left the ranking;
* RANK_UP / RANK_DOWN: it stayed, and its rank moved by at least `hva_rank_change_min` (10).

Each event carries the old and new rank, the old and new balance and the balance change in
percent. Only changes are written, so a run with no balance change writes no events and leaves
the snapshots alone. `is_hva` (on the lineage row) follows the lowest threshold's ranking: only
the accounts that entered or left it are written.

Order of writes: events, then snapshots, then is_hva. A crash after the events but before the
snapshot makes the next run report that run's changes once more (at least once, never lost).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any, Callable, Iterable, Sequence

from common.config import HVA_THRESHOLDS_DEFAULT
from common.domain import HvaEvent, LeaderboardEntry, as_utc

EVENT_TYPES = ("ENTERED", "EXITED", "RANK_UP", "RANK_DOWN")
LOOKUP_BATCH = 1000


def pct_change(old: Decimal | None, new: Decimal | None) -> float | None:
    """Balance change in percent, rounded to 4 places; None when either side is unknown or old is 0."""
    if old is None or new is None or old == 0:
        return None
    return round(float((new - old) / old * 100), 4)


def rank(balances: Sequence[tuple[str, Decimal]], threshold: int) -> list[LeaderboardEntry]:
    """Ranks 1..n of the accounts at or above threshold. `balances` is sorted by balance descending,
    then account ascending (Store.balances_at_least's order), so ties rank by account id."""
    out = []
    limit = Decimal(threshold)
    for i, (account, bal) in enumerate(balances):
        if bal < limit:
            break
        out.append(LeaderboardEntry(i + 1, account, bal))
    return out


def diff(
    network: str,
    threshold: int,
    previous: Sequence[LeaderboardEntry],
    current: Sequence[LeaderboardEntry],
    now: dt.datetime,
    rank_change_min: int,
    old_balance_hint: dict[str, Decimal] | None = None,
    new_balance_hint: dict[str, Decimal | None] | None = None,
) -> list[HvaEvent]:
    """Standing changes between two snapshots of one (network, threshold).

    old_balance_hint: balances the entering accounts had before (from the other thresholds'
    previous snapshots); new_balance_hint: balances of the accounts that left (None if unknown).
    """
    now = as_utc(now)
    before = {e.stellar_account: e for e in previous}
    after = {e.stellar_account: e for e in current}
    events: list[HvaEvent] = []
    for account, e in after.items():
        old = before.get(account)
        if old is None:
            prior = (old_balance_hint or {}).get(account)
            events.append(HvaEvent(network, threshold, account, now, "ENTERED", None, e.rank, prior, e.xlm_balance, pct_change(prior, e.xlm_balance)))
            continue
        moved = old.rank - e.rank  # > 0: moved up
        if abs(moved) >= rank_change_min:
            kind = "RANK_UP" if moved > 0 else "RANK_DOWN"
            events.append(HvaEvent(network, threshold, account, now, kind, old.rank, e.rank, old.xlm_balance, e.xlm_balance, pct_change(old.xlm_balance, e.xlm_balance)))
    for account, old in before.items():
        if account not in after:
            new_bal = (new_balance_hint or {}).get(account)
            events.append(HvaEvent(network, threshold, account, now, "EXITED", old.rank, None, old.xlm_balance, new_bal, pct_change(old.xlm_balance, new_bal)))
    events.sort(key=lambda ev: (EVENT_TYPES.index(ev.event_type), ev.new_rank or ev.old_rank or 0, ev.stellar_account))
    return events


@dataclasses.dataclass
class ThresholdResult:
    threshold: int
    ranked: int
    events: dict[str, int]
    snapshot_written: bool


@dataclasses.dataclass
class NetworkResult:
    network: str
    accounts_read: int
    thresholds: list[ThresholdResult]
    hva_set: int
    hva_flag_writes: int

    @property
    def events_written(self) -> int:
        return sum(sum(t.events.values()) for t in self.thresholds)

    def to_json(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "accounts_read": self.accounts_read,
            "events_written": self.events_written,
            "hva_accounts": self.hva_set,
            "hva_flag_writes": self.hva_flag_writes,
            "thresholds": [dataclasses.asdict(t) for t in self.thresholds],
        }


def _parallel(store, fn: Callable[[Any], None], items: Iterable[Any]) -> None:
    items = list(items)
    workers = 1 if getattr(store, "backend", "") == "sqlite" or len(items) < 64 else 32
    if workers == 1:
        for item in items:
            fn(item)
        return
    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(fn, items):
            pass


def _current_balances(store, network: str, accounts: Iterable[str]) -> dict[str, Decimal | None]:
    """Point reads (batched) of accounts that fell below the lowest threshold: their new balance."""
    accounts = sorted(set(accounts))
    out: dict[str, Decimal | None] = {}
    for i in range(0, len(accounts), LOOKUP_BATCH):
        chunk = accounts[i : i + LOOKUP_BATCH]
        recs = store.get_lineages(network, chunk)
        for a in chunk:
            rec = recs.get(a)
            out[a] = rec.xlm_balance if rec is not None else None
    return out


def recalc_network(store, network: str, thresholds: Sequence[int], rank_change_min: int, now: dt.datetime) -> NetworkResult:
    thresholds = sorted(set(int(t) for t in thresholds))
    now = as_utc(now)
    ranked_all = store.balances_at_least(network, Decimal(thresholds[0]))
    current_balance = dict(ranked_all)

    previous: dict[int, list[LeaderboardEntry]] = {t: store.get_leaderboard(network, t)[1] for t in thresholds}
    # is_hva follows the lowest threshold; if the configuration changed, the old lowest
    # threshold's board (the default set) still tells who was flagged.
    prev_hva = {e.stellar_account for e in previous[thresholds[0]]}
    retired = {}  # boards of default thresholds no longer configured
    for t in sorted(set(HVA_THRESHOLDS_DEFAULT) - set(thresholds)):
        entries = store.get_leaderboard(network, t)[1]
        if entries:
            retired[t] = entries
            prev_hva.update(e.stellar_account for e in entries)
    prev_balance: dict[str, Decimal] = {}
    for entries in previous.values():
        for e in entries:
            prev_balance.setdefault(e.stellar_account, e.xlm_balance)

    gone = {e.stellar_account for entries in previous.values() for e in entries} | prev_hva
    gone -= set(current_balance)
    new_balance: dict[str, Decimal | None] = dict(current_balance)
    new_balance.update(_current_balances(store, network, gone))

    results: list[ThresholdResult] = []
    all_events: list[HvaEvent] = []
    boards: dict[int, list[LeaderboardEntry]] = {}
    for t in thresholds:
        board = rank(ranked_all, t)
        boards[t] = board
        events = diff(network, t, previous[t], board, now, rank_change_min, prev_balance, new_balance)
        all_events.extend(events)
        counts = {k: 0 for k in EVENT_TYPES}
        for ev in events:
            counts[ev.event_type] += 1
        results.append(ThresholdResult(t, len(board), counts, board != previous[t]))

    store.add_hva_events(all_events)
    for r in results:
        if r.snapshot_written:
            store.put_leaderboard(network, r.threshold, boards[r.threshold], now)

    hva_now = {e.stellar_account for e in boards[thresholds[0]]}
    flips = [(a, True) for a in hva_now - prev_hva] + [(a, False) for a in prev_hva - hva_now]
    _parallel(store, lambda item: store.put_lineage(network, item[0], is_hva=item[1]), flips)
    for t in retired:  # their accounts' flags are settled; the boards are no longer served
        store.put_leaderboard(network, t, [], now)
    return NetworkResult(network, len(ranked_all), results, len(hva_now), len(flips))


# ------------------------------------------------------------------ 24 h badges
def badges(entries: Sequence[LeaderboardEntry], events: Iterable[HvaEvent]) -> dict[str, str | None]:
    """Rank-change badge per account over the events of the last 24 h of one threshold.

    NEW: entered within the window (and still on the board). Otherwise ↑n / ↓n: the rank before its
    first recorded move in the window (old_rank of that RANK_UP/RANK_DOWN) minus the current rank.
    Moves smaller than hva_rank_change_min between two runs are not events, so they do not count.
    """
    by_account: dict[str, list[HvaEvent]] = {}
    for ev in events:
        by_account.setdefault(ev.stellar_account, []).append(ev)
    out: dict[str, str | None] = {}
    for e in entries:
        evs = sorted(by_account.get(e.stellar_account, []), key=lambda ev: ev.event_time)
        badge = None
        if any(ev.event_type == "ENTERED" for ev in evs):
            badge = "NEW"
        else:
            moves = [ev for ev in evs if ev.event_type in ("RANK_UP", "RANK_DOWN") and ev.old_rank is not None]
            if moves:
                n = moves[0].old_rank - e.rank
                badge = f"↑{n}" if n > 0 else (f"↓{-n}" if n < 0 else None)
        out[e.stellar_account] = badge
    return out
