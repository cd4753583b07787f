"""`stellarmap hubble load` (and `stellarmap queue`) as an operator runs them: a progress bar, then
one summary line whose counts match what was loaded (tables, rows, errors, elapsed time)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import duckdb
import pytest

from common.hubble.duckdb_engine import local_schema
from local.simulator.hubble import ACCOUNTS, EHO, export
from local.simulator.network import Network, NetworkConfig
from stellarmap_cli.main import main as cli_main
from tests.support import random_account

pytestmark = pytest.mark.integration
SUMMARY = re.compile(
    r"hubble load: (?P<failed>FAILED; )?(?P<loaded>\d+) of (?P<selected>\d+) table\(s\) loaded, (?P<rows>[\d,]+) rows, "
    r"(?P<errors>\d+) error\(s\)(?:; into (?P<target>\S+))? \((?P<network>\w+)\) in (?P<seconds>[\d.]+)s"
)


def cli(*args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k not in ("HUBBLE_DUCKDB_PATH", "BIGQUERY_PROJECT", "BIGQUERY_EMULATOR_HOST")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "stellarmap_cli.main", *args], capture_output=True, text=True, env=env, timeout=600)


def summary(stderr: str) -> dict:
    found = [m.groupdict() for m in SUMMARY.finditer(stderr)]
    assert len(found) == 1, f"expected one summary line in: {stderr!r}"
    out = found[0]
    out["rows"] = int(out["rows"].replace(",", ""))
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small simulator export of both networks; returns (directory, {network: {table: rows}})."""
    root = tmp_path_factory.mktemp("hubble-export")
    networks = {
        "public": Network(NetworkConfig(accounts=200, airdrop_children=500, seed=21)),
        "testnet": Network(NetworkConfig(accounts=200, airdrop_children=300, seed=22)),
    }
    manifest = export(networks, root)
    rows = {n: {t: f["rows"] for t, f in m["files"].items()} for n, m in manifest["networks"].items()}
    return root, rows


def loaded_rows(db, network: str, table: str) -> int:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(f"SELECT COUNT(*) FROM {local_schema(network)}.{table}").fetchone()[0]
    finally:
        con.close()


def test_load_shows_progress_and_a_summary_matching_the_rows_loaded(exported, tmp_path):
    root, rows = exported
    db = tmp_path / "hubble.duckdb"
    res = cli("hubble", "load", "--db", str(db), "--network", "public", str(root))
    assert res.returncode == 0, res.stderr
    got = summary(res.stderr)
    expected = rows["public"][EHO] + rows["public"][ACCOUNTS]
    assert got["failed"] is None and got["errors"] == "0" and (got["loaded"], got["selected"]) == ("2", "2")
    assert got["rows"] == expected and got["target"] == str(db) and got["network"] == "public"
    assert loaded_rows(db, "public", EHO) == rows["public"][EHO] and loaded_rows(db, "public", ACCOUNTS) == rows["public"][ACCOUNTS]
    # A line per table as it lands, the bar's final state, and the per-table report on stdout.
    assert f"{EHO}: {rows['public'][EHO]:,} rows from 1 file(s)" in res.stderr
    assert f"{ACCOUNTS}: {rows['public'][ACCOUNTS]:,} rows from 1 file(s)" in res.stderr
    assert "2/2 tables" in res.stderr
    assert f"{ACCOUNTS}: {rows['public'][ACCOUNTS]:,} rows" in res.stdout


def test_one_table_of_the_other_network_from_the_environment(exported, tmp_path):
    """--db defaults to HUBBLE_DUCKDB_PATH (explicit argument > environment variable)."""
    root, rows = exported
    db = tmp_path / "env.duckdb"
    res = cli("hubble", "load", "--network", "testnet", "--table", ACCOUNTS, str(root), env_extra={"HUBBLE_DUCKDB_PATH": str(db)})
    assert res.returncode == 0, res.stderr
    got = summary(res.stderr)
    assert (got["loaded"], got["selected"], got["errors"]) == ("1", "1", "0") and got["network"] == "testnet"
    assert got["rows"] == rows["testnet"][ACCOUNTS] == loaded_rows(db, "testnet", ACCOUNTS)


def test_a_failed_load_says_so_in_the_summary_and_writes_nothing(tmp_path):
    db = tmp_path / "never.duckdb"
    res = cli("hubble", "load", "--db", str(db), str(tmp_path / "no-such-export"))
    assert res.returncode == 1 and "does not exist" in res.stderr
    got = summary(res.stderr)
    assert got["failed"] and (got["loaded"], got["rows"], got["errors"]) == ("0", 0, "1")
    assert not db.exists()


def test_no_target_names_the_variable(tmp_path):
    res = cli("hubble", "load", str(tmp_path))
    assert res.returncode == 1 and "HUBBLE_DUCKDB_PATH" in res.stderr and "--bigquery" in res.stderr
    bq = cli("hubble", "load", "--bigquery", str(tmp_path))
    assert bq.returncode == 1 and "BIGQUERY_PROJECT" in bq.stderr


