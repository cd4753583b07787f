"""The per-client limit of the public search function.

GCRA (the generic cell rate algorithm, what Horizon uses): each client may send `burst` requests
at once, then `rate_per_min` a minute. The state is one timestamp per client (the theoretical
arrival time), kept for at most `max_clients` clients (least recently seen forgotten first), so a
flood of distinct addresses cannot exhaust memory.

It is per process: each function instance limits its own callers. On GCP the instances are
bounded by the function's max_instances, so the global limit is at most max_instances times this
one; the point is to stop a single client from hammering search (and the queues behind it).

The client is the TCP peer, or, behind proxies the deployment trusts (SEARCH_TRUSTED_PROXY_HOPS,
e.g. 1 behind Google's front end, which appends the caller's address to X-Forwarded-For), the
address that many hops from the right of X-Forwarded-For. Entries left of the trusted ones are
chosen by the caller and are never used.
"""
from __future__ import annotations

import ipaddress
import math
import threading
from collections import OrderedDict

from common.config import ConfigError

DEFAULT_RATE_PER_MIN = 60
DEFAULT_BURST = 20
DEFAULT_MAX_CLIENTS = 100_000


class ClientRateLimiter:
    def __init__(self, rate_per_min: float = DEFAULT_RATE_PER_MIN, burst: int = DEFAULT_BURST, max_clients: int = DEFAULT_MAX_CLIENTS):
        if rate_per_min <= 0:
            raise ValueError("rate_per_min must be > 0")
        if burst < 1:
            raise ValueError("burst must be >= 1")
        if max_clients < 1:
            raise ValueError("max_clients must be >= 1")
        self.rate_per_min = float(rate_per_min)
        self.burst = int(burst)
        self.interval = 60.0 / self.rate_per_min  # seconds per request at the sustained rate
        self.tolerance = self.interval * (self.burst - 1)
        self.max_clients = int(max_clients)
        self._tat: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings) -> "ClientRateLimiter":
        def number(name: str, default: float, cast) -> float:
            raw = settings.optional(name, default)
            try:
                value = cast(raw)
            except (TypeError, ValueError):
                raise ConfigError(name, f"must be a number, got {raw!r}") from None
            if value <= 0:
                raise ConfigError(name, f"must be > 0, got {raw!r}")
            return value

        return cls(
            number("SEARCH_RATE_PER_MIN", DEFAULT_RATE_PER_MIN, float),
            int(number("SEARCH_BURST", DEFAULT_BURST, int)),
            int(number("SEARCH_MAX_CLIENTS", DEFAULT_MAX_CLIENTS, int)),
        )

    def check(self, client: str, now: float) -> tuple[bool, int]:
        """(allowed, retry_after_s). `now` is a monotonic time in seconds. A refusal spends nothing."""
        with self._lock:
            tat = self._tat.get(client, now)
            if tat < now:
                tat = now
            allow_at = tat - self.tolerance
            if now < allow_at:
                self._tat.move_to_end(client)
                return False, max(1, math.ceil(allow_at - now))
            self._tat[client] = tat + self.interval
            self._tat.move_to_end(client)
            if len(self._tat) > self.max_clients:
                self._tat.popitem(last=False)
            return True, 0

    def clients(self) -> int:
        with self._lock:
            return len(self._tat)


def trusted_hops(settings) -> int:
    raw = settings.optional("SEARCH_TRUSTED_PROXY_HOPS", 0)
    try:
        hops = int(raw)
    except (TypeError, ValueError):
        raise ConfigError("SEARCH_TRUSTED_PROXY_HOPS", f"must be a whole number, got {raw!r}") from None
    if hops < 0 or hops > 10:
        raise ConfigError("SEARCH_TRUSTED_PROXY_HOPS", f"must be between 0 and 10, got {raw!r}")
    return hops


def client_id(remote_addr: str | None, forwarded_for: str | None, hops: int) -> str:
    """The caller's address: the peer, or the `hops`-th address from the right of X-Forwarded-For."""
    candidate = remote_addr or "unknown"
    if hops > 0 and forwarded_for:
        parts = [p.strip() for p in forwarded_for.split(",") if p.strip()]
        if len(parts) >= hops:
            candidate = parts[-hops]
    try:
        return str(ipaddress.ip_address(candidate.strip("[]")))
    except ValueError:
        return "invalid:" + candidate[:64]
