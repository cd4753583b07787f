"""stellar.toml enrichment cannot be knocked over: a raw TLS server sends exactly the bytes a hostile or
broken host would (non-ASCII redirects, huge headers, compressed or truncated bodies, bad chunking,
odd status lines), and hostile files meet the TOML parser's limits. Every case is a TomlFetchError
with a code (a stored toml_error), never another exception; a well-formed oddity is followed properly."""
from __future__ import annotations

import gzip
import math
import socket
import ssl
import threading

import pytest

from common.config import ConfigError, Settings
from common.enrichment.toml import (
    AddressPolicy,
    StellarTomlFetcher,
    StellarTomlSource,
    TomlFetchError,
    parse_stellar_toml,
    read_stellar_toml,
    toml_source_from_settings,
)
from local.tls_front import make_certificate

pytestmark = pytest.mark.unit
ACCOUNT = "GAAZI4TCR3TY5OJHCTJC2A4QSY6CJWJH5IAJTGKIN2ER7LBNVKOCCWN7"
GOOD = f'ACCOUNTS = ["{ACCOUNT}"]\n[DOCUMENTATION]\nORG_NAME = "Good Org"\n'.encode()
WELL_KNOWN = "/.well-known/stellar.toml"
IDN_HOST = "xn--bcher-kva.example"  # bücher.example


