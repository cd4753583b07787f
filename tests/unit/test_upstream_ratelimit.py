"""The in-process upstream limiter (common/upstream/ratelimit.py) on a settable clock: pacing,
burst, Retry-After, no-budget refusals, run-time budgets. Time moves only when a sleep asks."""
from __future__ import annotations

import threading

import pytest

from common.clock import SettableClock
from common.config import PIPELINE_CONFIG_DEFAULTS
from common.upstream.clients import budgets
from common.upstream.errors import NoBudget, RateLimited
from common.upstream.ratelimit import PAUSED_RETRY_AFTER_S, Budget, RateLimiter

pytestmark = pytest.mark.unit


def test_budget_is_the_configured_share_of_the_maximum():
    b = Budget.share(3600 / 3600, 71)
    assert b.rate_per_s == pytest.approx(0.71)
    assert b.burst == 4  # 42.6 a minute -> a burst of 4
    assert Budget.share(85 / 60, 71).rate_per_s * 60 == pytest.approx(60.35)
    assert Budget.share(1.0, 100, processes=4).rate_per_s == pytest.approx(0.25)
    assert Budget.share(1000.0, 100).burst == 6  # never more than 6 back to back
    assert Budget.share(0.001, 71).burst == 1


@pytest.mark.parametrize("args", [(-1, 71), (1, -1), (1, 101), (1, 50, 0)])
def test_budget_rejects_nonsense(args):
    with pytest.raises(ValueError):
        Budget.share(*args)


def test_defaults_give_the_issue_s_budgets():
    b = budgets(PIPELINE_CONFIG_DEFAULTS)
    assert b["horizon"].rate_per_s * 3600 == pytest.approx(3600 * 0.71)
    assert b["expert"].rate_per_s * 60 == pytest.approx(50 * 0.71)


def test_a_new_limiter_starts_at_the_sustained_pace_without_a_burst():
    clock = SettableClock()
    limiter = RateLimiter("horizon", Budget(rate_per_s=2.0, burst=3), clock)
    assert [limiter.acquire() for _ in range(4)] == pytest.approx([0, 0.5, 0.5, 0.5])


def test_requests_are_paced_at_the_budget_after_the_burst():
    clock = SettableClock()
    limiter = RateLimiter("horizon", Budget(rate_per_s=2.0, burst=3), clock)
    clock.advance(1.5)  # idle long enough to earn the whole burst
    start = clock.monotonic()
    waits = [limiter.acquire() for _ in range(9)]
    assert waits[:3] == [0, 0, 0]  # the burst
    assert waits[3:] == pytest.approx([0.5] * 6)
    assert clock.monotonic() - start == pytest.approx(3.0)
    # Over any window the count stays within burst + rate x window.
    assert 9 <= 3 + 2.0 * (clock.monotonic() - start)


def test_idle_time_refills_the_burst_but_never_beyond_it():
    clock = SettableClock()
    limiter = RateLimiter("expert", Budget(rate_per_s=1.0, burst=2), clock)
    limiter.acquire(), limiter.acquire()
    clock.advance(100)
    assert [limiter.acquire() for _ in range(3)] == pytest.approx([0, 0, 1.0])


def test_no_budget_when_the_wait_is_longer_than_the_caller_can_afford():
    clock = SettableClock()
    limiter = RateLimiter("horizon", Budget(rate_per_s=0.1, burst=1), clock)
    limiter.acquire(max_wait_s=0)
    with pytest.raises(NoBudget) as info:
        limiter.acquire(max_wait_s=5)
    assert info.value.retry_after == pytest.approx(10)
    assert isinstance(info.value, RateLimited) and info.value.status is None
    assert clock.monotonic() == 0, "a refusal neither sleeps nor spends budget"
    assert limiter.acquire(max_wait_s=10) == pytest.approx(10)
    assert limiter.metrics()["no_budget"] == 1


