"""The Hubble NDJSON export: shapes, schemas, and agreement with the ground truth in DuckDB."""
from __future__ import annotations

import json
from collections import defaultdict

import duckdb
import pytest
import requests

from local.simulator import Simulator
from local.simulator.hubble import ACCOUNTS, EHO, SCHEMAS, duckdb_columns, export
from local.simulator.network import Network, NetworkConfig, stroops_to_str

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def network():
    return Network(NetworkConfig(accounts=400, airdrop_children=1_500, seed=9))


@pytest.fixture(scope="module")
def exported(network, tmp_path_factory):
    root = tmp_path_factory.mktemp("hubble")
    manifest = export({"public": network}, root)
    return root, manifest


def rows(path):
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def test_files_rows_and_schemas(network, exported):
    root, manifest = exported
    files = manifest["networks"]["public"]["files"]
    ops = rows(root / "public" / f"{EHO}.ndjson")
    accounts = rows(root / "public" / f"{ACCOUNTS}.ndjson")
    assert files[EHO]["rows"] == len(ops) == len(network.all_operation_ids())
    assert files[ACCOUNTS]["rows"] == len(accounts) == network.total
    for table, table_rows in ((EHO, ops), (ACCOUNTS, accounts)):
        schema = json.loads((root / "public" / f"{table}.schema.json").read_text())
        names = [column["name"] for column in schema]
        assert names == [name for name, _, _ in SCHEMAS[table]]
        required = {c["name"] for c in schema if c["mode"] == "REQUIRED"}
        for row in table_rows:
            assert list(row) == names
            assert all(row[name] is not None for name in required)
    assert json.loads((root / "manifest.json").read_text())["networks"]["public"]["accounts"] == network.size


def test_operations_cover_all_history_including_failed(network, exported):
    root, _ = exported
    ops = rows(root / "public" / f"{EHO}.ndjson")
    by_type = defaultdict(list)
    for row in ops:
        by_type[row["type_string"]].append(row)
    assert {row["type"] for row in by_type["create_account"]} == {0}
    assert {row["type"] for row in by_type["account_merge"]} == {8}
    assert len(by_type["payment"]) >= 30_000
    failed = [row for row in by_type["create_account"] if not row["successful"]]
    assert len(failed) == len(network.failed_ledger)
    # Hubble has no retention window: ledgers older than Horizon's elder are there too.
    assert min(row["ledger_sequence"] for row in ops) < network.elder_ledger
    assert [row["op_id"] for row in ops] == sorted(row["op_id"] for row in ops)


def test_duckdb_creators_match_the_ground_truth(network, exported):
    root, _ = exported
    path = root / "public" / f"{EHO}.ndjson"
    found = duckdb.sql(
        f"""
        select account, list(funder order by op_id) as creators, min(closed_at) as first_created
        from read_json('{path}', format = 'newline_delimited', columns = {duckdb_columns(EHO)})
        where type = 0 and successful
        group by account
        """
    ).fetchall()
    assert len(found) == network.total - 1  # everyone but genesis was created
    for account, creators, first_created in found:
        truth = network.truth(account)
        assert creators == [event["creator"] for event in truth["creation_events"]]
        assert first_created.strftime("%Y-%m-%dT%H:%M:%SZ") == truth["created_at"]


def test_accounts_current_matches_state(network, exported):
    root, _ = exported
    path = root / "public" / f"{ACCOUNTS}.ndjson"
    table = {row[0]: row[1:] for row in duckdb.sql(
        f"select account_id, balance, deleted, flags, home_domain from read_json('{path}', "
        f"format = 'newline_delimited', columns = {duckdb_columns(ACCOUNTS)})").fetchall()}
    for index in list(range(0, network.size, 7)) + network.merged_gone + network.hostile + [network.size + 3]:
        state = network.state(index)
        balance, deleted, flags, home_domain = table[state.address]
        assert deleted is (not state.exists)
        assert f"{balance:.7f}" == stroops_to_str(state.balance if state.exists else state.last_balance)
        assert flags == state.flags and home_domain == (state.home_domain or "")


