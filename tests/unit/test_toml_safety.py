"""stellar.toml fetch safety: host names, address policy, pinning, redirects, size and time limits."""
import http.server
import socket
import ssl
import threading
import time

import pytest

from common.enrichment.toml import (
    PUBLIC_ONLY,
    AddressPolicy,
    StellarTomlFetcher,
    TomlFetchError,
    parse_stellar_toml,
    validate_domain,
)
from local.tls_front import make_certificate

pytestmark = pytest.mark.unit
LOOPBACK_OK = AddressPolicy(extra_allowed=("127.0.0.1/32",))
ACCOUNT = "GAAZI4TCR3TY5OJHCTJC2A4QSY6CJWJH5IAJTGKIN2ER7LBNVKOCCWN7"


@pytest.mark.parametrize(
    "domain",
    ["127.0.0.1", "10.0.0.1", "[::1]", "https://x.example", "x.example/path", "x.example:8443", "user@x.example",
     "<script>alert(1)</script>", "a" * 1000, "localhost", "", "x..example", "-x.example", "0x7f.1"],
)
def test_bad_home_domains_are_refused_before_any_network(domain):
    with pytest.raises(TomlFetchError) as info:
        validate_domain(domain)
    assert info.value.code == "invalid_domain"


def test_unicode_domain_becomes_punycode():
    assert validate_domain("BÜCHER.example.") == "xn--bcher-kva.example"


@pytest.mark.parametrize(
    "ip", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0", "100.64.0.1",
           "224.0.0.1", "::1", "fc00::1", "fe80::1", "::ffff:127.0.0.1", "240.0.0.1"],
)
def test_non_public_addresses_are_forbidden(ip):
    with pytest.raises(TomlFetchError) as info:
        PUBLIC_ONLY.check(ip)
    assert info.value.code == "forbidden_address"


def test_public_addresses_pass():
    PUBLIC_ONLY.check("8.8.8.8")
    PUBLIC_ONLY.check("2606:4700:4700::1111")


def test_a_name_resolving_to_loopback_is_never_connected():
    attempts = []

    def resolver(host, port):
        attempts.append(host)
        return ["127.0.0.1"]

    with pytest.raises(TomlFetchError) as info:
        StellarTomlFetcher(resolver=resolver).fetch("evil.example")
    assert info.value.code == "forbidden_address" and attempts == ["evil.example"]


