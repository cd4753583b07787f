"""A TaskQueue held in memory and run in the calling process (`stellarmap hubble sync --local`):
Cloud Tasks' name rule (a duplicate is refused, and that is success), no persistence, no retries.
A task that fails stops `drain` with its answer, so the operator sees why and runs again."""
from __future__ import annotations

import collections
from typing import Callable

from common.queue.port import TaskQueue, task_name_of, validate_queue


class InProcessQueue(TaskQueue):
    def __init__(self):
        self._tasks: collections.deque = collections.deque()
        self._names: set[str] = set()

    def enqueue(self, queue, payload, *, purpose, generation=0, delay_s=0.0):
        validate_queue(queue)
        name = task_name_of(payload, purpose, generation)
        if name in self._names:
            return False
        self._names.add(name)
        self._tasks.append((queue, dict(payload)))
        return True

    def depth(self, queue):
        return sum(1 for q, _ in self._tasks if q == queue)

    def has_live_task(self, queue, name):
        return name in self._names

    def drain(self, handlers: dict[str, Callable[[dict], None]]) -> int:
        """Run queued tasks (and those they enqueue) in order until none is left."""
        done = 0
        while self._tasks:
            queue, payload = self._tasks.popleft()
            handlers[queue](payload)
            done += 1
        return done
