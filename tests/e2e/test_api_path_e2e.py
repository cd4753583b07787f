"""The demo's default path over HTTP: no Hubble (HUBBLE_ENGINE=none), so process_account hands
every account to the API pipeline (Horizon + Stellar Expert, simulated, with Horizon's one-year
history window). Creator, creation time and ancestors must equal the truth (Stellar Expert supplies
the creator of accounts older than the window); the children must be exactly those Horizon still
shows (the ones created inside the window; older ones need the Hubble path)."""
from __future__ import annotations

import pytest

from common.domain import GENESIS_ACCOUNT
from tests.e2e.conftest import STACK_OPTIONS, accounts_of, differences, get_json, search, wait_complete
from tests.support import require

pytestmark = pytest.mark.e2e
KINDS = {"ordinary": 4, "old": 3, "recent": 3, "chain": 2, "merged": 2, "flags": 1}


@pytest.fixture(scope="module")
def api_stack(tmp_path_factory):
    from local.stack import LocalStack, StackError

    options = {**STACK_OPTIONS, "hubble": "none"}
    stack = LocalStack(tmp_path_factory.mktemp("api-stack"), **options)
    try:
        stack.start()
    except (StackError, OSError) as exc:
        stack.stop()
        require(False, f"the local stack did not start: {exc}")
    try:
        yield stack
    finally:
        stack.stop()


def test_api_path_lineage_matches_what_horizon_and_expert_can_know(api_stack):
    chosen: list[str] = []
    for kind, n in KINDS.items():
        chosen += [a["account"] for a in accounts_of(api_stack, kind, n * 3)
                   if a["exists"] and a["account"] != GENESIS_ACCOUNT and a["num_children"] <= 300 and a["account"] not in chosen][:n]
    for a in chosen:
        assert search(api_stack, a)[0] in (200, 202)
    final = wait_complete(api_stack, chosen, timeout=600)
    assert all(s == 200 and b["status"] == "COMPLETE" for s, b in final.values()), [b for s, b in final.values() if s != 200][:3]
    # Hubble is disabled, so the Hubble path was never possible: the API path ran alone.
    assert {b["lineage"]["tree"]["pipeline_source"] for _, b in final.values()} == {"API"}
    api_stack.wait_idle(600)
    _, health = get_json(f"{api_stack.simulator_url}/_sim/health")
    window_start = health["networks"]["public"]["history_elder_at"]
    problems = [p for a in chosen for p in differences(api_stack, a, children_since=window_start)]
    assert not problems, problems[:10]


# ---------------------------------------------------------------------------------- recovery
def _faults(stack, rules: dict | None) -> None:
    import json
    import urllib.request

    method, data = ("POST", json.dumps({"rules": rules}).encode()) if rules else ("DELETE", None)
    req = urllib.request.Request(f"{stack.simulator_url}/_sim/faults", data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=30) as r:
        assert r.status == 200


def _fresh(stack, n: int, offset: int) -> list[str]:
    return [a["account"] for a in accounts_of(stack, "ordinary", offset + n * 4)[offset:]
            if a["exists"] and a["num_children"] <= 40][:n]


def _running_tasks(stack) -> int:
    return stack.queue_counts().get("api-fallback", {}).get("running", 0)


def _wait(predicate, timeout: float, what: str) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_a_function_killed_mid_task_still_completes(api_stack):
    accounts = _fresh(api_stack, 3, 100)
    _faults(api_stack, {"horizon.*": {"slow": 1.0, "slow_seconds": 3}})  # every Horizon answer takes 3 s
    try:
        for a in accounts:
            assert search(api_stack, a)[0] == 202
        _wait(lambda: any(search(api_stack, a)[1].get("status") == "PROCESSING" for a in accounts) and _running_tasks(api_stack) > 0,
              120, "an api_fallback task in flight")
        api_stack.kill_function("api_fallback")  # SIGKILL mid-task; restarted on the same port
    finally:
        _faults(api_stack, None)
    # The dispatcher's retry (or, once its claim is stale, reset_stale) finishes every account.
    final = wait_complete(api_stack, accounts, timeout=400)
    assert all(s == 200 for s, _ in final.values()), final
    db = api_stack.task_db()
    try:  # the kill did cut a delivery short: that task needed another attempt
        interrupted = [t for t in db.tasks("api-fallback") if t["name"].split("-")[1] in accounts and t["dispatch_count"] >= 2]
    finally:
        db.close()
    assert interrupted, "no api_fallback delivery was interrupted by the kill"
    api_stack.wait_idle(300)
    _, health = get_json(f"{api_stack.simulator_url}/_sim/health")
    problems = [p for a in accounts for p in differences(api_stack, a, children_since=health["networks"]["public"]["history_elder_at"])]
    assert not problems, problems


def test_the_dispatcher_restarts_with_tasks_queued_and_none_is_lost(api_stack):
    first, second = _fresh(api_stack, 4, 200), _fresh(api_stack, 4, 300)
    _faults(api_stack, {"horizon.*": {"slow": 1.0, "slow_seconds": 2}})
    try:
        for a in first:
            assert search(api_stack, a)[0] == 202
        _wait(lambda: _running_tasks(api_stack) > 0, 120, "a task in flight")
        api_stack.kill_dispatcher()  # SIGKILL with tasks queued and running
        for a in second:  # searches go on while no dispatcher runs: their tasks wait in SQLite
            assert search(api_stack, a)[0] == 202
        counts = api_stack.queue_counts()
        assert counts["lineage"].get("queued", 0) >= len(second), counts
    finally:
        _faults(api_stack, None)
    api_stack.start_dispatcher()
    final = wait_complete(api_stack, first + second, timeout=400)
    assert all(s == 200 for s, _ in final.values()), final
    api_stack.wait_idle(300)
    db = api_stack.task_db()
    try:
        assert {t["state"] for t in db.tasks()} <= {"done"}, [t for t in db.tasks() if t["state"] != "done"][:3]
    finally:
        db.close()
