"""A deterministic simulated Stellar network: accounts, creation edges, operations, ground truth.

Everything derives from (seed, network name). Core accounts live in compact arrays indexed
0..N-1 (0 is genesis; index order is creation order). The airdrop's children (N..N+A-1) and the
exchanges' payments are procedural: derived on demand from (key, index), never stored. Every
operation id is a Horizon TOID whose transaction slot says what the operation is, so any
operation can be rebuilt from its id alone.
"""
from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import hashlib
import heapq
import itertools
import math
import random
from array import array
from typing import Iterable, Iterator, Sequence

from common.domain import NETWORKS, InvalidInput
from local.simulator.codec import GENESIS_ACCOUNT, AddressCodec, mix64, split_toid, toid

UTC = dt.timezone.utc
GENESIS_CLOSE = dt.datetime(2015, 9, 30, 16, 46, 54, tzinfo=UTC)  # pubnet ledger 1
LEDGER_SECONDS = 5
DEFAULT_NOW = dt.datetime(2026, 1, 1, tzinfo=UTC)
STROOPS = 10_000_000
NETWORK_PASSPHRASES = {
    "public": "Public Global Stellar Network ; September 2015",
    "testnet": "Test SDF Network ; September 2015",
}
DOMAIN_SUFFIX = {"public": "example", "testnet": "testnet.example"}

MIN_ACCOUNTS = 200
MAX_ACCOUNTS = 5_000_000
MAX_AIRDROP_CHILDREN = 10_000_000
DEFAULT_ACCOUNTS = 5_000
DEFAULT_AIRDROP_CHILDREN = 100_000
DEFAULT_RETENTION_DAYS = 365
CHAIN_LENGTH = 15  # the deliberate creator chain: its tail is 15 hops from genesis
EXCHANGES = 3
EXCHANGE_MIN_PAYMENTS = 10_000
EXCHANGE_CHILDREN = 3  # "only a few" create_account ops among an exchange's 10k+ operations
PAYMENT_WINDOW_DAYS = 540
AIRDROP_BATCH = 1_000  # creates per ledger: 10 transactions of 100 operations
HVA_THRESHOLDS = (10_000, 50_000, 100_000, 500_000, 750_000, 1_000_000)
# Protocol 19 (CAP-21) upgrade votes: from then on stellar-core records the ledger and time of an
# account's last sequence number change (AccountEntryExtensionV3 seqLedger/seqTime), which Horizon
# shows as sequence_ledger/sequence_time and stellar-etl exports; before it, nothing is recorded.
PROTOCOL_19_AT = {
    "public": dt.datetime(2022, 6, 8, 15, 0, tzinfo=dt.timezone.utc),
    "testnet": dt.datetime(2022, 5, 9, 15, 0, tzinfo=dt.timezone.utc),
}
BUMP_SEQUENCE_TYPE_I = 11
DORMANT_LEDGERS = 365 * 86_400 // LEDGER_SECONDS

# Transaction slots inside a ledger (the TOID's middle field) by kind of operation.
TX_CREATE = 1  # first creation of a core account (one per ledger)
TX_RECREATE = 2  # re-creation after a merge
TX_MERGE = 3  # account_merge
TX_AIRDROP0 = 4  # 4..13: airdrop batches
TX_BUMP = 14  # bump_sequence (one per ledger)
TX_EXCHANGE0 = 20  # 20..: one slot per exchange for its payments
TX_FAILED0 = 100  # 100..: failed create_account ops, FAILED_PER_TX per transaction slot
FAILED_PER_TX = 4_000

ROLE_ORDINARY, ROLE_GENESIS, ROLE_CHAIN, ROLE_AIRDROP, ROLE_EXCHANGE = 0, 1, 2, 3, 4
ROLE_ISSUER, ROLE_MERGED, ROLE_MERGED_GONE, ROLE_EXCHANGE_CHILD = 5, 6, 7, 8
ROLE_NAMES = {
    ROLE_ORDINARY: "ordinary",
    ROLE_GENESIS: "genesis",
    ROLE_CHAIN: "chain",
    ROLE_AIRDROP: "airdrop",
    ROLE_EXCHANGE: "exchange",
    ROLE_ISSUER: "issuer",
    ROLE_MERGED: "merged",
    ROLE_MERGED_GONE: "merged_gone",
    ROLE_EXCHANGE_CHILD: "exchange_child",
}
# Roles whose accounts may fund new accounts in the preferential-attachment draw.
_CREATOR_ROLES = {ROLE_ORDINARY, ROLE_GENESIS, ROLE_CHAIN, ROLE_ISSUER, ROLE_EXCHANGE_CHILD}

FLAG_NAMES = ("auth_required", "auth_revocable", "auth_immutable", "auth_clawback_enabled")

# Hostile home_domain values. The real ledger caps home_domain at 32 printable ASCII bytes;
# these deliberately break that rule so consumers prove they survive anything Horizon relays.
HOSTILE_HOME_DOMAINS = (
    "<script>alert('stellarmap')</script>.example",
    '"><img src=x onerror=alert(1)>',
    "x" * 995 + ".test",  # 1,000 characters
    "ステラ.例え.テスト",
    "🚀💰.example",
    "\u202egnp.elpmaxe",  # right-to-left override
    "'; DROP TABLE account_lineage; --",
    "../../etc/passwd",
    "line1\nline2\t.example",
    "   ",
    "stеllar.org",  # Cyrillic 'е': a homoglyph of stellar.org
    "login.xlm-giveaway.example",  # its parent domain is on the blocked list
)
BLOCKED_DOMAINS = (
    "phishing-toml.example",
    "stellar-airdrop-claim.example",
    "stellar-wallet-verify.example",
    "xlm-giveaway.example",
)
AIRDROP_HOME_DOMAIN = "stellar-airdrop-claim.example"
# stellar.toml hostility by domain; the toml module serves each one.
HOSTILE_TOML_DOMAINS = (
    "huge.toml.example",
    "malformed.toml.example",
    "redirect-private.toml.example",
    "redirect-loopback.toml.example",
    "impersonator.toml.example",
    "html.toml.example",
    "phishing-toml.example",
)

# Forced XLM balances: every HVA threshold exactly, one stroop on either side, the extremes.
FORCED_BALANCES_XLM = (
    "0",
    "9999.9999999", "10000", "10000.0000001",
    "49999.9999999", "50000",
    "99999.9999999", "100000",
    "499999.9999999", "500000",
    "749999.9999999", "750000",
    "999999.9999999", "1000000",
    "10000000",
)
BALANCE_BANDS = ((10_000, 50_000), (50_000, 100_000), (100_000, 500_000), (500_000, 750_000),
                 (750_000, 1_000_000), (1_000_000, 10_000_000))

ASSET_SPECS = (  # code, issuer number
    ("USD", 0),
    ("EURT", 1),
    ("BTC", 2),
    ("yXLM", 3),
    ("GOLDBACKED12", 0),
)
ISSUER_FLAGS = (0b0011, 0b1010, 0b0111, 0b0000)  # realistic issuer flag sets


def stroops_to_str(stroops: int) -> str:
    sign = "-" if stroops < 0 else ""
    stroops = abs(stroops)
    return f"{sign}{stroops // STROOPS}.{stroops % STROOPS:07d}"


def xlm_to_stroops(text: str) -> int:
    whole, _, frac = text.partition(".")
    return int(whole) * STROOPS + int((frac + "0000000")[:7])


def ledger_close_time(ledger: int) -> dt.datetime:
    return GENESIS_CLOSE + dt.timedelta(seconds=(ledger - 1) * LEDGER_SECONDS)


