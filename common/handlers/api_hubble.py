"""What the API path asks Hubble, and the ledger points it learns (common/handlers/api_fallback.py).

Horizon keeps about a year of history and Stellar Expert does not know every account. Where
neither can see, and a Hubble engine is configured for the network (and pipeline_mode is not
API_ONLY), Hubble fills the gap under the cost guard, with pruned queries only:
- the creator (every life) of an account whose creation is older than Horizon's history and
  unknown to Stellar Expert (common/hubble/lineage.find_lives, hinted by Horizon's sequence number);
- the children created before Horizon's elder ledger ([first creation, elder ledger) only; Horizon
  serves the rest).
Without Hubble the account is COMPLETE all the same, and the gap is named (children_gap, with
children_visible_from): never silently incomplete.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Callable

from common import ledger_time
from common.config import ConfigError
from common.domain import NETWORK_START, PipelineMode, life_fields
from common.hubble.cost_guard import CostGuard, GuardRefused, Limits
from common.hubble.lineage import children_before, find_lives
from common.deps import ApiFallbackDeps
from common.hubble.port import HubbleError

log = logging.getLogger(__name__)
EXPERT_LEDGER_TOLERANCE = dt.timedelta(minutes=10)


@dataclasses.dataclass
class _Engine:
    hubble: object | None
    tables: object | None
    code: str | None  # why there is none: history_pruned (no engine) | hubble_unavailable
    message: str | None


def _engine(c: ApiFallbackDeps, network: str, config) -> _Engine:
    if config["pipeline_mode"] == PipelineMode.API_ONLY.value:
        return _Engine(None, None, "history_pruned", "pipeline_mode is API_ONLY")
    try:
        hubble = c.hubble
        if hubble is None:
            return _Engine(None, None, "history_pruned", "no Hubble engine is configured")
        tables = hubble.tables(network)
    except (ConfigError, HubbleError) as exc:
        return _Engine(None, None, "hubble_unavailable", str(exc)[:300])
    if tables is None:
        return _Engine(None, None, "hubble_unavailable", f"Hubble has no tables for the {network} network")
    return _Engine(hubble, tables, None, None)


def configured(c: ApiFallbackDeps, network: str) -> bool:
    try:
        return c.hubble is not None and c.hubble.tables(network) is not None
    except (ConfigError, HubbleError):
        return False


def _guard(c: ApiFallbackDeps, engine: _Engine, config) -> CostGuard:
    return CostGuard(engine.hubble, c.store, c.clock, Limits.from_config(config))


# ---------------------------------------------------------------------------------- ledger points
def remember_root(c: ApiFallbackDeps, network: str, horizon) -> None:
    point = horizon.latest_point()
    if point is not None:
        ledger_time.remember(c.store, network, [point])


def remember_events(c: ApiFallbackDeps, network: str, events) -> None:
    ledger_time.remember(c.store, network, [(e.ledger, e.created_at) for e in events if e is not None and e.source != "EXPERT"])


def expert_ledger(c: ApiFallbackDeps, network: str, created: dt.datetime, seq_ledger: int | None) -> int | None:
    """The ledger of Stellar Expert's (first) creation: the sequence's ledger when its estimated close
    time matches the creation (no re-creation, no bump since), else unknown."""
    if seq_ledger is None:
        return None
    guess, _ = ledger_time.ledger_clock(c.store, network).estimate(seq_ledger)
    if guess is not None and abs(guess - created) <= EXPERT_LEDGER_TOLERANCE:
        return seq_ledger
    return None


# ---------------------------------------------------------------------------------- the creator
@dataclasses.dataclass
class HubbleAnswer:
    events: list
    merges: list
    conclusive: bool  # Hubble was asked and answered (or there is no Hubble to ask)
    reason: str


def lives_from_hubble(c: ApiFallbackDeps, network: str, account: str, seq_ledger: int | None, first_seen: dt.datetime | None, config) -> HubbleAnswer:
    engine = _engine(c, network, config)
    if engine.hubble is None:
        return HubbleAnswer([], [], engine.code == "history_pruned",
                            f"Horizon's history does not reach the creation, Stellar Expert does not know it, and {engine.message}")
    try:
        lives = find_lives(c.store, _guard(c, engine, config), engine.tables, network, account, c.clock.now(),
                           hint_ledger=seq_ledger, first_seen=first_seen)
    except GuardRefused as exc:
        return HubbleAnswer([], [], False, f"Hubble's cost guard refused the creator query ({exc.code}: {exc.message})")
    except HubbleError as exc:
        return HubbleAnswer([], [], False, f"Hubble failed: {exc}")
    return HubbleAnswer(lives.events, lives.merges, True, "Hubble has no creation of this account either")


def lives_fields(c: ApiFallbackDeps, network: str, account: str, seq_ledger: int | None, gone: bool) -> dict:
    """The lineage row's lives columns from what is stored (every creation and merge), plus the
    sequence's ledger when the current life's creating operation was not seen."""
    events = c.store.get_creation_events(network, account)
    merges = c.store.get_merge_events(network, account)
    fields = life_fields(events, merges, gone or None)
    if events and fields.get("creation_ledger") is None and seq_ledger is not None and not gone:
        fields["creation_ledger"] = seq_ledger  # an upper bound after bump_sequence (docs/design.md)
    if not events:
        fields.pop("stellar_creator_account", None)
        fields["creation_ledger"] = seq_ledger
    return fields


# ---------------------------------------------------------------------------------- children
@dataclasses.dataclass
class Gap:
    code: str | None  # None: the children are complete
    message: str | None
    visible_from: dt.datetime | None
    added: int


def fill_children_gap(c: ApiFallbackDeps, outcome, whole_history: bool, config, deadline,
                      store_edges: Callable[[list, int], None]) -> Gap:
    """After Horizon's crawl: the children created before Horizon's elder ledger, from Hubble."""
    if whole_history:
        return Gap(None, None, None, 0)
    network, account, store = outcome.network, outcome.account, c.store
    horizon = c.upstream.horizon(network)
    elder = horizon.history_elder_ledger(deadline.max_wait())
    clock = ledger_time.ledger_clock(store, network)
    visible_from, _ = clock.estimate(elder)
    engine = _engine(c, network, config)
    if engine.hubble is None:
        return Gap(engine.code, f"children created before Horizon's history are not visible ({engine.message})", visible_from, 0)
    events = store.get_creation_events(network, account)
    rec = store.get_lineage(network, account)
    first = events[0].created_at if events else (rec.account_creation_date if rec else None) or NETWORK_START[network]
    added = 0

    def on_page(edges: list) -> None:
        nonlocal added
        store_edges(edges, added)
        added += len(edges)

    page_size = max(1, min(int(config["children_page_size_bq"]), 10_000))
    try:
        children_before(_guard(c, engine, config), engine.tables, network, account, first, elder, clock, c.clock.now(),
                        page_size, on_page)
    except GuardRefused as exc:
        return Gap("hubble_budget", f"Hubble's cost guard refused the older children ({exc.code}: {exc.message})", visible_from, added)
    except HubbleError as exc:
        log.warning("children gap of %s/%s from Hubble failed: %s", network, account, exc)
        return Gap("hubble_unavailable", f"Hubble failed: {exc}"[:500], visible_from, added)
    return Gap(None, None, None, added)
