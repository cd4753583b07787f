"""Store contract, CreationEventsPort and ChildrenPort: every life, merges, ledger anchors, children pages.

Runs on the embedded SQLite and on a real Cassandra 5.0 (the `store` fixture)."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from common.domain import (
    ChildEdge,
    CreationEvent,
    InvalidInput,
    MergeEvent,
)
from tests.support import random_account

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=dt.timezone.utc)


def test_creation_events_keep_every_recreation(store):
    acct, c1, c2 = random_account(), random_account(), random_account()
    e1 = CreationEvent("public", acct, T0, "100", c1, Decimal("1"), "h1", "HORIZON")
    e2 = CreationEvent("public", acct, T0 + dt.timedelta(days=30), "200", c2, Decimal("2.5"), "h2", "HORIZON")
    store.add_creation_event(e2)
    store.add_creation_event(e1)
    store.add_creation_event(e1)  # idempotent
    events = store.get_creation_events("public", acct)
    assert [e.creator for e in events] == [c1, c2]
    assert events[1].starting_balance == Decimal("2.5")


def test_every_life_is_kept_creations_merges_and_ledgers(store):
    acct, c1, c2 = random_account(), random_account(), random_account()
    store.add_creation_event(CreationEvent("public", acct, T0, "100", c1, None, None, "HORIZON", ledger=37_362_540))
    store.add_creation_event(CreationEvent("public", acct, T0 + dt.timedelta(days=90), "expert:1", c2, source="EXPERT"))
    m2 = MergeEvent("public", acct, T0 + dt.timedelta(days=200), "900", c2, 40_000_000, "BIGQUERY")
    m1 = MergeEvent("public", acct, T0 + dt.timedelta(days=30), "500", c1, 37_800_000, "HORIZON")
    for event in (m2, m1, m1):  # out of order, one twice: idempotent, oldest first
        store.add_merge_event(event)
    events = store.get_creation_events("public", acct)
    assert [(e.creator, e.ledger) for e in events] == [(c1, 37_362_540), (c2, None)]
    assert store.get_merge_events("public", acct) == [m1, m2]
    assert store.get_merge_events("public", random_account()) == []
    store.put_lineage("public", acct, creation_ledger=40_000_001, merged_at=m2.merged_at, merged_into=c2, deleted=True,
                      children_gap="history_pruned", children_visible_from=T0)
    rec = store.get_lineage("public", acct)
    assert (rec.creation_ledger, rec.merged_at, rec.merged_into, rec.deleted) == (40_000_001, m2.merged_at, c2, True)
    assert (rec.children_gap, rec.children_visible_from) == ("history_pruned", T0)
    with pytest.raises(InvalidInput):
        store.add_merge_event(MergeEvent("public", acct, T0, "1", "not-an-account"))


def test_ledger_anchors_keep_one_point_per_bucket(store):
    network = "testnet"
    base = 16_000 * (1 << 17)  # buckets no other test uses (below 2^31)
    assert all(ledger < base for ledger, _ in store.get_ledger_anchors(network))
    store.put_ledger_anchors(network, [(base + 5, T0), (base + 7, T0 + dt.timedelta(seconds=10)),
                                       (base + (1 << 17), T0 + dt.timedelta(days=8))])
    points = [p for p in store.get_ledger_anchors(network) if p[0] >= base]
    assert points == [(base + 7, T0 + dt.timedelta(seconds=10)), (base + (1 << 17), T0 + dt.timedelta(days=8))]
    with pytest.raises(InvalidInput):
        store.put_ledger_anchors(network, [(0, T0)])


def test_children_paging_never_skips_or_repeats(store):
    creator = random_account()
    children = [ChildEdge("public", creator, random_account(), T0, str(i), Decimal("1")) for i in range(2500)]
    store.add_children("public", creator, children[:1500])
    store.add_children("public", creator, children[1000:])  # overlap: must not duplicate
    seen, cursor, pages = [], None, 0
    while True:
        page = store.get_children_page("public", creator, cursor, 1000)
        seen.extend(c.child for c in page.items)
        pages += 1
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert pages == 3
    assert len(seen) == 2500 and len(set(seen)) == 2500
    assert seen == sorted(c.child for c in children)
    assert list(c.child for c in store.iter_children("public", creator, 700)) == seen
    assert store.get_children_page("testnet", creator).items == []
