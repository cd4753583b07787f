"""stellar.toml enrichment: a rate-limited, SSRF-safe fetch and a real TOML parse.

Safety rules (a home_domain is attacker-controlled text):
- https only, on port 443, to a syntactically valid public host name;
- every address the name resolves to must be public: no private, loopback, link-local,
  multicast, reserved or unspecified address, and the connection is pinned to the checked
  address (no second DNS answer can swap in 127.0.0.1);
- redirects are followed by hand (at most 3), and each target passes the same checks; a Location
  with non-ASCII bytes, spaces or control characters is percent-encoded (as curl and browsers do),
  never sent raw;
- at most 100 KB of body and 16 KB of headers are read, with a short timeout for the whole fetch
  (redirects included); the body must be identity-encoded (Accept-Encoding: identity: nothing is
  ever decompressed), complete (chunked to its last chunk, or as long as its Content-Length) and UTF-8;
- the TOML parser's own limits (nesting depth, integer size) are parse errors like any other;
- `read_stellar_toml` never raises anything but TomlFetchError: whatever else goes wrong in a fetch or
  a parse becomes TomlFetchError("internal_error"), so a hostile file can only ever be a stored toml_error;
- requests are paced (STELLAR_TOML_RATE per second, per process); a caller that cannot wait gets
  TomlFetchError("rate_limited") instead of a sleep (the pipeline defers the check).

The port is `StellarTomlSource` (fetch(domain) -> text); `StellarTomlFetcher` is its adapter.
`toml_source_from_settings(settings)` builds it for the container (explicit argument, else the
environment variable, else the default):
STELLAR_TOML_ENABLED (1: on; 0 turns the stage off), STELLAR_TOML_TIMEOUT_S (5), STELLAR_TOML_RATE (2),
and for local use only (the demo's TLS front on loopback): STELLAR_TOML_CONNECT_TO (host:port every
domain connects to, instead of its DNS answer and port 443), STELLAR_TOML_CA_FILE (an extra CA to
trust), STELLAR_TOML_ALLOW_NETWORKS (comma-separated CIDRs allowed despite the address rules).
"""
from __future__ import annotations

import abc
import dataclasses
import ipaddress
import logging
import math
import re
import socket
import ssl
import threading
import time
import tomllib
from typing import Any, Callable, Iterable
from urllib.parse import quote, urljoin, urlsplit

from common.enrichment.ip_policy import refusal
from common.ratelimit import TokenBucket

log = logging.getLogger(__name__)

MAX_BYTES = 100_000
MAX_HEADER_BYTES = 16_384
TIMEOUT_S = 5.0
MAX_REDIRECTS = 3
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_STATUS_LINE = re.compile(rb"^HTTP/1\.[01] ([1-5][0-9][0-9])(?: |$)")
_CHUNK_SIZE = re.compile(rb"^([0-9A-Fa-f]{1,8})[ \t]*(?:;.*)?$")
_DIGITS = re.compile(r"^[0-9]{1,12}$")
# What may stay as it is in a request target; everything else (non-ASCII bytes, spaces, controls) is %XX.
_URL_SAFE = "/?&=;:@!$'()*+,~%-._"

Resolver = Callable[[str, int], Iterable[str]]


class TomlFetchError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclasses.dataclass(frozen=True)
class TomlInfo:
    org_name: str | None
    org_url: str | None
    lists_account: bool
    accounts: tuple


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError) as exc:
        raise TomlFetchError("dns_failed", f"cannot resolve {host}: {exc}") from None
    return sorted({i[4][0] for i in infos})


@dataclasses.dataclass(frozen=True)
class AddressPolicy:
    """Which addresses a fetch may connect to. Production: public unicast only."""

    extra_allowed: tuple = ()  # ip networks allowed despite the rules (tests on loopback only)

    def check(self, ip_text: str) -> None:
        try:
            ip = ipaddress.ip_address(ip_text)
        except ValueError:
            raise TomlFetchError("forbidden_address", "the resolver answered something that is no IP address") from None
        if any(ip in ipaddress.ip_network(n) for n in self.extra_allowed):
            return
        why = refusal(ip)
        if why:
            raise TomlFetchError("forbidden_address", f"refusing to connect to non-public address {ip_text}: {why}")


