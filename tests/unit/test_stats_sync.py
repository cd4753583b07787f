"""GET /stats/sync and `stellarmap status` over the real SQLite store: never synced, a sync under
way and done, and bad input (docs/design.md, "The network-wide Hubble sync")."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from common.clock import SettableClock
from common.handlers import stats
from common.read_models.sync import NEVER_SYNCED, sync_body, sync_line, usd_text
from common.store import migrations
from common.store.sqlite import SQLiteStore
from stellarmap_cli.main import main as cli_main
from tests.integration.openapi_support import ResponseValidator, load_spec
from tests.integration.stats_fixtures import SITE, app_for, container

pytestmark = pytest.mark.unit
T0 = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.timezone.utc)
DAY = dt.timedelta(days=1)


@pytest.fixture
def store(sqlite_store):
    return sqlite_store  # tests/conftest.py: a migrated SQLite store


def _migrated(store_class, tmp_path):
    """A subclass of the SQLite adapter (a fake that fails one way), migrated like the real one."""
    store = store_class(tmp_path / "failing.sqlite3")
    assert migrations.migrate(store).ok
    return store


def _client(store):
    return app_for(stats.handle, container(store, SettableClock(T0))).test_client()


def _sync_two_ranges(store, done: int) -> None:
    """A full sync of public in two ranges, `done` of them written (real store methods)."""
    ranges = [(T0 - 60 * DAY, T0 - 30 * DAY), (T0 - 30 * DAY, T0 - DAY)]
    store.start_sync("public", "full-1", "full", ranges, T0 - DAY)
    for start, _ in ranges[:done]:
        store.mark_sync_range_started("public", "full-1", start, T0)
        store.mark_sync_range_done("public", "full-1", start, rows=1500, edges=1200, merges=34,
                                   bytes_billed=10**9, spent_micro_usd=6_103_516, now=T0)


def test_usd_text_is_exact():
    assert usd_text(0) == "0.000000"
    assert usd_text(6_103_516) == "6.103516"
    assert usd_text(12_207_032) == "12.207032"
    assert usd_text(-5) == "-0.000005"


def test_never_synced_is_200_and_says_so(store):
    r = _client(store).get("/stats/sync?network=testnet", headers={"Origin": SITE})
    assert r.status_code == 200
    body = r.get_json()
    assert body["network"] == "testnet" and body["status"] == NEVER_SYNCED
    # nulls, not zeros: "0 accounts synced" would be a claim
    assert all(body[k] is None for k in ("sync_id", "synced_through", "accounts", "edges", "merges", "spent_usd"))
    assert body["timestamp"] == "2026-12-07T09:00:00Z"
    assert r.headers["Access-Control-Allow-Origin"] == SITE
    assert sync_line(body) == "never synced"


def test_network_defaults_to_public(store):
    assert _client(store).get("/sync").get_json()["network"] == "public"


def test_synced_network_answers_its_state(store):
    _sync_two_ranges(store, done=2)
    r = _client(store).get("/stats/sync?network=public")
    assert r.status_code == 200
    body = r.get_json()
    assert body["status"] in ("RUNNING", "DONE")  # DONE once the accounts are loaded (finish_sync)
    assert body["sync_id"] == "full-1" and body["mode"] == "full"
    assert (body["ranges_done"], body["ranges_total"]) == (2, 2)
    assert body["synced_through"] == "2026-12-06T09:00:00Z"
    assert (body["edges"], body["merges"]) == (2400, 68)
    assert body["bytes_billed"] == 2 * 10**9
    assert body["spent_usd"] == "12.207032"
    ResponseValidator(load_spec()).validate("/sync", "GET", 200, r.headers["Content-Type"], body)
    # the other network is still never synced
    assert _client(store).get("/stats/sync?network=testnet").get_json()["status"] == NEVER_SYNCED


def test_sync_under_way_shows_what_is_done_and_the_error(store):
    _sync_two_ranges(store, done=1)
    second = T0 - 30 * DAY
    store.mark_sync_range_started("public", "full-1", second, T0)
    store.mark_sync_range_failed("public", "full-1", second, "BigQuery: 503 backend error", T0)
    body = _client(store).get("/sync?network=public").get_json()
    assert (body["ranges_done"], body["ranges_total"]) == (1, 2)
    assert body["synced_through"] == "2026-11-07T09:00:00Z"  # the first range's end: everything before it is written
    assert "503 backend error" in body["last_error"]
    line = sync_line(body)
    assert "1/2 ranges" in line and "synced through 2026-11-07T09:00:00Z" in line
    assert "1,200 edges" in line and "$6.103516" in line and "last error: BigQuery: 503 backend error" in line


@pytest.mark.parametrize("query, code", [
    ("network=x", "invalid_network"),
    ("network=", "invalid_network"),
    ("network=PUBLIC%00", "invalid_network"),
    ("network=public&network=testnet", "invalid_parameter"),
])
def test_bad_network_is_a_400_and_reads_nothing(tmp_path, query, code):
    class RefusingStore(SQLiteStore):
        def get_sync_state(self, network):
            raise AssertionError("the store must not be read for bad input")

    store = _migrated(RefusingStore, tmp_path)
    r = _client(store).get(f"/stats/sync?{query}")
    assert r.status_code == 400, r.get_data(as_text=True)
    error = r.get_json()["error"]
    assert error["code"] == code and error["message"]
    store.close()


def test_write_methods_are_refused(store):
    r = _client(store).post("/stats/sync?network=public")
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD, OPTIONS"


def test_a_store_failure_is_a_503(tmp_path):
    class DownStore(SQLiteStore):
        def get_sync_state(self, network):
            raise ConnectionError("store down")

    store = _migrated(DownStore, tmp_path)
    r = _client(store).get("/stats/sync?network=public")
    assert r.status_code == 503 and r.get_json()["error"]["code"] == "unavailable"
    store.close()


# ------------------------------------------------------------------ stellarmap status
def _status(store, capsys, monkeypatch, *extra) -> tuple[int, str, str]:
    monkeypatch.setenv("COLUMNS", "300")  # one table row per line
    monkeypatch.delenv("STELLARMAP_STACK_FILE", raising=False)
    code = cli_main(["--store", "sqlite", "--sqlite-path", str(store.path), "status", *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_status_says_never_synced(store, capsys, monkeypatch):
    code, _, err = _status(store, capsys, monkeypatch)
    lines = [line for line in err.splitlines() if "Hubble sync" in line]
    assert len(lines) == 2, err
    assert all("never synced" in line for line in lines)


def test_status_prints_the_sync(store, capsys, monkeypatch):
    _sync_two_ranges(store, done=2)
    _, _, err = _status(store, capsys, monkeypatch)
    public = next(line for line in err.splitlines() if "Hubble sync public" in line)
    for part in ("full full-1, 2/2 ranges", "synced through 2026-12-06T09:00:00Z", "2,400 edges", "68 merges", "$12.207032"):
        assert part in public, (part, public)
    assert "never synced" in next(line for line in err.splitlines() if "Hubble sync testnet" in line)
    _, out, _ = _status(store, capsys, monkeypatch, "--json")
    body = json.loads(out)["hubble_sync"]
    assert body["public"] == {**sync_body("public", store.get_sync_state("public"))}
    assert body["testnet"]["status"] == NEVER_SYNCED