def ok(body: bytes, *headers: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\n" + b"".join(h + b"\r\n" for h in headers)
    return head + b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body


def redirect(location: bytes) -> bytes:
    return b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def chunked(*parts: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + b"".join(parts)


class RawTlsServer:
    """Answers each request with canned bytes chosen by (Host, request target); records the targets."""

    def __init__(self, names: list[str], workdir):
        ca, crt, key = make_certificate(names, workdir)
        self.ca = ca
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(crt, key)
        self.routes: dict[tuple[str, str], bytes] = {}
        self.seen: list[tuple[str, bytes]] = []
        self.requests: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(raw,), daemon=True).start()

    def _one(self, raw: socket.socket) -> None:
        try:
            with self.ctx.wrap_socket(raw, server_side=True) as conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    request += chunk
                lines = request.split(b"\r\n")
                target = lines[0].split(b" ")[1]
                host = next(l.split(b":", 1)[1].strip().decode() for l in lines[1:] if l.lower().startswith(b"host:"))
                self.seen.append((host, target))
                self.requests.append(request)
                conn.sendall(self.routes.get((host, target.decode("latin-1")), b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"))
        except (OSError, ssl.SSLError):
            pass

    def fetcher(self, **kw) -> StellarTomlFetcher:
        kw.setdefault("timeout_s", 3.0)
        return StellarTomlFetcher(resolver=lambda h, p: ["127.0.0.1"], policy=AddressPolicy(extra_allowed=("127.0.0.1/32",)),
                                  ssl_context=ssl.create_default_context(cafile=str(self.ca)), port=self.port,
                                  requests_per_second=1000, **kw)

    def close(self) -> None:
        self._stop = True
        self.sock.close()


NAMES = ["unicode.example", "latin1.example", "spaces.example", "idn-redirect.example", IDN_HOST, "badport.example",
         "bigport.example", "badv6.example", "headers.example", "gzip.example", "chunked.example", "chunk-trunc.example",
         "chunk-neg.example", "chunk-huge.example", "short.example", "status.example", "continue.example", "bom.example",
         "utf16.example", "nul-status.example"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = RawTlsServer(NAMES, tmp_path_factory.mktemp("raw-tls"))
    p = s.port
    r = s.routes
    # A UTF-8 Location (what most servers send for non-ASCII): followed, percent-encoded byte for byte.
    r[("unicode.example", WELL_KNOWN)] = redirect("/.well-known/stellar.toml?lang=español&x=①".encode())
    r[("unicode.example", WELL_KNOWN + "?lang=espa%C3%B1ol&x=%E2%91%A0")] = ok(GOOD)
    # A latin-1 byte that is no UTF-8: sent back as the same byte, percent-encoded.
    r[("latin1.example", WELL_KNOWN)] = redirect(b"/.well-known/stellar.toml?caf\xe9")
    r[("latin1.example", WELL_KNOWN + "?caf%E9")] = ok(GOOD)
    # Spaces and a bare LF in a Location can never reach the request line raw (no header injection):
    # URL parsing drops tabs and line breaks (as WHATWG URL parsers do), spaces are percent-encoded.
    r[("spaces.example", WELL_KNOWN)] = redirect(b"/a b\nHost: evil.example")
    r[("spaces.example", "/a%20bHost:%20evil.example")] = ok(GOOD)
    # An IDN host in a Location becomes punycode.
    r[("idn-redirect.example", WELL_KNOWN)] = redirect(f"https://bücher.example:{p}/.well-known/stellar.toml".encode())
    r[(IDN_HOST, WELL_KNOWN)] = ok(GOOD)
    r[("badport.example", WELL_KNOWN)] = redirect(b"https://badport.example:abc/.well-known/stellar.toml")
    r[("bigport.example", WELL_KNOWN)] = redirect(b"https://bigport.example:99999/.well-known/stellar.toml")
    r[("badv6.example", WELL_KNOWN)] = redirect(b"https://[::1/.well-known/stellar.toml")
    r[("headers.example", WELL_KNOWN)] = ok(GOOD, *[b"X-Padding-%d: %s" % (i, b"p" * 100) for i in range(200)])
    r[("gzip.example", WELL_KNOWN)] = ok(gzip.compress(b"# " + b"0" * 10_000_000), b"Content-Encoding: gzip")
    r[("chunked.example", WELL_KNOWN)] = chunked(b"%x\r\n" % 10, GOOD[:10], b"\r\n", b"%x;ext=1\r\n" % (len(GOOD) - 10),
                                                  GOOD[10:], b"\r\n0\r\n\r\n")
    r[("chunk-trunc.example", WELL_KNOWN)] = chunked(b"%x\r\n" % len(GOOD), GOOD, b"\r\n")
    r[("chunk-neg.example", WELL_KNOWN)] = chunked(b"-5\r\n", GOOD, b"\r\n0\r\n\r\n")
    r[("chunk-huge.example", WELL_KNOWN)] = chunked(b"ffffffff\r\n", GOOD, b"\r\n0\r\n\r\n")
    r[("short.example", WELL_KNOWN)] = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n" + GOOD
    r[("status.example", WELL_KNOWN)] = "HTTP/1.1 ２００ OK\r\nContent-Length: 0\r\n\r\n".encode()
    r[("nul-status.example", WELL_KNOWN)] = b"HTTP/1.1 -200 OK\r\nContent-Length: 0\r\n\r\n"
    r[("continue.example", WELL_KNOWN)] = b"HTTP/1.1 100 Continue\r\n\r\n" + ok(GOOD)
    r[("bom.example", WELL_KNOWN)] = ok(b"\xef\xbb\xbf" + GOOD)
    r[("utf16.example", WELL_KNOWN)] = ok(GOOD.decode().encode("utf-16"))
    yield s
    s.close()


@pytest.mark.parametrize("host, target", [
    ("unicode.example", b"/.well-known/stellar.toml?lang=espa%C3%B1ol&x=%E2%91%A0"),
    ("latin1.example", b"/.well-known/stellar.toml?caf%E9"),
    ("spaces.example", b"/a%20bHost:%20evil.example"),
])
def test_a_non_ascii_or_unsafe_location_is_followed_percent_encoded(server, host, target):
    info = parse_stellar_toml(server.fetcher().fetch(host), ACCOUNT)
    assert info.lists_account and info.org_name == "Good Org"
    assert (host, target) in server.seen
    assert not any(h == "evil.example" for h, _ in server.seen), "no injected header ever reached the server"


def test_an_idn_host_in_a_redirect_is_fetched_as_punycode(server):
    assert parse_stellar_toml(server.fetcher().fetch("idn-redirect.example"), ACCOUNT).lists_account
    assert (IDN_HOST, WELL_KNOWN.encode()) in server.seen


@pytest.mark.parametrize("host, code", [
    ("badport.example", "invalid_url"),
    ("bigport.example", "invalid_url"),
    ("badv6.example", "bad_redirect"),
    ("headers.example", "headers_too_large"),
    ("gzip.example", "unsupported_encoding"),
    ("chunk-trunc.example", "truncated"),
    ("chunk-neg.example", "malformed"),
    ("chunk-huge.example", "too_large"),
    ("short.example", "truncated"),
    ("status.example", "malformed"),
    ("nul-status.example", "malformed"),
    ("utf16.example", "malformed"),
])
def test_broken_or_hostile_answers_are_coded_errors(server, host, code):
    with pytest.raises(TomlFetchError) as info:
        read_stellar_toml(server.fetcher(), host, ACCOUNT)
    assert info.value.code == code, str(info.value)


@pytest.mark.parametrize("host", ["chunked.example", "continue.example", "bom.example"])
def test_well_formed_oddities_are_read(server, host):
    info = read_stellar_toml(server.fetcher(), host, ACCOUNT)
    assert info.lists_account and info.org_name == "Good Org"


def test_the_fetcher_asks_for_an_uncompressed_body(server):
    read_stellar_toml(server.fetcher(), "bom.example", ACCOUNT)
    request = next(r for r in reversed(server.requests) if b"Host: bom.example" in r)
    assert b"\r\nAccept-Encoding: identity\r\n" in request


# ---------------------------------------------------------------------------------- the parser's limits
@pytest.mark.parametrize("text", [
    "ACCOUNTS = " + "[" * 5000 + "]" * 5000,  # RecursionError inside tomllib
    "[DOCUMENTATION]\nORG_NAME = " + "{a = " * 5000 + "1" + "}" * 5000,  # inline tables, the same
    "VERSION = " + "9" * 5000,  # ValueError: longer than Python converts to int
    'ACCOUNTS = ["\\uD800"]',
    "\x00",
])
def test_files_past_the_parser_s_limits_are_malformed(text):
    with pytest.raises(TomlFetchError) as info:
        parse_stellar_toml(text, ACCOUNT)
    assert info.value.code == "malformed"


class _Exploding(StellarTomlSource):
    """A source whose failure is none the fetcher knows: read_stellar_toml still reports a code."""

    def __init__(self, exc: BaseException | None = None, text: str = ""):
        self.exc, self.text = exc, text

    def fetch(self, domain: str, max_wait_s: float = math.inf) -> str:
        if self.exc is not None:
            raise self.exc
        return self.text


@pytest.mark.parametrize("exc", [UnicodeEncodeError("ascii", "é", 0, 1, "x"), RecursionError("deep"), KeyError("k"), MemoryError()])
def test_any_other_failure_is_an_internal_error_code_not_an_exception(exc):
    with pytest.raises(TomlFetchError) as info:
        read_stellar_toml(_Exploding(exc), "x.example", ACCOUNT)
    assert info.value.code == "internal_error" and type(exc).__name__ in str(info.value)


def test_a_coded_error_and_a_good_file_pass_through_unchanged():
    with pytest.raises(TomlFetchError) as info:
        read_stellar_toml(_Exploding(TomlFetchError("rate_limited", "later")), "x.example", ACCOUNT)
    assert info.value.code == "rate_limited"
    assert read_stellar_toml(_Exploding(text=GOOD.decode()), "x.example", ACCOUNT).lists_account


def test_a_connect_to_port_in_other_digits_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        toml_source_from_settings(Settings.from_env(env={}, extra={"STELLAR_TOML_CONNECT_TO": "127.0.0.1:٨٤٤٣"}))
    assert "STELLAR_TOML_CONNECT_TO" in str(info.value)


def test_a_server_that_never_finishes_the_tls_handshake_is_a_timeout():
    silent = socket.create_server(("127.0.0.1", 0))  # accepts the connection (backlog), never answers
    try:
        fetcher = StellarTomlFetcher(resolver=lambda h, p: ["127.0.0.1"], policy=AddressPolicy(extra_allowed=("127.0.0.1/32",)),
                                     port=silent.getsockname()[1], timeout_s=0.3, requests_per_second=1000)
        with pytest.raises(TomlFetchError) as info:
            read_stellar_toml(fetcher, "silent.example", ACCOUNT)
        assert info.value.code == "timeout", str(info.value)
    finally:
        silent.close()
