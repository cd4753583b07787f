"""process_account on a real embedded Hubble (DuckDB over a hand-made export) and the SQLite store.

Every way the Hubble path can stop is here, each ending on the API path with the right
pipeline_source and nothing lost; test doubles subclass the ports (Hubble, Store, TaskQueue).
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import flask
import pytest

from common import pipeline
from common.bootstrap import Container
from common.clock import SettableClock
from common.config import PipelineConfig, Settings
from common.domain import GENESIS_ACCOUNT
from common.handlers import reset_stale
from common.handlers.process_account import handle, process
from common.hubble.duckdb_engine import DuckDBHubble
from common.hubble.port import Hubble, HubbleUnavailable
from common.hubble.sql import NETWORK_START as STARTS, ChildCursor

NETWORK_START = STARTS["public"]
from common.store import migrations
from common.store.sqlite import SQLiteStore
from local.hubble_load import load_duckdb, write_export
from local.testing.fakes import RecordingQueue, StealsClaims
from tests.support import random_account

pytestmark = pytest.mark.unit

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 1, 1, tzinfo=UTC)
STALE = dt.datetime(2025, 6, 1, tzinfo=UTC)


def t(y, m, d, s=0):
    return dt.datetime(y, m, d, 12, 0, s, tzinfo=UTC)


def ledger(when: dt.datetime) -> int:
    return int((when - NETWORK_START).total_seconds()) // 5 + 1


class World:
    """A tiny network with every case the Hubble path must get right."""

    def __init__(self):
        self.A, self.B, self.C, self.M, self.X, self.OLD, self.U, self.Y = (random_account() for _ in range(8))
        self.kids = [random_account() for _ in range(25)]
        G = GENESIS_ACCOUNT
        ops = []
        op = iter(range(1, 4000))
        self.created: dict[str, dt.datetime] = {}  # the last creation of each account

        def toid(when):  # operation ids are TOIDs: ledger << 32 | tx << 12 | op (a ledger every 5 s)
            return ledger(when) << 32 | next(op) << 12 | 1

        def create(funder, account, when, ok=True, balance=10.0):
            ops.append({"op_id": toid(when), "type": 0, "successful": ok, "account": account, "funder": funder,
                        "starting_balance": balance, "closed_at": when, "ledger_sequence": ledger(when)})
            if ok:
                self.created[account] = when

        create(G, self.A, t(2016, 1, 1))
        create(G, self.OLD, t(2016, 2, 1))
        create(self.C, self.B, t(2017, 1, 15), ok=False)  # a failed attempt: never counts
        create(self.A, self.B, t(2017, 2, 1))
        create(self.A, self.C, t(2017, 3, 1))
        create(self.A, self.M, t(2018, 1, 1), balance=1.2345678)
        ops.append({"op_id": toid(t(2018, 6, 1)), "type": 8, "successful": True, "account": self.M, "funder": None, "into": self.A,
                    "starting_balance": None, "closed_at": t(2018, 6, 1), "ledger_sequence": ledger(t(2018, 6, 1))})  # account_merge of M
        self.GONE, self.BUMPED = random_account(), random_account()
        create(self.A, self.BUMPED, t(2017, 4, 1))
        create(self.A, self.GONE, t(2018, 2, 1))
        ops.append({"op_id": toid(t(2018, 3, 1)), "type": 8, "successful": True, "account": self.GONE, "funder": None, "into": self.C,
                    "starting_balance": None, "closed_at": t(2018, 3, 1), "ledger_sequence": ledger(t(2018, 3, 1))})
        create(self.B, self.X, t(2018, 5, 5))
        create(self.B, self.M, t(2019, 6, 1), balance=2.0)  # M re-created by B
        create(self.A, self.Y, t(2019, 7, 1))
        create(self.Y, "G" + "A" * 55, t(2019, 8, 1))  # Hubble data with a bad checksum
        for i, kid in enumerate(self.kids):
            # pairs of children share a close time: the order within it is the operation id
            create(self.X, kid, t(2020, 1 + i // 4, 1, s=i // 2))
            if i % 8 == 0:
                create(self.X, random_account(), t(2020, 1 + i // 4, 2), ok=False)
        ops.append({"op_id": toid(t(2021, 1, 1)), "type": 1, "successful": True, "account": None, "funder": None,
                    "starting_balance": None, "closed_at": t(2021, 1, 1), "ledger_sequence": ledger(t(2021, 1, 1))})  # a payment
        self.operations = ops

        first = {}
        for o in ops:
            if o["type"] == 0 and o["successful"]:
                first.setdefault(o["account"], o["closed_at"])

        def state(account, balance, flags=0, domain="", at=NOW):
            made = self.created.get(account, NETWORK_START)
            return {"account_id": account, "balance": balance, "flags": flags, "home_domain": domain, "master_weight": 1,
                    "threshold_low": 0, "threshold_medium": 0, "threshold_high": 0, "deleted": False, "batch_insert_ts": at,
                    "sequence_number": ledger(made) << 32 | 7, "last_modified_ledger": ledger(made) + 100,
                    "closed_at": made + dt.timedelta(seconds=500),
                    "account_creation_date": first.get(account, made).replace(hour=0, minute=0, second=0)}

        self.accounts = [
            state(self.A, 5000.0), state(self.B, 12.5, flags=3, domain="b.example"), state(self.C, 1.0),
            state(self.M, 3.0, at=STALE), state(self.X, 777.0, domain="x.example"), state(self.OLD, 1.0), state(self.Y, 1.0),
            {**state(G, 100.0), "home_domain": None},
            {**state(self.GONE, 0.0), "deleted": True, "last_modified_ledger": ledger(t(2018, 3, 1)), "closed_at": t(2018, 3, 1)},
            # bump_sequence to a ledger of 2020: seq >> 32 is only an upper bound of its creation; no first-batch date known
            {**state(self.BUMPED, 2.0), "sequence_number": ledger(t(2020, 6, 1)) << 32, "account_creation_date": None},
        ] + [state(k, 10.0) for k in self.kids]

    def children_of(self, creator):
        return [o["account"] for o in self.operations if o["type"] == 0 and o["successful"] and o["funder"] == creator]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = World()
    root = tmp_path_factory.mktemp("hubble")
    write_export(root / "export", "enriched_history_operations", w.operations)
    write_export(root / "export", "accounts_current", w.accounts)
    load_duckdb(root / "hubble.duckdb", root / "export", "public")
    w.db = root / "hubble.duckdb"
    return w


class CountingHubble(Hubble):
    """Delegates to the real engine; counts calls and can fail the n-th run (unreachable mid-way)."""

    engine = "counting"

    def __init__(self, inner: Hubble, fail_run_at: int | None = None):
        self.inner = inner
        self.fail_run_at = fail_run_at
        self.runs: list[str] = []
        self.queries: list = []
        self.dry_runs = 0

    def tables(self, network):
        return self.inner.tables(network)

    def dry_run(self, query):
        self.dry_runs += 1
        return self.inner.dry_run(query)

    def run(self, query, max_bytes_billed=None, job_id=None):
        self.runs.append(query.purpose)
        self.queries.append(query)
        if self.fail_run_at is not None and len(self.runs) == self.fail_run_at:
            raise HubbleUnavailable("connection reset by peer")
        return self.inner.run(query, max_bytes_billed, job_id)


class FlakyStore(SQLiteStore):
    """The SQLite adapter whose n-th add_children fails (a crash in the middle of a crawl)."""

    fail_add_children_at: int | None = None
    calls = 0

    def _add_children(self, network, creator, children):
        self.calls += 1
        if self.fail_add_children_at is not None and self.calls == self.fail_add_children_at:
            raise OSError("disk I/O error")
        return super()._add_children(network, creator, children)


class BrokenQueue(RecordingQueue):
    def enqueue(self, queue, payload, *, purpose, generation=0, delay_s=0.0):
        if queue == "api-fallback":
            raise ConnectionError("queue unavailable")
        return super().enqueue(queue, payload, purpose=purpose, generation=generation, delay_s=delay_s)


@pytest.fixture
def make(world, tmp_path):
    made = []

    def build(config=None, hubble="real", store_cls=SQLiteStore, queue=None, settings=None):
        store = store_cls(tmp_path / f"store{len(made)}.sqlite3")
        migrations.migrate(store)
        engine = DuckDBHubble(world.db) if hubble == "real" else hubble
        counting = CountingHubble(engine) if isinstance(engine, DuckDBHubble) else engine
        overrides = {"store": store, "queue": queue or RecordingQueue(), "pipeline_config": PipelineConfig.from_stored(config or {})}
        if counting is not None:
            overrides["hubble"] = counting
        c = Container(settings or Settings.from_env(env={}), SettableClock(NOW), **overrides)
        made.append(store)
        return c

    yield build
    for store in made:
        store.close()


def run(c, account, network="public"):
    pipeline.request_lineage(c, network, account)
    return process(c, network, account)


def api_tasks(c, purpose=None):
    return [task for task in c.queue.tasks if task["queue"] == "api-fallback" and (purpose is None or task["payload"]["purpose"] == purpose)]


def lineage_tasks(c):
    return [task["payload"]["account"] for task in c.queue.tasks if task["queue"] == "lineage"]


def children(c, account):
    return [e.child for e in c.store.iter_children("public", account)]


# ---------------------------------------------------------------------------------- the Hubble path
def test_a_new_account_takes_three_small_queries_and_is_complete(world, make):
    c = make()
    out = run(c, world.X)
    assert out.status == "COMPLETE" and out.pipeline_source == "BIGQUERY"
    assert c.hubble.runs == ["state", "lineage", "children"] and out.queries == 3 and out.dry_runs == 3
    rec = c.store.get_lineage("public", world.X)
    assert rec.status == "COMPLETE" and rec.pipeline_source == "BIGQUERY"
    assert rec.stellar_creator_account == world.B and rec.account_creation_date == t(2018, 5, 5)
    assert rec.num_child_accounts == 25 and rec.children_complete is True and rec.children_cursor is None
    assert sorted(children(c, world.X)) == sorted(world.kids)
    kid = c.store.get_lineage("public", world.kids[7])
    assert kid.stellar_creator_account == world.X and kid.status is None, "a child is known, never searched"
    # accounts_current is fresh: the enrichment comes from it, and the balance index follows
    assert rec.xlm_balance == Decimal("777.0000000") and rec.home_domain == "x.example"
    assert rec.flags == {"auth_required": False, "auth_revocable": False, "auth_immutable": False, "auth_clawback_enabled": False}
    assert c.store.balances_at_least("public", Decimal("700")) == [(world.X, Decimal("777.0000000"))]
    assert not [task for task in api_tasks(c, "enrich") if task["payload"]["account"] == world.X]
    # expansion: the unknown creator is requested, children's enrichment is queued under the cap
    assert lineage_tasks(c) == [world.X, world.B]
    assert len(api_tasks(c, "enrich")) == 25
    stages = {s.stage: s.status for s in c.store.get_stage_executions("public", world.X)}
    assert stages == {"hubble_lineage": "SUCCESS", "expansion": "SUCCESS"}
    month = c.store.get_spend_ledger("2026-01", 10)
    assert sorted(e["purpose"] for e in month) == ["children", "lineage", "state"]
    assert c.store.month_spend_micro_usd("2026-01") == sum(e["cost_micro_usd"] for e in month) > 0


def test_failed_create_accounts_are_ignored(world, make):
    c = make()
    run(c, world.B)
    assert [e.creator for e in c.store.get_creation_events("public", world.B)] == [world.A], "C's failed attempt is not a creation"
    run(c, world.X)
    assert len(children(c, world.X)) == 25, "X's failed creates made no children"


def test_a_merged_then_recreated_account_keeps_both_creation_events(world, make):
    c = make()
    run(c, world.M)
    events = c.store.get_creation_events("public", world.M)
    assert [(e.creator, e.created_at) for e in events] == [(world.A, t(2018, 1, 1)), (world.B, t(2019, 6, 1))]
    assert [e.starting_balance for e in events] == [Decimal("1.2345678"), Decimal("2.0000000")]
    assert [e.ledger for e in events] == [ledger(t(2018, 1, 1)), ledger(t(2019, 6, 1))]
    rec = c.store.get_lineage("public", world.M)
    assert rec.stellar_creator_account == world.A and rec.account_creation_date == t(2018, 1, 1)
    assert rec.creation_ledger == ledger(t(2019, 6, 1)) and rec.deleted is False and rec.merged_at is None
    merges = c.store.get_merge_events("public", world.M)
    assert [(m.merged_at, m.merged_into, m.ledger) for m in merges] == [(t(2018, 6, 1), world.A, ledger(t(2018, 6, 1)))]
    # B's crawl finds M again (the re-creation): M keeps the creator of its first creation
    run(c, world.B)
    assert world.M in children(c, world.B)
    assert c.store.get_lineage("public", world.M).stellar_creator_account == world.A


def test_a_merged_account_that_is_gone_is_complete_with_its_merge(world, make):
    c = make()
    out = run(c, world.GONE)
    assert out.status == "COMPLETE"
    rec = c.store.get_lineage("public", world.GONE)
    assert rec.status == "COMPLETE" and rec.stellar_creator_account == world.A and rec.deleted is True
    assert (rec.merged_at, rec.merged_into, rec.xlm_balance) == (t(2018, 3, 1), world.C, None)
    assert rec.creation_ledger == ledger(t(2018, 2, 1))
    assert c.hubble.runs == ["state", "lineage", "lineage", "children"], "the last merge: a one-second window"


def test_the_lineage_window_is_narrow_and_widens_only_when_it_finds_nothing(world, make):
    c = make()
    run(c, world.X)
    narrow = c.hubble.queries[1].param_values()
    assert narrow["ledger_hi"] == ledger(t(2018, 5, 5)) and narrow["hi"] - narrow["lo"] <= dt.timedelta(days=3)
    c2 = make()
    run(c2, world.BUMPED)  # its sequence was bumped: the narrow window around seq >> 32 is empty
    rec = c2.store.get_lineage("public", world.BUMPED)
    assert rec.status == "COMPLETE" and rec.stellar_creator_account == world.A
    assert rec.creation_ledger == ledger(t(2017, 4, 1)), "the creating operation's ledger wins"
    windows = [q.param_values() for q in c2.hubble.queries if q.purpose == "lineage"]
    # narrow, then the window seq >> 32 surely closed in, then everything before it: each wider
    assert len(windows) == 3 and windows[-1]["lo"] < t(2017, 4, 1) < windows[-1]["hi"]
    assert all(w["ledger_hi"] == ledger(t(2020, 6, 1)) for w in windows)
    spans = [w["hi"] - w["lo"] for w in windows]
    assert spans == sorted(spans) and spans[0] <= dt.timedelta(days=30)  # the nearest known point is 3 years away


def test_a_later_crawl_corrects_a_child_first_seen_through_its_recreation(world, make):
    c = make()
    run(c, world.B)  # sees M's re-creation (2019) first
    assert c.store.get_lineage("public", world.M).stellar_creator_account == world.B
    run(c, world.A)  # then A's crawl sees the first creation (2018)
    rec = c.store.get_lineage("public", world.M)
    assert rec.stellar_creator_account == world.A and rec.account_creation_date == t(2018, 1, 1)


def test_children_are_paged_each_exactly_once(world, make):
    c = make({"children_page_size_bq": 4})
    out = run(c, world.X)
    assert out.status == "COMPLETE" and c.hubble.runs == ["state", "lineage"] + ["children"] * 7
    got = children(c, world.X)
    assert len(got) == len(set(got)) == 25 and set(got) == set(world.kids)


def test_the_children_cap_stops_paging(world, make):
    c = make({"children_page_size_bq": 4, "children_max": 10})
    out = run(c, world.X)
    assert out.status == "COMPLETE" and c.hubble.runs == ["state", "lineage"] + ["children"] * 3 + ["children_count"]
    rec = c.store.get_lineage("public", world.X)
    assert rec.num_child_accounts == 25 and rec.children_complete is False
    assert set(children(c, world.X)) == set(world.kids[:10]), "the oldest children first"


def test_children_enrichment_is_capped(world, make):
    c = make({"children_enrichment_cap": 3})
    run(c, world.X)
    assert [task["payload"]["account"] for task in api_tasks(c, "enrich")] == world.kids[:3]


def test_genesis_is_never_queried_for_its_creator(world, make):
    c = make()
    out = run(c, GENESIS_ACCOUNT)
    assert out.status == "COMPLETE" and c.hubble.runs == ["children"]
    rec = c.store.get_lineage("public", GENESIS_ACCOUNT)
    assert rec.stellar_creator_account is None and sorted(children(c, GENESIS_ACCOUNT)) == sorted([world.A, world.OLD])
    assert lineage_tasks(c) == [GENESIS_ACCOUNT]


def test_a_known_creator_is_not_requested_again(world, make):
    c = make()
    run(c, world.B)
    assert lineage_tasks(c) == [world.B, world.A], "B's creator A was unknown"
    run(c, world.C)
    assert lineage_tasks(c).count(world.A) == 1, "already requested: the queue refuses the duplicate name"
    c2 = make()
    c2.store.put_lineage("public", world.B, stellar_creator_account=world.A)  # known from A's crawl
    run(c2, world.X)
    assert lineage_tasks(c2) == [world.X], "X's creator B is known: nothing to request"


def test_stale_accounts_current_sends_enrichment_to_the_api(world, make):
    c = make()
    run(c, world.M)  # its accounts_current row is seven months old
    rec = c.store.get_lineage("public", world.M)
    assert rec.xlm_balance is None and rec.enriched_at is None
    assert [task["payload"]["account"] for task in api_tasks(c, "enrich")] == [world.M]


def test_bigquery_only_takes_accounts_current_as_it_is_and_calls_no_api(world, make):
    c = make({"pipeline_mode": "BIGQUERY_ONLY"})
    out = run(c, world.M)
    assert out.status == "COMPLETE"
    assert c.store.get_lineage("public", world.M).xlm_balance == Decimal("3.0000000")
    assert api_tasks(c) == []


# ---------------------------------------------------------------------------------- falling back
def assert_fell_back(c, account, out, code, source="BIGQUERY_WITH_API_FALLBACK"):
    assert out.status == "HANDED_TO_API" and out.pipeline_source == source
    assert out.reason.startswith(code), out.reason
    rec = c.store.get_lineage("public", account)
    assert rec.status == "PENDING" and rec.pipeline_source == source and rec.children_cursor is None
    tasks = api_tasks(c, "lineage")
    assert [task["payload"]["account"] for task in tasks] == [account], "exactly one api-fallback task"


@pytest.mark.parametrize(
    "config, code",
    [
        ({"cost_limit_usd": "0"}, "guard_cost_limit"),
        ({"size_limit_bytes": 1000}, "guard_size_limit"),
        ({"monthly_budget_usd": "0.0001"}, "guard_budget_exhausted"),  # 100 micro-USD: the state read (60), not the lineage
    ],
)
def test_a_guard_refusal_falls_back_with_the_right_source(world, make, config, code):
    c = make(config)
    out = run(c, world.X)
    assert_fell_back(c, world.X, out, code)
    bought = ["state"] if code == "guard_budget_exhausted" else []
    assert c.hubble.runs == bought and c.store.month_spend_micro_usd("2026-01") == 60 * len(bought)
    stage = [s for s in c.store.get_stage_executions("public", world.X) if s.stage == "hubble_lineage"][0]
    assert stage.status == "SKIPPED" and "cost guard" in stage.error_message


def test_the_budget_running_out_between_pages_falls_back(world, make):
    # 10 MiB at $6.25/TiB is 60 micro-USD: enough for the state and lineage queries (10 MiB each)
    # and two 10 MiB pages (240 micro-USD), not for the third page
    c = make({"children_page_size_bq": 4, "monthly_budget_usd": "0.00025"})
    out = run(c, world.X)
    assert_fell_back(c, world.X, out, "guard_budget_exhausted")
    assert c.hubble.runs == ["state", "lineage", "children", "children"]
    assert len(c.store.get_creation_events("public", world.X)) == 1, "what was bought is kept"


def test_hubble_unreachable_falls_back_and_loses_nothing(world, make, tmp_path):
    c = make(hubble=DuckDBHubble(tmp_path / "missing.duckdb"))
    out = run(c, world.X)
    assert_fell_back(c, world.X, out, "hubble_unavailable", source="API")  # no Hubble query could be tried


def test_hubble_failing_mid_crawl_falls_back_and_clears_its_checkpoint(world, make):
    c = make({"children_page_size_bq": 4})
    c.hubble.fail_run_at = 5  # state, lineage, page 1, page 2, then the connection drops
    out = run(c, world.X)
    assert_fell_back(c, world.X, out, "hubble_unavailable")
    assert len(children(c, world.X)) == 8
    stage = [s for s in c.store.get_stage_executions("public", world.X) if s.stage == "hubble_lineage"][0]
    assert stage.status == "FAILED" and "connection reset" in stage.error_message


def test_an_account_not_in_hubble_falls_back(world, make):
    c = make()
    out = run(c, world.U)
    assert_fell_back(c, world.U, out, "not_in_hubble")
    assert c.hubble.runs == ["state"], "no accounts_current row: no scan of the history"


def test_bad_data_from_hubble_falls_back(world, make):
    c = make()
    out = run(c, world.Y)
    assert_fell_back(c, world.Y, out, "hubble_error")
    assert "invalid child" in out.reason
    assert children(c, world.Y) == [], "nothing of the bad page was stored"


def test_api_only_mode_hands_over_with_source_api(world, make):
    c = make({"pipeline_mode": "API_ONLY"})
    out = run(c, world.X)
    assert_fell_back(c, world.X, out, "pipeline_mode", source="API")
    assert c.hubble.runs == [] and c.hubble.dry_runs == 0


def test_mode_changes_take_effect_at_run_time(world, make):
    c = make({"pipeline_mode": "API_ONLY"})
    assert run(c, world.X).status == "HANDED_TO_API"
    c._overrides["pipeline_config"] = PipelineConfig.from_stored({"pipeline_mode": "BIGQUERY_WITH_API_FALLBACK"})
    assert run(c, world.B).status == "COMPLETE"


def test_no_hubble_engine_falls_back(world, make):
    c = make(hubble=None, settings=Settings.from_env(env={}, hubble_engine="none"))
    out = run(c, world.X)
    assert_fell_back(c, world.X, out, "hubble_disabled", source="API")  # the Hubble path was never possible


def test_a_network_without_hubble_data_falls_back(world, make):
    c = make()
    account = random_account()
    pipeline.request_lineage(c, "testnet", account)
    out = process(c, "testnet", account)
    assert out.status == "HANDED_TO_API" and out.reason.startswith("hubble_no_network") and out.pipeline_source == "API"


def test_the_age_filter_before_and_after_the_lineage_query(world, make):
    c = make({"api_age_filter_years": 9})
    out = run(c, world.OLD)  # created 2016-02: older than 9 years on 2026-01-01, known only after the query
    assert_fell_back(c, world.OLD, out, "age_filter")
    assert c.hubble.runs == ["state", "lineage"]
    c2 = make({"api_age_filter_years": 9})
    c2.store.put_lineage("public", world.OLD, stellar_creator_account=GENESIS_ACCOUNT, account_creation_date=t(2016, 2, 1))
    out = run(c2, world.OLD)  # known from its parent's crawl: no query at all
    assert out.status == "HANDED_TO_API" and c2.hubble.runs == [] and out.pipeline_source == "API"
    c3 = make({"api_age_filter_years": 9})
    assert run(c3, world.X).status == "COMPLETE", "younger accounts keep the Hubble path"


# ---------------------------------------------------------------------------------- stored lineage
def test_a_re_inquiry_never_queries_the_lineage_again(world, make):
    c = make()
    run(c, world.X)
    c.clock.advance(13 * 3600)
    assert pipeline.request_lineage(c, "public", world.X)
    assert c.store.get_lineage("public", world.X).status == "RE_INQUIRY"
    before = len(c.hubble.runs)
    out = process(c, "public", world.X)
    assert out.status == "COMPLETE" and len(c.hubble.runs) == before
    rec = c.store.get_lineage("public", world.X)
    assert rec.status == "COMPLETE" and rec.pipeline_source == "BIGQUERY" and rec.num_child_accounts == 25
    assert [task["payload"]["account"] for task in api_tasks(c, "enrich")].count(world.X) == 1


def test_a_re_inquiry_in_bigquery_only_reads_accounts_current(world, make):
    c = make({"pipeline_mode": "BIGQUERY_ONLY"})
    run(c, world.X)
    c.clock.advance(13 * 3600)
    pipeline.request_lineage(c, "public", world.X)
    out = process(c, "public", world.X)
    assert out.status == "COMPLETE" and c.hubble.runs[-1] == "state" and out.queries == 1
    assert api_tasks(c) == []


def test_a_crash_mid_crawl_resumes_from_the_checkpoint(world, make, tmp_path):
    c = make({"children_page_size_bq": 4}, store_cls=FlakyStore)
    c.store.fail_add_children_at = 3
    out = run(c, world.X)
    assert out.status == "RETRY"
    rec = c.store.get_lineage("public", world.X)
    assert rec.status == "PENDING" and rec.retry_count == 1 and ChildCursor.is_hubble(rec.children_cursor)
    assert rec.num_child_accounts == 8
    runs_before = list(c.hubble.runs)
    assert runs_before == ["state", "lineage", "children", "children", "children"]
    c.store.fail_add_children_at = None
    out = process(c, "public", world.X)  # the queue's retry
    assert out.status == "COMPLETE"
    assert c.hubble.runs[len(runs_before):] == ["children"] * 5, "no lineage query; pages 3..7 only"
    got = children(c, world.X)
    assert len(got) == len(set(got)) == 25
    rec = c.store.get_lineage("public", world.X)
    assert rec.num_child_accounts == 25 and rec.children_complete and rec.children_cursor is None


def test_a_lost_claim_does_nothing(world, make):
    c = make()
    pipeline.request_lineage(c, "public", world.X)
    assert c.store.claim("public", world.X, NOW)
    out = process(c, "public", world.X)
    assert out.status == "SKIPPED" and c.hubble.runs == []


def test_a_queue_failure_on_hand_over_retries_and_loses_nothing(world, make):
    c = make({"cost_limit_usd": "0"}, queue=BrokenQueue())
    out = run(c, world.X)
    assert out.status == "RETRY"
    assert c.store.get_lineage("public", world.X).status == "PENDING", "claimable again by the task's retry"


# ---------------------------------------------------------------------------------- a claim lost mid-task
class StealingStore(StealsClaims, SQLiteStore):
    pass


def steal(c, account, finish, seen):
    """While the worker is paused: reset_stale releases its claim 31 minutes on, and worker B claims the
    account (finish=True: B's whole run completes it). `seen` gets the state B leaves."""

    def run_meanwhile():
        c.clock.advance(31 * 60)
        assert reset_stale.run(c, ["public"], c.clock.now())["counts"] == {"reset_to_pending": 1}
        if finish:
            assert process(c, "public", account).status == "COMPLETE"
        else:
            assert c.store.claim("public", account, c.clock.now())
        seen.append(state_of(c, account))

    return run_meanwhile


def state_of(c, account):
    rec = c.store.get_lineage("public", account)
    return rec, children(c, account), api_tasks(c, "lineage")


@pytest.mark.parametrize("finish", [True, False], ids=["b-completes", "b-holds"])
@pytest.mark.parametrize("page", [1, 3, 7])
def test_a_worker_paused_mid_crawl_finds_its_claim_gone_and_writes_nothing(world, make, page, finish):
    c = make({"children_page_size_bq": 4}, store_cls=StealingStore)
    seen = []
    c.store.arm("_add_children", world.X, steal(c, world.X, finish, seen), at=page)
    out = run(c, world.X)  # page 7 is the last: A's next write is its completion
    assert out.status == "SKIPPED" and "claim lost" in out.reason, out
    assert c.store.stolen and state_of(c, world.X) == seen[0], "A's writes after the theft changed nothing"
    rec = c.store.get_lineage("public", world.X)
    if finish:
        assert rec.status == "COMPLETE" and rec.num_child_accounts == 25 and rec.children_cursor is None
        assert sorted(children(c, world.X)) == sorted(world.kids), "0 lost children"
    else:
        assert rec.status == "PROCESSING" and rec.num_child_accounts == (4 * (page - 1) or None)


def test_the_creator_found_after_the_claim_was_lost_is_not_written(world, make):
    c = make(store_cls=StealingStore)
    seen = []
    c.store.arm("_add_creation_event", world.X, steal(c, world.X, False, seen))
    out = run(c, world.X)
    assert out.status == "SKIPPED" and "claim lost" in out.reason
    assert state_of(c, world.X) == seen[0] and c.store.get_lineage("public", world.X).stellar_creator_account is None


def test_a_hand_over_after_the_claim_was_lost_is_refused(world, make):
    c = make({"cost_limit_usd": "0"}, store_cls=StealingStore)
    seen = []
    c.store.arm("_record_stage", world.X, steal(c, world.X, False, seen),
                when=lambda e: e.stage == "hubble_lineage" and e.status == "SKIPPED")  # the guard refused
    out = run(c, world.X)
    assert out.status == "SKIPPED" and "claim lost before the hand-over" in out.reason
    assert state_of(c, world.X) == seen[0] and api_tasks(c, "lineage") == [], "no API task for a claim we lost"


# ---------------------------------------------------------------------------------- HTTP
APP = flask.Flask("process_account_test")


def call(c, body=None, method="POST", headers=None, raw=None):
    kwargs = {"data": raw, "content_type": "application/json"} if raw is not None else {"json": body}
    with APP.test_request_context("/", method=method, headers=headers or {}, **kwargs):
        return handle(flask.request, c)


def test_http_happy_path(world, make):
    c = make()
    pipeline.request_lineage(c, "public", world.X)
    resp = call(c, {"network": "public", "account": world.X, "purpose": "lineage", "generation": 0})
    body = resp.get_json()
    assert resp.status_code == 200 and body["status"] == "COMPLETE" and body["queries"] == 3 and body["children"] == 25
    assert body["cost_usd"].startswith("0.000")
    resp = call(c, {"network": "public", "account": world.X, "purpose": "lineage", "generation": 0})
    assert resp.status_code == 200 and resp.get_json()["status"] == "SKIPPED"


@pytest.mark.parametrize(
    "body, raw, code",
    [
        ({"network": "public", "account": "GBAD"}, None, "invalid_account"),
        ({"network": "mars", "account": None}, None, "invalid_network"),
        ({"network": "public", "purpose": "enrich"}, None, "invalid_purpose"),
        ({"network": "public", "extra": 1}, None, "invalid_request"),
        ({"network": "public", "generation": [1]}, None, "invalid_generation"),
        (None, "{not json", "invalid_json"),
    ],
)
def test_http_bad_input_writes_nothing(world, make, body, raw, code):
    c = make()
    if body is not None and "account" not in body:
        body = dict(body, account=world.X)
    resp = call(c, body, raw=raw)
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == code
    assert c.store.get_lineage("public", world.X) is None and c.queue.tasks == [] and c.hubble.dry_runs == 0


def test_http_auth_and_method(world, make):
    c = make(settings=Settings.from_env(env={}, internal_token="s3cret"))
    body = {"network": "public", "account": world.X}
    assert call(c, body).status_code == 401
    assert call(c, body, headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert call(c, body, method="GET", headers={"Authorization": "Bearer s3cret"}).status_code == 405
    pipeline.request_lineage(c, "public", world.X)
    assert call(c, body, headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_http_schema_behind_answers_503_and_writes_nothing(world, tmp_path):
    store = SQLiteStore(tmp_path / "empty.sqlite3")  # never migrated
    c = Container(Settings.from_env(env={}), SettableClock(NOW), store=store, queue=RecordingQueue(),
                  hubble=CountingHubble(DuckDBHubble(world.db)), pipeline_config=PipelineConfig.from_stored({}))
    resp = call(c, {"network": "public", "account": world.X})
    assert resp.status_code == 503 and resp.get_json()["error"]["code"] == "schema_behind" and resp.headers["Retry-After"]
    assert c.queue.tasks == [] and c.hubble.dry_runs == 0
    store.close()


def test_http_store_failure_answers_503_for_a_retry(world, make):
    c = make({"children_page_size_bq": 4}, store_cls=FlakyStore)
    c.store.fail_add_children_at = 1
    pipeline.request_lineage(c, "public", world.X)
    resp = call(c, {"network": "public", "account": world.X})
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "30"
    assert resp.get_json()["error"]["code"] == "retry_later"
    assert c.store.get_lineage("public", world.X).status == "PENDING"


def test_http_guard_refusal_is_not_an_error_page(world, make):
    c = make({"cost_limit_usd": "0"})
    pipeline.request_lineage(c, "public", world.X)
    resp = call(c, {"network": "public", "account": world.X})
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["status"] == "HANDED_TO_API" and body["pipeline_source"] == "BIGQUERY_WITH_API_FALLBACK"
