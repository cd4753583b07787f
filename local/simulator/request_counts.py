"""Request counters: per endpoint and client, per status, and every 429 split into the ones a
client earned (over its budget) and the ones fault injection sent."""
from __future__ import annotations

import threading
from collections import defaultdict


class RequestCounts:
    def __init__(self):
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._requests = defaultdict(lambda: defaultdict(int))
            self._statuses = defaultdict(lambda: defaultdict(int))
            self._earned = defaultdict(lambda: defaultdict(int))
            self._injected = defaultdict(lambda: defaultdict(int))

    def request(self, endpoint: str, client: str) -> None:
        with self._lock:
            self._requests[endpoint][client] += 1

    def response(self, endpoint: str, status: int | str) -> None:
        with self._lock:
            self._statuses[endpoint][str(status)] += 1

    def rate_limited(self, endpoint: str, client: str) -> None:
        with self._lock:
            self._earned[endpoint][client] += 1

    def injected(self, endpoint: str, kind: str) -> None:
        with self._lock:
            self._injected[endpoint][kind] += 1

    def snapshot(self) -> dict:
        with self._lock:
            def plain(table):
                return {k: dict(v) for k, v in table.items()}

            earned = sum(sum(v.values()) for v in self._earned.values())
            injected_429 = sum(v.get("429", 0) for v in self._injected.values())
            return {
                "requests": plain(self._requests),
                "responses": plain(self._statuses),
                "rate_limited_429": plain(self._earned),
                "injected": plain(self._injected),
                "totals": {
                    "requests": sum(sum(v.values()) for v in self._requests.values()),
                    "rate_limited_429": earned,
                    "injected_429": injected_429,
                    "sent_429": earned + injected_429,
                    "injected": sum(sum(v.values()) for v in self._injected.values()),
                },
            }