def test_any_private_answer_among_several_is_refused():
    with pytest.raises(TomlFetchError, match="non-public"):
        StellarTomlFetcher(resolver=lambda h, p: ["93.184.216.34", "10.0.0.7"]).fetch("rebind.example")


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}

    def log_message(self, *a):
        pass

    def do_GET(self):
        host = self.headers["Host"].split(":")[0]
        status, headers, body, stall = self.routes[host]
        if stall:
            time.sleep(stall)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (ssl.SSLError, ConnectionError):
            pass  # the fetcher hangs up once it has read its 100 KB: expected, not a server error


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    names = ["good.example", "big.example", "redir.example", "internal.example", "slow.example", "html.example", "loop.example"]
    ca, crt, key = make_certificate(names, tmp_path_factory.mktemp("certs"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    good = f'ACCOUNTS = ["{ACCOUNT}"]\n[DOCUMENTATION]\nORG_NAME = "Good Org"\nORG_URL = "https://good.example"\n'.encode()
    _Handler.routes = {
        "good.example": (200, {"Content-Type": "text/plain"}, good, 0),
        "big.example": (200, {}, b"# x\n" * 40_000, 0),
        "redir.example": (302, {"Location": f"https://internal.example:{port}/.well-known/stellar.toml"}, b"", 0),
        "loop.example": (302, {"Location": f"https://loop.example:{port}/.well-known/stellar.toml"}, b"", 0),
        "slow.example": (200, {}, good, 3),
        "html.example": (200, {"Content-Type": "text/html"}, b"<html><script>alert(1)</script></html>", 0),
    }

    def resolver(host, p):
        return ["10.0.0.5"] if host == "internal.example" else ["127.0.0.1"]

    def fetcher(**kw):
        kw.setdefault("timeout_s", 2.0)
        return StellarTomlFetcher(resolver=resolver, policy=LOOPBACK_OK, ssl_context=ssl.create_default_context(cafile=str(ca)), port=port, requests_per_second=100, **kw)

    yield fetcher
    server.shutdown()


def test_good_toml_is_fetched_and_parsed(tls_server):
    info = parse_stellar_toml(tls_server().fetch("good.example"), ACCOUNT)
    assert info.org_name == "Good Org" and info.org_url == "https://good.example" and info.lists_account


def test_oversized_toml_is_refused(tls_server):
    with pytest.raises(TomlFetchError) as info:
        tls_server().fetch("big.example")
    assert info.value.code == "too_large"


def test_https_redirect_to_a_private_address_is_refused(tls_server):
    with pytest.raises(TomlFetchError) as info:
        tls_server().fetch("redir.example")
    assert info.value.code == "forbidden_address"


def test_redirect_loops_stop(tls_server):
    with pytest.raises(TomlFetchError) as info:
        tls_server().fetch("loop.example")
    assert info.value.code == "too_many_redirects"


def test_slow_server_times_out(tls_server):
    with pytest.raises(TomlFetchError) as info:
        tls_server(timeout_s=0.5).fetch("slow.example")
    assert info.value.code == "timeout"


def test_html_is_malformed_toml(tls_server):
    with pytest.raises(TomlFetchError) as info:
        parse_stellar_toml(tls_server().fetch("html.example"), ACCOUNT)
    assert info.value.code == "malformed"


def test_certificate_must_match(tls_server):
    # A fetcher that trusts only the system CAs refuses the throw-away certificate.
    f = tls_server()
    f.ssl_context = ssl.create_default_context()
    with pytest.raises(TomlFetchError) as info:
        f.fetch("good.example")
    assert info.value.code == "tls_failed"


def test_parse_ignores_junk_types():
    info = parse_stellar_toml('ACCOUNTS = "not a list"\nDOCUMENTATION = 5\n', ACCOUNT)
    assert info == parse_stellar_toml("", ACCOUNT)
    assert not info.lists_account and info.org_name is None


# ---------------------------------------------------------------------------------- settings (the env rule)
from common.config import ConfigError, Settings  # noqa: E402
from common.enrichment.toml import StellarTomlSource, toml_source_from_settings  # noqa: E402


def _settings(**extra):
    return Settings.from_env(env={}, extra=extra)


def test_toml_client_defaults_to_public_only_on_port_443():
    fetcher = toml_source_from_settings(_settings())
    assert isinstance(fetcher, StellarTomlSource) and fetcher.port == 443
    assert fetcher.policy == PUBLIC_ONLY and fetcher.timeout_s == 5.0


def test_toml_client_can_be_turned_off_and_explicit_arguments_win():
    assert toml_source_from_settings(_settings(STELLAR_TOML_ENABLED="0")) is None
    assert toml_source_from_settings(_settings(STELLAR_TOML_ENABLED="0"), enabled="1") is not None


def test_local_settings_point_every_domain_at_one_address(tmp_path):
    ca, _, _ = make_certificate(["x.example"], tmp_path)
    fetcher = toml_source_from_settings(_settings(STELLAR_TOML_CONNECT_TO="127.0.0.1:8443", STELLAR_TOML_CA_FILE=str(ca),
                                                  STELLAR_TOML_ALLOW_NETWORKS="127.0.0.1/32, ::1/128", STELLAR_TOML_TIMEOUT_S="1"))
    assert fetcher.port == 8443 and fetcher.resolver("anything.example", 8443) == ["127.0.0.1"]
    assert fetcher.policy.extra_allowed == ("127.0.0.1/32", "::1/128") and fetcher.timeout_s == 1.0


def test_without_the_allowance_the_local_address_is_still_refused():
    fetcher = toml_source_from_settings(_settings(STELLAR_TOML_CONNECT_TO="127.0.0.1:8443"))
    with pytest.raises(TomlFetchError) as info:
        fetcher.fetch("good.example")
    assert info.value.code == "forbidden_address"


@pytest.mark.parametrize("name, value", [
    ("STELLAR_TOML_ENABLED", "maybe"), ("STELLAR_TOML_TIMEOUT_S", "0"), ("STELLAR_TOML_TIMEOUT_S", "soon"),
    ("STELLAR_TOML_RATE", "-1"), ("STELLAR_TOML_CONNECT_TO", "127.0.0.1"), ("STELLAR_TOML_CONNECT_TO", "h:99999"),
    ("STELLAR_TOML_ALLOW_NETWORKS", "10.0.0.0/33"), ("STELLAR_TOML_CA_FILE", "/nonexistent/ca.pem"),
])
def test_bad_toml_settings_name_the_variable(name, value):
    with pytest.raises(ConfigError) as info:
        toml_source_from_settings(_settings(**{name: value}))
    assert name in str(info.value)


def test_a_caller_that_cannot_wait_is_told_so_instead_of_sleeping():
    fetcher = StellarTomlFetcher(resolver=lambda h, p: ["127.0.0.1"], policy=LOOPBACK_OK, requests_per_second=0.01, port=9)
    with pytest.raises(TomlFetchError) as first:
        fetcher.fetch("a.example", max_wait_s=0)  # takes the slot, then nothing listens on port 9
    assert first.value.code == "connect_failed"
    started = time.monotonic()
    with pytest.raises(TomlFetchError) as second:
        fetcher.fetch("a.example", max_wait_s=0)
    assert second.value.code == "rate_limited" and time.monotonic() - started < 1


def test_the_container_builds_the_toml_client_lazily():
    from common.bootstrap import Container

    c = Container(_settings(STELLAR_TOML_ENABLED="maybe"))
    assert "toml" not in c._built, "nothing built at construction"
    with pytest.raises(ConfigError):
        c.toml
    assert Container(_settings(STELLAR_TOML_ENABLED="0")).toml is None
