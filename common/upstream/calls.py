"""Call accounting shared by the upstream clients and the handlers: how many requests one task made.

A context variable per thread, so a handler can report its own calls without seeing the transport.
"""
from __future__ import annotations

import contextlib
import contextvars
from collections import Counter
from typing import Iterator

_TALLY: contextvars.ContextVar[Counter | None] = contextvars.ContextVar("upstream_tally", default=None)


@contextlib.contextmanager
def tally() -> Iterator[Counter]:
    """Count the upstream requests made inside the block (this thread only): {"horizon": n, "expert": n}."""
    counter: Counter = Counter()
    token = _TALLY.set(counter)
    try:
        yield counter
    finally:
        _TALLY.reset(token)


def count(upstream: str) -> None:
    counter = _TALLY.get()
    if counter is not None:
        counter[upstream] += 1
