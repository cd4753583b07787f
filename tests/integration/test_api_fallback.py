"""api_fallback end to end in-process: the real handler (real Flask requests), the real stores
(SQLite and, through the `store` fixture, the real Cassandra), the real process_account for the
lineage queue, and the simulator over real HTTP with its rate limits on. A TaskRunner delivers
the queued tasks (Cloud Tasks' names, delays and retries) on a SettableClock shared with the
simulator's limiter, so every limiter wait is virtual and a 429 would be a real one.

Each test gets a simulator with its own seed, so its accounts are its own on the session's
shared Cassandra keyspace.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import zlib
from decimal import Decimal

import pytest

from local.testing.truth import history_window

from common import pipeline
from common.bootstrap import Container
from common.clock import SettableClock
from common.config import PipelineConfig, Settings
from common.domain import GENESIS_ACCOUNT, iso, parse_iso
from common.handlers import api_fallback, process_account
from common.handlers.api_fallback import STAGES, Checkpoint
from common.lineage_view import lineage_view
from common.store.port import balance_magnitude
from local.simulator import Simulator
from local.simulator.network import ledger_close_time
from local.testing.fakes import TaskRunner, call_handler, http_answer
from tests.support import ROOT

pytestmark = pytest.mark.integration

FAULT_KINDS = ("429", "500", "502", "503", "slow", "timeout", "truncated", "malformed", "reset")
FAULT_PARAMS = {"slow_seconds": 0.2, "timeout_seconds": 1.5}


# ---------------------------------------------------------------------------------- harness
IDLE_BEFORE_FIRST_TASK_S = 60


class Harness:
    def __init__(self, sim, store, clock, config=None, extra=None, env=None):
        self.sim, self.store, self.clock = sim, store, clock
        settings = Settings.from_env(env={**sim.env(), "HUBBLE_ENGINE": "none", **(env or {})},
                                     extra={"UPSTREAM_TIMEOUT_S": "0.5", **(extra or {})})
        self.runner = TaskRunner(clock, max_attempts=30)
        self.config = PipelineConfig.from_stored({"pipeline_mode": "API_ONLY", **(config or {})})
        self.c = Container(settings, clock, store=store, queue=self.runner, pipeline_config=self.config)
        self.api_answers: list[tuple[int, dict]] = []
        # A new limiter starts without its burst (earned by idle time): the instance idled a minute.
        self.c.upstream  # noqa: B018 - created now, lazily as in a function
        clock.advance(IDLE_BEFORE_FIRST_TASK_S)

    def api(self, payload: dict):
        response = call_handler(api_fallback.handle, self.c, payload)
        body = response.get_json()
        assert body is not None, "every answer is JSON"
        self.api_answers.append((response.status_code, body))
        return response

    def handlers(self) -> dict:
        return {"lineage": lambda p: http_answer(call_handler(process_account.handle, self.c, p)),
                "api-fallback": lambda p: http_answer(self.api(p))}

    def search(self, *accounts: str, network: str = "public") -> None:
        for account in accounts:
            pipeline.request_lineage(self.c, network, account)

    def drain(self) -> int:
        return self.runner.drain(self.handlers())

    def run(self, *accounts: str) -> None:
        self.search(*accounts)
        self.drain()
        assert not self.runner.dropped

    def lineage_task(self, account: str, network: str = "public") -> dict:
        return {"network": network, "account": account, "purpose": "lineage", "generation": 0}

    def claimable(self, account: str, network: str = "public") -> None:
        """Put the row in PENDING (as search + process_account's hand-over do) without a queue run."""
        pipeline.request_lineage(self.c, network, account)
        self.runner._heap.clear()


@pytest.fixture
def clock():
    return SettableClock()


@pytest.fixture
def make_sim(request, clock):
    sims = []

    def build(**kw):
        seed = zlib.crc32(f"{request.node.nodeid}/{len(sims)}".encode()) % 1_000_000
        kw.setdefault("accounts", 400)
        kw.setdefault("airdrop_children", 300)
        sim = Simulator(seed=seed, port=0, clock=clock, **kw).start()
        sims.append(sim)
        return sim

    yield build
    for sim in sims:
        sim.stop()


def truth(sim, account, network="public"):
    return sim.network(network).truth(account, children_limit=10_000)


def requests_to(sim, endpoint: str) -> int:
    return sum(sim.stats()["requests"].get(endpoint, {}).values())


def visible_children(sim, t, network="public"):
    elder = sim.network(network).elder_ledger
    start = ledger_close_time(elder)
    return {c["account"] for c in t["children"]["items"] if parse_iso(c["created_at"]) >= start}


def stored_children(store, account, network="public"):
    kids = [e.child for e in store.iter_children(network, account)]
    assert len(kids) == len(set(kids)), "no child stored twice"
    return set(kids)


def answer_of(body: dict) -> dict:
    """The outcome inside a 200 body or a 429/503 error's details."""
    return body.get("error", {}).get("details") or body


def stages_of(store, account, network="public"):
    return {e.stage: e for e in store.get_stage_executions(network, account, 100)}


# ---------------------------------------------------------------------------------- lineage
def test_a_recent_account_gets_its_exact_lineage_and_enrichment(make_sim, store, clock):
    sim = make_sim()
    account = next(a for a in sim.pick("public", "recent", limit=200) if truth(sim, a)["children"]["total"] >= 1)
    h = Harness(sim, store, clock)
    h.search(account)
    h.drain()
    t = truth(sim, account)
    rec = store.get_lineage("public", account)
    assert rec.status == "COMPLETE" and rec.pipeline_source == "API" and rec.last_error is None
    assert rec.stellar_creator_account == t["creator"]
    assert iso(rec.account_creation_date) == t["created_at"]
    net = sim.network("public")
    last_modified = ledger_close_time(net.state(net.resolve(account)[1]).last_modified_ledger)
    assert last_modified != parse_iso(t["created_at"]), "the simulator makes the original's bug visible"
    assert rec.account_creation_date != last_modified, "never Horizon's last_modified_time"
    events = store.get_creation_events("public", account)
    assert [(e.creator, iso(e.created_at), e.operation_id, format(e.starting_balance, "f"), e.transaction_hash) for e in events] == [
        (e["creator"], e["created_at"], e["operation_id"], e["starting_balance"], e["transaction_hash"]) for e in t["creation_events"]]
    assert stored_children(store, account) == {c["account"] for c in t["children"]["items"]}
    assert rec.num_child_accounts == t["children"]["total"] and rec.children_complete is True and rec.children_cursor is None
    # enrichment: exact decimal, the balance index in step, flags, domain, assets
    assert isinstance(rec.xlm_balance, Decimal) and rec.xlm_balance == Decimal(t["xlm_balance"])
    assert (account, rec.xlm_balance) in store.balances_at_least("public", Decimal(0))
    assert rec.flags == t["flags"] and rec.home_domain == t["home_domain"] and rec.enriched_at is not None
    assert [(a["asset_code"], Decimal(a["balance"])) for a in rec.assets] == [(a["asset_code"], Decimal(a["balance"])) for a in t["assets"]]
    assert set(rec.thresholds) == {"master_key_weight", "low_threshold", "med_threshold", "high_threshold"}
    # bookkeeping: every stage recorded, the claim's timestamps
    stages = stages_of(store, account)
    assert set(STAGES) <= set(stages)
    assert all(stages[s].status in ("SUCCESS", "SKIPPED") for s in STAGES), {s: stages[s].status for s in STAGES}
    assert all(stages[s].pipeline_source == "API" and stages[s].duration_ms is not None for s in STAGES)
    assert rec.processing_started_at is not None and rec.last_pipeline_attempt is not None
    # its children: known with their creator and creation date, no status, enrichment done under the cap
    for child in t["children"]["items"]:
        kid = store.get_lineage("public", child["account"])
        assert kid.stellar_creator_account == account and iso(kid.account_creation_date) == child["created_at"]
        assert kid.status is None, "known from the crawl, never searched"
        if truth(sim, child["account"])["exists"]:
            assert kid.xlm_balance == Decimal(truth(sim, child["account"])["xlm_balance"]), "enriched by its enrich task"
    assert sim.stats()["totals"]["sent_429"] == 0, "our budget kept us inside the simulator's limits"
    ok, body = h.api_answers[0]
    assert ok == 200 and body["status"] == "COMPLETE"
    # Expert: the creator (1), plus the best-effort labels (directory entry, blocked domain when a home_domain is set).
    labels = 1 + (1 if rec.home_domain else 0)
    assert body["calls"]["horizon"] <= 3 and body["calls"]["expert"] in (1, 1 + labels), body["calls"]


def test_an_old_account_s_creator_and_creation_time_come_from_stellar_expert(make_sim, store, clock):
    sim = make_sim()
    accounts = sim.pick("public", "old", limit=6)
    h = Harness(sim, store, clock)
    h.run(*accounts)
    for account in accounts:
        t = truth(sim, account)
        rec = store.get_lineage("public", account)
        assert rec.status == "COMPLETE"
        assert rec.stellar_creator_account == t["creator"] and iso(rec.account_creation_date) == t["created_at"]
        events = store.get_creation_events("public", account)
        assert events[0].source == "EXPERT" and events[0].creator == t["creator"]
        assert rec.children_complete is False, "Horizon's pruned history cannot show the older children"
        assert stored_children(store, account) == visible_children(sim, t)
        assert stages_of(store, account)["expert_enrichment"].status == "SUCCESS"


def test_merged_then_recreated_accounts_keep_their_first_creator(make_sim, store, clock):
    sim = make_sim(accounts=1500)
    accounts = sim.pick("public", "merged", limit=10)
    h = Harness(sim, store, clock)
    h.run(*accounts)
    for account in accounts:
        t = truth(sim, account)
        rec = store.get_lineage("public", account)
        assert rec.stellar_creator_account == t["creator"], t["kinds"]
        assert iso(rec.account_creation_date) == t["created_at"]
        stored = {(e.creator, iso(e.created_at)) for e in store.get_creation_events("public", account)}
        assert (t["creator"], t["created_at"]) in stored, "the first creation, from Horizon or Stellar Expert"
        assert {(e["creator"], e["created_at"]) for e in t["creation_events"] if e["in_horizon_history"]} <= stored


def test_hostile_home_domains_are_stored_exactly_as_given(make_sim, store, clock):
    sim = make_sim()
    accounts = sim.pick("public", "hostile", limit=20)
    assert len(accounts) == 12
    h = Harness(sim, store, clock)
    h.run(*accounts)
    for account in accounts:
        rec = store.get_lineage("public", account)
        assert rec.status == "COMPLETE"
        assert rec.home_domain == truth(sim, account)["home_domain"]
    domains = {store.get_lineage("public", a).home_domain for a in accounts}
    assert "'; DROP TABLE account_lineage; --" in domains and "   " in domains and "x" * 995 + ".test" in domains


def test_unknown_accounts_become_invalid(make_sim, store, clock):
    sim = make_sim()
    missing = sim.pick("public", "missing", limit=2) + sim.pick("public", "ghost", limit=1)
    h = Harness(sim, store, clock)
    for account in missing:
        store.transition_search("public", account, None, "PENDING")
    h.run(*missing)
    for account in missing:
        rec = store.get_lineage("public", account)
        assert rec.status == "INVALID" and "never existed" in rec.last_error, (account, rec.status)
        assert store.get_search("public", account).status == "INVALID"
        assert store.get_creation_events("public", account) == []
        assert not stored_children(store, account)
        stages = stages_of(store, account)
        assert stages["horizon_data"].status == "FAILED" and stages["expansion"].status == "SKIPPED"
    assert all(code == 200 for code, _ in h.api_answers)


def test_merged_accounts_are_complete_with_their_creator_and_merge(make_sim, store, clock):
    sim = make_sim()
    gone = sim.pick("public", "merged_gone", limit=2)
    again = sim.pick("public", "merged", limit=2)
    h = Harness(sim, store, clock)
    for account in gone + again:
        store.transition_search("public", account, None, "PENDING")
    h.run(*gone, *again)
    window = history_window(sim.base_url, "public")
    for account in gone + again:
        t = truth(sim, account)
        rec = store.get_lineage("public", account)
        assert rec.status == "COMPLETE" and store.get_search("public", account).status == "COMPLETE", (account, rec.last_error)
        assert rec.stellar_creator_account == t["creator"] and iso(rec.account_creation_date) == t["created_at"]
        assert rec.deleted is (account in gone)
        merge = t["merges"][-1]
        if parse_iso(merge["merged_at"]) >= window:  # Horizon still lists the account_merge
            assert [(m.merged_into, iso(m.merged_at)) for m in store.get_merge_events("public", account)] == [(merge["into"], merge["merged_at"])]
            if account in gone:
                assert (rec.merged_into, iso(rec.merged_at)) == (merge["into"], merge["merged_at"])
        if account in gone:
            assert rec.xlm_balance is None and account not in dict(store.balances_at_least("public", Decimal(0)))
            assert stages_of(store, account)["horizon_data"].status == "FAILED", "404 on /accounts, and still COMPLETE"


def test_a_hand_over_names_the_path_that_actually_ran(make_sim, sqlite_store, clock):
    sim = make_sim()
    account, tried = sim.pick("public", "recent", limit=2)
    h = Harness(sim, sqlite_store, clock, config={"pipeline_mode": "BIGQUERY_WITH_API_FALLBACK"})
    h.run(account)  # HUBBLE_ENGINE=none: process_account hands over (hubble_disabled): no Hubble query was tried
    rec = sqlite_store.get_lineage("public", account)
    assert rec.status == "COMPLETE" and rec.pipeline_source == "API"
    assert rec.stellar_creator_account == truth(sim, account)["creator"]
    # A Hubble query was tried and the API finished the work: the source says both, on every stage.
    sqlite_store.transition_lineage("public", tried, None, "PENDING", pipeline_source="BIGQUERY_WITH_API_FALLBACK")
    h.api({"network": "public", "account": tried, "purpose": "lineage", "generation": 0})
    rec = sqlite_store.get_lineage("public", tried)
    assert rec.status == "COMPLETE" and rec.pipeline_source == "BIGQUERY_WITH_API_FALLBACK"
    assert {e.pipeline_source for e in sqlite_store.get_stage_executions("public", tried) if e.stage in STAGES} == {"BIGQUERY_WITH_API_FALLBACK"}


def test_the_chain_reaches_genesis_and_stops_there(make_sim, store, clock):
    sim = make_sim()
    account = sim.pick("public", "deep", limit=1)[0]
    h = Harness(sim, store, clock, config={"children_enrichment_cap": 0})
    h.run(account)
    t = truth(sim, account)
    view = lineage_view(store, "public", account)
    assert [n["account"] for n in view["ancestors"]] == t["ancestors"]
    assert t["ancestors"][0] == GENESIS_ACCOUNT
    lineage_accounts = [task["payload"]["account"] for task in h.runner.tasks if task["queue"] == "lineage"]
    assert GENESIS_ACCOUNT not in lineage_accounts, "genesis ends the chain: nothing above it to ask"
    for ancestor in t["ancestors"][1:]:
        assert store.get_lineage("public", ancestor).stellar_creator_account is not None


# ---------------------------------------------------------------------------------- children
def test_long_crawls_continue_across_tasks_with_no_hidden_cap(make_sim, store, clock):
    sim = make_sim(accounts=300, airdrop_children=4_500, retention_days=0)
    airdrop = sim.pick("public", "airdrop", limit=1)[0]
    h = Harness(sim, store, clock, config={"children_enrichment_cap": 25}, extra={"API_TASK_SECONDS": "8"})
    h.run(airdrop)
    t = truth(sim, airdrop)
    rec = store.get_lineage("public", airdrop)
    assert rec.status == "COMPLETE" and rec.children_complete is True and rec.children_cursor is None
    assert rec.num_child_accounts == t["children"]["total"] == 4_500
    assert stored_children(store, airdrop) == {c["account"] for c in t["children"]["items"]}
    mine = [(code, body) for code, body in h.api_answers if body.get("account") == airdrop]
    statuses = [body["status"] for _, body in mine]
    assert statuses.count("CONTINUED") >= 2 and statuses[-1] == "COMPLETE", statuses
    assert all(code == 200 for code, _ in mine)
    continuations = [task for task in h.runner.tasks if task["payload"]["purpose"] == "children"]
    assert len(continuations) == statuses.count("CONTINUED")
    assert all(Checkpoint.decode(task["payload"]["cursor"]) for task in continuations)
    kids = stored_children(store, airdrop)
    enrich = [task for task in h.runner.tasks if task["payload"]["purpose"] == "enrich" and task["payload"]["account"] in kids]
    assert len(enrich) == 25, "children's enrichment stops at children_enrichment_cap; the children do not"
    assert mine[-1][1]["pages"] == 4_500 // 200 + 1
    assert sum(body["calls"].get("horizon", 0) for _, body in mine) == 4_500 // 200 + 1 + 2, \
        "each page fetched once, plus GET /accounts and the root"
    assert sim.stats()["totals"]["sent_429"] == 0


CRASH_WORKER = r"""
import json, sys
from common.bootstrap import Container
from common.config import Settings
from common.handlers.api_fallback import handle
from local.testing.fakes import RecordingQueue, call_handler

c = Container(Settings.from_env(env=json.loads(sys.argv[1])), queue=RecordingQueue())
print(call_handler(handle, c, json.loads(sys.argv[2])).status_code, flush=True)
"""


def test_a_crash_between_two_pages_resumes_from_the_checkpoint(make_sim, store, clock):
    sim = make_sim(accounts=300, airdrop_children=3_000, retention_days=0, rate_limits=False)
    airdrop = sim.pick("public", "airdrop", limit=1)[0]
    store.set_config("horizon_max_per_hour", 10**7, clock.now())
    store.set_config("expert_max_per_minute", 10**6, clock.now())
    try:
        h = Harness(sim, store, clock)
        total_pages = 3_000 // 200 + 1
        h.claimable(airdrop)
        env = {**sim.env(), "HUBBLE_ENGINE": "none", "STELLARMAP_STORE": store.backend}
        if store.backend == "sqlite":
            env["STELLARMAP_SQLITE_PATH"] = store.path
        else:
            env.update(CASSANDRA_KEYSPACE=store.keyspace, CASSANDRA_PORT=str(store.settings.cassandra_port))
        sim.set_faults(rules={"horizon.operations": {"slow": 1.0, "slow_seconds": 0.25}})
        sim.reset_stats()
        worker = subprocess.Popen([sys.executable, "-c", CRASH_WORKER, json.dumps(env), json.dumps(h.lineage_task(airdrop))],
                                  cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while requests_to(sim, "horizon.operations") < 5:
            assert worker.poll() is None, worker.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the worker never reached its fifth page"
            time.sleep(0.01)
        worker.send_signal(signal.SIGKILL)  # mid-crawl: no cleanup, no release
        worker.wait(30)
        served_before = requests_to(sim, "horizon.operations")
        sim.clear_faults()
        rec = store.get_lineage("public", airdrop)
        assert rec.status == "PROCESSING", "the crash left the claim behind"
        checkpoint = Checkpoint.decode(rec.children_cursor)
        assert checkpoint is not None and checkpoint.pages >= 1
        assert served_before - checkpoint.pages <= 1, "a crash loses at most one page of work"
        done = [c for c in truth(sim, airdrop)["children"]["items"] if int(c["operation_id"]) <= int(checkpoint.cursor)]
        assert rec.num_child_accounts == len(done), "the count is checkpointed with the cursor"
        assert stored_children(store, airdrop) >= {c["account"] for c in done}
        # reset_stale's recovery: PROCESSING (stale) -> PENDING, then the task is delivered again
        assert store.transition_lineage("public", airdrop, ("PROCESSING",), "PENDING", retry_count=1)
        sim.reset_stats()
        h.api(h.lineage_task(airdrop))
        assert requests_to(sim, "horizon.operations") == total_pages - checkpoint.pages, "resumed at the checkpoint"
        assert requests_to(sim, "horizon.account") == 0 and requests_to(sim, "expert.account") == 0, "nothing redone before it"
        rec = store.get_lineage("public", airdrop)
        assert rec.status == "COMPLETE" and rec.num_child_accounts == 3_000
        assert stored_children(store, airdrop) == {c["account"] for c in truth(sim, airdrop)["children"]["items"]}
    finally:
        store.set_config("horizon_max_per_hour", 3600, clock.now())
        store.set_config("expert_max_per_minute", 50, clock.now())


def test_running_the_same_task_twice_stores_the_same_result(make_sim, store, clock):
    sim = make_sim(retention_days=0)
    account = next(a for a in sim.pick("public", "hub", limit=20) if 3 <= truth(sim, a)["children"]["total"] <= 400
                   and a != GENESIS_ACCOUNT)
    h = Harness(sim, store, clock, config={"children_enrichment_cap": 0})
    h.claimable(account)
    task = h.lineage_task(account)

    def snapshot():
        rec = store.get_lineage("public", account)
        return (rec.status, rec.stellar_creator_account, rec.account_creation_date, rec.num_child_accounts, rec.xlm_balance,
                rec.children_complete, [(e.creator, e.created_at, e.operation_id) for e in store.get_creation_events("public", account)],
                sorted((e.child, e.created_at, e.operation_id) for e in store.iter_children("public", account)))

    assert h.api(task).get_json()["status"] == "COMPLETE"
    first = snapshot()
    again = h.api(task)
    assert again.status_code == 200 and again.get_json()["status"] == "SKIPPED" and again.get_json()["calls"] == {}
    assert snapshot() == first
    # The same task again after its completion was lost (a crash after the last page): the crawl is
    # redone from the start over what is stored: the same rows, no child twice, the same count.
    assert store.transition_lineage("public", account, ("COMPLETE",), "PENDING", children_complete=None)
    redo = h.api(task).get_json()
    assert redo["status"] == "COMPLETE" and redo["calls"]["horizon"] >= 2
    assert snapshot() == first
    assert len(first[-1]) == truth(sim, account)["children"]["total"]


# ---------------------------------------------------------------------------------- enrich / re-inquiry
def test_enrich_refreshes_a_known_account_and_never_changes_its_status(make_sim, store, clock):
    sim = make_sim()
    account = sim.pick("public", "hva", limit=1)[0]
    gone = sim.pick("public", "merged_gone", limit=1)[0]
    h = Harness(sim, store, clock)
    h.run(account)
    rec = store.get_lineage("public", account)
    stale = Decimal("1.2345678")
    store.set_balance("public", account, stale, rec.xlm_balance)
    store.put_lineage("public", account, xlm_balance=stale, enriched_at=clock.now() - dt.timedelta(hours=13))
    body = h.api({"network": "public", "account": account, "purpose": "enrich", "generation": 0}).get_json()
    # one Horizon request; Expert only for the best-effort labels (directory entry, blocked domain), when spare budget allows
    assert body["status"] == "ENRICHED" and body["calls"].get("horizon") == 1 and body["calls"].get("expert", 0) <= 2, body["calls"]
    rec = store.get_lineage("public", account)
    assert rec.status == "COMPLETE" and rec.xlm_balance == Decimal(truth(sim, account)["xlm_balance"])
    index = dict(store.balances_at_least("public", Decimal(0)))
    assert index[account] == rec.xlm_balance and stale not in index.values()
    fresh = h.api({"network": "public", "account": account, "purpose": "enrich", "generation": 1}).get_json()
    assert fresh["status"] == "SKIPPED" and fresh["calls"] == {}, "enriched within cache_ttl_hours: no request"
    # a known account that no longer exists: its balance leaves the index, its status stays
    store.put_lineage("public", gone, stellar_creator_account=account, xlm_balance=Decimal("50"))
    store.set_balance("public", gone, Decimal("50"), None)
    body = h.api({"network": "public", "account": gone, "purpose": "enrich", "generation": 0}).get_json()
    assert body["status"] == "NOT_FOUND"
    rec = store.get_lineage("public", gone)
    assert rec.status is None and rec.xlm_balance is None
    assert gone not in dict(store.balances_at_least("public", Decimal(0)))


def test_a_re_inquiry_refreshes_the_enrichment_and_keeps_the_lineage(make_sim, store, clock):
    sim = make_sim()
    account = sim.pick("public", "recent", limit=3)[2]
    h = Harness(sim, store, clock, config={"children_enrichment_cap": 0})
    h.run(account)
    events = store.get_creation_events("public", account)
    clock.advance(13 * 3600)
    sim.reset_stats()
    h.api_answers.clear()
    h.run(account)  # search again after the TTL: RE_INQUIRY -> process_account (API_ONLY) -> api_fallback
    rec = store.get_lineage("public", account)
    assert rec.status == "COMPLETE" and rec.stellar_creator_account == truth(sim, account)["creator"]
    assert store.get_creation_events("public", account) == events
    assert [body["calls"].get("horizon") for _, body in h.api_answers] == [1]
    assert all(body["calls"].get("expert", 0) <= 2 for _, body in h.api_answers), "Expert: the best-effort labels only"
    assert requests_to(sim, "horizon.operations") == 0 and requests_to(sim, "expert.account") == 0


# ---------------------------------------------------------------------------------- upstream failures
@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_every_fault_kind_is_survived(make_sim, sqlite_store, clock, kind):
    sim = make_sim()
    accounts = sim.pick("public", "recent", limit=2) + sim.pick("public", "old", limit=2)
    h = Harness(sim, sqlite_store, clock, config={"children_enrichment_cap": 0})
    endpoints = ("horizon.root", "horizon.account", "horizon.operations", "expert.account")
    sim.set_faults(rules={e: {"slow": 0.0, **FAULT_PARAMS} for e in endpoints},
                   queue={e: [kind, kind, "500" if kind != "500" else "503"] for e in endpoints})
    h.run(*accounts)
    for account in accounts:
        t = truth(sim, account)
        rec = sqlite_store.get_lineage("public", account)
        assert rec.status == "COMPLETE", (kind, rec.last_error)
        assert rec.stellar_creator_account == t["creator"] and iso(rec.account_creation_date) == t["created_at"]
        assert rec.xlm_balance == Decimal(t["xlm_balance"])
    injected = sim.stats()["injected"]
    for e in endpoints:  # the root is read once (cached): a slow answer there is still an answer
        assert injected.get(e, {}).get(kind, 0) == (1 if (kind, e) == ("slow", "horizon.root") else 2), (e, injected)


@pytest.mark.parametrize("kind,endpoint", [("503", "horizon.account"), ("malformed", "horizon.operations"),
                                           ("truncated", "horizon.account"), ("reset", "horizon.operations"),
                                           ("502", "expert.account")])
def test_repeated_failure_ends_failed_with_last_error(make_sim, store, clock, kind, endpoint):
    sim = make_sim()
    account = sim.pick("public", "old", limit=1)[0]  # old: Expert is needed, Horizon cannot stand in for it
    h = Harness(sim, store, clock, config={"max_retries": 3})
    store.transition_search("public", account, None, "PENDING")
    sim.set_faults(rules={endpoint: {kind: 1.0, **FAULT_PARAMS}})
    h.run(account)
    rec = store.get_lineage("public", account)
    assert rec.status == "FAILED" and "after 3 attempts" in rec.last_error, rec.last_error
    assert endpoint.split(".")[0] in rec.last_error
    assert store.get_search("public", account).status == "FAILED"
    codes = [code for code, body in h.api_answers if answer_of(body).get("account") == account]
    assert codes == [503, 503, 200], "two retries asked of the queue, then a final answer"
    assert h.api_answers[-1][1]["status"] == "FAILED"
    failed = stages_of(store, account)
    assert any(e.status == "FAILED" and e.error_message for e in failed.values())


def test_stellar_expert_down_does_not_stop_an_account_horizon_shows_whole(make_sim, sqlite_store, clock):
    sim = make_sim()
    account = sim.pick("public", "recent", limit=1)[0]
    h = Harness(sim, sqlite_store, clock)
    sim.set_faults(rules={"expert.*": {"503": 1.0}})
    h.run(account)
    rec = sqlite_store.get_lineage("public", account)
    assert rec.status == "COMPLETE" and rec.stellar_creator_account == truth(sim, account)["creator"]
    expert = stages_of(sqlite_store, account)["expert_enrichment"]
    assert expert.status == "FAILED" and "Horizon's visible history" in expert.error_message


@pytest.mark.parametrize("endpoint", ["horizon.*", "expert.*"])
def test_an_upstream_429_releases_the_claim_without_counting_an_attempt(make_sim, sqlite_store, clock, endpoint):
    sim = make_sim()
    account = sim.pick("public", "old", limit=1)[0]
    h = Harness(sim, sqlite_store, clock)
    h.claimable(account)
    sim.set_faults(rules={endpoint: {"429": 1.0}})
    response = h.api(h.lineage_task(account))
    assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1
    assert response.get_json()["error"]["code"] == "upstream_rate_limited"
    rec = sqlite_store.get_lineage("public", account)
    assert rec.status == "PENDING" and (rec.retry_count or 0) == 0 and "429" in rec.last_error
    sim.clear_faults()
    clock.advance(int(response.headers["Retry-After"]))
    assert h.api(h.lineage_task(account)).get_json()["status"] == "COMPLETE"


def test_no_budget_asks_the_queue_to_come_back_later(make_sim, sqlite_store, clock):
    sim = make_sim()
    account = sim.pick("public", "recent", limit=1)[0]
    h = Harness(sim, sqlite_store, clock, config={"upstream_rate_pct": 0})
    h.claimable(account)
    response = h.api(h.lineage_task(account))
    assert response.status_code == 429 and response.headers["Retry-After"] == "300"
    assert sim.stats()["totals"]["requests"] == 0, "not one request without budget"
    rec = sqlite_store.get_lineage("public", account)
    assert rec.status == "PENDING" and (rec.retry_count or 0) == 0


def test_a_slow_upstream_mid_crawl_continues_later_instead_of_failing(make_sim, sqlite_store, clock):
    sim = make_sim(accounts=300, airdrop_children=1_000, retention_days=0)
    airdrop = sim.pick("public", "airdrop", limit=1)[0]
    h = Harness(sim, sqlite_store, clock, config={"children_enrichment_cap": 0})
    h.claimable(airdrop)
    # After three pages the simulator answers 429 with Retry-After 1 on every try for a while.
    sim.set_faults(queue={"horizon.operations": ["slow", "slow", "slow"] + ["429"] * 8},
                   rules={"horizon.operations": {"slow": 0.0, "slow_seconds": 0.01}})
    body = h.api(h.lineage_task(airdrop)).get_json()
    assert body["status"] == "CONTINUED" and body["pages"] == 3, body
    rec = sqlite_store.get_lineage("public", airdrop)
    assert rec.status == "PENDING" and Checkpoint.decode(rec.children_cursor).pages == 3
    h.drain()
    rec = sqlite_store.get_lineage("public", airdrop)
    assert rec.status == "COMPLETE" and rec.num_child_accounts == 1_000


def test_balances_land_in_the_right_index_bucket(make_sim, sqlite_store, clock):
    sim = make_sim()
    accounts = sim.pick("public", "hva", limit=8)
    h = Harness(sim, sqlite_store, clock, config={"children_enrichment_cap": 0})
    h.run(*accounts)
    for account in accounts:
        balance = Decimal(truth(sim, account)["xlm_balance"])
        assert (account, balance) in sqlite_store.balances_at_least("public", balance)
        assert balance_magnitude(balance) >= 4, "HVA balances: at least 10,000 XLM"


def test_a_re_inquiry_of_an_account_merged_since_keeps_its_lineage(make_sim, sqlite_store, clock):
    from common.domain import CreationEvent

    sim = make_sim()
    gone = sim.pick("public", "merged_gone", limit=1)[0]
    t = truth(sim, gone)
    first = t["creation_events"][0]
    store = sqlite_store
    # Stored while it existed (e.g. by the Hubble path), then merged; now its cache entry is stale.
    store.add_creation_event(CreationEvent("public", gone, parse_iso(first["created_at"]), first["operation_id"], first["creator"],
                                           Decimal(first["starting_balance"]), None, "BIGQUERY"))
    store.transition_lineage("public", gone, None, "COMPLETE", stellar_creator_account=t["creator"], children_complete=True,
                             xlm_balance=Decimal("75"), account_creation_date=parse_iso(t["created_at"]),
                             updated_at=clock.now() - dt.timedelta(hours=13), pipeline_source="BIGQUERY")
    store.set_balance("public", gone, Decimal("75"), None)
    h = Harness(sim, store, clock)
    h.run(gone)
    rec = store.get_lineage("public", gone)
    assert rec.status == "COMPLETE" and rec.stellar_creator_account == t["creator"] and rec.xlm_balance is None
    assert gone not in dict(store.balances_at_least("public", Decimal(0)))
    assert "no longer exists" in h.api_answers[-1][1]["reason"]


def test_testnet_accounts_use_the_testnet_horizon(make_sim, store, clock):
    sim = make_sim()
    account = sim.pick("testnet", "recent", limit=1)[0]
    h = Harness(sim, store, clock, config={"children_enrichment_cap": 0})
    h.search(account, network="testnet")
    h.drain()
    t = truth(sim, account, "testnet")
    rec = store.get_lineage("testnet", account)
    assert rec.status == "COMPLETE" and rec.stellar_creator_account == t["creator"]
    assert store.get_lineage("public", account) is None
    assert sum(sim.stats()["requests"].get("horizon.account", {}).values()) >= 1


def test_when_stellar_expert_does_not_know_the_account(make_sim, sqlite_store, clock):
    sim = make_sim()
    elsewhere = make_sim()  # another world's Stellar Expert: it knows none of this one's accounts
    old, recent = sim.pick("public", "old", limit=1)[0], sim.pick("public", "recent", limit=1)[0]
    h = Harness(sim, sqlite_store, clock, config={"max_retries": 2, "children_enrichment_cap": 0},
                env={"EXPERT_URL": elsewhere.expert_url})
    h.run(old, recent)
    rec = sqlite_store.get_lineage("public", old)
    # Nobody we may ask (no Hubble here) knows its creation: COMPLETE at once, saying so, never retried into FAILED.
    assert rec.status == "COMPLETE" and rec.stellar_creator_account is None and rec.retry_count == 0, rec.last_error
    assert rec.last_error.startswith("creator unknown") and rec.children_gap == "history_pruned"
    assert rec.creation_ledger == truth(sim, old)["creation_events"][-1]["ledger"], "from its sequence number"
    assert rec.children_visible_from is not None
    rec = sqlite_store.get_lineage("public", recent)
    assert rec.status == "COMPLETE" and rec.stellar_creator_account == truth(sim, recent)["creator"]
    expert = stages_of(sqlite_store, recent)["expert_enrichment"]
    assert expert.status == "FAILED" and "does not know" in expert.error_message


def test_a_store_outage_mid_task_is_retried_and_loses_nothing(make_sim, tmp_path, clock):
    from common.store import migrations
    from common.store.sqlite import SQLiteStore

    class OutageStore(SQLiteStore):
        failures = 1

        def _add_children(self, network, creator, children):
            if self.failures:
                self.failures -= 1
                raise ConnectionError("store unreachable")
            return super()._add_children(network, creator, children)

    store = OutageStore(tmp_path / "outage.sqlite3")
    migrations.migrate(store)
    sim = make_sim(retention_days=0)
    account = next(a for a in sim.pick("public", "hub", limit=20) if a != GENESIS_ACCOUNT)
    h = Harness(sim, store, clock, config={"children_enrichment_cap": 0})
    h.claimable(account)
    first = h.api(h.lineage_task(account))
    assert first.status_code == 503 and first.get_json()["error"]["code"] == "retry_later"
    assert "ConnectionError" in first.get_json()["error"]["message"]
    rec = store.get_lineage("public", account)
    assert rec.status == "PENDING" and rec.retry_count == 1 and "store unreachable" in rec.last_error
    assert h.api(h.lineage_task(account)).get_json()["status"] == "COMPLETE"
    assert stored_children(store, account) == {c["account"] for c in truth(sim, account)["children"]["items"]}
    store.close()
