"""Every route of the stats function on both stores: the answers, the bounded reads behind them,
and every failure path (400 / 404 / 405 / 503 with a code and a message, nothing raw reaching the store)."""
from __future__ import annotations

import contextlib
import datetime as dt
import json
from decimal import Decimal

import pytest

from common import pipeline
from common.clock import SettableClock
from common.domain import GENESIS_ACCOUNT, ChildEdge, StageExecution
from common.handlers import hva_recalc, stats
from common.lineage_view import fanout
from local.testing.fakes import RecordingQueue
from tests.integration.stats_fixtures import SITE, app_for, container, recording
from tests.support import random_account

pytestmark = pytest.mark.integration
T0 = dt.datetime(2026, 4, 1, 12, tzinfo=dt.timezone.utc)


@pytest.fixture
def env(own_store):
    clock = SettableClock(T0)
    c = container(own_store, clock, queue=RecordingQueue())
    return c, app_for(stats.handle, c).test_client(), clock


def get(client, url, **kw):
    r = client.get(url, **kw)
    return r.status_code, r.get_json()


def _chain(store, depth):
    chain = [GENESIS_ACCOUNT] + [random_account() for _ in range(depth)]
    store.put_lineage("public", GENESIS_ACCOUNT, status="COMPLETE", num_child_accounts=1)
    for parent, child in zip(chain, chain[1:]):
        store.put_lineage("public", child, stellar_creator_account=parent, account_creation_date=T0, status="COMPLETE", num_child_accounts=1)
        store.add_children("public", parent, [ChildEdge("public", parent, child, T0, "1")])
    return chain


# ------------------------------------------------------------------ /pipeline-stats
def test_pipeline_stats(env):
    c, client, clock = env
    a, b, t = random_account(), random_account(), random_account()
    pipeline.request_lineage(c, "public", a)
    pipeline.request_lineage(c, "public", b)
    token = c.store.claim("public", b, T0)
    pipeline.complete_account(c, "public", b, "BIGQUERY", claim_token=token)
    pipeline.request_lineage(c, "testnet", t)
    status, body = get(client, "/pipeline-stats")
    assert status == 200
    assert body["total"] == 3 and body["by_status"] == {"COMPLETE": 1, "PENDING": 2}
    assert body["by_source"] == {"BIGQUERY": 1} and body["last_24h_by_source"] == {"BIGQUERY": 1}
    assert body["timestamp"] == "2026-04-01T12:00:00Z" and body["throughput"][-1] == {"hour": "2026-04-01T12:00:00Z", "count": 1}
    status, body = get(client, "/pipeline-stats?network=testnet")
    assert body["total"] == 1 and body["networks"] == ["testnet"]
    status, body = get(client, "/pipeline-stats?network=mainnet")
    assert status == 400 and body["error"]["code"] == "invalid_network" and body["error"]["field"] == "network"


# ------------------------------------------------------------------ /pending-accounts
def test_pending_accounts_two_partition_reads_and_stale_flags(env):
    c, client, clock = env
    fresh, old, cached = random_account(), random_account(), random_account()
    c.store.put_lineage("public", fresh, status="PENDING", updated_at=T0 - dt.timedelta(minutes=5))
    c.store.put_lineage("testnet", old, status="PROCESSING", updated_at=T0 - dt.timedelta(minutes=45))
    c.store.put_search("public", cached, status="RE_INQUIRY", updated_at=T0 - dt.timedelta(minutes=31))
    c.store.put_lineage("public", random_account(), status="COMPLETE", updated_at=T0)
    rec = recording(c.store)
    try:
        client2 = app_for(stats.handle, container(rec, clock)).test_client()
        status, body = get(client2, "/pending-accounts")
        reads = [name for name, _ in rec.calls if name not in ("_get_config",)]
        assert reads == ["_list_active", "_list_active"]  # at most 2 queries
    finally:
        rec.close()
    assert status == 200
    got = {(a["account"], a["table"]): a for a in body["accounts"]}
    assert set(got) == {(fresh, "lineage"), (old, "lineage"), (cached, "cache")}
    assert got[(old, "lineage")]["stale"] is True and got[(old, "lineage")]["age_s"] == 2700 and got[(old, "lineage")]["network"] == "testnet"
    assert got[(cached, "cache")]["stale"] is True and got[(fresh, "lineage")]["stale"] is False
    assert [a["account"] for a in body["accounts"]][0] == old  # oldest first
    status, body = get(client, "/pending-accounts?network=public")
    assert {a["account"] for a in body["accounts"]} == {fresh, cached}
    for bad in ("limit=0", "limit=10001", "limit=x", "network=x"):
        status, body = get(client, f"/pending-accounts?{bad}")
        assert status == 400 and body["error"]["message"]


