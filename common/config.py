"""Configuration.

Two kinds:
- Deployment settings (where things are): an explicit argument, else an environment variable,
  else the documented default, else a ConfigError that names the variable (functions-framework's rule).
- Pipeline configuration (how the pipeline behaves): stored in the store's pipeline_config table,
  changeable at run time with `stellarmap config set`, with the defaults below.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from decimal import Decimal
from typing import Any, Mapping

_MISSING = object()


class ConfigError(RuntimeError):
    def __init__(self, variable: str, why: str = "is not set"):
        super().__init__(f"configuration error: environment variable {variable} {why}")
        self.variable = variable


def setting(name: str, explicit: Any = None, default: Any = _MISSING, env: Mapping[str, str] | None = None) -> Any:
    """Explicit argument, else the environment variable `name`, else default, else ConfigError."""
    if explicit is not None:
        return explicit
    source = os.environ if env is None else env
    value = source.get(name)
    if value not in (None, ""):
        return value
    if default is not _MISSING:
        return default
    raise ConfigError(name)


def int_setting(name: str, explicit: Any = None, default: Any = _MISSING, env: Mapping[str, str] | None = None) -> int:
    raw = setting(name, explicit, default, env)
    try:
        return int(ascii_number_text(raw))
    except (TypeError, ValueError):
        raise ConfigError(name, f"must be an integer, got {raw!r}") from None


def ascii_number_text(raw: Any) -> Any:
    """`raw` unchanged, unless it is text with a non-ASCII character: then ValueError. int(), float() and
    Decimal() read other scripts' digits ('١٢', '１２'), and str.isdigit() also takes '²' and '①'
    (which int() refuses): numbers we are given are written in ASCII, or refused."""
    if isinstance(raw, str) and not raw.isascii():
        raise ValueError("a number is written with the ASCII digits 0-9")
    return raw


def bounded_number(name: str, raw: Any, low: float, high: float, cast=float) -> Any:
    """`raw` as a number within [low, high], else a ConfigError that names the setting."""
    try:
        value = cast(ascii_number_text(raw))
    except (TypeError, ValueError, ArithmeticError):
        raise ConfigError(name, f"must be a number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(name, f"must be between {low:g} and {high:g}, got {raw!r}")
    return value


# Upstream public defaults. Tests and the demo point these at the local simulator.
DEFAULT_HORIZON_URLS = {
    "public": "https://horizon.stellar.org",
    "testnet": "https://horizon-testnet.stellar.org",
}
DEFAULT_EXPERT_URL = "https://api.stellar.expert"
DEFAULT_HUBBLE_DATASET = "crypto-stellar.crypto_stellar"
DEFAULT_HUBBLE_DBT_DATASET = "crypto-stellar.crypto_stellar_dbt"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Deployment settings for one process; built once by bootstrap."""

    store_backend: str = "sqlite"  # STELLARMAP_STORE: sqlite | cassandra
    sqlite_path: str = ".local-data/stellarmap.sqlite3"  # STELLARMAP_SQLITE_PATH
    cassandra_contact_points: tuple = ("127.0.0.1",)  # CASSANDRA_CONTACT_POINTS (comma separated)
    cassandra_port: int = 9042  # CASSANDRA_PORT
    cassandra_keyspace: str = "stellarmap"  # CASSANDRA_KEYSPACE
    astra_bundle_path: str | None = None  # ASTRA_SECURE_BUNDLE_PATH
    astra_token: str | None = None  # ASTRA_TOKEN
    horizon_urls: Mapping[str, str] = dataclasses.field(default_factory=lambda: dict(DEFAULT_HORIZON_URLS))
    expert_url: str = DEFAULT_EXPERT_URL  # EXPERT_URL
    queue_backend: str = "local"  # STELLARMAP_QUEUE: local | cloudtasks
    cors_origins: tuple = ("http://localhost:8080",)  # CORS_ORIGINS (comma separated)
    internal_token: str | None = None  # INTERNAL_TOKEN: shared bearer for internal calls when not behind GCP IAM
    hubble_engine: str = "bigquery"  # HUBBLE_ENGINE: bigquery | duckdb | none
    extra: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **explicit: Any) -> "Settings":
        e = os.environ if env is None else env

        def get(name: str, key: str, default: Any) -> Any:
            return setting(name, explicit.get(key), default, e)

        points = get("CASSANDRA_CONTACT_POINTS", "cassandra_contact_points", "127.0.0.1")
        if isinstance(points, str):
            points = tuple(p.strip() for p in points.split(",") if p.strip())
        origins = get("CORS_ORIGINS", "cors_origins", "http://localhost:8080")
        if isinstance(origins, str):
            origins = tuple(o.strip() for o in origins.split(",") if o.strip())
        horizon = explicit.get("horizon_urls") or {
            "public": setting("HORIZON_URL_PUBLIC", None, DEFAULT_HORIZON_URLS["public"], e),
            "testnet": setting("HORIZON_URL_TESTNET", None, DEFAULT_HORIZON_URLS["testnet"], e),
        }
        store_backend = get("STELLARMAP_STORE", "store_backend", "sqlite")
        if store_backend not in ("sqlite", "cassandra"):
            raise ConfigError("STELLARMAP_STORE", f"must be sqlite or cassandra, got {store_backend!r}")
        queue_backend = get("STELLARMAP_QUEUE", "queue_backend", "local")
        if queue_backend not in ("local", "cloudtasks"):
            raise ConfigError("STELLARMAP_QUEUE", f"must be local or cloudtasks, got {queue_backend!r}")
        return cls(
            store_backend=store_backend,
            sqlite_path=get("STELLARMAP_SQLITE_PATH", "sqlite_path", ".local-data/stellarmap.sqlite3"),
            cassandra_contact_points=points,
            cassandra_port=int_setting("CASSANDRA_PORT", explicit.get("cassandra_port"), 9042, e),
            cassandra_keyspace=get("CASSANDRA_KEYSPACE", "cassandra_keyspace", "stellarmap"),
            astra_bundle_path=get("ASTRA_SECURE_BUNDLE_PATH", "astra_bundle_path", None),
            astra_token=get("ASTRA_TOKEN", "astra_token", None),
            horizon_urls=horizon,
            expert_url=get("EXPERT_URL", "expert_url", DEFAULT_EXPERT_URL),
            queue_backend=queue_backend,
            cors_origins=origins,
            internal_token=get("INTERNAL_TOKEN", "internal_token", None),
            hubble_engine=get("HUBBLE_ENGINE", "hubble_engine", "bigquery"),
            extra=dict(explicit.get("extra") or {}),
        )

    def require(self, name: str, env: Mapping[str, str] | None = None) -> str:
        """A setting some adapter needs only when it is used (e.g. CLOUD_TASKS_PROJECT)."""
        if name in self.extra:
            return self.extra[name]
        return setting(name, None, _MISSING, env)

    def optional(self, name: str, default: Any = None, env: Mapping[str, str] | None = None) -> Any:
        if name in self.extra:
            return self.extra[name]
        return setting(name, None, default, env)