PUBLIC_ONLY = AddressPolicy()


def validate_domain(domain: str) -> str:
    """A bare host name (no scheme, port, path, credentials, IP literal)."""
    if not isinstance(domain, str):
        raise TomlFetchError("invalid_domain", "home_domain is not text")
    if len(domain) > 1024:  # before any IDNA work: a host name is at most 253 characters
        raise TomlFetchError("invalid_domain", "home_domain is not a valid host name")
    host = domain.strip().rstrip(".").lower()
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise TomlFetchError("invalid_domain", "home_domain is not a valid host name") from None
    labels = host.split(".")
    if len(host) > 253 or len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise TomlFetchError("invalid_domain", "home_domain is not a valid host name")
    try:
        ipaddress.ip_address(host)
        raise TomlFetchError("invalid_domain", "home_domain must be a name, not an IP address")
    except ValueError:
        pass
    if labels[-1].isdigit():
        raise TomlFetchError("invalid_domain", "home_domain must be a name, not an IP address")
    return host


class _RateLimiter:
    """Paces the fetches: one at a time, `per_second` a second (a token bucket of one; 0: no pacing)."""

    def __init__(self, per_second: float):
        self._bucket = TokenBucket(per_second, 1, now=0.0) if per_second > 0 else None
        self._lock = threading.Lock()

    def wait(self, max_wait_s: float = math.inf) -> None:
        if self._bucket is None:
            return
        with self._lock:
            now = time.monotonic()
            delay = self._bucket.wait_s(now)
            if delay > max_wait_s:
                raise TomlFetchError("rate_limited", f"stellar.toml fetches are paced: next slot in {delay:.1f}s")
            self._bucket.tat = self._bucket.spend_at(self._bucket.tat, now)
        if delay > 0:
            time.sleep(delay)


class StellarTomlSource(abc.ABC):
    """The stellar.toml port: the file's text for a home domain, or TomlFetchError(code, message)."""

    @abc.abstractmethod
    def fetch(self, domain: str, max_wait_s: float = math.inf) -> str:
        """`max_wait_s`: the longest the caller may wait for the pacing limiter."""

    def close(self) -> None:
        """Release resources (optional)."""