# ------------------------------------------------------------------ /stage-executions
def test_stage_executions(env):
    c, client, clock = env
    a = random_account()
    c.store.put_lineage("public", a, status="PROCESSING")
    c.store.record_stage(StageExecution("public", a, "horizon_data", "SUCCESS", T0, T0 + dt.timedelta(seconds=2), 2000, None, "API"))
    c.store.record_stage(StageExecution("public", a, "assets", "FAILED", T0 + dt.timedelta(seconds=3), None, None, "HTTP 500", "API"))
    status, body = get(client, f"/stage-executions?account={a}&network=public")
    assert status == 200 and body["status"] == "PROCESSING"
    assert [(s["stage"], s["status"], s["error"]) for s in body["stages"]] == [("assets", "FAILED", "HTTP 500"), ("horizon_data", "SUCCESS", None)]
    assert body["stages"][1]["duration_ms"] == 2000 and body["stages"][1]["finished_at"] == "2026-04-01T12:00:02Z"
    status, body = get(client, f"/stage-executions?account={random_account()}")
    assert status == 404 and body["error"]["code"] == "account_not_found"


# ------------------------------------------------------------------ /account-lineage
def test_account_lineage_ancestors_page_and_d3_shape(env):
    c, client, clock = env
    chain = _chain(c.store, 4)
    me = chain[-1]
    kids = sorted(random_account() for _ in range(150))
    c.store.add_children("public", me, [ChildEdge("public", me, k, T0, str(i)) for i, k in enumerate(kids)])
    c.store.put_lineage("public", me, num_child_accounts=150)
    status, body = get(client, f"/account-lineage?account={me}&network=public&limit=100")
    assert status == 200
    assert [n["account"] for n in body["ancestors"]] == chain[:-1] and body["ancestors"][0]["account"] == GENESIS_ACCOUNT
    tree = body["tree"]
    assert tree["account"] == me and len(tree["children"]) == 100 and tree["more"] == {"count": 50, "next_cursor": kids[99]}
    assert body["children_page"] == {"limit": 100, "cursor": None, "next_cursor": kids[99], "returned": 100, "total": 150, "as_of": None}
    assert body["summary"] is None  # its crawl has not completed: no stored view, never computed per request
    c.store.put_lineage("public", me, status="PROCESSING")
    pipeline.complete_account(c, "public", me, "API", claim_token=None)  # (PROCESSING set by hand: no claim) the crawl completes: 150 > one page, a view is stored
    status, body = get(client, f"/account-lineage?account={me}&network=public&limit=100")
    assert body["summary"]["count"] == 150 and body["summary"]["computed_at"] == "2026-04-01T12:00:00Z"
    assert body["children_page"]["as_of"] == "2026-04-01T12:00:00Z" and body["tree"]["more"] == {"count": 50, "next_cursor": kids[99]}
    status, body = get(client, f"/account-lineage?account={me}&cursor={kids[99]}&limit=100")
    assert [n["account"] for n in body["tree"]["children"]] == kids[100:] and body["tree"]["more"] is None
    status, body = get(client, f"/account-lineage?account={chain[2]}&siblings=1")
    assert body["siblings"] == {"items": [], "next_cursor": None}


