"""Stellar Expert: the port and its HTTP adapter (requests + tenacity).

One question: GET {EXPERT_URL}/explorer/{network}/account/{id} — `creator` (the account's first
creator: Expert keeps one record per address, so a re-created account still shows the original),
`created` (unix seconds of that first creation) and `deleted`. The API pipeline asks it when
Horizon cannot show the first creation: its history is pruned (or the creation is missing).
"""
from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import math
from typing import Any

from common.domain import NETWORKS, is_valid_account_id
from common.upstream.errors import MalformedResponse, NotFound
from common.upstream.transport import JsonTransport

# No Stellar ledger closed before the public network's launch, nor after the year 9999.
_EARLIEST = dt.datetime(2015, 1, 1, tzinfo=dt.timezone.utc).timestamp()
_LATEST = dt.datetime(9999, 1, 1, tzinfo=dt.timezone.utc).timestamp()


def _fail(message: str) -> MalformedResponse:
    return MalformedResponse("expert", message)


@dataclasses.dataclass(frozen=True)
class ExpertAccount:
    account: str
    created: dt.datetime | None  # the first creation
    creator: str | None  # the first creator (None for genesis)
    deleted: bool


def parse_account(body: Any, account_id: str) -> ExpertAccount:
    if not isinstance(body, dict):
        raise _fail("account is not an object")
    if body.get("account", account_id) != account_id:
        raise _fail("account body is for another account")
    created = body.get("created")
    when = None
    if created is not None:
        if isinstance(created, bool) or not isinstance(created, (int, float)) or not math.isfinite(created) \
                or not _EARLIEST <= created < _LATEST:
            raise _fail(f"created is not a plausible unix time: {str(created)[:30]!r}")
        when = dt.datetime.fromtimestamp(int(created), dt.timezone.utc)
    creator = body.get("creator")
    if creator is not None and not is_valid_account_id(creator):
        raise _fail(f"creator is not a valid account id: {str(creator)[:60]!r}")
    deleted = body.get("deleted", False)
    if not isinstance(deleted, bool):
        raise _fail("deleted is not a boolean")
    return ExpertAccount(account_id, when, creator, deleted)


class Expert(abc.ABC):
    """The Stellar Expert port."""

    @abc.abstractmethod
    def account(self, network: str, account_id: str, max_wait_s: float = math.inf) -> ExpertAccount | None:
        """Creator and first creation time, or None when Expert does not know the account (404)."""

    def metrics(self) -> dict:
        return {}

    def close(self) -> None:
        """Release connections (optional)."""


class HttpExpert(Expert):
    def __init__(self, transport: JsonTransport):
        self.transport = transport

    def account(self, network: str, account_id: str, max_wait_s: float = math.inf) -> ExpertAccount | None:
        if network not in NETWORKS:
            raise ValueError(f"network must be one of {', '.join(NETWORKS)}")
        if not is_valid_account_id(account_id):
            raise ValueError("not a valid account id")
        try:
            return self.transport.get(f"/explorer/{network}/account/{account_id}",
                                      parse=lambda b: parse_account(b, account_id), max_wait_s=max_wait_s)
        except NotFound:
            return None

    def metrics(self) -> dict:
        return self.transport.metrics()

    def close(self) -> None:
        self.transport.close()
