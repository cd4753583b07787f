"""Per-client limits of the public functions (search, and stats: common/read_models/limits.py).

A token bucket per client (common/ratelimit.py, in GCRA form, what Horizon uses): each client may
send `burst` requests at once, then `rate_per_min` a minute. The state is one timestamp per client
(the bucket's theoretical arrival time), kept for at most `max_clients` clients (least recently seen forgotten first), so a
flood of distinct addresses cannot exhaust memory. ConcurrencyLimiter bounds work that lasts
(stats exports): at most `per_client` at once per client and `total` per instance.

It is per process: each function instance limits its own callers. On GCP the instances are
bounded by the function's max_instances, so the global limit is at most max_instances times this
one; the point is to stop a single client from hammering a function (and what is behind it).

The client is the TCP peer, or, behind proxies the deployment trusts (SEARCH_TRUSTED_PROXY_HOPS,
read by both public functions; 1 behind Google's front end, which appends the caller's address to
X-Forwarded-For; Terraform sets it), the address that many hops from the right of
X-Forwarded-For. Entries left of the trusted ones are chosen by the caller and are never used.
"""
from __future__ import annotations

import ipaddress
import math
import threading
from collections import OrderedDict

from common.config import ConfigError
from common.ratelimit import TokenBucket

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
        self.bucket = TokenBucket.per_minute(self.rate_per_min, self.burst)  # the arithmetic; the state is per client
        self.max_clients = int(max_clients)
        self._tat: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings, prefix: str = "SEARCH", rate_per_min: float = DEFAULT_RATE_PER_MIN, burst: int = DEFAULT_BURST,
                      max_clients_variable: str = "SEARCH_MAX_CLIENTS") -> "ClientRateLimiter":
        """From {prefix}_RATE_PER_MIN, {prefix}_BURST and the max-clients variable, else the defaults given."""
        return cls(
            positive_setting(settings, f"{prefix}_RATE_PER_MIN", rate_per_min, float),
            int(positive_setting(settings, f"{prefix}_BURST", burst, int)),
            int(positive_setting(settings, max_clients_variable, DEFAULT_MAX_CLIENTS, int)),
        )

    def check(self, client: str, now: float) -> tuple[bool, int]:
        """(allowed, retry_after_s). `now` is a monotonic time in seconds. A refusal spends nothing."""
        with self._lock:
            tat = self._tat.get(client, now)
            wait = self.bucket.wait_at(tat, now)
            if wait > 0:
                self._tat.move_to_end(client)
                return False, max(1, math.ceil(wait))
            self._tat[client] = self.bucket.spend_at(tat, now)
            self._tat.move_to_end(client)
            if len(self._tat) > self.max_clients:
                self._tat.popitem(last=False)
            return True, 0

    def clients(self) -> int:
        with self._lock:
            return len(self._tat)


class ConcurrencyLimiter:
    """At most `per_client` running at once per client, and `total` in this process."""

    def __init__(self, per_client: int, total: int):
        if per_client < 1 or total < 1:
            raise ValueError("per_client and total must be >= 1")
        self.per_client = int(per_client)
        self.total = int(total)
        self._running: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, client: str) -> str | None:
        """None when a slot was taken (release it once), else which limit refused: 'client' | 'instance'."""
        with self._lock:
            mine = self._running.get(client, 0)
            if mine >= self.per_client:
                return "client"
            if sum(self._running.values()) >= self.total:
                return "instance"
            self._running[client] = mine + 1
            return None

    def release(self, client: str) -> None:
        with self._lock:
            left = self._running.get(client, 0) - 1
            if left > 0:
                self._running[client] = left
            else:
                self._running.pop(client, None)

    def running(self) -> int:
        with self._lock:
            return sum(self._running.values())


def positive_setting(settings, name: str, default: float, cast):
    """A setting that must be a number > 0 (explicit, else the environment, else the default)."""
    raw = settings.optional(name, default)
    try:
        value = cast(raw)
    except (TypeError, ValueError):
        raise ConfigError(name, f"must be a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(name, f"must be > 0, got {raw!r}")
    return value


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
