"""A TLS front for the simulator's stellar.toml files (local tooling, tests and the demo).

stellar.toml is fetched over https only, so the toml tests need a real TLS server: this one
terminates TLS on loopback with a throw-away certificate authority (made with openssl) whose
certificate names every simulated domain, and relays `GET /.well-known/stellar.toml` for
Host: DOMAIN to `{simulator}/toml/DOMAIN/.well-known/stellar.toml`, redirects included.
A host name that is not in the initial certificate gets its own, issued by the same CA on first
use (SNI), so the front serves every simulated domain (site-N.example, ...) without listing them.
"""
from __future__ import annotations

import http.server
import re
import ssl
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path


_HOSTNAME = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def issue_certificate(name: str, ca_crt: Path, ca_key: Path, key: Path, workdir: Path) -> Path:
    """A server certificate for one DNS name (the server key reused), signed by the CA."""
    slug = re.sub(r"[^a-z0-9.-]", "_", name)
    ext, csr, crt = workdir / f"{slug}.ext", workdir / f"{slug}.csr", workdir / f"{slug}.crt"
    ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                   f"extendedKeyUsage=serverAuth\nsubjectAltName=DNS:{name}\n")
    _openssl("req", "-new", "-key", str(key), "-out", str(csr), "-subj", f"/CN={name}")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
             "-out", str(crt), "-days", "2", "-extfile", str(ext))
    return crt


def make_certificate(domains: list[str], workdir: Path) -> tuple[Path, Path, Path]:
    """(ca_cert, server_cert, server_key) for the given DNS names, signed by a fresh CA."""
    workdir.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = workdir / "ca.key", workdir / "ca.crt"
    key, csr, crt = workdir / "server.key", workdir / "server.csr", workdir / "server.crt"
    ext = workdir / "san.ext"
    ext.write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        "subjectAltName=" + ",".join(f"DNS:{d}" for d in domains) + "\n"
    )

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca_crt), "-days", "2", "-subj", "/CN=StellarMap test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={domains[0]}")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(crt), "-days", "2", "-extfile", str(ext))
    return ca_crt, crt, key


class _Relay(http.server.BaseHTTPRequestHandler):
    upstream: str = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        host = (self.headers.get("Host") or "").split(":")[0].lower()
        url = f"{self.upstream}/toml/{host}{self.path}"
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            resp = opener.open(url, timeout=30)
            status, headers, body = resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as err:
            status, headers, body = err.code, err.headers, err.read()
        except OSError:  # URLError included
            # The upstream dropped the connection (reset, refused, timeout): drop ours too, with no
            # answer, so the client sees what a failing server gives it (and no traceback is printed).
            self.close_connection = True
            return
        self.send_response(status)
        for k in ("Content-Type", "Location"):
            if headers.get(k):
                self.send_header(k, headers[k])
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            self.wfile.write(body)
        except (ssl.SSLError, OSError):  # the client stopped reading (a size limit): nothing to do
            self.close_connection = True


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class TlsFront:
    """`with TlsFront(sim_base_url, domains) as front:` → front.port, front.ca_file."""

    def __init__(self, upstream: str, domains: list[str], workdir: Path | None = None):
        self.upstream = upstream.rstrip("/")
        self.domains = domains
        self._tmp = tempfile.TemporaryDirectory() if workdir is None else None
        self.workdir = Path(workdir or self._tmp.name)
        self.server: http.server.ThreadingHTTPServer | None = None

    def __enter__(self) -> "TlsFront":
        self.ca_file, crt, key = make_certificate(self.domains, self.workdir)
        self._key = key
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._issue_lock = threading.Lock()
        handler = type("Relay", (_Relay,), {"upstream": self.upstream})
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        ctx.sni_callback = self._sni
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def _sni(self, sslobj, server_name, _context) -> None:
        """A certificate for a name the initial one does not cover, issued once by the same CA."""
        name = (server_name or "").lower()
        if not name or name in self.domains or not _HOSTNAME.match(name):
            return None  # the initial certificate (a client checking the name refuses a mismatch)
        with self._issue_lock:
            ctx = self._contexts.get(name)
            if ctx is None:
                try:
                    crt = issue_certificate(name, Path(self.ca_file), self.workdir / "ca.key", self._key, self.workdir)
                except (OSError, subprocess.CalledProcessError):
                    return None
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(crt, self._key)
                self._contexts[name] = ctx
        sslobj.context = ctx
        return None

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def resolver(self, host: str, port: int) -> list[str]:
        """DNS for the simulated domains: all of them live on loopback."""
        return ["127.0.0.1"]

    def __exit__(self, *exc) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
        if self._tmp:
            self._tmp.cleanup()
