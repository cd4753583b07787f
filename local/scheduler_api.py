"""A local server that answers like the Cloud Scheduler REST API (v1), for `stellarmap jobs` tests
and the demo: get/list jobs, and :run, :pause, :resume. Running a job POSTs to its HTTP target,
as Cloud Scheduler does, with the configured bearer token standing in for the OIDC token."""
from __future__ import annotations

import datetime as dt
import json
import re
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_JOB = re.compile(r"^/v1/(projects/[^/]+/locations/[^/]+/jobs/[^/:]+)(?::(run|pause|resume))?$")
_LIST = re.compile(r"^/v1/(projects/[^/]+/locations/[^/]+)/jobs$")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")


class SchedulerApi:
    """`with SchedulerApi(project, location, {job_id: (schedule, target_url)}, token) as api:` → api.endpoint"""

    def __init__(self, project: str, location: str, jobs: dict[str, tuple[str, str]], token: str | None = None, port: int = 0):
        self.parent = f"projects/{project}/locations/{location}"
        self.token = token
        self.port = port
        self.lock = threading.Lock()
        self.runs: list[tuple[str, int]] = []  # (job name, HTTP status of the target)
        self.jobs = {
            f"{self.parent}/jobs/{job_id}": {
                "name": f"{self.parent}/jobs/{job_id}",
                "schedule": schedule,
                "timeZone": "Etc/UTC",
                "state": "ENABLED",
                "httpTarget": {"uri": url, "httpMethod": "POST"},
                "userUpdateTime": _now(),
            }
            for job_id, (schedule, url) in jobs.items()
        }
        self.server: ThreadingHTTPServer | None = None

    def is_paused(self, job_id: str) -> bool:
        with self.lock:
            return self.jobs[f"{self.parent}/jobs/{job_id}"]["state"] == "PAUSED"

    def _run(self, job: dict) -> int:
        req = urllib.request.Request(job["httpTarget"]["uri"], data=b"{}", method="POST", headers={"Content-Type": "application/json"})
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                status = resp.status
        except urllib.error.HTTPError as err:
            status = err.code
        except OSError:
            status = 503
        with self.lock:
            job["lastAttemptTime"] = _now()
            job["status"] = {} if status < 400 else {"code": 14, "message": f"HTTP {status}"}
            self.runs.append((job["name"], status))
        return status

    def handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _not_found(self, name: str) -> None:
                self._send(404, {"error": {"code": 404, "message": f"Job not found: {name}", "status": "NOT_FOUND"}})

            def do_GET(self):
                path = self.path.split("?")[0]
                m = _LIST.match(path)
                if m and m.group(1) == api.parent:
                    with api.lock:
                        return self._send(200, {"jobs": [dict(j) for j in api.jobs.values()]})
                m = _JOB.match(path)
                if m and not m.group(2):
                    job = api.jobs.get(m.group(1))
                    if not job:
                        return self._not_found(m.group(1))
                    with api.lock:
                        return self._send(200, dict(job))
                self._send(404, {"error": {"code": 404, "message": "unknown path", "status": "NOT_FOUND"}})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                m = _JOB.match(self.path.split("?")[0])
                if not m or not m.group(2):
                    return self._send(404, {"error": {"code": 404, "message": "unknown path", "status": "NOT_FOUND"}})
                job = api.jobs.get(m.group(1))
                if not job:
                    return self._not_found(m.group(1))
                verb = m.group(2)
                if verb == "run":
                    api._run(job)
                else:
                    with api.lock:
                        job["state"] = "PAUSED" if verb == "pause" else "ENABLED"
                        job["userUpdateTime"] = _now()
                with api.lock:
                    self._send(200, dict(job))

        return Handler

    def __enter__(self) -> "SchedulerApi":
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self.handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
