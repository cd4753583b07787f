"""The lineage body: ancestors to genesis, one page of children, siblings, d3.hierarchy shape."""
import datetime as dt
from decimal import Decimal

import pytest

from common.domain import GENESIS_ACCOUNT, ChildEdge
from common.lineage_view import lineage_view
from common.store import migrations
from common.store.sqlite import SQLiteStore
from tests.support import random_account

pytestmark = pytest.mark.unit
T0 = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "s.db")
    migrations.migrate(s)
    yield s
    s.close()


def _chain(store, depth):
    chain = [GENESIS_ACCOUNT] + [random_account() for _ in range(depth)]
    store.put_lineage("public", GENESIS_ACCOUNT, status="COMPLETE")
    for parent, child in zip(chain, chain[1:]):
        store.put_lineage("public", child, stellar_creator_account=parent, account_creation_date=T0, status="COMPLETE")
        store.add_children("public", parent, [ChildEdge("public", parent, child, T0, "1")])
    return chain


def test_ancestors_run_from_genesis_to_direct_creator(store):
    chain = _chain(store, 13)
    body = lineage_view(store, "public", chain[-1])
    assert [a["account"] for a in body["ancestors"]] == chain[:-1]
    assert body["tree"]["account"] == chain[-1] and body["tree"]["children"] == []


def test_children_page_and_more_marker(store):
    chain = _chain(store, 2)
    parent = chain[-1]
    kids = sorted(random_account() for _ in range(250))
    store.add_children("public", parent, [ChildEdge("public", parent, k, T0, str(i)) for i, k in enumerate(kids)])
    store.put_lineage("public", parent, num_child_accounts=250)
    store.put_lineage("public", kids[0], xlm_balance=Decimal("1234.5000000"), home_domain="<b>x</b>")
    body = lineage_view(store, "public", parent, limit=100)
    tree = body["tree"]
    assert [k["account"] for k in tree["children"]] == kids[:100]
    assert tree["children"][0]["xlm_balance"] == "1234.5000000" and tree["children"][0]["home_domain"] == "<b>x</b>"
    assert tree["children"][1]["creator"] == parent
    assert tree["more"] == {"count": 150, "next_cursor": kids[99]}
    nxt = lineage_view(store, "public", parent, cursor=kids[99], limit=100)
    assert [k["account"] for k in nxt["tree"]["children"]] == kids[100:200]


def test_siblings_exclude_the_account(store):
    chain = _chain(store, 3)
    extra = random_account()
    store.add_children("public", chain[2], [ChildEdge("public", chain[2], extra, T0, "9")])
    body = lineage_view(store, "public", chain[3], siblings=True)
    assert [s["account"] for s in body["siblings"]["items"]] == [extra]


def test_unknown_account_is_none(store):
    assert lineage_view(store, "public", random_account()) is None


def test_lives_and_the_merge_of_an_account_that_is_gone(store):
    from common.domain import CreationEvent, MergeEvent

    account, c1, c2 = random_account(), random_account(), random_account()
    t1, t2, t3, t4 = (T0 + dt.timedelta(days=d) for d in (0, 30, 90, 200))
    store.add_creation_event(CreationEvent("public", account, t1, "expert:1577836800", c1, source="EXPERT"))
    store.add_merge_event(MergeEvent("public", account, t2, "500", c1, 31_000_000, "HORIZON"))
    store.add_creation_event(CreationEvent("public", account, t3, "600", c2, None, None, "HORIZON", 32_000_000))
    store.add_merge_event(MergeEvent("public", account, t4, "700", c2, 33_000_000, "HORIZON"))
    store.put_lineage("public", account, stellar_creator_account=c1, account_creation_date=t1, status="COMPLETE",
                      creation_ledger=32_000_000, deleted=True, merged_at=t4, merged_into=c2, children_complete=True)
    body = lineage_view(store, "public", account)
    tree = body["tree"]
    assert (tree["creation_ledger"], tree["merged_into"], tree["deleted"]) == (32_000_000, c2, True)
    assert tree["merged_at"] == "2020-07-19T00:00:00Z"
    assert [(life["creator"], life["creation_ledger"], life["merged_into"]) for life in tree["lives"]] == [
        (c1, None, c1), (c2, 32_000_000, c2)]
    assert tree["lives"][0]["source"] == "EXPERT" and tree["lives"][1]["merged_at"] == "2020-07-19T00:00:00Z"
    assert body["completeness"] == {"children_complete": True, "children_found": 0, "reason": None, "message": None,
                                    "visible_from": None}


@pytest.mark.parametrize("gap, words", [
    ("history_pruned", "4 children found; history before 2025-01-01 is not visible without Hubble"),
    ("hubble_budget", "4 children found; children created before 2025-01-01 need Hubble, whose cost guard refused the query"),
    ("hubble_unavailable", "4 children found; children created before 2025-01-01 need Hubble, which could not be used"),
])
def test_incomplete_children_are_said_in_words(store, gap, words):
    account = random_account()
    store.put_lineage("public", account, stellar_creator_account=GENESIS_ACCOUNT, status="COMPLETE", num_child_accounts=4,
                      children_complete=False, children_gap=gap, children_visible_from=dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc))
    got = lineage_view(store, "public", account)["completeness"]
    assert got == {"children_complete": False, "children_found": 4, "reason": gap, "message": words,
                   "visible_from": "2025-01-01T00:00:00Z"}


def test_older_rows_and_running_crawls_are_never_silently_complete(store):
    old, running, unknown = random_account(), random_account(), random_account()
    store.put_lineage("public", old, stellar_creator_account=GENESIS_ACCOUNT, status="COMPLETE", num_child_accounts=1,
                      children_complete=False, pipeline_source="API")  # stored before children_gap existed
    store.put_lineage("public", running, status="PROCESSING", num_child_accounts=7)
    store.put_lineage("public", unknown, status="COMPLETE", children_complete=False, children_gap="history_pruned")
    assert lineage_view(store, "public", old)["completeness"]["message"] == (
        "1 child found; history before Horizon's oldest ledger is not visible without Hubble")
    got = lineage_view(store, "public", running)["completeness"]
    assert got["children_complete"] is False and got["message"] == "the children crawl has not finished: 7 children found so far"
    assert lineage_view(store, "public", unknown)["completeness"]["message"].startswith("creator unknown; 0 children found")


def test_a_child_never_crawled_has_no_made_up_children_count(store):
    chain = _chain(store, 2)
    parent = chain[-1]
    crawled, known_only, none_found = random_account(), random_account(), random_account()
    store.add_children("public", parent, [ChildEdge("public", parent, k, T0, str(i)) for i, k in enumerate(sorted([crawled, known_only, none_found]))])
    store.put_lineage("public", crawled, stellar_creator_account=parent, status="COMPLETE", num_child_accounts=7)
    store.put_lineage("public", none_found, stellar_creator_account=parent, status="COMPLETE", num_child_accounts=0)
    store.put_lineage("public", known_only, stellar_creator_account=parent, account_creation_date=T0)  # stored by the parent's crawl
    counts = {k["account"]: k["num_children"] for k in lineage_view(store, "public", parent)["tree"]["children"]}
    assert counts == {crawled: 7, none_found: 0, known_only: None}
