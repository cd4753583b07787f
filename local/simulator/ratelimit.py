"""Per-client rate limits like Horizon's: a token bucket per client (common/ratelimit.py, in GCRA
form, as in the throttled library Horizon uses).

A client may spend `burst` requests at once and then `rate_per_min` per minute. Every answer
carries X-RateLimit-Limit / -Remaining / -Reset (seconds until the budget is full again); a
refusal is a 429 with Retry-After (seconds until the next request is allowed).
"""
from __future__ import annotations

import dataclasses
import math
import threading
import time
from typing import Any, Callable

from common.ratelimit import TokenBucket

UPSTREAMS = ("horizon", "expert")
FLOAT_NOISE_S = 1e-9  # a wait this short is rounding, not a refusal
DEFAULT_RATE_PER_MIN = {"horizon": 60.0, "expert": 50.0}  # Horizon: 3,600/hour per IP; Expert: ~50/min


@dataclasses.dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_after: float
    retry_after: float

    def headers(self) -> list[tuple[str, str]]:
        out = [
            ("X-RateLimit-Limit", str(self.limit)),
            ("X-RateLimit-Remaining", str(self.remaining)),
            ("X-RateLimit-Reset", str(math.ceil(self.reset_after))),
        ]
        if not self.allowed:
            out.append(("Retry-After", str(max(1, math.ceil(self.retry_after)))))
        return out


@dataclasses.dataclass(frozen=True)
class LimitConfig:
    rate_per_min: float
    burst: int
    enabled: bool = True

    @classmethod
    def parse(cls, raw: Any, current: "LimitConfig", upstream: str) -> "LimitConfig":
        if not isinstance(raw, dict):
            raise ValueError(f"limits.{upstream} must be an object")
        unknown = set(raw) - {"rate_per_min", "burst", "enabled"}
        if unknown:
            raise ValueError(f"limits.{upstream}: unknown key(s) {', '.join(sorted(unknown))}")
        rate = raw.get("rate_per_min", current.rate_per_min)
        burst = raw.get("burst", current.burst)
        enabled = raw.get("enabled", current.enabled)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1_000_000:
            raise ValueError(f"limits.{upstream}.rate_per_min must be a number above 0 and at most 1,000,000")
        if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= 1_000_000:
            raise ValueError(f"limits.{upstream}.burst must be an integer from 1 to 1,000,000")
        if not isinstance(enabled, bool):
            raise ValueError(f"limits.{upstream}.enabled must be true or false")
        return cls(float(rate), burst, enabled)

    def to_json(self) -> dict:
        return {"rate_per_min": self.rate_per_min, "burst": self.burst, "enabled": self.enabled}


class RateLimiter:
    """GCRA per client key; thread-safe. `monotonic` is injectable for tests (a Clock's)."""

    def __init__(self, config: LimitConfig, monotonic: Callable[[], float] | None = None):
        self._config = config
        self._monotonic = monotonic or time.monotonic
        self._tat: dict[str, float] = {}  # theoretical arrival time per client
        self._lock = threading.Lock()

    @property
    def config(self) -> LimitConfig:
        return self._config

    def configure(self, config: LimitConfig) -> None:
        with self._lock:
            self._config = config
            self._tat.clear()

    def reset(self) -> None:
        with self._lock:
            self._tat.clear()

    def check(self, client: str) -> Decision | None:
        """None when limits are off; else the decision (an allowed request spends budget)."""
        with self._lock:
            config = self._config
            if not config.enabled:
                return None
            bucket = TokenBucket.per_minute(config.rate_per_min, config.burst)
            now = self._monotonic()
            tat = self._tat.get(client, now)
            wait = bucket.wait_at(tat, now)
            if wait > FLOAT_NOISE_S:
                return Decision(False, config.burst, 0, max(tat, now) - now, wait)
            self._tat[client] = new_tat = bucket.spend_at(tat, now)
            return Decision(True, config.burst, bucket.remaining_at(new_tat, now), new_tat - now, 0.0)
