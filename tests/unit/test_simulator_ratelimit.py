"""The simulator's per-client rate limiter (GCRA), driven by a settable clock."""
from __future__ import annotations

import pytest

from common.clock import SettableClock
from local.simulator.ratelimit import LimitConfig, RateLimiter

pytestmark = pytest.mark.unit


def limiter(rate=6.0, burst=3):
    clock = SettableClock()
    return RateLimiter(LimitConfig(rate, burst), clock.monotonic), clock


def test_burst_is_spent_then_refused_with_retry_after():
    rl, _ = limiter(rate=6.0, burst=3)  # one request every 10 s, three at once
    decisions = [rl.check("a") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert all(d.limit == 3 for d in decisions)
    refused = dict(decisions[3].headers())
    assert refused["Retry-After"] == "10"
    assert refused["X-RateLimit-Remaining"] == "0"
    assert "Retry-After" not in dict(decisions[0].headers())
    assert dict(decisions[2].headers())["X-RateLimit-Reset"] == "30"  # full again after 3 intervals


def test_budget_refills_at_the_rate():
    rl, clock = limiter(rate=6.0, burst=3)
    for _ in range(3):
        assert rl.check("a").allowed
    assert not rl.check("a").allowed
    clock.advance(9.9)
    assert not rl.check("a").allowed
    clock.advance(0.2)
    assert rl.check("a").allowed
    clock.advance(30)
    assert rl.check("a").remaining == 2


def test_refused_requests_do_not_spend_budget():
    rl, clock = limiter(rate=6.0, burst=1)
    assert rl.check("a").allowed
    for _ in range(50):
        assert not rl.check("a").allowed
    clock.advance(10)
    assert rl.check("a").allowed


def test_clients_have_separate_budgets():
    rl, _ = limiter(rate=6.0, burst=2)
    assert rl.check("a").allowed and rl.check("a").allowed
    assert not rl.check("a").allowed
    assert rl.check("b").allowed


def test_disabled_limits_decide_nothing_and_reconfigure_resets():
    rl, _ = limiter(rate=6.0, burst=1)
    assert rl.check("a").allowed and not rl.check("a").allowed
    rl.configure(LimitConfig(6.0, 1, enabled=False))
    assert rl.check("a") is None
    rl.configure(LimitConfig(6.0, 1, enabled=True))
    assert rl.check("a").allowed  # a reconfiguration starts every client afresh


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"rate_per_min": 0}, "rate_per_min"),
        ({"rate_per_min": "60"}, "rate_per_min"),
        ({"burst": 0}, "burst"),
        ({"burst": 2.5}, "burst"),
        ({"enabled": "yes"}, "enabled"),
        ({"colour": 1}, "unknown"),
        ([], "object"),
    ],
)
def test_bad_limit_config_is_refused(raw, message):
    with pytest.raises(ValueError, match=message):
        LimitConfig.parse(raw, LimitConfig(60.0, 60), "horizon")


def test_partial_limit_config_keeps_the_rest():
    parsed = LimitConfig.parse({"burst": 5}, LimitConfig(60.0, 60, True), "horizon")
    assert parsed == LimitConfig(60.0, 5, True)
