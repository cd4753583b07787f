"""openapi.yaml against reality: the document is valid OpenAPI 3, covers every route, and real
responses (every route, success and failure) match it on both stores; then schemathesis
fuzzes the stats function's real entry point (functions-framework) over a seeded SQLite store and
requires zero 5xx answers and zero schema violations."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, settings

from common.clock import SettableClock
from common.handlers import stats
from local.stack_env import LOCAL_STATS_LIMITS
from tests.integration.openapi_support import OPENAPI, ROOT, T0, ResponseValidator, function_server, load_spec, schemathesis_schema, seed
from tests.integration.stats_fixtures import SITE, app_for, container
from tests.support import random_account, require

pytestmark = pytest.mark.integration


def test_document_is_valid_openapi_3_and_covers_every_route():
    schema = schemathesis_schema("stats")
    schema.validate()  # the OpenAPI 3.0 meta-schema
    spec = load_spec()
    assert spec["openapi"].startswith("3.")
    stats_paths = {p for p, item in spec["paths"].items() if any("stats" in op.get("tags", []) for op in item.values() if isinstance(op, dict))}
    assert stats_paths == set(stats.ROUTES)
    assert {"/search"} <= set(spec["paths"])
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method in ("get", "post"):
                assert op.get("operationId") and op.get("responses"), (path, method)


def _requests(data):
    chain, kids = data["chain"], data["kids"]
    me = chain[2]
    filters = json.dumps([{"column": "status", "op": "=", "value": "COMPLETE"}])
    ok = [
        "/pipeline-stats", "/pipeline-stats?network=testnet", "/pending-accounts", "/pending-accounts?network=public&limit=5",
        f"/stage-executions?account={me}&network=public",
        f"/account-lineage?account={chain[0]}&limit=1000", f"/account-lineage?account={me}&siblings=1",
        f"/account-lineage?account={chain[0]}&cursor={sorted(kids)[10]}&limit=5",
        f"/account-lineage?account={me}&format=csv", f"/account-lineage?account={me}&format=graphml",
        f"/account-lineage?account={me}&format=json",
        "/hva-leaderboard", "/hva-leaderboard?threshold=1000000&limit=3", "/hva-leaderboard?network=testnet",
        "/hva-changes", "/hva-changes?threshold=10000&since=2026-04-30T00:00:00Z&limit=5",
        "/query", f"/query?table=account_lineage&filters={filters}&limit=50&sort=updated_at&order=desc",
        "/health", "/config", "/sync", "/sync?network=testnet",
    ] + [f"/query?preset={p}" + ("&value=example" if p == "accounts_by_home_domain" else "") for p in (
        "stuck_accounts", "orphan_accounts", "failed_stages", "high_xlm_balance", "recent_cache_entries",
        "processing_accounts", "hva_accounts", "accounts_by_home_domain", "failed_lookups", "recent_hva_changes")]
    bad = [
        ("/pipeline-stats?network=x", 400), ("/pending-accounts?limit=0", 400), ("/sync?network=x", 400),
        ("/stage-executions", 400), (f"/stage-executions?account={random_account()}", 404),
        ("/account-lineage?account=GABC", 400), (f"/account-lineage?account={random_account()}", 404),
        (f"/account-lineage?account={me}&limit=1001", 400), ("/hva-leaderboard?threshold=7", 400),
        ("/hva-changes?since=soon", 400), ("/query?table=nope", 400), ("/query?preset=x", 400),
        ("/query?table=account_lineage&filters=[{\"column\":\"x\",\"op\":\"=\",\"value\":1}]", 400),
    ]
    return ok, bad


def test_real_responses_match_the_document(own_store):
    data = seed(own_store)
    c = container(own_store, SettableClock(T0))
    client = app_for(stats.handle, c).test_client()
    validator = ResponseValidator(load_spec())
    ok, bad = _requests(data)
    checked = 0
    for url, expected in [(u, 200) for u in ok] + bad:
        r = client.get(url, headers={"Origin": SITE})
        assert r.status_code == expected, (url, r.get_data(as_text=True)[:500])
        path = url.split("?")[0]
        media = r.headers["Content-Type"]
        body = r.get_json() if media.startswith("application/json") else r.get_data(as_text=True)
        validator.validate(path, "GET", r.status_code, media, body)
        assert r.headers["Access-Control-Allow-Origin"] == SITE
        checked += 1
    assert checked == len(ok) + len(bad)
    # the seeded huge fan-out carries its summary; the leaderboard its badges
    body = client.get(f"/account-lineage?account={data['chain'][0]}").get_json()
    assert body["summary"]["count"] == 1201 and body["summary"]["known_balances"] == 301
    badges = {e["badge"] for e in client.get("/hva-leaderboard?limit=1000").get_json()["entries"]}
    assert badges == {"NEW"}  # both seeded runs fall inside the last 24 h


def test_schema_behind_503_matches_the_document(tmp_path):
    from common.store import migrations
    from common.store.schema import load_migrations
    from common.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "old.db")
    migrations.migrate(store, migrations=[m for m in load_migrations() if m.version != "0006"])
    client = app_for(stats.handle, container(store, SettableClock(T0))).test_client()
    validator = ResponseValidator(load_spec())
    for path in ("/pipeline-stats", "/config", "/query"):
        r = client.get(path)
        assert r.status_code == 503
        validator.validate(path, "GET", 503, r.headers["Content-Type"], r.get_json())
    r = client.get("/health")
    validator.validate("/health", "GET", 200, r.headers["Content-Type"], r.get_json())
    store.close()


# ------------------------------------------------------------------ schemathesis over the real entry point
@pytest.fixture(scope="module")
def stats_url(tmp_path_factory):
    from common.store import migrations
    from common.store.sqlite import SQLiteStore

    work = tmp_path_factory.mktemp("stats-fn")
    db = work / "stats.sqlite3"
    store = SQLiteStore(db)
    assert migrations.migrate(store).ok
    seed(store)
    store.close()
    env = {"STELLARMAP_STORE": "sqlite", "STELLARMAP_SQLITE_PATH": str(db), "CORS_ORIGINS": SITE, "HUBBLE_ENGINE": "none",
           **LOCAL_STATS_LIMITS}  # one fuzzing client: every answer is checked, not 429s
    with function_server("stats", env, work / "functions-framework.log") as url:
        yield url


@pytest.fixture(scope="module")
def search_url(tmp_path_factory):
    from common.store import migrations
    from common.store.sqlite import SQLiteStore

    require((ROOT / "functions" / "search" / "main.py").is_file(), "functions/search/main.py (the search function)")
    work = tmp_path_factory.mktemp("search-fn")
    db = work / "search.sqlite3"
    store = SQLiteStore(db)
    assert migrations.migrate(store).ok
    seed(store)
    store.close()
    env = {
        "STELLARMAP_STORE": "sqlite", "STELLARMAP_SQLITE_PATH": str(db), "CORS_ORIGINS": SITE, "HUBBLE_ENGINE": "none",
        "STELLARMAP_QUEUE": "local", "LOCAL_DISPATCHER_DB": str(work / "tasks.sqlite3"),
    }
    with function_server("search", env, work / "functions-framework.log") as url:
        yield url


stats_schema = schemathesis_schema("stats")
search_schema = schemathesis_schema("search")
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.mark.serial
@stats_schema.parametrize()
@FUZZ
def test_schemathesis_stats_function(case, stats_url):
    """Every check schemathesis has (no 5xx, status codes, content types, response schemas,
    positive/negative data, unsupported methods) against functions/stats/main.py."""
    case.call_and_validate(base_url=stats_url, timeout=30)


@pytest.mark.serial
@search_schema.parametrize()
@FUZZ
def test_schemathesis_search_function(case, search_url):
    """The same against functions/search/main.py (its queue is the local dispatcher)."""
    case.call_and_validate(base_url=search_url, timeout=30)


def test_openapi_file_is_in_the_repo_root():
    assert OPENAPI.is_file() and OPENAPI.name == "openapi.yaml"
