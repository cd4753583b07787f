"""Builds the dependencies once per process and hands them to the handlers (cosmicpython's bootstrap).

The Container satisfies every handler's typed needs in common/deps.py.

Nothing connects at import time: each dependency is created on first use.
Tests build their own Container with fakes or local adapters passed in.
"""
from __future__ import annotations

import importlib
import threading
import time
from typing import Any, Callable

from common.clock import Clock, SystemClock
from common.config import PipelineConfig, Settings

# Adapter classes by backend name; each has `from_settings(settings, clock)`.
QUEUE_ADAPTERS = {
    "local": "common.queue.sqlite_queue:SQLiteTaskQueue",
    "cloudtasks": "common.queue.cloud_tasks:CloudTasksQueue",
}
HUBBLE_ADAPTERS = {
    "bigquery": "common.hubble.bigquery:BigQueryHubble",
    "duckdb": "common.hubble.duckdb_engine:DuckDBHubble",
}


def load(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def build_store(settings: Settings):
    if settings.store_backend == "cassandra":
        from common.store.cassandra import CassandraStore

        return CassandraStore(settings)
    from common.store.sqlite import SQLiteStore

    return SQLiteStore(settings.sqlite_path)


class Container:
    """The process's dependencies. Pass an instance to override a default (tests, benchmarks)."""

    def __init__(self, settings: Settings | None = None, clock: Clock | None = None, **overrides: Any):
        self.settings = settings or Settings.from_env()
        self.clock = clock or SystemClock()
        self._overrides = overrides
        self._built: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._config_cache: tuple[float, PipelineConfig] | None = None

    def _get(self, name: str, factory: Callable[[], Any]) -> Any:
        if name in self._overrides:
            return self._overrides[name]
        with self._lock:
            if name not in self._built:
                self._built[name] = factory()
            return self._built[name]

    @property
    def store(self):
        return self._get("store", lambda: build_store(self.settings))

    @property
    def queue(self):
        return self._get("queue", lambda: load(QUEUE_ADAPTERS[self.settings.queue_backend]).from_settings(self.settings, self.clock))

    @property
    def hubble(self):
        """The Hubble port, or None when HUBBLE_ENGINE=none (the API path only)."""
        if self.settings.hubble_engine == "none" and "hubble" not in self._overrides:
            return None
        return self._get("hubble", lambda: load(HUBBLE_ADAPTERS[self.settings.hubble_engine]).from_settings(self.settings, self.clock))

    @property
    def upstream(self):
        """Horizon + Stellar Expert clients with their rate limiters (common.upstream)."""
        return self._get("upstream", lambda: load("common.upstream.clients:Upstream").from_settings(self.settings, self.clock))

    @property
    def toml(self):
        """The stellar.toml client (common.enrichment.toml.StellarTomlSource), or None when
        STELLAR_TOML_ENABLED=0."""
        return self._get("toml", lambda: load("common.enrichment.toml:toml_source_from_settings")(self.settings))

    @property
    def schema_gate(self):
        from common.store.migrations import SchemaGate

        return self._get("schema_gate", lambda: SchemaGate(self.store))

    def pipeline_config(self, max_age_s: float = 10.0) -> PipelineConfig:
        """Run-time configuration from the store, cached briefly so every request need not read it."""
        if "pipeline_config" in self._overrides:
            return self._overrides["pipeline_config"]
        now = time.monotonic()
        cached = self._config_cache
        if cached and now - cached[0] < max_age_s:
            return cached[1]
        config = PipelineConfig.from_stored(self.store.get_config())
        self._config_cache = (now, config)
        return config

    @property
    def search_options(self) -> dict[str, Any]:
        """search's settings (poll-after, render max age, trusted proxy hops), read once."""
        return self._get("search_options", lambda: load("common.handlers.search:options_from_settings")(self.settings))

    @property
    def search_rate_limiter(self):
        """search's per-client limiter (common.ratelimit_clients.ClientRateLimiter)."""
        return self._get("search_rate_limiter", lambda: load("common.ratelimit_clients:ClientRateLimiter").from_settings(self.settings))

    @property
    def stats_limits(self):
        """stats's per-client request and export limits (common.read_models.limits.StatsLimits)."""
        return self._get("stats_limits", lambda: load("common.read_models.limits:StatsLimits").from_settings(self.settings))

    def close(self) -> None:
        with self._lock:
            for dep in self._built.values():
                close = getattr(dep, "close", None)
                if callable(close):
                    close()
            self._built.clear()


_process_container: Container | None = None
_process_lock = threading.Lock()


def container() -> Container:
    """The process-wide container, built on first use (never at import)."""
    global _process_container
    if _process_container is None:
        with _process_lock:
            if _process_container is None:
                _process_container = Container()
    return _process_container


def set_container(c: Container | None) -> None:
    """Install a container for this process (the local stack and tests)."""
    global _process_container
    with _process_lock:
        _process_container = c
