"""Compare a network-wide Hubble sync's store with the simulator's truth, for every account.

The store is read by scans (one pass per table), so 100,000 accounts compare in seconds; rows of
accounts outside the network (a shared Cassandra keyspace) are ignored.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from decimal import Decimal

from common.domain import iso


HVA_THRESHOLD = 10_000  # the lowest default HVA threshold, in XLM


def _iso(value) -> str | None:
    return iso(value) if value is not None else None


def compare_sync_with_truth(store, network: str, net) -> tuple[list[str], dict]:
    """(problems, figures) for every account of the simulated network `net`."""
    addresses = {net.address(i) for i in range(net.total)}
    limit = 1_000_000
    lineage = {r["stellar_account"]: r for r in store.scan("account_lineage", network, limit) if r["stellar_account"] in addresses}
    events: dict[str, list] = defaultdict(list)
    for r in store.scan("creation_events", network, limit):
        if r["stellar_account"] in addresses:
            events[r["stellar_account"]].append((r["creator"], _iso(r["created_at"]), r["operation_id"], r.get("ledger")))
    children: dict[str, list] = defaultdict(list)
    for r in store.scan("account_children", network, limit):
        if r["creator"] in addresses:
            children[r["creator"]].append(r["child"])
    merges: dict[str, list] = defaultdict(list)
    for r in store.scan("merge_events", network, limit):
        if r["stellar_account"] in addresses:
            merges[r["stellar_account"]].append((r["merged_into"], _iso(r["merged_at"]), r["operation_id"]))
    problems: list[str] = []
    figures = Counter()
    rich: list[str] = []
    for account in sorted(addresses):
        t = net.truth(account, children_limit=1)
        if t["children"]["total"] > 1:
            t = net.truth(account, children_limit=t["children"]["total"])
        figures["accounts"] += 1
        figures["edges"] += len(t["creation_events"])
        figures["merges"] += len(t["merges"])
        figures["max_children"] = max(figures["max_children"], t["children"]["total"])
        want_events = sorted((e["creator"], e["created_at"], e["operation_id"], e["ledger"]) for e in t["creation_events"])
        if sorted(events.get(account, [])) != want_events:
            problems.append(f"{account}: creation events {sorted(events.get(account, []))} != truth {want_events}")
        want_merges = sorted((m["into"], m["merged_at"], m["operation_id"]) for m in t["merges"])
        if sorted(merges.get(account, [])) != want_merges:
            problems.append(f"{account}: merges {sorted(merges.get(account, []))} != truth {want_merges}")
        kids = children.get(account, [])
        if len(kids) != len(set(kids)):
            problems.append(f"{account}: {len(kids) - len(set(kids))} duplicate children")
        want_kids = {k["account"] for k in t["children"]["items"]}
        if set(kids) != want_kids:
            problems.append(f"{account}: children differ ({len(want_kids - set(kids))} missing, {len(set(kids) - want_kids)} extra)")
        rec = lineage.get(account)
        if rec is None:
            problems.append(f"{account}: no lineage row")
            continue
        if t["creation_events"]:
            if rec["stellar_creator_account"] != t["creator"] or _iso(rec["account_creation_date"]) != t["created_at"]:
                problems.append(f"{account}: creator {rec['stellar_creator_account']} at {_iso(rec['account_creation_date'])}, "
                                f"truth {t['creator']} at {t['created_at']}")
            if rec.get("creation_ledger") != t["creation_events"][-1]["ledger"]:
                problems.append(f"{account}: creation_ledger {rec.get('creation_ledger')}, truth {t['creation_events'][-1]['ledger']}")
        gone = not t["exists"]
        if bool(rec.get("deleted")) != gone:
            problems.append(f"{account}: deleted {rec.get('deleted')}, truth {'gone' if gone else 'alive'}")
        last = t["merges"][-1] if t["merges"] else None
        want_into = last["into"] if gone and last else None
        want_at = last["merged_at"] if gone and last else None
        if rec.get("merged_into") != want_into or _iso(rec.get("merged_at")) != want_at:
            problems.append(f"{account}: merged into {rec.get('merged_into')} at {_iso(rec.get('merged_at'))}, truth {want_into} at {want_at}")
        if t["xlm_balance"] is not None and Decimal(t["xlm_balance"]) >= HVA_THRESHOLD:
            rich.append(account)
        balance = rec.get("xlm_balance")
        if (format(balance, "f") if balance is not None else None) != t["xlm_balance"]:
            problems.append(f"{account}: balance {balance}, truth {t['xlm_balance']}")
    figures["stored_edges"] = sum(len(v) for v in events.values())
    figures["stored_children"] = sum(len(v) for v in children.values())
    return problems, {**figures, "hva_accounts": sorted(rich)}