def test_retry_after_pauses_every_caller_then_the_normal_pace_resumes():
    clock = SettableClock()
    limiter = RateLimiter("horizon", Budget(rate_per_s=1.0, burst=5), clock)
    limiter.acquire()
    limiter.penalize(30)
    assert limiter.metrics()["blocked_for_s"] == pytest.approx(30)
    assert limiter.acquire() == pytest.approx(30)
    assert limiter.acquire() == pytest.approx(1.0), "no burst right after a 429"
    assert limiter.metrics()["penalties"] == 1


def test_a_paused_upstream_refuses_without_sleeping():
    clock = SettableClock()
    limiter = RateLimiter("expert", Budget.share(1.0, 0), clock)
    with pytest.raises(NoBudget) as info:
        limiter.acquire()
    assert info.value.retry_after == PAUSED_RETRY_AFTER_S
    limiter.penalize(5)  # harmless while paused
    limiter.configure(Budget(1.0, 1))
    assert limiter.acquire(max_wait_s=10) == pytest.approx(5)


def test_configure_changes_the_pace_at_run_time():
    clock = SettableClock()
    limiter = RateLimiter("horizon", Budget(1.0, 1), clock)
    limiter.acquire()
    limiter.configure(Budget(4.0, 1))
    limiter.acquire()
    assert limiter.acquire() == pytest.approx(0.25)
    assert limiter.budget == Budget(4.0, 1)


class FrozenClock(SettableClock):
    """Sleeps are recorded, time stands still: every wait is measured from the same instant."""

    def sleep(self, seconds: float) -> None:
        pass


def test_threads_share_one_budget_each_slot_given_once():
    clock = FrozenClock()
    limiter = RateLimiter("horizon", Budget(rate_per_s=10.0, burst=1), clock)
    waits: list[float] = []
    lock = threading.Lock()

    def worker():
        for _ in range(50):
            w = limiter.acquire()
            with lock:
                waits.append(w)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(round(w, 6) for w in waits) == [round(k * 0.1, 6) for k in range(400)]


def test_a_best_effort_reserve_leaves_slots_for_the_calls_that_matter():
    clock = SettableClock()
    limiter = RateLimiter("expert", Budget(1.0, 3), clock)
    clock.advance(3)  # the burst, earned
    limiter.acquire(0, reserve=1)
    limiter.acquire(0, reserve=1)
    with pytest.raises(NoBudget):
        limiter.acquire(0, reserve=1)  # only one slot left: kept for a normal call
    assert limiter.acquire(0) == 0, "the reserved slot is there at once"
    clock.advance(3)
    assert limiter.acquire(0, reserve=1) == 0, "refilled: spare budget again"


def test_a_burst_of_one_keeps_no_reserve():
    clock = SettableClock()
    limiter = RateLimiter("expert", Budget(1.0, 1), clock)
    assert limiter.acquire(0, reserve=1) == 0
    with pytest.raises(NoBudget):
        limiter.acquire(0, reserve=1)


def test_a_new_budget_keeps_what_was_spent_and_an_unused_limiter_what_it_earned():
    clock = SettableClock()
    unused = RateLimiter("expert", Budget(1.0, 3), clock)
    clock.advance(10)  # idle since it started: the new budget's whole burst is earned
    unused.configure(Budget(100.0, 6))
    assert [unused.acquire(0) for _ in range(6)] == [0] * 6
    fresh = RateLimiter("expert", Budget(1.0, 3), clock)
    fresh.configure(Budget(100.0, 6))
    assert fresh.acquire(0) == 0
    with pytest.raises(NoBudget):
        fresh.acquire(0)  # started empty: one request, then the sustained pace
    busy = RateLimiter("horizon", Budget(1.0, 4), clock)
    clock.advance(10)
    busy.acquire(), busy.acquire()  # 2 of 4 spent
    busy.configure(Budget(2.0, 4))
    assert [busy.acquire() for _ in range(3)] == pytest.approx([0, 0, 0.5])