def test_huge_fan_out_gets_a_precomputed_summary_and_one_page(env):
    c, client, clock = env
    creator = _chain(c.store, 1)[-1]
    kids = sorted(random_account() for _ in range(2500))
    for i in range(0, len(kids), 1000):
        c.store.add_children("public", creator, [ChildEdge("public", creator, k, T0, str(j)) for j, k in enumerate(kids[i : i + 1000], i)])
    balances = {k: Decimal(10 ** (i % 9)) + Decimal("0.5") for i, k in enumerate(kids[:900])}
    for k, b in balances.items():
        c.store.put_lineage("public", k, stellar_creator_account=creator, xlm_balance=b)
    c.store.put_lineage("public", creator, status="PROCESSING", num_child_accounts=2500)
    # No summary yet, and too big to compute per request: none is given (the page still is).
    status, body = get(client, f"/account-lineage?account={creator}")
    assert status == 200 and body["summary"] is None and body["children_page"]["total"] == 2500
    # The crawl completes: the summary is computed once, in the background worker.
    pipeline.complete_account(c, "public", creator, "API", claim_token=None, num_child_accounts=2500)
    rec = recording(c.store)
    try:
        client2 = app_for(stats.handle, container(rec, clock)).test_client()
        status, body = get(client2, f"/account-lineage?account={creator}&limit=1000")
        pages = [args for name, args in rec.calls if name == "_get_children_page"]
        batch_sizes = [len(args[1]) for name, args in rec.calls if name == "_get_lineages"]
    finally:
        rec.close()
    assert status == 200
    assert len(pages) == 1 and pages[0][3] == 1000 and max(batch_sizes) <= 1000  # one page, never the partition
    s = body["summary"]
    assert s["count"] == 2500 and s["known_balances"] == 900 and s["stale"] is False and s["computed_at"] == "2026-04-01T12:00:00Z"
    hist = {h["label"]: h["count"] for h in s["balance_histogram"]}
    assert hist["unknown"] == 1600 and hist["1–10"] == 100 and hist["≥ 10M"] == 200 and sum(hist.values()) == 2500
    top = [n["account"] for n in s["top_by_balance"]]
    expected = sorted(balances, key=lambda k: (-balances[k], k))[:10]
    assert top == expected and s["top_by_balance"][0]["xlm_balance"] == "100000000.5"
    assert len(body["tree"]["children"]) == 1000 and body["children_page"]["as_of"] is None  # read live
    # The landing view (default page size): the account, its precomputed view, and its lives (two partitions).
    rec = recording(c.store)
    try:
        client2 = app_for(stats.handle, container(rec, clock)).test_client()
        status, landing = get(client2, f"/account-lineage?account={creator}")
        reads = [name for name, _ in rec.calls]
    finally:
        rec.close()
    assert reads == ["_get_lineage", "_get_children_summary", "_get_creation_events", "_get_merge_events"]
    assert [n["account"] for n in landing["tree"]["children"]] == kids[:100]
    assert landing["tree"]["more"] == {"count": 2400, "next_cursor": kids[99]}
    assert landing["children_page"]["as_of"] == "2026-04-01T12:00:00Z" and landing["children_page"]["next_cursor"] == kids[99]
    assert [a["account"] for a in landing["ancestors"]] == [GENESIS_ACCOUNT]
    assert landing["tree"]["children"][0]["xlm_balance"] == format(balances[kids[0]], "f")
    # ... and a page of 50 of it, then the next page read live from the cursor
    status, half = get(client, f"/account-lineage?account={creator}&limit=50")
    assert [n["account"] for n in half["tree"]["children"]] == kids[:50] and half["children_page"]["next_cursor"] == kids[49]
    status, nxt = get(client, f"/account-lineage?account={creator}&cursor={kids[99]}")
    assert [n["account"] for n in nxt["tree"]["children"]] == kids[100:200] and nxt["children_page"]["as_of"] is None
    # A child's balance changes: the landing page catches up within the hour (landing refresh).
    c.store.put_lineage("public", kids[0], xlm_balance=Decimal("42"))
    clock.advance(3600)
    assert fanout.refresh_stale(c.store, "public", clock.now()) == {"stale": 0, "refreshed": 0, "landing_refreshed": 1}
    status, body = get(client, f"/account-lineage?account={creator}")
    assert body["tree"]["children"][0]["xlm_balance"] == "42" and body["children_page"]["as_of"] == "2026-04-01T13:00:00Z"
    assert body["summary"]["computed_at"] == "2026-04-01T12:00:00Z"
    # More children arrive: the view is stale (pages read live) until hva_recalc recomputes it.
    c.store.put_lineage("public", creator, num_child_accounts=2600)
    status, body = get(client, f"/account-lineage?account={creator}")
    assert body["summary"]["stale"] is True and body["children_page"]["as_of"] is None
    clock.advance(3600)
    assert fanout.refresh_stale(c.store, "public", clock.now()) == {"stale": 1, "refreshed": 1, "landing_refreshed": 0}
    status, body = get(client, f"/account-lineage?account={creator}")
    assert body["summary"]["computed_at"] == "2026-04-01T14:00:00Z"


