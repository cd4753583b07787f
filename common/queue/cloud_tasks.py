"""The Cloud Tasks TaskQueue adapter (google-cloud-tasks).

- Each task is an HTTP POST of its JSON payload to the queue's function URL, with an OIDC token of
  the tasks invoker service account (audience = the function URL): the functions are internal and
  only that identity may invoke them. Where a shared INTERNAL_TOKEN is configured instead (a local
  stack against the emulator), the task carries that bearer token and no OIDC token.
- The task name is deterministic (common.queue.port.task_name: network, account, purpose,
  generation), so Cloud Tasks itself refuses a duplicate: AlreadyExists is answered with False,
  never raised. Because the name is fixed, a create_task that failed in transit is retried safely.
- A delay (continuations, backoff) is `schedule_time` = now + delay.
- The client is created on first use: the real API by default, or the emulator
  (CLOUD_TASKS_EMULATOR_HOST, plain gRPC on loopback).

Settings: CLOUD_TASKS_PROJECT, CLOUD_TASKS_LOCATION, LINEAGE_QUEUE, API_FALLBACK_QUEUE (queue ids or
full `projects/P/locations/L/queues/Q` names), PROCESS_ACCOUNT_URL, API_FALLBACK_URL,
TASKS_INVOKER_SA (optional only with the emulator or an INTERNAL_TOKEN), CLOUD_TASKS_EMULATOR_HOST,
TASKS_DISPATCH_DEADLINE_S (optional, 15..1800).
"""
from __future__ import annotations

import datetime as dt
import json
import threading
from typing import Any, Mapping

from common.clock import Clock, SystemClock
from common.config import ConfigError
from common.queue.port import QUEUES, SYNC_QUEUE, TaskQueue, task_name_of, validate_queue

QUEUE_SETTINGS = {"lineage": "LINEAGE_QUEUE", "api-fallback": "API_FALLBACK_QUEUE"}
URL_SETTINGS = {"lineage": "PROCESS_ACCOUNT_URL", "api-fallback": "API_FALLBACK_URL"}
# Optional: only the functions that plan a Hubble sync need its queue (both variables, or neither).
SYNC_SETTINGS = ("HUBBLE_SYNC_QUEUE", "HUBBLE_SYNC_URL")
CREATE_TIMEOUT_S = 30.0


def queue_path(project: str, location: str, queue_id: str) -> str:
    if queue_id.startswith("projects/"):
        return queue_id
    return f"projects/{project}/locations/{location}/queues/{queue_id}"


