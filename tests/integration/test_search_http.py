"""The search function as it runs: functions-framework serving functions/search/main.py over HTTP,
against the embedded SQLite store and the real Cassandra, with the local persistent queue.

- 100 concurrent identical searches of a new account enqueue exactly one task;
- every kind of bad input is a 400 that writes nothing, and a secret seed appears neither in an
  answer nor in the function's log;
- a complete account is answered from the store.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import json
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from stellar_sdk import Keypair

from common.bootstrap import Container
from common.clock import SystemClock
from common.domain import GENESIS_ACCOUNT
from common.queue.sqlite_queue import TaskDB
from local.processes import serve_function
from tests.support import ROOT, random_account

pytestmark = pytest.mark.integration
SITE = "http://127.0.0.1:8080"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def call(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict, dict]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with _DIRECT.open(req, timeout=60) as r:
            return r.status, json.loads(r.read() or b"null"), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null"), dict(e.headers)


@contextlib.contextmanager
def search_function(env: dict, tmp_path: Path, target: str = "search"):
    """functions/<target>/main.py under functions-framework (search unless told), on a free port."""
    log_path = tmp_path / f"{target}.log"
    full_env = {**os.environ, **env, "PYTHONPATH": str(ROOT), "INTERNAL_TOKEN": "t", "CORS_ORIGINS": SITE,
                "SEARCH_RATE_PER_MIN": "1000000", "SEARCH_BURST": "100000", "LOCAL_DISPATCHER_DB": str(tmp_path / "tasks.sqlite3"),
                "STELLARMAP_QUEUE": "local", "HUBBLE_ENGINE": "none", "NO_PROXY": "127.0.0.1,localhost"}
    with serve_function(target, full_env, log_path) as base:
        yield base, log_path


@pytest.fixture
def served(store, tmp_path, request):
    """(base URL, log path, store, task db) for a search function on the store under test."""
    if store.backend == "sqlite":
        env = {"STELLARMAP_STORE": "sqlite", "STELLARMAP_SQLITE_PATH": store.path}
    else:
        env = {"STELLARMAP_STORE": "cassandra", "CASSANDRA_CONTACT_POINTS": "127.0.0.1",
               "CASSANDRA_PORT": str(store.settings.cassandra_port), "CASSANDRA_KEYSPACE": store.keyspace}
    with search_function(env, tmp_path) as (base, log_path):
        db = TaskDB(tmp_path / "tasks.sqlite3")
        yield base, log_path, store, db
        db.close()


def rows(store) -> tuple[int, int]:
    return len(list(store.scan("search_cache", None, 100_000))), len(list(store.scan("account_lineage", None, 100_000)))


def test_100_concurrent_identical_searches_enqueue_once(served):
    base, _, store, db = served
    account = random_account()
    url = f"{base}/search?" + urllib.parse.urlencode({"account": account, "network": "public"})
    barrier = threading.Barrier(100)

    def one(_):
        barrier.wait()
        return call(url)[:2]

    with concurrent.futures.ThreadPoolExecutor(100) as pool:
        answers = list(pool.map(one, range(100)))
    assert {status for status, _ in answers} == {202}, answers[:3]
    assert {body["status"] for _, body in answers} == {"PENDING"}
    tasks = db.tasks()
    assert [(t["queue"], t["name"]) for t in tasks] == [("lineage", f"public-{account}-lineage-0")]
    assert store.get_lineage("public", account).status == "PENDING"
    assert store.get_search("public", account).status == "PENDING"


def test_bad_input_over_http_is_400_writes_nothing_and_a_seed_is_never_logged(served):
    base, log_path, store, db = served
    kp = Keypair.random()
    rows_before = rows(store)
    cases = [kp.secret, "C" + random_account()[1:], "G" + "A" * 55, "", " ", "G" * 10_240,
             "' OR '1'='1", "<script>alert(1)</script>", "%00", "GA\u202eBC"]
    for raw in cases:
        status, body, headers = call(f"{base}/search?" + urllib.parse.urlencode({"account": raw}), headers={"Origin": SITE})
        assert status == 400 and set(body["error"]) >= {"code", "message", "field"}, (raw[:40], body)
        assert headers["Content-Type"].startswith("application/json") and headers.get("Access-Control-Allow-Origin") == SITE
        if raw.strip():
            assert raw.strip() not in json.dumps(body, ensure_ascii=False)
    status, body, _ = call(f"{base}/search", "POST", json.dumps({"account": kp.secret}).encode(), {"Content-Type": "application/json"})
    assert status == 400 and body["error"]["code"] == "wrong_key_kind"
    assert db.tasks() == [] and rows(store) == rows_before
    assert kp.secret not in log_path.read_text(errors="replace")


def test_a_complete_account_is_answered_from_the_store(served):
    base, _, store, db = served
    account = random_account()
    now = dt.datetime.now(dt.timezone.utc)
    store.put_lineage("public", account, stellar_creator_account=GENESIS_ACCOUNT, status="COMPLETE", pipeline_source="API",
                      updated_at=now, last_pipeline_attempt=now, account_creation_date=now - dt.timedelta(days=1))
    status, body, _ = call(f"{base}/?account={account}&network=public")
    assert status == 200 and body["status"] == "COMPLETE" and body["lineage"]["tree"]["account"] == account
    assert body["lineage"]["ancestors"][-1]["account"] == GENESIS_ACCOUNT
    assert call(f"{base}/?account={account}&network=public")[1] == body  # the cached answer
    assert db.tasks() == []


def test_in_process_concurrency_on_the_store_enqueues_once(store, tmp_path):
    """The same race without HTTP: 50 threads, each with its own container (connections), one task."""
    from common.config import Settings
    from common.handlers.search import search
    from common.queue.sqlite_queue import SQLiteTaskQueue

    account = random_account()
    settings = Settings.from_env(env={}, extra={"SEARCH_RATE_PER_MIN": "100000"})
    barrier = threading.Barrier(50)
    statuses = []

    def one(_):
        from flask import Flask

        queue = SQLiteTaskQueue(tmp_path / "tasks.sqlite3")
        c = Container(settings, SystemClock(), store=store, queue=queue)
        with Flask("x").app_context():
            barrier.wait()
            statuses.append(search(c, "testnet", account).status_code)
        queue.close()

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        list(pool.map(one, range(50)))
    assert set(statuses) == {202}
    assert [t["name"] for t in TaskDB(tmp_path / "tasks.sqlite3").tasks()] == [f"testnet-{account}-lineage-0"]
