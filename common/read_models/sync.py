"""The network-wide Hubble sync as operators see it: GET /stats/sync (the dashboard) and
`stellarmap status`. One body for both, from Store.get_sync_state (docs/design.md, "The
network-wide Hubble sync"); a network that never synced says so instead of showing zeros as facts.
"""
from __future__ import annotations

from typing import Any

from common.domain import SyncState, iso

NEVER_SYNCED = "NEVER_SYNCED"


def usd_text(micro_usd: int) -> str:
    """Micro-dollars as an exact decimal string ("0.012345"): money never goes through a float."""
    sign = "-" if micro_usd < 0 else ""
    whole, frac = divmod(abs(int(micro_usd)), 1_000_000)
    return f"{sign}{whole}.{frac:06d}"


def sync_body(network: str, state: SyncState | None) -> dict[str, Any]:
    """The SyncState as JSON; status NEVER_SYNCED (and nulls, not zeros) when there is none."""
    if state is None:
        return {
            "network": network, "status": NEVER_SYNCED, "sync_id": None, "mode": None, "synced_through": None,
            "ranges_total": None, "ranges_done": None, "accounts": None, "edges": None, "merges": None,
            "bytes_billed": None, "spent_usd": None, "last_error": None, "started_at": None, "updated_at": None,
        }
    return {
        "network": state.network,
        "status": state.status,
        "sync_id": state.sync_id,
        "mode": state.mode,
        "synced_through": iso(state.synced_through),
        "ranges_total": state.ranges_total,
        "ranges_done": state.ranges_done,
        "accounts": state.accounts,
        "edges": state.edges,
        "merges": state.merges,
        "bytes_billed": state.bytes_billed,
        "spent_usd": usd_text(state.spent_micro_usd),
        "last_error": state.last_error,
        "started_at": iso(state.started_at),
        "updated_at": iso(state.updated_at),
    }


def sync_line(body: dict[str, Any]) -> str:
    """One line for a terminal, from sync_body's output."""
    if body["status"] == NEVER_SYNCED:
        return "never synced"
    through = body["synced_through"] or "nothing yet"
    line = (
        f"{body['status']} ({body['mode'] or 'sync'} {body['sync_id']}, {body['ranges_done']}/{body['ranges_total']} ranges); "
        f"synced through {through}; {body['accounts']:,} accounts, {body['edges']:,} edges, {body['merges']:,} merges; "
        f"spent ${body['spent_usd']}"
    )
    if body["last_error"]:
        line += f"; last error: {body['last_error']}"
    return line
