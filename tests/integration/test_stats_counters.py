"""/pipeline-stats is exact: after the system goes quiet the counters equal the ground truth
(computed here from every lineage row), under concurrency, duplicate deliveries and crashes."""
from __future__ import annotations

import datetime as dt
import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from common import pipeline
from common.clock import SettableClock
from common.domain import LineageRecord
from common.read_models import counters
from common.read_models.counters import CountedState, apply_delta, summarize
from common.store import codec
from local.testing.fakes import RecordingQueue
from tests.integration.stats_fixtures import container, recording
from tests.support import random_account

pytestmark = pytest.mark.integration
T0 = dt.datetime(2026, 3, 10, 8, 30, tzinfo=dt.timezone.utc)
SOURCES = ("BIGQUERY", "BIGQUERY_WITH_API_FALLBACK", "API")


def truth(store, now):
    rows = [codec.record(LineageRecord, r) for r in store.scan("account_lineage", None, 1_000_000)]
    return counters.ground_truth(rows, now)


def stats(store, now):
    return counters.pipeline_stats(store, now)


# ------------------------------------------------------------------ pure parts
def test_apply_delta_moves_one_account_and_is_idempotent_per_state():
    a = CountedState("PENDING", None, None)
    b = CountedState("COMPLETE", "API", "2026-03-10T08")
    counts = apply_delta({}, None, a)
    assert counts == {"s:PENDING": 1}
    counts = apply_delta(counts, a, b)
    assert counts == {"s:COMPLETE": 1, "p:API": 1, "d:2026-03-10T08:API": 1}
    assert apply_delta(counts, b, None) == {}
    # completion hours older than the retention are pruned; decrementing a pruned one is a no-op
    old = CountedState("COMPLETE", "API", "2026-03-01T00")
    counts = apply_delta(apply_delta({}, None, old), None, b)
    assert "d:2026-03-01T00:API" not in counts and counts["s:COMPLETE"] == 2
    assert apply_delta(counts, old, None) == {"s:COMPLETE": 1, "p:API": 1, "d:2026-03-10T08:API": 1}


def test_summarize_windows_the_last_24_hour_buckets():
    counts = {"s:COMPLETE": 3, "p:API": 2, "p:BIGQUERY": 1, "d:2026-03-10T08:API": 1, "d:2026-03-09T09:BIGQUERY": 1, "d:2026-03-09T08:API": 1}
    body = summarize(counts, T0)
    assert body["total"] == 3 and body["by_status"] == {"COMPLETE": 3}
    assert body["last_24h_by_source"] == {"API": 1, "BIGQUERY": 1}  # 2026-03-09T08 is the 25th hour back
    assert len(body["throughput"]) == 24 and body["throughput"][0] == {"hour": "2026-03-09T09:00:00Z", "count": 1}
    assert body["throughput"][-1] == {"hour": "2026-03-10T08:00:00Z", "count": 1}


# ------------------------------------------------------------------ the real flow
def _flow(c, accounts, rng, clock):
    """Every path of the account flow, with duplicate deliveries and concurrent claimers."""
    for i, acct in enumerate(accounts):
        clock.set(T0 - dt.timedelta(hours=rng.choice([0, 0, 1, 5, 23, 30, 50])), )
        pipeline.request_lineage(c, "public", acct)
        pipeline.request_lineage(c, "public", acct)  # duplicate search
        if i % 9 == 0:
            continue  # stays PENDING
        with ThreadPoolExecutor(4) as pool:  # four deliveries race for the claim
            won = [t for t in pool.map(lambda _: c.store.claim("public", acct, clock.now()), range(4)) if t]
        assert len(won) == 1
        token = won[0]
        path = i % 7
        if path == 0:
            continue  # stays PROCESSING
        if path == 1:
            pipeline.fail_account(c, "public", acct, "boom", claim_token=token)
            pipeline.fail_account(c, "public", acct, "boom", claim_token=token)  # retried delivery: loses
        elif path == 2:
            pipeline.fail_account(c, "public", acct, "no such account", invalid=True, claim_token=token)
        elif path == 3:
            pipeline.hand_to_api(c, "public", acct, "BIGQUERY_WITH_API_FALLBACK", claim_token=token)
            token = c.store.claim("public", acct, clock.now())
            assert token
            pipeline.complete_account(c, "public", acct, "BIGQUERY_WITH_API_FALLBACK", claim_token=token)
        elif path == 4:
            pipeline.release_for_retry(c, "public", acct, "transient", claim_token=token)
            token = c.store.claim("public", acct, clock.now())
            assert token
            pipeline.complete_account(c, "public", acct, "API", claim_token=token)
            pipeline.complete_account(c, "public", acct, "API", claim_token=token)  # duplicate: loses
        elif path == 5:
            pipeline.continue_later(c, "public", acct, "GABC", 3, claim_token=token)
        else:
            pipeline.complete_account(c, "public", acct, rng.choice(SOURCES), claim_token=token)
    # children known only from a crawl: lineage rows without a status are not counted
    for _ in range(5):
        c.store.put_lineage("public", random_account(), stellar_creator_account=accounts[0])


