"""Horizon: the port (what the API pipeline asks) and its HTTP adapter (requests + tenacity).

The pipeline needs three things from Horizon, and each is one request:
- `account(id)`: GET /accounts/{id}, everything the enrichment stores (None on 404);
- `operations(id, cursor)`: GET /accounts/{id}/operations?order=asc&limit=200 — ascending pages
  give the account's creating create_account first (when Horizon still has it) and its children
  in creation order; the paging token of a page's last record is the next page's cursor;
- `history_elder_ledger()`: GET / (cached for ROOT_TTL_S): the oldest ledger this Horizon still
  has. Above 1, history is pruned and a creation seen there may not be the first one.

Bodies are parsed here into small typed records and checked (types, StrKeys, decimal amounts);
anything unexpected is MalformedResponse, which the transport retries like a 5xx.
"""
from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import math
import re
import threading
from decimal import Decimal, InvalidOperation
from typing import Any

from common.clock import Clock
from common.domain import is_valid_account_id, parse_iso
from common.upstream.errors import MalformedResponse, NotFound
from common.upstream.transport import JsonTransport

MAX_LIMIT = 200  # Horizon's largest page
ROOT_TTL_S = 600.0
FLAG_NAMES = ("auth_required", "auth_revocable", "auth_immutable", "auth_clawback_enabled")
_AMOUNT = re.compile(r"^\d{1,12}(\.\d{1,7})?$")
_TOKEN = re.compile(r"^\d{1,30}$")


def _fail(message: str) -> MalformedResponse:
    return MalformedResponse("horizon", message)


def amount(value: Any, what: str) -> Decimal:
    """A Horizon amount ("1234.5670000") as an exact Decimal; never through a float."""
    if not isinstance(value, str) or not _AMOUNT.match(value):
        raise _fail(f"{what} is not a Stellar amount: {str(value)[:40]!r}")
    try:
        return Decimal(value)
    except InvalidOperation:
        raise _fail(f"{what} is not a decimal: {value[:40]!r}") from None


def _account_id(value: Any, what: str) -> str:
    if not is_valid_account_id(value):
        raise _fail(f"{what} is not a valid account id: {str(value)[:60]!r}")
    return value


