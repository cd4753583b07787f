"""The cost guard: dry run first, per-query limits, an atomic monthly budget, a ledger of billed bytes.

Runs on the embedded SQLite store and on the real Cassandra (the `store` fixture)."""
from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from common.clock import SettableClock
from common.config import PipelineConfig
from common.hubble.cost_guard import MIB, TIB, CostGuard, GuardRefused, Limits, billable_bytes, job_id_for, month_of
from common.hubble.port import (
    DryRun,
    Hubble,
    HubbleJobFailed,
    HubbleNotRun,
    HubbleOutcomeUnknown,
    HubbleQuery,
    HubbleUnavailable,
    JobStatus,
    QueryParam,
    QueryResult,
)

pytestmark = pytest.mark.unit

UTC = dt.timezone.utc


class ScriptedHubble(Hubble):
    """A Hubble test double (subclass of the port): fixed estimates and billing, optional failures,
    and a job table (job id -> JobStatus) that job_status and cancel read, as BigQuery's would."""

    engine = "scripted"

    def __init__(self, estimate: int, billed: int | None = None, fail_run: Exception | None = None, fail_dry: Exception | None = None,
                 tracks_jobs: bool = False):
        self.estimate = estimate
        self.billed = billed
        self.fail_run = fail_run
        self.fail_dry = fail_dry
        self.tracks_jobs = tracks_jobs
        self.dry_runs = 0
        self.runs = 0
        self.max_bytes: list[int | None] = []
        self.job_ids: list[str] = []
        self.jobs: dict[str, JobStatus] = {}
        self.cancelled: list[str] = []
        self.lookup_error: Exception | None = None
        self._lock = threading.Lock()

    def tables(self, network):
        return None

    def dry_run(self, query):
        with self._lock:
            self.dry_runs += 1
        if self.fail_dry:
            raise self.fail_dry
        return DryRun(self.estimate)

    def run(self, query, max_bytes_billed=None, job_id=None):
        with self._lock:
            self.runs += 1
            self.max_bytes.append(max_bytes_billed)
            self.job_ids.append(job_id)
        if self.fail_run:
            raise self.fail_run
        billed = self.billed if self.billed is not None else billable_bytes(self.estimate, len(query.tables))
        return QueryResult(rows=[{"n": self.runs}], bytes_processed=self.estimate, bytes_billed=billed, job_id=job_id)

    def job_status(self, job_id):
        if not self.tracks_jobs:
            return None
        if self.lookup_error:
            raise self.lookup_error
        return self.jobs.get(job_id, JobStatus("NOT_FOUND"))

    def cancel(self, job_id):
        self.cancelled.append(job_id)
        return self.job_status(job_id)


def query(purpose="lineage", tables=("p.d.t",)):
    return HubbleQuery("SELECT @x", (QueryParam("x", "INT64", 1),), purpose, tables)


def limits(**overrides) -> Limits:
    values = {k: v for k, v in overrides.items()}
    return Limits.from_config(PipelineConfig.from_stored(values))


@pytest.fixture
def clock():
    return SettableClock(dt.datetime(2041, 3, 15, 12, tzinfo=UTC))


def test_defaults_are_the_issue_figures():
    lim = limits()
    assert lim.cost_limit_usd == Decimal("0.71") and lim.price_per_tib_usd == Decimal("6.25")
    assert lim.size_limit_bytes == 145 * 10**9
    assert lim.cost_micro_usd(TIB) == 6_250_000


def test_billable_bytes_rounds_like_bigquery():
    assert billable_bytes(0, 1) == 10 * MIB
    assert billable_bytes(1, 2) == 20 * MIB
    assert billable_bytes(10 * MIB + 1, 1) == 11 * MIB
    assert billable_bytes(50 * MIB, 1) == 50 * MIB
    with pytest.raises(ValueError):
        billable_bytes(-1, 1)


