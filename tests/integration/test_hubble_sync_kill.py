"""SIGKILL during a sync, then the same command again: 0 duplicate and 0 missing edges (issue 15, item 6).

`stellarmap hubble sync --local` runs in a subprocess against the embedded DuckDB Hubble and the
store (SQLite, and the real Cassandra); it is killed while the airdrop's range is being written
(some of its children stored, the range RUNNING). The same command then resumes the same sync:
the ranges already done are not queried again, the interrupted one is written again (idempotent),
and every account agrees with the truth.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.domain import parse_iso
from tests.support import CASSANDRA_PORT, simulated_world
from tests.sync_truth import compare_sync_with_truth

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
AIRDROP = 12_000  # its children are created over about three years
# Year-long ranges of many 100-row pages: a range holding airdrop children takes long enough to be killed inside it.
RANGE_DAYS, PAGE_ROWS = 366, 100


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return simulated_world(tmp_path_factory.mktemp("sync-kill"), 200, AIRDROP, 53)


def _command(store, request, tmp_path, db) -> tuple[list[str], dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HUBBLE_ENGINE": "duckdb", "HUBBLE_SYNC_PAGE_ROWS": str(PAGE_ROWS),
           "HUBBLE_SYNC_RANGE_DAYS": str(RANGE_DAYS)}
    for name in ("STELLARMAP_STACK_FILE", "HUBBLE_SYNC_BUDGET_USD"):
        env.pop(name, None)
    if store.backend == "sqlite":
        where = ["--store", "sqlite", "--sqlite-path", str(store.path)]
    else:
        where = ["--store", "cassandra", "--keyspace", store.keyspace]
        env.update(CASSANDRA_CONTACT_POINTS="127.0.0.1", CASSANDRA_PORT=str(CASSANDRA_PORT))
    argv = [sys.executable, "-m", "stellarmap_cli.main", *where, "hubble", "sync", "--network", "public", "--local", "--duckdb", str(db)]
    return argv, env


def _run_until_killed_mid_range(argv, env, cwd, store, airdrop, first_drop, last_drop, log_path):
    """Start the sync and SIGKILL it while a range holding airdrop children is being written (some
    of the airdrop's children stored already).
    (sync_id, range start) when killed, None when it finished first."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and proc.poll() is None:
                state = store.get_sync_state("public")
                if state is not None and state.status == "RUNNING" and store.get_children_page("public", airdrop, None, 1).items:
                    running = [r for r in store.list_sync_ranges("public", state.sync_id)
                               if r.status == "RUNNING" and r.range_start <= last_drop and first_drop < r.range_end]
                    if running:
                        proc.send_signal(signal.SIGKILL)
                        return state.sync_id, running[0].range_start
                time.sleep(0.01)
            return None
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=60)


def test_a_sync_killed_mid_range_resumes_with_no_duplicate_and_no_missing_edge(world, own_store, request, tmp_path):
    store = own_store
    net, db = world.network, world.duckdb
    airdrop = net.pick("airdrop", limit=1)["accounts"][0]["account"]
    drops = [parse_iso(k["created_at"]) for k in net.truth(airdrop, children_limit=AIRDROP)["children"]["items"]]
    argv, env = _command(store, request, tmp_path, db)
    kills = []
    for attempt in range(3):  # a kill that lands just as its range finishes is tried again (the rerun resumes)
        killed = _run_until_killed_mid_range(argv, env, tmp_path, store, airdrop, min(drops), max(drops), tmp_path / f"run{attempt}.log")
        assert killed is not None, (tmp_path / f"run{attempt}.log").read_text()[-2000:]
        sync_id, range_start = killed
        ranges = store.list_sync_ranges("public", sync_id)
        kills.append(next(r for r in ranges if r.range_start == range_start).status)
        if kills[-1] == "RUNNING":
            break
    assert kills[-1] == "RUNNING", f"never killed mid-range: {kills}"
    stored = sum(1 for _ in store.iter_children("public", airdrop))
    assert 0 < stored < AIRDROP, stored
    done_before = {r.range_start for r in ranges if r.status == "DONE"}

    again = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    state = store.get_sync_state("public")
    assert state.sync_id == sync_id and state.status == "DONE", "the same sync resumed and finished"
    assert state.ranges_done == state.ranges_total == len(ranges)
    assert f"({len(ranges) - len(done_before)} to run)" in again.stderr, "the ranges done before the kill were not run again"
    problems, figures = compare_sync_with_truth(store, "public", net)
    assert problems == [], problems[:20]
    assert figures["stored_edges"] == figures["edges"] and figures["stored_children"] == figures["edges"]
    assert figures["max_children"] == AIRDROP
