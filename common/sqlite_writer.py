"""One writer lock per SQLite file in this process (the store and the local task queue).

Threads queue on the lock instead of on SQLite's busy handler, whose sleeps (1 ms growing to
100 ms) made the tail latency of concurrent writes. Other processes still meet SQLite's own
write lock and its busy timeout."""
from __future__ import annotations

import os
import threading

_LOCKS: dict[str, threading.Lock] = {}
_GUARD = threading.Lock()


def writer_lock(path: str) -> threading.Lock:
    key = path if path == ":memory:" else os.path.realpath(path)
    with _GUARD:
        return _LOCKS.setdefault(key, threading.Lock())
