"""The search handler in process (Flask test client) over the embedded SQLite store and a queue
that keeps Cloud Tasks' naming rules: validation, the cache, the state changes, errors, limits."""
import datetime as dt
import json
import logging
import os

import pytest
from flask import Flask, request
from stellar_sdk import Keypair, MuxedAccount, StrKey

from common.bootstrap import Container
from common.clock import SettableClock
from common.config import Settings
from common.domain import GENESIS_ACCOUNT, ChildEdge, StageExecution
from common.handlers.search import handle
from common.queue.port import TaskQueue
from common.store import migrations
from common.store.sqlite import SQLiteStore
from local.testing.fakes import RecordingQueue
from tests.support import random_account

pytestmark = pytest.mark.unit
SITE = "http://127.0.0.1:8080"
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


class CountingStore(SQLiteStore):
    """The SQLite adapter, counting the primitive reads and writes a request makes."""

    def __init__(self, path):
        super().__init__(path)
        self.reads = 0
        self.writes = 0

    def _get_search(self, *a):
        self.reads += 1
        return super()._get_search(*a)

    def _get_lineage(self, *a):
        self.reads += 1
        return super()._get_lineage(*a)

    def _get_lineages(self, *a):
        self.reads += 1
        return super()._get_lineages(*a)

    def _get_children_page(self, *a):
        self.reads += 1
        return super()._get_children_page(*a)

    def _get_stage_executions(self, *a):
        self.reads += 1
        return super()._get_stage_executions(*a)

    def _put_row(self, *a):
        self.writes += 1
        return super()._put_row(*a)

    def _compare_and_set(self, *a):
        self.writes += 1
        return super()._compare_and_set(*a)


class DownStore(SQLiteStore):
    """A store whose database stops answering after migration."""

    down = False

    def _get_search(self, *a):
        if self.down:
            raise ConnectionError("database unreachable")
        return super()._get_search(*a)


class BrokenQueue(TaskQueue):
    def enqueue(self, queue, payload, *, purpose, generation=0, delay_s=0.0):
        raise RuntimeError("queue service unavailable")

    def depth(self, queue):
        return None

    def has_live_task(self, queue, name):
        return False


def make_app(tmp_path, store_cls=CountingStore, queue=None, **extra):
    store = store_cls(tmp_path / "s.db")
    migrations.migrate(store)
    settings = Settings.from_env(env={}, cors_origins=(SITE,), extra={"SEARCH_RATE_PER_MIN": "100000", "SEARCH_BURST": "1000", **extra})
    clock = SettableClock(T0)
    c = Container(settings, clock, store=store, queue=queue if queue is not None else RecordingQueue())
    app = Flask("search")
    for rule in ("/", "/search", "/<path:other>"):
        app.add_url_rule(rule, rule, lambda **_: handle(request, c), methods=["GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD"])
    app.c = c
    app.store = store
    return app


@pytest.fixture
def app(tmp_path):
    a = make_app(tmp_path)
    yield a
    a.store.close()


def get(app, **params):
    return app.test_client().get("/search", query_string=params)


def nothing_written(app):
    s = app.store
    return (not list(s.scan("search_cache", None, 100)) and not list(s.scan("account_lineage", None, 100))
            and not app.c.queue.tasks)


def complete_account(store, account, now=T0, children=(), creator=GENESIS_ACCOUNT):
    store.put_lineage("public", GENESIS_ACCOUNT, status="COMPLETE", num_child_accounts=1, updated_at=now)
    store.put_lineage("public", account, stellar_creator_account=creator, account_creation_date=now - dt.timedelta(days=3),
                      status="COMPLETE", pipeline_source="API", num_child_accounts=len(children), updated_at=now, last_pipeline_attempt=now)
    store.add_children("public", creator, [ChildEdge("public", creator, account, now - dt.timedelta(days=3), "1")])
    if children:
        store.add_children("public", account, [ChildEdge("public", account, k, now, str(i)) for i, k in enumerate(children)])


# ---------------------------------------------------------------------------------- validation
def _contract_id():
    return StrKey.encode_contract(os.urandom(32))


def _flip(text):
    return text[:-1] + ("B" if text[-1] != "B" else "C")


