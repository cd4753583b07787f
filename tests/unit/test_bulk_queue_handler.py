"""The bulk-queue endpoint: internal auth, input errors, the same report as the CLI, the body cap."""
import io
import json

import pytest
from flask import Flask
from werkzeug.test import EnvironBuilder, run_wsgi_app

from common.bootstrap import Container
from common.clock import SettableClock
from common.config import Settings
from common.handlers.bulk_queue import MAX_BODY_BYTES, handle
from common.store import migrations
from common.store.sqlite import SQLiteStore
from local.testing.fakes import RecordingQueue
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


class _ChunkedBody(io.RawIOBase):
    """A request body with no Content-Length (Transfer-Encoding: chunked, as the WSGI server hands it
    over: already de-chunked, `wsgi.input_terminated` set); counts the bytes the handler reads."""

    def __init__(self, head: bytes, filler: bytes, total: int):
        self.data, self.filler, self.total, self.read_bytes = head, filler, total, 0

    def readable(self):
        return True

    def readinto(self, buf):
        n = min(len(buf), self.total - self.read_bytes)
        if n <= 0:
            return 0
        out = (self.data + self.filler * (n // len(self.filler) + 1))[:n] if self.read_bytes == 0 else (self.filler * (n // len(self.filler) + 1))[:n]
        buf[:n] = out
        self.read_bytes += n
        return n


def _post_chunked(app, body: _ChunkedBody, ctype="text/plain", declared_length: int | None = None):
    environ = EnvironBuilder(path="/", method="POST", content_type=ctype,
                             headers={"Authorization": f"Bearer {TOKEN}", "Transfer-Encoding": "chunked"}).get_environ()
    environ.pop("CONTENT_LENGTH", None)  # what a WSGI server passes for a chunked body
    environ.update({"wsgi.input": body, "wsgi.input_terminated": True})
    if declared_length is not None:
        environ["CONTENT_LENGTH"] = str(declared_length)
        del environ["HTTP_TRANSFER_ENCODING"], environ["wsgi.input_terminated"]
    app_iter, status, headers = run_wsgi_app(app, environ, buffered=True)
    return app.response_class(app_iter, status, headers)


def test_a_chunked_body_over_the_cap_is_413_after_reading_no_more_than_the_cap(app):
    good = "\n".join(random_account() for _ in range(5)).encode() + b"\n"
    body = _ChunkedBody(good, b"# padding line\n", total=MAX_BODY_BYTES * 4)  # 48 MB offered, no length declared
    resp = _post_chunked(app, body)
    assert resp.status_code == 413 and resp.get_json()["error"]["code"] == "body_too_large"
    assert "12 MB" in resp.get_json()["error"]["message"]
    assert body.read_bytes == MAX_BODY_BYTES + 1, "the cap is on the bytes read, not on a header"
    assert app.container.queue.tasks == [] and app.container.store.get_lineage("public", good[:56].decode()) is None


def test_a_chunked_body_within_the_cap_is_read_whole(app):
    good = [random_account() for _ in range(3)]
    body = _ChunkedBody(("\n".join(good) + "\n").encode(), b"#" + b"c" * 99 + b"\n", total=MAX_BODY_BYTES)  # exactly the cap
    resp = _post_chunked(app, body)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["enqueued"] == 3 and body.read_bytes == MAX_BODY_BYTES


def test_a_declared_length_over_the_cap_is_refused_before_reading(app):
    body = _ChunkedBody(b"", b"x", total=MAX_BODY_BYTES + 1)
    resp = _post_chunked(app, body, declared_length=MAX_BODY_BYTES + 1)
    assert resp.status_code == 413 and body.read_bytes == 0
