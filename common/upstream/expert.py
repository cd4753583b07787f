"""Stellar Expert: the port and its HTTP adapter (requests + tenacity).

One question: GET {EXPERT_URL}/explorer/{network}/account/{id} — `creator` (the account's first
creator: Expert keeps one record per address, so a re-created account still shows the original),
`created` (unix seconds of that first creation) and `deleted`. The API pipeline asks it when
Horizon cannot show the first creation: its history is pruned (or the creation is missing).

The Open Directory (one list for every network), for the account labels:
GET {EXPERT_URL}/explorer/directory/{address} -> `{address, name, domain, tags}`, or `{}` when the
address is not listed; GET {EXPERT_URL}/explorer/directory/blocked-domains/{domain} ->
`{domain, blocked}` (blocked when the domain or a parent domain is on the list). The pipeline asks
them best effort (`best_effort=True`: one attempt, spare budget only, so labels never delay a lineage).
"""
from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import math
import re
from typing import Any
from urllib.parse import quote

from common.domain import NETWORKS, is_valid_account_id
from common.upstream.errors import MalformedResponse, NotFound
from common.upstream.transport import JsonTransport

# No Stellar ledger closed before the public network's launch, nor after the year 9999.
_EARLIEST = dt.datetime(2015, 1, 1, tzinfo=dt.timezone.utc).timestamp()
_LATEST = dt.datetime(9999, 1, 1, tzinfo=dt.timezone.utc).timestamp()
_TAG = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
_HOST = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$")
MAX_DIRECTORY_TAGS = 20
MAX_NAME_CHARS = 500
BEST_EFFORT_RESERVE = 1  # best-effort calls leave this many burst slots for the lineage's own calls


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


@dataclasses.dataclass(frozen=True)
class DirectoryEntry:
    address: str
    name: str | None  # as listed (hostile text stays text; at most MAX_NAME_CHARS)
    domain: str | None
    tags: tuple  # lower-case slugs, sorted, without duplicates


def parse_directory_entry(body: Any, address: str) -> DirectoryEntry | None:
    """An Open Directory entry, or None for `{}` (not listed). Wrong shapes are MalformedResponse."""
    if not isinstance(body, dict):
        raise _fail("directory entry is not an object")
    if not body:
        return None
    if body.get("address", address) != address:
        raise _fail("directory entry is for another address")
    name, domain, tags = body.get("name"), body.get("domain"), body.get("tags", [])
    if name is not None and not isinstance(name, str):
        raise _fail("directory name is not text")
    if domain is not None and not isinstance(domain, str):
        raise _fail("directory domain is not text")
    if not isinstance(tags, list) or len(tags) > MAX_DIRECTORY_TAGS:
        raise _fail(f"directory tags are not a list of at most {MAX_DIRECTORY_TAGS}")
    clean = set()
    for tag in tags:
        if not isinstance(tag, str) or not _TAG.match(tag.strip().lower()):
            raise _fail(f"directory tag is not a label: {str(tag)[:40]!r}")
        clean.add(tag.strip().lower())
    return DirectoryEntry(address, name[:MAX_NAME_CHARS] if name is not None else None,
                          domain[:MAX_NAME_CHARS] if domain is not None else None, tuple(sorted(clean)))


def parse_blocked_domain(body: Any, domain: str) -> bool:
    if not isinstance(body, dict):
        raise _fail("blocked-domain answer is not an object")
    if str(body.get("domain", domain)).lower() != domain.lower():
        raise _fail("blocked-domain answer is for another domain")
    blocked = body.get("blocked")
    if not isinstance(blocked, bool):
        raise _fail("blocked is not a boolean")
    return blocked


def check_host_name(domain: Any) -> str:
    """A lower-case DNS name for the blocked-domain question (ValueError otherwise: never sent)."""
    if not isinstance(domain, str) or not _HOST.match(domain.strip().rstrip(".").lower()):
        raise ValueError("not a host name")
    return domain.strip().rstrip(".").lower()


class Expert(abc.ABC):
    """The Stellar Expert port."""

    @abc.abstractmethod
    def account(self, network: str, account_id: str, max_wait_s: float = math.inf) -> ExpertAccount | None:
        """Creator and first creation time, or None when Expert does not know the account (404)."""

    @abc.abstractmethod
    def directory(self, address: str, max_wait_s: float = math.inf, best_effort: bool = False) -> DirectoryEntry | None:
        """The Open Directory entry (name, domain, tags), or None when the address is not listed."""

    @abc.abstractmethod
    def domain_blocked(self, domain: str, max_wait_s: float = math.inf, best_effort: bool = False) -> bool:
        """Whether the domain (or a parent domain) is on Stellar Expert's blocked-domain list."""

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

    def _options(self, max_wait_s: float, best_effort: bool) -> dict:
        if best_effort:  # one attempt on spare budget: a label is never worth delaying a lineage
            return {"max_wait_s": max_wait_s, "attempts": 1, "reserve": BEST_EFFORT_RESERVE}
        return {"max_wait_s": max_wait_s}

    def directory(self, address: str, max_wait_s: float = math.inf, best_effort: bool = False) -> DirectoryEntry | None:
        if not is_valid_account_id(address):
            raise ValueError("not a valid account id")
        try:
            return self.transport.get(f"/explorer/directory/{address}", parse=lambda b: parse_directory_entry(b, address),
                                      **self._options(max_wait_s, best_effort))
        except NotFound:
            return None

    def domain_blocked(self, domain: str, max_wait_s: float = math.inf, best_effort: bool = False) -> bool:
        host = check_host_name(domain)
        return self.transport.get(f"/explorer/directory/blocked-domains/{quote(host, safe='')}",
                                  parse=lambda b: parse_blocked_domain(b, host), **self._options(max_wait_s, best_effort))

    def metrics(self) -> dict:
        return self.transport.metrics()

    def close(self) -> None:
        self.transport.close()
