"""Test doubles that subclass our ports (never mock.patch of our own code)."""
from __future__ import annotations

import threading

from common.queue.port import TaskQueue, task_name, validate_queue


class RecordingQueue(TaskQueue):
    """An in-memory TaskQueue with Cloud Tasks' name semantics: a duplicate name is refused."""

    def __init__(self):
        self.tasks: list[dict] = []
        self.names: set[str] = set()
        self.live: set[str] = set()
        self.refused = 0
        self._lock = threading.Lock()

    def enqueue(self, queue, payload, *, purpose, generation=0, delay_s=0.0):
        validate_queue(queue)
        name = task_name(payload["network"], payload["account"], purpose, generation)
        with self._lock:
            if name in self.names:
                self.refused += 1
                return False
            self.names.add(name)
            self.live.add(name)
            self.tasks.append({"queue": queue, "name": name, "payload": dict(payload), "delay_s": delay_s})
            return True

    def depth(self, queue):
        return sum(1 for t in self.tasks if t["queue"] == queue and t["name"] in self.live)

    def has_live_task(self, queue, name):
        return name in self.live

    def pop(self, queue: str | None = None) -> dict | None:
        with self._lock:
            for t in self.tasks:
                if t["name"] in self.live and (queue is None or t["queue"] == queue):
                    self.live.discard(t["name"])
                    return t
        return None