def ledger_at(when: dt.datetime) -> int:
    return int((when - GENESIS_CLOSE).total_seconds()) // LEDGER_SECONDS + 1


def iso_z(when: dt.datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    network: str = "public"
    accounts: int = DEFAULT_ACCOUNTS
    seed: int = 7
    airdrop_children: int = DEFAULT_AIRDROP_CHILDREN
    retention_days: int = DEFAULT_RETENTION_DAYS  # 0 keeps all history
    now: dt.datetime = DEFAULT_NOW

    def __post_init__(self) -> None:
        if self.network not in NETWORKS:
            raise InvalidInput("invalid_network", f"network must be one of {', '.join(NETWORKS)}", "network")
        _check_int("accounts", self.accounts, MIN_ACCOUNTS, MAX_ACCOUNTS)
        _check_int("airdrop_children", self.airdrop_children, 0, MAX_AIRDROP_CHILDREN)
        _check_int("retention_days", self.retention_days, 0, 36_500)
        _check_int("seed", self.seed, 0, 2**63 - 1)
        if not isinstance(self.now, dt.datetime) or self.now.tzinfo is None:
            raise InvalidInput("invalid_now", "now must be a timezone-aware datetime", "now")
        if self.now < GENESIS_CLOSE + dt.timedelta(days=3 * 365):
            raise InvalidInput("invalid_now", "now must be at least three years after the 2015-09-30 genesis", "now")


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"invalid_{name}", f"{name} must be an integer from {low:,} to {high:,}", name)


@dataclasses.dataclass(frozen=True)
class Operation:
    """One operation, network-neutral; horizon.py and hubble.py render it."""

    id: int
    ledger: int
    type: str  # create_account | account_merge | payment
    type_i: int
    successful: bool
    source_account: str
    transaction_hash: str
    details: dict

    @property
    def closed_at(self) -> dt.datetime:
        return ledger_close_time(self.ledger)

    @property
    def transaction_id(self) -> int:
        ledger, tx, _ = split_toid(self.id)
        return toid(ledger, tx, 0)


@dataclasses.dataclass(frozen=True)
class AccountState:
    """The current ledger entry of an account (what Horizon's /accounts/{id} shows)."""

    index: int
    address: str
    exists: bool
    balance: int  # stroops
    flags: int
    home_domain: str | None
    trustlines: tuple  # ((asset number, balance stroops), ...)
    created_ledger: int  # current incarnation
    first_created_ledger: int
    sequence: int
    last_modified_ledger: int
    sponsor: str | None
    payments: int
    # The ledger of the last sequence number change, when it happened under protocol 19 or later
    # (Horizon's sequence_ledger); None when the account never changed it or changed it earlier.
    sequence_ledger: int | None = None
    # The balance of the last ledger entry: the current one, or what the merge moved for a merged account.
    last_balance: int = 0


class _VirtualSequence(Sequence):
    """A sorted sequence computed on demand (bisect works on it directly)."""

    def __init__(self, length: int, item):
        self._length = length
        self._item = item

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self._item(i) for i in range(*k.indices(self._length))]
        if k < 0:
            k += self._length
        if not 0 <= k < self._length:
            raise IndexError(k)
        return self._item(k)


