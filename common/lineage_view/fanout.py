"""The landing view of a huge fan-out: count, balance histogram, top-N children by XLM balance,
the first page of children and the ancestor chain, precomputed as one row per creator.

Why precomputed: a creator with 100,000 children is a 100,000-row partition; reading it (and the
children's rows for their balances) on every /account-lineage request is what made the original
tree endpoint time out. Even one page costs a batch read of its children (on Cassandra, IN reads
of at most 20 keys that share a replica set, within the IN guardrail), plus one read per
ancestor, one after the other. So for creators with more children than one default page, the
view someone lands on is computed in the background by streaming the partition page by page
(memory bounded by one page) and stored as one row; opening such an account costs two row reads
(the account, its view):

* when a crawl completes (common.pipeline.complete_account calls `summarize_after_crawl`). A
  failure there is logged and never fails the crawl; the next completion (RE_INQUIRY) retries;
* by hva_recalc every hour (`refresh_stale`): the whole view when it is older than
  SUMMARY_MAX_AGE_HOURS or the creator's child count moved (children are enriched after the
  crawl, so their balances arrive later), else just the first page and the ancestors (one page
  and one batch read), so the balances shown are at most LANDING_MAX_AGE_HOURS old. Budgeted in
  time, oldest first. `children_page.as_of` tells when a precomputed page was read.

Pages after the first (a cursor), pages larger than the stored one, and a fan-out that changed
since the view was computed are read live (the view's ancestor chain still serves them). An incremental summary (updating the creator's row on
every child balance change) was rejected: enrichment would need every account's creator, and all
the children of a creator would contend on one row.
"""
from __future__ import annotations

import datetime as dt
import heapq
import logging
import time
from decimal import Decimal
from typing import Any

from common.domain import GENESIS_ACCOUNT, ChildEdge, as_utc, iso
from common.lineage_view.nodes import ancestors, node

log = logging.getLogger(__name__)

FIRST_PAGE = 100  # the precomputed first page of a huge fan-out (the default page size)
SUMMARY_MIN_CHILDREN = FIRST_PAGE + 1  # more children than the default page: a landing view is stored
SUMMARY_MAX_AGE_HOURS = 24
LANDING_MAX_AGE_HOURS = 1
TOP_N = 10
PAGE = 1000

# Histogram bins by order of magnitude (XLM). max is exclusive; None = unbounded / unknown.
BINS: tuple[tuple[str, int | None, int | None], ...] = (
    ("< 1", 0, 1),
    ("1–10", 1, 10),
    ("10–100", 10, 100),
    ("100–1K", 100, 1_000),
    ("1K–10K", 1_000, 10_000),
    ("10K–100K", 10_000, 100_000),
    ("100K–1M", 100_000, 1_000_000),
    ("1M–10M", 1_000_000, 10_000_000),
    ("≥ 10M", 10_000_000, None),
)
UNKNOWN_LABEL = "unknown"


def _bin_index(balance: Decimal) -> int:
    for i, (_, lo, hi) in enumerate(BINS):
        if balance >= lo and (hi is None or balance < hi):
            return i
    return 0  # negative balances do not exist; the port refuses them


