"""Fenced claims (issue 14): every write after a claim is a compare-and-set on (PROCESSING, claim_token).

The stale-worker scenario on SQLite and the real Cassandra (the `store` fixture): worker A claims and
checkpoints, pauses past stale_processing_minutes, reset_stale's release gives the row back, worker B
claims it (and maybe finishes it). Whatever A writes then changes nothing: no status, count, cursor or
creator of B's, no task enqueued, no search-cache row touched.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import pytest

from common import pipeline
from common.bootstrap import Container
from common.clock import SettableClock
from common.config import Settings
from common.domain import ChildEdge, InvalidInput
from local.testing.fakes import RecordingQueue
from tests.support import random_account

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
A_CURSOR = "horizon:v1:4000:1:1"
B_CURSOR = "horizon:v1:9000:2:1"


@pytest.fixture
def c(store):
    return Container(Settings.from_env(env={}), SettableClock(T0), store=store, queue=RecordingQueue())


def stale_worker(c, account: str) -> str:
    """Worker A claims the searched account and checkpoints one page; then A stalls for 31 minutes and
    reset_stale releases its claim (the release is fenced by the token it judged stale). A's token."""
    c.store.transition_search("public", account, None, "PENDING", created_at=c.clock.now(), updated_at=c.clock.now())
    assert pipeline.request_lineage(c, "public", account)
    a = c.store.claim("public", account, c.clock.now())
    assert a
    pipeline.checkpoint(c, "public", account, a, children_cursor=A_CURSOR, num_child_accounts=40, updated_at=c.clock.now())
    c.clock.advance(31 * 60)
    assert pipeline.release_for_retry(c, "public", account, "stuck in PROCESSING; reset by reset_stale", claim_token=a)
    return a


def worker_b(c, account: str, finish: bool) -> str:
    """Worker B claims the released row, checkpoints, and (finish=True) completes it with 250 children."""
    b = c.store.claim("public", account, c.clock.now())
    assert b
    creator = random_account()
    pipeline.checkpoint(c, "public", account, b, stellar_creator_account=creator, account_creation_date=T0,
                        children_cursor=B_CURSOR, num_child_accounts=200, updated_at=c.clock.now())
    if finish:
        c.store.add_children("public", account, [ChildEdge("public", account, random_account(), T0, str(i)) for i in range(250)])
        assert pipeline.complete_account(c, "public", account, "API", claim_token=b, num_child_accounts=250, children_cursor=None)
    return b


# What worker A may still try after losing its claim: each returns True when it changed the row.
def _checkpoint(c, acct, a):
    try:
        pipeline.checkpoint(c, "public", acct, a, children_cursor=A_CURSOR, num_child_accounts=40, updated_at=c.clock.now())
    except pipeline.ClaimLost:
        return False
    return True


STALE_WRITES = {
    "checkpoint": _checkpoint,
    "creator": lambda c, acct, a: c.store.update_claimed("public", acct, a, stellar_creator_account=random_account(),
                                                         account_creation_date=T0 - dt.timedelta(days=9)),
    "hand_to_api": lambda c, acct, a: pipeline.hand_to_api(c, "public", acct, "BIGQUERY_WITH_API_FALLBACK", reason="guard",
                                                           claim_token=a, children_cursor=None),
    "continue_later": lambda c, acct, a: pipeline.continue_later(c, "public", acct, A_CURSOR, 1, claim_token=a),
    "complete": lambda c, acct, a: pipeline.complete_account(c, "public", acct, "API", claim_token=a, num_child_accounts=40,
                                                             children_cursor=A_CURSOR),
    "fail": lambda c, acct, a: pipeline.fail_account(c, "public", acct, "boom", claim_token=a),
    "invalid": lambda c, acct, a: pipeline.fail_account(c, "public", acct, "404", invalid=True, claim_token=a),
    "release": lambda c, acct, a: pipeline.release_for_retry(c, "public", acct, "HTTP 503", claim_token=a),
    "release_429": lambda c, acct, a: pipeline.release_for_retry(c, "public", acct, "429", count_attempt=False, claim_token=a),
}


def _state(c, account):
    rec = c.store.get_lineage("public", account)
    search = c.store.get_search("public", account)
    return dataclasses.asdict(rec), dataclasses.asdict(search), c.store.get_children_page("public", account, limit=1000).items


@pytest.mark.parametrize("b_finished", [False, True], ids=["b-holds-the-claim", "b-completed"])
@pytest.mark.parametrize("write", sorted(STALE_WRITES))
def test_a_stale_worker_changes_nothing_after_losing_its_claim(c, write, b_finished):
    account = random_account()
    a = stale_worker(c, account)
    b = worker_b(c, account, b_finished)
    c.clock.advance(60)
    before, tasks = _state(c, account), len(c.queue.tasks)
    assert STALE_WRITES[write](c, account, a) is False, f"A's {write} after losing its claim must lose"
    assert _state(c, account) == before, "nothing of B's row, search entry or children changed"
    assert len(c.queue.tasks) == tasks, "and no task enqueued"
    rec = c.store.get_lineage("public", account)
    assert rec.claim_token == b and rec.status == ("COMPLETE" if b_finished else "PROCESSING")
    if b_finished:
        assert rec.num_child_accounts == 250 and rec.children_cursor is None
        assert len(c.store.get_children_page("public", account, limit=1000).items) == 250


