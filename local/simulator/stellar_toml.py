"""stellar.toml files (SEP-1) for the simulated home domains, hostile ones included.

Served at {sim}/toml/{domain}/.well-known/stellar.toml, or at /.well-known/stellar.toml with the
domain in the Host header. Hostile domains: a 2 MiB file (SEP-1 caps it at 100 KB), invalid TOML,
redirects to a private or loopback address, an HTML page, files that claim other accounts, a
redirect whose Location carries raw UTF-8 (non-ASCII) bytes, and files nested deeper than a
recursive TOML parser goes (arrays, inline tables).
"""
from __future__ import annotations

import re
import threading

from local.simulator.network import AIRDROP_HOME_DOMAIN, ASSET_SPECS, DOMAIN_SUFFIX, Network
from local.simulator.replies import Reply

TOML = "text/plain; charset=utf-8"
HUGE_TOML_BYTES = 2 * 1024 * 1024
PRIVATE_REDIRECT = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
# Sent as raw UTF-8 bytes (the header writer is latin-1: each byte is one latin-1 character).
UNICODE_REDIRECT = "/.well-known/stellar.toml?lang=español".encode("utf-8").decode("latin-1")
NESTING = 5_000  # far past Python's recursion limit, and only 10 KB
_SITE = re.compile(r"^site-(\d+)\.(.+)$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml(passphrase: str | None, accounts: list[str], org: str, domain: str, currencies=()) -> str:
    lines = ['VERSION = "2.7.0"']
    if passphrase:
        lines.append(f"NETWORK_PASSPHRASE = {_quote(passphrase)}")
    lines.append("ACCOUNTS = [" + ", ".join(_quote(a) for a in accounts) + "]")
    lines += ["", "[DOCUMENTATION]", f"ORG_NAME = {_quote(org)}", f"ORG_URL = {_quote('https://' + domain)}"]
    for code, issuer in currencies:
        lines += ["", "[[CURRENCIES]]", f"code = {_quote(code)}", f"issuer = {_quote(issuer)}", "display_decimals = 2"]
    return "\n".join(lines) + "\n"


class TomlCatalog:
    def __init__(self, networks: dict[str, Network]):
        self._networks = networks
        self._huge: bytes | None = None
        self._lock = threading.Lock()
        self._owners: dict[str, list[tuple[str, int]]] = {}  # domain -> [(network, index)]
        for name, network in networks.items():
            for index, domain in network.domain_override.items():
                self._owners.setdefault(domain.lower(), []).append((name, index))

    def _accounts(self, domain: str) -> list[tuple[Network, int]]:
        owners = [(self._networks[name], index) for name, index in self._owners.get(domain, [])]
        match = _SITE.match(domain)
        if match:
            index = int(match.group(1))
            for network in self._networks.values():
                if DOMAIN_SUFFIX[network.name] == match.group(2) and index < network.size and network.home_domain(index) == domain:
                    owners.append((network, index))
        return owners

    def _huge_body(self) -> bytes:
        with self._lock:
            if self._huge is None:
                head = _toml(None, [], "Huge Anchor", "huge.toml.example").encode()
                pad_line = b"# " + b"padding " * 12 + b"\n"
                count = (HUGE_TOML_BYTES - len(head)) // len(pad_line) + 1
                self._huge = head + pad_line * count
            return self._huge

    def serve(self, domain: str, base: str, query: dict | None = None) -> Reply:
        domain = domain.lower().strip()
        if not _HOSTNAME.match(domain):
            return Reply(404, b"Not Found\n", TOML)  # no DNS name: nothing could serve it
        owners = self._accounts(domain)
        if domain == "unicode-redirect.toml.example" and "lang" not in (query or {}):
            return Reply(302, b"", TOML, [("Location", UNICODE_REDIRECT)])  # with ?lang=: the file below
        if domain == "nested-arrays.toml.example":
            return Reply(200, ("ACCOUNTS = " + "[" * NESTING + "]" * NESTING + "\n").encode(), TOML, [])
        if domain == "nested-tables.toml.example":
            body = "[DOCUMENTATION]\nORG_NAME = " + "{ a = " * NESTING + "1" + " }" * NESTING + "\n"
            return Reply(200, body.encode(), TOML, [])
        if domain == "huge.toml.example":
            return Reply(200, self._huge_body(), TOML, [])
        if domain == "malformed.toml.example":
            body = 'VERSION = "2.7.0\nACCOUNTS = ["G\n[[CURRENCIES]\ncode = \n= = =\n'
            return Reply(200, body.encode(), TOML, [])
        if domain == "redirect-private.toml.example":
            return Reply(302, b"", TOML, [("Location", PRIVATE_REDIRECT)])
        if domain == "redirect-loopback.toml.example":
            return Reply(302, b"", TOML, [("Location", f"{base}/_sim/health")])
        if domain == "html.toml.example":
            page = "<!doctype html><html><body><h1>Welcome</h1><script>alert('toml')</script></body></html>"
            return Reply(200, page.encode(), "text/html; charset=utf-8", [])
        if domain == "impersonator.toml.example":
            # Claims the exchanges' accounts as its own, besides its real one.
            claimed = [n.address(i) for n, i in owners]
            for network in self._networks.values():
                claimed += [network.address(e) for e in network.exchanges]
            body = _toml(None, claimed, "Exchange 1 (official support)", domain)
            return Reply(200, body.encode(), TOML, [])
        if not owners:
            return Reply(404, b"Not Found\n", TOML, [])
        network = owners[0][0]
        accounts = [n.address(i) for n, i in owners]
        passphrase = network.passphrase if len({n.name for n, _ in owners}) == 1 else None
        currencies = []
        for n, index in owners:
            if index in n.issuers:
                issuer = n.address(index)
                currencies += [(n.asset(a)["asset_code"], issuer) for a in range(len(ASSET_SPECS))
                               if n.asset(a)["asset_issuer"] == issuer]
        if domain == "phishing-toml.example" or domain == AIRDROP_HOME_DOMAIN:
            org = "Claim your free XLM"
        else:
            org = domain.split(".")[0].replace("-", " ").title()
        return Reply(200, _toml(passphrase, accounts, org, domain, currencies).encode(), TOML, [])
