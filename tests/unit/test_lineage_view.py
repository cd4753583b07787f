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