def _timestamp(value: Any, what: str) -> dt.datetime:
    if not isinstance(value, str):
        raise _fail(f"{what} is not a timestamp")
    try:
        parsed = parse_iso(value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise _fail(f"{what} is not a timestamp: {value[:40]!r}")
    return parsed


@dataclasses.dataclass(frozen=True)
class HorizonAccount:
    """What the enrichment stores from GET /accounts/{id}."""

    account_id: str
    xlm_balance: Decimal
    assets: list  # non-native balances: [{asset_type, asset_code, asset_issuer, balance} | {asset_type, liquidity_pool_id, balance}]
    home_domain: str | None  # exactly as Horizon gave it (hostile values included)
    flags: dict
    thresholds: dict
    sequence: str


def parse_account(body: Any, account_id: str) -> HorizonAccount:
    if not isinstance(body, dict):
        raise _fail("account is not an object")
    if body.get("account_id", body.get("id")) != account_id:
        raise _fail("account body is for another account")
    balances = body.get("balances")
    if not isinstance(balances, list):
        raise _fail("balances is not a list")
    native: Decimal | None = None
    assets = []
    for entry in balances:
        if not isinstance(entry, dict) or not isinstance(entry.get("asset_type"), str):
            raise _fail("a balance entry has no asset_type")
        bal = amount(entry.get("balance"), "balance")
        kind = entry["asset_type"]
        if kind == "native":
            native = bal
        elif kind == "liquidity_pool_shares":
            pool = entry.get("liquidity_pool_id")
            if not isinstance(pool, str):
                raise _fail("liquidity pool balance without liquidity_pool_id")
            assets.append({"asset_type": kind, "liquidity_pool_id": pool, "balance": format(bal, "f")})
        else:
            code, issuer = entry.get("asset_code"), entry.get("asset_issuer")
            if not isinstance(code, str) or not code:
                raise _fail("asset balance without asset_code")
            assets.append({"asset_type": kind, "asset_code": code, "asset_issuer": _account_id(issuer, "asset_issuer"),
                           "balance": format(bal, "f")})
    if native is None:
        raise _fail("no native (XLM) balance")
    home_domain = body.get("home_domain")
    if home_domain is not None and not isinstance(home_domain, str):
        raise _fail("home_domain is not a string")
    raw_flags = body.get("flags")
    if not isinstance(raw_flags, dict):
        raise _fail("flags is not an object")
    flags = {}
    for name in FLAG_NAMES:
        value = raw_flags.get(name, False)
        if not isinstance(value, bool):
            raise _fail(f"flags.{name} is not a boolean")
        flags[name] = value
    raw_thresholds = body.get("thresholds")
    if not isinstance(raw_thresholds, dict):
        raise _fail("thresholds is not an object")
    thresholds = {"master_key_weight": 0}
    for name in ("low_threshold", "med_threshold", "high_threshold"):
        value = raw_thresholds.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
            raise _fail(f"thresholds.{name} is not 0..255")
        thresholds[name] = value
    signers = body.get("signers") or []
    if not isinstance(signers, list):
        raise _fail("signers is not a list")
    for signer in signers:
        if isinstance(signer, dict) and signer.get("key") == account_id:
            weight = signer.get("weight")
            if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 255:
                raise _fail("master signer weight is not 0..255")
            thresholds["master_key_weight"] = weight
    sequence = body.get("sequence")
    if not isinstance(sequence, str) or not sequence.isdigit():
        raise _fail("sequence is not a number string")
    return HorizonAccount(account_id, native, assets, home_domain, flags, thresholds, sequence)


@dataclasses.dataclass(frozen=True)
class Operation:
    """One record of an operations page (only create_account carries the lineage fields)."""

    id: str
    paging_token: str
    type: str
    successful: bool
    created_at: dt.datetime
    account: str | None = None  # create_account: the new account
    funder: str | None = None  # create_account: who paid for it
    starting_balance: Decimal | None = None
    transaction_hash: str | None = None
    into: str | None = None  # account_merge: who received the merged account's XLM (`account` is the merged one)

    def creates(self, account: str) -> bool:
        """A successful create_account that created `account`."""
        return self.type == "create_account" and self.successful and self.account == account

    def merges(self, account: str) -> bool:
        """A successful account_merge that ended one life of `account`."""
        return self.type == "account_merge" and self.successful and self.account == account

    def child_of(self, funder: str) -> bool:
        """A successful create_account that `funder` paid for (a child of funder)."""
        return self.type == "create_account" and self.successful and self.funder == funder and self.account != funder

    @property
    def ledger(self) -> int:
        """Operation ids are TOIDs: the ledger sequence is the high 32 bits."""
        return int(self.id) >> 32


def parse_operation(record: Any) -> Operation:
    if not isinstance(record, dict):
        raise _fail("operation record is not an object")
    op_id, token, kind = record.get("id"), record.get("paging_token"), record.get("type")
    if not isinstance(op_id, str) or not _TOKEN.match(op_id):
        raise _fail("operation id is not a number string")
    if not isinstance(token, str) or not _TOKEN.match(token):
        raise _fail("paging_token is not a number string")
    if not isinstance(kind, str):
        raise _fail("operation type is not a string")
    successful = record.get("transaction_successful")
    if not isinstance(successful, bool):
        raise _fail("transaction_successful is not a boolean")
    created_at = _timestamp(record.get("created_at"), "created_at")
    if kind == "account_merge":
        return Operation(op_id, token, kind, successful, created_at, account=_account_id(record.get("account"), "account_merge.account"),
                         into=_account_id(record.get("into"), "account_merge.into"))
    if kind != "create_account":
        return Operation(op_id, token, kind, successful, created_at)
    tx_hash = record.get("transaction_hash")
    if tx_hash is not None and not isinstance(tx_hash, str):
        raise _fail("transaction_hash is not a string")
    return Operation(
        op_id, token, kind, successful, created_at,
        account=_account_id(record.get("account"), "create_account.account"),
        funder=_account_id(record.get("funder"), "create_account.funder"),
        starting_balance=amount(record.get("starting_balance"), "starting_balance"),
        transaction_hash=tx_hash,
    )


@dataclasses.dataclass(frozen=True)
class OperationsPage:
    records: list
    limit: int

    @property
    def next_cursor(self) -> str | None:
        """The cursor of the next page, or None when this page was the last (fewer than limit)."""
        return self.records[-1].paging_token if len(self.records) >= self.limit else None


def parse_operations(body: Any, limit: int) -> OperationsPage:
    if not isinstance(body, dict) or not isinstance(body.get("_embedded"), dict):
        raise _fail("operations page has no _embedded object")
    records = body["_embedded"].get("records")
    if not isinstance(records, list):
        raise _fail("operations page has no records list")
    if len(records) > limit:
        raise _fail(f"operations page has {len(records)} records, more than the limit {limit}")
    ops = [parse_operation(r) for r in records]
    for before, after in zip(ops, ops[1:]):
        if int(after.paging_token) <= int(before.paging_token):
            raise _fail("operations page is not in ascending order")
    return OperationsPage(ops, limit)


def parse_root(body: Any) -> int:
    return parse_root_info(body).elder


@dataclasses.dataclass(frozen=True)
class RootInfo:
    elder: int  # history_elder_ledger
    latest: int | None  # history_latest_ledger
    latest_closed_at: dt.datetime | None  # history_latest_ledger_closed_at: a known (ledger, time) point


def parse_root_info(body: Any) -> RootInfo:
    if not isinstance(body, dict):
        raise _fail("root is not an object")
    elder = body.get("history_elder_ledger")
    if isinstance(elder, bool) or not isinstance(elder, int) or elder < 0:
        raise _fail("history_elder_ledger is not a ledger number")
    latest, closed = body.get("history_latest_ledger"), body.get("history_latest_ledger_closed_at")
    if isinstance(latest, bool) or not isinstance(latest, int) or latest < 1 or not isinstance(closed, str):
        return RootInfo(elder, None, None)  # optional: only a ledger -> time point
    try:
        when = parse_iso(closed)
    except ValueError:
        when = None
    return RootInfo(elder, latest if when else None, when)


class Horizon(abc.ABC):
    """The Horizon port: one network's Horizon."""

    network: str

    @abc.abstractmethod
    def account(self, account_id: str, max_wait_s: float = math.inf) -> HorizonAccount | None:
        """The account's current state, or None when Horizon answers 404."""

    @abc.abstractmethod
    def operations(self, account_id: str, cursor: str | None = None, limit: int = MAX_LIMIT,
                   max_wait_s: float = math.inf) -> OperationsPage | None:
        """One ascending page of the account's operations (successful transactions only) after
        `cursor` (None: from the oldest Horizon still has). None when Horizon answers 404."""

    @abc.abstractmethod
    def history_elder_ledger(self, max_wait_s: float = math.inf) -> int:
        """The oldest ledger in this Horizon's history (1 = full history)."""

    def latest_point(self) -> tuple[int, dt.datetime] | None:
        """The latest ledger and its close time from the last root read (a ledger -> time point), if any."""
        return None

    def metrics(self) -> dict:
        return {}

    def close(self) -> None:
        """Release connections (optional)."""


def _check_argument(account_id: str) -> None:
    if not is_valid_account_id(account_id):
        raise ValueError("not a valid account id")


class HttpHorizon(Horizon):
    def __init__(self, network: str, transport: JsonTransport, clock: Clock):
        self.network = network
        self.transport = transport
        self._clock = clock
        self._root: tuple[float, RootInfo] | None = None
        self._root_lock = threading.Lock()

    def account(self, account_id: str, max_wait_s: float = math.inf) -> HorizonAccount | None:
        _check_argument(account_id)
        try:
            return self.transport.get(f"/accounts/{account_id}", parse=lambda b: parse_account(b, account_id), max_wait_s=max_wait_s)
        except NotFound:
            return None

    def operations(self, account_id: str, cursor: str | None = None, limit: int = MAX_LIMIT,
                   max_wait_s: float = math.inf) -> OperationsPage | None:
        _check_argument(account_id)
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be 1..{MAX_LIMIT}")
        params: dict[str, Any] = {"order": "asc", "limit": limit, "include_failed": "false"}
        if cursor is not None:
            if not _TOKEN.match(cursor):
                raise ValueError(f"cursor must be a paging token (digits), got {cursor[:40]!r}")
            params["cursor"] = cursor
        try:
            return self.transport.get(f"/accounts/{account_id}/operations", params, parse=lambda b: parse_operations(b, limit),
                                      max_wait_s=max_wait_s)
        except NotFound:
            return None

    def history_elder_ledger(self, max_wait_s: float = math.inf) -> int:
        now = self._clock.monotonic()
        with self._root_lock:
            if self._root is not None and now - self._root[0] < ROOT_TTL_S:
                return self._root[1].elder
        info = self.transport.get("/", parse=parse_root_info, max_wait_s=max_wait_s)
        with self._root_lock:
            self._root = (now, info)
        return info.elder

    def latest_point(self) -> tuple[int, dt.datetime] | None:
        with self._root_lock:
            info = self._root[1] if self._root is not None else None
        return (info.latest, info.latest_closed_at) if info is not None and info.latest else None

    def metrics(self) -> dict:
        return self.transport.metrics()

    def close(self) -> None:
        self.transport.close()
