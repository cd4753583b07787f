"""The whole system over HTTP: search 50 accounts of the simulated network, as the site does (poll
until the answer is no longer 202), and check that every one is COMPLETE with the lineage the
simulator says is true: creator, creation time, the ancestor chain up to genesis, every child."""
from __future__ import annotations

import pytest

from common.domain import GENESIS_ACCOUNT
from tests.e2e.conftest import accounts_of, differences, search, wait_complete

pytestmark = pytest.mark.e2e

# A mix of every shape the pipeline meets; the simulator holds each kind.
KINDS = {"ordinary": 12, "recent": 6, "old": 6, "chain": 6, "deep": 3, "merged": 3, "flags": 3,
         "hostile": 3, "with_assets": 3, "issuer": 2, "directory": 2, "sponsored": 1}


@pytest.fixture(scope="module")
def fifty(local_stack):
    chosen: list[str] = []
    for kind, n in KINDS.items():
        picked = [a["account"] for a in accounts_of(local_stack, kind, n * 3)
                  if a["exists"] and a["account"] != GENESIS_ACCOUNT and a["num_children"] <= 500 and a["account"] not in chosen]
        chosen += picked[:n]
    chosen = list(dict.fromkeys(chosen))[:50]
    assert len(chosen) == 50, f"the simulator offered only {len(chosen)} accounts"
    return chosen


@pytest.mark.timeout(1500)  # above wait_complete's and wait_idle's own limits, so a stall reports its queues
def test_fifty_searched_accounts_complete_with_the_true_lineage(local_stack, fifty):
    first = [search(local_stack, a) for a in fifty]
    assert {status for status, _ in first} <= {200, 202}, [b for s, b in first if s not in (200, 202)][:3]
    assert all(body["account"] == a for a, (_, body) in zip(fifty, first))

    final = wait_complete(local_stack, fifty, timeout=600)
    not_complete = {a: (s, b) for a, (s, b) in final.items() if s != 200 or b.get("status") != "COMPLETE"}
    assert not not_complete, list(not_complete.items())[:3]
    for a, (_, body) in final.items():
        assert body["lineage"]["tree"]["account"] == a and body["lineage"]["account"] == a

    # Ancestors are completed by expansion after the searched account itself: let the queues settle.
    local_stack.wait_idle(600)
    problems = [p for a in fifty for p in differences(local_stack, a)]
    assert not problems, problems[:10]
    # And the search answer, rendered again from the store, carries the same chain.
    status, body = search(local_stack, fifty[0])
    assert status == 200 and body["lineage"]["ancestors"][0]["account"] == GENESIS_ACCOUNT