def test_usage_and_unknown_action(capsys):
    assert cli_main(["hubble"]) == 2 and "stellarmap hubble load" in capsys.readouterr().out
    assert cli_main(["hubble", "--help"]) == 0
    assert cli_main(["hubble", "unload"]) == 1 and "unknown hubble action 'unload'" in capsys.readouterr().err
    top = cli("--help")
    assert top.returncode == 0 and "hubble" in top.stdout


def test_main_argv_in_process(exported, tmp_path, capsys):
    root, rows = exported
    db = tmp_path / "inproc.duckdb"
    assert cli_main(["hubble", "load", "--db", str(db), str(root)]) == 0
    got = summary(capsys.readouterr().err)
    assert got["rows"] == rows["public"][EHO] + rows["public"][ACCOUNTS]


def test_an_ambiguous_balance_unit_names_the_option_and_the_option_settles_it(tmp_path):
    """An untyped accounts export of whole numbers could be XLM or old stellar-etl stroops: the load
    refuses it naming --balance-unit; with the option it loads and says what it did."""
    src = tmp_path / "old-etl"
    src.mkdir()
    row = {"account_id": random_account(), "balance": 1234567890, "flags": 0, "home_domain": "", "master_weight": 1,
           "threshold_low": 0, "threshold_medium": 0, "threshold_high": 0, "deleted": False, "last_modified_ledger": 9,
           "sequence_number": 9 << 32}
    (src / "accounts.ndjson").write_text(json.dumps(row) + "\n")
    db = tmp_path / "h.duckdb"
    res = cli("hubble", "load", "--db", str(db), "--table", ACCOUNTS, str(src))
    assert res.returncode == 1 and "--balance-unit xlm or --balance-unit stroops" in res.stderr and not db.exists()
    assert summary(res.stderr)["failed"]
    res = cli("hubble", "load", "--db", str(db), "--table", ACCOUNTS, "--balance-unit", "stroops", str(src))
    assert res.returncode == 0, res.stderr
    assert "balances in stroops, converted to XLM (--balance-unit)" in res.stderr
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute(f"SELECT balance FROM {local_schema('public')}.{ACCOUNTS}").fetchone()[0] == 123.456789
    bad = cli("hubble", "load", "--db", str(tmp_path / "x.duckdb"), "--balance-unit", "lumens", str(src))
    assert bad.returncode != 0 and "--balance-unit" in bad.stderr


# ---------------------------------------------------------------------------------- queue
def test_queue_summary_counts_lines_errors_and_time(tmp_path):
    env = {"STELLARMAP_STORE": "sqlite", "STELLARMAP_SQLITE_PATH": str(tmp_path / "q.sqlite3"),
           "STELLARMAP_QUEUE": "local", "LOCAL_DISPATCHER_DB": str(tmp_path / "dispatch.sqlite3")}
    assert cli("migrate", env_extra=env).returncode == 0
    a, b = random_account(), random_account()
    accounts = tmp_path / "accounts.txt"
    accounts.write_text(f"{a}\nnot-an-account\n{b}\n{a}\n")
    res = cli("queue", "--file", str(accounts), env_extra=env)
    assert res.returncode == 0, res.stderr
    assert "line 2: " in res.stderr and "2/2" in res.stderr
    assert re.search(r"4 lines, 3 valid, 1 bad, 1 duplicates; 2 enqueued, 0 already queued or known; [\d.]+s", res.stderr), res.stderr


def test_hubble_sync_dry_run_prints_the_cost_and_writes_nothing_and_bad_input_is_one_line(exported, tmp_path):
    root, _ = exported
    db = tmp_path / "hubble.duckdb"
    assert cli("hubble", "load", "--db", str(db), "--network", "public", str(root / "public")).returncode == 0
    store = tmp_path / "store.sqlite3"
    where = ("--store", "sqlite", "--sqlite-path", str(store))
    assert cli(*where, "migrate").returncode == 0
    dry = cli(*where, "hubble", "sync", "--network", "public", "--dry-run", "--json", "--duckdb", str(db))
    assert dry.returncode == 0, dry.stderr
    answer = json.loads(dry.stdout)
    assert answer["dry_run"] is True and answer["bytes"] > 0 and answer["ranges"] > 100 and float(answer["cost_usd"]) > 0
    assert f"dry run: {answer['bytes']:,} bytes" in dry.stderr
    from common.store.sqlite import SQLiteStore

    assert SQLiteStore(store).get_sync_state("public") is None, "a dry run writes nothing"
    for args, words in (
        (("--since", "2030-01-01"), "invalid_since"),
        (("--since", "May"), "invalid_since"),
        (("--duckdb", str(tmp_path / "missing.duckdb")), "no embedded Hubble"),
    ):
        out = cli(*where, "hubble", "sync", "--network", "public", "--dry-run", *args,
                  *(() if "--duckdb" in args else ("--duckdb", str(db))))
        assert out.returncode == 1 and words in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    poor = cli(*where, "hubble", "sync", "--network", "public", "--local", "--duckdb", str(db),
               env_extra={"HUBBLE_SYNC_BUDGET_USD": "0.000001"})
    assert poor.returncode == 1 and "sync_over_budget" in poor.stderr
    assert SQLiteStore(store).get_sync_state("public") is None
