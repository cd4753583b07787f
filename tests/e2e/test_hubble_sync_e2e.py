"""The network-wide sync on the local stack, as an operator runs it (issue 15): `stellarmap hubble
sync` plans through the queue, the dispatcher delivers every range to the hubble_sync function over
HTTP, and then a search over HTTP is answered from the store at once (HUBBLE_SYNC), with every
account equal to the simulator's truth."""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse

import pytest

from common.store.sqlite import SQLiteStore
from local.simulator.network import Network, NetworkConfig
from tests.e2e.conftest import get_json
from tests.support import require
from tests.sync_truth import compare_sync_with_truth

pytestmark = pytest.mark.e2e

OPTIONS = dict(hubble="duckdb", accounts=300, seed=7, sim_options={"airdrop_children": 1_000, "rate_limits": False})


def test_stellarmap_hubble_sync_through_the_stack_then_search_answers_at_once(tmp_path):
    from local.stack import LocalStack, StackError

    stack = LocalStack(tmp_path / "stack", **OPTIONS)
    try:
        stack.start()
    except (StackError, OSError) as exc:
        stack.stop()
        require(False, f"the local stack did not start: {exc}")
    try:
        assert "hubble_sync" not in stack.missing
        urls = stack.write_urls_file(tmp_path / "urls.json")
        out = subprocess.run([sys.executable, "-m", "stellarmap_cli.main", "--stack-file", str(urls), "hubble", "sync",
                              "--network", "public", "--json"], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        planned = json.loads(out.stdout)
        assert planned["enqueued"] == planned["ranges"] and "queued" in out.stderr
        stack.wait_idle(600)
        store = SQLiteStore(stack.settings.sqlite_path)
        state = store.get_sync_state("public")
        assert (state.status, state.ranges_done, state.sync_id) == ("DONE", planned["ranges"], planned["sync_id"])
        assert stack.queue_counts().get("hubble-sync") == {"done": planned["ranges"] + 1}
        net = Network(NetworkConfig(accounts=300, airdrop_children=1_000, seed=7))
        problems, figures = compare_sync_with_truth(store, "public", net)
        assert problems == [], problems[:20]
        account = net.pick("airdrop", limit=1)["accounts"][0]["account"]
        status, body = get_json(f"{stack.urls['search']}/search?" + urllib.parse.urlencode({"account": account, "network": "public"}))
        assert status == 200 and body["status"] == "COMPLETE" and body["lineage"]["tree"]["pipeline_source"] == "HUBBLE_SYNC"
        assert stack.queue_counts().get("lineage", {}) == {}, "no per-account task"
    finally:
        stack.stop()