class CloudTasksQueue(TaskQueue):
    def __init__(
        self,
        project: str,
        location: str,
        queue_ids: Mapping[str, str],
        target_urls: Mapping[str, str],
        invoker_sa: str | None = None,
        clock: Clock | None = None,
        emulator_host: str | None = None,
        internal_token: str | None = None,
        dispatch_deadline_s: float | None = None,
        client: Any = None,
    ):
        missing = [q for q in QUEUES if q not in queue_ids or q not in target_urls]
        if missing:
            raise ValueError(f"queue ids and target URLs are needed for every queue; missing: {', '.join(missing)}")
        if not invoker_sa and not internal_token and not emulator_host and client is None:
            raise ConfigError("TASKS_INVOKER_SA", "is not set: Cloud Tasks needs the invoker service account for the OIDC token")
        if dispatch_deadline_s is not None and not 15 <= float(dispatch_deadline_s) <= 1800:
            raise ConfigError("TASKS_DISPATCH_DEADLINE_S", f"must be between 15 and 1800 seconds, got {dispatch_deadline_s}")
        self.paths = {q: queue_path(project, location, queue_ids[q]) for q in (*QUEUES, SYNC_QUEUE) if q in queue_ids and q in target_urls}
        self.urls = dict(target_urls)
        self.invoker_sa = invoker_sa
        self.clock = clock or SystemClock()
        self.emulator_host = emulator_host
        self.internal_token = internal_token
        self.dispatch_deadline_s = None if dispatch_deadline_s is None else float(dispatch_deadline_s)
        self._client = client
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings, clock: Clock | None = None) -> "CloudTasksQueue":
        deadline = settings.optional("TASKS_DISPATCH_DEADLINE_S")
        emulator = settings.optional("CLOUD_TASKS_EMULATOR_HOST")
        try:
            deadline_s = None if deadline in (None, "") else float(deadline)
        except ValueError:
            raise ConfigError("TASKS_DISPATCH_DEADLINE_S", f"must be a number of seconds, got {deadline!r}") from None
        project, location = settings.require("CLOUD_TASKS_PROJECT"), settings.require("CLOUD_TASKS_LOCATION")
        queue_ids = {q: settings.require(v) for q, v in QUEUE_SETTINGS.items()}
        target_urls = {q: settings.require(v) for q, v in URL_SETTINGS.items()}
        sync_queue, sync_url = (settings.optional(v) for v in SYNC_SETTINGS)
        if bool(sync_queue) != bool(sync_url):
            raise ConfigError(SYNC_SETTINGS[1] if sync_queue else SYNC_SETTINGS[0], f"is not set (it goes with {SYNC_SETTINGS[0] if sync_queue else SYNC_SETTINGS[1]})")
        if sync_queue:
            queue_ids[SYNC_QUEUE], target_urls[SYNC_QUEUE] = sync_queue, sync_url
        return cls(
            project=project,
            location=location,
            queue_ids=queue_ids,
            target_urls=target_urls,
            invoker_sa=settings.optional("TASKS_INVOKER_SA"),
            clock=clock,
            emulator_host=emulator,
            internal_token=settings.internal_token,
            dispatch_deadline_s=deadline_s,
        )

    # ------------------------------------------------------------ client (lazy)
    @property
    def client(self):
        if self._client is None:
            with self._lock:
                if self._client is None:
                    from google.cloud import tasks_v2

                    if self.emulator_host:
                        import grpc
                        from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

                        channel = grpc.insecure_channel(self.emulator_host)
                        self._client = tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
                    else:
                        self._client = tasks_v2.CloudTasksClient()
        return self._client

    # ------------------------------------------------------------ the port
    def build_task(self, queue: str, payload: dict, purpose: str, generation: int | str, delay_s: float) -> dict:
        """The Task message (as a dict) that enqueue creates: pure, so it can be checked offline."""
        from google.protobuf import timestamp_pb2

        validate_queue(queue)
        if queue not in self.paths:
            raise ConfigError(SYNC_SETTINGS[0], f"is not set: the {queue} queue is not configured for this function")
        name = task_name_of(payload, purpose, generation)
        url = self.urls[queue]
        headers = {"Content-Type": "application/json"}
        http_request: dict[str, Any] = {
            "http_method": "POST",
            "url": url,
            "headers": headers,
            "body": json.dumps(payload, separators=(",", ":"), sort_keys=True).encode(),
        }
        if self.internal_token:
            headers["Authorization"] = f"Bearer {self.internal_token}"
        else:
            http_request["oidc_token"] = {"service_account_email": self.invoker_sa or "", "audience": url}
        task: dict[str, Any] = {"name": f"{self.paths[queue]}/tasks/{name}", "http_request": http_request}
        if delay_s and delay_s > 0:
            ts = timestamp_pb2.Timestamp()
            ts.FromDatetime((self.clock.now() + dt.timedelta(seconds=float(delay_s))).astimezone(dt.timezone.utc).replace(tzinfo=None))
            task["schedule_time"] = ts
        if self.dispatch_deadline_s is not None:
            from google.protobuf import duration_pb2

            task["dispatch_deadline"] = duration_pb2.Duration(seconds=int(self.dispatch_deadline_s))
        return task

    def enqueue(self, queue: str, payload: dict, *, purpose: str, generation: int | str = 0, delay_s: float = 0.0) -> bool:
        from google.api_core import exceptions, retry

        task = self.build_task(queue, payload, purpose, generation, delay_s)
        # The name is deterministic, so retrying a create whose answer was lost is safe: the
        # retry either creates the task or meets AlreadyExists (the first try's task).
        transient = retry.Retry(
            predicate=retry.if_exception_type(exceptions.ServiceUnavailable, exceptions.DeadlineExceeded, exceptions.InternalServerError),
            initial=0.2,
            maximum=5.0,
            timeout=CREATE_TIMEOUT_S,
        )
        try:
            self.client.create_task(request={"parent": self.paths[queue], "task": task}, retry=transient, timeout=CREATE_TIMEOUT_S)
        except exceptions.AlreadyExists:
            return False
        return True

    def depth(self, queue: str) -> int | None:
        validate_queue(queue)
        return None  # the v2 API does not report queue statistics

    def has_live_task(self, queue: str, name: str) -> bool:
        from google.api_core import exceptions

        validate_queue(queue)
        try:
            self.client.get_task(request={"name": f"{self.paths[queue]}/tasks/{name}"})
        except (exceptions.NotFound, exceptions.FailedPrecondition):
            # NotFound: never existed, or finished; the emulator answers FailedPrecondition for a
            # name that finished recently.
            return False
        return True

    def live_tasks(self, queue: str) -> set[str] | None:
        validate_queue(queue)
        prefix = self.paths[queue] + "/tasks/"
        names = set()
        for task in self.client.list_tasks(request={"parent": self.paths[queue], "page_size": 1000}):
            names.add(task.name[len(prefix):] if task.name.startswith(prefix) else task.name.rsplit("/", 1)[-1])
        return names

    def close(self) -> None:
        client = self._client
        if client is not None:
            transport = getattr(client, "transport", None)
            close = getattr(transport, "close", None)
            if callable(close):
                close()
            self._client = None