def test_a_query_runs_and_its_billed_bytes_are_recorded(store, clock):
    hubble = ScriptedHubble(estimate=30 * MIB + 5, billed=31 * MIB)
    guard = CostGuard(hubble, store, clock, limits())
    month = month_of(clock.now())
    before = store.month_spend_micro_usd(month)
    out = guard.run(query(purpose="children"))
    assert hubble.dry_runs == 1 and hubble.runs == 1
    assert hubble.max_bytes == [31 * MIB], "BigQuery is told to bill at most what was reserved"
    expected = guard.limits.cost_micro_usd(31 * MIB)
    assert out.cost_micro_usd == expected and out.billed_bytes == 31 * MIB
    assert store.month_spend_micro_usd(month) - before == expected
    assert hubble.job_ids == [job_id_for(r) for r in _reservations(store, month)], "the job runs under its reservation's id"
    entry = [e for e in store.get_spend_ledger(month, 100) if e["query_id"] == hubble.job_ids[0]]
    assert entry and entry[0]["bytes_billed"] == 31 * MIB and entry[0]["bytes_processed"] == 30 * MIB + 5
    assert entry[0]["purpose"] == "children" and entry[0]["cost_micro_usd"] == expected
    assert guard.stats.queries == 1 and guard.stats.bytes_billed == 31 * MIB


def test_cheaper_billing_than_reserved_gives_the_difference_back(store, clock):
    clock.set(dt.datetime(2041, 4, 1, tzinfo=UTC))
    hubble = ScriptedHubble(estimate=100 * MIB, billed=12 * MIB)  # clustering made it cheaper
    guard = CostGuard(hubble, store, clock, limits())
    guard.run(query())
    assert store.month_spend_micro_usd("2041-04") == guard.limits.cost_micro_usd(12 * MIB)


