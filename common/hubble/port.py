"""The Hubble port: Stellar's public BigQuery warehouse, or an embedded copy of its tables.

One small interface for every engine (docs/architecture.md, "Ports and their adapters"):
- `BigQueryHubble` (common/hubble/bigquery.py): google-cloud-bigquery, against BigQuery itself or
  the goccy BigQuery emulator (the same code path);
- `DuckDBHubble` (common/hubble/duckdb_engine.py): DuckDB over Hubble-shaped tables loaded from
  NDJSON or Parquet exports (local/hubble_load.py), running the same BigQuery SQL transpiled by sqlglot.

Queries are built by common/hubble/sql.py (one SQL text for every engine, values as named query
parameters) and are only ever run through common/hubble/cost_guard.py, which dry-runs them first.
"""
from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import re
from decimal import Decimal
from typing import Any, Iterator, Mapping

from common.config import DEFAULT_HUBBLE_DATASET, DEFAULT_HUBBLE_DBT_DATASET, ConfigError

OPERATIONS_TABLE = "enriched_history_operations"  # stellar-dbt mart, in the dbt dataset
ACCOUNTS_TABLE = "accounts_current"  # stellar-dbt current-state mart, in the main dataset

PARAM_TYPES = ("STRING", "INT64", "TIMESTAMP", "BOOL", "FLOAT64")
_PY_TYPES = {"STRING": (str,), "INT64": (int,), "TIMESTAMP": (dt.datetime,), "BOOL": (bool,), "FLOAT64": (float, int, Decimal)}
_PARAM_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# project.dataset: a GCP project id (letters, digits, hyphens; optionally "domain:" prefixed) and a dataset id.
_DATASET = re.compile(r"^(?:[a-z][a-z0-9.-]{0,62}:)?[a-z][a-z0-9-]{4,29}\.[A-Za-z_][A-Za-z0-9_]{0,1023}$")


class HubbleError(RuntimeError):
    """A Hubble query failed (bad SQL for this engine, a job error, unreadable results)."""


class HubbleUnavailable(HubbleError):
    """The engine cannot be reached (network, emulator down, timeout, missing local database)."""


# What a failed run tells the cost guard about the bill (common/hubble/cost_guard.py). Any other
# exception from run() is an unknown outcome: the reservation stays charged in full.
class HubbleNotRun(HubbleError):
    """The job was refused before it existed (a single submit answered with a refusal): nothing is billed."""


class HubbleJobFailed(HubbleError):
    """The job finished (with an error, or its rows could not be read): its statistics are final."""

    def __init__(self, message: str, job_id: str, bytes_processed: int, bytes_billed: int):
        super().__init__(message)
        self.job_id = job_id
        self.bytes_processed = int(bytes_processed)
        self.bytes_billed = int(bytes_billed)


class HubbleOutcomeUnknown(HubbleUnavailable):
    """The job may exist and may still run (a timeout, a connection lost after submit). When the
    engine could ask BigQuery to cancel it, `cancel_requested` is True."""

    def __init__(self, message: str, job_id: str, cancel_requested: bool = False):
        super().__init__(message)
        self.job_id = job_id
        self.cancel_requested = cancel_requested


@dataclasses.dataclass(frozen=True)
class QueryParam:
    name: str
    type: str
    value: Any

    def __post_init__(self) -> None:
        if not _PARAM_NAME.match(self.name):
            raise ValueError(f"query parameter name {self.name!r} must match {_PARAM_NAME.pattern}")
        if self.type not in PARAM_TYPES:
            raise ValueError(f"query parameter {self.name}: type must be one of {', '.join(PARAM_TYPES)}")
        if self.value is None or not isinstance(self.value, _PY_TYPES[self.type]) or (
            self.type == "INT64" and isinstance(self.value, bool)
        ):
            raise ValueError(f"query parameter {self.name}: {self.value!r} is not a {self.type}")
        if self.type == "TIMESTAMP" and self.value.tzinfo is None:
            raise ValueError(f"query parameter {self.name}: timestamps must be timezone-aware")


@dataclasses.dataclass(frozen=True)
class HubbleQuery:
    """One SQL text (BigQuery dialect) with its named parameters.

    `tables` lists the fully qualified tables it reads (BigQuery bills at least 10 MB per table).
    `purpose` names the query in the spend ledger (lineage, children, state).
    """

    sql: str
    params: tuple[QueryParam, ...]
    purpose: str
    tables: tuple[str, ...]

    def param_values(self) -> dict[str, Any]:
        return {p.name: p.value for p in self.params}


@dataclasses.dataclass(frozen=True)
class DryRun:
    bytes_processed: int


@dataclasses.dataclass(frozen=True)
class QueryResult:
    rows: list[dict]
    bytes_processed: int
    bytes_billed: int
    job_id: str


