"""Ledger -> time: what prunes a Hubble query to the days around a ledger.

Hubble's enriched_history_operations is partitioned by `closed_at` (day) and clustered by
`ledger_sequence`: a filter on the ledger alone prunes no partition, so a query about ledger L
also needs a `closed_at` window around L's close time. Close times are monotone in the ledger
sequence, so two known points (l0, t0) <= L <= (l1, t1) bound the close time of L for certain;
between them it is interpolated linearly, and the window is the estimate plus a safety margin,
clipped to those certain bounds. A caller widens the window when the narrow one finds nothing.

Where the known points come from (all stored per network in `ledger_anchors`, one per week of ledgers):
- the network's start (ledger 1 never closed before 2015-09-30T16:46:54Z on either network);
- Horizon's root (`history_latest_ledger`, `history_latest_ledger_closed_at`), read by the API path;
- every creation event, merge and child whose ledger and time are both known (Horizon operation ids
  are TOIDs: ledger = id >> 32; Hubble rows carry `ledger_sequence` and `closed_at`);
- accounts_current rows (`last_modified_ledger` with `closed_at`, `sequence_ledger` with `sequence_time`).
On the real network the stored points grow as the system runs, so windows narrow over time; in the
simulator ledgers close every 5 s and the first two points already give exact estimates.
"""
from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
from typing import Iterable

from common.domain import as_utc

NETWORK_START = dt.datetime(2015, 9, 30, 16, 46, 54, tzinfo=dt.timezone.utc)
NOMINAL_CLOSE_S = 5.0  # past the last known point: Stellar's target close time
MIN_MARGIN = dt.timedelta(days=1)  # a narrow window is at least the estimate +- one day
# The margin grows with the distance to the nearest known point. It is a guess, not a bound:
# close times bend away from the straight line between two far points (slow years, halts), and
# then the narrow window misses and the caller retries with the certain window.
DRIFT = 0.01


def toid_ledger(operation_id: str | int | None) -> int | None:
    """The ledger of a Horizon/Hubble operation id (a TOID: the ledger is the high 32 bits)."""
    try:
        value = int(operation_id)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    ledger = value >> 32
    return ledger if ledger > 0 else None


def sequence_ledger(sequence: str | int | None) -> int | None:
    """stellar-core starts an account's sequence at ledgerSeq << 32 (getStartingSequenceNumber):
    `sequence >> 32` is the ledger where its current life began, or an upper bound after bump_sequence."""
    try:
        value = int(sequence)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    ledger = value >> 32
    return ledger if 0 < ledger < 2**31 else None


@dataclasses.dataclass(frozen=True)
class Window:
    lo: dt.datetime
    hi: dt.datetime

    @property
    def days(self) -> float:
        return (self.hi - self.lo).total_seconds() / 86_400


class LedgerClock:
    """Known (ledger, close time) points of one network; bounds and estimates in between."""

    def __init__(self, points: Iterable[tuple[int, dt.datetime]], start: dt.datetime | None = NETWORK_START):
        clean: dict[int, dt.datetime] = {}
        if start is not None:
            clean[1] = start
        for ledger, when in points:
            if ledger and when is not None:
                clean[int(ledger)] = as_utc(when)
        ordered = sorted(clean.items())
        # Keep only a monotone chain: a point that contradicts its predecessor is dropped.
        kept: list[tuple[int, dt.datetime]] = []
        for ledger, when in ordered:
            if not kept or when >= kept[-1][1]:
                kept.append((ledger, when))
        self._ledgers = [p[0] for p in kept]
        self._times = [p[1] for p in kept]

    @property
    def points(self) -> list[tuple[int, dt.datetime]]:
        return list(zip(self._ledgers, self._times))

    def bounds(self, ledger: int) -> tuple[dt.datetime | None, dt.datetime | None]:
        """Certain bounds of the ledger's close time (None: nothing known on that side)."""
        i = bisect.bisect_right(self._ledgers, ledger)
        lo = self._times[i - 1] if i > 0 else None
        j = bisect.bisect_left(self._ledgers, ledger)
        hi = self._times[j] if j < len(self._ledgers) else None
        return lo, hi

    def estimate(self, ledger: int) -> tuple[dt.datetime | None, dt.timedelta]:
        """(estimated close time, margin), or (None, ...) when no point is known."""
        if not self._ledgers:
            return None, MIN_MARGIN
        j = bisect.bisect_left(self._ledgers, ledger)
        if j < len(self._ledgers) and self._ledgers[j] == ledger:
            return self._times[j], dt.timedelta(0)
        if j == 0:
            l1, t1 = self._ledgers[0], self._times[0]
            guess = t1 - dt.timedelta(seconds=(l1 - ledger) * NOMINAL_CLOSE_S)
            return guess, MIN_MARGIN + (t1 - guess) * DRIFT
        if j == len(self._ledgers):
            l0, t0 = self._ledgers[-1], self._times[-1]
            guess = t0 + dt.timedelta(seconds=(ledger - l0) * NOMINAL_CLOSE_S)
            return guess, MIN_MARGIN + (guess - t0) * DRIFT
        l0, t0, l1, t1 = self._ledgers[j - 1], self._times[j - 1], self._ledgers[j], self._times[j]
        guess = t0 + (t1 - t0) * ((ledger - l0) / (l1 - l0))
        return guess, MIN_MARGIN + min(guess - t0, t1 - guess) * DRIFT

    def window(self, ledger: int, now: dt.datetime) -> Window | None:
        """The narrow closed_at window of the ledger: estimate +- margin, inside the certain bounds."""
        guess, margin = self.estimate(ledger)
        if guess is None:
            return None
        lo_bound, hi_bound = self.bounds(ledger)
        lo, hi = guess - margin, guess + margin
        if lo_bound is not None:
            lo = max(lo, lo_bound)
        if hi_bound is not None:
            hi = min(hi, hi_bound)
        hi = min(hi, as_utc(now))
        lo = min(lo, hi)
        return Window(lo, hi + dt.timedelta(seconds=1))  # the query's upper bound is exclusive

    def certain_window(self, ledger: int, now: dt.datetime) -> Window:
        """The window the ledger surely closed in: between the known points around it (or now)."""
        lo, _ = self.bounds(ledger)
        return Window(lo or NETWORK_START, self.upper(ledger, now))

    def upper(self, ledger: int, now: dt.datetime) -> dt.datetime:
        """An exclusive bound no ledger <= `ledger` closed at or after (for 'everything up to L' queries)."""
        _, hi = self.bounds(ledger)
        return min(hi, as_utc(now)) + dt.timedelta(seconds=1) if hi is not None else as_utc(now) + dt.timedelta(seconds=1)


def ledger_clock(store, network: str) -> LedgerClock:
    """The network's stored points (one partition read). No ledger of either network (testnet is
    younger and reset from time to time) closed before the public network's start."""
    return LedgerClock(store.get_ledger_anchors(network))


def remember(store, network: str, points: Iterable[tuple[int | None, dt.datetime | None]]) -> None:
    """Store known (ledger, time) points; best effort (a failure never fails the caller's work)."""
    clean = [(int(l), as_utc(t)) for l, t in points if l and t is not None and 0 < int(l) < 2**31]
    if not clean:
        return
    try:
        store.put_ledger_anchors(network, clean)
    except Exception:  # noqa: BLE001 - anchors only narrow future windows
        import logging

        logging.getLogger(__name__).warning("could not store ledger anchors for %s", network, exc_info=True)
