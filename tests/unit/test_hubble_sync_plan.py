"""The network-wide sync's pure parts: ranges, their SQL, their rows; the task bodies' validation."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import sqlglot
from sqlglot import exp

from common.domain import InvalidInput
from common.handlers import hubble_sync as H
from common.hubble import sync as S
from common.hubble.port import HubbleTables
from tests.support import random_account

pytestmark = pytest.mark.unit

UTC = dt.timezone.utc
TABLES = HubbleTables.from_datasets("crypto-stellar.crypto_stellar", "crypto-stellar.crypto_stellar_dbt")


def test_ranges_tile_the_span_on_a_fixed_grid():
    start, end = dt.datetime(2015, 9, 30, 16, 46, 54, tzinfo=UTC), dt.datetime(2026, 1, 1, tzinfo=UTC)
    ranges = S.plan_ranges(start, end, 30)
    assert ranges[0][0] == start and ranges[-1][1] == end
    assert all(a < b for a, b in ranges) and all(ranges[i][1] == ranges[i + 1][0] for i in range(len(ranges) - 1))
    assert all(b - a == dt.timedelta(days=30) for a, b in ranges[:-1]) and ranges[-1][1] - ranges[-1][0] <= dt.timedelta(days=30)
    later = S.plan_ranges(start, end + dt.timedelta(days=3), 30)
    assert later[: len(ranges) - 1] == ranges[:-1], "a later plan keeps the same grid"
    for bad in (0, 367, True, 1.5):
        with pytest.raises(InvalidInput):
            S.plan_ranges(start, end, bad)
    with pytest.raises(InvalidInput):
        S.plan_ranges(end, start, 30)


def test_the_range_query_is_pruned_to_its_range_and_reads_only_nine_columns():
    lo, hi = dt.datetime(2020, 1, 1, tzinfo=UTC), dt.datetime(2020, 1, 31, tzinfo=UTC)
    q = S.range_query(TABLES, "public", lo, hi)
    assert q.purpose == "sync" and q.tables == (TABLES.operations,)
    assert q.param_values() == {"lo": lo, "hi": hi}
    tree = sqlglot.parse_one(q.sql, read="bigquery")
    where = tree.find(exp.Where).sql(dialect="bigquery")
    assert "closed_at >= @lo" in where and "closed_at < @hi" in where and "successful" in where
    assert {c.name for c in tree.find_all(exp.Column)} == {
        "op_id", "type", "ledger_sequence", "closed_at", "funder", "account", "into", "starting_balance", "successful"}
    assert tree.find(exp.Order) is None, "the bulk path is order-independent: no sort is paid for"


def test_the_accounts_query_resumes_after_an_account():
    a = random_account()
    assert S.accounts_query(TABLES, "public", None).param_values() == {"after": ""}
    assert S.accounts_query(TABLES, "public", a).param_values() == {"after": a}
    with pytest.raises(InvalidInput):
        S.accounts_query(TABLES, "public", "GBAD")


def test_range_rows_become_edges_and_merges():
    funder, child, into = random_account(), random_account(), random_account()
    when = dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
    op = (123 << 32) | 4097
    page = S.parse_range_rows("public", [
        {"op_id": op, "type": 0, "ledger_sequence": 123, "closed_at": when, "funder": funder, "account": child,
         "merged_into": None, "starting_balance": 1.5},
        {"op_id": op + 1, "type": 8, "ledger_sequence": 123, "closed_at": "2020-01-02T03:04:05Z", "funder": None,
         "account": child, "merged_into": into, "starting_balance": None},
    ])
    (edge,) = page.edges
    assert (edge.creator, edge.account, edge.created_at, edge.operation_id, edge.ledger, edge.starting_balance) == (
        funder, child, when, str(op), 123, Decimal("1.5000000"))
    (merge,) = page.merges
    assert (merge.stellar_account, merge.merged_into, merge.merged_at, merge.ledger, merge.source) == (child, into, when, 123, "BIGQUERY")
    for bad in ({"type": 1}, {"type": 8, "account": "GBAD"}, {"closed_at": 5}):
        row = {"op_id": op, "type": 0, "ledger_sequence": 1, "closed_at": when, "funder": funder, "account": child, **bad}
        with pytest.raises(InvalidInput):
            S.parse_range_rows("public", [row])


def test_account_rows_become_states_and_an_impossible_home_domain_is_reported():
    a, b, gone = random_account(), random_account(), random_account()
    page = S.parse_account_rows("public", [
        {"account": a, "balance": 12.5, "flags": 3, "home_domain": "example.com", "deleted": False, "master_weight": 1},
        {"account": b, "balance": 1.0, "flags": 0, "home_domain": "x" * 300, "deleted": False},
        {"account": gone, "balance": 0.0, "flags": 0, "home_domain": None, "deleted": True},
    ])
    by = {s.account: s for s in page.states}
    assert by[a].xlm_balance == Decimal("12.5000000") and by[a].flags["auth_required"] and by[a].home_domain == "example.com"
    assert by[b].home_domain is None and page.dropped_home_domains == [b]
    assert by[gone].deleted is True and by[gone].xlm_balance is None


@pytest.mark.parametrize("body, code", [
    ({"network": "mainnet"}, "invalid_network"),
    ({"network": "public", "mode": "weekly"}, "invalid_mode"),
    ({"network": "public", "since": "2020-13-01"}, "invalid_since"),
    ({"network": "public", "since": "yesterday"}, "invalid_since"),
    ({"network": "public", "mode": "daily", "since": "2020-01-01"}, "invalid_since"),
    ({"network": "public", "dry_run": "yes"}, "invalid_dry_run"),
    ({"network": "public", "extra": 1}, "invalid_body"),
])
def test_bad_plan_bodies_are_refused(body, code):
    with pytest.raises(InvalidInput) as err:
        H.parse_plan(body)
    assert err.value.code == code


@pytest.mark.parametrize("body, code", [
    ({"network": "public", "sync_id": "full-1", "start": "2020-01-01T00:00:00Z"}, "invalid_range"),
    ({"network": "public", "sync_id": "full-1", "start": "2020-02-01T00:00:00Z", "end": "2020-01-01T00:00:00Z"}, "invalid_range"),
    ({"network": "public", "sync_id": "full-1", "start": "soon", "end": "2020-01-01T00:00:00Z"}, "invalid_range"),
    ({"network": "public", "start": "2020-01-01T00:00:00Z", "end": "2020-02-01T00:00:00Z"}, "invalid_sync_id"),
])
def test_bad_range_bodies_are_refused(body, code):
    with pytest.raises(InvalidInput) as err:
        H.parse_range(body)
    assert err.value.code == code


def test_task_kinds():
    assert H.task_kind({"network": "public"}) == "plan"
    assert H.task_kind({"network": "public", "sync_id": "x", "start": "a", "end": "b"}) == "range"
    assert H.task_kind({"network": "public", "sync_id": "x", "accounts_current": True}) == "accounts"
    with pytest.raises(InvalidInput):
        H.task_kind({"network": "public", "sync_id": "x"})
    with pytest.raises(InvalidInput):
        H.parse_accounts({"network": "public", "sync_id": "x", "accounts_current": True, "after": "GBAD"})