@dataclasses.dataclass(frozen=True)
class PagedResult:
    """A finished job whose rows are read a page at a time (the sync's bounded memory): its
    statistics are final before the first page is read."""

    pages: Iterator[list[dict]]
    bytes_processed: int
    bytes_billed: int
    job_id: str


def pages_of(rows: list[dict], page_rows: int) -> Iterator[list[dict]]:
    for i in range(0, len(rows), page_rows):
        yield rows[i : i + page_rows]


@dataclasses.dataclass(frozen=True)
class JobStatus:
    """A job as the engine reports it: PENDING | RUNNING | DONE, or NOT_FOUND (no such job)."""

    state: str
    bytes_processed: int = 0
    bytes_billed: int = 0
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class HubbleTables:
    """Fully qualified table names (`project.dataset.table`) for one network."""

    operations: str
    accounts: str

    @classmethod
    def from_datasets(cls, dataset: str, dbt_dataset: str) -> "HubbleTables":
        return cls(operations=f"{dbt_dataset}.{OPERATIONS_TABLE}", accounts=f"{dataset}.{ACCOUNTS_TABLE}")

    def all(self) -> tuple[str, str]:
        return (self.operations, self.accounts)


# Which variables name each network's datasets. Hubble publishes the public network; a testnet copy
# is used only when its datasets are configured (otherwise testnet accounts take the API path).
DATASET_VARIABLES = {
    "public": (("HUBBLE_DATASET", DEFAULT_HUBBLE_DATASET), ("HUBBLE_DBT_DATASET", DEFAULT_HUBBLE_DBT_DATASET)),
    "testnet": (("HUBBLE_TESTNET_DATASET", None), ("HUBBLE_TESTNET_DBT_DATASET", None)),
}


def validate_dataset(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _DATASET.match(value):
        raise ConfigError(name, f"must be a BigQuery dataset written project.dataset (e.g. {DEFAULT_HUBBLE_DATASET}), got {value!r}")
    return value


def tables_from_settings(settings, env: Mapping[str, str] | None = None) -> dict[str, HubbleTables]:
    """network -> HubbleTables for every network whose datasets are configured (validated)."""
    out: dict[str, HubbleTables] = {}
    for network, ((main_var, main_default), (dbt_var, dbt_default)) in DATASET_VARIABLES.items():
        main = settings.optional(main_var, main_default, env)
        dbt = settings.optional(dbt_var, dbt_default, env)
        if main is None and dbt is None:
            continue
        if main is None or dbt is None:
            missing = main_var if main is None else dbt_var
            raise ConfigError(missing, f"is not set (it goes with {dbt_var if main is None else main_var})")
        out[network] = HubbleTables.from_datasets(validate_dataset(main_var, main), validate_dataset(dbt_var, dbt))
    return out


class Hubble(abc.ABC):
    """A Hubble engine. Adapters have `from_settings(settings, clock)` and create clients lazily."""

    engine: str = "abstract"
    tracks_jobs: bool = False  # job_status/cancel can look up jobs run by other processes

    @abc.abstractmethod
    def tables(self, network: str) -> HubbleTables | None:
        """The tables for this network, or None when the engine has no data for it."""

    @abc.abstractmethod
    def dry_run(self, query: HubbleQuery) -> DryRun:
        """Bytes the query would process, without running it (or billing anything).

        Raises HubbleUnavailable when the engine cannot be reached, HubbleError when the query is refused.
        """

    @abc.abstractmethod
    def run(self, query: HubbleQuery, max_bytes_billed: int | None = None, job_id: str | None = None) -> QueryResult:
        """Run the query as job `job_id` (the caller's, so the job can be looked up later). An
        engine that bills enforces max_bytes_billed (the job fails above it).

        Raises HubbleNotRun (nothing billed), HubbleJobFailed (finished: final statistics),
        HubbleOutcomeUnknown (may still run; the engine has asked for it to be cancelled).
        """

    def run_pages(self, query: HubbleQuery, max_bytes_billed: int | None = None, job_id: str | None = None,
                  page_rows: int = 10_000) -> PagedResult:
        """run(), with the rows read `page_rows` at a time (same failures). Engines that can read a
        finished job's rows page by page override it; this default holds them all at once."""
        result = self.run(query, max_bytes_billed=max_bytes_billed, job_id=job_id)
        return PagedResult(pages_of(result.rows, page_rows), result.bytes_processed, result.bytes_billed, result.job_id)

    def job_status(self, job_id: str) -> JobStatus | None:
        """The job's state and statistics, or None when this engine cannot look jobs up."""
        return None

    def cancel(self, job_id: str) -> JobStatus | None:
        """Ask for the job to be cancelled; its status afterwards (None: nothing to cancel here)."""
        return None

    def close(self) -> None:
        """Release clients and connections (optional)."""