class Network:
    """One simulated network (public or testnet), built once, then read-only and thread-safe."""

    def __init__(self, config: NetworkConfig):
        self.config = config
        self.name = config.network
        self.passphrase = NETWORK_PASSPHRASES[config.network]
        self.domain_suffix = DOMAIN_SUFFIX[config.network]
        seed_text = f"stellarmap-sim/{config.seed}/{config.network}"
        self.codec = AddressCodec(seed_text.encode())
        self._key = int.from_bytes(hashlib.blake2b(seed_text.encode(), digest_size=8).digest(), "big")
        self.now = config.now.astimezone(UTC)
        self.latest_ledger = ledger_at(self.now)
        if config.retention_days:
            self.elder_ledger = ledger_at(self.now - dt.timedelta(days=config.retention_days))
        else:
            self.elder_ledger = 1
        self.protocol19_ledger = ledger_at(PROTOCOL_19_AT[config.network])
        self.size = config.accounts
        self.airdrop_size = config.airdrop_children
        self.total = self.size + self.airdrop_size
        self._generate(random.Random(seed_text))

    # ------------------------------------------------------------------ generation
    def _generate(self, rng: random.Random) -> None:
        n = self.size
        latest = self.latest_ledger
        span = latest - 12
        ledgers = array("I", [1]) * n
        for i in range(1, n):
            # Growth: creation time ~ (i/n)^(1/3), so about a quarter of accounts are under a year old.
            ledgers[i] = max(ledgers[i - 1] + 1, 2 + int(span * (i / n) ** (1 / 3)))
        self.ledgers = ledgers
        role = bytearray(n)
        role[0] = ROLE_GENESIS
        taken: set[int] = {0}

        def claim(target: int, role_value: int, low: int = 1) -> int:
            """The free index nearest to target, at least low."""
            target = min(max(low, target), n - 1)
            for delta in range(n):
                for candidate in (target + delta, target - delta):
                    if low <= candidate < n and candidate not in taken:
                        taken.add(candidate)
                        role[candidate] = role_value
                        return candidate
            raise RuntimeError("no free account index left")

        fixed_creator: dict[int, int] = {}
        self.chain = [claim(round((k + 1) * (n - 1) / (CHAIN_LENGTH + 1)), ROLE_CHAIN) for k in range(CHAIN_LENGTH)]
        previous = 0
        for k, member in enumerate(self.chain):
            if member <= previous:  # keep creator-before-child even if claim() had to move
                taken.discard(member)
                role[member] = ROLE_ORDINARY
                member = self.chain[k] = claim(member, ROLE_CHAIN, previous + 1)
            fixed_creator[member] = previous
            previous = member
        self.issuers = [claim(int(n * f), ROLE_ISSUER) for f in (0.010, 0.015, 0.020, 0.025)]
        self.exchanges = [claim(int(n * f), ROLE_EXCHANGE) for f in (0.04, 0.08, 0.12)][:EXCHANGES]
        self.airdrop = claim(int(n * 0.30), ROLE_AIRDROP)
        self.exchange_children: list[int] = []
        for exchange in self.exchanges:
            for _ in range(EXCHANGE_CHILDREN):
                child = claim(rng.randrange(exchange + 1, n), ROLE_EXCHANGE_CHILD, exchange + 1)
                fixed_creator[child] = exchange
                self.exchange_children.append(child)
        merged_count = max(6, n // 250)
        self.merged = sorted(
            [claim(rng.randrange(int(n * 0.05), int(n * 0.60)), ROLE_MERGED) for _ in range(merged_count // 2)]
            + [claim(rng.randrange(int(n * 0.85), int(n * 0.99)), ROLE_MERGED) for _ in range(merged_count - merged_count // 2)]
        )
        self.merged_gone = sorted(
            claim(rng.randrange(int(n * 0.10), int(n * 0.90)), ROLE_MERGED_GONE) for _ in range(max(3, n // 1000))
        )
        self.role = role

        # Heavy-tailed fan-out: preferential attachment over the accounts allowed to create.
        creator = array("i", [-1]) * n
        urn = [0, 0, 0]
        for i in range(1, n):
            c = fixed_creator.get(i)
            if c is None:
                c = urn[rng.randrange(len(urn))]
            creator[i] = c
            if role[c] in _CREATOR_ROLES:
                urn.append(c)
            if role[i] in _CREATOR_ROLES:
                urn.append(i)
        self.creator = creator

        depth = array("H", [0]) * n
        for i in range(1, n):
            depth[i] = depth[creator[i]] + 1
        self.depth = depth

        # Children (first creations) as CSR: offsets[c]..offsets[c+1] index into children, in time order.
        counts = array("I", [0]) * (n + 1)
        for i in range(1, n):
            counts[creator[i] + 1] += 1
        for c in range(n):
            counts[c + 1] += counts[c]
        self.child_offsets = counts
        children = array("i", [0]) * max(0, n - 1)
        cursor = array("I", counts)
        for i in range(1, n):
            c = creator[i]
            children[cursor[c]] = i
            cursor[c] += 1
        self.children_csr = children

        self._generate_lifecycle(rng, urn)
        self._generate_state(rng)
        self._generate_failed_ops(rng, urn)
        self._generate_payments(rng)
        self._generate_airdrop()
        self._build_directory()

    def _free_ledger(self, ledger: int, used: set[int]) -> int:
        while ledger in used:
            ledger += 1
        used.add(ledger)
        return ledger

    def _generate_lifecycle(self, rng: random.Random, urn: list[int]) -> None:
        """Merges (account_merge into the creator) and re-creations by someone else."""
        latest = self.latest_ledger
        self.merge_of: dict[int, tuple[int, int]] = {}  # account -> (ledger, into)
        self.recreation_of: dict[int, tuple[int, int, int]] = {}  # account -> (ledger, creator, start stroops)
        self.merge_by_ledger: dict[int, int] = {}
        self.recreation_by_ledger: dict[int, int] = {}
        self.merges_into: dict[int, list[int]] = {}
        self.recreated_by: dict[int, list[int]] = {}
        used_merge: set[int] = set()
        used_recreate: set[int] = set()
        for account in itertools.chain(self.merged, self.merged_gone):
            first = self.ledgers[account]
            merge_ledger = self._free_ledger(first + 1 + int((latest - first) * rng.uniform(0.15, 0.45)), used_merge)
            into = self.creator[account]
            self.merge_of[account] = (merge_ledger, into)
            self.merge_by_ledger[merge_ledger] = account
            self.merges_into.setdefault(into, []).append(account)
            if self.role[account] != ROLE_MERGED:
                continue
            ledger = self._free_ledger(
                merge_ledger + 1 + int((latest - 2 - merge_ledger) * rng.uniform(0.2, 0.8)), used_recreate
            )
            limit = bisect.bisect_left(self.ledgers, ledger)
            while True:
                funder = urn[rng.randrange(len(urn))]
                if funder < limit and funder != into:
                    break
            start = rng.randrange(2, 500) * STROOPS
            self.recreation_of[account] = (ledger, funder, start)
            self.recreation_by_ledger[ledger] = account
            self.recreated_by.setdefault(funder, []).append(account)
        for accounts in self.merges_into.values():
            accounts.sort(key=lambda a: self.merge_of[a][0])
        for accounts in self.recreated_by.values():
            accounts.sort(key=lambda a: self.recreation_of[a][0])

    def _generate_state(self, rng: random.Random) -> None:
        n = self.size
        balances = array("q", [0]) * n
        log_small, log_big = math.log(5_000), math.log(10_000_000)
        for i in range(1, n):
            if rng.random() < 0.9:
                xlm = math.exp(rng.uniform(0.0, log_small))
            else:
                xlm = math.exp(rng.uniform(0.0, log_big))
            balances[i] = int(xlm * STROOPS)
        balances[0] = 9_000_000 * STROOPS
        for exchange in self.exchanges:
            balances[exchange] = rng.randrange(2_000_000, 9_900_000) * STROOPS + rng.randrange(STROOPS)
        flags = bytearray(n)
        for k, issuer in enumerate(self.issuers):
            flags[issuer] = ISSUER_FLAGS[k % len(ISSUER_FLAGS)]
        self.balances = balances
        self.flags = flags

        # Overlays land on distinct ordinary accounts so each kind stays clean.
        candidates = [i for i in range(1, n) if self.role[i] == ROLE_ORDINARY]
        rng.shuffle(candidates)
        pool = iter(candidates)
        self.domain_override: dict[int, str] = {}
        self.hostile: list[int] = []
        for text in HOSTILE_HOME_DOMAINS:
            account = next(pool)
            self.domain_override[account] = text
            self.hostile.append(account)
        self.hostile_toml: list[int] = []
        for domain in HOSTILE_TOML_DOMAINS:
            account = next(pool)
            self.domain_override[account] = domain
            self.hostile_toml.append(account)
        self.domain_override[self.airdrop] = AIRDROP_HOME_DOMAIN
        for number, exchange in enumerate(self.exchanges, 1):
            self.domain_override[exchange] = f"exchange-{number}.{self.domain_suffix}"
        for number, issuer in enumerate(self.issuers, 1):
            self.domain_override[issuer] = f"anchor-{number}.{self.domain_suffix}"
        self.flag_accounts: list[int] = []
        for combo in range(16):
            account = next(pool)
            flags[account] = combo
            self.flag_accounts.append(account)
        self.sponsored: list[int] = []
        self.forced_balance: dict[int, int] = {}
        for text in FORCED_BALANCES_XLM:
            account = next(pool)
            balances[account] = xlm_to_stroops(text)
            self.forced_balance[account] = balances[account]
            if balances[account] == 0:
                self.sponsored.append(account)
        per_band = max(3, n // 1000)
        for low, high in BALANCE_BANDS:
            for _ in range(per_band):
                account = next(pool)
                balances[account] = rng.randrange(low * STROOPS, high * STROOPS)
                self.forced_balance[account] = balances[account]
        self.sponsored.append(next(pool))
        self._overlay_taken = set(self.hostile) | set(self.hostile_toml) | set(self.flag_accounts)
        self._overlay_taken |= set(self.forced_balance) | set(self.sponsored)
        self._ordinary_pool = self._generate_bumps(rng, pool)
        self._overlay_taken |= set(self.bump_of)

    def _generate_bumps(self, rng: random.Random, pool: Iterator[int]) -> Iterator[int]:
        """bump_sequence accounts: their sequence number was bumped after their creation, so its
        upper 32 bits name a later ledger than the one that created them (only an upper bound).
        They are old and recent, bumped before and after protocol 19, to the bump ledger's starting
        sequence, to a later ledger's, and past the present. Returns what is left of the pool."""
        latest, p19 = self.latest_ledger, self.protocol19_ledger
        self.bump_of: dict[int, tuple[int, int, int, int]] = {}  # account -> (ledger, bump_to, later txs, last sequence change)
        self.bump_by_ledger: dict[int, int] = {}
        skipped: list[int] = []
        used: set[int] = set()
        for k in range(max(4, self.size // 500)):
            want_old = k % 2 == 0  # created before Horizon's history window, or inside it
            want_pre19 = k % 4 == 2 and p19 < latest  # bumped before protocol 19: no sequence_ledger
            for account in pool:
                created = self.ledgers[account]
                fits = (created < self.elder_ledger) == want_old and created < latest - 100
                if fits and (not want_pre19 or created < p19 - 100):
                    break
                skipped.append(account)
            else:
                break
            low, high = created + 1, latest - 3
            if want_pre19:
                high = p19 - 1
            elif k % 4 == 0 and p19 < high:
                low = max(low, p19)
            ledger = self._free_ledger(low + rng.randrange(max(1, high - low)), used)
            style = k % 4
            if style == 0:  # the bump ledger's own starting sequence (voids pre-signed transactions)
                bump_to = ledger << 32
            elif style == 1:  # a later ledger's, before now
                bump_to = ((ledger + 1 + rng.randrange(max(1, latest - ledger))) << 32) + rng.randrange(1 << 32)
            elif style == 2:
                bump_to = (ledger << 32) + rng.randrange(1, 1 << 32)
            else:  # past the present: sequence >> 32 is a ledger that has not closed yet
                bump_to = (latest + 1 + rng.randrange(10_000_000)) << 32
            later = rng.randrange(0, 4)  # transactions after the bump
            change = ledger if not later else ledger + 1 + rng.randrange(max(1, latest - ledger - 2))
            self.bump_of[account] = (ledger, bump_to, later, change)
            self.bump_by_ledger[ledger] = account
        return itertools.chain(skipped, pool)

    def _generate_failed_ops(self, rng: random.Random, urn: list[int]) -> None:
        """Failed create_account ops: to never-existing ghosts, to accounts someone else creates
        later, and to accounts that already exist (CREATE_ACCOUNT_ALREADY_EXIST)."""
        n = self.size
        latest = self.latest_ledger
        count = max(12, n // 100)
        self.failed_funder = array("i", [0]) * count
        self.failed_target = array("q", [0]) * count  # >= total: a ghost address
        self.failed_ledger = array("I", [0]) * count
        self.failed_amount = array("q", [0]) * count
        ordinary = [i for i in range(n // 10, n) if self.role[i] == ROLE_ORDINARY and i not in self._overlay_taken]
        self.failed_targets_existing: list[int] = []
        for f in range(count):
            case = f % 3
            if case == 0:
                funder = urn[rng.randrange(len(urn))]
                target = self.total + f
                ledger = self.ledgers[funder] + 1 + rng.randrange(max(1, latest - self.ledgers[funder] - 2))
            elif case == 1:
                while True:
                    target = ordinary[rng.randrange(len(ordinary))]
                    funder = urn[rng.randrange(len(urn))]
                    if funder < target and funder != self.creator[target] and self.ledgers[target] - self.ledgers[funder] > 2:
                        break
                ledger = rng.randrange(self.ledgers[funder] + 1, self.ledgers[target])
            else:
                while True:
                    target = ordinary[rng.randrange(len(ordinary))]
                    funder = urn[rng.randrange(len(urn))]
                    if funder != self.creator[target]:
                        break
                low = max(self.ledgers[target], self.ledgers[funder]) + 1
                ledger = rng.randrange(low, latest - 1)
            if case:
                self.failed_targets_existing.append(target)
            self.failed_funder[f] = funder
            self.failed_target[f] = target
            self.failed_ledger[f] = ledger
            self.failed_amount[f] = rng.randrange(1, 200) * STROOPS
        self.failed_by_account: dict[int, list[int]] = {}
        for f in range(count):
            for party in (self.failed_funder[f], self.failed_target[f]):
                self.failed_by_account.setdefault(party, []).append(toid(*self._failed_slot(f)))
        for ops in self.failed_by_account.values():
            ops.sort()
        self.failed_targets_existing = sorted(set(self.failed_targets_existing))
        self._overlay_taken |= set(self.failed_targets_existing)

    @staticmethod
    def _failed_slot_parts(f: int) -> tuple[int, int]:
        return TX_FAILED0 + f // FAILED_PER_TX, f % FAILED_PER_TX + 1

    def _failed_slot(self, f: int) -> tuple[int, int, int]:
        tx, op = self._failed_slot_parts(f)
        return self.failed_ledger[f], tx, op

    def _generate_payments(self, rng: random.Random) -> None:
        """Exchange traffic: 10k+ payments each, spread over the last PAYMENT_WINDOW_DAYS."""
        latest = self.latest_ledger
        window = PAYMENT_WINDOW_DAYS * 86_400 // LEDGER_SECONDS
        excluded = set(self.merged) | set(self.merged_gone)
        self._counterparties = array("i", [i for i in range(1, self.size) if self.role[i] == ROLE_ORDINARY and i not in excluded])
        self.payment_plans: list[tuple[int, int, int, int]] = []  # (exchange, count, first ledger, step)
        self.payment_cp: list[array] = []
        self.payments_by_account: dict[int, list[int]] = {}
        self.payment_counts: dict[int, int] = {}
        cp_ledgers = _VirtualSequence(len(self._counterparties), lambda m: self.ledgers[self._counterparties[m]])
        for e, exchange in enumerate(self.exchanges):
            count = EXCHANGE_MIN_PAYMENTS + rng.randrange(1, 2_500)
            first = max(self.ledgers[exchange] + 2, latest - window)
            step = (latest - 2 - first) // count
            if step < 1:
                raise InvalidInput("invalid_now", "now leaves too little history for the exchanges' payments", "now")
            self.payment_plans.append((exchange, count, first, step))
            cps = array("i", [0]) * count
            for k in range(count):
                ledger = first + k * step
                available = bisect.bisect_left(cp_ledgers, ledger)
                cp = self._counterparties[mix64(self._key, 11, e, k) % max(1, available)]
                cps[k] = cp
                self.payments_by_account.setdefault(cp, []).append(toid(ledger, TX_EXCHANGE0 + e, 1))
            self.payment_cp.append(cps)
            self.payment_counts[exchange] = count
        for cp, ops in self.payments_by_account.items():
            ops.sort()
            self.payment_counts[cp] = self.payment_counts.get(cp, 0) + len(ops)

    def _generate_airdrop(self) -> None:
        """Batches of AIRDROP_BATCH creates, spread from just after the airdrop account's creation
        to just before now, so every history window holds some of them."""
        start = self.ledgers[self.airdrop] + 10
        end = self.latest_ledger - 10
        batches = max(1, math.ceil(self.airdrop_size / AIRDROP_BATCH))
        if batches == 1:
            self.airdrop_first_ledger, self.airdrop_step = end, 1
        else:
            self.airdrop_first_ledger = start
            self.airdrop_step = max(1, (end - start) // (batches - 1))

    def _build_directory(self) -> None:
        """Stellar Expert directory entries for this network's notable accounts."""
        entries: dict[int, dict] = {0: {"name": "Stellar genesis", "tags": ["sdf"]}}
        for number, exchange in enumerate(self.exchanges, 1):
            tags = ["exchange", "memo-required"] if number == 1 else ["exchange"]
            entries[exchange] = {"name": f"Exchange {number}", "tags": tags}
        for number, issuer in enumerate(self.issuers, 1):
            entries[issuer] = {"name": f"Anchor {number}", "tags": ["issuer", "anchor"]}
        entries[self.airdrop] = {"name": "XLM airdrop distributor", "tags": ["airdrop", "unsafe"]}
        phishing = [a for a in self.hostile + self.hostile_toml if self._is_blocked(self.domain_override[a])]
        for account in phishing:
            entries[account] = {"name": "Fake giveaway", "tags": ["malicious"]}
        self.malicious = sorted(phishing)
        hostile_names = ("<script>alert('directory')</script>", "N" * 1000, "Ставка 💸 ステラ \u202eevil")
        spare = (a for a in self._ordinary_pool if a not in self.failed_targets_existing)
        for account, name in zip(spare, hostile_names):
            entries[account] = {"name": name, "tags": ["unsafe"]}
        for account, entry in entries.items():
            entry["domain"] = self.domain_override.get(account)
        self.directory = entries
        self._overlay_taken |= set(entries)

    @staticmethod
    def _is_blocked(domain: str) -> bool:
        domain = domain.lower()
        parts = domain.split(".")
        return any(".".join(parts[k:]) in BLOCKED_DOMAINS for k in range(len(parts) - 1))

    # ------------------------------------------------------------------ addresses
    def address(self, index: int) -> str:
        return self.codec.encode(index)

    def resolve(self, address: str) -> tuple[str, int] | None:
        """("core", i), ("airdrop_child", j), ("ghost", f) or None for an address never seen here."""
        index = self.codec.decode(address)
        if index is None:
            return None
        if index < self.size:
            return "core", index
        if index < self.total:
            return "airdrop_child", index - self.size
        f = index - self.total
        if f < len(self.failed_target) and self.failed_target[f] == index:
            return "ghost", f
        return None

    def missing_address(self, k: int) -> str:
        """A valid StrKey that never exists on this network (past the ghosts' index range)."""
        return self.address(self.total + len(self.failed_target) + 1 + k)

    # ------------------------------------------------------------------ account state
    def exists(self, index: int) -> bool:
        return index >= self.size or self.role[index] != ROLE_MERGED_GONE

    def home_domain(self, index: int) -> str | None:
        if index >= self.size:
            return None
        domain = self.domain_override.get(index)
        if domain is not None:
            return domain
        if self.role[index] == ROLE_ORDINARY and index not in self._overlay_taken and mix64(self._key, 5, index) % 33 == 0:
            return f"site-{index}.{self.domain_suffix}"
        return None

    def trustlines(self, index: int) -> tuple:
        if index >= self.size or not self.exists(index) or self.role[index] == ROLE_ISSUER:
            return ()
        h = mix64(self._key, 7, index)
        if self.role[index] == ROLE_EXCHANGE:
            picks = range(len(ASSET_SPECS))
        elif h % 100 < 12:
            first = (h >> 8) % len(ASSET_SPECS)
            picks = sorted({(first + t * 2) % len(ASSET_SPECS) for t in range(1 + (h >> 16) % 3)})
        else:
            return ()
        return tuple((a, mix64(self._key, 8, index, a) % (500_000 * STROOPS)) for a in picks)

    def creation_ledger(self, index: int) -> int:
        if index < self.size:
            return self.ledgers[index]
        return self._airdrop_ledger(index - self.size)

    def _last_activity(self, index: int) -> int:
        """The last ledger in which an operation changed this core account's ledger entry."""
        last = self.ledgers[index]
        lo, hi = self.child_offsets[index], self.child_offsets[index + 1]
        if hi > lo:
            last = max(last, self.ledgers[self.children_csr[hi - 1]])
        for account in self.recreated_by.get(index, ())[-1:]:
            last = max(last, self.recreation_of[account][0])
        for account in self.merges_into.get(index, ())[-1:]:
            last = max(last, self.merge_of[account][0])
        for table in (self.merge_of, self.recreation_of):
            if index in table:
                last = max(last, table[index][0])
        if index == self.airdrop and self.airdrop_size:
            last = max(last, self._airdrop_ledger(self.airdrop_size - 1))
        if index in self.exchanges:
            _, count, first, step = self.payment_plans[self.exchanges.index(index)]
            last = max(last, first + (count - 1) * step)
        if index in self.payments_by_account:
            last = max(last, self.payments_by_account[index][-1] >> 32)
        for op_id in self.failed_by_account.get(index, ()):
            if self.failed_funder_index(op_id) == index:  # the funder pays the fee; a target is not touched
                last = max(last, op_id >> 32)
        if index in self.bump_of:
            last = max(last, self.bump_of[index][3])
        return last

    @staticmethod
    def _sequence_change(created: int, last_modified: int, txs: int, h: int) -> int | None:
        """The ledger of the last transaction an account sourced (its last sequence change), if any."""
        if txs == 0 or last_modified <= created:
            return None
        return created + 1 + (h >> 40) % (last_modified - created)

    def _horizon_sequence_ledger(self, change: int | None) -> int | None:
        """stellar-core records seqLedger only for changes under protocol 19 or later."""
        return change if change is not None and change >= self.protocol19_ledger else None

    def state(self, index: int) -> AccountState:
        """The account's last ledger entry. A new account's sequence number is its creation ledger
        << 32 (stellar-core getStartingSequenceNumber), plus one per transaction it sourced since;
        bump_sequence can raise it to anything larger."""
        address = self.address(index)
        latest = self.latest_ledger
        if index >= self.size:
            j = index - self.size
            ledger = self._airdrop_ledger(j)
            start = self._airdrop_start(j)
            h = mix64(self._key, 9, j)
            if h % 3 == 0:  # never used: the entry is as the creation left it
                last_modified, txs, balance = ledger, 0, start
            else:
                last_modified = ledger + 1 + h % max(1, latest - ledger - 1)
                txs, balance = (h >> 20) % 5, start + h % (3 * STROOPS)
            change = self._sequence_change(ledger, last_modified, txs, h)
            return AccountState(
                index=index, address=address, exists=True, balance=balance, flags=0,
                home_domain=None, trustlines=(), created_ledger=ledger, first_created_ledger=ledger,
                sequence=(ledger << 32) + txs, last_modified_ledger=last_modified,
                sponsor=None, payments=0, sequence_ledger=self._horizon_sequence_ledger(change), last_balance=balance,
            )
        first = self.ledgers[index]
        current = self.recreation_of[index][0] if index in self.recreation_of else first
        exists = self.exists(index)
        h = mix64(self._key, 9, index)
        txs = (h >> 20) % 10_000
        if not exists:  # merged away: the deleted entry is the last one, as its own merge left it
            last_modified = self.merge_of[index][0]
            txs = max(1, txs)
            change: int | None = last_modified
        else:
            activity = self._last_activity(index)
            if activity <= current and h % 5 == 0 and index:
                last_modified, txs = current, 0  # untouched since its creation
            else:
                span = latest - current - 1
                if (h >> 8) % 3 == 0:  # dormant: nothing of its own since its first year
                    span = min(span, DORMANT_LEDGERS)
                last_modified = max(activity, current + 1 + h % max(1, span))
                if activity > current:
                    txs = max(1, txs)
            change = self._sequence_change(current, last_modified, txs, h)
        sequence = (current << 32) + txs
        if index in self.bump_of:
            _, bump_to, later, change = self.bump_of[index]
            sequence = bump_to + later
        sponsor = self.address(self.creator[index]) if index in self.sponsored else None
        return AccountState(
            index=index, address=address, exists=exists, balance=self.balances[index] if exists else 0,
            flags=self.flags[index], home_domain=self.home_domain(index), trustlines=self.trustlines(index),
            created_ledger=current, first_created_ledger=first, sequence=sequence,
            last_modified_ledger=last_modified, sponsor=sponsor, payments=self.payment_counts.get(index, 0),
            sequence_ledger=self._horizon_sequence_ledger(change), last_balance=self.balances[index],
        )

    def asset(self, number: int) -> dict:
        code, issuer = ASSET_SPECS[number]
        return {
            "asset_type": "credit_alphanum4" if len(code) <= 4 else "credit_alphanum12",
            "asset_code": code,
            "asset_issuer": self.address(self.issuers[issuer]),
        }

    # ------------------------------------------------------------------ creation events
    def _airdrop_slot(self, j: int) -> tuple[int, int, int]:
        batch, within = divmod(j, AIRDROP_BATCH)
        return self.airdrop_first_ledger + batch * self.airdrop_step, TX_AIRDROP0 + within // 100, within % 100 + 1

    def _airdrop_ledger(self, j: int) -> int:
        return self.airdrop_first_ledger + (j // AIRDROP_BATCH) * self.airdrop_step

    def _airdrop_start(self, j: int) -> int:
        return STROOPS + (mix64(self._key, 10, j) % 40) * (STROOPS // 10)

    def _start_balance(self, index: int) -> int:
        if index in self.sponsored:
            return 0
        h = mix64(self._key, 3, index)
        return (1 + h % 2_000) * STROOPS + (h >> 32) % STROOPS

    def creation_events(self, index: int) -> list[dict]:
        """Successful create_account events of an account, oldest first (several after merge + re-create)."""
        if index >= self.size:
            j = index - self.size
            slot = self._airdrop_slot(j)
            return [self._event(self.airdrop, slot, self._airdrop_start(j), recreation=False)]
        if index == 0:
            return []
        events = [self._event(self.creator[index], (self.ledgers[index], TX_CREATE, 1), self._start_balance(index), False)]
        if index in self.recreation_of:
            ledger, funder, start = self.recreation_of[index]
            events.append(self._event(funder, (ledger, TX_RECREATE, 1), start, True))
        return events

    def _event(self, creator: int, slot: tuple[int, int, int], start: int, recreation: bool) -> dict:
        op_id = toid(*slot)
        return {
            "creator_index": creator,
            "creator": self.address(creator),
            "ledger": slot[0],
            "created_at": ledger_close_time(slot[0]),
            "operation_id": str(op_id),
            "starting_balance": stroops_to_str(start),
            "transaction_hash": self.tx_hash(slot[0], slot[1]),
            "in_horizon_history": slot[0] >= self.elder_ledger,
            "recreation": recreation,
        }

    def children_count(self, index: int) -> int:
        if index >= self.size:
            return 0
        count = self.child_offsets[index + 1] - self.child_offsets[index]
        count += len(self.recreated_by.get(index, ()))
        if index == self.airdrop:
            count += self.airdrop_size
        return count

    def iter_children(self, index: int) -> Iterator[tuple[int, int, bool]]:
        """(ledger, child index, is_recreation) in creation order."""
        if index >= self.size:
            return iter(())
        lo, hi = self.child_offsets[index], self.child_offsets[index + 1]
        first = ((self.ledgers[c], c, False) for c in self.children_csr[lo:hi])
        again = ((self.recreation_of[c][0], c, True) for c in self.recreated_by.get(index, ()))
        streams = [first, again]
        if index == self.airdrop:
            streams.append((self._airdrop_ledger(j), self.size + j, False) for j in range(self.airdrop_size))
        return heapq.merge(*streams)

    def edges(self) -> Iterator[tuple[int, int, int]]:
        """Every successful creation edge (creator index, child index, operation id), in time order."""
        streams = [
            ((self.creator[i], i, toid(self.ledgers[i], TX_CREATE, 1)) for i in range(1, self.size)),
            sorted(((funder, a, toid(ledger, TX_RECREATE, 1)) for a, (ledger, funder, _) in self.recreation_of.items()),
                   key=lambda edge: edge[2]),
            ((self.airdrop, self.size + j, toid(*self._airdrop_slot(j))) for j in range(self.airdrop_size)),
        ]
        return heapq.merge(*streams, key=lambda edge: edge[2])

    def tx_hash(self, ledger: int, tx_order: int) -> str:
        return hashlib.blake2b(f"{self._key}/{ledger}/{tx_order}".encode(), digest_size=32).hexdigest()

    # ------------------------------------------------------------------ operations
    def operation(self, op_id: int) -> Operation | None:
        """Rebuild an operation from its id; None when no such operation exists."""
        if not isinstance(op_id, int) or op_id <= 0:
            return None
        ledger, tx, op = split_toid(op_id)
        if tx == TX_CREATE and op == 1:
            i = bisect.bisect_left(self.ledgers, ledger)
            if i == 0 or i >= self.size or self.ledgers[i] != ledger:
                return None
            return self._create_op(op_id, ledger, tx, self.creator[i], i, self._start_balance(i), True)
        if tx == TX_RECREATE and op == 1 and ledger in self.recreation_by_ledger:
            account = self.recreation_by_ledger[ledger]
            _, funder, start = self.recreation_of[account]
            return self._create_op(op_id, ledger, tx, funder, account, start, True)
        if tx == TX_MERGE and op == 1 and ledger in self.merge_by_ledger:
            account = self.merge_by_ledger[ledger]
            source = self.address(account)
            return Operation(op_id, ledger, "account_merge", 8, True, source, self.tx_hash(ledger, tx),
                             {"account": source, "into": self.address(self.merge_of[account][1])})
        if tx == TX_BUMP and op == 1 and ledger in self.bump_by_ledger:
            source = self.address(self.bump_by_ledger[ledger])
            bump_to = self.bump_of[self.bump_by_ledger[ledger]][1]
            return Operation(op_id, ledger, "bump_sequence", BUMP_SEQUENCE_TYPE_I, True, source, self.tx_hash(ledger, tx),
                             {"bump_to": str(bump_to)})
        if TX_AIRDROP0 <= tx < TX_AIRDROP0 + AIRDROP_BATCH // 100 and 1 <= op <= 100:
            offset = ledger - self.airdrop_first_ledger
            batch, rest = divmod(offset, self.airdrop_step)
            j = batch * AIRDROP_BATCH + (tx - TX_AIRDROP0) * 100 + op - 1
            if offset < 0 or rest or j >= self.airdrop_size:
                return None
            return self._create_op(op_id, ledger, tx, self.airdrop, self.size + j, self._airdrop_start(j), True)
        if TX_EXCHANGE0 <= tx < TX_EXCHANGE0 + len(self.exchanges) and op == 1:
            e = tx - TX_EXCHANGE0
            exchange, count, first, step = self.payment_plans[e]
            k, rest = divmod(ledger - first, step)
            if ledger < first or rest or k >= count:
                return None
            return self._payment_op(op_id, ledger, tx, e, k)
        if tx >= TX_FAILED0 and op >= 1:
            f = (tx - TX_FAILED0) * FAILED_PER_TX + op - 1
            if f >= len(self.failed_ledger) or self.failed_ledger[f] != ledger or op > FAILED_PER_TX:
                return None
            return self._create_op(op_id, ledger, tx, self.failed_funder[f], self.failed_target[f], self.failed_amount[f], False)
        return None

    def _create_op(self, op_id, ledger, tx, funder, account, start, successful) -> Operation:
        funder_address = self.address(funder)
        details = {"starting_balance": stroops_to_str(start), "funder": funder_address, "account": self.address(account)}
        return Operation(op_id, ledger, "create_account", 0, successful, funder_address, self.tx_hash(ledger, tx), details)

    def _payment_op(self, op_id: int, ledger: int, tx: int, e: int, k: int) -> Operation:
        exchange = self.address(self.exchanges[e])
        other = self.address(self.payment_cp[e][k])
        sender, receiver = (other, exchange) if k % 2 == 0 else (exchange, other)
        h = mix64(self._key, 12, e, k)
        details = {"from": sender, "to": receiver, "amount": stroops_to_str(1 + h % (50_000 * STROOPS))}
        if k % 7 == 3:
            details.update(self.asset(0))
        else:
            details["asset_type"] = "native"
        return Operation(op_id, ledger, "payment", 1, True, sender, self.tx_hash(ledger, tx), details)

    def operation_streams(self, address: str) -> tuple[list[Sequence[int]], list[int]] | None:
        """Sorted operation-id sequences an account takes part in: (successful streams, failed ids).
        None when the address never appeared on this network (Horizon answers 404)."""
        found = self.resolve(address)
        if found is None:
            return None
        kind, number = found
        if kind == "ghost":
            return [], self.failed_by_account.get(self.total + number, [])
        if kind == "airdrop_child":
            return [[toid(*self._airdrop_slot(number))]], []
        i = number
        own = [toid(self.ledgers[i], TX_CREATE, 1)] if i else []
        if i in self.recreation_of:
            own.append(toid(self.recreation_of[i][0], TX_RECREATE, 1))
        if i in self.merge_of:
            own.append(toid(self.merge_of[i][0], TX_MERGE, 1))
        if i in self.bump_of:
            own.append(toid(self.bump_of[i][0], TX_BUMP, 1))
        own += [toid(self.merge_of[a][0], TX_MERGE, 1) for a in self.merges_into.get(i, ())]
        own += [toid(self.recreation_of[a][0], TX_RECREATE, 1) for a in self.recreated_by.get(i, ())]
        own += self.payments_by_account.get(i, [])
        own.sort()
        lo, hi = self.child_offsets[i], self.child_offsets[i + 1]
        csr = self.children_csr
        streams: list[Sequence[int]] = [own, _VirtualSequence(hi - lo, lambda k: toid(self.ledgers[csr[lo + k]], TX_CREATE, 1))]
        if i == self.airdrop:
            streams.append(_VirtualSequence(self.airdrop_size, lambda j: toid(*self._airdrop_slot(j))))
        if i in self.exchanges:
            e = self.exchanges.index(i)
            _, count, first, step = self.payment_plans[e]
            streams.append(_VirtualSequence(count, lambda k: toid(first + k * step, TX_EXCHANGE0 + e, 1)))
        return streams, self.failed_by_account.get(i, [])

    def operation_page(
        self, address: str, order: str = "asc", cursor: int | None = None, limit: int = 10, include_failed: bool = False
    ) -> list[Operation] | None:
        """One page of an account's operations as a pruned Horizon returns it (ids > elder only)."""
        ids = self.operation_page_ids(address, order, cursor, limit, include_failed)
        return None if ids is None else [self.operation(op_id) for op_id in ids]

    def operation_page_ids(
        self, address: str, order: str = "asc", cursor: int | None = None, limit: int = 10, include_failed: bool = False
    ) -> list[int] | None:
        """The ids of one page: bisect each sorted stream, take `limit` from each, merge."""
        found = self.operation_streams(address)
        if found is None:
            return None
        streams, failed = found
        if include_failed and failed:
            streams = streams + [failed]
        floor = toid(self.elder_ledger, 0, 0)
        picked: list[int] = []
        if order == "asc":
            after = max(cursor or 0, floor)
            for seq in streams:
                k = bisect.bisect_right(seq, after)
                picked.extend(seq[k:k + limit])
            picked.sort()
        else:
            before = cursor if cursor is not None else 1 << 63
            for seq in streams:
                k = bisect.bisect_left(seq, before)
                picked.extend(v for v in seq[max(0, k - limit):k] if v > floor)
            picked.sort(reverse=True)
        return picked[:limit]

    def all_operation_ids(self) -> list[int]:
        """Every operation on the network, successful or not, in id order (Hubble sees all of it)."""
        ids = array("q")
        ids.extend(toid(self.ledgers[i], TX_CREATE, 1) for i in range(1, self.size))
        ids.extend(toid(ledger, TX_RECREATE, 1) for ledger, _, _ in self.recreation_of.values())
        ids.extend(toid(ledger, TX_MERGE, 1) for ledger, _ in self.merge_of.values())
        ids.extend(toid(ledger, TX_BUMP, 1) for ledger in self.bump_by_ledger)
        ids.extend(toid(*self._airdrop_slot(j)) for j in range(self.airdrop_size))
        for e, (_, count, first, step) in enumerate(self.payment_plans):
            ids.extend(toid(first + k * step, TX_EXCHANGE0 + e, 1) for k in range(count))
        ids.extend(toid(*self._failed_slot(f)) for f in range(len(self.failed_ledger)))
        return sorted(ids)

    # ------------------------------------------------------------------ ground truth
    def kinds_of(self, index: int) -> list[str]:
        if index >= self.size:
            return ["airdrop_child"]
        kinds = [ROLE_NAMES[self.role[index]]]
        for name, members in (
            ("hostile", self.hostile), ("hostile_toml", self.hostile_toml), ("flags", self.flag_accounts),
            ("sponsored", self.sponsored), ("failed_target", self.failed_targets_existing),
            ("malicious", self.malicious), ("bump_sequence", self.bump_of),
        ):
            if index in members:
                kinds.append(name)
        if index in self.directory:
            kinds.append("directory")
        if self.ledgers[index] < self.elder_ledger:
            kinds.append("old")
        return kinds

    def truth(self, address: str, children_cursor: int = 0, children_limit: int = 100) -> dict:
        """Everything the pipeline should conclude about one account."""
        found = self.resolve(address)
        base = {"network": self.name, "account": address}
        if found is None or found[0] == "ghost":
            failed = self._failed_truth(self.total + found[1]) if found else []
            return {**base, "exists": False, "ever_existed": False, "kinds": ["ghost"] if found else ["missing"],
                    "creation_events": [], "creator": None, "current_creator": None, "created_at": None,
                    "merges": [], "depth": None, "ancestors": [], "failed_create_ops": failed, **_NO_SEQUENCE,
                    "children": {"total": 0, "items": [], "cursor": "0", "next_cursor": None, "limit": children_limit}}
        kind, number = found
        index = number if kind == "core" else self.size + number
        events = self.creation_events(index)
        state = self.state(index)
        ancestors = []
        walker = self.creator[index] if index < self.size else self.airdrop
        if index == 0:
            walker = -1
        while walker >= 0:
            ancestors.append(self.address(walker))
            walker = self.creator[walker]
        ancestors.reverse()
        merges = []
        if index in self.merge_of:
            ledger, into = self.merge_of[index]
            merges.append({"into": self.address(into), "merged_at": iso_z(ledger_close_time(ledger)),
                           "operation_id": str(toid(ledger, TX_MERGE, 1))})
        items = []
        for ledger, child, again in itertools.islice(self.iter_children(index), children_cursor, children_cursor + children_limit):
            op_id = toid(ledger, TX_RECREATE, 1) if again else self._first_creation_op(child)
            start = self.recreation_of[child][2] if again else (
                self._start_balance(child) if child < self.size else self._airdrop_start(child - self.size))
            items.append({"account": self.address(child), "created_at": iso_z(ledger_close_time(ledger)),
                          "operation_id": str(op_id), "starting_balance": stroops_to_str(start), "recreation": again})
        total = self.children_count(index)
        next_cursor = children_cursor + len(items)
        entry = self.directory.get(index)
        return {
            **base,
            "exists": state.exists,
            "ever_existed": True,
            "kinds": self.kinds_of(index),
            "creation_events": [_public_event(e) for e in events],
            "creator": events[0]["creator"] if events else None,
            "current_creator": events[-1]["creator"] if events else None,
            "created_at": iso_z(events[0]["created_at"]) if events else iso_z(ledger_close_time(1)),
            "merges": merges,
            "depth": len(ancestors),
            "ancestors": ancestors,
            "xlm_balance": stroops_to_str(state.balance) if state.exists else None,
            "home_domain": state.home_domain,
            "flags": {name: bool(state.flags >> bit & 1) for bit, name in enumerate(FLAG_NAMES)},
            "assets": [{**self.asset(a), "balance": stroops_to_str(b)} for a, b in state.trustlines],
            "directory": {"address": address, **entry} if entry else None,
            "failed_create_ops": self._failed_truth(index),
            **self._sequence_truth(index, state),
            "children": {"total": total, "items": items, "cursor": str(children_cursor),
                         "next_cursor": str(next_cursor) if next_cursor < total else None, "limit": children_limit},
        }

    def _sequence_truth(self, index: int, state: AccountState) -> dict:
        """The sequence number and what it says about the creation ledger (the last life's, for a
        merged account: its deleted entry keeps its last sequence number)."""
        from_sequence = state.sequence >> 32
        bump = None
        if index in self.bump_of:
            ledger, bump_to, _, _ = self.bump_of[index]
            bump = {"operation_id": str(toid(ledger, TX_BUMP, 1)), "ledger": ledger,
                    "at": iso_z(ledger_close_time(ledger)), "bump_to": str(bump_to)}
        return {
            "sequence": str(state.sequence),
            "sequence_ledger": state.sequence_ledger,
            "creation_ledger": state.created_ledger,
            "first_creation_ledger": state.first_created_ledger,
            "ledger_from_sequence": from_sequence,
            "sequence_matches_creation": from_sequence == state.created_ledger,
            "bump_sequence": bump,
            "last_modified_ledger": state.last_modified_ledger,
        }

    def _first_creation_op(self, child: int) -> int:
        if child < self.size:
            return toid(self.ledgers[child], TX_CREATE, 1)
        return toid(*self._airdrop_slot(child - self.size))

    def _failed_truth(self, party: int) -> list[dict]:
        out = []
        for op_id in self.failed_by_account.get(party, []):
            op = self.operation(op_id)
            out.append({"operation_id": str(op_id), "funder": op.details["funder"], "account": op.details["account"],
                        "at": iso_z(op.closed_at), "role": "funder" if self.failed_funder_index(op_id) == party else "target"})
        return out

    def failed_funder_index(self, op_id: int) -> int:
        _, tx, op = split_toid(op_id)
        return self.failed_funder[(tx - TX_FAILED0) * FAILED_PER_TX + op - 1]

    # ------------------------------------------------------------------ picking accounts for tests
    KINDS = (
        "genesis", "ordinary", "recent", "old", "chain", "deep", "airdrop", "airdrop_child", "exchange",
        "exchange_child", "issuer", "merged", "merged_gone", "hostile", "hostile_toml", "flags", "sponsored",
        "failed_target", "failed_funder", "ghost", "missing", "hub", "leaf", "hva", "with_assets", "directory",
        "malicious", "bump_sequence",
    )

    def _kind_candidates(self, kind: str) -> Iterable[int]:
        n = self.size

        def plain(i: int) -> bool:
            return self.role[i] == ROLE_ORDINARY and i not in self._overlay_taken
        if kind == "genesis":
            return [0]
        if kind == "ordinary":
            return (i for i in range(1, n) if plain(i))
        if kind == "recent":
            return (i for i in range(1, n) if plain(i) and self.ledgers[i] >= self.elder_ledger)
        if kind == "old":
            return (i for i in range(1, n) if plain(i) and self.ledgers[i] < self.elder_ledger)
        if kind == "deep":
            return sorted((i for i in range(1, n) if self.depth[i] >= 12), key=lambda i: (-self.depth[i], i))
        if kind == "airdrop_child":
            return range(self.size, self.total)
        if kind == "hub":
            return sorted(range(n), key=lambda i: (-self.children_count(i), i))[:1000]
        if kind == "leaf":
            return (i for i in range(1, n) if plain(i) and self.children_count(i) == 0)
        if kind == "hva":
            return sorted((i for i in range(n) if self.exists(i) and self.balances[i] >= HVA_THRESHOLDS[0] * STROOPS),
                          key=lambda i: (-self.balances[i], i))
        if kind == "with_assets":
            return (i for i in range(1, n) if self.trustlines(i))
        if kind == "failed_funder":
            return sorted(set(self.failed_funder))
        lists = {
            "chain": self.chain, "airdrop": [self.airdrop], "exchange": self.exchanges,
            "exchange_child": self.exchange_children, "issuer": self.issuers, "merged": self.merged,
            "merged_gone": self.merged_gone, "hostile": self.hostile, "hostile_toml": self.hostile_toml,
            "flags": self.flag_accounts, "sponsored": self.sponsored, "failed_target": self.failed_targets_existing,
            "directory": sorted(self.directory), "malicious": self.malicious, "bump_sequence": sorted(self.bump_of),
        }
        return lists[kind]

    def pick(self, kind: str, limit: int = 10, offset: int = 0,
             min_balance: int | None = None, max_balance: int | None = None) -> dict:
        """Accounts of one kind (balances in stroops filter the current XLM balance)."""
        if kind not in self.KINDS:
            raise InvalidInput("invalid_kind", f"kind must be one of {', '.join(self.KINDS)}", "kind")
        _check_int("limit", limit, 1, 10_000)
        _check_int("offset", offset, 0, 10**9)
        if kind in ("ghost", "missing"):
            if kind == "ghost":
                ghosts = [f for f in range(len(self.failed_target)) if self.failed_target[f] >= self.total]
                addresses = [self.address(self.total + f) for f in ghosts]
            else:
                addresses = [self.missing_address(k) for k in range(offset + limit)]
            chosen = addresses[offset:offset + limit]
            return {"network": self.name, "kind": kind, "offset": offset, "limit": limit,
                    "accounts": [{"account": a, "exists": False} for a in chosen]}
        accounts = []
        seen = 0
        for index in self._kind_candidates(kind):
            balance = self.state(index).balance if index >= self.size else self.balances[index]
            if min_balance is not None and balance < min_balance:
                continue
            if max_balance is not None and balance > max_balance:
                continue
            seen += 1
            if seen <= offset:
                continue
            accounts.append(self.summary(index))
            if len(accounts) >= limit:
                break
        return {"network": self.name, "kind": kind, "offset": offset, "limit": limit, "accounts": accounts}

    def summary(self, index: int) -> dict:
        state = self.state(index)
        first = self.creation_ledger(index)
        return {
            "account": state.address,
            "exists": state.exists,
            "kinds": self.kinds_of(index),
            "created_at": iso_z(ledger_close_time(first)),
            "creation_ledger": state.created_ledger,
            "xlm_balance": stroops_to_str(state.balance) if state.exists else None,
            "depth": self.depth[index] if index < self.size else self.depth[self.airdrop] + 1,
            "num_children": self.children_count(index),
        }

    def kind_counts(self) -> dict:
        counts = {}
        for kind in self.KINDS:
            if kind == "missing":
                continue
            if kind == "airdrop_child":
                counts[kind] = self.airdrop_size
            elif kind == "ghost":
                counts[kind] = sum(1 for f in range(len(self.failed_target)) if self.failed_target[f] >= self.total)
            else:
                counts[kind] = sum(1 for _ in self._kind_candidates(kind))
        return counts

    def describe(self) -> dict:
        return {
            "network": self.name,
            "passphrase": self.passphrase,
            "seed": self.config.seed,
            "accounts": self.size,
            "airdrop_children": self.airdrop_size,
            "total_accounts": self.total,
            "now": iso_z(self.now),
            "latest_ledger": self.latest_ledger,
            "retention_days": self.config.retention_days,
            "history_elder_ledger": self.elder_ledger,
            "history_elder_at": iso_z(ledger_close_time(self.elder_ledger)),
            "genesis": GENESIS_ACCOUNT,
        }


# Truth keys of an address that never held an account.
_NO_SEQUENCE = {"sequence": None, "sequence_ledger": None, "creation_ledger": None, "first_creation_ledger": None,
                "ledger_from_sequence": None, "sequence_matches_creation": None, "bump_sequence": None,
                "last_modified_ledger": None}


def _public_event(event: dict) -> dict:
    return {
        "creator": event["creator"],
        "created_at": iso_z(event["created_at"]),
        "ledger": event["ledger"],
        "starting_sequence": str(event["ledger"] << 32),
        "operation_id": event["operation_id"],
        "starting_balance": event["starting_balance"],
        "transaction_hash": event["transaction_hash"],
        "in_horizon_history": event["in_horizon_history"],
        "recreation": event["recreation"],
    }
