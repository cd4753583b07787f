"""The shared account flow (common/pipeline.py) on the embedded store with a recording queue."""
import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import pytest

from common.bootstrap import Container
from common.clock import SettableClock
from common.config import Settings
from common import pipeline
from common.store import migrations
from common.store.sqlite import SQLiteStore
from local.testing.fakes import RecordingQueue
from tests.support import random_account

pytestmark = pytest.mark.unit


@pytest.fixture
def c(tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
    migrations.migrate(store)
    container = Container(Settings.from_env(env={}), SettableClock(), store=store, queue=RecordingQueue())
    yield container
    store.close()


def test_request_lineage_enqueues_once_under_concurrency(c):
    acct = random_account()
    with ThreadPoolExecutor(16) as pool:
        created = list(pool.map(lambda _: pipeline.request_lineage(c, "public", acct), range(100)))
    assert sum(created) == 1
    assert [t["payload"]["account"] for t in c.queue.tasks] == [acct]
    assert c.store.get_lineage("public", acct).status == "PENDING"


def test_processing_and_fresh_complete_are_not_requeued(c):
    acct = random_account()
    pipeline.request_lineage(c, "public", acct)
    token = c.store.claim("public", acct, c.clock.now())
    assert token
    assert not pipeline.request_lineage(c, "public", acct)
    assert pipeline.complete_account(c, "public", acct, "API", claim_token=token)
    assert not pipeline.request_lineage(c, "public", acct)
    assert len(c.queue.tasks) == 1


def test_stale_complete_becomes_re_inquiry(c):
    acct = random_account()
    pipeline.request_lineage(c, "public", acct)
    token = c.store.claim("public", acct, c.clock.now())
    pipeline.complete_account(c, "public", acct, "API", claim_token=token)
    c.clock.advance(13 * 3600)
    assert pipeline.request_lineage(c, "public", acct)
    assert c.store.get_lineage("public", acct).status == "RE_INQUIRY"
    assert c.store.claim("public", acct, c.clock.now())


def test_child_without_status_can_be_requested(c):
    child, parent = random_account(), random_account()
    c.store.put_lineage("public", child, stellar_creator_account=parent)
    assert pipeline.request_lineage(c, "public", child)
    rec = c.store.get_lineage("public", child)
    assert rec.status == "PENDING" and rec.stellar_creator_account == parent


def test_hand_to_api_then_complete_mirrors_search_cache(c):
    acct = random_account()
    c.store.transition_search("public", acct, None, "PENDING")
    pipeline.request_lineage(c, "public", acct)
    token = c.store.claim("public", acct, c.clock.now())
    assert pipeline.hand_to_api(c, "public", acct, "BIGQUERY_WITH_API_FALLBACK", reason="guard refused", claim_token=token)
    assert not pipeline.hand_to_api(c, "public", acct, "BIGQUERY_WITH_API_FALLBACK", claim_token=token), "only a PROCESSING row is handed over"
    api_tasks = [t for t in c.queue.tasks if t["queue"] == "api-fallback"]
    assert len(api_tasks) == 1
    rec = c.store.get_lineage("public", acct)
    assert rec.status == "PENDING" and rec.pipeline_source == "BIGQUERY_WITH_API_FALLBACK"
    token = c.store.claim("public", acct, c.clock.now())
    assert pipeline.complete_account(c, "public", acct, "BIGQUERY_WITH_API_FALLBACK", claim_token=token)
    assert c.store.get_search("public", acct).status == "COMPLETE"
    assert c.store.get_search("public", acct).last_fetched_at == c.clock.now()


def test_release_for_retry_until_failed(c):
    acct = random_account()
    c.store.set_config("max_retries", 3, c.clock.now())
    pipeline.request_lineage(c, "public", acct)
    outcomes = []
    for _ in range(3):
        token = c.store.claim("public", acct, c.clock.now())
        assert token
        outcomes.append(pipeline.release_for_retry(c, "public", acct, "HTTP 503", claim_token=token))
    assert outcomes[:2] == [True, True] and outcomes[2] is False
    rec = c.store.get_lineage("public", acct)
    assert rec.status == "FAILED" and "HTTP 503" in rec.last_error


def test_continue_later_checkpoints_and_enqueues_continuation(c):
    acct = random_account()
    pipeline.request_lineage(c, "public", acct)
    token = c.store.claim("public", acct, c.clock.now())
    assert pipeline.continue_later(c, "public", acct, "12345", pages_done=3, claim_token=token)
    rec = c.store.get_lineage("public", acct)
    assert rec.status == "PENDING" and rec.children_cursor == "12345"
    cont = c.queue.tasks[-1]
    assert cont["queue"] == "api-fallback" and cont["payload"]["purpose"] == "children" and cont["payload"]["cursor"] == "12345"


def test_fail_invalid(c):
    acct = random_account()
    c.store.transition_search("public", acct, None, "PENDING")
    pipeline.request_lineage(c, "public", acct)
    token = c.store.claim("public", acct, c.clock.now())
    assert pipeline.fail_account(c, "public", acct, "404 from Horizon", invalid=True, claim_token=token)
    assert c.store.get_lineage("public", acct).status == "INVALID"
    assert c.store.get_search("public", acct).status == "INVALID"
    assert not pipeline.request_lineage(c, "public", acct), "terminal statuses are never touched"


def test_stage_records_success_and_failure(c):
    acct = random_account()
    with pipeline.stage(c, "public", acct, "horizon_data", "API"):
        c.clock.advance(1)
    with pytest.raises(RuntimeError):
        with pipeline.stage(c, "public", acct, "flags", "API"):
            raise RuntimeError("boom")
    stages = {s.stage: s for s in c.store.get_stage_executions("public", acct)}
    assert stages["horizon_data"].status == "SUCCESS"
    assert stages["flags"].status == "FAILED" and "boom" in stages["flags"].error_message
