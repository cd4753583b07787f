"""What can go wrong when we ask Horizon or Stellar Expert, as exceptions the handler maps to outcomes.

    UpstreamError
    ├── NotFound             404: the resource does not exist (an unknown account is INVALID)
    ├── ClientError          another 4xx (400, 410, ...): our request is wrong; retrying cannot help
    ├── RateLimited          429 from the upstream, with its Retry-After (answer 429 so the queue backs off)
    │   └── NoBudget         our own limiter has no budget within the wait we may afford
    └── Unavailable          5xx, timeouts, connection errors, malformed or truncated bodies:
        ├── ServerError        transient; tenacity retries them with exponential backoff + jitter,
        ├── TransportError     and when every attempt failed the account is released for a retry
        └── MalformedResponse  (FAILED after max_retries)
"""
from __future__ import annotations


class UpstreamError(Exception):
    """Base of every upstream failure. `upstream` is "horizon" or "expert"."""

    def __init__(self, upstream: str, message: str, status: int | None = None):
        super().__init__(f"{upstream}: {message}")
        self.upstream = upstream
        self.message = message
        self.status = status


class NotFound(UpstreamError):
    pass


class ClientError(UpstreamError):
    pass


class RateLimited(UpstreamError):
    def __init__(self, upstream: str, message: str, retry_after: float, status: int | None = 429):
        super().__init__(upstream, message, status)
        self.retry_after = max(0.0, float(retry_after))


class NoBudget(RateLimited):
    """The in-process limiter would have to wait longer than the caller can afford."""

    def __init__(self, upstream: str, retry_after: float):
        super().__init__(upstream, f"no request budget for {retry_after:.1f} s", retry_after, status=None)


class Unavailable(UpstreamError):
    pass


class ServerError(Unavailable):
    pass


class TransportError(Unavailable):
    """Timeouts, refused or reset connections, bodies cut short."""


class MalformedResponse(Unavailable):
    """A 2xx answer whose body is not the JSON we expect (not JSON, truncated, wrong shape)."""
