"""The cost guard: no Hubble query runs without a dry run, per-query limits and a budget reservation.

For each query:
1. dry-run it (free) for the bytes it would process;
2. refuse it when the estimate costs more than `cost_limit_usd` (at `price_per_tib_usd`) or
   exceeds `size_limit_bytes`;
3. reserve what BigQuery could bill for it (the estimate rounded up to the next MiB, at least
   10 MiB per table read) against the month's budget with the store's atomic
   `try_reserve_spend`: of two functions racing for the last dollar, exactly one gets it;
4. run it with `maximum_bytes_billed` = the reservation, so BigQuery itself fails a query that
   would bill more than was reserved (the budget cannot be overrun even if an estimate is wrong);
5. reconcile: `adjust_spend` by (billed - reserved) and `record_spend` the billed bytes in the
   monthly ledger. A query that fails is not billed by BigQuery, so its reservation is released.

A refusal raises GuardRefused; the caller hands the account to the API path (never an error page).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import math
from decimal import ROUND_CEILING, Decimal

from common.config import PipelineConfig
from common.hubble.port import Hubble, HubbleQuery, QueryResult

TIB = 2**40
MIB = 2**20
MIN_BILLED_PER_TABLE = 10 * MIB  # BigQuery on-demand: at least 10 MB per table referenced
MICRO = Decimal(1_000_000)


def billable_bytes(bytes_processed: int, tables: int) -> int:
    """What BigQuery on-demand bills for a query: rounded up to the MiB, at least 10 MiB per table."""
    if bytes_processed < 0 or tables < 0:
        raise ValueError("bytes and tables must be >= 0")
    rounded = math.ceil(bytes_processed / MIB) * MIB
    return max(rounded, MIN_BILLED_PER_TABLE * max(tables, 1))


def month_of(now: dt.datetime) -> str:
    return now.astimezone(dt.timezone.utc).strftime("%Y-%m")


class GuardRefused(Exception):
    """The guard will not run this query. `code`: cost_limit | size_limit | budget_exhausted."""

    def __init__(self, code: str, message: str, estimate_bytes: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.estimate_bytes = estimate_bytes


@dataclasses.dataclass(frozen=True)
class Limits:
    cost_limit_usd: Decimal
    size_limit_bytes: int
    price_per_tib_usd: Decimal
    monthly_budget_usd: Decimal

    @classmethod
    def from_config(cls, config: PipelineConfig) -> "Limits":
        return cls(
            cost_limit_usd=config.decimal("cost_limit_usd"),
            size_limit_bytes=int(config["size_limit_bytes"]),
            price_per_tib_usd=config.decimal("price_per_tib_usd"),
            monthly_budget_usd=config.decimal("monthly_budget_usd"),
        )

    def cost_usd(self, nbytes: int) -> Decimal:
        return Decimal(nbytes) * self.price_per_tib_usd / TIB

    def cost_micro_usd(self, nbytes: int) -> int:
        """Micro-dollars, rounded up: the ledger never under-counts."""
        return int((self.cost_usd(nbytes) * MICRO).to_integral_value(rounding=ROUND_CEILING))

    @property
    def budget_micro_usd(self) -> int:
        return int((self.monthly_budget_usd * MICRO).to_integral_value(rounding=ROUND_CEILING))


@dataclasses.dataclass(frozen=True)
class GuardedResult:
    result: QueryResult
    estimate_bytes: int
    reserved_micro_usd: int
    billed_bytes: int
    cost_micro_usd: int


@dataclasses.dataclass
class GuardStats:
    """What one account's run cost (the handler reports it; the benchmark counts it)."""

    dry_runs: int = 0
    queries: int = 0
    bytes_processed: int = 0
    bytes_billed: int = 0
    cost_micro_usd: int = 0


class CostGuard:
    def __init__(self, hubble: Hubble, store, clock, limits: Limits):
        self.hubble = hubble
        self.store = store
        self.clock = clock
        self.limits = limits
        self.stats = GuardStats()

    def check(self, query: HubbleQuery) -> tuple[int, int]:
        """Dry-run and apply the per-query limits. Returns (estimate bytes, bytes to reserve)."""
        estimate = int(self.hubble.dry_run(query).bytes_processed)
        self.stats.dry_runs += 1
        cost = self.limits.cost_usd(estimate)
        if estimate > self.limits.size_limit_bytes:
            raise GuardRefused(
                "size_limit",
                f"{query.purpose} query would process {estimate:,} bytes, over the size limit of {self.limits.size_limit_bytes:,}",
                estimate,
            )
        if cost > self.limits.cost_limit_usd:
            raise GuardRefused(
                "cost_limit",
                f"{query.purpose} query would cost ${cost:.4f}, over the per-query limit of ${self.limits.cost_limit_usd}",
                estimate,
            )
        return estimate, billable_bytes(estimate, len(query.tables))

    def run(self, query: HubbleQuery) -> GuardedResult:
        estimate, reserve_bytes = self.check(query)
        reserved = self.limits.cost_micro_usd(reserve_bytes)
        now = self.clock.now()
        month = month_of(now)
        if not self.store.try_reserve_spend(month, reserved, self.limits.budget_micro_usd, now):
            spent = self.store.month_spend_micro_usd(month)
            raise GuardRefused(
                "budget_exhausted",
                f"{query.purpose} query (${Decimal(reserved) / MICRO:.6f}) would exceed the {month} budget of "
                f"${self.limits.monthly_budget_usd} (spent ${Decimal(spent) / MICRO:.6f})",
                estimate,
            )
        try:
            result = self.hubble.run(query, max_bytes_billed=reserve_bytes)
        except BaseException:
            # BigQuery does not bill a query that fails: give the reservation back.
            self.store.adjust_spend(month, -reserved, self.clock.now())
            raise
        billed = int(result.bytes_billed)
        cost = self.limits.cost_micro_usd(billed)
        if cost != reserved:
            self.store.adjust_spend(month, cost - reserved, self.clock.now())
        self.store.record_spend(month, result.job_id, int(result.bytes_processed), billed, cost, query.purpose, self.clock.now())
        self.stats.queries += 1
        self.stats.bytes_processed += int(result.bytes_processed)
        self.stats.bytes_billed += billed
        self.stats.cost_micro_usd += cost
        return GuardedResult(result, estimate, reserved, billed, cost)
