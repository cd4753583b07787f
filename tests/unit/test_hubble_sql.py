"""The Hubble SQL: parameters only, partition filters everywhere, stable keyset paging, parsers."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import sqlglot
from sqlglot import exp

from common.config import ConfigError, Settings
from common.domain import InvalidInput
from common.hubble import sql as S
from common.hubble.port import HubbleTables, QueryParam, tables_from_settings
from tests.support import random_account

pytestmark = pytest.mark.unit

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 1, 1, tzinfo=UTC)
TABLES = HubbleTables.from_datasets("crypto-stellar.crypto_stellar", "crypto-stellar.crypto_stellar_dbt")


def queries(account):
    after = S.ChildCursor(dt.datetime(2020, 5, 1, tzinfo=UTC), 17)
    return [
        S.lineage_query(TABLES, "public", account, NOW),
        S.children_query(TABLES, "public", account, after, NOW, 10_000),
        S.children_count_query(TABLES, "public", account, after.closed_at, NOW),
        S.state_query(TABLES, "public", account),
    ]


def eho_selects(tree):
    for table in tree.find_all(exp.Table):
        if table.name == "enriched_history_operations":
            yield table.find_ancestor(exp.Select)


def conjuncts(select):
    where = select.args["where"].this
    return list(where.flatten()) if isinstance(where, exp.And) else [where]


def test_values_are_parameters_never_text():
    account = random_account()
    for q in queries(account):
        assert account not in q.sql
        assert "2026" not in q.sql and "2015" not in q.sql and "1000" not in q.sql
        tree = sqlglot.parse_one(q.sql, read="bigquery")
        used = {p.name for p in tree.find_all(exp.Parameter)}
        assert used == {p.name for p in q.params}, "every parameter is used and every placeholder bound"
        assert not list(tree.find_all(exp.Literal)) or all(
            lit.this in ("0",) for lit in tree.find_all(exp.Literal)
        ), "the only literal is create_account's operation type 0"


def test_every_operations_read_filters_the_partition_and_counts_only_successful_creates():
    for q in queries(random_account()):
        tree = sqlglot.parse_one(q.sql, read="bigquery")
        for select in eho_selects(tree):
            parts = {c.sql(dialect="bigquery") for c in conjuncts(select)}
            assert "closed_at >= @lo" in parts and "closed_at < @hi" in parts
            assert "type = 0" in parts and "successful" in parts


def test_lineage_range_is_the_whole_history_and_children_start_at_the_cursor():
    account = random_account()
    lineage = S.lineage_query(TABLES, "public", account, NOW).param_values()
    assert lineage["lo"] == S.NETWORK_START["public"]
    assert lineage["hi"] == NOW + S.UPPER_MARGIN
    cursor = S.ChildCursor(dt.datetime(2021, 3, 4, 5, 6, 7, tzinfo=UTC), 99)
    page = S.children_query(TABLES, "public", account, cursor, NOW, 500).param_values()
    assert page["lo"] == cursor.closed_at and page["after_closed_at"] == cursor.closed_at
    assert page["after_op_id"] == 99 and page["page_limit"] == 501 and page["account"] == account
    # a cursor before the network existed never widens the range past the first ledger
    early = S.children_query(TABLES, "public", account, S.ChildCursor(dt.datetime(2000, 1, 1, tzinfo=UTC), -1), NOW, 1)
    assert early.param_values()["lo"] == S.NETWORK_START["public"]


def test_children_are_ordered_by_close_time_then_operation_id():
    tree = sqlglot.parse_one(S.children_query(TABLES, "public", random_account(), S.ChildCursor(NOW, -1), NOW, 10).sql, read="bigquery")
    assert [o.this.name for o in tree.args["order"].expressions] == ["closed_at", "op_id"]
    assert tree.args["limit"].expression.name == "page_limit"


def test_query_tables_and_purposes():
    lineage, children, count, state = queries(random_account())
    assert count.tables == (TABLES.operations,)
    assert lineage.tables == TABLES.all() and lineage.purpose == "lineage"
    assert children.tables == (TABLES.operations,) and children.purpose == "children"
    assert state.tables == (TABLES.accounts,) and state.purpose == "state"
    assert "`crypto-stellar.crypto_stellar_dbt.enriched_history_operations`" in lineage.sql
    assert "`crypto-stellar.crypto_stellar.accounts_current`" in lineage.sql


@pytest.mark.parametrize("size", [0, -1, 10_001, True, 5.0, "10"])
def test_bad_page_sizes_are_refused(size):
    with pytest.raises(InvalidInput):
        S.children_query(TABLES, "public", random_account(), S.ChildCursor(NOW, -1), NOW, size)


def test_bad_accounts_and_networks_are_refused():
    with pytest.raises(InvalidInput):
        S.lineage_query(TABLES, "public", "G" + "A" * 55, NOW)
    with pytest.raises(InvalidInput):
        S.lineage_query(TABLES, "mars", random_account(), NOW)
    with pytest.raises(InvalidInput):
        S.state_query(TABLES, "public", "not an account'; DROP TABLE x; --")


def test_cursor_roundtrip_and_bad_cursors():
    c = S.ChildCursor(dt.datetime(2019, 1, 2, 3, 4, 5, 678000, tzinfo=UTC), 123456789012)
    assert S.ChildCursor.decode(c.encode()) == c
    assert S.ChildCursor.is_hubble(c.encode()) and not S.ChildCursor.is_hubble("12345") and not S.ChildCursor.is_hubble(None)
    for bad in ("12345", "hubble:v1:yesterday:1", "hubble:v1:2019-01-02T03:04:05.000000Z:x", None):
        with pytest.raises(InvalidInput):
            S.ChildCursor.decode(bad)


@pytest.mark.parametrize(
    "name, type_, value",
    [
        ("Bad-Name", "STRING", "x"),
        ("ok", "DECIMAL", 1),
        ("ok", "STRING", None),
        ("ok", "INT64", True),
        ("ok", "INT64", "1"),
        ("ok", "TIMESTAMP", dt.datetime(2020, 1, 1)),  # naive
    ],
)
def test_query_params_are_typed(name, type_, value):
    with pytest.raises(ValueError):
        QueryParam(name, type_, value)


def test_parse_lineage_orders_events_and_reads_the_state():
    account, a, b = random_account(), random_account(), random_account()
    t1, t2 = dt.datetime(2017, 1, 1, tzinfo=UTC), dt.datetime(2019, 1, 1, tzinfo=UTC)
    state = {"balance": 12.5, "flags": 0b1010, "home_domain": "", "master_weight": 1, "threshold_low": 0,
             "threshold_medium": 2, "threshold_high": 3, "deleted": False, "state_at": NOW}
    rows = [
        {"account": account, "op_id": 20, "closed_at": t2, "funder": b, "starting_balance": 2.0, **state},
        {"account": account, "op_id": 10, "closed_at": t1, "funder": a, "starting_balance": 1.25, **state},
    ]
    answer = S.parse_lineage("public", account, rows)
    assert [(e.creator, e.operation_id) for e in answer.events] == [(a, "10"), (b, "20")]
    assert answer.first.starting_balance == Decimal("1.2500000") and answer.first.source == "BIGQUERY"
    assert answer.state.xlm_balance == Decimal("12.5000000")
    assert answer.state.flags == {"auth_required": False, "auth_revocable": True, "auth_immutable": False, "auth_clawback_enabled": True}
    assert answer.state.home_domain is None and answer.state.thresholds["med_threshold"] == 2 and answer.state.as_of == NOW


def test_parse_lineage_without_events_or_state():
    account = random_account()
    empty = {"account": account, "op_id": None, "closed_at": None, "funder": None, "starting_balance": None,
             "balance": None, "flags": None, "home_domain": None, "deleted": None, "state_at": None}
    answer = S.parse_lineage("public", account, [empty])
    assert answer.events == [] and answer.state is None and answer.first is None
    gone = dict(empty, balance=0.0, deleted=True, flags=0)
    assert S.parse_lineage("public", account, [gone]).state.xlm_balance is None


def test_parse_lineage_refuses_rows_of_another_account():
    with pytest.raises(ValueError):
        S.parse_lineage("public", random_account(), [{"account": random_account(), "op_id": 1, "closed_at": NOW, "funder": random_account()}])
    with pytest.raises(ValueError):
        S.parse_lineage("public", random_account(), [{"account": None, "op_id": 1, "closed_at": NOW, "funder": None}])


def test_parse_children_pages():
    creator = random_account()
    kids = [random_account() for _ in range(4)]
    rows = [{"account": k, "op_id": i + 1, "closed_at": NOW, "starting_balance": 1.0} for i, k in enumerate(kids)]
    page = S.parse_children("public", creator, rows, 3)  # asked for 3 + 1 rows, got 4: another page follows
    assert [e.child for e in page.children] == kids[:3]
    assert page.next_cursor == S.ChildCursor(NOW, 3)
    assert S.parse_children("public", creator, rows, 4).next_cursor is None, "no extra row: the last page"
    assert S.parse_children("public", creator, rows[:2], 3).next_cursor is None
    assert S.parse_children("public", creator, [], 10).next_cursor is None
    with pytest.raises(ValueError, match="order"):
        S.parse_children("public", creator, list(reversed(rows)), 5)
    with pytest.raises(InvalidInput):
        S.parse_children("public", creator, [dict(rows[0], account="bogus")], 3)
    assert S.parse_count([{"children": 12}]) == 12
    with pytest.raises(ValueError):
        S.parse_count([])


def test_a_page_asks_for_one_row_more_than_it_keeps():
    q = S.children_query(TABLES, "public", random_account(), S.ChildCursor(NOW, -1), NOW, 10_000)
    assert q.param_values()["page_limit"] == 10_001
    count = S.children_count_query(TABLES, "public", random_account(), dt.datetime(2019, 1, 1, tzinfo=UTC), NOW)
    assert count.purpose == "children_count" and count.param_values()["lo"] == dt.datetime(2019, 1, 1, tzinfo=UTC)


def test_dataset_settings_are_validated_and_named():
    tables = tables_from_settings(Settings.from_env(env={}), env={})
    assert tables["public"].operations == "crypto-stellar.crypto_stellar_dbt.enriched_history_operations"
    assert tables["public"].accounts == "crypto-stellar.crypto_stellar.accounts_current"
    assert "testnet" not in tables, "testnet has no Hubble unless configured"
    custom = tables_from_settings(Settings.from_env(env={}), env={"HUBBLE_DATASET": "my-proj.hub", "HUBBLE_DBT_DATASET": "my-proj.hub_dbt",
                                                                     "HUBBLE_TESTNET_DATASET": "my-proj.tn", "HUBBLE_TESTNET_DBT_DATASET": "my-proj.tn_dbt"})
    assert custom["testnet"].operations == "my-proj.tn_dbt.enriched_history_operations"
    for env, variable in (
        ({"HUBBLE_DATASET": "x.y`; DROP"}, "HUBBLE_DATASET"),
        ({"HUBBLE_DBT_DATASET": "no_project"}, "HUBBLE_DBT_DATASET"),
        ({"HUBBLE_TESTNET_DATASET": "my-proj.tn"}, "HUBBLE_TESTNET_DBT_DATASET"),
    ):
        with pytest.raises(ConfigError) as err:
            tables_from_settings(Settings.from_env(env={}), env=env)
        assert err.value.variable == variable
