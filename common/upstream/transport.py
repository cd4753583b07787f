"""JSON over HTTP for the upstream adapters: requests + tenacity, every call through the limiter.

One `get()` is: take a slot from the limiter (sleeping if needed, NoBudget if the wait is longer
than the caller may afford), send the request, classify the answer, parse the body, and let
tenacity retry what is transient (5xx, timeouts, reset connections, bodies that are not the JSON
we expect) with exponential backoff plus jitter. A 429 is honoured: the limiter is paused for
its Retry-After (or X-RateLimit-Reset) and, when that pause is short, the same call is tried
again after it; a longer one goes back to the caller as RateLimited so the task queue backs off.
Every attempt, retried or not, is counted and is taken from the limiter's budget.

Upstream-provided URLs (HAL `_links`) are never followed: callers pass paths we build from
validated account ids and numeric cursors, so a hostile upstream cannot point us elsewhere.
"""
from __future__ import annotations

import email.utils
import json
import math
import threading
from collections import Counter
from typing import Any, Callable, Mapping

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from common.clock import Clock
from common.upstream.errors import (
    ClientError,
    MalformedResponse,
    NotFound,
    RateLimited,
    ServerError,
    TransportError,
)
from common.upstream.calls import count as _count
from common.upstream.ratelimit import RateLimiter

USER_AGENT = "stellarmap-serverless/0.1 (+https://github.com/stellarmap)"
MAX_BODY_BYTES = 8 * 1024 * 1024  # an operations page of 200 records is ~250 KB
DEFAULT_RETRY_AFTER_S = 5.0
MAX_RETRY_AFTER_S = 3600.0

def retry_after_seconds(headers: Mapping[str, str], now_epoch: float | None = None) -> float:
    """Seconds to wait after a 429: Retry-After (seconds or an HTTP date), else Horizon's
    X-RateLimit-Reset (seconds until the window resets), else a default. Bounded."""
    raw = (headers.get("Retry-After") or "").strip()
    value: float | None = None
    if raw:
        try:
            value = float(raw)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(raw)
                if now_epoch is not None and when is not None:
                    value = when.timestamp() - now_epoch
            except (TypeError, ValueError, IndexError, OverflowError):
                value = None
    if value is None:
        reset = (headers.get("X-RateLimit-Reset") or "").strip()
        try:
            value = float(reset) if reset else None
        except ValueError:
            value = None
        if value is not None and now_epoch is not None and value > 1e9:  # an epoch, not a delay
            value -= now_epoch
    if value is None or not math.isfinite(value):
        value = DEFAULT_RETRY_AFTER_S
    return min(MAX_RETRY_AFTER_S, max(0.0, value))


