"""The upstream clients of one process: a Horizon per network and Stellar Expert, each with its
own in-process limiter, built lazily (nothing connects at import or construction).

    up = Upstream.from_settings(settings, clock)      # bootstrap's Container.upstream
    up.configure(pipeline_config)                     # budgets = upstream_rate_pct of each maximum
    up.horizon("public").account(id); up.expert.account("public", id); up.metrics()

Settings (explicit argument, else environment variable, else default):
HORIZON_URL_PUBLIC / HORIZON_URL_TESTNET / EXPERT_URL (common.config.Settings), and
UPSTREAM_TIMEOUT_S (20: read timeout of one request), UPSTREAM_ATTEMPTS (4: tries per request
for 5xx, timeouts and malformed bodies), UPSTREAM_PROCESSES (1: processes sharing the budget,
e.g. the api_fallback function's max instances; each process takes 1/N of it).
"""
from __future__ import annotations

import threading
from typing import Any, Mapping

from common.clock import Clock
from common.config import PIPELINE_CONFIG_DEFAULTS, ConfigError, Settings, bounded_number
from common.domain import NETWORKS, validate_network
from common.upstream.expert import Expert, HttpExpert
from common.upstream.horizon import Horizon, HttpHorizon
from common.upstream.ratelimit import Budget, RateLimiter
from common.upstream.transport import JsonTransport


def _number(settings: Settings | None, name: str, explicit: Any, default: float, cast, low: float, high: float) -> Any:
    raw = explicit if explicit is not None else (settings.optional(name, default) if settings is not None else default)
    return bounded_number(name, raw, low, high, cast)


def budgets(config: Mapping[str, Any], processes: int = 1) -> dict[str, Budget]:
    """The per-process budgets of both upstreams from the pipeline configuration."""
    pct = float(config["upstream_rate_pct"])
    return {
        "horizon": Budget.share(float(config["horizon_max_per_hour"]) / 3600.0, pct, processes),
        "expert": Budget.share(float(config["expert_max_per_minute"]) / 60.0, pct, processes),
    }


class Upstream:
    def __init__(
        self,
        horizon_urls: Mapping[str, str],
        expert_url: str,
        clock: Clock,
        timeout_s: float = 20.0,
        attempts: int = 4,
        processes: int = 1,
    ):
        self._urls = dict(horizon_urls)
        self._expert_url = expert_url
        self._clock = clock
        self._timeout_s = timeout_s
        self._attempts = attempts
        self.processes = processes
        self._lock = threading.Lock()
        self._horizons: dict[str, Horizon] = {}
        self._expert: Expert | None = None
        initial = budgets(PIPELINE_CONFIG_DEFAULTS, processes)
        self._pct = float(PIPELINE_CONFIG_DEFAULTS["upstream_rate_pct"])
        self.limiters = {
            **{f"horizon:{n}": RateLimiter(f"horizon:{n}", initial["horizon"], clock) for n in NETWORKS},
            "expert": RateLimiter("expert", initial["expert"], clock),
        }

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock, timeout_s: float | None = None, attempts: int | None = None,
                      processes: int | None = None) -> "Upstream":
        return cls(
            settings.horizon_urls,
            settings.expert_url,
            clock,
            timeout_s=_number(settings, "UPSTREAM_TIMEOUT_S", timeout_s, 20.0, float, 0.05, 600.0),
            attempts=_number(settings, "UPSTREAM_ATTEMPTS", attempts, 4, int, 1, 20),
            processes=_number(settings, "UPSTREAM_PROCESSES", processes, 1, int, 1, 10_000),
        )

    def configure(self, config: Mapping[str, Any]) -> None:
        """Apply the run-time budgets (PipelineConfig: horizon_max_per_hour, expert_max_per_minute,
        upstream_rate_pct). Cheap; the handler calls it on every request."""
        b = budgets(config, self.processes)
        self._pct = float(config["upstream_rate_pct"])
        for network in NETWORKS:
            self.limiters[f"horizon:{network}"].configure(b["horizon"])
        self.limiters["expert"].configure(b["expert"])

    def horizon(self, network: str) -> Horizon:
        validate_network(network)
        with self._lock:
            client = self._horizons.get(network)
            if client is None:
                url = self._urls.get(network)
                if not url:
                    raise ConfigError(f"HORIZON_URL_{network.upper()}")
                transport = JsonTransport("horizon", url, self.limiters[f"horizon:{network}"], self._clock,
                                          timeout_s=self._timeout_s, attempts=self._attempts)
                client = self._horizons[network] = HttpHorizon(network, transport, self._clock)
            return client

    @property
    def expert(self) -> Expert:
        with self._lock:
            if self._expert is None:
                if not self._expert_url:
                    raise ConfigError("EXPERT_URL")
                transport = JsonTransport("expert", self._expert_url, self.limiters["expert"], self._clock,
                                          timeout_s=self._timeout_s, attempts=self._attempts)
                self._expert = HttpExpert(transport)
            return self._expert

    def metrics(self) -> dict:
        """For /health and the benchmark: budgets, waits, requests, retries and 429s per upstream."""
        with self._lock:
            horizons = dict(self._horizons)
            expert = self._expert
        return {
            "upstream_rate_pct": self._pct,
            "processes": self.processes,
            "horizon": {
                network: {**(horizons[network].metrics() if network in horizons else {}),
                          "limiter": self.limiters[f"horizon:{network}"].metrics()}
                for network in NETWORKS
            },
            "expert": {**(expert.metrics() if expert is not None else {}), "limiter": self.limiters["expert"].metrics()},
        }

    def close(self) -> None:
        with self._lock:
            for client in list(self._horizons.values()) + ([self._expert] if self._expert else []):
                client.close()
