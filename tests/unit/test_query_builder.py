"""The query builder: whitelists, typed values, the adaptive scan cap, and nothing raw reaching the store."""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from common.config import PipelineConfig
from common.domain import InvalidInput
from common.read_models import query as qb
from common.store import migrations
from common.store.sqlite import SQLiteStore
from tests.support import random_account

pytestmark = pytest.mark.unit
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
INJECTIONS = (
    "x' OR '1'='1",
    "'; DROP TABLE account_lineage; --",
    "\" OR 1=1 --",
    "1; DELETE FROM search_cache",
    "${jndi:ldap://x}",
    "%' UNION SELECT * FROM pipeline_config --",
    "\x00\u202e<script>",
)


class RecordingSQLiteStore(SQLiteStore):
    """A real SQLite store that records the arguments of every read primitive the builder uses."""

    def __init__(self, path):
        super().__init__(path)
        self.calls: list[tuple] = []

    def _scan(self, table, network, max_rows):
        self.calls.append(("_scan", table, network, max_rows))
        return super()._scan(table, network, max_rows)

    def _list_active(self, kind, limit):
        self.calls.append(("_list_active", kind, limit))
        return super()._list_active(kind, limit)

    def _get_leaderboard_top(self, network, threshold, limit):
        self.calls.append(("_get_leaderboard_top", network, threshold, limit))
        return super()._get_leaderboard_top(network, threshold, limit)

    def _get_hva_events(self, network, threshold, since, until, limit):
        self.calls.append(("_get_hva_events", network, threshold, since, until, limit))
        return super()._get_hva_events(network, threshold, since, until, limit)


@pytest.fixture
def store(tmp_path):
    s = RecordingSQLiteStore(tmp_path / "q.db")
    migrations.migrate(s)
    yield s
    s.close()


def _f(*triples):
    return json.dumps([{"column": c, "op": o, "value": v} for c, o, v in triples])


@pytest.mark.parametrize(
    "table, filters, code, field",
    [
        ("account_lineage", _f(("nope", "=", "x")), "invalid_column", "filters[0].column"),
        ("account_lineage", _f(("claim_token", "=", "x")), "invalid_column", "filters[0].column"),  # not exposed
        ("account_lineage", _f(("status; DROP TABLE x", "=", "x")), "invalid_column", "filters[0].column"),
        ("account_lineage", _f(("status", "LIKE", "x")), "invalid_operator", "filters[0].op"),
        ("account_lineage", _f(("status", "= 1 OR 1=1", "x")), "invalid_operator", "filters[0].op"),
        ("account_lineage", _f(("xlm_balance", "contains", "1")), "invalid_operator", "filters[0].op"),
        ("account_lineage", _f(("is_hva", ">", True)), "invalid_operator", "filters[0].op"),
        ("account_lineage", _f(("tags", "=", "x")), "invalid_operator", "filters[0].op"),
        ("account_lineage", _f(("xlm_balance", ">", "1e9999999999")), "invalid_value", "filters[0].value"),
        ("account_lineage", _f(("xlm_balance", ">", "NaN")), "invalid_value", "filters[0].value"),
        ("account_lineage", _f(("xlm_balance", ">", "1 OR 1=1")), "invalid_value", "filters[0].value"),
        ("account_lineage", _f(("num_child_accounts", ">", 1.5)), "invalid_value", "filters[0].value"),
        ("account_lineage", _f(("num_child_accounts", ">", True)), "invalid_value", "filters[0].value"),
        ("account_lineage", _f(("created_at", ">", "yesterday")), "invalid_value", "filters[0].value"),
        ("account_lineage", _f(("is_hva", "=", "yes")), "invalid_value", "filters[0].value"),
        ("account_lineage", _f(("status", "=", "x" * 257)), "invalid_value", "filters[0].value"),
        ("account_lineage", _f(("status", ">", None)), "invalid_value", "filters[0].value"),
        ("account_lineage", _f(("status", "=", {"$ne": 1})), "invalid_value", "filters[0].value"),
        ("account_lineage", "not json", "invalid_filters", "filters"),
        ("account_lineage", json.dumps({"column": "status"}), "invalid_filters", "filters"),
        ("account_lineage", json.dumps([{"column": "status", "op": "="}]), "invalid_filters", "filters[0]"),
        ("account_lineage", json.dumps([{"column": "status", "op": "=", "value": 1, "raw": "1=1"}]), "invalid_filters", "filters[0]"),
        ("account_lineage", json.dumps([["status", "=", "x"]]), "invalid_filters", "filters[0]"),
        ("account_lineage", _f(*[("status", "=", "x")] * 11), "invalid_filters", "filters"),
        ("account_lineage", "[" + " " * 5000 + "]", "invalid_filters", "filters"),
    ],
)
def test_bad_filters_are_refused_with_a_code_and_field_and_nothing_is_read(store, table, filters, code, field):
    with pytest.raises(InvalidInput) as err:
        qb.run_custom(store, "public", {"network": "public", "table": table, "filters": filters})
    assert err.value.code == code and err.value.field == field and err.value.message
    assert store.calls == []


