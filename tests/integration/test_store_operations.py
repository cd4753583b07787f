"""Store contract, StageExecutionsPort, CronHealthPort, ConfigPort and ScanPort.

Runs on the embedded SQLite and on a real Cassandra 5.0 (the `store` fixture)."""
from __future__ import annotations

import datetime as dt

import pytest

from common.domain import (
    CronRun,
    InvalidInput,
    StageExecution,
)
from tests.support import random_account

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=dt.timezone.utc)


def test_stage_executions_newest_first(store):
    acct = random_account()
    for i, stage in enumerate(["parent_lineage", "horizon_data", "attributes"]):
        store.record_stage(
            StageExecution("public", acct, stage, "SUCCESS", T0 + dt.timedelta(seconds=i), T0 + dt.timedelta(seconds=i, milliseconds=5), 5, None, "API", "r1")
        )
    got = store.get_stage_executions("public", acct)
    assert [s.stage for s in got] == ["attributes", "horizon_data", "parent_lineage"]
    assert got[0].duration_ms == 5 and got[0].pipeline_source == "API"


def test_cron_runs(store):
    job = f"job_{random_account()[:8]}"
    store.record_cron_run(CronRun(job, T0, "SUCCESS", 12, {"reset": 3}))
    store.record_cron_run(CronRun(job, T0 + dt.timedelta(minutes=15), "FAILED", 7, {"error": "x"}))
    runs = store.get_cron_runs(job)
    assert [r.status for r in runs] == ["FAILED", "SUCCESS"]
    assert runs[1].details == {"reset": 3}


def test_config_roundtrip_and_validation(store):
    store.set_config("pipeline_mode", "API_ONLY", T0)
    store.set_config("hva_thresholds", [50000, 10000], T0)
    cfg = store.get_config()
    assert cfg["pipeline_mode"] == "API_ONLY" and cfg["hva_thresholds"] == [10000, 50000]
    with pytest.raises(ValueError, match="unknown config key"):
        store.set_config("no_such_key", 1, T0)
    with pytest.raises(ValueError, match="pipeline_mode"):
        store.set_config("pipeline_mode", "FAST", T0)
    assert store.get_config()["pipeline_mode"] == "API_ONLY"


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.put_lineage("mainnet", random_account(), status="PENDING"),
        lambda s: s.put_lineage("public", "GNOTANACCOUNT", status="PENDING"),
        lambda s: s.put_lineage("public", random_account()[:-1] + "A", status="PENDING"),
        lambda s: s.put_lineage("public", random_account(), no_such_column=1),
        lambda s: s.put_lineage("public", random_account(), status="DONE"),
        lambda s: s.get_children_page("public", random_account(), None, 1001),
        lambda s: s.get_children_page("public", random_account(), None, 0),
        lambda s: s.transition_search("devnet", random_account(), None, "PENDING"),
        lambda s: s.scan("system_schema", None, 10),
        lambda s: s.try_reserve_spend("November", 1, 2, T0),
    ],
    ids=["network", "malformed", "checksum", "column", "status", "page-over", "page-zero", "search-network", "scan-table", "month"],
)
def test_bad_input_is_a_clear_valueerror_and_writes_nothing(store, call):
    before = {t: sum(1 for _ in store.scan(t, None, 100000)) for t in ("account_lineage", "search_cache", "bigquery_spend_ledger")}
    with pytest.raises(ValueError) as info:
        call(store)
    assert isinstance(info.value, InvalidInput) and str(info.value)
    after = {t: sum(1 for _ in store.scan(t, None, 100000)) for t in before}
    assert after == before


def test_scan_is_bounded_and_filters_network(store):
    for _ in range(5):
        store.put_lineage("testnet", random_account(), status="COMPLETE")
    rows = list(store.scan("account_lineage", "testnet", 3))
    assert len(rows) == 3 and all(r["network_name"] == "testnet" for r in rows)
