"""`make demo`'s command, `python -m local.stack`: it starts everything, prints the URLs, writes them
to the JSON file it names, answers a search, and Ctrl-C (SIGINT) stops every process it started."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse

import pytest

from tests.e2e.conftest import get_json
from tests.support import ROOT, random_account

pytestmark = pytest.mark.e2e


def listening(url: str) -> bool:
    host, port = urllib.parse.urlsplit(url).netloc.split(":")
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, int(port))) == 0


def test_the_demo_command_prints_its_urls_serves_and_stops_cleanly_on_ctrl_c(tmp_path):
    urls_file = tmp_path / "urls.json"
    out = open(tmp_path / "stdout.txt", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "local.stack", "--base-port", "0", "--workdir", str(tmp_path / "demo"), "--urls-file", str(urls_file),
         "--accounts", "300", "--airdrop-children", "200"],
        cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not urls_file.exists():
            assert proc.poll() is None, (tmp_path / "stdout.txt").read_text()
            assert time.monotonic() < deadline, "the demo did not write its URLs file"
            time.sleep(0.2)
        urls = json.loads(urls_file.read_text())
        printed = (tmp_path / "stdout.txt").read_text()
        assert f"URLs for scripts: {urls_file}" in printed
        for name in ("site", "search", "stats", "simulator"):
            assert urls[name] in printed
        assert set(urls) >= {"site", "search", "stats", "process_account", "api_fallback", "hva_recalc", "reset_stale",
                             "simulator", "horizon_public", "expert"}
        status, body = get_json(f"{urls['search']}/search?account={random_account()}")
        assert status == 202 and body["status"] == "PENDING"
        status, health = get_json(f"{urls['stats']}/health")
        assert status == 200 and health["store"]["reachable"] is True
        status, _ = get_json(f"{urls['simulator']}/_sim/health")
        assert status == 200
        everything = [u for k, u in urls.items() if k in ("site", "search", "stats", "process_account", "api_fallback",
                                                           "hva_recalc", "reset_stale", "simulator")]
        assert all(listening(u) for u in everything)
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(timeout=90) == 0
        assert not any(listening(u) for u in everything), [u for u in everything if listening(u)]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        out.close()


def test_a_taken_port_is_a_clear_one_line_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "local.stack", "--base-port", str(port), "--workdir", str(tmp_path / "d")],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert f"site {port}" in out.stderr and "--base-port" in out.stderr
