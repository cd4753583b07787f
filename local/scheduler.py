"""The local scheduler: runs the scheduled functions on their schedules, as Cloud Scheduler does.

One job per (function, network), like terraform/scheduler.tf: POST the job's JSON body
(`{"network": ...}` plus the job's own keys) to the function's URL, with
`Authorization: Bearer $INTERNAL_TOKEN` standing in for the OIDC token. A failed call (non-2xx,
or no answer) is retried up to `retries` times with a doubling backoff, then the job waits for
its next slot. Each job also runs once shortly after start (`first_run_s`), so a fresh stack has
health records at once.

Run it: `python -m local.scheduler --config scheduler.json` (written by local/stack.py):
`{"jobs": [{"name", "url", "interval_s", "bodies": [{...}, ...], "first_run_s"?: 5}], "retries"?: 3}`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

log = logging.getLogger("local.scheduler")
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclasses.dataclass
class Job:
    name: str
    url: str
    interval_s: float
    bodies: list[dict]
    first_run_s: float = 5.0

    def __post_init__(self):
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"job {self.name}: url must be http(s)://..., got {self.url!r}")
        if self.interval_s <= 0:
            raise ValueError(f"job {self.name}: interval_s must be > 0")
        if not self.bodies:
            self.bodies = [{}]


class Scheduler:
    def __init__(self, jobs: list[Job], token: str | None = None, retries: int = 3, timeout_s: float = 600.0,
                 on_run: Callable[[dict], None] | None = None):
        self.jobs = list(jobs)
        self.token = token
        self.retries = max(0, int(retries))
        self.timeout_s = timeout_s
        self.on_run = on_run
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def call(self, job: Job, body: dict) -> int | None:
        """One call with retries; returns the last HTTP status (None: no answer)."""
        status = None
        for attempt in range(self.retries + 1):
            if attempt:
                if self._stop.wait(min(60.0, 2.0 * 2 ** (attempt - 1))):
                    return status
            headers = {"Content-Type": "application/json", "User-Agent": "Google-Cloud-Scheduler (stellarmap local scheduler)"}
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            req = urllib.request.Request(job.url, data=json.dumps(body).encode(), method="POST", headers=headers)
            t0 = time.monotonic()
            try:
                with _DIRECT.open(req, timeout=self.timeout_s) as resp:
                    status = resp.status
                    resp.read()
            except urllib.error.HTTPError as exc:
                status = exc.code
            except Exception as exc:  # noqa: BLE001 - refused or timed out: retried
                status = None
                log.warning("%s %s: no answer (%s: %s)", job.name, json.dumps(body), type(exc).__name__, exc)
            ms = int((time.monotonic() - t0) * 1000)
            log.info("%s %s -> %s in %d ms (attempt %d)", job.name, json.dumps(body), status, ms, attempt + 1)
            if self.on_run is not None:
                self.on_run({"job": job.name, "body": body, "status": status, "attempt": attempt + 1})
            if status is not None and 200 <= status < 300:
                return status
        return status

    def _loop(self, job: Job) -> None:
        next_at = time.monotonic() + job.first_run_s
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            for body in job.bodies:
                if self._stop.is_set():
                    return
                self.call(job, body)
            next_at += job.interval_s
            now = time.monotonic()
            if next_at < now:  # a slow run: skip the missed slots, as Cloud Scheduler does
                next_at = now + job.interval_s - ((now - next_at) % job.interval_s)

    def start(self) -> "Scheduler":
        for job in self.jobs:
            t = threading.Thread(target=self._loop, args=(job,), name=f"schedule-{job.name}", daemon=True)
            self._threads.append(t)
            t.start()
        return self

    def stop(self, wait_s: float = 5.0) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=wait_s)
        self._threads.clear()

    def __enter__(self) -> "Scheduler":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def load_jobs(path: str | os.PathLike) -> tuple[list[Job], int]:
    raw = json.loads(Path(path).read_text())
    if not isinstance(raw, dict) or not isinstance(raw.get("jobs"), list):
        raise ValueError(f'{path}: expected {{"jobs": [{{name, url, interval_s, bodies}}]}}')
    jobs = [Job(j["name"], j["url"], float(j["interval_s"]), list(j.get("bodies") or [{}]), float(j.get("first_run_s", 5.0))) for j in raw["jobs"]]
    return jobs, int(raw.get("retries", 3))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m local.scheduler", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        jobs, retries = load_jobs(args.config)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"scheduler: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    sched = Scheduler(jobs, token=os.environ.get("INTERNAL_TOKEN") or None, retries=retries).start()
    log.info("scheduling %s", ", ".join(f"{j.name} every {j.interval_s:g}s" for j in jobs))
    while not stop.wait(0.5):
        pass
    sched.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
