"""The network-wide Hubble sync through google-cloud-bigquery against the goccy BigQuery emulator
(issue 15, item 6): a small simulated network loaded under Hubble's own names, synced by the
hubble_sync handler with pages of results read from the job, gives every account's truth."""
from __future__ import annotations

import json

import pytest

from common.bootstrap import Container
from common.clock import SettableClock
from common.config import PipelineConfig, Settings
from common.handlers import hubble_sync
from common.hubble.bigquery import BigQueryHubble
from common.store import migrations
from common.store.sqlite import SQLiteStore
from local.hubble_load import EMULATOR_CHUNK_BYTES, load_bigquery
from local.simulator.hubble import export
from local.simulator.network import Network, NetworkConfig
from local.testing.fakes import TaskRunner, call_handler, http_answer
from tests.integration.test_hubble_emulator import PROJECT, emulator_class
from tests.sync_truth import compare_sync_with_truth

pytestmark = [pytest.mark.integration, pytest.mark.emulator]


def test_a_small_network_synced_through_the_bigquery_emulator_equals_the_truth(tmp_path):
    net = Network(NetworkConfig(accounts=200, airdrop_children=800, seed=59))
    export({"public": net}, tmp_path / "export")
    BigQueryEmulator = emulator_class()
    with BigQueryEmulator(project=PROJECT) as bq:
        load_bigquery(bq.client(), tmp_path / "export", "public", chunk_bytes=EMULATOR_CHUNK_BYTES, only_needed_columns=True)
        engine = BigQueryHubble.from_settings(Settings.from_env(env={}, extra=bq.env()))
        store = SQLiteStore(tmp_path / "store.sqlite3")
        assert migrations.migrate(store).ok
        clock = SettableClock(net.now)
        # 366-day ranges: few emulator jobs (the emulator runs each query in jobs.insert, and its dry
        # run executes it too); pages of 200 rows: several result pages per range and for accounts_current
        settings = Settings.from_env(env={}, extra={"HUBBLE_SYNC_RANGE_DAYS": "366", "HUBBLE_SYNC_PAGE_ROWS": "200"})
        c = Container(settings, clock, store=store, queue=TaskRunner(clock), hubble=engine, pipeline_config=PipelineConfig.from_stored({}))
        resp = call_handler(hubble_sync.handle, c, {"network": "public", "mode": "full"})
        planned = json.loads(resp.get_data())
        assert resp.status_code == 200 and planned["ranges"] == planned["enqueued"] > 1, planned
        c.queue.drain({"hubble-sync": lambda p: http_answer(call_handler(hubble_sync.handle, c, p))})
        assert not c.queue.dropped
        state = store.get_sync_state("public")
        assert state.status == "DONE" and state.ranges_done == planned["ranges"] and state.accounts == net.total
        problems, figures = compare_sync_with_truth(store, "public", net)
        assert problems == [], problems[:20]
        assert figures["accounts"] == net.total and figures["max_children"] == 800
        assert len(store.get_spend_ledger(net.now.strftime("%Y-%m"), 1000)) == planned["ranges"] + 1
        engine.close()
