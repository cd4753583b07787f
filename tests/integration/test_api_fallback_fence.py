"""api_fallback with its claim stolen mid-task (issue 14), and a continuation the queue refuses.

The real handler and simulator (the harness of test_api_fallback.py) on a SQLite store that, at a
chosen write, runs what happens while the worker is paused: reset_stale releases its claim (31
minutes on the shared clock) and another worker claims the account, or claims and finishes it.
The paused worker then resumes: it must answer 200 SKIPPED "claim lost" and change nothing.
"""
from __future__ import annotations

import dataclasses

import pytest

from common.bootstrap import Container
from common.domain import GENESIS_ACCOUNT
from common.handlers import reset_stale
from common.handlers.api_fallback import Checkpoint
from common.queue.port import task_name
from common.store import migrations
from common.store.sqlite import SQLiteStore
from local.testing.fakes import StealsClaims, TaskRunner
from tests.integration.test_api_fallback import Harness, make_sim, stored_children, truth  # noqa: F401 - make_sim is a fixture

pytestmark = pytest.mark.integration


class StealingStore(StealsClaims, SQLiteStore):
    pass


@pytest.fixture
def store(tmp_path):
    s = StealingStore(tmp_path / "stealing.sqlite3")
    migrations.migrate(s)
    yield s
    s.close()


def steal(h: Harness, account: str, finish: bool, seen: list):
    """reset_stale releases the paused worker's claim; worker B claims it (and, finish=True, completes it)."""

    def run():
        h.clock.advance(31 * 60)
        report = reset_stale.run(h.c, ["public"], h.clock.now())
        assert report["counts"] == {"reset_to_pending": 1}, report
        if finish:
            body = h.api(h.lineage_task(account)).get_json()
            assert body["status"] == "COMPLETE", body
        else:
            assert h.store.claim("public", account, h.clock.now())
        seen.append(snapshot(h.store, account))

    return run


def snapshot(store, account):
    return (dataclasses.asdict(store.get_lineage("public", account)), sorted(e.child for e in store.iter_children("public", account)),
            [dataclasses.asdict(e) for e in store.get_creation_events("public", account)])


def pick_hub(sim, low: int, high: int) -> str:
    return next(a for a in sim.pick("public", "hub", limit=40) + sim.pick("public", "airdrop", limit=5)
                if low <= truth(sim, a)["children"]["total"] <= high and a != GENESIS_ACCOUNT)


def paused_worker(h: Harness, account: str) -> dict:
    """Worker A's task, run to its end after the theft: its answer must be 200 SKIPPED (claim lost)."""
    response = h.api(h.lineage_task(account))
    body = response.get_json()
    assert response.status_code == 200 and body["status"] == "SKIPPED" and "claim lost" in body["reason"], body
    return body


@pytest.mark.parametrize("finish", [True, False], ids=["b-completes", "b-holds"])
@pytest.mark.parametrize("page", [1, 2])
def test_a_worker_paused_mid_crawl_finds_its_claim_gone_and_writes_nothing(make_sim, store, clock, page, finish):
    sim = make_sim(accounts=300, airdrop_children=700, retention_days=0)
    airdrop = sim.pick("public", "airdrop", limit=1)[0]
    h = Harness(sim, store, clock, config={"children_enrichment_cap": 0})
    h.claimable(airdrop)
    seen: list = []
    store.arm("_add_children", airdrop, steal(h, airdrop, finish, seen), at=page)
    paused_worker(h, airdrop)
    assert store.stolen and snapshot(store, airdrop) == seen[0], "A's checkpoint after the theft changed nothing"
    rec = store.get_lineage("public", airdrop)
    if finish:
        t = truth(sim, airdrop)
        assert rec.status == "COMPLETE" and rec.num_child_accounts == t["children"]["total"] == 700 and rec.children_cursor is None
        assert stored_children(store, airdrop) == {c["account"] for c in t["children"]["items"]}, "0 lost children"
    else:
        assert rec.status == "PROCESSING", "B holds the claim (its token is in the snapshot compared above)"
        done = Checkpoint.decode(rec.children_cursor)
        assert (done.pages if done else 0) == page - 1, "only A's checkpoints from before the theft are there"


def test_a_completion_after_the_claim_was_lost_is_refused(make_sim, store, clock):
    sim = make_sim(retention_days=0)
    hub = pick_hub(sim, 3, 150)  # one page: the next write after the theft is the completion
    h = Harness(sim, store, clock, config={"children_enrichment_cap": 0})
    h.claimable(hub)
    seen: list = []
    store.arm("_add_children", hub, steal(h, hub, True, seen))
    paused_worker(h, hub)
    assert snapshot(store, hub) == seen[0], "B's completion stands: A's later one (newer timestamps) did not land"