def test_accounts_current_sequence_columns(network, exported):
    """sequence_number is the entry's; min_sequence_number (stellar-dbt: the minimum over the account's
    rows) its first life's start; sequence_ledger/sequence_time only for changes since protocol 19;
    a merged account's row is its removal, as the merge left it."""
    root, _ = exported
    by_id = {row["account_id"]: row for row in rows(root / "public" / f"{ACCOUNTS}.ndjson")}
    for index in list(range(0, network.size, 5)) + network.merged + network.merged_gone + sorted(network.bump_of):
        state = network.state(index)
        row = by_id[state.address]
        assert row["sequence_number"] == state.sequence and row["min_sequence_number"] == state.first_created_ledger << 32
        assert row["sequence_ledger"] == state.sequence_ledger
        assert (row["sequence_time"] is None) is (state.sequence_ledger is None)
        assert row["last_modified_ledger"] == state.last_modified_ledger
        if index in network.bump_of:
            assert row["sequence_number"] >> 32 > state.created_ledger
        else:
            assert row["sequence_number"] >> 32 == state.created_ledger
    for index in network.merged_gone:
        row = by_id[network.address(index)]
        assert row["deleted"] is True and row["ledger_entry_change"] == 2
        assert row["last_modified_ledger"] == network.merge_of[index][0]
        assert row["sequence_number"] >> 32 == network.ledgers[index] and row["sequence_number"] > network.ledgers[index] << 32
    untouched = [r for r in by_id.values() if r["ledger_entry_change"] == 0]
    assert untouched and all(r["sequence_number"] >> 32 == r["last_modified_ledger"] and r["sequence_ledger"] is None
                             for r in untouched)


def test_operations_carry_bump_sequence_and_the_clustering_column(network, exported):
    root, manifest = exported
    ops = rows(root / "public" / f"{EHO}.ndjson")
    bumps = [row for row in ops if row["type"] == 11]
    assert len(bumps) == len(network.bump_of)
    for row in bumps:
        index = network.bump_by_ledger[row["ledger_sequence"]]
        assert row["type_string"] == "bump_sequence" and row["op_source_account"] == network.address(index)
        assert row["bump_to"] == str(network.bump_of[index][1]) and row["account"] is None
    # op_account_id is stellar-etl's details.account_id: only revoke_sponsorship sets it
    assert all(row["op_account_id"] is None for row in ops)
    assert manifest["table_options"][EHO] == {
        "timePartitioning": {"type": "DAY", "field": "closed_at"},
        "clustering": {"fields": ["ledger_sequence", "transaction_id", "op_account_id", "type"]}}
    assert manifest["table_options"][ACCOUNTS] == {}
    assert "--time_partitioning_type=DAY" in manifest["bq_load_flags"][EHO]
    assert "--time_partitioning_field=closed_at" in manifest["bq_load_flags"][EHO]
    assert manifest["bq_load_flags"][ACCOUNTS] == ["--source_format=NEWLINE_DELIMITED_JSON"]


def test_export_refuses_bad_arguments(network, tmp_path):
    with pytest.raises(ValueError, match="unknown table"):
        export({"public": network}, tmp_path, tables=["history_effects"])
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        export({"public": network}, blocker)


def test_export_over_http(tmp_path):
    with Simulator(accounts=250, airdrop_children=0, seed=3, port=0, rate_limits=False) as sim:
        url = f"{sim.base_url}/_sim/export"
        body = requests.post(url, json={"directory": str(tmp_path), "networks": ["testnet"], "tables": [ACCOUNTS]},
                             timeout=120).json()
        assert list(body["networks"]) == ["testnet"]
        assert (tmp_path / "testnet" / f"{ACCOUNTS}.ndjson").exists()
        assert not (tmp_path / "public").exists()
        for bad, code in (({}, "invalid_directory"), ({"directory": str(tmp_path), "networks": ["mars"]}, "invalid_network"),
                          ({"directory": str(tmp_path), "tables": []}, "invalid_tables"),
                          ({"directory": str(tmp_path), "extra": 1}, "invalid_request")):
            response = requests.post(url, json=bad, timeout=30)
            assert response.status_code == 400 and response.json()["error"]["code"] == code
