"""The one token bucket behind every limiter of the project: the upstream limiter
(common/upstream/ratelimit.py), the per-client limits of the public functions
(common/ratelimit_clients.py), the stellar.toml pacing (common/enrichment/toml.py), the local task
dispatcher's queue rates (local/task_dispatcher.py) and the simulator's Horizon-like limits
(local/simulator/ratelimit.py).

`burst` tokens, refilled at `rate` per second, kept in GCRA form (the generic cell rate
algorithm, as Horizon limits): the whole state is one number, the theoretical arrival time `tat`,
the moment the bucket would be full again at the sustained rate. A token is free at `now` when
`tat - tolerance <= now`, with tolerance = (burst - 1) / rate; taking it moves tat one interval on.

The `*_at` methods compute over a tat the caller keeps (a per-client limiter keeps one float per
client); `take` and `wait_s` use the instance's own tat (one bucket). Time is passed in, so tests
never sleep.
"""
from __future__ import annotations

import math


class TokenBucket:
    def __init__(self, rate: float, burst: int, now: float = -math.inf):
        """`rate` tokens per second, `burst` at most; full at `now` (the default: full already)."""
        if not rate > 0:
            raise ValueError(f"a token bucket's rate must be > 0 per second, got {rate!r}")
        if burst < 1:
            raise ValueError(f"a token bucket's burst must be >= 1, got {burst!r}")
        self.rate = float(rate)
        self.burst = int(burst)
        self.interval = 1.0 / self.rate  # seconds per token
        self.tolerance = self.interval * (self.burst - 1)  # how far tat may run ahead of now
        self.tat = now

    @classmethod
    def per_minute(cls, rate_per_min: float, burst: int, now: float = -math.inf) -> "TokenBucket":
        """`rate_per_min` tokens a minute (the interval computed from the per-minute figure, exactly)."""
        bucket = cls(rate_per_min / 60.0, burst, now)
        bucket.interval = 60.0 / float(rate_per_min)
        bucket.tolerance = bucket.interval * (bucket.burst - 1)
        return bucket

    # ------------------------------------------------------------ over a tat the caller keeps
    def wait_at(self, tat: float, now: float, reserve: int = 0) -> float:
        """Seconds from `now` until a token is free (0: now). With `reserve`, until `reserve` more
        would still be free after it (a burst of 1 keeps no reserve)."""
        spare = min(max(0, reserve), self.burst - 1)
        return max(0.0, max(tat, now) + self.interval * spare - self.tolerance - now)

    def spend_at(self, tat: float, at: float) -> float:
        """The tat after one token is taken at `at` (at or after the moment it is free)."""
        return max(tat, at) + self.interval

    def remaining_at(self, tat: float, now: float) -> int:
        """Whole tokens free at `now` (float noise of a hair counts as a whole token)."""
        return max(0, int((self.interval * self.burst - (max(tat, now) - now)) / self.interval + 1e-9))

    def emptied_until(self, until: float) -> float:
        """The tat of a bucket that gives nothing before `until` and then the sustained rate (no burst)."""
        return until + self.tolerance

    # ------------------------------------------------------------ this bucket's own tat
    def wait_s(self, now: float, reserve: int = 0) -> float:
        return self.wait_at(self.tat, now, reserve)

    def take(self, now: float) -> bool:
        """Take a token if one is free at `now`."""
        if self.wait_at(self.tat, now) > 0:
            return False
        self.tat = self.spend_at(self.tat, now)
        return True
