"""Fault injection, rate limits, stats, concurrency and shutdown of the simulator over real HTTP."""
from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from common.clock import SettableClock
from common.domain import GENESIS_ACCOUNT
from local.simulator import Simulator

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sim():
    with Simulator(accounts=300, airdrop_children=500, seed=5, port=0, rate_limits=False) as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def clean(sim):
    sim.clear_faults()
    sim.set_faults(clear_queue=True)
    sim.reset_stats()
    yield
    sim.clear_faults()
    sim.set_faults(clear_queue=True)


def account_url(sim):
    return f"{sim.horizon_url()}/accounts/{GENESIS_ACCOUNT}"


def expert_url(sim):
    return f"{sim.expert_url}/explorer/public/account/{sim.network().address(5)}"


def post_faults(sim, body):
    return requests.post(f"{sim.base_url}/_sim/faults", json=body, timeout=30)


# ------------------------------------------------------------------ faults, one kind at a time
def test_faults_route_shows_and_sets_rules(sim):
    assert requests.get(f"{sim.base_url}/_sim/faults", timeout=30).json()["rules"] == {}
    body = post_faults(sim, {"rules": {"horizon.*": {"503": 0.25, "slow": 0.1, "slow_seconds": 1}}}).json()
    assert body["rules"] == {"horizon.*": {"503": 0.25, "slow": 0.1, "slow_seconds": 1.0}}
    assert requests.delete(f"{sim.base_url}/_sim/faults", timeout=30).json()["rules"] == {}


@pytest.mark.parametrize(
    "body",
    [
        {"rules": {"horizon.account": {"500": 2}}},
        {"rules": {"nowhere": {"500": 0.1}}},
        {"rules": {"horizon.account": {"500": 0.7, "503": 0.7}}},
        {"queue": {"horizon.account": ["explode"]}},
        {"clear_queue": "yes"},
        {"surprise": 1},
        [],
    ],
)
def test_bad_fault_requests_are_400_and_change_nothing(sim, body):
    post_faults(sim, {"rules": {"toml": {"500": 0.5}}})
    before = requests.get(f"{sim.base_url}/_sim/faults", timeout=30).json()
    response = post_faults(sim, body)
    assert response.status_code == 400 and response.json()["error"]["message"]
    assert requests.get(f"{sim.base_url}/_sim/faults", timeout=30).json() == before


def test_injected_429_is_counted_apart_from_earned_ones(sim):
    sim.set_faults(queue={"horizon.account": ["429"]})
    response = requests.get(account_url(sim), timeout=30)
    assert response.status_code == 429 and response.headers["Retry-After"] == "1"
    assert response.json()["type"] == "https://stellar.org/horizon-errors/rate_limit_exceeded"
    totals = sim.stats()["totals"]
    assert totals["injected_429"] == 1 and totals["rate_limited_429"] == 0 and totals["sent_429"] == 1


@pytest.mark.parametrize("kind, status, marker", [("500", 500, "server_error"), ("503", 503, "server_over_capacity")])
def test_horizon_server_errors_are_problem_json(sim, kind, status, marker):
    sim.set_faults(queue={"horizon.account": [kind]})
    response = requests.get(account_url(sim), timeout=30)
    assert response.status_code == status
    assert response.json()["type"].endswith(marker)


def test_502_is_a_gateway_html_page(sim):
    sim.set_faults(queue={"expert.account": ["502"]})
    response = requests.get(expert_url(sim), timeout=30)
    assert response.status_code == 502 and response.headers["Content-Type"].startswith("text/html")
    with pytest.raises(ValueError):
        response.json()


def test_expert_500_has_experts_error_shape(sim):
    sim.set_faults(queue={"expert.account": ["500"]})
    response = requests.get(expert_url(sim), timeout=30)
    assert response.status_code == 500 and response.json() == {"error": "Internal server error", "status": 500}