def test_landing_views_follow_ancestors_and_children_that_complete(env):
    c, client, clock = env
    parent, creator = random_account(), random_account()
    kids = sorted(random_account() for _ in range(150))
    c.store.add_children("public", creator, [ChildEdge("public", creator, k, T0, str(j)) for j, k in enumerate(kids)])
    c.store.put_lineage("public", parent)  # known only as the creator: its own lineage not run yet
    c.store.transition_lineage("public", creator, None, "PROCESSING", stellar_creator_account=parent, num_child_accounts=150)
    pipeline.complete_account(c, "public", creator, "API", claim_token=None, num_child_accounts=150)  # set by hand: no claim
    status, body = get(client, f"/account-lineage?account={creator}")
    assert body["children_page"]["as_of"] is not None and [a["account"] for a in body["ancestors"]] == [parent]
    # The ancestor's own lineage completes (its creator is genesis): shown at once, not an hour later.
    assert c.store.transition_lineage("public", parent, (None,), "PROCESSING", stellar_creator_account=GENESIS_ACCOUNT)
    pipeline.complete_account(c, "public", parent, "API", claim_token=None)
    status, body = get(client, f"/account-lineage?account={creator}")
    assert [(a["account"], a["status"]) for a in body["ancestors"]] == [(GENESIS_ACCOUNT, None), (parent, "COMPLETE")]
    # A child on the landing page completes: its node is replaced in the stored view at once.
    c.store.transition_lineage("public", kids[3], None, "PROCESSING", stellar_creator_account=creator, xlm_balance=Decimal("7"))
    pipeline.complete_account(c, "public", kids[3], "API", claim_token=None)
    status, body = get(client, f"/account-lineage?account={creator}")
    node = body["tree"]["children"][3]
    assert body["children_page"]["as_of"] is not None, "still the precomputed page"
    assert (node["account"], node["status"], node["xlm_balance"]) == (kids[3], "COMPLETE", "7")


def test_account_lineage_export_formats(env):
    c, client, clock = env
    chain = _chain(c.store, 2)
    r = client.get(f"/account-lineage?account={chain[-1]}&format=csv")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    lines = r.get_data(as_text=True).splitlines()
    assert lines[0].startswith("relation,account") and lines[1].startswith(f"ancestor,{GENESIS_ACCOUNT}")
    r = client.get(f"/account-lineage?account={chain[-1]}&format=graphml")
    assert r.status_code == 200 and "<graphml" in r.get_data(as_text=True)
    assert r.headers["Content-Disposition"].startswith("attachment;")
    r = client.get(f"/account-lineage?account={chain[1]}&format=json")
    assert r.status_code == 200 and r.headers["Content-Disposition"].startswith("attachment;")
    whole = json.loads(r.get_data(as_text=True))
    assert whole["account"] == chain[1] and [a["account"] for a in whole["ancestors"]] == [GENESIS_ACCOUNT]
    assert [n["account"] for n in whole["children"]] == [chain[2]]
    status, body = get(client, f"/account-lineage?account={random_account()}&format=csv")
    assert status == 404 and body["error"]["code"] == "account_not_found"


@contextlib.contextmanager
def recorded_client(env):
    """(client, recording store, a COMPLETE account): the client's store calls are listed in rec.calls."""
    c, _, clock = env
    acct = random_account()
    c.store.put_lineage("public", acct, status="COMPLETE")
    rec = recording(c.store)
    try:
        yield app_for(stats.handle, container(rec, clock)).test_client(), rec, acct
    finally:
        rec.close()


