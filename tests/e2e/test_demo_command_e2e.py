"""`make demo`'s command, `python -m local.stack`: it starts everything, with the embedded Hubble
loaded from the simulator's tables (once per network: a restart reuses it), prints the URLs, writes
them to the JSON file it names, answers a search, and Ctrl-C (SIGINT) stops every process it started.
After Ctrl-C it starts again at once on the same ports, and the `stellarmap` command acts on it with
no flags (through the URLs file at .local-data/stack-urls.json)."""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
import urllib.parse

import pytest

from tests.e2e.conftest import get_json
from tests.support import ROOT, operator_cli, random_account

pytestmark = pytest.mark.e2e



def _stop_demo(proc) -> None:
    """A failed check still stops the whole stack: Ctrl-C first (the demo stops its own processes,
    which run in sessions of their own), SIGKILL only if it does not exit."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)

def listening(url: str) -> bool:
    host, port = urllib.parse.urlsplit(url).netloc.split(":")
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, int(port))) == 0


DEMO_ARGS = ["--accounts", "300", "--airdrop-children", "200"]


def start_demo(tmp_path, *extra):
    urls_file = tmp_path / "urls.json"
    urls_file.unlink(missing_ok=True)
    out = open(tmp_path / "stdout.txt", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "local.stack", "--base-port", "0", "--workdir", str(tmp_path / "demo"), "--urls-file", str(urls_file),
         *DEMO_ARGS, *extra],
        cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )
    return proc, out, urls_file


def wait_for_urls(proc, urls_file, tmp_path) -> dict:
    deadline = time.monotonic() + 240
    while not urls_file.exists():
        assert proc.poll() is None, (tmp_path / "stdout.txt").read_text()
        assert time.monotonic() < deadline, "the demo did not write its URLs file"
        time.sleep(0.2)
    return json.loads(urls_file.read_text())


def stop(proc, urls: dict) -> None:
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    assert proc.wait(timeout=90) == 0
    assert not any(listening(u) for k, u in urls.items() if k in ("site", "search", "simulator")), urls


def test_the_demo_command_prints_its_urls_serves_and_stops_cleanly_on_ctrl_c(tmp_path):
    proc, out, urls_file = start_demo(tmp_path)
    try:
        urls = wait_for_urls(proc, urls_file, tmp_path)
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
        # The demo's default Hubble: the simulator's tables in DuckDB, loaded at this first start
        hubble = json.loads(urls_file.read_text())["stack"]["hubble"]
        assert hubble == {"engine": "duckdb", "simulated": "loaded", "duckdb_path": hubble["duckdb_path"]}
        assert Path(hubble["duckdb_path"]).is_file(), "the CLI's `hubble sync` finds the demo's embedded Hubble here"
        assert "embedded Hubble loaded into" in printed
    finally:
        _stop_demo(proc)
        out.close()
    db = tmp_path / "demo" / "hubble.duckdb"
    assert db.is_file() and not (tmp_path / "demo" / "hubble-export").exists()
    from local.stack import LocalStack

    same = LocalStack(tmp_path / "demo", accounts=300, seed=7, sim_options={"airdrop_children": 200})
    assert (tmp_path / "demo" / "hubble.duckdb.key").read_text().strip() == same.simulated_hubble_key()
    assert LocalStack(tmp_path / "x", accounts=300, seed=8, sim_options={"airdrop_children": 200}).simulated_hubble_key() != \
        same.simulated_hubble_key()
    assert LocalStack(tmp_path / "x", accounts=300, seed=7, sim_options={"airdrop_children": 200, "horizon_rate_per_min": 5}
                      ).simulated_hubble_key() == same.simulated_hubble_key(), "rate limits do not change the tables"
    loaded_at = db.stat().st_mtime_ns
    # A restart of the same network reuses the loaded file
    proc, out, urls_file = start_demo(tmp_path)
    try:
        urls = wait_for_urls(proc, urls_file, tmp_path)
        hubble = json.loads(urls_file.read_text())["stack"]["hubble"]
        assert hubble == {"engine": "duckdb", "simulated": "reused", "duckdb_path": hubble["duckdb_path"]}
        assert "embedded Hubble: reusing" in (tmp_path / "stdout.txt").read_text()
        assert db.stat().st_mtime_ns == loaded_at
        stop(proc, urls)
    finally:
        _stop_demo(proc)
        out.close()
    # --hubble none keeps the API-only mode
    proc, out, urls_file = start_demo(tmp_path, "--hubble", "none")
    try:
        urls = wait_for_urls(proc, urls_file, tmp_path)
        hubble = json.loads(urls_file.read_text())["stack"]["hubble"]
        assert (hubble["engine"], hubble["simulated"], hubble.get("duckdb_path")) == ("none", None, None)
        status, body = get_json(f"{urls['search']}/search?account={random_account()}")
        assert status == 202, body
        stop(proc, urls)
    finally:
        _stop_demo(proc)
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


def _free_base_port() -> int:
    """A base port whose demo ports (BASE..BASE+6 and the simulator's BASE+20) are all free."""
    from local.processes import port_free
    from local.stack import PORT_ORDER, SIM_PORT_OFFSET

    for _ in range(200):
        base = random.randrange(20_000, 60_000)
        if all(port_free(base + i) for i in [*range(len(PORT_ORDER)), SIM_PORT_OFFSET]):
            return base
    raise AssertionError("no free range of demo ports")


class Demo:
    """`python -m local.stack` on fixed ports, laid out as `make demo` lays out the repository."""

    def __init__(self, root, base_port: int):
        self.root, self.base_port = root, base_port
        self.urls_file = root / ".local-data" / "stack-urls.json"
        self.proc = None
        self.out = None

    def start(self, timeout_s: float = 180) -> dict:
        self.urls_file.unlink(missing_ok=True)
        self.out = open(self.root / f"stdout-{time.monotonic_ns()}.txt", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "local.stack", "--base-port", str(self.base_port), "--workdir", str(self.root / ".local-data" / "demo"),
             "--urls-file", str(self.urls_file), "--accounts", "300", "--airdrop-children", "200"],
            cwd=ROOT, stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while not self.urls_file.exists():
            assert self.proc.poll() is None, open(self.out.name).read()
            assert time.monotonic() < deadline, "the demo did not write its URLs file"
            time.sleep(0.2)
        return json.loads(self.urls_file.read_text())

    def ctrl_c(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=90)
        self.out.close()
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.out is not None:
            self.out.close()


def test_the_demo_restarts_at_once_on_its_ports_and_the_cli_finds_it_with_no_flags(tmp_path):
    base = _free_base_port()
    demo = Demo(tmp_path, base)
    try:
        urls = demo.start()
        assert urls["site"] == f"http://127.0.0.1:{base}" and urls["simulator"] == f"http://127.0.0.1:{base + 20}"
        for _ in range(20):  # connections the server closes first: their ports wait in TIME_WAIT after Ctrl-C
            assert get_json(f"{urls['stats']}/health")[0] == 200
            assert get_json(f"{urls['search']}/search?account={random_account()}")[0] == 202
        status = operator_cli("status", "--json", cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        body = json.loads(status.stdout)
        assert body["store"]["reachable"] and body["schema"]["ok"] and set(body["queues"]) == {"lineage", "api-fallback"}
        assert all(isinstance(depth, int) for depth in body["queues"].values()), body["queues"]
        config = operator_cli("config", "get", "cache_ttl_hours", cwd=tmp_path)
        assert config.returncode == 0 and config.stdout.strip() == "12", config.stderr
        _, picked = get_json(f"{urls['simulator']}/_sim/accounts/public?kind=recent&limit=1")
        account = picked["accounts"][0]["account"]
        queued = operator_cli("queue", "--file", "-", input=account + "\n", cwd=tmp_path)
        assert queued.returncode == 0 and "1 enqueued" in queued.stderr, queued.stderr
        deadline = time.monotonic() + 240
        while True:  # the demo's dispatcher delivers what the command queued
            code, answer = get_json(f"{urls['search']}/search?account={account}")
            if code == 200:
                assert answer["status"] == "COMPLETE"
                break
            assert code == 202 and time.monotonic() < deadline, (code, answer)
            time.sleep(1)
        assert demo.ctrl_c() == 0
        started = time.monotonic()
        again = demo.start()  # at once, on the same ports (it once failed for ~60 s: "port(s) in use")
        assert again["site"] == urls["site"] and again["search"] == urls["search"]
        assert time.monotonic() - started < 120
        code, answer = get_json(f"{again['search']}/search?account={account}")
        assert code == 200 and answer["status"] == "COMPLETE", "the data stayed in the workdir"
        assert demo.ctrl_c() == 0
    finally:
        demo.kill()
