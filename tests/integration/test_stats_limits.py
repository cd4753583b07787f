"""stats' per-client limits (common/read_models/limits.py): a request rate for every route, and for
exports (`/account-lineage?format=`) a stricter rate plus slots for the exports running at once,
per client and per instance, held until the stream is closed. Clients are keyed as search keys
them (SEARCH_TRUSTED_PROXY_HOPS). Through the real handler over WSGI, on the embedded store."""
from __future__ import annotations

import datetime as dt

import pytest

from common.clock import SettableClock
from common.config import ConfigError, Settings
from common.domain import GENESIS_ACCOUNT, ChildEdge
from common.handlers import stats
from common.ratelimit_clients import ConcurrencyLimiter
from common.read_models.limits import StatsLimits
from common.store import migrations
from common.store.sqlite import SQLiteStore
from tests.integration.stats_fixtures import SITE, app_for, container, recording
from tests.support import random_account

pytestmark = pytest.mark.integration
T0 = dt.datetime(2026, 4, 1, 12, tzinfo=dt.timezone.utc)
LIMITS = {
    "STATS_RATE_PER_MIN": "60", "STATS_BURST": "5", "STATS_EXPORT_RATE_PER_MIN": "6", "STATS_EXPORT_BURST": "3",
    "STATS_MAX_CONCURRENT_EXPORTS": "2", "STATS_MAX_CONCURRENT_EXPORTS_PER_CLIENT": "1", "SEARCH_TRUSTED_PROXY_HOPS": "1",
}


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "stats.sqlite3")
    assert migrations.migrate(s).ok
    yield s
    s.close()


@pytest.fixture
def account(store):
    """An account with 300 children: an export of it streams in several chunks."""
    acct = random_account()
    store.put_lineage("public", GENESIS_ACCOUNT, status="COMPLETE", num_child_accounts=1)
    store.put_lineage("public", acct, stellar_creator_account=GENESIS_ACCOUNT, status="COMPLETE", account_creation_date=T0)
    store.add_children("public", GENESIS_ACCOUNT, [ChildEdge("public", GENESIS_ACCOUNT, acct, T0, "1")])
    kids = [random_account() for _ in range(300)]
    store.add_children("public", acct, [ChildEdge("public", acct, k, T0, str(i)) for i, k in enumerate(kids)])
    return acct


def make(store, **overrides):
    clock = SettableClock(T0)
    c = container(store, clock, limits={**LIMITS, **overrides})
    return c, app_for(stats.handle, c).test_client(), clock


def from_(addr: str) -> dict:
    """As Google's front end sends it: whatever the caller wrote, then the caller's address."""
    return {"X-Forwarded-For": f"203.0.113.99, {addr}", "Origin": SITE}


def export(client, account, addr, fmt="csv"):
    return client.get(f"/account-lineage?account={account}&format={fmt}", headers=from_(addr), buffered=False)


def assert_limited(resp, limit: str):
    assert resp.status_code == 429, resp.get_data(as_text=True)[:300]
    body = resp.get_json()
    assert body["error"]["code"] == "rate_limited" and body["error"]["message"] and body["error"]["details"] == {"limit": limit}
    assert int(resp.headers["Retry-After"]) >= 1
    assert resp.headers["Access-Control-Allow-Origin"] == SITE, "a refusal still carries CORS, so the site can read it"


def test_every_route_has_a_per_client_rate(store):
    c, client, clock = make(store)
    for _ in range(5):
        assert client.get("/config", headers=from_("198.51.100.1")).status_code == 200
    assert_limited(client.get("/health", headers=from_("198.51.100.1")), "requests")
    assert client.get("/config", headers=from_("198.51.100.2")).status_code == 200, "another client has its own bucket"
    clock.advance(1.0)
    assert client.get("/config", headers=from_("198.51.100.1")).status_code == 200, "one more a second at 60/min"


def test_refused_requests_read_nothing(store):
    rec = recording(store)
    try:
        clock = SettableClock(T0)
        client = app_for(stats.handle, container(rec, clock, limits=LIMITS)).test_client()
        for _ in range(5):
            client.get("/pipeline-stats", headers=from_("198.51.100.7"))
        rec.calls.clear()
        assert_limited(client.get("/pipeline-stats", headers=from_("198.51.100.7")), "requests")
        assert rec.calls == []
    finally:
        rec.close()


def test_a_spoofed_forwarded_for_does_not_escape_the_limit(store):
    c, client, clock = make(store)
    for i in range(5):
        assert client.get("/config", headers={"X-Forwarded-For": f"10.0.0.{i}, 198.51.100.3", "Origin": SITE}).status_code == 200
    assert_limited(client.get("/config", headers={"X-Forwarded-For": "10.9.9.9, 198.51.100.3", "Origin": SITE}), "requests")


