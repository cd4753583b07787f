"""The simulator's HTTP server (one port, path-prefixed) and its Python API.

    from local.simulator import Simulator
    with Simulator(accounts=5000, seed=7, port=0) as sim:
        sim.horizon_url("public"), sim.expert_url, sim.truth("public", account)

Every upstream request is counted, then rate-limited (per client: X-Client-Id, else the remote
address), then possibly given an injected fault, then answered. /_sim routes are never limited
or faulted.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import socket
import struct
import threading
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, quote, unquote, urlsplit

from common.domain import NETWORKS, InvalidInput
from local.simulator import expert, horizon, hubble
from local.simulator.faults import FaultInjector
from local.simulator.network import (
    DEFAULT_ACCOUNTS,
    DEFAULT_AIRDROP_CHILDREN,
    DEFAULT_NOW,
    DEFAULT_RETENTION_DAYS,
    STROOPS,
    Network,
    NetworkConfig,
)
from local.simulator.ratelimit import DEFAULT_RATE_PER_MIN, UPSTREAMS, LimitConfig, RateLimiter
from local.simulator.replies import Reply, control_error, json_reply
from local.simulator.request_counts import RequestCounts
from local.simulator.stellar_toml import TomlCatalog

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
MAX_BODY = 1 << 20
CORS = ("Access-Control-Allow-Origin", "*")


@dataclasses.dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Any
    body: bytes
    client: str
    base: str  # scheme://host[:port] as the client addressed us


@dataclasses.dataclass
class Route:
    methods: tuple[str, ...]
    pattern: re.Pattern
    endpoint: str
    upstream: str | None  # horizon | expert | toml | None (control)
    handler: Callable[..., Reply]


@dataclasses.dataclass
class Outcome:
    endpoint: str | None
    reply: Reply | None
    fault: str | None = None
    params: dict = dataclasses.field(default_factory=dict)


class SimApp:
    """Routing and state shared by every request thread."""

    def __init__(self, networks: dict[str, Network], limits: dict[str, LimitConfig], fault_seed: int,
                 monotonic: Callable[[], float] | None):
        self.networks = networks
        self.directory = expert.directory_index(networks)
        self.toml = TomlCatalog(networks)
        self.limiters = {name: RateLimiter(limits[name], monotonic) for name in UPSTREAMS}
        self.faults = FaultInjector(fault_seed)
        self.stats = RequestCounts()
        self.stop_event = threading.Event()
        self.routes = self._routes()

    # ------------------------------------------------------------------ routing
    def _routes(self) -> list[Route]:
        get = ("GET", "HEAD")
        net = r"(?P<network>[^/]+)"
        rows = [
            (get, rf"/horizon/{net}/?", "horizon.root", "horizon", self._horizon_root),
            (get, rf"/horizon/{net}/accounts/(?P<account>[^/]+)/?", "horizon.account", "horizon", self._horizon_account),
            (get, rf"/horizon/{net}/accounts/(?P<account>[^/]+)/operations/?", "horizon.operations", "horizon",
             self._horizon_operations),
            (get, rf"/horizon/{net}/operations/(?P<op>[^/]+)/?", "horizon.operation", "horizon", self._horizon_operation),
            (get, r"/horizon/.*", "horizon.other", "horizon", lambda r, **_: horizon.not_found()),
            (get, rf"/expert/explorer/directory/?", "expert.directory", "expert", self._directory_list),
            (get, rf"/expert/explorer/directory/tags/?", "expert.directory", "expert", lambda r, **_: expert.directory_tags()),
            (get, rf"/expert/explorer/directory/blocked-domains/?", "expert.blocked_domains", "expert",
             lambda r, **_: expert.blocked_domains(r.base + r.path, r.query)),
            (get, rf"/expert/explorer/directory/blocked-domains/(?P<domain>[^/]+)/?", "expert.blocked_domains", "expert",
             lambda r, domain, **_: expert.blocked_domain(domain)),
            (get, rf"/expert/explorer/directory/(?P<address>[^/]+)/?", "expert.directory", "expert",
             lambda r, address, **_: expert.directory_entry(self.directory, address)),
            (get, rf"/expert/explorer/{net}/directory/?", "expert.directory", "expert", self._directory_list),
            (get, rf"/expert/explorer/{net}/directory/(?P<address>[^/]+)/?", "expert.directory", "expert",
             lambda r, address, **_: expert.directory_entry(self.directory, address)),
            (get, rf"/expert/explorer/{net}/account/(?P<account>[^/]+)/?", "expert.account", "expert",
             lambda r, network, account, **_: expert.account(self.networks, network, account)),
            (get, r"/expert/.*", "expert.other", "expert", lambda r, **_: expert.not_found()),
            (get, r"/toml/(?P<domain>[^/]+)/\.well-known/stellar\.toml", "toml", "toml",
             lambda r, domain, **_: self.toml.serve(domain, r.base, r.query)),
            (get, r"/\.well-known/stellar\.toml", "toml", "toml", self._toml_by_host),
            (get, r"/_sim/?|/_sim/health/?", "control", None, self._health),
            (get, rf"/_sim/truth/{net}/(?P<account>[^/]+)/?", "control", None, self._truth),
            (get, rf"/_sim/accounts/{net}/?", "control", None, self._accounts),
            (("GET", "POST", "DELETE"), r"/_sim/faults/?", "control", None, self._faults),
            (("GET", "POST"), r"/_sim/limits/?", "control", None, self._limits),
            (("GET", "DELETE"), r"/_sim/stats/?", "control", None, self._stats),
            (("POST",), r"/_sim/stats/reset/?", "control", None, self._stats_reset),
            (("POST",), r"/_sim/export/?", "control", None, self._export),
        ]
        return [Route(m, re.compile(f"(?:{p})\\Z"), e, u, h) for m, p, e, u, h in rows]

    def dispatch(self, req: Request) -> Outcome:
        for route in self.routes:
            match = route.pattern.match(req.path)
            if match:
                break
        else:
            return Outcome(None, control_error("not_found", f"no route for {req.path}", 404))
        params = {k: unquote(v) for k, v in match.groupdict().items()}
        if route.upstream is None:
            if req.method not in route.methods:
                return Outcome(None, control_error("method_not_allowed", f"{req.method} is not allowed here", 405))
            try:
                return Outcome(None, route.handler(req, **params))
            except InvalidInput as exc:
                return Outcome(None, control_error(exc.code, exc.message, 400, exc.field))
            except ValueError as exc:
                return Outcome(None, control_error("invalid_request", str(exc), 400))
        return self._upstream(route, req, params)

    def _upstream(self, route: Route, req: Request, params: dict) -> Outcome:
        endpoint = route.endpoint
        self.stats.request(endpoint, req.client)
        if req.method not in route.methods:
            reply = horizon.problem("method_not_allowed", "Method Not Allowed", 405, "This endpoint only answers GET.") \
                if route.upstream == "horizon" else expert.error(405, "Method not allowed.")
            return Outcome(endpoint, reply)
        limit_headers: list[tuple[str, str]] = []
        limiter = self.limiters.get(route.upstream)
        if limiter is not None:
            decision = limiter.check(req.client)
            if decision is not None:
                limit_headers = decision.headers()
                if not decision.allowed:
                    self.stats.rate_limited(endpoint, req.client)
                    reply = self._too_many(route.upstream)
                    reply.headers += limit_headers
                    return Outcome(endpoint, reply)
        picked = self.faults.pick(endpoint)
        fault, fault_params = picked if picked else (None, {})
        if fault:
            self.stats.injected(endpoint, fault)
            if fault in ("429", "500", "502", "503"):
                reply = self._fault_reply(route.upstream, fault)
                reply.headers += limit_headers
                if fault == "429":
                    reply.headers.append(("Retry-After", "1"))
                return Outcome(endpoint, reply, fault, fault_params)
            if fault in ("timeout", "reset"):
                return Outcome(endpoint, None, fault, fault_params)
            if fault == "slow" and self.stop_event.wait(fault_params["slow_seconds"]):
                return Outcome(endpoint, None, "reset", fault_params)  # shutting down
        reply = route.handler(req, **params)
        reply.headers += limit_headers
        reply.headers.append(CORS)
        return Outcome(endpoint, reply, fault if fault in ("truncated", "malformed") else None, fault_params)

    @staticmethod
    def _too_many(upstream: str) -> Reply:
        return horizon.rate_limit_exceeded() if upstream == "horizon" else expert.too_many_requests()

    def _fault_reply(self, upstream: str, kind: str) -> Reply:
        if kind == "429":
            return self._too_many(upstream)
        if kind == "502":
            page = b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>"
            return Reply(502, page, "text/html")
        if upstream == "horizon":
            return horizon.server_error() if kind == "500" else horizon.over_capacity()
        if upstream == "expert":
            return expert.internal_error() if kind == "500" else expert.error(503, "Service temporarily unavailable.")
        return Reply(int(kind), f"{kind} error\n".encode(), "text/plain")

    # ------------------------------------------------------------------ upstream handlers
    def _network(self, name: str) -> Network | None:
        return self.networks.get(name)

    def _horizon_root(self, req: Request, network: str) -> Reply:
        net = self._network(network)
        return horizon.root(net, f"{req.base}/horizon/{network}") if net else horizon.not_found()

    def _horizon_account(self, req: Request, network: str, account: str) -> Reply:
        net = self._network(network)
        return horizon.account(net, f"{req.base}/horizon/{network}", account) if net else horizon.not_found()

    def _horizon_operations(self, req: Request, network: str, account: str) -> Reply:
        net = self._network(network)
        if net is None:
            return horizon.not_found()
        return horizon.account_operations(net, f"{req.base}/horizon/{network}", account, req.query)

    def _horizon_operation(self, req: Request, network: str, op: str) -> Reply:
        net = self._network(network)
        return horizon.operation(net, f"{req.base}/horizon/{network}", op) if net else horizon.not_found()

    def _directory_list(self, req: Request, network: str | None = None) -> Reply:
        if network is not None and network not in NETWORKS:
            return expert.bad_request("Invalid parameter: network.")
        return expert.directory_list(self.directory, req.base + req.path, req.query)

    def _toml_by_host(self, req: Request) -> Reply:
        host = (req.headers.get("Host") or "").strip()
        domain = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return self.toml.serve(domain, req.base, req.query)

    # ------------------------------------------------------------------ control API
    def _need_network(self, name: str) -> Network:
        if name not in self.networks:
            raise InvalidInput("invalid_network", f"network must be one of {', '.join(NETWORKS)}", "network")
        return self.networks[name]

    @staticmethod
    def _query_int(req: Request, name: str, default: int, low: int, high: int) -> int:
        raw = (req.query.get(name) or [""])[0]
        if raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise InvalidInput(f"invalid_{name}", f"{name} must be an integer from {low} to {high}", name) from None
        if not low <= value <= high:
            raise InvalidInput(f"invalid_{name}", f"{name} must be an integer from {low} to {high}", name)
        return value

    @staticmethod
    def _query_xlm(req: Request, name: str) -> int | None:
        raw = (req.query.get(name) or [""])[0]
        if raw == "":
            return None
        try:
            value = Decimal(raw)
        except InvalidOperation:
            raise InvalidInput(f"invalid_{name}", f"{name} must be a decimal XLM amount", name) from None
        if not value.is_finite() or value < 0:
            raise InvalidInput(f"invalid_{name}", f"{name} must be a non-negative XLM amount", name)
        return int(value * STROOPS)

    def _health(self, req: Request) -> Reply:
        return json_reply({"status": "ok", "networks": {n: net.describe() for n, net in self.networks.items()}})

    def _truth(self, req: Request, network: str, account: str) -> Reply:
        net = self._need_network(network)
        if not isinstance(account, str) or len(account) != 56:
            raise InvalidInput("invalid_account", "account must be a 56-character G... address", "account")
        cursor = self._query_int(req, "children_cursor", 0, 0, 10**9)
        limit = self._query_int(req, "children_limit", 100, 1, 10_000)
        return json_reply(net.truth(account, cursor, limit))

    def _accounts(self, req: Request, network: str) -> Reply:
        net = self._need_network(network)
        kind = (req.query.get("kind") or [""])[0]
        if not kind:
            return json_reply({"network": network, "kinds": net.kind_counts()})
        limit = self._query_int(req, "limit", 10, 1, 10_000)
        offset = self._query_int(req, "offset", 0, 0, 10**9)
        return json_reply(net.pick(kind, limit, offset, self._query_xlm(req, "min_balance"), self._query_xlm(req, "max_balance")))

    @staticmethod
    def _json_body(req: Request) -> dict:
        if not req.body.strip():
            return {}
        try:
            body = json.loads(req.body)
        except ValueError:
            raise InvalidInput("invalid_json", "request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise InvalidInput("invalid_json", "request body must be a JSON object")
        return body

    def _faults(self, req: Request) -> Reply:
        if req.method == "DELETE":
            self.faults.clear()
        elif req.method == "POST":
            body = self._json_body(req)
            unknown = set(body) - {"rules", "queue", "clear_queue", "seed"}
            if unknown:
                raise InvalidInput("invalid_request", f"unknown key(s): {', '.join(sorted(unknown))}")
            clear_queue = body.get("clear_queue", False)
            if not isinstance(clear_queue, bool):
                raise InvalidInput("invalid_request", "clear_queue must be true or false", "clear_queue")
            self.faults.configure(body.get("rules"), body.get("queue"), clear_queue, body.get("seed"))
        return json_reply(self.faults.snapshot())

    def limits_snapshot(self) -> dict:
        return {name: limiter.config.to_json() for name, limiter in self.limiters.items()}

    def set_limits(self, body: dict) -> None:
        unknown = set(body) - set(UPSTREAMS) - {"reset_clients"}
        if unknown:
            raise InvalidInput("invalid_request", f"unknown key(s): {', '.join(sorted(unknown))}")
        parsed = {name: LimitConfig.parse(body[name], self.limiters[name].config, name) for name in UPSTREAMS if name in body}
        reset = body.get("reset_clients", False)
        if not isinstance(reset, bool):
            raise InvalidInput("invalid_request", "reset_clients must be true or false", "reset_clients")
        for name, config in parsed.items():
            self.limiters[name].configure(config)
        if reset:
            for limiter in self.limiters.values():
                limiter.reset()

    def _limits(self, req: Request) -> Reply:
        if req.method == "POST":
            self.set_limits(self._json_body(req))
        return json_reply(self.limits_snapshot())

    def _stats(self, req: Request) -> Reply:
        if req.method == "DELETE":
            self.stats.reset()
        return json_reply(self.stats.snapshot())

    def _stats_reset(self, req: Request) -> Reply:
        self.stats.reset()
        return json_reply(self.stats.snapshot())

    def export(self, directory: Any, networks: Any = None, tables: Any = None) -> dict:
        if not isinstance(directory, (str, Path)) or not str(directory).strip():
            raise InvalidInput("invalid_directory", "directory must be a path", "directory")
        names = list(NETWORKS) if networks is None else networks
        if not isinstance(names, list) or not names or any(n not in self.networks for n in names):
            raise InvalidInput("invalid_network", f"networks must be a non-empty list from {', '.join(NETWORKS)}", "networks")
        chosen = {n: self.networks[n] for n in names}
        return hubble.export(chosen, directory, hubble.TABLES if tables is None else tables)

    def _export(self, req: Request) -> Reply:
        body = self._json_body(req)
        unknown = set(body) - {"directory", "networks", "tables"}
        if unknown:
            raise InvalidInput("invalid_request", f"unknown key(s): {', '.join(sorted(unknown))}")
        tables = body.get("tables")
        if tables is not None and (not isinstance(tables, list) or any(t not in hubble.TABLES for t in tables) or not tables):
            raise InvalidInput("invalid_tables", f"tables must be a non-empty list from {', '.join(hubble.TABLES)}", "tables")
        return json_reply(self.export(body.get("directory"), body.get("networks"), tables))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "stellarmap-simulator/1"
    timeout = 60  # idle keep-alive connections are closed after this
    wbufsize = 1 << 16  # headers and body leave in one send, flushed after each request

    def setup(self) -> None:
        super().setup()
        # Without this, small keep-alive answers wait on Nagle + the client's delayed ACK (~40 ms).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if self.server.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._serve()

    do_HEAD = do_POST = do_DELETE = do_PUT = do_PATCH = do_GET  # noqa: N815

    def _serve(self) -> None:
        app: SimApp = self.server.app
        url = urlsplit(self.path)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self._send(control_error("invalid_content_length", "Content-Length must be a non-negative integer"), close=True)
            return
        if length > MAX_BODY:
            self._send(control_error("body_too_large", f"request body must be at most {MAX_BODY} bytes", 413), close=True)
            return
        body = self.rfile.read(length) if length else b""
        host = self.headers.get("Host") or f"{self.server.server_address[0]}:{self.server.server_address[1]}"
        req = Request(
            method=self.command,
            path=url.path,
            query=parse_qs(url.query, keep_blank_values=True),
            headers=self.headers,
            body=body,
            client=(self.headers.get("X-Client-Id") or self.client_address[0]).strip()[:200],
            base=f"http://{host}",
        )
        try:
            outcome = app.dispatch(req)
        except Exception as exc:  # a bug must answer 500, not kill the connection silently
            outcome = Outcome(None, control_error("internal_error", f"{type(exc).__name__}: {exc}", 500))
        self._execute(app, outcome)

    def _execute(self, app: SimApp, outcome: Outcome) -> None:
        if outcome.reply is None and outcome.endpoint:
            app.stats.response(outcome.endpoint, outcome.fault)
        if outcome.fault == "reset":
            self._reset()
            return
        if outcome.fault == "timeout":
            app.stop_event.wait(outcome.params["timeout_seconds"])
            self.close_connection = True
            self._shutdown_socket()
            return
        reply = outcome.reply
        if outcome.endpoint:
            app.stats.response(outcome.endpoint, reply.status if outcome.fault not in ("truncated", "malformed") else outcome.fault)
        if outcome.fault == "malformed":
            reply.body = b'{"_links": {"self": {"href": ' + b"<html>upstream error</html>" + b", ]]"
        if outcome.fault == "truncated":
            # Close-delimited body cut in half: a complete HTTP answer whose JSON does not parse.
            cut = max(1, len(reply.body) // 2)
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            for name, value in reply.headers:
                self.send_header(name, value)
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body[:cut])
            self.close_connection = True
            return
        self._send(reply)

    def _send(self, reply: Reply, close: bool = False) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    def _reset(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 0), as a crashed upstream would."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self._shutdown_socket(close_only=True)

    def _shutdown_socket(self, close_only: bool = False) -> None:
        try:
            if not close_only:
                self.connection.shutdown(socket.SHUT_RDWR)
            self.connection.close()
        except OSError:
            pass

    def finish(self) -> None:
        try:
            super().finish()
        except (OSError, ValueError):
            pass  # the connection was reset or timed out on purpose


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address, app: SimApp, verbose: bool):
        self.app = app
        self.verbose = verbose
        self._connections: set = set()
        self._connections_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def process_request(self, request, client_address) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End idle keep-alive connections too, so nothing is served after stop()."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address) -> None:
        if self.verbose:
            super().handle_error(request, client_address)


def _positive_rate(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1_000_000:
        raise InvalidInput(f"invalid_{name}", f"{name} must be a number above 0 and at most 1,000,000", name)
    return float(value)


class Simulator:
    """Both networks, their HTTP server, and Python access to ground truth and controls."""

    def __init__(
        self,
        accounts: int = DEFAULT_ACCOUNTS,
        seed: int = 7,
        port: int = 0,
        host: str = "127.0.0.1",
        airdrop_children: int = DEFAULT_AIRDROP_CHILDREN,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        now: dt.datetime = DEFAULT_NOW,
        horizon_rate_per_min: float = DEFAULT_RATE_PER_MIN["horizon"],
        horizon_burst: int | None = None,
        expert_rate_per_min: float = DEFAULT_RATE_PER_MIN["expert"],
        expert_burst: int | None = None,
        rate_limits: bool = True,
        faults: dict | None = None,
        fault_seed: int | None = None,
        clock: Any = None,
        verbose: bool = False,
    ):
        if host not in LOOPBACK_HOSTS:
            raise InvalidInput("invalid_host", f"the simulator binds loopback only: host must be one of {', '.join(LOOPBACK_HOSTS)}", "host")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise InvalidInput("invalid_port", "port must be an integer from 0 to 65535", "port")
        if not isinstance(rate_limits, bool):
            raise InvalidInput("invalid_rate_limits", "rate_limits must be true or false", "rate_limits")
        limits = {}
        for name, rate, burst in (("horizon", horizon_rate_per_min, horizon_burst), ("expert", expert_rate_per_min, expert_burst)):
            rate = _positive_rate(f"{name}_rate_per_min", rate)
            burst = max(1, int(rate)) if burst is None else burst
            if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= 1_000_000:
                raise InvalidInput(f"invalid_{name}_burst", f"{name}_burst must be an integer from 1 to 1,000,000", f"{name}_burst")
            limits[name] = LimitConfig(rate, burst, rate_limits)
        self.networks = {
            name: Network(NetworkConfig(network=name, accounts=accounts, seed=seed, airdrop_children=airdrop_children,
                                        retention_days=retention_days, now=now))
            for name in NETWORKS
        }
        monotonic = clock.monotonic if clock is not None else None
        self.app = SimApp(self.networks, limits, seed if fault_seed is None else fault_seed, monotonic)
        if faults:
            try:
                self.app.faults.configure(rules=faults)
            except ValueError as exc:
                raise InvalidInput("invalid_faults", str(exc), "faults") from None
        self._host, self._port, self._verbose = host, port, verbose
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "Simulator":
        if self._server is not None:
            return self
        self.app.stop_event.clear()
        self._server = _Server((self._host, self._port), self.app, self._verbose)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="stellarmap-simulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self.app.stop_event.set()  # releases slow/timeout faults holding connections
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> "Simulator":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ addresses
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the simulator is not running; call start() or use it as a context manager")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    def horizon_url(self, network: str = "public") -> str:
        return f"{self.base_url}/horizon/{network}"

    @property
    def expert_url(self) -> str:
        return f"{self.base_url}/expert"

    def toml_url(self, domain: str) -> str:
        return f"{self.base_url}/toml/{quote(domain, safe='')}/.well-known/stellar.toml"

    @property
    def urls(self) -> dict:
        return {
            "simulator": self.base_url,
            "horizon_public": self.horizon_url("public"),
            "horizon_testnet": self.horizon_url("testnet"),
            "expert": self.expert_url,
            "toml_template": f"{self.base_url}/toml/{{domain}}/.well-known/stellar.toml",
        }

    def env(self) -> dict:
        """Environment variables that point the functions at this simulator."""
        return {
            "HORIZON_URL_PUBLIC": self.horizon_url("public"),
            "HORIZON_URL_TESTNET": self.horizon_url("testnet"),
            "EXPERT_URL": self.expert_url,
        }

    # ------------------------------------------------------------------ ground truth and controls
    def network(self, name: str = "public") -> Network:
        if name not in self.networks:
            raise InvalidInput("invalid_network", f"network must be one of {', '.join(NETWORKS)}", "network")
        return self.networks[name]

    def truth(self, network: str, account: str, children_cursor: int = 0, children_limit: int = 100) -> dict:
        return self.network(network).truth(account, children_cursor, children_limit)

    def pick(self, network: str, kind: str, limit: int = 10, offset: int = 0) -> list[str]:
        return [a["account"] for a in self.network(network).pick(kind, limit, offset)["accounts"]]

    def set_faults(self, rules: dict | None = None, queue: dict | None = None, clear_queue: bool = False,
                   seed: int | None = None) -> dict:
        self.app.faults.configure(rules, queue, clear_queue, seed)
        return self.app.faults.snapshot()

    def clear_faults(self) -> None:
        self.app.faults.clear()

    def set_limits(self, horizon: dict | None = None, expert: dict | None = None, reset_clients: bool = False) -> dict:
        body: dict = {"reset_clients": reset_clients}
        if horizon is not None:
            body["horizon"] = horizon
        if expert is not None:
            body["expert"] = expert
        self.app.set_limits(body)
        return self.app.limits_snapshot()

    def stats(self) -> dict:
        return self.app.stats.snapshot()

    def reset_stats(self) -> None:
        self.app.stats.reset()

    def export_hubble(self, directory: Any, networks: list[str] | None = None, tables: list[str] | None = None) -> dict:
        return self.app.export(directory, networks, tables)
