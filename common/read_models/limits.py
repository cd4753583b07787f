"""Per-client limits of the stats function (common/ratelimit_clients.py, keyed like search's).

Every request takes a slot of the client's rate (STATS_RATE_PER_MIN, STATS_BURST). An export
(`/account-lineage?format=...`, the whole lineage streamed: up to 100,000+ children) costs far
more, so it also needs a slot of the stricter export rate (STATS_EXPORT_RATE_PER_MIN,
STATS_EXPORT_BURST) and one of the running exports: at most
STATS_MAX_CONCURRENT_EXPORTS_PER_CLIENT per client and STATS_MAX_CONCURRENT_EXPORTS per instance,
held until the stream ends (or the client goes away). Eight parallel 30,000-child exports on one
instance otherwise push /health from milliseconds to tens of seconds (bench/bench_stats_limits.py).
A refusal is 429 `rate_limited` with Retry-After, and spends nothing.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from common.ratelimit_clients import ClientRateLimiter, ConcurrencyLimiter, client_id, positive_setting, trusted_hops

DEFAULT_RATE_PER_MIN = 300
DEFAULT_BURST = 100
DEFAULT_EXPORT_RATE_PER_MIN = 6
DEFAULT_EXPORT_BURST = 3
DEFAULT_MAX_CONCURRENT_EXPORTS = 2
DEFAULT_MAX_CONCURRENT_EXPORTS_PER_CLIENT = 1
EXPORT_BUSY_RETRY_AFTER_S = 10  # a running export takes seconds; there is no exact time to give


@dataclasses.dataclass(frozen=True)
class Refusal:
    limit: str  # requests | exports | exports_per_client | exports_per_instance
    message: str
    retry_after_s: int


class StatsLimits:
    def __init__(self, requests: ClientRateLimiter, exports: ClientRateLimiter, running: ConcurrencyLimiter, hops: int = 0):
        self.requests = requests
        self.exports = exports
        self.running = running
        self.hops = hops

    @classmethod
    def from_settings(cls, settings) -> "StatsLimits":
        return cls(
            ClientRateLimiter.from_settings(settings, "STATS", DEFAULT_RATE_PER_MIN, DEFAULT_BURST, "STATS_MAX_CLIENTS"),
            ClientRateLimiter.from_settings(settings, "STATS_EXPORT", DEFAULT_EXPORT_RATE_PER_MIN, DEFAULT_EXPORT_BURST, "STATS_MAX_CLIENTS"),
            ConcurrencyLimiter(
                int(positive_setting(settings, "STATS_MAX_CONCURRENT_EXPORTS_PER_CLIENT", DEFAULT_MAX_CONCURRENT_EXPORTS_PER_CLIENT, int)),
                int(positive_setting(settings, "STATS_MAX_CONCURRENT_EXPORTS", DEFAULT_MAX_CONCURRENT_EXPORTS, int)),
            ),
            trusted_hops(settings),
        )

    def client(self, remote_addr: str | None, forwarded_for: str | None) -> str:
        return client_id(remote_addr, forwarded_for, self.hops)

    def admit(self, client: str, now: float) -> Refusal | None:
        allowed, retry_after = self.requests.check(client, now)
        if allowed:
            return None
        return Refusal("requests", f"too many stats requests from your address; try again in {retry_after} s", retry_after)

    def start_export(self, client: str, now: float) -> Refusal | Callable[[], None]:
        """A refusal, or the release of the export slot now held (call it once, when the stream ends)."""
        busy = self.running.acquire(client)
        if busy == "client":
            return Refusal("exports_per_client", f"you already have {self.running.per_client} export(s) running; "
                           f"try again when it has finished", EXPORT_BUSY_RETRY_AFTER_S)
        if busy == "instance":
            return Refusal("exports_per_instance", "the server is busy with other exports; try again shortly", EXPORT_BUSY_RETRY_AFTER_S)
        allowed, retry_after = self.exports.check(client, now)
        if not allowed:
            self.running.release(client)
            return Refusal("exports", f"too many exports from your address; try again in {retry_after} s", retry_after)
        released = []

        def release() -> None:
            if not released:
                released.append(True)
                self.running.release(client)

        return release