@pytest.mark.parametrize(
    "params, code",
    [
        ({"table": "pipeline_config"}, "invalid_table"),
        ({"table": "bigquery_spend_ledger"}, "invalid_table"),
        ({"table": "account_lineage; DROP TABLE account_lineage"}, "invalid_table"),
        ({"table": "account_lineage", "limit": "49"}, "invalid_limit"),
        ({"table": "account_lineage", "limit": "501"}, "invalid_limit"),
        ({"table": "account_lineage", "limit": "100 OR 1=1"}, "invalid_limit"),
        ({"table": "account_lineage", "limit": "-5"}, "invalid_limit"),
        ({"table": "account_lineage", "sort": "status DESC; --"}, "invalid_column"),
        ({"table": "account_lineage", "order": "sideways"}, "invalid_order"),
        ({"table": "account_lineage", "sql": "DELETE FROM account_lineage"}, "unknown_parameter"),
        ({"table": "account_lineage", "update": "1"}, "unknown_parameter"),
    ],
)
def test_bad_custom_parameters(store, params, code):
    with pytest.raises(InvalidInput) as err:
        qb.run_custom(store, "public", {"network": "public", **params})
    assert err.value.code == code
    assert store.calls == []


@pytest.mark.parametrize("value", INJECTIONS)
def test_injection_strings_are_plain_values_compared_in_memory(store, value):
    a, b = random_account(), random_account()
    store.put_lineage("public", a, home_domain=value, status="COMPLETE")
    store.put_lineage("public", b, home_domain="example.com", status="COMPLETE")
    store.calls.clear()
    res = qb.run_custom(store, "public", {"table": "account_lineage", "filters": _f(("home_domain", "=", value)), "limit": "50"})
    assert [r["stellar_account"] for r in res["rows"]] == [a]
    # The store saw only a whitelisted table, the network and a number; never the value.
    assert store.calls == [("_scan", "account_lineage", "public", 50 * qb.SPARSE_FACTOR + 1)]
    assert store.get_lineage("public", b).home_domain == "example.com"  # nothing was changed


def test_typed_comparisons_null_semantics_contains_and_sort(store):
    rows = {
        random_account(): dict(xlm_balance=Decimal("10.5"), home_domain="Alpha.example", tags=["exchange"], is_hva=False, created_at=T0),
        random_account(): dict(xlm_balance=Decimal("100000"), home_domain="beta.org", tags=["anchor"], is_hva=True, created_at=T0 + dt.timedelta(days=2)),
        random_account(): dict(xlm_balance=None, home_domain=None, created_at=T0 + dt.timedelta(days=1)),
    }
    for acct, fields in rows.items():
        store.put_lineage("public", acct, **fields)
    store.put_lineage("testnet", random_account(), xlm_balance=Decimal("999999"))  # other network: never returned
    by_balance = {str(v.get("xlm_balance")): k for k, v in rows.items()}

    def q(*triples, **kw):
        return qb.run_custom(store, "public", {"table": "account_lineage", "filters": _f(*triples), "limit": "50", **kw})["rows"]

    assert [r["stellar_account"] for r in q(("xlm_balance", ">=", 11))] == [by_balance["100000"]]
    assert [r["xlm_balance"] for r in q(("xlm_balance", "<", "100000"))] == ["10.5"]
    assert [r["stellar_account"] for r in q(("xlm_balance", "=", None))] == [by_balance["None"]]
    assert len(q(("xlm_balance", "!=", None))) == 2
    assert [r["home_domain"] for r in q(("home_domain", "contains", "ALPHA"))] == ["Alpha.example"]
    assert [r["tags"] for r in q(("tags", "contains", "anchor"))] == [["anchor"]]
    assert [r["is_hva"] for r in q(("is_hva", "=", "true"))] == [True]
    assert len(q(("created_at", ">", "2026-01-01T12:00:00Z"), ("created_at", "<=", "2026-01-03T00:00:00+00:00"))) == 2
    ordered = q(sort="created_at", order="desc")
    assert [r["created_at"] for r in ordered] == ["2026-01-03T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z"]
    nulls_last = q(sort="xlm_balance", order="asc")
    assert [r["xlm_balance"] for r in nulls_last] == ["10.5", "100000", None]


