"""The lineage body shared by search (200) and stats (/account-lineage), shaped for d3.hierarchy.

Every read is bounded: the ancestor chain is one row per level, and children are one page
of one partition plus one batch read of those children's rows.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from common.domain import GENESIS_ACCOUNT, ChildEdge, LineageRecord, iso
from common.store.port import Store

MAX_ANCESTOR_DEPTH = 256  # far deeper than any real chain; stops a corrupted cycle


def node(account: str, rec: LineageRecord | None, edge: ChildEdge | None = None) -> dict[str, Any]:
    creator = rec.stellar_creator_account if rec else (edge.creator if edge else None)
    created = rec.account_creation_date if rec and rec.account_creation_date else (edge.created_at if edge else None)
    balance = rec.xlm_balance if rec else None
    return {
        "account": account,
        "creator": creator,
        "created_at": iso(created),
        "xlm_balance": format(balance, "f") if isinstance(balance, Decimal) else None,
        "home_domain": rec.home_domain if rec else None,
        "flags": rec.flags if rec else None,
        "assets": rec.assets if rec else None,
        "pipeline_source": rec.pipeline_source if rec else None,
        "status": rec.status if rec else None,
        "tags": list(rec.tags or []) if rec else [],
        "num_children": int(rec.num_child_accounts or 0) if rec else 0,
        # labels (issue 10): Stellar Expert's directory name, what the home domain's stellar.toml says
        "directory_name": rec.directory_name if rec else None,
        "toml_org_name": rec.toml_org_name if rec else None,
        "toml_lists_account": rec.toml_lists_account if rec else None,
    }


def ancestors(store: Store, network: str, rec: LineageRecord) -> list[dict[str, Any]]:
    """Creator chain from genesis down to the direct creator (stops where the chain is not yet known)."""
    chain: list[dict[str, Any]] = []
    seen = {rec.stellar_account}
    creator = rec.stellar_creator_account
    while creator and creator not in seen and len(chain) < MAX_ANCESTOR_DEPTH:
        seen.add(creator)
        parent = store.get_lineage(network, creator)
        chain.append(node(creator, parent))
        if creator == GENESIS_ACCOUNT or parent is None:
            break
        creator = parent.stellar_creator_account
    chain.reverse()
    return chain


def children_nodes(store: Store, network: str, edges: list[ChildEdge]) -> list[dict[str, Any]]:
    recs = store.get_lineages(network, [e.child for e in edges]) if edges else {}
    return [node(e.child, recs.get(e.child), e) for e in edges]


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
    from common.stats import fanout  # lazy: fanout builds nodes with this module

    known_total = int(rec.num_child_accounts or 0)
    # Huge fan-out: its landing view (summary, first page, ancestor chain) is one precomputed row.
    stored = fanout.stored_summary(store, network, account, known_total, limit)
    landing = fanout.landing_page(stored, known_total, cursor, limit)
    if landing is not None:
        kids, next_cursor, chain = landing
    else:
        page = store.get_children_page(network, account, cursor, limit)
        kids, next_cursor = children_nodes(store, network, page.items), page.next_cursor
        chain = stored.get("ancestors") if stored else None  # the view's chain serves every page
    total = max(known_total, len(kids))
    tree = node(account, rec)
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
