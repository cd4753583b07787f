"""The local TLS front relays stellar.toml, and an upstream that drops the connection makes the
front drop its client's connection too, quietly (no answer made up, no traceback)."""
from __future__ import annotations

import http.server
import socket
import ssl
import struct
import threading

import pytest

from local.tls_front import TlsFront

pytestmark = pytest.mark.unit

HOST = "site-1.example"


class _Toml(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        body = b'VERSION="2.0.0"\n'
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.server.paths.append(self.path)


def _resetting_server() -> tuple[socket.socket, int]:
    """Accepts, reads the request and resets the connection (RST: SO_LINGER with a 0 timeout)."""
    srv = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conn.recv(4096)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


def _get(front: TlsFront) -> bytes:
    ctx = ssl.create_default_context(cafile=str(front.ca_file))
    with socket.create_connection(("127.0.0.1", front.port), timeout=10) as raw, ctx.wrap_socket(raw, server_hostname=HOST) as tls:
        tls.sendall(f"GET /.well-known/stellar.toml HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        out = b""
        while chunk := tls.recv(65536):
            out += chunk
        return out


def test_the_front_relays_the_domain_s_toml():
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Toml)
    upstream.paths = []
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    try:
        with TlsFront(f"http://127.0.0.1:{upstream.server_address[1]}", [HOST]) as front:
            answer = _get(front)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'VERSION="2.0.0"\n')
        assert upstream.paths == [f"/toml/{HOST}/.well-known/stellar.toml"]
    finally:
        upstream.shutdown()
        upstream.server_close()


def test_an_upstream_reset_drops_the_client_connection_quietly(capfd):
    srv, port = _resetting_server()
    try:
        with TlsFront(f"http://127.0.0.1:{port}", [HOST]) as front:
            try:
                answer = _get(front)
            except (ConnectionError, ssl.SSLError):
                answer = b""
        assert answer == b"", "no answer is made up for a dropped upstream"
        assert "Traceback" not in capfd.readouterr().err
    finally:
        srv.close()