def test_counters_equal_the_ground_truth_after_a_realistic_flow(own_store):
    store = own_store
    clock = SettableClock(T0)
    c = container(store, clock, queue=RecordingQueue())
    rng = random.Random(7)
    accounts = [random_account() for _ in range(70)]
    _flow(c, accounts, rng, clock)
    # a refresh cycle: COMPLETE -> RE_INQUIRY (stale) -> PROCESSING -> COMPLETE an hour later
    done = [a for a in accounts if store.get_lineage("public", a).status == "COMPLETE"][:5]
    clock.set(T0 + dt.timedelta(hours=13))
    for a in done:
        pipeline.request_lineage(c, "public", a)
        assert store.get_lineage("public", a).status == "RE_INQUIRY"
    for a in done[:3]:
        token = store.claim("public", a, clock.now())
        pipeline.complete_account(c, "public", a, "API", claim_token=token)
    now = T0 + dt.timedelta(hours=13, minutes=5)
    got, want = stats(store, now), truth(store, now)
    assert got == want
    assert got["total"] == 70 and sum(got["by_status"].values()) == 70
    assert got["by_status"]["RE_INQUIRY"] == 2 and got["by_status"]["PENDING"] >= 8
    assert sum(got["last_24h_by_source"].values()) > 0


def test_concurrent_transitions_of_many_accounts_stay_exact(own_store):
    store = own_store
    clock = SettableClock(T0)
    c = container(store, clock, queue=RecordingQueue())
    accounts = [random_account() for _ in range(40)]
    for a in accounts:
        pipeline.request_lineage(c, "public", a)

    def work(acct):
        for _ in range(3):  # claim, hand back, claim again ... then finish
            token = store.claim("public", acct, clock.now())
            if token:
                pipeline.release_for_retry(c, "public", acct, "again", claim_token=token)
        token = store.claim("public", acct, clock.now())
        if token:
            pipeline.complete_account(c, "public", acct, "API", claim_token=token)

    with ThreadPoolExecutor(12) as pool:
        list(pool.map(work, accounts * 2))  # every account worked by two workers at once
    assert stats(store, T0) == truth(store, T0)


def test_a_writer_dying_before_its_sync_is_repaired_by_the_reconciler(own_store):
    store = own_store
    clock = SettableClock(T0)
    accounts = [random_account() for _ in range(12)]
    c = container(store, clock, queue=RecordingQueue())
    for a in accounts:
        pipeline.request_lineage(c, "public", a)
    # The process "dies" between its lineage write and the counter write: every sync fails.
    dying = recording(store, fail={"_apply_pipeline_state": ConnectionError("killed")})
    try:
        cd = container(dying, clock, queue=RecordingQueue())
        for a in accounts[:8]:
            token = dying.claim("public", a, clock.now())
            assert token
            pipeline.complete_account(cd, "public", a, "BIGQUERY", claim_token=token)
    finally:
        dying.close()
    now = T0 + dt.timedelta(minutes=10)
    assert stats(store, now) != truth(store, now)  # the counters lag: the crash window is real
    report = counters.reconcile(store, now)
    assert report["synced"] >= 8 and report["unconverged"] == 0
    assert stats(store, now) == truth(store, now)
    again = counters.reconcile(store, now + dt.timedelta(hours=1))  # idempotent
    assert again["through"] == {"public": "2026-03-10T08", "testnet": "2026-03-10T08"}
    assert stats(store, now) == truth(store, now)


def test_sync_is_idempotent_and_networks_are_separate(own_store):
    store = own_store
    a = random_account()
    store.put_lineage("testnet", a, status="COMPLETE", pipeline_source="API", last_pipeline_attempt=T0, updated_at=T0)
    for _ in range(3):
        assert store.sync_pipeline_state("testnet", a)
    assert store.get_pipeline_counts("testnet") == {"s:COMPLETE": 1, "p:API": 1, "d:2026-03-10T08:API": 1}
    assert store.get_pipeline_counts("public") == {}
    assert counters.pipeline_stats(store, T0, ["public"])["total"] == 0
    assert counters.pipeline_stats(store, T0)["total"] == 1


def test_reconciling_one_network_keeps_the_other_watermark(own_store):
    store = own_store
    assert counters.reconcile(store, T0)["through"] == {"public": "2026-03-10T07", "testnet": "2026-03-10T07"}
    later = counters.reconcile(store, T0 + dt.timedelta(hours=3), ["public"])
    assert later["through"] == {"public": "2026-03-10T10", "testnet": "2026-03-10T07"}
    run = store.get_cron_runs(counters.RECONCILE_JOB, 1)[0]
    assert run.status == "SUCCESS" and run.details["through"]["testnet"] == "2026-03-10T07"
