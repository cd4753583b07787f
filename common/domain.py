"""Domain vocabulary shared by every function: networks, statuses, account ids, records."""
from __future__ import annotations

import binascii
import dataclasses
import datetime as dt
import re
from decimal import Decimal
from enum import Enum
from typing import Any

GENESIS_ACCOUNT = "GAAZI4TCR3TY5OJHCTJC2A4QSY6CJWJH5IAJTGKIN2ER7LBNVKOCCWN7"
NETWORKS = ("public", "testnet")
# The public network's first ledger closed at 2015-09-30T16:46:54Z; no operation is older.
# (Testnet is younger and reset from time to time, so the same bound is safe for it too.)
NETWORK_START = {n: dt.datetime(2015, 9, 30, 16, 46, 54, tzinfo=dt.timezone.utc) for n in NETWORKS}
MAX_PAGE_SIZE = 1000

# StrKey G-address shape; the checksum is checked by validate_account_id below.
_ACCOUNT_RE = re.compile(r"^G[A-Z2-7]{55}$")


class Status(str, Enum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"
    INVALID = "INVALID"
    RE_INQUIRY = "RE_INQUIRY"


CLAIMABLE = (Status.PENDING.value, Status.RE_INQUIRY.value)
ACTIVE_STATUSES = (Status.PENDING.value, Status.PROCESSING.value, Status.RE_INQUIRY.value)
TERMINAL_STATUSES = (Status.FAILED.value, Status.INVALID.value)


class PipelineSource(str, Enum):
    BIGQUERY = "BIGQUERY"
    BIGQUERY_WITH_API_FALLBACK = "BIGQUERY_WITH_API_FALLBACK"
    API = "API"
    HUBBLE_SYNC = "HUBBLE_SYNC"  # the network-wide sync answered (common/handlers/hubble_sync.py)


class PipelineMode(str, Enum):
    BIGQUERY_ONLY = "BIGQUERY_ONLY"
    API_ONLY = "API_ONLY"
    BIGQUERY_WITH_API_FALLBACK = "BIGQUERY_WITH_API_FALLBACK"


class InvalidInput(ValueError):
    """Bad input with a machine-readable code and the field it concerns."""

    def __init__(self, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


def validate_network(network: Any) -> str:
    if network not in NETWORKS:
        raise InvalidInput("invalid_network", f"network must be one of {', '.join(NETWORKS)}", "network")
    return network


_BASE32_DIGITS = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789abcdefghijklmnopqrstuv")
_ED25519_PUBLIC_KEY_VERSION = 6 << 3  # the StrKey version byte of a G... address


def is_valid_account_id(account: Any) -> bool:
    """The StrKey rules (version byte, CRC16-XModem checksum), about 10x faster than stellar_sdk's
    StrKey.is_valid_ed25519_public_key (the bulk sync checks two ids per row; a unit test keeps both equal)."""
    if not isinstance(account, str) or not _ACCOUNT_RE.fullmatch(account):
        return False
    raw = int(account.encode("ascii").translate(_BASE32_DIGITS), 32).to_bytes(35, "big")  # 56 base32 digits = 35 bytes exactly
    return raw[0] == _ED25519_PUBLIC_KEY_VERSION and binascii.crc_hqx(raw[:33], 0) == raw[33] | raw[34] << 8


def validate_account_id(account: Any, field: str = "account") -> str:
    if not is_valid_account_id(account):
        raise InvalidInput("invalid_account", "not a valid Stellar account id (G..., 56 characters, valid checksum)", field)
    return account


def validate_page_size(limit: Any, maximum: int = MAX_PAGE_SIZE) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1 or limit > maximum:
        raise InvalidInput("invalid_limit", f"limit must be an integer from 1 to {maximum}", "limit")
    return limit


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """Normalise a timestamp to an aware UTC datetime with millisecond precision (Cassandra's)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    value = value.astimezone(dt.timezone.utc)
    return value.replace(microsecond=(value.microsecond // 1000) * 1000)


def iso(value: dt.datetime | None) -> str | None:
    value = as_utc(value)
    return value.isoformat().replace("+00:00", "Z") if value else None


def parse_iso(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return as_utc(dt.datetime.fromisoformat(value.replace("Z", "+00:00")))


@dataclasses.dataclass
class LineageRecord:
    """One account's lineage row. Columns mirror cql/ table account_lineage."""

    network_name: str
    stellar_account: str
    stellar_creator_account: str | None = None
    account_creation_date: dt.datetime | None = None
    xlm_balance: Decimal | None = None
    home_domain: str | None = None
    flags: dict | None = None
    assets: list | None = None
    thresholds: dict | None = None
    is_hva: bool | None = None
    tags: list | None = None
    num_child_accounts: int | None = None
    children_cursor: str | None = None
    children_complete: bool | None = None
    status: str | None = None
    claim_token: str | None = None
    retry_count: int | None = None
    last_error: str | None = None
    pipeline_source: str | None = None
    last_pipeline_attempt: dt.datetime | None = None
    processing_started_at: dt.datetime | None = None
    enriched_at: dt.datetime | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    toml_org_name: str | None = None
    toml_org_url: str | None = None
    toml_lists_account: bool | None = None
    toml_checked_at: dt.datetime | None = None
    toml_error: str | None = None
    directory_name: str | None = None
    creation_ledger: int | None = None  # the ledger where the current (last) life began
    merged_at: dt.datetime | None = None  # the last merge, when the account is gone
    merged_into: str | None = None
    deleted: bool | None = None  # gone (merged), even when the merge itself is not visible
    children_gap: str | None = None  # null: children complete; else a reason code (docs/design.md)
    children_visible_from: dt.datetime | None = None  # children created before this are not visible

    def to_json(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, dt.datetime):
                v = iso(v)
            elif isinstance(v, Decimal):
                v = format(v, "f")
            out[f.name] = v
        return out


LINEAGE_COLUMNS = tuple(f.name for f in dataclasses.fields(LineageRecord))


@dataclasses.dataclass
class SearchCacheEntry:
    network_name: str
    stellar_account: str
    status: str | None = None
    cached_json: str | None = None
    last_fetched_at: dt.datetime | None = None
    retry_count: int | None = None
    last_error: str | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


SEARCH_CACHE_COLUMNS = tuple(f.name for f in dataclasses.fields(SearchCacheEntry))


@dataclasses.dataclass(frozen=True)
class CreationEvent:
    """One successful create_account that created `stellar_account` (several after merge + recreate)."""

    network_name: str
    stellar_account: str
    created_at: dt.datetime
    operation_id: str
    creator: str
    starting_balance: Decimal | None = None
    transaction_hash: str | None = None
    source: str | None = None  # HORIZON | EXPERT | BIGQUERY
    ledger: int | None = None  # the creating operation's ledger (None when only a time is known)


@dataclasses.dataclass(frozen=True)
class MergeEvent:
    """One successful account_merge of `stellar_account` (the end of one of its lives)."""

    network_name: str
    stellar_account: str
    merged_at: dt.datetime
    operation_id: str
    merged_into: str | None = None
    ledger: int | None = None
    source: str | None = None  # HORIZON | BIGQUERY


def life_fields(events: list, merges: list, deleted: bool | None) -> dict:
    """The lineage row's lives columns from every creation and merge known (oldest first): the first
    creator and creation, the current life's ledger, and the last merge when the account is gone."""
    fields: dict = {}
    if events:
        fields.update(stellar_creator_account=events[0].creator, account_creation_date=events[0].created_at,
                      creation_ledger=events[-1].ledger)
    last_merge = merges[-1] if merges else None
    gone = bool(deleted) or (last_merge is not None and (not events or last_merge.merged_at > events[-1].created_at))
    fields["deleted"] = gone
    fields["merged_at"] = last_merge.merged_at if gone and last_merge is not None else None
    fields["merged_into"] = last_merge.merged_into if gone and last_merge is not None else None
    return fields


# Why a children list is incomplete (lineage column children_gap; docs/design.md).
CHILDREN_GAP_CODES = ("history_pruned", "children_cap", "hubble_budget", "hubble_unavailable")


@dataclasses.dataclass(frozen=True)
class ChildEdge:
    network_name: str
    creator: str
    child: str
    created_at: dt.datetime | None = None
    operation_id: str | None = None
    starting_balance: Decimal | None = None


@dataclasses.dataclass
class StageExecution:
    network_name: str
    stellar_account: str
    stage: str
    status: str  # RUNNING | SUCCESS | FAILED | SKIPPED
    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    duration_ms: int | None = None
    error_message: str | None = None
    pipeline_source: str | None = None
    run_id: str | None = None


@dataclasses.dataclass
class CronRun:
    job_name: str
    run_at: dt.datetime
    status: str  # SUCCESS | FAILED
    duration_ms: int | None = None
    details: dict | None = None


@dataclasses.dataclass(frozen=True)
class HvaEvent:
    network_name: str
    threshold: int
    stellar_account: str
    event_time: dt.datetime
    event_type: str  # ENTERED | EXITED | RANK_UP | RANK_DOWN
    old_rank: int | None
    new_rank: int | None
    old_balance: Decimal | None
    new_balance: Decimal | None
    pct_change: float | None


@dataclasses.dataclass(frozen=True)
class LeaderboardEntry:
    rank: int
    stellar_account: str
    xlm_balance: Decimal


SYNC_STATUSES = ("RUNNING", "DONE", "FAILED")
SYNC_RANGE_STATUSES = ("PENDING", "RUNNING", "DONE", "FAILED")


@dataclasses.dataclass(frozen=True)
class SyncRange:
    """One closed_at range [range_start, range_end) of a network-wide Hubble sync (sync_ranges)."""

    network: str
    sync_id: str
    range_start: dt.datetime
    range_end: dt.datetime
    status: str = "PENDING"
    rows: int = 0
    edges: int = 0
    merges: int = 0
    bytes_billed: int = 0
    spent_micro_usd: int = 0
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    last_error: str | None = None


@dataclasses.dataclass(frozen=True)
class SyncState:
    """A network's latest Hubble sync (sync_state). synced_through: every range before it is done."""

    network: str
    sync_id: str
    status: str  # RUNNING | DONE | FAILED
    synced_through: dt.datetime | None = None
    ranges_total: int = 0
    ranges_done: int = 0
    accounts: int = 0
    edges: int = 0
    merges: int = 0
    bytes_billed: int = 0
    spent_micro_usd: int = 0
    last_error: str | None = None
    updated_at: dt.datetime | None = None
    mode: str | None = None  # full | daily
    started_at: dt.datetime | None = None
    accounts_after: str | None = None  # the accounts_current load's last account (its resume point)


@dataclasses.dataclass(frozen=True)
class Page:
    items: list
    next_cursor: str | None
