"""The Go emulators (local/emulators.sh build; local/emulators.py) answer the real Google clients."""
from __future__ import annotations

import socket
import uuid

import pytest

from local.emulators import (
    BigQueryEmulator,
    CloudTasksEmulator,
    EmulatorFailed,
    EmulatorNotBuilt,
    binary,
    is_built,
)
from tests.support import require

pytestmark = [pytest.mark.integration, pytest.mark.emulator]

PROJECT, LOCATION = "stellarmap-test", "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"


def need(name: str) -> None:
    require(is_built(name), f"{name} binary in .cache/bin (run `local/emulators.sh build`)")


def test_cloud_tasks_emulator_creates_and_lists_queues():
    need("cloud-tasks-emulator")
    from google.cloud import tasks_v2

    with CloudTasksEmulator(queues=[f"{PARENT}/queues/lineage"]) as emu:
        assert emu.host.startswith("127.0.0.1:") and emu.env() == {"CLOUD_TASKS_EMULATOR_HOST": emu.host}
        client = emu.client()
        queue = tasks_v2.Queue(
            name=f"{PARENT}/queues/api-fallback",
            rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=2, max_concurrent_dispatches=4),
            retry_config=tasks_v2.RetryConfig(max_attempts=5),
        )
        created = client.create_queue(parent=PARENT, queue=queue)
        assert created.rate_limits.max_dispatches_per_second == 2
        names = sorted(q.name for q in client.list_queues(parent=PARENT))
        assert names == [f"{PARENT}/queues/api-fallback", f"{PARENT}/queues/lineage"]
        task = client.create_task(
            parent=f"{PARENT}/queues/lineage",
            task=tasks_v2.Task(
                name=f"{PARENT}/queues/lineage/tasks/t-{uuid.uuid4().hex[:8]}",
                schedule_time={"seconds": 4_000_000_000},  # far future: created, never dispatched here
                http_request=tasks_v2.HttpRequest(url="http://127.0.0.1:9/never", http_method=tasks_v2.HttpMethod.POST),
            ),
        )
        assert client.get_task(name=task.name).name == task.name
    assert not emu.running


def test_bigquery_emulator_creates_a_dataset_and_runs_a_query():
    need("bigquery-emulator")
    with BigQueryEmulator(project="test") as emu:
        assert emu.url.startswith("http://127.0.0.1:") and emu.env()["BIGQUERY_EMULATOR_HOST"] == emu.url
        client = emu.client()
        client.create_dataset("smoke")
        assert [d.dataset_id for d in client.list_datasets()] == ["smoke"]
        rows = list(client.query("SELECT 1 AS one, 'x' AS s").result())
        assert [(r["one"], r["s"]) for r in rows] == [(1, "x")]
        client.close()
    assert not emu.running


def test_bigquery_emulator_loads_yaml_data(tmp_path):
    need("bigquery-emulator")
    data = tmp_path / "data.yaml"
    data.write_text(
        """
projects:
  - id: test
    datasets:
      - id: hubble
        tables:
          - id: accounts
            columns:
              - name: account_id
                type: STRING
              - name: balance
                type: NUMERIC
            data:
              - account_id: GA
                balance: 10.5
              - account_id: GB
                balance: 20
"""
    )
    with BigQueryEmulator(project="test", data_yaml=data) as emu:
        client = emu.client()
        rows = list(client.query("SELECT account_id FROM `test.hubble.accounts` WHERE balance > 15").result())
        assert [r["account_id"] for r in rows] == ["GB"]
        client.close()


def test_missing_binary_names_the_build_command(tmp_path):
    with pytest.raises(EmulatorNotBuilt, match="local/emulators.sh build"):
        binary("cloud-tasks-emulator", tmp_path)
    with pytest.raises(EmulatorNotBuilt, match="local/emulators.sh build"):
        BigQueryEmulator(bin_dir=tmp_path).start()


def test_a_taken_port_is_refused():
    need("cloud-tasks-emulator")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        with pytest.raises(EmulatorFailed, match="already in use"):
            CloudTasksEmulator(port=squatter.getsockname()[1]).start()


def test_an_emulator_that_exits_at_startup_is_reported():
    need("bigquery-emulator")
    emu = BigQueryEmulator(project="test", database="/nonexistent-dir/sub/bq.db")
    with pytest.raises(EmulatorFailed, match="exited"):
        emu.start()
    assert not emu.running


@pytest.mark.parametrize(
    "make",
    [
        lambda: CloudTasksEmulator(queues=["lineage"]),
        lambda: CloudTasksEmulator(queues=["projects/p/locations/l/queues/bad_name"]),
        lambda: BigQueryEmulator(project="a b"),
        lambda: BigQueryEmulator(data_yaml="/nonexistent.yaml"),
    ],
    ids=["queue-not-a-path", "queue-id", "project", "yaml"],
)
def test_bad_arguments_are_valueerrors(make):
    with pytest.raises(ValueError):
        make()