def test_the_reported_overwrite_is_refused(c):
    """Issue 14's reproduction: A's completion after B's claim used to win, and B's checkpoint then
    turned the COMPLETE row's 250 children into 40 with a cursor left on it."""
    account = random_account()
    a = stale_worker(c, account)
    b = c.store.claim("public", account, c.clock.now())
    assert not pipeline.complete_account(c, "public", account, "API", claim_token=a, num_child_accounts=250, children_cursor=None)
    assert c.store.get_lineage("public", account).status == "PROCESSING", "A's completion did not land"
    pipeline.checkpoint(c, "public", account, b, children_cursor=B_CURSOR, num_child_accounts=40)
    assert pipeline.complete_account(c, "public", account, "API", claim_token=b, num_child_accounts=250, children_cursor=None)
    with pytest.raises(pipeline.ClaimLost):  # a retried delivery of B's own last checkpoint, after B completed
        pipeline.checkpoint(c, "public", account, b, children_cursor=B_CURSOR, num_child_accounts=40)
    rec = c.store.get_lineage("public", account)
    assert (rec.status, rec.num_child_accounts, rec.children_cursor) == ("COMPLETE", 250, None)


def test_the_holder_s_writes_go_through(c):
    account = random_account()
    a = stale_worker(c, account)
    b = worker_b(c, account, finish=False)
    assert c.store.update_claimed("public", account, b, num_child_accounts=201)
    assert pipeline.hand_to_api(c, "public", account, "BIGQUERY_WITH_API_FALLBACK", claim_token=b, children_cursor=None)
    rec = c.store.get_lineage("public", account)
    assert rec.status == "PENDING" and rec.children_cursor is None and rec.num_child_accounts == 201
    assert c.queue.tasks[-1]["payload"]["generation"] == b, "the hand-over task is named by the holder's claim"
    assert a != b


def test_reset_stale_never_releases_a_newer_claim(c):
    """reset_stale judged A's claim stale; before its release lands, A hands over and B claims."""
    account = random_account()
    pipeline.request_lineage(c, "public", account)
    a = c.store.claim("public", account, c.clock.now())
    judged = c.store.get_lineage("public", account)
    assert pipeline.hand_to_api(c, "public", account, "API", claim_token=a)
    b = c.store.claim("public", account, c.clock.now())
    assert not pipeline.release_for_retry(c, "public", account, "stuck", claim_token=judged.claim_token)
    rec = c.store.get_lineage("public", account)
    assert rec.status == "PROCESSING" and rec.claim_token == b and rec.retry_count == judged.retry_count
    c.store.put_lineage("public", account, retry_count=4)  # max_retries is 5: the release would make it FAILED
    assert not pipeline.release_for_retry(c, "public", account, "stuck", claim_token=judged.claim_token)
    assert c.store.get_lineage("public", account).status == "PROCESSING", "nor fails it"


def test_racing_stale_workers_never_beat_the_holder(c):
    account = random_account()
    pipeline.request_lineage(c, "public", account)
    stale = []
    for _ in range(6):  # six claims, each released again (by reset_stale or a retry)
        token = c.store.claim("public", account, c.clock.now())
        assert pipeline.release_for_retry(c, "public", account, "again", count_attempt=False, claim_token=token)
        stale.append(token)
    holder = c.store.claim("public", account, c.clock.now())

    def finish(token):
        return token, pipeline.complete_account(c, "public", account, "API", claim_token=token, num_child_accounts=len(token))

    with ThreadPoolExecutor(7) as pool:
        results = dict(pool.map(finish, stale + [holder]))
    assert [t for t, won in results.items() if won] == [holder]
    assert c.store.get_lineage("public", account).status == "COMPLETE"


def test_update_claimed_refuses_bad_input_and_writes_nothing(c):
    account = random_account()
    pipeline.request_lineage(c, "public", account)
    token = c.store.claim("public", account, c.clock.now())
    before = c.store.get_lineage("public", account)
    for kwargs, code in [({"claim_token": ""}, "invalid_claim"), ({"claim_token": None}, "invalid_claim")]:
        with pytest.raises(InvalidInput) as err:
            c.store.update_claimed("public", account, kwargs["claim_token"], num_child_accounts=1)
        assert err.value.code == code
    for fields in ({"status": "COMPLETE"}, {"claim_token": "mine"}, {}, {"no_such_column": 1}):
        with pytest.raises(InvalidInput):
            c.store.update_claimed("public", account, token, **fields)
    with pytest.raises(InvalidInput):
        c.store.update_claimed("public", account, token, stellar_creator_account="not-an-account")
    assert c.store.get_lineage("public", account) == before
