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
from common.hubble.cost_guard import MIB, TIB, CostGuard, GuardRefused, Limits, billable_bytes, month_of
from common.hubble.port import DryRun, Hubble, HubbleQuery, HubbleUnavailable, QueryParam, QueryResult

pytestmark = pytest.mark.unit

UTC = dt.timezone.utc


class ScriptedHubble(Hubble):
    """A Hubble test double (subclass of the port): fixed estimates and billing, optional failures."""

    engine = "scripted"

    def __init__(self, estimate: int, billed: int | None = None, fail_run: Exception | None = None, fail_dry: Exception | None = None):
        self.estimate = estimate
        self.billed = billed
        self.fail_run = fail_run
        self.fail_dry = fail_dry
        self.dry_runs = 0
        self.runs = 0
        self.max_bytes: list[int | None] = []
        self._lock = threading.Lock()

    def tables(self, network):
        return None

    def dry_run(self, query):
        with self._lock:
            self.dry_runs += 1
        if self.fail_dry:
            raise self.fail_dry
        return DryRun(self.estimate)

    def run(self, query, max_bytes_billed=None):
        with self._lock:
            self.runs += 1
            self.max_bytes.append(max_bytes_billed)
            n = self.runs
        if self.fail_run:
            raise self.fail_run
        billed = self.billed if self.billed is not None else billable_bytes(self.estimate, len(query.tables))
        return QueryResult(rows=[{"n": n}], bytes_processed=self.estimate, bytes_billed=billed, job_id=f"job-{n}")


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
    entry = [e for e in store.get_spend_ledger(month, 100) if e["query_id"] == "job-1"]
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


def test_a_failed_query_gives_its_reservation_back(store, clock):
    clock.set(dt.datetime(2041, 10, 1, tzinfo=UTC))
    hubble = ScriptedHubble(estimate=5 * MIB, fail_run=HubbleUnavailable("connection refused"))
    guard = CostGuard(hubble, store, clock, limits())
    with pytest.raises(HubbleUnavailable):
        guard.run(query())
    assert store.month_spend_micro_usd("2041-10") == 0 and store.get_spend_ledger("2041-10", 10) == []
    assert guard.stats.queries == 0 and guard.stats.dry_runs == 1


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
