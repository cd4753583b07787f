"""One local stack (local/stack.py) shared by the e2e tests of a session, plus HTTP helpers.

Lineage runs the production path: the Hubble path on the simulator's Hubble export (embedded
DuckDB, HUBBLE_ENGINE=duckdb) with the API pipeline for enrichment and fallbacks; the API-only
path (the demo's default) has its own module-scoped stack in test_api_path_e2e.py.
The simulated network is small and its upstream budgets are generous (the limiters are on, but
never the bottleneck), the api-fallback queue may run a few tasks at once, retries back off from
one second, and reset_stale runs every 10 s with a 1-minute PROCESSING limit, so the recovery
tests finish in minutes. In CI a stack that cannot start, or a function that is missing, fails.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.support import require

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))

STACK_OPTIONS = dict(
    hubble="duckdb",  # the production path: Hubble (the simulator's export, embedded) + the API for enrichment
    accounts=1500,
    seed=7,
    sim_options={"rate_limits": True, "airdrop_children": 2000, "horizon_rate_per_min": 60000, "expert_rate_per_min": 30000},
    queue_limits={
        "lineage": {"min_backoff_s": 1, "max_backoff_s": 10},
        "api-fallback": {"max_concurrent_dispatches": 4, "max_burst_size": 20, "min_backoff_s": 1, "max_backoff_s": 10},
    },
    schedule_seconds={"reset_stale": 10, "hva_recalc": 600},
    pipeline_config={"stale_processing_minutes": 1},
    search_rate_per_min=1_000_000,
    search_burst=100_000,
)


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory):
    try:
        from local.stack import LocalStack, StackError
    except ImportError as exc:
        require(False, f"the local stack (local/stack.py): {exc}")
    stack = LocalStack(tmp_path_factory.mktemp("e2e-stack"), **STACK_OPTIONS)
    try:
        stack.start()
    except (StackError, OSError) as exc:
        stack.stop()
        require(False, f"the local stack did not start: {exc}")
    try:
        functions = {k: v for k, v in stack.missing.items() if k != "site"}
        require(not functions, f"functions the e2e tests need are missing: {functions}")
        yield stack
    finally:
        stack.stop()


def get_json(url: str, timeout: float = 60) -> tuple[int, dict]:
    try:
        with _DIRECT.open(url, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def search(stack, account: str, network: str = "public") -> tuple[int, dict]:
    return get_json(f"{stack.urls['search']}/search?" + urllib.parse.urlencode({"account": account, "network": network}))


def accounts_of(stack, kind: str, limit: int, network: str = "public") -> list[dict]:
    status, body = get_json(f"{stack.simulator_url}/_sim/accounts/{network}?kind={kind}&limit={limit}")
    assert status == 200, body
    return body["accounts"]


def truth(stack, account: str, network: str = "public") -> dict:
    """The simulator's ground truth of one account, with every child."""
    base = f"{stack.simulator_url}/_sim/truth/{network}/{account}?children_limit=10000"
    status, t = get_json(base)
    assert status == 200, t
    children = list(t["children"]["items"])
    cursor = t["children"].get("next_cursor")
    while cursor:
        _, page = get_json(f"{base}&children_cursor={cursor}")
        children += page["children"]["items"]
        cursor = page["children"].get("next_cursor")
    t["all_children"] = children
    return t


def lineage(stack, account: str, network: str = "public") -> dict:
    """/account-lineage with every page of children (stats, over HTTP)."""
    q = {"account": account, "network": network, "limit": 1000}
    status, body = get_json(f"{stack.urls['stats']}/account-lineage?" + urllib.parse.urlencode(q))
    assert status == 200, body
    children = list(body["tree"]["children"])
    cursor = body["children_page"]["next_cursor"]
    while cursor:
        _, page = get_json(f"{stack.urls['stats']}/account-lineage?" + urllib.parse.urlencode({**q, "cursor": cursor}))
        children += page["tree"]["children"]
        cursor = page["children_page"]["next_cursor"]
    body["all_children"] = children
    return body


def wait_complete(stack, accounts: list[str], timeout: float, network: str = "public") -> dict[str, tuple[int, dict]]:
    """Poll search (as the site does) until every account answers something other than 202."""
    final: dict[str, tuple[int, dict]] = {}
    deadline = time.monotonic() + timeout
    pending = list(accounts)
    while pending:
        for a in list(pending):
            status, body = search(stack, a, network)
            if status != 202:
                final[a] = (status, body)
                pending.remove(a)
        if pending:
            if time.monotonic() > deadline:
                pytest.fail(f"{len(pending)} account(s) still not done after {timeout:.0f} s, e.g. {pending[:3]}; queues: {stack.queue_counts()}")
            time.sleep(1.0)
    return final


def differences(stack, account: str, network: str = "public", children_since: str | None = None) -> list[str]:
    """What the stats function serves for the account, against the simulator's truth.

    children_since (ISO time): only children created from then on are expected (the API path sees
    what Horizon's history window holds; older children need Hubble)."""
    t = truth(stack, account, network)
    got = lineage(stack, account, network)
    tree = got["tree"]
    problems = []
    if tree["status"] != "COMPLETE":
        problems.append(f"status {tree['status']}")
    if tree["creator"] != t["creator"]:
        problems.append(f"creator {tree['creator']} != truth {t['creator']}")
    if t["created_at"] and (tree["created_at"] or "")[:19] != t["created_at"][:19]:
        problems.append(f"created_at {tree['created_at']} != truth {t['created_at']}")
    chain = [n["account"] for n in got["ancestors"]]
    if chain != t["ancestors"]:
        problems.append(f"ancestors {len(chain)} hops != truth {len(t['ancestors'])} hops")
    mine = [c["account"] for c in got["all_children"]]
    if len(mine) != len(set(mine)):
        problems.append("duplicate children")
    want = {c["account"] for c in t["all_children"] if children_since is None or c["created_at"] >= children_since}
    if set(mine) != want:
        problems.append(f"children: {len(want - set(mine))} missing, {len(set(mine) - want)} extra of {len(want)}")
    return [f"{account}: {p}" for p in problems]