class StellarTomlFetcher(StellarTomlSource):
    def __init__(
        self,
        resolver: Resolver = system_resolver,
        policy: AddressPolicy = PUBLIC_ONLY,
        timeout_s: float = TIMEOUT_S,
        max_bytes: int = MAX_BYTES,
        requests_per_second: float = 2.0,
        ssl_context: ssl.SSLContext | None = None,
        port: int = 443,
    ):
        self.resolver = resolver
        self.policy = policy
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.port = port  # 443 in production; tests run a TLS server on a loopback port
        self.limiter = _RateLimiter(requests_per_second)
        self.ssl_context = ssl_context or ssl.create_default_context()

    def fetch(self, domain: str, max_wait_s: float = math.inf) -> str:
        host = validate_domain(domain)
        url = f"https://{host}/.well-known/stellar.toml"
        deadline = time.monotonic() + self.timeout_s  # one budget for the whole fetch, redirects included
        for _ in range(MAX_REDIRECTS + 1):
            status, headers, body = self._get(url, max_wait_s, deadline)
            if status in (301, 302, 303, 307, 308):
                url = _redirect_target(url, headers.get("location"))
                continue
            if status != 200:
                raise TomlFetchError("http_error", f"stellar.toml answered HTTP {status}")
            try:
                return body.decode("utf-8-sig")  # a leading byte-order mark is not part of the TOML
            except UnicodeDecodeError:
                raise TomlFetchError("malformed", "stellar.toml is not UTF-8") from None
        raise TomlFetchError("too_many_redirects", f"more than {MAX_REDIRECTS} redirects")

    def _get(self, url: str, max_wait_s: float = math.inf, deadline: float | None = None) -> tuple[int, dict, bytes]:
        try:
            parts = urlsplit(url)
            explicit_port = parts.port  # ValueError: not a number, or out of range
        except ValueError:
            raise TomlFetchError("invalid_url", "the stellar.toml URL is malformed") from None
        if parts.scheme != "https":
            raise TomlFetchError("not_https", "stellar.toml must be fetched over https")
        if parts.username or parts.password:
            raise TomlFetchError("invalid_url", "credentials in a stellar.toml URL are refused")
        host = validate_domain(parts.hostname or "")
        port = explicit_port or self.port
        if port != self.port:
            raise TomlFetchError("invalid_url", "stellar.toml must be served on the https port")
        addresses = list(self.resolver(host, port))
        if not addresses:
            raise TomlFetchError("dns_failed", f"{host} has no address")
        for ip in addresses:
            self.policy.check(ip)  # every answer must be public, not just the first
        self.limiter.wait(max_wait_s)
        path = quote(parts.path or "/", safe=_URL_SAFE) + (f"?{quote(parts.query, safe=_URL_SAFE)}" if parts.query else "")
        return self._request(addresses[0], port, host, path, deadline)

    def _request(self, ip: str, port: int, host: str, path: str, deadline: float | None = None) -> tuple[int, dict, bytes]:
        if deadline is None:
            deadline = time.monotonic() + self.timeout_s
        left = deadline - time.monotonic()
        if left <= 0:
            raise TomlFetchError("timeout", f"stellar.toml from {host} took longer than {self.timeout_s:g}s")
        too_slow = TomlFetchError("timeout", f"stellar.toml from {host} took longer than {self.timeout_s:g}s")
        try:
            raw = socket.create_connection((ip, port), timeout=left)
        except TimeoutError:
            raise too_slow from None
        except OSError as exc:
            raise TomlFetchError("connect_failed", f"cannot connect to {host}: {exc}") from None
        try:
            raw.settimeout(max(0.05, deadline - time.monotonic()))  # the handshake spends the same budget
            sock = self.ssl_context.wrap_socket(raw, server_hostname=host)
        except TimeoutError:
            raw.close()
            raise too_slow from None
        except (ssl.SSLError, OSError) as exc:
            raw.close()
            raise TomlFetchError("tls_failed", f"TLS with {host} failed: {exc}") from None
        try:
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: StellarMap/1 (+stellar.toml enrichment)\r\n"
                "Accept: text/plain, application/toml, */*\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n"
            )
            sock.sendall(request.encode("ascii"))
            data = bytearray()
            limit = self.max_bytes + MAX_HEADER_BYTES
            while True:
                if time.monotonic() > deadline:
                    raise TomlFetchError("timeout", f"stellar.toml from {host} took longer than {self.timeout_s:.0f}s")
                sock.settimeout(max(0.05, deadline - time.monotonic()))
                try:
                    chunk = sock.recv(65536)
                except socket.timeout:
                    raise TomlFetchError("timeout", f"stellar.toml from {host} took longer than {self.timeout_s:.0f}s") from None
                if not chunk:
                    break
                data += chunk
                if len(data) > limit:
                    raise TomlFetchError("too_large", f"stellar.toml is larger than {self.max_bytes} bytes")
                if len(data) > MAX_HEADER_BYTES and b"\r\n\r\n" not in data[:MAX_HEADER_BYTES + 4]:
                    raise TomlFetchError("headers_too_large", f"{host} sent more than {MAX_HEADER_BYTES} bytes of headers")
        except OSError as exc:
            raise TomlFetchError("connect_failed", f"reading from {host} failed: {exc}") from None
        finally:
            sock.close()
        return self._parse_response(bytes(data), host)

    def _parse_response(self, data: bytes, host: str) -> tuple[int, dict, bytes]:
        while True:
            head, sep, body = data.partition(b"\r\n\r\n")
            if not sep:
                raise TomlFetchError("malformed", f"{host} sent a malformed HTTP response")
            if len(head) > MAX_HEADER_BYTES:
                raise TomlFetchError("headers_too_large", f"{host} sent more than {MAX_HEADER_BYTES} bytes of headers")
            lines = head.split(b"\r\n")
            m = _STATUS_LINE.match(lines[0])
            if not m:
                raise TomlFetchError("malformed", f"{host} sent a malformed status line")
            status = int(m.group(1))
            if status >= 200:
                break
            data = body  # an interim 1xx answer: the real one follows
        headers = {}
        for line in lines[1:]:
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip(" \t").lower()] = v.strip(" \t")  # str.strip() would also eat bytes like 0xA0
        encoding = headers.get("content-encoding", "identity").lower()
        if encoding not in ("", "identity"):
            # Asked for identity: a compressed body is refused, never decompressed (no decompression bombs).
            raise TomlFetchError("unsupported_encoding", f"{host} sent a {encoding[:40]}-encoded body; only identity is accepted")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = _dechunk(body, self.max_bytes)
        elif "content-length" in headers:
            length = headers["content-length"]
            if not _DIGITS.match(length):
                raise TomlFetchError("malformed", f"{host} sent a malformed Content-Length")
            if len(body) < int(length):
                raise TomlFetchError("truncated", f"{host} closed the connection before the end of the body")
            body = body[: int(length)]
        if len(body) > self.max_bytes:
            raise TomlFetchError("too_large", f"stellar.toml is larger than {self.max_bytes} bytes")
        return status, headers, body