def test_slow_answers_arrive_late_but_whole(sim):
    sim.set_faults(rules={"horizon.account": {"slow": 1.0, "slow_seconds": 3}})
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(account_url(sim), timeout=0.3)
    sim.set_faults(rules={"horizon.account": {"slow": 1.0, "slow_seconds": 0.05}})
    response = requests.get(account_url(sim), timeout=30)
    assert response.status_code == 200 and response.json()["id"] == GENESIS_ACCOUNT
    assert sim.stats()["injected"]["horizon.account"]["slow"] == 2


def test_timeout_holds_the_connection_without_answering(sim):
    sim.set_faults(queue={"horizon.operations": ["timeout"]}, rules={"horizon.operations": {"timeout_seconds": 5}})
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(account_url(sim) + "/operations", timeout=0.3)
    assert requests.get(account_url(sim) + "/operations", timeout=30).status_code == 200


def test_truncated_json_is_a_prefix_of_the_real_answer(sim):
    real = requests.get(account_url(sim), timeout=30).content
    sim.set_faults(queue={"horizon.account": ["truncated"]})
    response = requests.get(account_url(sim), timeout=30)
    assert response.status_code == 200 and 0 < len(response.content) < len(real)
    assert real.startswith(response.content)
    with pytest.raises(ValueError):
        json.loads(response.content)


def test_malformed_json(sim):
    sim.set_faults(queue={"expert.account": ["malformed"]})
    response = requests.get(expert_url(sim), timeout=30)
    assert response.status_code == 200
    with pytest.raises(ValueError):
        json.loads(response.content)


def test_connection_reset(sim):
    sim.set_faults(queue={"horizon.account": ["reset"]})
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(account_url(sim), timeout=30)
    assert requests.get(account_url(sim), timeout=30).status_code == 200


def test_queued_faults_then_normal_service(sim):
    post_faults(sim, {"queue": {"toml": ["503", "500"]}})
    url = sim.toml_url("exchange-1.example")
    assert [requests.get(url, timeout=30).status_code for _ in range(3)] == [503, 500, 200]


def test_group_rules_touch_only_their_upstream(sim):
    sim.set_faults(rules={"horizon.*": {"500": 1.0}})
    assert requests.get(account_url(sim), timeout=30).status_code == 500
    assert requests.get(expert_url(sim), timeout=30).status_code == 200
    assert requests.get(f"{sim.base_url}/_sim/health", timeout=30).status_code == 200  # control is never faulted


def test_probabilities_apply_per_request(sim):
    sim.set_faults(rules={"horizon.account": {"503": 0.5}}, seed=3)
    statuses = [requests.get(account_url(sim), timeout=30).status_code for _ in range(60)]
    assert set(statuses) == {200, 503}
    assert sim.stats()["injected"]["horizon.account"]["503"] == statuses.count(503)


# ------------------------------------------------------------------ rate limits
@pytest.fixture
def limited():
    clock = SettableClock()
    with Simulator(accounts=300, airdrop_children=500, seed=5, port=0, horizon_rate_per_min=6, horizon_burst=3,
                   expert_rate_per_min=2, expert_burst=1, clock=clock) as simulator:
        yield simulator, clock