@pytest.mark.parametrize(
    "estimate, overrides, code",
    [
        (146 * 10**9, {}, "size_limit"),
        (int(0.72 / 6.25 * TIB), {"size_limit_bytes": 10**15}, "cost_limit"),
        (2 * TIB // 100, {"price_per_tib_usd": "50"}, "cost_limit"),  # $1 at a higher price
        (10 * MIB, {"size_limit_bytes": 10 * MIB - 1}, "size_limit"),
    ],
)
def test_per_query_limits_refuse_before_anything_is_spent(store, clock, estimate, overrides, code):
    clock.set(dt.datetime(2041, 5, 1, tzinfo=UTC))
    hubble = ScriptedHubble(estimate=estimate)
    guard = CostGuard(hubble, store, clock, limits(**overrides))
    with pytest.raises(GuardRefused) as err:
        guard.run(query())
    assert err.value.code == code and err.value.estimate_bytes == estimate
    assert hubble.dry_runs == 1 and hubble.runs == 0
    assert store.month_spend_micro_usd("2041-05") == 0 and store.get_spend_ledger("2041-05", 10) == []


def test_exactly_at_the_limits_is_allowed(store, clock):
    clock.set(dt.datetime(2041, 6, 1, tzinfo=UTC))
    estimate = 145 * 10**9
    guard = CostGuard(ScriptedHubble(estimate=estimate), store, clock, limits(cost_limit_usd="1000000"))
    assert guard.run(query()).estimate_bytes == estimate
    cost_edge = int(Decimal("0.71") / Decimal("6.25") * TIB)
    guard = CostGuard(ScriptedHubble(estimate=cost_edge), store, clock, limits(size_limit_bytes=10**15))
    assert guard.run(query()).estimate_bytes == cost_edge


def test_the_budget_refuses_the_query_that_would_exceed_it(store, clock):
    clock.set(dt.datetime(2041, 7, 1, tzinfo=UTC))
    per_query = 100 * 2**30  # 100 GiB: $0.6103515625 -> 610352 micro-USD reserved
    lim = limits(monthly_budget_usd="1.5")
    guard = CostGuard(ScriptedHubble(estimate=per_query), store, clock, lim)
    guard.run(query())
    guard.run(query())
    with pytest.raises(GuardRefused) as err:
        guard.run(query())
    assert err.value.code == "budget_exhausted" and "2041-07" in err.value.message
    assert store.month_spend_micro_usd("2041-07") == 2 * lim.cost_micro_usd(per_query) <= lim.budget_micro_usd
    assert len(store.get_spend_ledger("2041-07", 10)) == 2
    # a new month has a new budget
    clock.set(dt.datetime(2041, 8, 1, tzinfo=UTC))
    guard.run(query())
    assert store.month_spend_micro_usd("2041-08") == lim.cost_micro_usd(per_query)


def test_a_zero_budget_refuses_everything(store, clock):
    clock.set(dt.datetime(2041, 9, 1, tzinfo=UTC))
    with pytest.raises(GuardRefused, match="budget"):
        CostGuard(ScriptedHubble(estimate=1), store, clock, limits(monthly_budget_usd="0")).run(query())


def _reservations(store, month: str) -> list[str]:
    """Every reservation id of the month, oldest first (the test's own months only)."""
    ledger = {e["query_id"] for e in store.get_spend_ledger(month, 1000)}
    opened = [r["reservation_id"] for r in store.open_spend_reservations(month, limit=1000)]
    closed = [q[len("stellarmap_"):] for q in ledger if q.startswith("stellarmap_")]
    return sorted(set(opened) | set(closed))


def _only_reservation(store, month: str) -> dict:
    ids = _reservations(store, month)
    assert len(ids) == 1, ids
    return store.get_spend_reservation(month, ids[0])


def test_a_job_that_never_existed_gives_its_reservation_back(store, clock):
    clock.set(dt.datetime(2041, 10, 1, tzinfo=UTC))
    hubble = ScriptedHubble(estimate=5 * MIB, fail_run=HubbleNotRun("400 Bad Request: access denied"))
    guard = CostGuard(hubble, store, clock, limits())
    with pytest.raises(HubbleNotRun):
        guard.run(query())
    assert store.month_spend_micro_usd("2041-10") == 0 and store.get_spend_ledger("2041-10", 10) == []
    assert guard.stats.queries == 0 and guard.stats.dry_runs == 1
    assert store.open_spend_reservations("2041-10") == []


@pytest.mark.parametrize(
    "month, failure",
    [
        ("2043-01", HubbleOutcomeUnknown("ReadTimeout: result wait timed out; cancel requested", "job", cancel_requested=True)),
        ("2043-02", HubbleUnavailable("connection reset by peer")),
        ("2043-03", TimeoutError("timed out")),
        ("2043-04", RuntimeError("a bug after the submit")),
    ],
    ids=["timeout-cancelled", "connection-lost", "timeout-error", "unexpected"],
)
def test_an_unknown_outcome_stays_charged_at_its_maximum(store, clock, month, failure):
    clock.set(dt.datetime.strptime(month + "-10", "%Y-%m-%d").replace(tzinfo=UTC))
    hubble = ScriptedHubble(estimate=30 * MIB, fail_run=failure)
    guard = CostGuard(hubble, store, clock, limits())
    with pytest.raises(type(failure)):
        guard.run(query())
    reserved = guard.limits.cost_micro_usd(30 * MIB)
    assert store.month_spend_micro_usd(month) == reserved, "BigQuery may bill up to maximum_bytes_billed: so do we"
    r = _only_reservation(store, month)
    assert r["state"] == "UNKNOWN" and r["charged_micro_usd"] == r["reserved_micro_usd"] == reserved
    assert r["job_id"] == hubble.job_ids[0] and type(failure).__name__ in r["note"]
    assert store.get_spend_ledger(month, 10) == [], "the ledger lists billed jobs only; this one is not known yet"


def test_a_job_that_finished_with_an_error_is_settled_at_its_statistics(store, clock):
    clock.set(dt.datetime(2043, 5, 1, tzinfo=UTC))
    failed = HubbleJobFailed("rows could not be read after the job finished", "job", 20 * MIB, 21 * MIB)
    hubble = ScriptedHubble(estimate=30 * MIB, fail_run=failed)
    guard = CostGuard(hubble, store, clock, limits())
    with pytest.raises(HubbleJobFailed):
        guard.run(query(purpose="children"))
    cost = guard.limits.cost_micro_usd(21 * MIB)
    assert store.month_spend_micro_usd("2043-05") == cost
    r = _only_reservation(store, "2043-05")
    assert r["state"] == "SETTLED" and r["charged_micro_usd"] == cost
    [entry] = store.get_spend_ledger("2043-05", 10)
    assert entry["query_id"] == hubble.job_ids[0] and entry["bytes_billed"] == 21 * MIB and entry["purpose"] == "children"


def test_reconcile_settles_an_unknown_outcome_from_the_job_statistics(store, clock):
    t0 = dt.datetime(2043, 6, 3, 12, tzinfo=UTC)
    clock.set(t0)
    hubble = ScriptedHubble(estimate=100 * MIB, fail_run=HubbleOutcomeUnknown("timed out", "job", cancel_requested=True), tracks_jobs=True)
    with pytest.raises(HubbleOutcomeUnknown):
        CostGuard(hubble, store, clock, limits()).run(query())
    job = hubble.job_ids[0]
    reserved = limits().cost_micro_usd(100 * MIB)
    hubble.jobs[job] = JobStatus("DONE", 40 * MIB, 41 * MIB, "Job cancelled by the user")  # cancelled mid-way, billed so far
    hubble.fail_run = None
    # the next guard use, before the grace period: nothing is touched (the job may still be in flight)
    clock.set(t0 + dt.timedelta(minutes=5))
    guard = CostGuard(hubble, store, clock, limits())
    guard.run(query())
    assert guard.reconciled.settled == 0 and store.get_spend_reservation("2043-06", job[len("stellarmap_"):])["state"] == "UNKNOWN"
    # after it: settled from the job's real statistics, once
    clock.set(t0 + dt.timedelta(minutes=20))
    guard = CostGuard(hubble, store, clock, limits())
    guard.run(query())
    assert guard.reconciled.settled == 1
    r = store.get_spend_reservation("2043-06", job[len("stellarmap_"):])
    assert r["state"] == "SETTLED" and r["charged_micro_usd"] == limits().cost_micro_usd(41 * MIB) < reserved
    per_query = limits().cost_micro_usd(100 * MIB)
    assert store.month_spend_micro_usd("2043-06") == limits().cost_micro_usd(41 * MIB) + 2 * per_query
    assert sum(e["cost_micro_usd"] for e in store.get_spend_ledger("2043-06", 100)) == store.month_spend_micro_usd("2043-06")
    again = CostGuard(hubble, store, clock, limits())
    assert again.reconcile().settled == 0, "a settled reservation is never counted twice"
    assert len(store.get_spend_ledger("2043-06", 100)) == 3


def test_reconcile_cancels_a_job_still_running_and_releases_one_bigquery_never_had(store, clock):
    t0 = dt.datetime(2043, 7, 1, 0, 5, tzinfo=UTC)
    clock.set(t0)
    hubble = ScriptedHubble(estimate=10 * MIB, fail_run=HubbleOutcomeUnknown("timed out", "job"), tracks_jobs=True)
    for _ in range(2):
        with pytest.raises(HubbleOutcomeUnknown):
            CostGuard(hubble, store, clock, limits()).run(query())
    running, missing = hubble.job_ids
    hubble.jobs[running] = JobStatus("RUNNING")
    clock.set(t0 + dt.timedelta(hours=1))
    report = CostGuard(hubble, store, clock, limits()).reconcile()
    assert (report.still_running, report.released, report.settled) == (1, 1, 0)
    assert hubble.cancelled == [running], "a job still running after the timeout is cancelled again"
    charge = limits().cost_micro_usd(10 * MIB)
    assert store.month_spend_micro_usd("2043-07") == charge, "the running one stays charged in full"
    assert store.get_spend_reservation("2043-07", missing[len("stellarmap_"):])["state"] == "RELEASED"


def test_reconcile_reaches_back_into_last_month(store, clock):
    clock.set(dt.datetime(2043, 8, 31, 23, 59, tzinfo=UTC))
    hubble = ScriptedHubble(estimate=10 * MIB, fail_run=HubbleOutcomeUnknown("timed out", "job"), tracks_jobs=True)
    with pytest.raises(HubbleOutcomeUnknown):
        CostGuard(hubble, store, clock, limits()).run(query())
    hubble.jobs[hubble.job_ids[0]] = JobStatus("DONE", 0, 0)
    clock.set(dt.datetime(2043, 9, 1, 0, 30, tzinfo=UTC))
    assert CostGuard(hubble, store, clock, limits()).reconcile().settled == 1
    assert store.month_spend_micro_usd("2043-08") == 0


def test_a_failing_lookup_never_stops_a_query_and_leaves_the_charge(store, clock):
    clock.set(dt.datetime(2043, 10, 1, tzinfo=UTC))
    hubble = ScriptedHubble(estimate=10 * MIB, fail_run=HubbleOutcomeUnknown("timed out", "job"), tracks_jobs=True)
    with pytest.raises(HubbleOutcomeUnknown):
        CostGuard(hubble, store, clock, limits()).run(query())
    hubble.fail_run, hubble.lookup_error = None, HubbleUnavailable("BigQuery unreachable")
    clock.set(dt.datetime(2043, 10, 2, tzinfo=UTC))
    out = CostGuard(hubble, store, clock, limits()).run(query())
    assert out.cost_micro_usd > 0
    assert store.month_spend_micro_usd("2043-10") == 2 * limits().cost_micro_usd(10 * MIB)


def test_an_engine_that_cannot_look_jobs_up_is_never_asked(store, clock):
    clock.set(dt.datetime(2043, 11, 1, tzinfo=UTC))
    hubble = ScriptedHubble(estimate=10 * MIB, fail_run=HubbleOutcomeUnknown("timed out", "job"))
    with pytest.raises(HubbleOutcomeUnknown):
        CostGuard(hubble, store, clock, limits()).run(query())
    hubble.fail_run = None
    clock.set(dt.datetime(2043, 11, 5, tzinfo=UTC))
    guard = CostGuard(hubble, store, clock, limits())
    guard.run(query())
    assert guard.reconciled is None and hubble.cancelled == []
    assert store.month_spend_micro_usd("2043-11") == 2 * limits().cost_micro_usd(10 * MIB)


def test_billing_above_the_reservation_is_counted_in_full(store, clock):
    """BigQuery cannot bill above maximum_bytes_billed; an engine that did is still never under-counted."""
    clock.set(dt.datetime(2043, 12, 1, tzinfo=UTC))
    hubble = ScriptedHubble(estimate=10 * MIB, billed=50 * MIB)
    guard = CostGuard(hubble, store, clock, limits(monthly_budget_usd="0.0001"))
    out = guard.run(query())
    assert out.cost_micro_usd == limits().cost_micro_usd(50 * MIB)
    assert store.month_spend_micro_usd("2043-12") == out.cost_micro_usd
    assert [e["cost_micro_usd"] for e in store.get_spend_ledger("2043-12", 10)] == [out.cost_micro_usd]


def test_an_unreachable_dry_run_reserves_nothing(store, clock):
    clock.set(dt.datetime(2041, 11, 1, tzinfo=UTC))
    hubble = ScriptedHubble(estimate=5 * MIB, fail_dry=HubbleUnavailable("emulator down"))
    with pytest.raises(HubbleUnavailable):
        CostGuard(hubble, store, clock, limits()).run(query())
    assert hubble.runs == 0 and store.month_spend_micro_usd("2041-11") == 0


def test_concurrent_spenders_never_share_the_last_dollar(store, clock):
    """32 threads race for a budget that holds exactly 5 queries: 5 run, 27 are refused."""
    clock.set(dt.datetime(2042, 1, 1, tzinfo=UTC))
    per_query = 16 * 2**30  # 16 GiB = $0.09765625 -> 97657 micro-USD reserved
    lim = limits(monthly_budget_usd=str(Decimal(97657 * 5 + 50_000) / 1_000_000))
    hubble = ScriptedHubble(estimate=per_query)

    def spend(_):
        try:
            CostGuard(hubble, store, clock, lim).run(query())
            return "ran"
        except GuardRefused as exc:
            return exc.code

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(spend, range(32)))
    assert results.count("ran") == 5 and results.count("budget_exhausted") == 27
    assert hubble.runs == 5
    assert store.month_spend_micro_usd("2042-01") == 5 * 97657 <= lim.budget_micro_usd
    assert len(store.get_spend_ledger("2042-01", 100)) == 5