def test_without_trusted_hops_the_peer_is_the_client(store):
    c, client, clock = make(store, SEARCH_TRUSTED_PROXY_HOPS="0")
    for i in range(5):
        assert client.get("/config", headers=from_(f"198.51.100.{i}")).status_code == 200
    assert_limited(client.get("/config", headers=from_("198.51.100.200")), "requests")


def test_one_running_export_per_client_held_until_the_stream_closes(store, account):
    c, client, clock = make(store)
    first = export(client, account, "198.51.100.10")
    assert first.status_code == 200
    next(first.response)  # the stream has started: the slot is held
    assert_limited(export(client, account, "198.51.100.10", "json"), "exports_per_client")
    assert client.get(f"/account-lineage?account={account}", headers=from_("198.51.100.10")).status_code == 200, \
        "the paged body is not an export"
    first.close()  # what the WSGI server does when the stream ends or the client goes away
    second = export(client, account, "198.51.100.10")
    assert second.status_code == 200 and second.get_data(as_text=True).count("\n") == 1 + 1 + 1 + 300  # header, genesis, the account, its children
    second.close()


def test_exports_running_per_instance_are_bounded(store, account):
    c, client, clock = make(store)
    running = [export(client, account, f"198.51.100.{20 + i}") for i in range(2)]
    assert [r.status_code for r in running] == [200, 200]
    assert_limited(export(client, account, "198.51.100.30"), "exports_per_instance")
    running.pop().close()  # (streams are closed last-opened first: each holds a Flask context in this one thread)
    third = export(client, account, "198.51.100.30")
    assert third.status_code == 200
    for r in (third, running[0]):
        r.close()
    assert c.stats_limits.running.running() == 0


def test_exports_have_a_stricter_rate(store, account):
    c, client, clock = make(store, STATS_RATE_PER_MIN="6000", STATS_BURST="1000")
    for _ in range(3):
        r = export(client, account, "198.51.100.40")
        assert r.status_code == 200
        r.get_data()
        r.close()
    refused = export(client, account, "198.51.100.40")
    assert_limited(refused, "exports")
    assert int(refused.headers["Retry-After"]) == 10, "one export per 10 s at 6/min"
    assert c.stats_limits.running.running() == 0, "a refused export holds no slot"
    clock.advance(10.0)
    assert export(client, account, "198.51.100.40").status_code == 200


@pytest.mark.parametrize("query, status", [("format=pdf", 400), ("format=csv&account=" + "G" * 56, 400), ("format=csv", 404)])
def test_an_export_that_fails_gives_its_slot_back(store, account, query, status):
    c, client, clock = make(store)
    if "account=" not in query:
        query += f"&account={random_account()}"
    r = client.get(f"/account-lineage?{query}", headers=from_("198.51.100.50"))
    assert r.status_code == status
    assert c.stats_limits.running.running() == 0


def test_preflight_is_not_counted(store):
    c, client, clock = make(store)
    for _ in range(20):
        assert client.options("/config", headers=from_("198.51.100.60")).status_code == 204
    assert client.get("/config", headers=from_("198.51.100.60")).status_code == 200


@pytest.mark.parametrize(
    "name, value",
    [("STATS_BURST", "0"), ("STATS_RATE_PER_MIN", "fast"), ("STATS_MAX_CONCURRENT_EXPORTS", "-1"),
     ("STATS_MAX_CONCURRENT_EXPORTS_PER_CLIENT", "0"), ("SEARCH_TRUSTED_PROXY_HOPS", "11")],
)
def test_a_bad_setting_names_the_variable(store, name, value):
    with pytest.raises(ConfigError) as info:
        StatsLimits.from_settings(Settings.from_env(env={}, extra={**LIMITS, name: value}))
    assert info.value.variable == name
    c, client, clock = make(store, **{name: value})
    r = client.get("/config")
    assert r.status_code == 503 and r.get_json()["error"]["code"] == "misconfigured" and name in r.get_json()["error"]["message"]


def test_concurrency_limiter_counts_per_client_and_in_all():
    lim = ConcurrencyLimiter(per_client=2, total=3)
    assert [lim.acquire("a"), lim.acquire("a"), lim.acquire("a")] == [None, None, "client"]
    assert [lim.acquire("b"), lim.acquire("c")] == [None, "instance"]
    lim.release("a")
    assert lim.acquire("c") is None and lim.running() == 3
    with pytest.raises(ValueError):
        ConcurrencyLimiter(0, 1)