@pytest.mark.parametrize(
    "query, status, code",
    [
        ("", 400, "missing_account"),
        ("account=", 400, "missing_account"),
        ("account=GABC", 400, "invalid_account"),
        ("account=G" + "A" * 55, 400, "invalid_checksum"),
        ("account=SAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 400, "wrong_key_kind"),
        ("account=' OR 1=1 --", 400, "invalid_account"),
        ("account={acct}&network=mainnet", 400, "invalid_network"),
        ("account={acct}&limit=0", 400, "invalid_limit"),
        ("account={acct}&limit=1001", 400, "invalid_limit"),
        ("account={acct}&limit=ten", 400, "invalid_limit"),
        ("account={acct}&cursor=x' OR 1=1", 400, "invalid_account"),
        ("account={acct}&siblings=yes", 400, "invalid_siblings"),
        ("account={acct}&format=pdf", 400, "invalid_format"),
        ("account={acct}&limit=5&limit=6", 400, "invalid_parameter"),
        ("account={unknown}", 404, "account_not_found"),
    ],
)
def test_account_lineage_failures_touch_nothing(env, query, status, code):
    with recorded_client(env) as (client2, rec, acct):
        got, body = get(client2, "/account-lineage?" + query.format(acct=acct, unknown=random_account()))
        assert got == status and body["error"]["code"] == code and body["error"]["message"]
        if status == 400:
            assert [n for n, _ in rec.calls if n not in ("_get_config",)] == []  # validated before any read


# ------------------------------------------------------------------ /hva-leaderboard and /hva-changes
def _seed_balances(store, balances):
    for a, b in balances.items():
        old = store.get_lineage("public", a)
        store.put_lineage("public", a, xlm_balance=Decimal(b), home_domain=f"{a[:5].lower()}.example")
        store.set_balance("public", a, Decimal(b), old.xlm_balance if old else None)


def test_leaderboard_with_badges_and_changes(env):
    c, client, clock = env
    accts = [random_account() for _ in range(30)]
    _seed_balances(c.store, {a: 1_000_000 - i * 10_000 for i, a in enumerate(accts)})
    hva_recalc.run(c, ["public"], clock.now())
    clock.set(T0 + dt.timedelta(hours=30))
    hva_recalc.run(c, ["public"], clock.now())  # nothing moved: no events
    clock.advance(3600)
    newcomer = random_account()
    _seed_balances(c.store, {accts[25]: 2_000_000, accts[0]: 700_000, newcomer: 995_000})
    hva_recalc.run(c, ["public"], clock.now())
    status, body = get(client, "/hva-leaderboard?network=public&threshold=10000&limit=5")
    assert status == 200 and body["threshold"] == 10_000 and body["thresholds"] == [10_000, 50_000, 100_000, 500_000, 750_000, 1_000_000]
    assert [e["account"] for e in body["entries"]] == [accts[25], newcomer, accts[1], accts[2], accts[3]]
    assert [e["badge"] for e in body["entries"]] == ["↑25", "NEW", None, None, None]  # accts[1]: down 1, no event
    assert body["entries"][0]["xlm_balance"] == "2000000" and body["entries"][0]["home_domain"].endswith(".example")
    assert body["snapshot_at"] == "2026-04-02T19:00:00Z"
    status, body = get(client, "/hva-leaderboard?threshold=10000&limit=31")
    assert len(body["entries"]) == 31
    dropped = body["entries"][-1]
    assert dropped["account"] == accts[0] and dropped["rank"] == 31 and dropped["badge"] == "↓30"
    status, body = get(client, "/hva-changes?network=public&threshold=10000&since=2026-04-02T00:00:00Z")
    kinds = {(e["event_type"], e["account"]) for e in body["events"]}
    assert kinds == {("RANK_UP", accts[25]), ("RANK_DOWN", accts[0]), ("ENTERED", newcomer)}
    up = next(e for e in body["events"] if e["event_type"] == "RANK_UP")
    assert (up["old_rank"], up["new_rank"], up["old_balance"], up["new_balance"], up["pct_change"]) == (26, 1, "750000", "2000000", 166.6667)
    status, body = get(client, "/hva-changes?threshold=1000000")
    assert status == 200 and body["since"] == "2026-04-01T19:00:00Z"
    assert {(e["event_type"], e["account"]) for e in body["events"]} == {("ENTERED", accts[25]), ("EXITED", accts[0])}
    status, body = get(client, "/hva-changes?since=2031-01-01T00:00:00Z")
    assert status == 200 and body["events"] == []
    status, body = get(client, "/hva-changes?since=2020-01-01T00:00:00Z")
    assert status == 200 and body["since"] == "2026-03-02T19:00:00Z"  # at most 31 days of day partitions


@pytest.mark.parametrize(
    "url, code",
    [
        ("/hva-leaderboard?threshold=12345", "invalid_threshold"),
        ("/hva-leaderboard?threshold=10000;DROP", "invalid_threshold"),
        ("/hva-leaderboard?network=futurenet", "invalid_network"),
        ("/hva-leaderboard?limit=1001", "invalid_limit"),
        ("/hva-leaderboard?limit=-1", "invalid_limit"),
        ("/hva-changes?threshold=1", "invalid_threshold"),
        ("/hva-changes?since=yesterday", "invalid_since"),
        ("/hva-changes?since=2026-02-30T00:00:00Z", "invalid_since"),
        ("/hva-changes?limit=0", "invalid_limit"),
        ("/hva-changes?network=", "invalid_network"),
    ],
)
def test_hva_route_failures(env, url, code):
    c, client, clock = env
    if url.endswith("network="):
        url = "/hva-changes?network=%20"
    status, body = get(client, url)
    assert status == 400 and body["error"]["code"] == code and body["error"]["message"]


# Digits of other scripts: str.isdigit() takes '²' and '①' (int() refuses them: once a 503 "store did not
# answer"), and int()/Decimal() read Arabic-Indic or fullwidth digits. Numbers are ASCII only: a 400.
OTHER_DIGITS = ["²", "①", "١٢", "۱۲", "１２", "𝟙𝟚", "1²", "-①"]


DIGIT_CASES = [
    ("/pending-accounts?limit={d}", "invalid_limit"),
    ("/stage-executions?account={acct}&limit={d}", "invalid_limit"),
    ("/account-lineage?account={acct}&limit={d}", "invalid_limit"),
    ("/hva-leaderboard?limit={d}", "invalid_limit"),
    ("/hva-leaderboard?threshold={d}", "invalid_threshold"),
    ("/hva-leaderboard?threshold=١٠٠٠٠", "invalid_threshold"),  # 10000 in Arabic-Indic digits: a real threshold, refused
    ("/hva-changes?threshold={d}", "invalid_threshold"),
    ("/hva-changes?limit={d}", "invalid_limit"),
    ("/hva-changes?since=٢٠٢٦-04-01T00:00:00Z", "invalid_since"),
    ("/hva-changes?since=2026-04-0{d}T00:00:00Z", "invalid_since"),
    ("/query?table=account_lineage&limit={d}", "invalid_limit"),
    ("/query?preset=failed_stages&limit={d}", "invalid_limit"),
    ("/query?preset=high_xlm_balance&value={d}", "invalid_value"),
    ("/query?preset=hva_accounts&value={d}", "invalid_value"),
    ("/query?table=account_lineage&filters=" + json.dumps([{"column": "xlm_balance", "op": ">", "value": "{d}"}]), "invalid_value"),
]


def test_numbers_in_other_scripts_digits_are_400_and_read_nothing(env):
    with recorded_client(env) as (client2, rec, acct):  # one store for every case: no keyspace churn on Cassandra
        for url, code in DIGIT_CASES:
            for digits in OTHER_DIGITS if "{d}" in url else [""]:
                status, body = get(client2, url.replace("{acct}", acct).replace("{d}", digits))
                assert status == 400 and body["error"]["code"] == code and body["error"]["message"], (url, digits, status, body)
        assert [n for n, _ in rec.calls if n != "_get_config"] == [], "refused before any read"


# ------------------------------------------------------------------ /query
def test_all_ten_presets_answer_from_seeded_data(env):
    c, client, clock = env
    store = c.store
    stuck, fresh, orphan, failed = (random_account() for _ in range(4))
    store.put_lineage("public", stuck, status="PROCESSING", updated_at=T0 - dt.timedelta(hours=1))
    store.put_search("public", stuck, status="PROCESSING", updated_at=T0 - dt.timedelta(hours=1))
    store.put_lineage("public", fresh, status="PROCESSING", updated_at=T0 - dt.timedelta(minutes=1))
    store.put_lineage("public", orphan, status="COMPLETE", home_domain="lobstr.co")
    store.put_lineage("public", GENESIS_ACCOUNT, status="COMPLETE")
    store.put_search("public", failed, status="FAILED", last_error="boom", updated_at=T0)
    store.record_stage(StageExecution("public", failed, "assets", "FAILED", T0, T0, 5, "HTTP 500", "API"))
    _seed_balances(store, {random_account(): 2_000_000, random_account(): 20_000})
    hva_recalc.run(c, ["public"], T0)
    expect = {
        "stuck_accounts": lambda rows: {(r["account"], r["table"]) for r in rows} == {(stuck, "lineage"), (stuck, "cache")},
        "orphan_accounts": lambda rows: {r["stellar_account"] for r in rows} >= {orphan, stuck} and GENESIS_ACCOUNT not in {r["stellar_account"] for r in rows},
        "failed_stages": lambda rows: [(r["stellar_account"], r["stage"]) for r in rows] == [(failed, "assets")],
        "high_xlm_balance": lambda rows: [r["xlm_balance"] for r in rows] == ["2000000"],
        "recent_cache_entries": lambda rows: [r["stellar_account"] for r in rows] == [failed, stuck],
        "processing_accounts": lambda rows: {(r["account"], r["flag"]) for r in rows} == {(stuck, "[STALE]"), (fresh, "")},
        "hva_accounts": lambda rows: [r["rank"] for r in rows] == [1, 2],
        "accounts_by_home_domain": lambda rows: [r["stellar_account"] for r in rows] == [orphan],
        "failed_lookups": lambda rows: [(r["stellar_account"], r["last_error"]) for r in rows] == [(failed, "boom")],
        "recent_hva_changes": lambda rows: {r["event_type"] for r in rows} == {"ENTERED"} and len(rows) == 7,
    }
    for name, ok in expect.items():
        extra = "&value=LOBSTR" if name == "accounts_by_home_domain" else ""
        status, body = get(client, f"/query?network=public&preset={name}{extra}")
        assert status == 200, (name, body)
        assert body["preset"] == name and 50 <= body["limit"] <= 500 and isinstance(body["cap_hit"], bool)
        assert ok(body["rows"]), (name, body["rows"])
    status, body = get(client, "/query?preset=high_xlm_balance&value=10000")
    assert [r["xlm_balance"] for r in body["rows"]] == ["2000000", "20000"]


def test_custom_query_enforces_the_network_and_answers_the_catalogue(env):
    c, client, clock = env
    a, t = random_account(), random_account()
    c.store.put_lineage("public", a, status="FAILED", last_error="x")
    c.store.put_lineage("testnet", t, status="FAILED", last_error="x")
    filters = json.dumps([{"column": "status", "op": "=", "value": "FAILED"}])
    status, body = get(client, f"/query?network=testnet&table=account_lineage&filters={filters}&limit=50")
    assert status == 200 and [r["stellar_account"] for r in body["rows"]] == [t]
    assert body["scan_cap"] == 5000 and body["cap_hit"] is False and "stellar_account" in body["columns"]
    status, body = get(client, f"/query?table=account_lineage&filters={filters}")  # default network: public
    assert [r["stellar_account"] for r in body["rows"]] == [a] and body["limit"] == 100
    status, body = get(client, "/query")
    assert status == 200 and len(body["presets"]) == 10 and "account_lineage" in body["tables"]


@pytest.mark.parametrize(
    "qs, code",
    [
        ("table=account_lineage&filters=" + json.dumps([{"column": "password", "op": "=", "value": "x"}]), "invalid_column"),
        ("table=account_lineage&filters=" + json.dumps([{"column": "status", "op": "LIKE", "value": "%"}]), "invalid_operator"),
        ("table=account_lineage&filters=" + json.dumps([{"column": "xlm_balance", "op": ">", "value": "1;DROP"}]), "invalid_value"),
        ("table=users", "invalid_table"),
        ("table=account_lineage&limit=10", "invalid_limit"),
        ("table=account_lineage&limit=100000", "invalid_limit"),
        ("table=account_lineage&network=moon", "invalid_network"),
        ("table=account_lineage&sql=DROP+TABLE+account_lineage", "unknown_parameter"),
        ("sql=SELECT+*+FROM+pipeline_config", "unknown_parameter"),
        ("preset=stuck_accounts&table=account_lineage", "invalid_query"),
        ("preset=rm_rf", "invalid_preset"),
    ],
)
def test_query_failures_are_400_and_read_nothing(env, qs, code):
    c, client, clock = env
    rec = recording(c.store)
    try:
        client2 = app_for(stats.handle, container(rec, clock)).test_client()
        status, body = get(client2, "/query?" + qs)
        assert status == 400 and body["error"]["code"] == code and body["error"]["message"]
        assert [n for n, _ in rec.calls if n != "_get_config"] == []
    finally:
        rec.close()


def test_injection_values_reach_no_store_call(env):
    c, client, clock = env
    evil = "x'); DROP TABLE account_lineage; --"
    c.store.put_lineage("public", random_account(), home_domain="safe.example", status="COMPLETE")
    rec = recording(c.store)
    try:
        client2 = app_for(stats.handle, container(rec, clock)).test_client()
        filters = json.dumps([{"column": "home_domain", "op": "contains", "value": evil}])
        status, body = get(client2, "/query", query_string={"table": "account_lineage", "filters": filters})
        assert status == 200 and body["rows"] == []
        status, body = get(client2, "/query", query_string={"preset": "accounts_by_home_domain", "value": evil})
        assert status == 200 and body["rows"] == []
        assert all(evil not in repr(args) for _, args in rec.calls)
    finally:
        rec.close()
    assert len(list(c.store.scan("account_lineage", "public", 10))) == 1


# ------------------------------------------------------------------ /health, /config, CORS, methods, routes
def test_health_reports_every_part(env):
    c, client, clock = env
    from common.domain import CronRun

    c.store.record_cron_run(CronRun("hva_recalc", T0 - dt.timedelta(minutes=20), "SUCCESS", 1200, {}))
    c.store.record_cron_run(CronRun("reset_stale", T0 - dt.timedelta(hours=5), "SUCCESS", 10, {}))
    c.store.try_reserve_spend("2026-04", 12_500_000, 100_000_000, T0)
    status, body = get(client, "/health")
    assert status == 200
    assert body["store"]["reachable"] is True and body["schema"]["ok"] is True and body["schema"]["missing_columns"] == {}
    assert body["cron"]["hva_recalc"] == {"last_run": "2026-04-01T11:40:00Z", "status": "SUCCESS", "duration_ms": 1200, "overdue": False}
    assert body["cron"]["reset_stale"]["overdue"] is True
    assert body["bigquery"] == {"month": "2026-04", "spent_usd": 12.5, "budget_usd": 100.0, "remaining_usd": 87.5, "over_budget": False}
    assert body["rate_limiters"]["horizon"]["allowed_per_hour"] == 2556.0
    assert body["rate_limiters"]["api_fallback_queue"]["max_dispatches_per_second"] > 0
    assert body["status"] == "degraded"  # reset_stale is overdue, the pipeline_stats reconcile never ran



def test_health_when_the_store_is_unreachable(env):
    c, client, clock = env
    rec = recording(c.store, fail={"_get_cron_runs": ConnectionError("down")})
    try:
        type(rec).ping = lambda self: False
        status, body = get(app_for(stats.handle, container(rec, clock)).test_client(), "/health")
    finally:
        rec.close()
    assert status == 200 and body["status"] == "degraded" and body["store"]["reachable"] is False
    assert body["schema"]["ok"] is False and "rate_limiters" in body


def test_schema_behind_gives_503_except_health(tmp_path):
    from common.store import migrations
    from common.store.schema import load_migrations
    from common.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "old.db")
    migrations.migrate(store, migrations=[m for m in load_migrations() if m.version not in ("0002", "0006")])
    client = app_for(stats.handle, container(store, SettableClock(T0))).test_client()
    status, body = get(client, "/pipeline-stats")
    assert status == 503 and body["error"]["code"] == "schema_behind"
    assert "pipeline_source" in body["error"]["details"]["missing_columns"]["account_lineage"]
    status, body = get(client, "/health")
    assert status == 200 and body["status"] == "degraded" and body["schema"]["ok"] is False
    assert set(body["schema"]["missing_migrations"]) == {"0002_dual_pipeline", "0006_hva_stats"}
    store.close()