# ---------------------------------------------------------------- pipeline configuration
HVA_THRESHOLDS_DEFAULT = (10_000, 50_000, 100_000, 500_000, 750_000, 1_000_000)

PIPELINE_CONFIG_DEFAULTS: dict[str, Any] = {
    "pipeline_mode": "BIGQUERY_WITH_API_FALLBACK",
    "cost_limit_usd": "0.71",
    "size_limit_bytes": 145 * 10**9,
    "price_per_tib_usd": "6.25",
    "monthly_budget_usd": "100",
    "hva_thresholds": list(HVA_THRESHOLDS_DEFAULT),
    "hva_rank_change_min": 10,
    "api_age_filter_years": 0,  # 0 = off; accounts older than N years go to the API path
    "children_page_size_bq": 10_000,
    "children_max": 100_000,
    "children_enrichment_cap": 100,
    "cache_ttl_hours": 12,
    "stale_processing_minutes": 30,
    "stale_pending_hours": 2,
    "max_retries": 5,
    "horizon_max_per_hour": 3600,
    "expert_max_per_minute": 50,
    "upstream_rate_pct": 71,
    "accounts_current_max_age_hours": 24,
}

_INT_TEXT = re.compile(r"\s*-?[0-9]{1,18}\s*", re.ASCII)
_DECIMAL_KEYS = {"cost_limit_usd", "price_per_tib_usd", "monthly_budget_usd"}
_INT_KEYS = {k for k, v in PIPELINE_CONFIG_DEFAULTS.items() if isinstance(v, int) and not isinstance(v, bool)}
_ENUM_KEYS = {"pipeline_mode": ("BIGQUERY_ONLY", "API_ONLY", "BIGQUERY_WITH_API_FALLBACK")}


def parse_config_value(key: str, raw: Any) -> Any:
    """Validate one pipeline-config value; raises ValueError with a clear message."""
    if key not in PIPELINE_CONFIG_DEFAULTS:
        raise ValueError(f"unknown config key {key!r}; known keys: {', '.join(sorted(PIPELINE_CONFIG_DEFAULTS))}")
    if key in _ENUM_KEYS:
        if raw not in _ENUM_KEYS[key]:
            raise ValueError(f"{key} must be one of {', '.join(_ENUM_KEYS[key])}")
        return raw
    if key in _DECIMAL_KEYS:
        try:
            value = Decimal(str(ascii_number_text(raw))) if not isinstance(raw, bool) else None
        except Exception:
            value = None
        if value is None or not value.is_finite():
            raise ValueError(f"{key} must be a decimal number")
        if value < 0:
            raise ValueError(f"{key} must be >= 0")
        return str(value)
    if key in _INT_KEYS:
        # An int, a whole float (JSON's 1e5), or ASCII digits: never a bool, never a fraction cut (6.5 is not 6).
        if isinstance(raw, float) and raw.is_integer():
            raw = int(raw)
        if isinstance(raw, bool) or not isinstance(raw, (int, str)) or (isinstance(raw, str) and not _INT_TEXT.fullmatch(raw)):
            raise ValueError(f"{key} must be an integer")
        value = int(raw)
        if value < 0:
            raise ValueError(f"{key} must be >= 0")
        return value
    if key == "hva_thresholds":
        items = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(items, list) or not items or not all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in items):
            raise ValueError("hva_thresholds must be a non-empty list of positive integers")
        return sorted(set(items))
    return raw


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    values: Mapping[str, Any]

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any]) -> "PipelineConfig":
        merged = dict(PIPELINE_CONFIG_DEFAULTS)
        for key, raw in stored.items():
            if key in PIPELINE_CONFIG_DEFAULTS:
                merged[key] = parse_config_value(key, raw)
        return cls(merged)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def decimal(self, key: str) -> Decimal:
        return Decimal(str(self.values[key]))

    @property
    def hva_thresholds(self) -> list[int]:
        return list(self.values["hva_thresholds"])