def compute_summary(store, network: str, creator: str, top_n: int = TOP_N, page_size: int = PAGE) -> dict[str, Any]:
    """Stream the creator's children once (one page and its batch read at a time); the first
    FIRST_PAGE of them, as nodes, are the precomputed first page of the landing view."""
    counts = [0] * len(BINS)
    unknown = 0
    total = 0
    top: list[tuple[Any, dict]] = []  # min-heap of the top_n by (balance, reverse account)
    first_page: list[dict] = []
    first_next = None
    cursor = None
    while True:
        page = store.get_children_page(network, creator, cursor, page_size)
        recs = store.get_lineages(network, [e.child for e in page.items]) if page.items else {}
        for edge in page.items:
            total += 1
            rec = recs.get(edge.child)
            if len(first_page) < FIRST_PAGE:
                first_page.append(node(edge.child, rec, edge))
            elif first_next is None:
                first_next = first_page[-1]["account"]  # there is more than one page
            bal = rec.xlm_balance if rec is not None else None
            if bal is None:
                unknown += 1
                continue
            counts[_bin_index(bal)] += 1
            item = (bal, _desc(edge.child), edge.child)
            if len(top) < top_n:
                heapq.heappush(top, (item, node(edge.child, rec, edge)))
            elif item > top[0][0]:
                heapq.heapreplace(top, (item, node(edge.child, rec, edge)))
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    histogram = [{"label": label, "min": lo, "max": hi, "count": counts[i]} for i, (label, lo, hi) in enumerate(BINS)]
    histogram.append({"label": UNKNOWN_LABEL, "min": None, "max": None, "count": unknown})
    ranked = [n for _, n in sorted(top, key=lambda t: t[0], reverse=True)]
    return {
        "count": total,
        "known_balances": total - unknown,
        "balance_histogram": histogram,
        "top_by_balance": ranked,
        "first_page": first_page,
        "first_page_next": first_next,
    }


class _desc(str):
    """Reverse string order, so equal balances rank by account id ascending in a min-heap."""

    def __lt__(self, other):  # type: ignore[override]
        return str.__gt__(self, other)

    def __gt__(self, other):  # type: ignore[override]
        return str.__lt__(self, other)


def _chain(store, network: str, creator: str) -> list[dict[str, Any]] | None:
    rec = store.get_lineage(network, creator)
    return ancestors(store, network, rec) if rec is not None else None


def refresh_summary(store, network: str, creator: str, now: dt.datetime) -> dict[str, Any]:
    """Recompute the whole landing view of one creator (streams its partition once)."""
    summary = compute_summary(store, network, creator)
    summary["ancestors"] = _chain(store, network, creator)
    summary["landing_at"] = now
    store.put_children_summary(network, creator, summary, now)
    return summary


def refresh_landing(store, network: str, creator: str, now: dt.datetime) -> bool:
    """Recompute only the first page and the ancestor chain (a page and its batch read): hourly,
    so the balances the landing view shows are at most an hour old."""
    stored = store.get_children_summary(network, creator)
    if stored is None:
        return False
    page = store.get_children_page(network, creator, None, FIRST_PAGE)
    recs = store.get_lineages(network, [e.child for e in page.items]) if page.items else {}
    stored["first_page"] = [node(e.child, recs.get(e.child), e) for e in page.items]
    stored["first_page_next"] = page.next_cursor
    stored["ancestors"] = _chain(store, network, creator)
    stored["landing_at"] = now
    store.put_children_summary(network, creator, stored, stored["computed_at"] or now)
    return True


def summarize_after_crawl(store, network: str, creator: str, now: dt.datetime) -> bool:
    """Called when an account completes: summarise it when it is a huge fan-out, and refresh its
    node in its creator's landing view (a child completed). Never raises (logged instead)."""
    try:
        rec = store.get_lineage(network, creator)
        if rec is None:
            return False
        refresh_child_node(store, network, rec)
        if int(rec.num_child_accounts or 0) < SUMMARY_MIN_CHILDREN:
            return False
        refresh_summary(store, network, creator, now)
        return True
    except Exception:  # noqa: BLE001 - the crawl's result stands; the next completion retries
        log.warning("children summary of %s/%s failed", network, creator, exc_info=True)
        return False


def refresh_child_node(store, network: str, rec) -> bool:
    """A child of a summarised fan-out completed: its node in the stored first page is replaced
    (two row reads and one write), so the landing view never shows it as not yet processed."""
    if not rec.stellar_creator_account:
        return False
    stored = store.get_children_summary(network, rec.stellar_creator_account)
    if stored is None or not stored.get("first_page"):
        return False
    page = stored["first_page"]
    for i, item in enumerate(page):
        if item.get("account") == rec.stellar_account:
            edge = ChildEdge(network, rec.stellar_creator_account, rec.stellar_account, rec.account_creation_date)
            page[i] = node(rec.stellar_account, rec, edge)
            store.put_children_summary(network, rec.stellar_creator_account, stored, stored["computed_at"] or as_utc(rec.updated_at))
            return True
    return False


