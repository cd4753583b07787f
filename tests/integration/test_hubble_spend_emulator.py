"""What the spend ledger charges when a BigQuery job's outcome is unclear, through the real client.

google-cloud-bigquery talks to the goccy BigQuery emulator through a small fault-injecting HTTP
proxy (real HTTP both ways): it passes chosen requests on and then drops the connection without
an answer, or holds the answer back for longer than the client's timeout, or answers a submit
with BigQuery's 403 quotaExceeded; it logs every request. The emulator runs each query inside
jobs.insert, so the job is DONE when the submit answers: the faults are made on what follows,
the result wait (getQueryResults: the connection is lost), the job lookup and the cancel (they
time out). The guard then:
- looks the job up by the id it was submitted under, and settles it from its statistics;
- when the lookup times out, cancels the job (jobs.cancel answers with the job);
- when the cancel times out too, keeps the reservation charged at maximum_bytes_billed (UNKNOWN)
  until a later reconcile reads the job's statistics;
- releases a reservation whose only submit was refused (the job never existed).
"""
from __future__ import annotations

import datetime as dt
import http.client
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from common.clock import SettableClock
from common.config import PipelineConfig
from common.hubble.bigquery import BigQueryHubble
from common.hubble.cost_guard import CostGuard, Limits, job_id_for, month_of
from common.hubble.port import HubbleJobFailed, HubbleNotRun, HubbleOutcomeUnknown, HubbleQuery, QueryParam
from common.store import migrations
from common.store.sqlite import SQLiteStore
from tests.support import require

pytestmark = [pytest.mark.integration, pytest.mark.emulator]

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 2, 10, 12, tzinfo=UTC)
MONTH = month_of(NOW)
PROJECT = "spend-test"
HOLD_S = 8.0  # longer than every client timeout below
TIMEOUT_S = 3.0