class JsonTransport:
    """GET JSON from one base URL, paced by one limiter, retried by tenacity."""

    def __init__(
        self,
        upstream: str,
        base_url: str,
        limiter: RateLimiter,
        clock: Clock,
        timeout_s: float = 20.0,
        attempts: int = 4,
        inline_429_wait_s: float = 5.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 8.0,
    ):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"{upstream} base URL must start with http:// or https://, got {base_url!r}")
        if attempts < 1:
            raise ValueError("attempts must be >= 1")
        self.upstream = upstream
        self.base_url = base_url.rstrip("/")
        self.limiter = limiter
        self.clock = clock
        self.timeout = (min(5.0, timeout_s), timeout_s)
        self.attempts = attempts
        self.inline_429_wait_s = inline_429_wait_s
        self._wait = wait_exponential_jitter(multiplier=backoff_initial_s, max=backoff_max_s, jitter=backoff_initial_s)
        self._local = threading.local()
        self._lock = threading.Lock()
        self.stats: Counter = Counter()

    # ------------------------------------------------------------------ plumbing
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False  # never a proxy or .netrc from the environment for upstream calls
            session.headers.update({"Accept": "application/json", "User-Agent": USER_AGENT})
            self._local.session = session
        return session

    def _bump(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.stats[key] += n

    def close(self) -> None:
        session = getattr(self._local, "session", None)
        if session is not None:
            session.close()
            self._local.session = None

    def metrics(self) -> dict:
        with self._lock:
            stats = dict(self.stats)
        return {"base_url": self.base_url, **stats, "limiter": self.limiter.metrics()}

    # ------------------------------------------------------------------ one attempt
    def _attempt(self, path: str, params: Mapping[str, Any] | None, parse: Callable[[Any], Any], max_wait_s: float,
                 reserve: int = 0) -> Any:
        self.limiter.acquire(max_wait_s, reserve)
        self._bump("requests")
        _count(self.upstream)
        url = f"{self.base_url}{path}"
        try:
            resp = self._session().get(url, params=params, timeout=self.timeout, stream=True, allow_redirects=False)
        except requests.Timeout as exc:
            self._bump("timeouts")
            raise TransportError(self.upstream, f"timed out: {type(exc).__name__}") from exc
        except requests.RequestException as exc:
            self._bump("connection_errors")
            raise TransportError(self.upstream, f"connection failed: {type(exc).__name__}") from exc
        try:
            status = resp.status_code
            self._bump(f"http_{status}")
            if status == 429:
                wait = retry_after_seconds(resp.headers, self.clock.now().timestamp())
                self.limiter.penalize(wait)
                self._bump("received_429")
                raise RateLimited(self.upstream, f"429 Too Many Requests (retry after {wait:.0f} s)", wait)
            if status == 404:
                raise NotFound(self.upstream, f"404 for {path}", 404)
            if 500 <= status <= 599:
                raise ServerError(self.upstream, f"HTTP {status}", status)
            if status != 200:
                raise ClientError(self.upstream, f"HTTP {status} for {path}", status)
            body = self._read(resp)
        finally:
            resp.close()
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            self._bump("malformed")
            raise MalformedResponse(self.upstream, f"body is not JSON ({len(body)} bytes)") from exc
        try:
            return parse(data)
        except MalformedResponse:
            self._bump("malformed")
            raise
        except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError) as exc:
            self._bump("malformed")
            raise MalformedResponse(self.upstream, f"unexpected JSON shape: {type(exc).__name__}: {exc}"[:300]) from exc

    def _read(self, resp: requests.Response) -> bytes:
        chunks, size = [], 0
        try:
            for chunk in resp.iter_content(65536):
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    self._bump("malformed")
                    raise MalformedResponse(self.upstream, f"body larger than {MAX_BODY_BYTES} bytes")
                chunks.append(chunk)
        except requests.RequestException as exc:  # the connection broke mid-body
            self._bump("connection_errors")
            raise TransportError(self.upstream, f"body cut short: {type(exc).__name__}") from exc
        return b"".join(chunks)

    # ------------------------------------------------------------------ retried call
    def _retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, (ServerError, TransportError, MalformedResponse)):
            return True
        return isinstance(exc, RateLimited) and exc.status == 429 and exc.retry_after <= self.inline_429_wait_s

    def _wait_for(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited):
            return 0.0  # the limiter holds the next attempt until Retry-After has passed
        return self._wait(state)

    def _before_sleep(self, state: RetryCallState) -> None:
        self._bump("retries")

    def get(self, path: str, params: Mapping[str, Any] | None = None, parse: Callable[[Any], Any] = lambda d: d,
            max_wait_s: float = math.inf, attempts: int | None = None, reserve: int = 0) -> Any:
        """GET base_url + path and return parse(json). Raises an UpstreamError subclass.

        `attempts` overrides the tries for this call; `reserve` is passed to the limiter (best effort:
        only spare budget)."""
        retrying = Retrying(
            retry=retry_if_exception(self._retryable),
            stop=stop_after_attempt(attempts or self.attempts),
            wait=self._wait_for,
            sleep=self.clock.sleep,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        return retrying(self._attempt, path, params, parse, max_wait_s, reserve)
