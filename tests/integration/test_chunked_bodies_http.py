"""Request bodies without a Content-Length (Transfer-Encoding: chunked) over real HTTP, under
functions-framework as the functions run: the body caps hold for the bytes actually read.

- bulk_queue: a chunked body over its 12 MB cap is a 413 body_too_large and nothing is written
  (it used to be read whole: the cap looked only at the Content-Length header);
- search: a chunked JSON body is read (it used to be ignored), and one over 16 KB is refused.
"""
from __future__ import annotations

import json
import socket
import threading
import urllib.parse

import pytest

from common.handlers.bulk_queue import MAX_BODY_BYTES
from common.queue.sqlite_queue import TaskDB
from tests.integration.test_search_http import search_function
from tests.support import random_account

pytestmark = pytest.mark.integration
TOKEN = "t"  # search_function's INTERNAL_TOKEN


def post_chunked(base: str, path: str, chunks, headers: dict) -> tuple[int, dict]:
    """POST with Transfer-Encoding: chunked from a raw socket (the body is sent while the answer is read:
    a server that stops reading early answers before the client has finished sending)."""
    url = urllib.parse.urlsplit(base)
    sock = socket.create_connection((url.hostname, url.port), timeout=120)
    head = f"POST {path} HTTP/1.1\r\nHost: {url.netloc}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"

    def send() -> None:
        try:
            sock.sendall(head.encode())
            for chunk in chunks:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed before the whole body was sent: expected for a refusal

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    data = b""
    try:
        while True:
            got = sock.recv(65536)
            if not got:
                break
            data += got
    except ConnectionResetError:
        pass  # unread request bytes make the server's close a reset; the answer came before it
    finally:
        sock.close()
        sender.join(timeout=60)
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    status = int(head_bytes.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head_bytes.lower():
        body = _dechunk(body)
    return status, json.loads(body)


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size, _, body = body.partition(b"\r\n")
        n = int(size.split(b";")[0], 16)
        if n == 0:
            break
        out, body = out + body[:n], body[n + 2:]
    return out


def _lines(total_bytes: int, first: list[str]):
    """`first` accounts, then comment lines, in 64 KB chunks: `total_bytes` in all."""
    head = ("\n".join(first) + "\n").encode()
    filler = (b"#" + b"c" * 98 + b"\n") * 655  # 65,500 bytes
    yield head
    sent = len(head)
    while sent < total_bytes:
        chunk = filler[: total_bytes - sent]
        sent += len(chunk)
        yield chunk


@pytest.fixture
def sqlite_env(sqlite_store):
    return {"STELLARMAP_STORE": "sqlite", "STELLARMAP_SQLITE_PATH": sqlite_store.path}


def test_bulk_queue_refuses_a_chunked_body_over_its_cap_and_writes_nothing(sqlite_store, sqlite_env, tmp_path):
    good = [random_account() for _ in range(5)]
    with search_function(sqlite_env, tmp_path, target="bulk_queue") as (base, _):
        status, body = post_chunked(base, "/?network=public", _lines(MAX_BODY_BYTES + 1_000_000, good),
                                    {"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain"})
        assert status == 413 and body["error"]["code"] == "body_too_large", body
        db = TaskDB(tmp_path / "tasks.sqlite3")
        try:
            assert db.tasks() == []
        finally:
            db.close()
        assert all(sqlite_store.get_lineage("public", a) is None for a in good)
        # The same accounts in a chunked body within the cap are queued: chunked bodies as such are fine.
        status, body = post_chunked(base, "/?network=public", _lines(200_000, good),
                                    {"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain"})
        assert status == 200 and body["enqueued"] == 5, body
        assert all(sqlite_store.get_lineage("public", a).status == "PENDING" for a in good)


def test_search_reads_a_chunked_json_body_and_caps_it(sqlite_store, sqlite_env, tmp_path):
    account = random_account()
    with search_function(sqlite_env, tmp_path) as (base, _):
        payload = json.dumps({"account": account, "network": "public"}).encode()
        status, body = post_chunked(base, "/search", [payload[:10], payload[10:]], {"Content-Type": "application/json"})
        assert status == 202 and body["status"] == "PENDING", body
        big = json.dumps({"account": random_account(), "pad": "x" * 40_000}).encode()
        status, body = post_chunked(base, "/search", [big[i:i + 4096] for i in range(0, len(big), 4096)],
                                    {"Content-Type": "application/json"})
        assert status == 400 and body["error"]["code"] == "body_too_large", body