class FaultProxy:
    """Forwards every request to the emulator. For (method, path regex) in `drop` the connection is
    closed once the emulator has answered (the answer is lost); in `hold`, the answer comes after
    HOLD_S. `refuse_submit` answers a non-dry-run jobs.insert with BigQuery's 403 quotaExceeded
    without forwarding it."""

    def __init__(self, target: str):
        self.target = target.replace("http://", "")
        self.hold: list[tuple[str, str]] = []
        self.drop: list[tuple[str, str]] = []
        self.refuse_submit = False
        self.log: list[tuple[str, str]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.log.append((self.command, self.path))
                if proxy.refuse_submit and self.command == "POST" and re.search(r"/jobs\?", self.path) and b'"dryRun": true' not in body \
                        and b'"dryRun":true' not in body:
                    return self._answer(403, json.dumps({"error": {"code": 403, "message": "Quota exceeded: too many queries",
                                                                  "errors": [{"reason": "quotaExceeded", "message": "Quota exceeded"}]}}).encode())
                held = any(self.command == m and re.search(p, self.path) for m, p in proxy.hold)
                dropped = any(self.command == m and re.search(p, self.path) for m, p in proxy.drop)
                conn = http.client.HTTPConnection(proxy.target, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                if dropped:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if held:
                    time.sleep(HOLD_S)
                self._answer(resp.status, data)

            def _answer(self, status: int, data: bytes):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json; charset=UTF-8")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting: that is the point

            do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def requests(self, method: str, pattern: str) -> list[str]:
        return [p for m, p in self.log if m == method and re.search(pattern, p)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def emulator():
    try:
        from local.emulators import BigQueryEmulator, is_built
    except ImportError as exc:
        require(False, f"local/emulators.py ({exc})")
    require(is_built("bigquery-emulator"), "the BigQuery emulator binary (.cache/bin/bigquery-emulator): run local/emulators.sh build")
    with BigQueryEmulator(project=PROJECT) as bq:
        yield bq


@pytest.fixture
def proxy(emulator):
    p = FaultProxy(emulator.url)
    yield p
    p.close()


class RecordingBigQuery(BigQueryHubble):
    """The real adapter, noting the job ids it is asked to run under."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.job_ids: list[str] = []

    def run(self, query, max_bytes_billed=None, job_id=None):
        self.job_ids.append(job_id)
        return super().run(query, max_bytes_billed, job_id)


@pytest.fixture
def hubble(proxy):
    engine = RecordingBigQuery(PROJECT, {}, endpoint=proxy.url, deadline_s=TIMEOUT_S, result_timeout_s=TIMEOUT_S)
    yield engine
    engine.close()


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "store.sqlite3")
    migrations.migrate(s)
    yield s
    s.close()


@pytest.fixture
def clock():
    return SettableClock(NOW)


def query() -> HubbleQuery:
    return HubbleQuery("SELECT @n AS n, 'stellar' AS word", (QueryParam("n", "INT64", 7),), "lineage", (f"{PROJECT}.d.t",))


def guard(hubble, store, clock) -> CostGuard:
    return CostGuard(hubble, store, clock, Limits.from_config(PipelineConfig.from_stored({})))


def only_reservation(store, hubble) -> dict:
    [job_id] = hubble.job_ids
    return store.get_spend_reservation(MONTH, job_id[len("stellarmap_"):])


def test_a_query_runs_under_its_reservation_job_id(hubble, store, clock, proxy):
    out = guard(hubble, store, clock).run(query())
    assert out.result.rows == [{"n": 7, "word": "stellar"}]
    r = only_reservation(store, hubble)
    assert r["state"] == "SETTLED" and out.result.job_id == r["job_id"] == job_id_for(r["reservation_id"])
    assert proxy.requests("GET", rf"/jobs/{r['job_id']}\b") or proxy.requests("GET", rf"/queries/{r['job_id']}\b")
    assert store.month_spend_micro_usd(MONTH) == out.cost_micro_usd > 0


def test_a_result_wait_that_loses_its_connection_is_settled_from_the_job(hubble, store, clock, proxy):
    proxy.drop = [("GET", r"/queries/")]  # the connection is lost while waiting for the results
    with pytest.raises(HubbleJobFailed) as info:
        guard(hubble, store, clock).run(query())
    r = only_reservation(store, hubble)
    assert info.value.job_id == r["job_id"] and "finished" in str(info.value)
    assert proxy.requests("GET", rf"/jobs/{r['job_id']}\b"), "the job was looked up by its id"
    assert not proxy.requests("POST", r"/cancel"), "a finished job needs no cancel"
    assert r["state"] == "SETTLED" and r["charged_micro_usd"] == Limits.from_config(PipelineConfig.from_stored({})).cost_micro_usd(info.value.bytes_billed)
    assert store.month_spend_micro_usd(MONTH) == r["charged_micro_usd"]
    [entry] = store.get_spend_ledger(MONTH, 10)
    assert entry["query_id"] == r["job_id"]


def test_a_timed_out_job_that_cannot_be_looked_up_is_cancelled(hubble, store, clock, proxy):
    proxy.drop = [("GET", r"/queries/")]
    proxy.hold = [("GET", r"/jobs/stellarmap_")]
    with pytest.raises(HubbleJobFailed) as info:
        guard(hubble, store, clock).run(query())
    r = only_reservation(store, hubble)
    assert proxy.requests("POST", rf"/jobs/{r['job_id']}/cancel"), "the timed-out job was cancelled"
    assert "had finished" in str(info.value)  # the emulator's answer to the cancel: the job, DONE
    assert r["state"] == "SETTLED" and store.month_spend_micro_usd(MONTH) == r["charged_micro_usd"]


def test_an_unknown_outcome_is_charged_in_full_then_reconciled_from_the_job(hubble, store, clock, proxy):
    proxy.drop = [("GET", r"/queries/")]
    proxy.hold = [("GET", r"/jobs/stellarmap_"), ("POST", r"/cancel")]
    g = guard(hubble, store, clock)
    with pytest.raises(HubbleOutcomeUnknown) as info:
        g.run(query())
    r = only_reservation(store, hubble)
    assert proxy.requests("POST", rf"/jobs/{r['job_id']}/cancel"), "a cancel was asked for"
    assert info.value.job_id == r["job_id"]
    assert r["state"] == "UNKNOWN" and r["charged_micro_usd"] == r["reserved_micro_usd"] > 0
    assert store.month_spend_micro_usd(MONTH) == r["reserved_micro_usd"], "charged at maximum_bytes_billed"
    assert store.get_spend_ledger(MONTH, 10) == []
    # BigQuery answers again; a later guard use, past the grace period, reads the job's statistics
    proxy.drop, proxy.hold = [], []
    clock.set(NOW + dt.timedelta(minutes=20))
    report = guard(hubble, store, clock).reconcile()
    assert report.settled == 1
    settled = store.get_spend_reservation(MONTH, r["reservation_id"])
    assert settled["state"] == "SETTLED" and settled["charged_micro_usd"] <= r["reserved_micro_usd"]
    [entry] = store.get_spend_ledger(MONTH, 10)
    assert entry["query_id"] == r["job_id"] and store.month_spend_micro_usd(MONTH) == entry["cost_micro_usd"]


def test_a_refused_submit_gives_the_reservation_back(hubble, store, clock, proxy):
    proxy.refuse_submit = True
    with pytest.raises(HubbleNotRun):
        guard(hubble, store, clock).run(query())
    assert len(proxy.requests("POST", r"/jobs\?")) == 2, "one dry run, one refused submit (never retried blind)"
    assert only_reservation(store, hubble)["state"] == "RELEASED"
    assert store.month_spend_micro_usd(MONTH) == 0


def test_job_status_and_cancel_of_a_job_bigquery_never_had(hubble):
    assert hubble.job_status("stellarmap_never_submitted").state == "NOT_FOUND"
    assert hubble.cancel("stellarmap_never_submitted").state == "NOT_FOUND"
