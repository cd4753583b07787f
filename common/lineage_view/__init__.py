"""The lineage body shared by search (200) and stats (/account-lineage), shaped for d3.hierarchy.

Every read is bounded: the ancestor chain is one row per level, and children are one page
of one partition plus one batch read of those children's rows.
"""
from __future__ import annotations

from typing import Any

from common.domain import LineageRecord, iso
from common.lineage_view import fanout
from common.lineage_view.nodes import (  # noqa: F401 - the node builders, used by export and the workers
    GAP_WORDS,
    MAX_ANCESTOR_DEPTH,
    ancestors,
    children_nodes,
    completeness,
    lives,
    node,
)
from common.store.port import Store

def lineage_view(
    store: Store,
    network: str,
    account: str,
    cursor: str | None = None,
    limit: int = 100,
    siblings: bool = False,
    siblings_cursor: str | None = None,
) -> dict[str, Any] | None:
    """The /account-lineage body, or None when the account is unknown to the store."""
    rec = store.get_lineage(network, account)
    if rec is None:
        return None
    known_total = int(rec.num_child_accounts or 0)
    # Huge fan-out: its landing view (summary, first page, ancestor chain) is one precomputed row.
    stored = fanout.stored_summary(store, network, account, known_total, limit)
    landing = fanout.landing_page(stored, known_total, cursor, limit)
    if landing is not None:
        kids, next_cursor, chain = landing
        chain = fanout.settled_chain(store, network, rec, chain)
    else:
        page = store.get_children_page(network, account, cursor, limit)
        kids, next_cursor = children_nodes(store, network, page.items), page.next_cursor
        chain = fanout.settled_chain(store, network, rec, stored.get("ancestors")) if stored else None
    total = max(known_total, len(kids))
    tree = node(account, rec)
    tree["lives"] = lives(store, network, account)
    tree["children"] = kids
    remaining = total - len(kids) if cursor is None else None
    tree["more"] = {"count": remaining, "next_cursor": next_cursor} if next_cursor else None
    body: dict[str, Any] = {
        "account": account,
        "network": network,
        "ancestors": chain if chain is not None else ancestors(store, network, rec),
        "tree": tree,
        "children_page": {
            "limit": limit,
            "cursor": cursor,
            "next_cursor": next_cursor,
            "returned": len(kids),
            "total": total,
            "as_of": landing_as_of(stored) if landing is not None else None,
        },
        "summary": fanout.summary_json(stored, total, limit),
        "completeness": completeness(rec),
    }
    if siblings:
        body["siblings"] = siblings_page(store, network, rec, siblings_cursor, limit)
    return body


def landing_as_of(stored: dict[str, Any] | None) -> str | None:
    """When a precomputed first page was read (None: the page was read live)."""
    return iso(stored.get("landing_at")) if stored else None


def siblings_page(store: Store, network: str, rec: LineageRecord, cursor: str | None, limit: int) -> dict[str, Any]:
    """Other children of the account's creator, one page."""
    if not rec.stellar_creator_account:
        return {"items": [], "next_cursor": None}
    page = store.get_children_page(network, rec.stellar_creator_account, cursor, limit)
    edges = [e for e in page.items if e.child != rec.stellar_account]
    return {"items": children_nodes(store, network, edges), "next_cursor": page.next_cursor}