def _redirect_target(url: str, location: str | None) -> str:
    """The next URL of a redirect. The Location header arrives as latin-1 text (its bytes as they came):
    UTF-8 is read as UTF-8 (an IDN host becomes punycode later), and path and query are
    percent-encoded when the request is written."""
    if not location:
        raise TomlFetchError("bad_redirect", "redirect without a Location")
    raw = location.encode("latin-1", "replace")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:  # not UTF-8: each high byte is sent back as itself, percent-encoded
        text = "".join(chr(b) if b < 0x80 else f"%{b:02X}" for b in raw)
    try:
        return urljoin(url, text)
    except ValueError:
        raise TomlFetchError("bad_redirect", "redirect to a malformed URL") from None


def _dechunk(body: bytes, max_bytes: int) -> bytes:
    """A chunked body, complete to its last (zero) chunk; anything else is malformed or truncated."""
    out, rest = bytearray(), body
    while True:
        size_line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            raise TomlFetchError("truncated", "the chunked body ends before its last chunk")
        m = _CHUNK_SIZE.match(size_line)
        if not m:
            raise TomlFetchError("malformed", "bad chunked encoding")
        size = int(m.group(1), 16)
        if size == 0:
            return bytes(out)
        if len(out) + size > max_bytes:
            raise TomlFetchError("too_large", f"stellar.toml is larger than {max_bytes} bytes")
        if len(rest) < size + 2:
            raise TomlFetchError("truncated", "the chunked body ends inside a chunk")
        if rest[size : size + 2] != b"\r\n":
            raise TomlFetchError("malformed", "bad chunked encoding")
        out += rest[:size]
        rest = rest[size + 2 :]