def test_the_creator_found_after_the_claim_was_lost_is_not_written(make_sim, store, clock):
    sim = make_sim(retention_days=0)
    account = sim.pick("public", "recent", limit=1)[0]
    h = Harness(sim, store, clock)
    h.claimable(account)
    seen: list = []
    store.arm("_add_creation_event", account, steal(h, account, False, seen))
    paused_worker(h, account)
    rec = store.get_lineage("public", account)
    assert snapshot(store, account) == seen[0] and rec.stellar_creator_account is None and rec.status == "PROCESSING"


def test_an_invalid_verdict_after_the_claim_was_lost_is_not_written(make_sim, store, clock):
    sim = make_sim()
    missing = sim.pick("public", "missing", limit=1)[0]
    h = Harness(sim, store, clock)
    h.claimable(missing)
    seen: list = []
    store.arm("_record_stage", missing, steal(h, missing, False, seen),
              when=lambda e: e.stage == "horizon_data" and e.status == "FAILED")
    paused_worker(h, missing)
    assert snapshot(store, missing) == seen[0] and store.get_lineage("public", missing).status == "PROCESSING"


def test_a_continuation_after_the_claim_was_lost_is_not_enqueued(make_sim, store, clock):
    sim = make_sim(accounts=300, airdrop_children=700, retention_days=0)
    airdrop = sim.pick("public", "airdrop", limit=1)[0]
    h = Harness(sim, store, clock, config={"children_enrichment_cap": 0})
    h.claimable(airdrop)
    seen: list = []
    # Right after A's first checkpoint: the 31 minutes also spend A's time budget, so A's next step
    # is its continuation (PROCESSING -> PENDING + a `children` task), which must not happen.
    store.arm("update_claimed", airdrop, steal(h, airdrop, False, seen), at=2)
    paused_worker(h, airdrop)
    assert snapshot(store, airdrop) == seen[0]
    assert [t for t in h.runner.tasks if t["payload"]["purpose"] == "children"] == []


class RefusesContinuations(TaskRunner):
    """The queue fails to create the first `failures` continuation (`children`) tasks."""

    failures = 1

    def enqueue(self, queue, payload, *, purpose, generation=0, delay_s=0.0):
        if purpose == "children" and self.failures:
            self.failures -= 1
            raise ConnectionError("Cloud Tasks unavailable")
        return super().enqueue(queue, payload, purpose=purpose, generation=generation, delay_s=delay_s)


def test_a_continuation_the_queue_refuses_is_a_503_and_the_retry_resumes_at_the_checkpoint(make_sim, tmp_path, clock):
    store = SQLiteStore(tmp_path / "s.sqlite3")
    migrations.migrate(store)
    sim = make_sim(accounts=300, airdrop_children=1_000, retention_days=0)
    airdrop = sim.pick("public", "airdrop", limit=1)[0]
    h = Harness(sim, store, clock, config={"children_enrichment_cap": 0})
    h.runner = RefusesContinuations(clock, max_attempts=30)
    h.c = Container(h.c.settings, clock, store=store, queue=h.runner, pipeline_config=h.config)
    h.claimable(airdrop)
    # After three pages the simulator answers 429 for a while: the crawl continues later.
    sim.set_faults(queue={"horizon.operations": ["slow", "slow", "slow"] + ["429"] * 8},
                   rules={"horizon.operations": {"slow": 0.0, "slow_seconds": 0.01}})
    at_503 = []
    handlers = h.handlers()
    api = handlers["api-fallback"]

    def api_and_look(payload):
        status, retry_after = api(payload)
        if status == 503:
            at_503.append((h.api_answers[-1][1], retry_after, store.get_lineage("public", airdrop)))
        return status, retry_after

    handlers["api-fallback"] = api_and_look
    assert h.runner.enqueue("api-fallback", h.lineage_task(airdrop), purpose="lineage", generation="first")
    h.runner.drain(handlers)
    assert not h.runner.dropped
    assert len(at_503) == 1, "one 503, then Cloud Tasks' retry of the same task"
    body, retry_after, rec = at_503[0]
    assert body["error"]["code"] == "retry_later" and retry_after >= 1
    assert "continuation" in body["error"]["message"] and "ConnectionError" in body["error"]["message"]
    assert rec.status == "PENDING" and Checkpoint.decode(rec.children_cursor).pages == 3, "released at its checkpoint"
    assert rec.retry_count == 0, "the queue's failure is not the account's"
    first = next(t for t in h.runner.tasks if t["name"] == task_name("public", airdrop, "lineage", "first"))
    assert first["attempts"] >= 2, "the task that answered 503 was delivered again"
    rec = store.get_lineage("public", airdrop)
    assert rec.status == "COMPLETE" and rec.num_child_accounts == 1_000 and rec.children_cursor is None
    assert stored_children(store, airdrop) == {c["account"] for c in truth(sim, airdrop)["children"]["items"]}
    store.close()