def test_config_cors_methods_and_unknown_routes(env):
    c, client, clock = env
    c.store.set_config("hva_thresholds", [5000, 20000], T0)
    status, body = get(client, "/config")
    assert status == 200 and body["hva_thresholds"] == [5000, 20000] and body["networks"] == ["public", "testnet"]
    assert body["cache_ttl_hours"] == 12
    r = client.get("/config", headers={"Origin": SITE})
    assert r.headers["Access-Control-Allow-Origin"] == SITE
    r = client.get("/config", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in r.headers
    r = client.options("/hva-leaderboard", headers={"Origin": SITE, "Access-Control-Request-Method": "GET"})
    assert r.status_code == 204 and r.headers["Access-Control-Allow-Origin"] == SITE
    for method in ("post", "put", "delete", "patch"):
        r = getattr(client, method)("/query?table=account_lineage", json={"sql": "DELETE FROM account_lineage"})
        assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD, OPTIONS" and r.get_json()["error"]["code"] == "method_not_allowed"
    status, body = get(client, "/admin")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = get(client, "/stats/config")  # behind a gateway prefix
    assert status == 200


def test_a_store_failure_is_a_retryable_json_503(env):
    c, client, clock = env
    rec = recording(c.store, fail={"_read_pipeline_counts": TimeoutError("read timed out")})
    try:
        r = app_for(stats.handle, container(rec, clock)).test_client().get("/pipeline-stats")
    finally:
        rec.close()
    assert r.status_code == 503 and r.headers["Retry-After"] == "5" and r.get_json()["error"]["code"] == "unavailable"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-04-01T10:00:00Z", "2026-04-01T10:00:00Z"),
        ("2026-04-01t10:00:00z", "2026-04-01T10:00:00Z"),
        ("2026-04-01T12:30:00+02:30", "2026-04-01T10:00:00Z"),
        ("2026-04-01T10:00:00.123456789-00:00", "2026-04-01T10:00:00.123000Z"),
        ("2026-04-01T10:00:60Z", "2026-04-01T10:00:59Z"),  # a leap second
        ("2026-04-01 10:00:00", "2026-04-01T10:00:00Z"),  # no offset: UTC
        ("0001-01-01T00:00:00Z", "1970-01-01T00:00:00Z"),  # far past: the 31-day floor applies anyway
    ],
)
def test_since_parsing(text, expected):
    from common.domain import iso

    assert iso(stats.parse_since(text)) == expected


@pytest.mark.parametrize("text", ["", "now", "2026-13-01T00:00:00Z", "2026-02-29T00:00:00Z", "2026-04-01T25:00:00Z", "2026-04-01T10:00:00+24:00", "9" * 50])
def test_since_parsing_refuses(text):
    from common.domain import InvalidInput

    with pytest.raises(InvalidInput) as err:
        stats.parse_since(text)
    assert err.value.code == "invalid_since" and err.value.field == "since"
