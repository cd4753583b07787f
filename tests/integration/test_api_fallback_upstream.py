"""The Horizon and Stellar Expert HTTP adapters against the simulator over real HTTP: real shapes,
every fault kind the simulator can inject (retried when transient, typed errors when not), the
simulator's rate limits kept by our limiter, and its Retry-After honoured.

The adapters' sleeps (limiter, tenacity backoff) go through a SettableClock, so nothing waits in
real time except the simulator's own `slow` and `timeout` faults (kept short here)."""
from __future__ import annotations

from decimal import Decimal

import pytest
import requests

from common.clock import SettableClock
from common.config import PipelineConfig
from common.upstream.clients import Upstream
from common.upstream.errors import ClientError, MalformedResponse, RateLimited, ServerError, TransportError
from local.simulator import Simulator

pytestmark = pytest.mark.integration

FAULT_PARAMS = {"slow_seconds": 0.2, "timeout_seconds": 1.5}
TRANSIENT = ("500", "502", "503", "truncated", "malformed", "reset", "timeout", "429")


@pytest.fixture(scope="module")
def sim():
    with Simulator(accounts=400, airdrop_children=300, seed=5, port=0, rate_limits=False) as s:
        yield s


@pytest.fixture(autouse=True)
def clean(sim):
    sim.clear_faults()
    sim.reset_stats()
    yield
    sim.clear_faults()


def client(sim, clock=None, attempts=4, timeout_s=0.5, config=None) -> Upstream:
    up = Upstream({"public": sim.horizon_url("public"), "testnet": sim.horizon_url("testnet")}, sim.expert_url,
                  clock or SettableClock(), timeout_s=timeout_s, attempts=attempts)
    up.configure(PipelineConfig.from_stored(config or {"horizon_max_per_hour": 10**6, "expert_max_per_minute": 10**5}))
    return up


def requests_to(sim, endpoint: str) -> int:
    return sum(sim.stats()["requests"].get(endpoint, {}).values())


def recent(sim) -> str:
    return sim.pick("public", "recent", limit=1)[0]


def test_shapes_match_the_ground_truth(sim):
    up = client(sim)
    net = sim.network("public")
    for account in sim.pick("public", "with_assets", limit=3) + sim.pick("public", "hostile", limit=12) + [recent(sim)]:
        truth = net.truth(account)
        state = up.horizon("public").account(account)
        assert state.xlm_balance == Decimal(truth["xlm_balance"])
        assert state.home_domain == truth["home_domain"]
        assert state.flags == truth["flags"]
        assert [(a["asset_code"], a["asset_issuer"], Decimal(a["balance"])) for a in state.assets] == \
               [(a["asset_code"], a["asset_issuer"], Decimal(a["balance"])) for a in truth["assets"]]
    account = recent(sim)
    page = up.horizon("public").operations(account)
    assert page.records[0].creates(account)
    assert page.records[0].funder == net.truth(account)["creator"]
    info = up.expert.account("public", account)
    assert info.creator == net.truth(account)["creator"]
    assert up.horizon("public").history_elder_ledger() == net.elder_ledger > 1


def test_unknown_accounts_are_none(sim):
    up = client(sim)
    missing = sim.pick("public", "missing", limit=1)[0]
    assert up.horizon("public").account(missing) is None
    assert up.horizon("public").operations(missing) is None
    assert up.expert.account("public", missing) is None


def test_paging_follows_our_own_cursor_in_ascending_order(sim):
    up = client(sim)
    exchange = sim.pick("public", "exchange", limit=1)[0]
    first = up.horizon("public").operations(exchange, limit=200)
    second = up.horizon("public").operations(exchange, first.next_cursor, limit=200)
    assert len(first.records) == len(second.records) == 200
    assert int(second.records[0].paging_token) > int(first.records[-1].paging_token)
    with pytest.raises(ValueError):
        up.horizon("public").operations(exchange, "../../etc")


