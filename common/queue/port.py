"""The TaskQueue port: Cloud Tasks in production, a persistent local dispatcher for the demo."""
from __future__ import annotations

import abc
import hashlib
import re

QUEUES = ("lineage", "api-fallback")  # the per-account queues (reset_stale looks for accounts' tasks in these)
SYNC_QUEUE = "hubble-sync"  # the network-wide Hubble sync's ranges (common/handlers/hubble_sync.py)
ALL_QUEUES = QUEUES + (SYNC_QUEUE,)
PURPOSES = ("lineage", "enrich", "children", "bulk", "sync")
# The function each queue delivers to (HTTP target).
QUEUE_TARGETS = {"lineage": "process_account", "api-fallback": "api_fallback", SYNC_QUEUE: "hubble_sync"}
_NAME_OK = re.compile(r"[^A-Za-z0-9_-]")


def task_name(network: str, account: str, purpose: str, generation: int | str) -> str:
    """Deterministic task name: the same (network, account, purpose, generation) is enqueued once.

    A generation that is not a plain integer (e.g. a paging cursor) is hashed to keep the name short.
    """
    gen = str(generation)
    if not (gen.isascii() and gen.isdigit()):  # '١٢' would become '__' and collide with every other script
        gen = "h" + hashlib.sha256(gen.encode()).hexdigest()[:24]
    return _NAME_OK.sub("_", f"{network}-{account}-{purpose}-{gen}")


class TaskQueue(abc.ABC):
    @abc.abstractmethod
    def enqueue(
        self,
        queue: str,
        payload: dict,
        *,
        purpose: str,
        generation: int | str = 0,
        delay_s: float = 0.0,
    ) -> bool:
        """Create a task named task_name(payload network/account, purpose, generation).

        Returns True when created, False when a task of that name already exists (a duplicate
        is success, not an error). Raises on any other failure, so nothing is silently lost.
        """

    @abc.abstractmethod
    def depth(self, queue: str) -> int | None:
        """Tasks waiting or running, when the backend can tell (None when it cannot)."""

    @abc.abstractmethod
    def has_live_task(self, queue: str, name: str) -> bool:
        """True while a task with this name is queued or running."""

    def live_tasks(self, queue: str) -> set[str] | None:
        """Names of every task queued or running (retries included), or None when the backend
        cannot list them. reset_stale uses it to tell a waiting account from a lost one."""
        return None

    def close(self) -> None:
        """Release resources (optional)."""


def task_name_of(payload: dict, purpose: str, generation: int | str) -> str:
    """task_name of a payload; a sync task has no account (its generation names the range)."""
    return task_name(payload["network"], payload.get("account", "sync"), purpose, generation)


def validate_queue(queue: str) -> str:
    if queue not in ALL_QUEUES:
        raise ValueError(f"unknown queue {queue!r}; queues are {', '.join(ALL_QUEUES)}")
    return queue
