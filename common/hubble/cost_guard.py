"""The cost guard: no Hubble query runs without a dry run, per-query limits and a budget reservation,
and the spend ledger never counts less than BigQuery bills.

For each query:
1. dry-run it (free) for the bytes it would process;
2. refuse it when the estimate costs more than `cost_limit_usd` (at `price_per_tib_usd`) or
   exceeds `size_limit_bytes`;
3. reserve what BigQuery could bill for it (the estimate rounded up to the next MiB, at least
   10 MiB per table read) against the month's budget with the store's atomic
   `try_reserve_spend`: of two functions racing for the last dollar, exactly one gets it. The
   reservation has its own id, and the job is submitted under a job id made from it, so the job
   can always be looked up from the ledger;
4. run it with `maximum_bytes_billed` = the reservation, so BigQuery itself fails a query that
   would bill more than was reserved (the budget cannot be overrun even if an estimate is wrong);
5. settle: `adjust_spend` the reservation to the billed figure (SETTLED) and `record_spend` the
   billed bytes in the monthly ledger. When the run fails, what is known decides:
   - the job never existed (HubbleNotRun: the only submit was refused): RELEASED, charge 0;
   - the job finished (HubbleJobFailed): SETTLED at its real statistics;
   - anything else (a timeout, a lost connection, an unexpected error): the outcome is unknown.
     The engine has cancelled the job where it could; the reservation stays charged in full
     (UNKNOWN) until `reconcile` finds the job's final statistics.

`reconcile` runs at the next use of the guard (the first query of each process_account run, the
function that owns the jobs and may look them up and cancel them): open reservations older than
`reconcile_after` of this month and the last are looked up by job id. DONE settles them from
the job's statistics; a job still running is cancelled again and left charged; a job BigQuery
does not know is released (it was never created: by then BigQuery would list it).

A refusal raises GuardRefused; the caller hands the account to the API path (never an error page).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
from decimal import ROUND_CEILING, Decimal

from common.config import PipelineConfig
from common.hubble.port import Hubble, HubbleJobFailed, HubbleNotRun, HubbleQuery, PagedResult, QueryResult
from common.store.port import new_reservation_id

log = logging.getLogger(__name__)

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
    result: QueryResult | PagedResult
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


RECONCILE_AFTER = dt.timedelta(minutes=15)  # longer than any job runs here (submit deadline + result timeout)
RECONCILE_BATCH = 20  # open reservations looked up per guard use


@dataclasses.dataclass
class ReconcileReport:
    settled: int = 0
    released: int = 0
    still_running: int = 0
    unknown: int = 0


class CostGuard:
    def __init__(self, hubble: Hubble, store, clock, limits: Limits, reconcile_after: dt.timedelta = RECONCILE_AFTER):
        self.hubble = hubble
        self.store = store
        self.clock = clock
        self.limits = limits
        self.stats = GuardStats()
        self.reconcile_after = reconcile_after
        self.reconciled: ReconcileReport | None = None

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
        return self._guarded(query, lambda max_bytes, job_id: self.hubble.run(query, max_bytes_billed=max_bytes, job_id=job_id))

    def run_pages(self, query: HubbleQuery, page_rows: int) -> GuardedResult:
        """As run(); `result` is a PagedResult whose rows are read page by page after the bill is settled."""
        return self._guarded(query, lambda max_bytes, job_id: self.hubble.run_pages(query, max_bytes, job_id, page_rows))

    def _guarded(self, query: HubbleQuery, submit) -> GuardedResult:
        if self.reconciled is None and self.hubble.tracks_jobs:
            self.reconciled = self._reconcile_quietly()
        estimate, reserve_bytes = self.check(query)
        reserved = self.limits.cost_micro_usd(reserve_bytes)
        now = self.clock.now()
        month = month_of(now)
        rid = new_reservation_id(now)
        job_id = job_id_for(rid)
        if not self.store.try_reserve_spend(month, reserved, self.limits.budget_micro_usd, now, reservation_id=rid, job_id=job_id, purpose=query.purpose):
            spent = self.store.month_spend_micro_usd(month)
            raise GuardRefused(
                "budget_exhausted",
                f"{query.purpose} query (${Decimal(reserved) / MICRO:.6f}) would exceed the {month} budget of "
                f"${self.limits.monthly_budget_usd} (spent ${Decimal(spent) / MICRO:.6f})",
                estimate,
            )
        try:
            result = submit(reserve_bytes, job_id)
        except HubbleNotRun:
            self.store.adjust_spend(month, rid, -reserved, self.clock.now(), state="RELEASED", note="the job was never created")
            raise
        except HubbleJobFailed as exc:
            self._settle(month, rid, reserved, job_id, exc.bytes_processed, exc.bytes_billed, query.purpose, f"job failed: {exc}")
            raise
        except BaseException as exc:
            # The job may have run (or may still run): it stays charged at its maximum until its
            # statistics are seen. Recording the state is best effort; RESERVED is charged the same.
            try:
                self.store.adjust_spend(month, rid, 0, self.clock.now(), state="UNKNOWN", note=f"{type(exc).__name__}: {exc}")
            except Exception:  # noqa: BLE001
                log.warning("could not mark spend reservation %s UNKNOWN", rid, exc_info=True)
            raise
        billed = int(result.bytes_billed)
        cost = self._settle(month, rid, reserved, job_id, int(result.bytes_processed), billed, query.purpose, None)
        self.stats.queries += 1
        self.stats.bytes_processed += int(result.bytes_processed)
        self.stats.bytes_billed += billed
        self.stats.cost_micro_usd += cost
        return GuardedResult(result, estimate, reserved, billed, cost)

    def _settle(self, month: str, rid: str, reserved: int, job_id: str, processed: int, billed: int, purpose: str, note: str | None,
                charged: int | None = None) -> int:
        """Settle one reservation at what BigQuery billed and write the ledger row (once)."""
        cost = self.limits.cost_micro_usd(billed)
        charged = reserved if charged is None else charged
        if not self.store.adjust_spend(month, rid, min(cost, reserved) - charged, self.clock.now(), note=note):
            return cost  # settled already (by a concurrent reconcile): counted once
        if cost > reserved:
            # An engine billed above maximum_bytes_billed (BigQuery cannot): never under-count.
            # The excess is reserved on top, past the budget, and settled at once.
            extra_id = new_reservation_id(self.clock.now())
            self.store.try_reserve_spend(month, cost - reserved, 2**62, self.clock.now(), reservation_id=extra_id, job_id=job_id, purpose=purpose)
            self.store.adjust_spend(month, extra_id, 0, self.clock.now(), note=f"billed above maximum_bytes_billed by job {job_id}")
            log.error("job %s billed %d bytes, above its maximum_bytes_billed: %d micro-USD over the reservation", job_id, billed, cost - reserved)
        if billed or note is None:  # the ledger lists what was billed (the reservation row keeps every job)
            self.store.record_spend(month, job_id, processed, billed, cost, purpose, self.clock.now())
        return cost

    # ------------------------------------------------------------------ reconciliation
    def reconcile(self, now: dt.datetime | None = None, limit: int = RECONCILE_BATCH) -> ReconcileReport:
        """Settle open reservations older than `reconcile_after` from their jobs' statistics."""
        now = now or self.clock.now()
        report = ReconcileReport()
        first_of_month = now.astimezone(dt.timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        for month in (month_of(first_of_month - dt.timedelta(days=1)), month_of(now)):
            for r in self.store.open_spend_reservations(month, created_before=now - self.reconcile_after, limit=limit):
                self._reconcile_one(month, r, report)
        return report

    def _reconcile_one(self, month: str, r: dict, report: ReconcileReport) -> None:
        job_id, rid = r.get("job_id"), r["reservation_id"]
        status = self.hubble.job_status(job_id) if job_id else None
        if status is None:
            report.unknown += 1  # this engine cannot say: the reservation stays charged
        elif status.state == "DONE":
            self._settle(month, rid, int(r["reserved_micro_usd"]), job_id, status.bytes_processed, status.bytes_billed, r.get("purpose") or "",
                         f"reconciled from job {job_id}" + (f" (failed: {status.error})" if status.error else ""), int(r["charged_micro_usd"]))
            report.settled += 1
        elif status.state == "NOT_FOUND":
            self.store.adjust_spend(month, rid, -int(r["charged_micro_usd"]), self.clock.now(), state="RELEASED",
                                    note=f"job {job_id} does not exist")
            report.released += 1
        else:
            self.hubble.cancel(job_id)
            report.still_running += 1

    def _reconcile_quietly(self) -> ReconcileReport:
        try:
            return self.reconcile()
        except Exception:  # noqa: BLE001 - reconciling is bookkeeping: it never stops a query
            log.warning("spend reconciliation failed; the open reservations stay charged", exc_info=True)
            return ReconcileReport()


def job_id_for(reservation_id: str) -> str:
    """The BigQuery job id of a reservation (letters, digits, _ and - only)."""
    return f"stellarmap_{reservation_id}"
