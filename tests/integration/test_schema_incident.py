"""The pipeline_source incident, replayed against every function entry point.

The database is at 0001 while the code expects every migration: each function answers 503
`schema_behind` naming the missing migrations and columns, writes nothing and keeps running;
after `stellarmap migrate` the same process works and no row is lost.
"""
import importlib.util

import pytest
from flask import Flask, request

from common import bootstrap
from common.bootstrap import Container
from common.clock import SettableClock
from common.config import Settings
from common.domain import GENESIS_ACCOUNT
from common.store import migrations
from common.store.schema import load_migrations
from common.store.sqlite import SQLiteStore
from local.testing.fakes import RecordingQueue
from tests.support import ROOT, random_account

pytestmark = pytest.mark.integration
TOKEN = "incident-token"
FUNCTIONS = sorted(p.parent.name for p in (ROOT / "functions").glob("*/main.py"))
# A request that would write, per function (public ones take query params, internal ones JSON).
ACCOUNT = random_account()
REQUESTS = {
    "search": ("GET", f"/search?account={ACCOUNT}&network=public", None),
    "stats": ("GET", f"/account-lineage?account={GENESIS_ACCOUNT}&network=public", None),
    "process_account": ("POST", "/", {"network": "public", "account": ACCOUNT, "purpose": "lineage", "generation": 0}),
    "api_fallback": ("POST", "/", {"network": "public", "account": ACCOUNT, "purpose": "lineage", "generation": 0}),
    "hva_recalc": ("POST", "/", {"network": "public"}),
    "reset_stale": ("POST", "/", {"network": "public"}),
    "bulk_queue": ("POST", "/?network=public", None),
    "hubble_sync": ("POST", "/", {"network": "public", "sync_id": "full-1", "start": "2020-01-01T00:00:00Z", "end": "2020-01-31T00:00:00Z"}),
}


def _entry_point(name: str):
    path = ROOT / "functions" / name / "main.py"
    spec = importlib.util.spec_from_file_location(f"fn_{name}_main", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def _row_counts(store) -> dict:
    return {t: sum(1 for _ in store.scan(t, None, 100_000)) for t in ("search_cache", "account_lineage", "stage_executions", "cron_health")}


@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_refuses_to_write_on_an_old_schema_then_recovers(name, tmp_path):
    assert name in REQUESTS, f"add a writing request for functions/{name} to this test"
    store = SQLiteStore(tmp_path / "incident.sqlite3")
    all_migrations = load_migrations()
    migrations.migrate(store, migrations=all_migrations[:1])
    store.put_search("public", GENESIS_ACCOUNT, status="COMPLETE", cached_json=None)  # a row that must survive
    queue = RecordingQueue()
    container = Container(
        Settings.from_env(env={}, internal_token=TOKEN), SettableClock(),
        store=store, queue=queue, schema_gate=migrations.SchemaGate(store, recheck_s=0),
    )
    bootstrap.set_container(container)
    try:
        fn = _entry_point(name)
        app = Flask(name)
        app.add_url_rule("/", name, lambda: fn(request), methods=["GET", "POST"])
        app.add_url_rule("/<path:rest>", name + "_p", lambda rest: fn(request), methods=["GET", "POST"])
        client = app.test_client()
        method, path, body = REQUESTS[name]
        headers = {"Authorization": f"Bearer {TOKEN}", "Origin": "http://localhost:8080"}
        kwargs = {"json": body} if body is not None else ({"data": ACCOUNT, "content_type": "text/plain"} if method == "POST" else {})

        before = _row_counts(store)
        resp = client.open(path, method=method, headers=headers, **kwargs)
        assert resp.status_code == 503, resp.get_data(as_text=True)
        err = resp.get_json()["error"]
        assert err["code"] == "schema_behind" and "stellarmap migrate" in err["message"]
        assert err["details"]["missing_migrations"] == [m.label for m in all_migrations[1:]]
        assert "pipeline_source" in err["details"]["missing_columns"]["account_lineage"]
        assert _row_counts(store) == before and queue.tasks == [], "nothing may be written on an old schema"
        # The process keeps serving (no crash loop): a second request gets the same clear answer.
        assert client.open(path, method=method, headers=headers, **kwargs).status_code == 503

        assert migrations.migrate(store).ok
        after = client.open(path, method=method, headers=headers, **kwargs)
        assert after.status_code != 503, after.get_data(as_text=True)
        assert store.get_search("public", GENESIS_ACCOUNT).status == "COMPLETE", "no row is lost"
    finally:
        bootstrap.set_container(None)
        store.close()
