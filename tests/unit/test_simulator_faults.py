"""Fault configuration and selection (the HTTP effects are in the integration tests)."""
from __future__ import annotations

from collections import Counter

import pytest

from local.simulator.faults import KINDS, FaultInjector

pytestmark = pytest.mark.unit


def test_no_rules_no_faults():
    faults = FaultInjector()
    assert all(faults.pick("horizon.account") is None for _ in range(100))


def test_probability_one_always_fires_and_carries_parameters():
    faults = FaultInjector()
    faults.configure(rules={"horizon.account": {"slow": 1.0, "slow_seconds": 0.5}})
    kind, params = faults.pick("horizon.account")
    assert kind == "slow" and params["slow_seconds"] == 0.5 and params["timeout_seconds"] == 30.0
    assert faults.pick("horizon.operations") is None


def test_most_specific_rule_wins():
    faults = FaultInjector()
    faults.configure(rules={"*": {"500": 1.0}, "horizon.*": {"503": 1.0}, "horizon.operations": {"reset": 1.0}})
    assert faults.pick("horizon.operations")[0] == "reset"
    assert faults.pick("horizon.account")[0] == "503"
    assert faults.pick("expert.account")[0] == "500"
    assert faults.pick("toml")[0] == "500"


def test_draws_follow_the_probabilities_and_the_seed():
    def draws(seed):
        faults = FaultInjector(seed)
        faults.configure(rules={"expert.account": {"429": 0.2, "500": 0.1}})
        return [faults.pick("expert.account") for _ in range(4000)]

    first, again, other = draws(1), draws(1), draws(2)
    assert first == again and first != other
    counts = Counter(d[0] if d else None for d in first)
    assert 600 < counts["429"] < 1000 and 250 < counts["500"] < 550 and counts[None] > 2400


def test_queue_is_served_first_in_order_then_rules_apply():
    faults = FaultInjector()
    faults.configure(rules={"horizon.account": {"500": 1.0}}, queue={"horizon.account": ["503", "reset"]})
    assert [faults.pick("horizon.account")[0] for _ in range(3)] == ["503", "reset", "500"]
    faults.configure(queue={"horizon.*": ["timeout"]})
    assert faults.pick("horizon.root")[0] == "timeout"
    faults.configure(queue={"toml": ["429", "429"]}, clear_queue=True)
    faults.configure(clear_queue=True)
    assert faults.snapshot()["queue"] == {}


@pytest.mark.parametrize(
    "rules, message",
    [
        ({"horizon.nowhere": {"500": 0.1}}, "unknown endpoint"),
        ({"horizon.account": {"418": 0.1}}, "unknown key"),
        ({"horizon.account": {"500": 1.5}}, "probability"),
        ({"horizon.account": {"500": -0.1}}, "probability"),
        ({"horizon.account": {"500": 0.6, "503": 0.6}}, "add up"),
        ({"horizon.account": {"500": "0.1"}}, "number"),
        ({"horizon.account": {"500": True}}, "number"),
        ({"horizon.account": {"slow_seconds": 0}}, "slow_seconds"),
        ({"horizon.account": {"timeout_seconds": 99999}}, "timeout_seconds"),
        ({"horizon.account": [0.1]}, "object"),
        ([], "object"),
    ],
)
def test_bad_rules_are_refused_and_change_nothing(rules, message):
    faults = FaultInjector()
    faults.configure(rules={"toml": {"500": 0.5}})
    before = faults.snapshot()
    with pytest.raises(ValueError, match=message):
        faults.configure(rules=rules, queue={"toml": ["reset"]})
    assert faults.snapshot() == before


@pytest.mark.parametrize("queue", [{"toml": "reset"}, {"toml": ["boom"]}, {"nowhere": ["500"]}, ["500"]])
def test_bad_queues_are_refused(queue):
    with pytest.raises(ValueError):
        FaultInjector().configure(queue=queue)


def test_bad_seed_is_refused():
    with pytest.raises(ValueError, match="seed"):
        FaultInjector().configure(seed="7")


def test_snapshot_lists_kinds_and_clear_removes_rules():
    faults = FaultInjector()
    faults.configure(rules={"toml": {"malformed": 0.5}})
    snap = faults.snapshot()
    assert snap["rules"] == {"toml": {"malformed": 0.5}} and snap["kinds"] == list(KINDS)
    faults.clear()
    assert faults.snapshot()["rules"] == {}