def test_rate_limit_headers_count_down_then_429_with_retry_after(limited):
    sim, clock = limited
    url = account_url(sim)
    answers = [requests.get(url, headers={"X-Client-Id": "worker-1"}, timeout=30) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    assert all(a.headers["X-RateLimit-Limit"] == "3" for a in answers)
    assert answers[3].headers["Retry-After"] == "10"
    assert answers[3].json()["type"] == "https://stellar.org/horizon-errors/rate_limit_exceeded"
    other = requests.get(url, headers={"X-Client-Id": "worker-2"}, timeout=30)
    assert other.status_code == 200  # budgets are per client
    clock.advance(10)
    assert requests.get(url, headers={"X-Client-Id": "worker-1"}, timeout=30).status_code == 200
    stats = sim.stats()
    assert stats["rate_limited_429"]["horizon.account"] == {"worker-1": 1}
    assert stats["totals"]["rate_limited_429"] == 1 and stats["totals"]["injected_429"] == 0
    assert stats["requests"]["horizon.account"] == {"worker-1": 5, "worker-2": 1}


def test_expert_has_its_own_budget_and_error_shape(limited):
    sim, _ = limited
    url = expert_url(sim)
    first, second = (requests.get(url, timeout=30) for _ in range(2))
    assert first.status_code == 200 and second.status_code == 429
    assert second.json() == {"error": "Too many requests.", "status": 429}
    assert second.headers["Retry-After"] == "30"
    assert requests.get(account_url(sim), timeout=30).status_code == 200  # Horizon's budget is untouched


def test_limits_route_changes_budgets_and_refuses_bad_ones(limited):
    sim, _ = limited
    url = f"{sim.base_url}/_sim/limits"
    assert requests.get(url, timeout=30).json()["horizon"] == {"rate_per_min": 6.0, "burst": 3, "enabled": True}
    for body in ({"horizon": {"burst": 0}}, {"horizon": {"rate_per_min": -1}}, {"mars": {}}, {"reset_clients": 1}):
        response = requests.post(url, json=body, timeout=30)
        assert response.status_code == 400 and response.json()["error"]["message"]
    assert requests.get(url, timeout=30).json()["horizon"]["burst"] == 3
    requests.post(url, json={"horizon": {"enabled": False}}, timeout=30)
    statuses = {requests.get(account_url(sim), timeout=30).status_code for _ in range(10)}
    assert statuses == {200}
    response = requests.get(account_url(sim), timeout=30)
    assert "X-RateLimit-Limit" not in response.headers


# ------------------------------------------------------------------ stats, load, shutdown
def test_stats_count_every_request_per_endpoint_and_client(sim):
    for client in ("a", "a", "b"):
        requests.get(account_url(sim), headers={"X-Client-Id": client}, timeout=30)
    requests.get(expert_url(sim), headers={"X-Client-Id": "a"}, timeout=30)
    stats = requests.get(f"{sim.base_url}/_sim/stats", timeout=30).json()
    assert stats["requests"]["horizon.account"] == {"a": 2, "b": 1}
    assert stats["requests"]["expert.account"] == {"a": 1}
    assert stats["responses"]["horizon.account"] == {"200": 3}
    assert requests.post(f"{sim.base_url}/_sim/stats/reset", timeout=30).json()["totals"]["requests"] == 0


def test_serves_many_concurrent_clients(sim):
    net = sim.network()
    urls = [f"{sim.horizon_url()}/accounts/{net.address(i)}/operations?limit=20" for i in range(1, 201)]

    def fetch(url):
        with requests.Session() as session:
            return session.get(url, headers={"X-Client-Id": url[-30:]}, timeout=60).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(fetch, urls))
    assert statuses == [200] * 200
    assert sim.stats()["totals"]["requests"] == 200


def test_stop_releases_connections_held_by_timeout_faults():
    simulator = Simulator(accounts=300, airdrop_children=0, seed=5, port=0, rate_limits=False,
                          faults={"horizon.account": {"timeout": 1.0, "timeout_seconds": 600}}).start()
    url = account_url(simulator)
    outcome = {}

    def call():
        try:
            outcome["status"] = requests.get(url, timeout=120).status_code
        except requests.exceptions.RequestException as exc:
            outcome["error"] = type(exc).__name__

    health = f"{simulator.base_url}/_sim/health"
    keep_alive = requests.Session()
    assert keep_alive.get(health, timeout=30).status_code == 200
    caller = threading.Thread(target=call)
    caller.start()
    while simulator.stats()["totals"]["requests"] == 0:
        caller.join(0.01)
    simulator.stop()
    caller.join(60)
    assert not caller.is_alive() and "error" in outcome
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, timeout=5)
    with pytest.raises(requests.exceptions.ConnectionError):  # idle keep-alive connections are closed too
        keep_alive.get(health, timeout=5)
    keep_alive.close()
