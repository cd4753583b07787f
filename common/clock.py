"""The Clock port: system time in production, a settable clock in tests and benchmarks."""
from __future__ import annotations

import abc
import datetime as dt
import threading
import time


class Clock(abc.ABC):
    @abc.abstractmethod
    def now(self) -> dt.datetime:
        """Aware UTC datetime."""

    @abc.abstractmethod
    def monotonic(self) -> float: ...

    @abc.abstractmethod
    def sleep(self, seconds: float) -> None: ...


class SystemClock(Clock):
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class SettableClock(Clock):
    """Time moves only when told to; sleep() advances it instead of blocking."""

    def __init__(self, start: dt.datetime | None = None):
        self._now = start or dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
        self._mono = 0.0
        self._lock = threading.Lock()

    def now(self) -> dt.datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += dt.timedelta(seconds=seconds)
            self._mono += seconds

    def set(self, when: dt.datetime) -> None:
        with self._lock:
            self._now = when
