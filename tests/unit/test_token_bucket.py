"""The one token bucket (common/ratelimit.py) every limiter uses: the arithmetic over a caller's
tat (per-client limiters), the reserve for best-effort callers, and a penalty's emptied bucket."""
import math

import pytest

from common.ratelimit import TokenBucket

pytestmark = pytest.mark.unit


def test_a_fresh_tat_is_a_full_bucket_and_each_token_moves_it_one_interval():
    bucket = TokenBucket(rate=4.0, burst=2)
    tat = -math.inf
    assert bucket.remaining_at(tat, 10.0) == 2
    tat = bucket.spend_at(tat, 10.0)
    assert tat == 10.25 and bucket.remaining_at(tat, 10.0) == 1 and bucket.wait_at(tat, 10.0) == 0
    tat = bucket.spend_at(tat, 10.0)
    assert bucket.remaining_at(tat, 10.0) == 0
    assert bucket.wait_at(tat, 10.0) == pytest.approx(0.25)
    assert bucket.remaining_at(tat, 100.0) == 2  # refilled, never beyond the burst


def test_a_reserve_waits_until_that_many_more_tokens_would_stay_free():
    bucket = TokenBucket(rate=1.0, burst=3)
    tat = bucket.spend_at(-math.inf, 0.0)  # one of three spent
    assert bucket.wait_at(tat, 0.0) == 0
    assert bucket.wait_at(tat, 0.0, reserve=1) == 0  # two free: one taken, one stays
    assert bucket.wait_at(tat, 0.0, reserve=2) == pytest.approx(1.0)
    assert bucket.wait_at(tat, 0.0, reserve=99) == pytest.approx(1.0)  # at most burst - 1 kept back
    assert TokenBucket(rate=1.0, burst=1).wait_at(0.0, 0.0, reserve=5) == 0  # a burst of 1 keeps none


def test_an_emptied_bucket_gives_nothing_before_the_moment_then_the_sustained_rate():
    bucket = TokenBucket(rate=2.0, burst=5)
    tat = bucket.emptied_until(30.0)
    assert bucket.wait_at(tat, 0.0) == pytest.approx(30.0)
    tat = bucket.spend_at(tat, 30.0)
    assert bucket.wait_at(tat, 30.0) == pytest.approx(0.5), "no burst right after the penalty"


def test_per_minute_computes_the_interval_from_the_per_minute_figure():
    assert TokenBucket.per_minute(7, 3).interval == 60.0 / 7
    assert TokenBucket.per_minute(7, 3).tolerance == 60.0 / 7 * 2
    with pytest.raises(ValueError, match="rate"):
        TokenBucket.per_minute(0, 3)
