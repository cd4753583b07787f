"""Compare what StellarMap stored for an account with the simulator's ground truth."""
from __future__ import annotations

import datetime as dt
import json
import urllib.request
from typing import Any

from common.domain import parse_iso


def fetch_json(url: str, timeout: float = 60) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def truth_with_all_children(sim_url: str, network: str, account: str) -> dict:
    """The simulator's truth of one account with every child (paged 10,000 at a time)."""
    truth = fetch_json(f"{sim_url}/_sim/truth/{network}/{account}?children_limit=10000")
    children = list(truth["children"]["items"])
    cursor = truth["children"].get("next_cursor")
    while cursor:
        page = fetch_json(f"{sim_url}/_sim/truth/{network}/{account}?children_limit=10000&children_cursor={cursor}")
        children += page["children"]["items"]
        cursor = page["children"].get("next_cursor")
    truth["all_children"] = children
    return truth


def expected_status(truth: dict) -> str:
    """What the pipeline must end with: COMPLETE for an account that exists or existed (a merged
    account keeps its lineage), INVALID only for one that never existed."""
    return "COMPLETE" if truth.get("ever_existed", truth.get("exists")) else "INVALID"


def _same_instant(a: dt.datetime | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs((a - parse_iso(b)).total_seconds()) < 1


def _visible(when: str, history_from: dt.datetime | None) -> bool:
    return history_from is None or parse_iso(when) >= history_from


def _compare_lives(store, network: str, account: str, rec, truth: dict, history_from: dt.datetime | None) -> list[str]:
    """Merges, the account's being gone, and creation ledgers, within what the path can see
    (history_from None: everything, as Hubble sees it; else Horizon's window)."""
    problems: list[str] = []
    gone = truth.get("ever_existed") and not truth.get("exists")
    if bool(rec.deleted) != bool(gone):
        problems.append(f"{account}: deleted {rec.deleted}, truth says {'gone' if gone else 'alive'}")
    stored_merges = {(m.merged_into, m.merged_at.replace(microsecond=0)) for m in store.get_merge_events(network, account)}
    for merge in truth.get("merges", []):
        key = (merge["into"], parse_iso(merge["merged_at"]).replace(microsecond=0))
        if _visible(merge["merged_at"], history_from) and key not in stored_merges:
            problems.append(f"{account}: merge {key} missing")
    last_merge = truth["merges"][-1] if truth.get("merges") else None
    if gone and last_merge and _visible(last_merge["merged_at"], history_from):
        if rec.merged_into != last_merge["into"] or not _same_instant(rec.merged_at, last_merge["merged_at"]):
            problems.append(f"{account}: merged into {rec.merged_into} at {rec.merged_at}, truth {last_merge['into']} at {last_merge['merged_at']}")
    ledgers = {e.operation_id: e.ledger for e in store.get_creation_events(network, account)}
    for event in truth.get("creation_events", []):
        if event["operation_id"] in ledgers and ledgers[event["operation_id"]] != event["ledger"]:
            problems.append(f"{account}: creation {event['operation_id']} in ledger {ledgers[event['operation_id']]}, truth {event['ledger']}")
    events = truth.get("creation_events", [])
    if events:
        last = events[-1]
        seen = last["operation_id"] in ledgers and ledgers[last["operation_id"]] is not None
        if seen and rec.creation_ledger != last["ledger"]:
            problems.append(f"{account}: creation_ledger {rec.creation_ledger}, truth {last['ledger']}")
        elif not seen and rec.creation_ledger is not None and rec.creation_ledger < last["ledger"]:
            problems.append(f"{account}: creation_ledger {rec.creation_ledger} before the truth's {last['ledger']} (it is an upper bound)")
    return problems


def history_window(sim_url: str, network: str) -> dt.datetime:
    """When the simulated Horizon's retained history starts (older operations answer as pruned)."""
    return parse_iso(fetch_json(f"{sim_url}/_sim/health")["networks"][network]["history_elder_at"])


def compare_lineage(store, network: str, account: str, truth: dict, history_from: dt.datetime | None = None) -> list[str]:
    """Differences between the stored lineage and the truth (empty when they agree).

    With `history_from` (Horizon's retention start), an account the API path marked
    children_complete=False is held to the children Horizon can still show: those created since."""
    problems: list[str] = []
    rec = store.get_lineage(network, account)
    if rec is None:
        return [f"{account}: no lineage row"]
    want = expected_status(truth)
    if rec.status != want:
        problems.append(f"{account}: status {rec.status} (last_error {rec.last_error!r}), truth says {want}")
        return problems
    if want != "COMPLETE":
        if not rec.last_error:
            problems.append(f"{account}: {rec.status} without a reason")
        return problems
    if rec.stellar_creator_account != truth.get("creator"):
        problems.append(f"{account}: creator {rec.stellar_creator_account}, truth {truth.get('creator')}")
    if not _same_instant(rec.account_creation_date, truth.get("created_at")):
        problems.append(f"{account}: created {rec.account_creation_date}, truth {truth.get('created_at')}")
    stored_events = {(e.creator, e.created_at.replace(microsecond=0)) for e in store.get_creation_events(network, account)}
    for ev in truth.get("creation_events", []):
        if ev.get("in_horizon_history", True):
            key = (ev["creator"], parse_iso(ev["created_at"]).replace(microsecond=0))
            if key not in stored_events:
                problems.append(f"{account}: creation event {key} missing")
    problems += _compare_lives(store, network, account, rec, truth, history_from)
    stored_children: list[str] = [c.child for c in store.iter_children(network, account, 1000)]
    if len(stored_children) != len(set(stored_children)):
        problems.append(f"{account}: duplicate children stored")
    truth_children = {c["account"] for c in truth["all_children"]}
    if rec.children_complete is False:
        if history_from is None:
            problems.append(f"{account}: children marked incomplete (pruned history) but no history window to check against")
            return problems
        truth_children = {c["account"] for c in truth["all_children"] if parse_iso(c["created_at"]) >= history_from}
    if set(stored_children) != truth_children:
        missing = len(truth_children - set(stored_children))
        extra = len(set(stored_children) - truth_children)
        problems.append(f"{account}: children differ ({missing} missing, {extra} extra of {len(truth_children)})")
    return problems