def parse_stellar_toml(text: str, account: str) -> TomlInfo:
    """Organisation name and URL, and whether ACCOUNTS lists this account."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TomlFetchError("malformed", f"stellar.toml is not valid TOML: {exc}") from None
    except RecursionError:
        raise TomlFetchError("malformed", "stellar.toml is not valid TOML: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer longer than Python converts (4,300 digits)
        raise TomlFetchError("malformed", f"stellar.toml is not valid TOML: {exc}") from None
    doc_info = doc.get("DOCUMENTATION") if isinstance(doc.get("DOCUMENTATION"), dict) else {}
    accounts = doc.get("ACCOUNTS") if isinstance(doc.get("ACCOUNTS"), list) else []
    accounts = tuple(a for a in accounts if isinstance(a, str))[:10_000]

    def text_or_none(v):
        return v[:500] if isinstance(v, str) else None

    return TomlInfo(
        org_name=text_or_none(doc_info.get("ORG_NAME")),
        org_url=text_or_none(doc_info.get("ORG_URL")),
        lists_account=account in accounts,
        accounts=accounts,
    )


def read_stellar_toml(source: StellarTomlSource, domain: str, account: str, max_wait_s: float = math.inf) -> TomlInfo:
    """Fetch and parse a home domain's stellar.toml. Raises TomlFetchError only: enrichment never
    fails or delays a lineage, so anything a hostile server or file could still trip is reported
    as TomlFetchError("internal_error") (and logged), never raised as itself."""
    try:
        return parse_stellar_toml(source.fetch(domain, max_wait_s), account)
    except TomlFetchError:
        raise
    except Exception as exc:  # noqa: BLE001 - see above; the log keeps the traceback for us
        log.exception("stellar.toml of %r: unexpected %s", domain[:300] if isinstance(domain, str) else domain, type(exc).__name__)
        raise TomlFetchError("internal_error", f"stellar.toml check failed: {type(exc).__name__}") from None


# ---------------------------------------------------------------------------------- settings
def _flag(raw: Any, name: str) -> bool:
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    from common.config import ConfigError

    raise ConfigError(name, f"must be 1 or 0, got {raw!r}")


def _number(raw: Any, name: str, low: float, high: float) -> float:
    from common.config import bounded_number

    return bounded_number(name, raw, low, high)


def toml_source_from_settings(settings, enabled: Any = None, timeout_s: Any = None, rate: Any = None,
                              connect_to: str | None = None, ca_file: str | None = None,
                              allow_networks: Any = None) -> StellarTomlSource | None:
    """The container's stellar.toml client, or None when STELLAR_TOML_ENABLED=0. Builds, never connects."""
    from common.config import ConfigError

    def get(name: str, explicit: Any, default: Any) -> Any:
        if explicit is not None:
            return explicit
        return settings.optional(name, default) if settings is not None else default

    if not _flag(get("STELLAR_TOML_ENABLED", enabled, "1"), "STELLAR_TOML_ENABLED"):
        return None
    timeout = _number(get("STELLAR_TOML_TIMEOUT_S", timeout_s, TIMEOUT_S), "STELLAR_TOML_TIMEOUT_S", 0.05, 60)
    per_second = _number(get("STELLAR_TOML_RATE", rate, 2.0), "STELLAR_TOML_RATE", 0.01, 1000)
    networks = get("STELLAR_TOML_ALLOW_NETWORKS", allow_networks, "")
    if isinstance(networks, str):
        networks = [n.strip() for n in networks.split(",") if n.strip()]
    try:
        networks = tuple(str(ipaddress.ip_network(n)) for n in networks)
    except ValueError as exc:
        raise ConfigError("STELLAR_TOML_ALLOW_NETWORKS", f"not a network: {exc}") from None
    ca = get("STELLAR_TOML_CA_FILE", ca_file, "")
    context = ssl.create_default_context()
    if ca:
        try:
            context.load_verify_locations(cafile=str(ca))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError("STELLAR_TOML_CA_FILE", f"cannot load {ca}: {exc}") from None
    resolver: Resolver = system_resolver
    port = 443
    target = get("STELLAR_TOML_CONNECT_TO", connect_to, "")
    if target:
        host, sep, port_text = str(target).rpartition(":")
        if not sep or not host or not _DIGITS.match(port_text) or not 0 < int(port_text) < 65536:
            raise ConfigError("STELLAR_TOML_CONNECT_TO", f"must be host:port, got {target!r}")
        host, port = host.strip("[]"), int(port_text)

        def resolver(_name: str, p: int, _host: str = host) -> list[str]:
            return system_resolver(_host, p)

    return StellarTomlFetcher(resolver=resolver, policy=AddressPolicy(extra_allowed=networks), timeout_s=timeout,
                              requests_per_second=per_second, ssl_context=context, port=port)
