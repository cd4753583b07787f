"""The in-process limiter: each upstream gets a share (`upstream_rate_pct`) of its maximum.

A token bucket (common/ratelimit.py, in GCRA form, as Horizon itself limits): a request may go when
the theoretical arrival time minus the burst tolerance has passed. `acquire()` reserves the next slot
and sleeps until it (through the Clock, so tests and benchmarks never block on real time), or
raises NoBudget when that wait is longer than the caller may afford. `penalize()` honours an
upstream's Retry-After: nobody in this process calls that upstream again before it has passed,
and afterwards calls resume at the normal pace (no burst right after a 429). A new limiter starts
the same way: the burst is earned by idle time, never assumed.

The queue's dispatch rate (common/queue/rates.py) is the global guard; this limiter is the
second one, per process. When several processes share one budget (the function's max instances),
`processes` divides it between them.
"""
from __future__ import annotations

import dataclasses
import math
import threading

from common.clock import Clock
from common.ratelimit import TokenBucket
from common.upstream.errors import NoBudget

PAUSED_RETRY_AFTER_S = 300.0  # a paused upstream (budget 0): ask the queue to come back later


@dataclasses.dataclass(frozen=True)
class Budget:
    """Requests per second we allow ourselves, and how many may go back to back."""

    rate_per_s: float
    burst: int

    @classmethod
    def share(cls, max_per_s: float, pct: float, processes: int = 1) -> "Budget":
        """pct percent of an upstream's maximum, split between `processes`. A maximum or a
        percentage of 0 pauses the upstream (every acquire answers NoBudget)."""
        if max_per_s < 0 or not 0 <= pct <= 100:
            raise ValueError("an upstream maximum must be >= 0 and upstream_rate_pct in [0, 100]")
        if processes < 1:
            raise ValueError("processes must be >= 1")
        if max_per_s == 0 or pct == 0:
            return cls(0.0, 1)
        rate = max_per_s * pct / 100 / processes
        # A small burst absorbs our own processing gaps without ever exceeding the upstream's:
        # any window of T seconds holds at most burst + rate*T of our requests.
        burst = max(1, min(6, int(rate * 60 / 10)))
        return cls(rate, burst)

    @property
    def paused(self) -> bool:
        return self.rate_per_s <= 0


class RateLimiter:
    def __init__(self, name: str, budget: Budget, clock: Clock):
        self.name = name
        self._clock = clock
        self._lock = threading.Lock()
        self._budget = budget
        # A new process starts without its burst: it cannot know what an earlier instance (or
        # another client behind the same address) just spent, so it begins at the sustained pace.
        self._started = clock.monotonic()
        self._unused = True  # no request and no penalty yet
        self._tat = self._started if budget.paused else self._bucket().emptied_until(self._started)  # theoretical arrival time
        self._blocked_until = 0.0
        self.acquired = 0
        self.waits = 0
        self.waited_s = 0.0
        self.no_budget = 0
        self.penalties = 0

    @property
    def budget(self) -> Budget:
        return self._budget

    def _bucket(self) -> TokenBucket:
        return TokenBucket(self._budget.rate_per_s, self._budget.burst)

    def configure(self, budget: Budget) -> None:
        """A new budget keeps the tokens spent; an unused limiter has earned the new budget's
        tokens since it started (empty), a paused one starts empty now."""
        with self._lock:
            if budget == self._budget:
                return
            old, self._budget = self._budget, budget
            if budget.paused:
                return
            now = self._clock.monotonic()
            bucket = self._bucket()
            if old.paused or self._unused:
                self._tat = bucket.emptied_until(now if old.paused else self._started)
                return
            spent = max(0.0, self._tat - now) / TokenBucket(old.rate_per_s, old.burst).interval
            self._tat = now + spent * bucket.interval

    def acquire(self, max_wait_s: float = math.inf, reserve: int = 0) -> float:
        """Take one request slot, sleeping until it comes. Returns the seconds waited.

        `reserve` > 0 (best-effort callers): go only when `reserve` more slots of the burst would
        still be free afterwards, so spare-budget requests never delay the ones that matter.
        """
        with self._lock:
            if self._budget.paused:
                self.no_budget += 1
                raise NoBudget(self.name, PAUSED_RETRY_AFTER_S)
            bucket = self._bucket()
            now = self._clock.monotonic()
            wait = max(bucket.wait_at(self._tat, now, reserve), self._blocked_until - now)
            if wait > max_wait_s:
                self.no_budget += 1
                raise NoBudget(self.name, wait)
            self._tat = bucket.spend_at(self._tat, now + wait)
            self._unused = False
            self.acquired += 1
            if wait > 0:
                self.waits += 1
                self.waited_s += wait
        if wait > 0:
            self._clock.sleep(wait)
        return wait

    def penalize(self, retry_after_s: float) -> None:
        """The upstream said 429: no request before retry_after_s, then the normal pace."""
        with self._lock:
            now = self._clock.monotonic()
            until = now + max(0.0, retry_after_s)
            self.penalties += 1
            self._unused = False
            self._blocked_until = max(self._blocked_until, until)
            if self._budget.paused:
                return
            self._tat = max(self._tat, self._bucket().emptied_until(until))

    def metrics(self) -> dict:
        with self._lock:
            now = self._clock.monotonic()
            return {
                "allowed_per_minute": round(self._budget.rate_per_s * 60, 4),
                "burst": self._budget.burst,
                "acquired": self.acquired,
                "waits": self.waits,
                "waited_s": round(self.waited_s, 3),
                "no_budget": self.no_budget,
                "penalties": self.penalties,
                "blocked_for_s": round(max(0.0, self._blocked_until - now), 3),
            }
