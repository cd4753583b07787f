"""Lineage nodes: one account as a d3.hierarchy node, its lives, completeness, ancestors and a page of children.

Every read is bounded: the ancestor chain is one row per level, children one batch read.
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
        # None: not counted yet (known as a child from a crawl or the sync, never crawled itself), never a made-up 0
        "num_children": int(rec.num_child_accounts) if rec and rec.num_child_accounts is not None else None,
        # labels (issue 10): Stellar Expert's directory name, what the home domain's stellar.toml says
        "directory_name": rec.directory_name if rec else None,
        "toml_org_name": rec.toml_org_name if rec else None,
        "toml_lists_account": rec.toml_lists_account if rec else None,
        # lives (issue 13): the current life's ledger, and the last merge of an account that is gone
        "creation_ledger": rec.creation_ledger if rec else None,
        "merged_at": iso(rec.merged_at) if rec else None,
        "merged_into": rec.merged_into if rec else None,
        "deleted": bool(rec.deleted) if rec else False,
    }


def lives(store: Store, network: str, account: str) -> list[dict[str, Any]]:
    """Every life of the account, oldest first: each creation with the merge that ended it (if any)."""
    events = store.get_creation_events(network, account)
    merges = store.get_merge_events(network, account)
    out = []
    for i, event in enumerate(events):
        end = events[i + 1].created_at if i + 1 < len(events) else None
        merge = next((m for m in merges if m.merged_at >= event.created_at and (end is None or m.merged_at <= end)), None)
        out.append({"creator": event.creator, "created_at": iso(event.created_at), "creation_ledger": event.ledger,
                    "operation_id": event.operation_id, "source": event.source,
                    "merged_at": iso(merge.merged_at) if merge else None, "merged_into": merge.merged_into if merge else None})
    return out


GAP_WORDS = {
    "history_pruned": "history before {when} is not visible without Hubble",
    "hubble_budget": "children created before {when} need Hubble, whose cost guard refused the query",
    "hubble_unavailable": "children created before {when} need Hubble, which could not be used",
    "children_cap": "the crawl stopped at the children_max cap, so not every child is listed",
}


def completeness(rec: LineageRecord) -> dict[str, Any]:
    """Is the children list complete, and if not, why, in words (docs/design.md)."""
    found = int(rec.num_child_accounts or 0)
    noun = "child" if found == 1 else "children"
    reason = rec.children_gap
    if reason is None and rec.children_complete is False:  # written before the reason was stored
        reason = "children_cap" if rec.pipeline_source == "BIGQUERY" else "history_pruned"
    if rec.children_complete is None and reason is None:
        done = rec.status == "COMPLETE"
        message = None if done else f"the children crawl has not finished: {found} {noun} found so far"
        return {"children_complete": done, "children_found": found, "reason": None, "message": message,
                "visible_from": None}
    if reason is None:
        return {"children_complete": True, "children_found": found, "reason": None, "message": None, "visible_from": None}
    when = f"{rec.children_visible_from:%Y-%m-%d}" if rec.children_visible_from else "Horizon's oldest ledger"
    message = f"{found} {noun} found; " + GAP_WORDS.get(reason, "the children list is incomplete").format(when=when)
    if rec.stellar_creator_account is None and rec.stellar_account != GENESIS_ACCOUNT:
        message = "creator unknown; " + message
    return {"children_complete": False, "children_found": found, "reason": reason, "message": message,
            "visible_from": iso(rec.children_visible_from)}


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