def settled_chain(store, network: str, rec, chain: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The stored ancestor chain when it is final (it reaches genesis and every ancestor is
    COMPLETE), else the live chain: an ancestor completing is shown at once, not an hour later."""
    if chain and chain[0].get("account") == GENESIS_ACCOUNT and all(n.get("status") == "COMPLETE" for n in chain[1:]):
        return chain
    return ancestors(store, network, rec)


def refresh_stale(
    store,
    network: str,
    now: dt.datetime,
    budget_s: float = 20.0,
    max_age_hours: float = SUMMARY_MAX_AGE_HOURS,
    landing_max_age_hours: float = LANDING_MAX_AGE_HOURS,
) -> dict[str, int]:
    """hva_recalc's hourly pass over the summarised creators (one index partition), oldest first,
    within a time budget: a full recompute when the summary is old or the child count moved,
    else a refresh of the landing page when it is older than an hour."""
    t0 = time.monotonic()
    now = as_utc(now)
    floor = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    full, light = [], []
    for row in store.list_children_summaries(network):
        computed = as_utc(row["computed_at"]) if row["computed_at"] else None
        rec = store.get_lineage(network, row["creator"])
        moved = rec is not None and int(rec.num_child_accounts or 0) != int(row["child_count"] or 0)
        if computed is None or now - computed >= dt.timedelta(hours=max_age_hours) or moved:
            full.append((computed or floor, row["creator"]))
        else:
            light.append((computed, row["creator"]))
    full.sort()
    done = landing = 0
    for _, creator in full:
        if time.monotonic() - t0 > budget_s:
            break
        refresh_summary(store, network, creator, now)
        done += 1
    for _, creator in sorted(light):
        if time.monotonic() - t0 > budget_s:
            break
        stored = store.get_children_summary(network, creator)
        if stored and (stored["landing_at"] is None or now - stored["landing_at"] >= dt.timedelta(hours=landing_max_age_hours)):
            refresh_landing(store, network, creator, now)
            landing += 1
    return {"stale": len(full), "refreshed": done, "landing_refreshed": landing}


# ------------------------------------------------------------------ the read side (lineage_view)
def stored_summary(store, network: str, creator: str, known_total: int, page_limit: int) -> dict[str, Any] | None:
    """The stored landing view (one row read), only for fan-outs larger than one page."""
    if known_total <= page_limit:
        return None
    return store.get_children_summary(network, creator)


def landing_page(stored: dict[str, Any] | None, known_total: int, cursor: str | None, limit: int):
    """(children nodes, next_cursor, ancestors) from the stored first page, or None when the page
    must be read live: a cursor was given, the page asked is larger than the stored one, or the
    fan-out changed since it was computed."""
    if stored is None or cursor is not None or stored.get("first_page") is None or stored["count"] != known_total:
        return None
    first = stored["first_page"]
    if limit > len(first) and stored.get("first_page_next"):
        return None
    kids = first[:limit]
    if limit < len(first):
        next_cursor = kids[-1]["account"]
    else:
        next_cursor = stored.get("first_page_next")
    return kids, next_cursor, stored.get("ancestors")


def summary_json(stored: dict[str, Any] | None, total: int, page_limit: int) -> dict[str, Any] | None:
    """The /account-lineage `summary`: None when one page shows every child, or when the fan-out
    has no stored view yet (its crawl is still running): never computed per request."""
    if total <= page_limit or stored is None:
        return None
    return {
        "count": stored["count"],
        "known_balances": stored["known_balances"],
        "balance_histogram": stored["balance_histogram"],
        "top_by_balance": stored["top_by_balance"],
        "computed_at": iso(stored["computed_at"]) if stored.get("computed_at") else None,
        "stale": stored["count"] != total,
    }
