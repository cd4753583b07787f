"""`stellarmap jobs` through google-cloud-scheduler (REST transport) against a local server that
answers like the Cloud Scheduler REST API; running a job really calls its target."""
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from local.scheduler_api import SchedulerApi

pytestmark = pytest.mark.integration


@pytest.fixture
def target():
    calls = []

    class Target(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            calls.append((self.path, self.headers.get("Authorization")))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Target)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", calls
    server.shutdown()


def _cli(*args, endpoint):
    return subprocess.run(
        [sys.executable, "-m", "stellarmap_cli.main", "jobs", *args, "--project", "p1", "--location", "us-central1", "--endpoint", endpoint],
        capture_output=True, text=True, timeout=60,
    )


def test_run_pause_resume(target):
    url, calls = target
    jobs = {f"stellarmap-{j}-{n}": ("0 * * * *", f"{url}/{j}/{n}") for j in ("hva-recalc", "reset-stale") for n in ("public", "testnet")}
    with SchedulerApi("p1", "us-central1", jobs, token="t0k") as api:
        run = _cli("run", "hva_recalc", "--network", "public", endpoint=api.endpoint)
        assert run.returncode == 0, run.stderr
        assert "stellarmap-hva-recalc-public" in run.stdout
        assert calls == [("/hva-recalc/public", "Bearer t0k")]
        paused = _cli("pause", "reset_stale", endpoint=api.endpoint)
        assert paused.returncode == 0 and paused.stdout.count("PAUSED") == 2
        assert api.is_paused("stellarmap-reset-stale-public") and api.is_paused("stellarmap-reset-stale-testnet")
        resumed = _cli("resume", "reset_stale", "--network", "testnet", endpoint=api.endpoint)
        assert resumed.returncode == 0 and "ENABLED" in resumed.stdout
        assert not api.is_paused("stellarmap-reset-stale-testnet") and api.is_paused("stellarmap-reset-stale-public")


def test_unknown_job_name_fails_with_one_line(target):
    url, _ = target
    with SchedulerApi("p1", "us-central1", {}, token=None) as api:
        res = _cli("run", "hva_recalc", "--network", "public", endpoint=api.endpoint)
    assert res.returncode == 1
    assert res.stderr.strip().count("\n") == 0 and "job not found" in res.stderr


def test_missing_project_names_the_variable():
    res = subprocess.run(
        [sys.executable, "-m", "stellarmap_cli.main", "jobs", "run", "hva_recalc"],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"},
    )
    assert res.returncode == 1 and "CLOUD_TASKS_PROJECT" in res.stderr
