"""The bulk-queue endpoint: internal auth, input errors, the same report as the CLI."""
import json

import pytest
from flask import Flask

from common.bootstrap import Container
from common.clock import SettableClock
from common.config import Settings
from common.handlers.bulk_queue import handle
from common.store import migrations
from common.store.sqlite import SQLiteStore
from tests.fakes import RecordingQueue
from tests.support import random_account

pytestmark = pytest.mark.unit
TOKEN = "s3cret-internal"


@pytest.fixture
def app(tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
    migrations.migrate(store)
    c = Container(Settings.from_env(env={}, internal_token=TOKEN), SettableClock(), store=store, queue=RecordingQueue())
    flask_app = Flask("bulk")
    flask_app.add_url_rule("/", "bulk", lambda: handle(__import__("flask").request, c), methods=["GET", "POST"])
    flask_app.container = c
    yield flask_app
    store.close()


def _post(app, data, **kw):
    headers = kw.pop("headers", {"Authorization": f"Bearer {TOKEN}"})
    return app.test_client().post("/", data=data, headers=headers, **kw)


def test_public_callers_are_refused(app):
    assert _post(app, random_account(), headers={}).status_code == 401
    assert _post(app, random_account(), headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert app.container.queue.tasks == []


def test_text_lines_report_and_enqueue(app):
    good = [random_account() for _ in range(3)]
    resp = _post(app, "\n".join([good[0], "nope", good[1], good[0], good[2]]), query_string={"network": "testnet"}, content_type="text/plain")
    body = resp.get_json()
    assert resp.status_code == 200
    assert body["enqueued"] == 3 and body["duplicates"] == 1 and [e["line"] for e in body["errors"]] == [2]
    assert {t["payload"]["network"] for t in app.container.queue.tasks} == {"testnet"}


def test_json_body(app):
    good = random_account()
    resp = _post(app, json.dumps({"network": "public", "accounts": [good, 5]}), content_type="application/json")
    assert resp.status_code == 200 and resp.get_json()["enqueued"] == 1 and resp.get_json()["errors"][0]["line"] == 2


@pytest.mark.parametrize(
    "data, ctype, code",
    [("{not json", "application/json", "invalid_json"), ('{"accounts": "x"}', "application/json", "invalid_json"),
     ('{"network": "mainnet", "accounts": []}', "application/json", "invalid_network")],
)
def test_bad_requests_write_nothing(app, data, ctype, code):
    resp = _post(app, data, content_type=ctype)
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == code
    assert app.container.queue.tasks == []


def test_get_is_not_allowed(app):
    resp = app.test_client().get("/", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 405