@pytest.mark.parametrize("kind", TRANSIENT)
@pytest.mark.parametrize("endpoint", ["horizon.account", "horizon.operations", "expert.account"])
def test_each_transient_fault_is_retried(sim, kind, endpoint):
    sim.set_faults(rules={endpoint: {"slow": 0.0, **FAULT_PARAMS}}, queue={endpoint: [kind, kind]})
    clock = SettableClock()
    up = client(sim, clock)
    account = recent(sim)
    call = {
        "horizon.account": lambda: up.horizon("public").account(account),
        "horizon.operations": lambda: up.horizon("public").operations(account),
        "expert.account": lambda: up.expert.account("public", account),
    }[endpoint]
    assert call() is not None
    assert requests_to(sim, endpoint) == 3, "two faults, then the answer"
    upstream = endpoint.split(".")[0]
    stats = up.metrics()[upstream]["public"] if upstream == "horizon" else up.metrics()[upstream]
    assert stats["retries"] == 2 and stats["requests"] == 3
    assert stats["limiter"]["acquired"] == 3, "every attempt is taken from the budget"
    if kind == "429":
        assert stats["received_429"] == 2 and clock.monotonic() >= 2, "Retry-After: 1 was honoured twice"


def test_a_slow_answer_is_waited_for(sim):
    sim.set_faults(queue={"horizon.account": ["slow"]}, rules={"horizon.account": {"slow": 0.0, "slow_seconds": 0.2}})
    up = client(sim, timeout_s=5)
    assert up.horizon("public").account(recent(sim)) is not None
    assert requests_to(sim, "horizon.account") == 1


@pytest.mark.parametrize("kind,error", [
    ("503", ServerError), ("500", ServerError), ("502", ServerError), ("malformed", MalformedResponse),
    ("truncated", MalformedResponse), ("reset", TransportError), ("timeout", TransportError), ("429", RateLimited),
])
def test_persistent_faults_end_in_typed_errors_after_the_attempts(sim, kind, error):
    sim.set_faults(rules={"horizon.*": {kind: 1.0, **FAULT_PARAMS}})
    up = client(sim, attempts=3)
    with pytest.raises(error):
        up.horizon("public").account(recent(sim))
    assert requests_to(sim, "horizon.account") == 3


def test_a_client_error_is_not_retried(sim):
    up = client(sim)
    transport = up.horizon("public").transport
    with pytest.raises(ClientError) as info:
        transport.get("/accounts/GBAD")
    assert info.value.status == 400
    assert requests_to(sim, "horizon.account") == 1


def test_our_limiter_keeps_us_inside_the_simulator_s_limits():
    clock = SettableClock()
    with Simulator(accounts=200, airdrop_children=10, seed=3, port=0, clock=clock, horizon_rate_per_min=60,
                   horizon_burst=5, expert_rate_per_min=30, expert_burst=2) as limited:
        account = limited.pick("public", "recent", limit=1)[0]
        # Without a limiter the simulator refuses once its burst is spent (time stands still here).
        raw = [requests.get(f"{limited.horizon_url()}/accounts/{account}", timeout=5).status_code for _ in range(10)]
        assert raw.count(429) == 5
        limited.set_limits(horizon={}, expert={}, reset_clients=True)
        limited.reset_stats()
        for _restart in range(2):  # a new process starts with a fresh limiter while the upstream remembers us
            up = client(limited, clock, config={"horizon_max_per_hour": 3600, "expert_max_per_minute": 30})
            for _ in range(120):
                assert up.horizon("public").account(account) is not None
            for _ in range(40):
                assert up.expert.account("public", account) is not None
        assert limited.stats()["totals"]["sent_429"] == 0


def test_a_long_retry_after_goes_back_to_the_caller_and_pauses_the_upstream():
    clock = SettableClock()
    with Simulator(accounts=200, airdrop_children=10, seed=3, port=0, clock=clock, horizon_rate_per_min=6,
                   horizon_burst=1) as limited:
        account = limited.pick("public", "recent", limit=1)[0]
        up = client(limited, clock)  # our own budget is far above the simulator's: it will say 429
        assert up.horizon("public").account(account) is not None
        with pytest.raises(RateLimited) as info:
            up.horizon("public").account(account)
        assert info.value.retry_after == pytest.approx(10, abs=1)
        assert clock.monotonic() < 1, "a Retry-After longer than the inline wait is not slept in-process (only our pacing)"
        assert up.horizon("public").account(account) is not None, "the next call waits out the pause first"
        assert clock.monotonic() == pytest.approx(10, abs=1)
        assert limited.stats()["totals"]["sent_429"] == 1


def test_a_budget_of_zero_pauses_without_any_request(sim):
    up = client(sim, config={"upstream_rate_pct": 0})
    with pytest.raises(RateLimited):
        up.horizon("public").account(recent(sim))
    assert requests_to(sim, "horizon.account") == 0