def test_scan_cap_adapts_to_density_and_reports_when_it_cut_results(store):
    for i in range(60):
        store.put_search("public", random_account(), status="COMPLETE", updated_at=T0 + dt.timedelta(seconds=i))
    # dense table: cap = limit x 10 = 500 > 60 rows: complete, not capped
    res = qb.run_custom(store, "public", {"table": "search_cache", "filters": _f(("status", "=", "FAILED")), "limit": "50"})
    assert (res["scan_cap"], res["scanned"], res["cap_hit"], res["rows"]) == (500, 60, False, [])
    assert res["limit"] == 50
    # a limit-sized page found before the cap stops the scan early (no sort asked)
    res = qb.run_custom(store, "public", {"table": "search_cache", "limit": "50"})
    assert len(res["rows"]) == 50 and res["cap_hit"] is False
    # sparse table: cap = limit x 100
    res = qb.run_custom(store, "public", {"table": "account_lineage", "limit": "50"})
    assert res["scan_cap"] == 5000


def test_cap_hit_when_the_table_is_larger_than_the_cap(tmp_path):
    s = RecordingSQLiteStore(tmp_path / "big.db")
    migrations.migrate(s)
    import sqlite3

    conn = sqlite3.connect(s.path)
    conn.executemany(
        "INSERT INTO search_cache (network_name, stellar_account, status) VALUES ('public', ?, 'PENDING')",
        [(f"G{i:055d}",) for i in range(501)],
    )
    conn.commit()
    conn.close()
    res = qb.run_custom(s, "public", {"table": "search_cache", "filters": _f(("status", "=", "FAILED")), "limit": "50"})
    assert (res["scan_cap"], res["scanned"], res["cap_hit"]) == (500, 500, True)
    s.close()


def test_presets_validate_their_value_and_unknown_names(store):
    cfg = PipelineConfig.from_stored({})
    for params, code in (
        ({"preset": "drop_everything"}, "invalid_preset"),
        ({"preset": "accounts_by_home_domain"}, "invalid_value"),
        ({"preset": "accounts_by_home_domain", "value": "x" * 300}, "invalid_value"),
        ({"preset": "hva_accounts", "value": "12345"}, "invalid_value"),
        ({"preset": "high_xlm_balance", "value": "5"}, "invalid_value"),
        ({"preset": "high_xlm_balance", "value": "1e6"}, "invalid_value"),
        ({"preset": "failed_stages", "value": "x"}, "invalid_value"),
        ({"preset": "failed_stages", "limit": "1000"}, "invalid_limit"),
        ({"preset": "failed_stages", "table": "x", "filters": "[]"}, "unknown_parameter"),
    ):
        with pytest.raises(InvalidInput) as err:
            qb.run_preset(store, "public", params, T0, cfg)
        assert err.value.code == code, params
    assert store.calls == []


def test_catalogue_lists_ten_presets_whitelisted_tables_and_operators():
    cat = qb.catalogue()
    assert len(cat["presets"]) == 10 and len({p["name"] for p in cat["presets"]}) == 10
    assert cat["operators"] == ["=", "!=", ">", "<", ">=", "<=", "contains"]
    assert "claim_token" not in cat["tables"]["account_lineage"] and "network_name" not in cat["tables"]["account_lineage"]
    assert "pipeline_config" not in cat["tables"]


def test_account_labels_are_filterable(store):
    """Issue 10: directory tags (exchange, malicious, blocked-domain) and the stellar.toml facts."""
    phish, exchange, plain = random_account(), random_account(), random_account()
    store.put_lineage("public", phish, tags=["blocked-domain", "malicious"], directory_name="<script>x</script>",
                      toml_org_name="Claim your free XLM", toml_lists_account=True)
    store.put_lineage("public", exchange, tags=["exchange", "memo-required"], directory_name="Exchange 1",
                      toml_org_name="Exchange 1", toml_lists_account=True)
    store.put_lineage("public", plain, toml_error="too_large: stellar.toml is larger than 100000 bytes", toml_lists_account=None)

    def q(*triples):
        return {r["stellar_account"] for r in qb.run_custom(store, "public", {"table": "account_lineage", "filters": _f(*triples), "limit": "50"})["rows"]}

    assert q(("tags", "contains", "malicious")) == {phish}
    assert q(("tags", "contains", "BLOCKED-DOMAIN")) == {phish}, "a whole tag, any case"
    assert q(("tags", "contains", "memo")) == set(), "a tag is matched whole, not as a substring"
    assert q(("tags", "contains", "exchange"), ("toml_lists_account", "=", "true")) == {exchange}
    assert q(("toml_error", "contains", "too_large")) == {plain}
    assert q(("directory_name", "contains", "<script>")) == {phish}
    with pytest.raises(InvalidInput):
        q(("tags", "=", "malicious"))  # sets take `contains` only