BAD_INPUTS = [
    ("bad checksum (G)", lambda kp: _flip(kp.public_key), "invalid_checksum"),
    ("bad checksum (M)", lambda kp: _flip(MuxedAccount(kp.public_key, 7).account_muxed), "invalid_checksum"),
    ("contract id", lambda kp: _contract_id(), "wrong_key_kind"),
    ("secret seed", lambda kp: kp.secret, "wrong_key_kind"),
    ("pre-auth tx", lambda kp: StrKey.encode_pre_auth_tx(os.urandom(32)), "wrong_key_kind"),
    ("hash signer", lambda kp: StrKey.encode_sha256_hash(os.urandom(32)), "wrong_key_kind"),
    ("empty", lambda kp: "", "missing_account"),
    ("blank", lambda kp: "   \t", "missing_account"),
    ("10 KB", lambda kp: "G" * 10_240, "input_too_long"),
    ("sql injection", lambda kp: "' OR 1=1; DROP TABLE search_cache; --", "invalid_account"),
    ("script injection", lambda kp: "<script>alert(document.cookie)</script>", "invalid_account"),
    ("lower case", lambda kp: kp.public_key.lower(), "invalid_account"),
    ("short G", lambda kp: "GABC", "invalid_account"),
]


@pytest.mark.parametrize("label, make, code", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_a_400_that_names_the_problem_and_writes_nothing(app, caplog, label, make, code):
    kp = Keypair.random()
    raw = make(kp)
    caplog.set_level(logging.DEBUG)
    resp = get(app, account=raw, network="public")
    body = resp.get_json()
    assert resp.status_code == 400 and resp.mimetype == "application/json"
    assert body["error"]["code"] == code and body["error"]["field"] == "account" and body["error"]["message"]
    assert nothing_written(app)
    text = resp.get_data(as_text=True)
    if raw.strip():
        assert raw.strip() not in text  # never echoed
    assert kp.secret not in text and kp.secret not in caplog.text


def test_wrong_kinds_of_key_say_what_was_given(app):
    kp = Keypair.random()
    seed = get(app, account=kp.secret).get_json()["error"]["message"]
    contract = get(app, account=_contract_id()).get_json()["error"]["message"]
    assert "secret seed" in seed and kp.secret not in seed
    assert "contract" in contract


def test_a_secret_seed_in_a_post_body_is_never_echoed_or_logged(app, caplog):
    kp = Keypair.random()
    caplog.set_level(logging.DEBUG)
    resp = app.test_client().post("/search", data=json.dumps({"account": kp.secret, "network": "public"}), content_type="application/json")
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "wrong_key_kind"
    assert kp.secret not in resp.get_data(as_text=True) and kp.secret not in caplog.text
    assert nothing_written(app)


@pytest.mark.parametrize("network", ["", "mainnet", "PUBLIC", "public ", "testnet; DROP TABLE x"])
def test_network_must_be_public_or_testnet(app, network):
    resp = get(app, account=random_account(), network=network)
    assert resp.status_code == 400 and resp.get_json()["error"] == {
        "code": "invalid_network", "message": "network must be one of public, testnet", "field": "network"}
    assert nothing_written(app)


@pytest.mark.parametrize("data, code", [("{not json", "invalid_json"), ("[1, 2]", "invalid_json"),
                                        (json.dumps({"account": 12}), "invalid_account"),
                                        (json.dumps({"account": "x" * 20_000}), "body_too_large")])
def test_bad_post_bodies_are_400(app, data, code):
    resp = app.test_client().post("/search", data=data, content_type="application/json")
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == code
    assert nothing_written(app)


# ---------------------------------------------------------------------------------- accepted input
def test_an_unknown_account_becomes_pending_and_is_enqueued_once(app):
    a = random_account()
    resp = get(app, account=f"  {a}\n", network="testnet")
    body = resp.get_json()
    assert resp.status_code == 202
    assert body == {"status": "PENDING", "account": a, "network": "testnet", "stages": [], "poll_after_s": 3}
    assert app.store.get_search("testnet", a).status == "PENDING"
    assert app.store.get_lineage("testnet", a).status == "PENDING"
    assert [t["payload"] for t in app.c.queue.tasks] == [{"network": "testnet", "account": a, "purpose": "lineage", "generation": 0}]
    for _ in range(5):  # asking again changes nothing and enqueues nothing
        assert get(app, account=a, network="testnet").status_code == 202
    assert len(app.c.queue.tasks) == 1 and app.c.queue.refused == 5


def test_default_network_is_public_and_post_json_works(app):
    a = random_account()
    resp = app.test_client().post("/", data=json.dumps({"account": a}), content_type="application/json")
    assert resp.status_code == 202 and resp.get_json()["network"] == "public"


def test_a_muxed_account_resolves_to_its_g_account(app):
    kp = Keypair.random()
    muxed = MuxedAccount(kp.public_key, 123456789).account_muxed
    body = get(app, account=muxed).get_json()
    assert body["account"] == kp.public_key
    assert app.c.queue.tasks[0]["payload"]["account"] == kp.public_key


def test_stages_and_processing_are_reported_while_waiting(app):
    a = random_account()
    get(app, account=a)
    app.store.claim("public", a, T0)
    app.store.record_stage(StageExecution("public", a, "parent_lineage", "SUCCESS", T0, T0, 12, None, "API"))
    body = get(app, account=a).get_json()
    assert body["status"] == "PROCESSING" and body["poll_after_s"] == 2
    assert body["stages"] == [{"stage": "parent_lineage", "status": "SUCCESS", "started_at": "2026-01-01T00:00:00Z",
                               "finished_at": "2026-01-01T00:00:00Z", "duration_ms": 12, "error": None, "pipeline_source": "API"}]


def test_a_complete_account_is_served_from_the_store_and_a_repeat_is_one_read(app):
    a = random_account()
    kids = [random_account() for _ in range(3)]
    complete_account(app.store, a, children=kids)
    resp = get(app, account=a)
    body = resp.get_json()
    assert resp.status_code == 200 and body["status"] == "COMPLETE" and body["account"] == a
    assert body["lineage"]["ancestors"][0]["account"] == GENESIS_ACCOUNT
    assert sorted(k["account"] for k in body["lineage"]["tree"]["children"]) == sorted(kids)
    assert body["cached_at"] == "2026-01-01T00:00:00Z"
    assert app.c.queue.tasks == []
    entry = app.store.get_search("public", a)
    assert entry.status == "COMPLETE" and json.loads(entry.cached_json) == body
    app.store.reads = app.store.writes = 0
    again = get(app, account=a)
    assert again.status_code == 200 and again.get_json() == body
    assert (app.store.reads, app.store.writes) == (1, 0)


def test_the_cached_answer_is_rerendered_after_its_max_age(app):
    a = random_account()
    complete_account(app.store, a)
    first = get(app, account=a).get_json()
    app.c.clock.advance(61)
    app.store.put_lineage("public", a, home_domain="later.example")
    second = get(app, account=a).get_json()
    assert first["lineage"]["tree"]["home_domain"] is None
    assert second["lineage"]["tree"]["home_domain"] == "later.example" and second["cached_at"] == "2026-01-01T00:01:01Z"


def test_completion_invalidates_the_cache_and_the_next_search_renders_again(app):
    from common import pipeline

    a = random_account()
    get(app, account=a)
    token = app.store.claim("public", a, T0)
    app.store.put_lineage("public", a, stellar_creator_account=GENESIS_ACCOUNT)
    assert pipeline.complete_account(app.c, "public", a, "API", now=T0, claim_token=token)
    assert app.store.get_search("public", a).cached_json is None
    resp = get(app, account=a)
    assert resp.status_code == 200 and resp.get_json()["lineage"]["tree"]["pipeline_source"] == "API"


def test_a_stale_entry_is_refreshed_as_re_inquiry(app):
    a = random_account()
    complete_account(app.store, a)
    assert get(app, account=a).status_code == 200
    app.c.clock.advance(13 * 3600)  # past the 12 h TTL
    resp = get(app, account=a)
    body = resp.get_json()
    assert resp.status_code == 202 and body["status"] == "RE_INQUIRY"
    assert app.store.get_search("public", a).status == "PENDING"
    assert app.store.get_lineage("public", a).status == "RE_INQUIRY"
    assert len(app.c.queue.tasks) == 1 and app.c.queue.tasks[0]["payload"]["generation"].startswith("r")


def test_the_ttl_comes_from_the_pipeline_config(app):
    a = random_account()
    complete_account(app.store, a)
    app.store.set_config("cache_ttl_hours", 1, T0)
    app.c._config_cache = None
    app.c.clock.advance(2 * 3600)
    assert get(app, account=a).status_code == 202


def test_an_account_known_from_a_crawl_but_never_searched_is_requested(app):
    a = random_account()
    app.store.put_lineage("public", a, stellar_creator_account=GENESIS_ACCOUNT)  # no status
    resp = get(app, account=a)
    assert resp.status_code == 202 and app.store.get_lineage("public", a).status == "PENDING"
    assert len(app.c.queue.tasks) == 1


def test_an_account_that_does_not_exist_is_a_404(app):
    a = random_account()
    get(app, account=a)
    token = app.store.claim("public", a, T0)
    from common import pipeline

    pipeline.fail_account(app.c, "public", a, "horizon: 404 not found", invalid=True, now=T0, claim_token=token)
    resp = get(app, account=a)
    body = resp.get_json()
    assert resp.status_code == 404 and body["error"]["code"] == "account_not_found" and body["error"]["details"]["status"] == "INVALID"
    assert a in body["error"]["message"] and len(app.c.queue.tasks) == 1


def test_a_failed_account_says_so_with_its_last_error(app):
    a = random_account()
    get(app, account=a)
    token = app.store.claim("public", a, T0)
    from common import pipeline

    pipeline.fail_account(app.c, "public", a, "failed after 5 attempts: horizon 503", now=T0, claim_token=token)
    resp = get(app, account=a)
    body = resp.get_json()
    assert resp.status_code == 409 and body["error"]["code"] == "lineage_failed"
    assert body["error"]["details"]["last_error"] == "failed after 5 attempts: horizon 503"
    assert "horizon 503" in body["error"]["message"] and len(app.c.queue.tasks) == 1


# ---------------------------------------------------------------------------------- HTTP surface
def test_cors_only_for_configured_origins_and_preflight(app):
    a = random_account()
    allowed = app.test_client().get("/search", query_string={"account": a}, headers={"Origin": SITE})
    assert allowed.headers["Access-Control-Allow-Origin"] == SITE and "Origin" in allowed.headers["Vary"]
    other = app.test_client().get("/search", query_string={"account": a}, headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    pre = app.test_client().options("/search", headers={"Origin": SITE, "Access-Control-Request-Method": "GET"})
    assert pre.status_code == 204 and pre.headers["Access-Control-Allow-Origin"] == SITE
    assert "GET" in pre.headers["Access-Control-Allow-Methods"]
    bad = app.test_client().get("/search", query_string={"account": "nope"}, headers={"Origin": SITE})
    assert bad.status_code == 400 and bad.headers["Access-Control-Allow-Origin"] == SITE  # errors are readable by the site


def test_unknown_routes_and_methods_are_json_errors(app):
    r = app.test_client().get("/admin", query_string={"account": random_account()})
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found"
    r = app.test_client().delete("/search")
    assert r.status_code == 405 and r.get_json()["error"]["code"] == "method_not_allowed" and "GET" in r.headers["Allow"]
    assert nothing_written(app)


def test_per_client_rate_limit_is_429_with_retry_after(tmp_path):
    app = make_app(tmp_path, SEARCH_RATE_PER_MIN="60", SEARCH_BURST="3")
    client = app.test_client()
    codes = [client.get("/search", query_string={"account": "bad"}, environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code for _ in range(4)]
    assert codes == [400, 400, 400, 429]
    limited = client.get("/search", query_string={"account": random_account()}, environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert limited.status_code == 429 and limited.get_json()["error"]["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1 and nothing_written(app)
    other = client.get("/search", query_string={"account": random_account()}, environ_base={"REMOTE_ADDR": "10.0.0.2"})
    assert other.status_code == 202  # another client is not affected
    app.c.clock.advance(1)  # one request a second refills
    assert client.get("/search", query_string={"account": "bad"}, environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code == 400


def test_forwarded_for_is_trusted_only_as_far_as_configured(tmp_path):
    app = make_app(tmp_path, SEARCH_RATE_PER_MIN="60", SEARCH_BURST="1", SEARCH_TRUSTED_PROXY_HOPS="1")
    client = app.test_client()

    def call(xff):
        return client.get("/search", query_string={"account": "bad"}, environ_base={"REMOTE_ADDR": "169.254.1.1"},
                          headers={"X-Forwarded-For": xff}).status_code

    assert call("1.1.1.1, 203.0.113.5") == 400
    # A caller forging the left part is still the same client (the front end's entry is the last one).
    assert call("9.9.9.9, 203.0.113.5") == 429
    assert call("203.0.113.6") == 400


def test_a_store_that_cannot_be_reached_is_a_503(tmp_path):
    app = make_app(tmp_path, store_cls=DownStore)
    app.store.down = True
    resp = get(app, account=random_account())
    assert resp.status_code == 503 and resp.get_json()["error"]["code"] == "store_unavailable" and resp.headers["Retry-After"]


def test_a_queue_failure_is_a_503_and_the_next_search_enqueues(tmp_path):
    app = make_app(tmp_path, queue=BrokenQueue())
    a = random_account()
    resp = get(app, account=a)
    assert resp.status_code == 503 and resp.get_json()["error"]["code"] == "queue_unavailable"
    assert app.store.get_lineage("public", a).status == "PENDING"  # nothing lost: reset_stale or the next search enqueues it
    healthy = RecordingQueue()
    app.c._overrides["queue"] = healthy
    assert get(app, account=a).status_code == 202 and len(healthy.tasks) == 1


def test_a_schema_behind_the_code_is_a_503_naming_what_is_missing(tmp_path):
    store = SQLiteStore(tmp_path / "old.db")
    from common.store.schema import load_migrations

    migrations.migrate(store, load_migrations()[:1])
    c = Container(Settings.from_env(env={}), SettableClock(T0), store=store, queue=RecordingQueue())
    app = Flask("s")
    app.add_url_rule("/", "s", lambda: handle(request, c))
    resp = app.test_client().get("/", query_string={"account": random_account()})
    assert resp.status_code == 503 and resp.get_json()["error"]["code"] == "schema_behind"
    assert "pipeline_source" in resp.get_json()["error"]["message"]
