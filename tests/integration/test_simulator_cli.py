"""`python -m local.simulator` as a real process: serve, answer, stop on SIGINT; export; bad args."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import requests

from tests.support import ROOT

pytestmark = pytest.mark.integration

SMALL = ["--accounts", "250", "--airdrop-children", "300", "--seed", "4"]


def run(args, **kwargs):
    return subprocess.run([sys.executable, "-m", "local.simulator", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, **kwargs)


def test_serves_until_interrupted(tmp_path):
    urls_file = tmp_path / "urls.json"
    proc = subprocess.Popen([sys.executable, "-m", "local.simulator", "--port", "0", "--urls-file", str(urls_file), *SMALL,
                             "--horizon-rate-per-min", "600"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 120
        while not urls_file.exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the simulator did not start"
            time.sleep(0.05)
        urls = json.loads(urls_file.read_text())
        assert urls["env"]["HORIZON_URL_PUBLIC"] == urls["horizon_public"]
        health = requests.get(urls["simulator"] + "/_sim/health", timeout=30).json()
        assert health["networks"]["public"]["accounts"] == 250
        limits = requests.get(urls["simulator"] + "/_sim/limits", timeout=30).json()
        assert limits["horizon"]["rate_per_min"] == 600.0
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "export HORIZON_URL_PUBLIC=" in out


def test_export_mode_writes_files_and_exits(tmp_path):
    result = run(["--export", str(tmp_path), *SMALL])
    assert result.returncode == 0, result.stderr
    for network in ("public", "testnet"):
        assert (tmp_path / network / "enriched_history_operations.ndjson").stat().st_size > 0
        assert (tmp_path / network / "accounts_current.ndjson").stat().st_size > 0
    assert "rows ->" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--accounts", "5"], "accounts"),
        (["--host", "0.0.0.0"], "loopback"),
        (["--horizon-rate-per-min", "0"], "horizon_rate_per_min"),
        (["--faults", '{"horizon.account": {"500": 3}}'], "probability"),
        (["--now", "2016-01-01"], "now"),
    ],
)
def test_bad_arguments_exit_non_zero_with_a_reason(args, message):
    result = run([*args, "--port", "0"])
    assert result.returncode != 0
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_unparseable_arguments_are_refused_by_argparse():
    result = run(["--now", "yesterday"])
    assert result.returncode == 2 and "not an ISO-8601 time" in result.stderr


def test_main_is_importable_and_takes_argv_as_stellarmap_sim_calls_it(tmp_path):
    from local.simulator.__main__ import main  # importing must not start anything

    assert main(["--", "--export", str(tmp_path), *SMALL, "--retention-days", "0"]) == 0
    assert (tmp_path / "manifest.json").exists()
    assert main(["--accounts", "5"]) == 1
