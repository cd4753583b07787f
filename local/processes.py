"""Child processes on loopback ports: for the local stack, the emulators, the tests and the benchmarks.

    port = free_port()
    with serve_function("search", env, log_path) as url:   # functions-framework, until the block ends
        ...
    proc = Proc("dispatcher", argv, env, log_path); proc.start(); proc.stop()   # a supervised process group
    stop_process(popen)                                     # SIGTERM, then SIGKILL after a timeout
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback never goes through a proxy


def free_port() -> int:
    """A loopback port nothing listens on now (the OS's choice)."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Something accepts connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_free(port: int) -> bool:
    """Nothing listens on the port. The probe binds as the servers do (SO_REUSEADDR), so a port whose
    last connections still wait in TIME_WAIT (a demo stopped a moment ago) is free; a listener is not."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
            return True
        except OSError:
            return False


def _signal(proc: subprocess.Popen, sig: int, group: bool) -> None:
    try:
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_process(proc: subprocess.Popen, timeout_s: float = 20.0, group: bool = False) -> None:
    """SIGTERM, then SIGKILL when it has not exited within timeout_s. With `group` (a process started
    with start_new_session=True) the whole group gets the signals, and whatever it still holds (a
    gunicorn worker) is killed at the end."""
    if proc.poll() is None:
        _signal(proc, signal.SIGTERM, group)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _signal(proc, signal.SIGKILL, group)
            proc.wait(timeout=timeout_s)
    if group:
        _signal(proc, signal.SIGKILL, group)


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file (for error messages)."""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """(status, body) of a GET without a proxy; an HTTP error status is an answer, not an exception."""
    try:
        with _DIRECT.open(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_post_json(url: str, body: dict, token: str | None = None, timeout: float = 60.0) -> tuple[int, dict]:
    """(status, JSON body) of a POST without a proxy; a body that is not JSON comes back as {"raw": ...}."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers=headers)
    try:
        with _DIRECT.open(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw or b"{}")
        except ValueError:
            return exc.code, {"raw": raw[:500].decode("utf-8", "replace")}


@dataclasses.dataclass
class Proc:
    """A supervised child: its own process group, its output appended to log_path; restartable."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== {dt.datetime.now(dt.timezone.utc).isoformat()} start: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive:
            _signal(self.popen, sig, group=True)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(timeout=30)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.popen is not None:
            stop_process(self.popen, timeout_s, group=True)


def functions_framework_argv(target: str, port: int, source: str | os.PathLike | None = None) -> list[str]:
    """functions-framework serving functions/<target>/main.py (or `source`) on LOOPBACK:port."""
    exe = Path(sys.executable).with_name("functions-framework")
    argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "functions_framework"]
    return argv + ["--target", target, "--source", str(source or ROOT / "functions" / target / "main.py"),
                   "--host", LOOPBACK, "--port", str(port)]


def wait_http(url: str, proc: subprocess.Popen, log_path: Path, what: str, timeout_s: float = 60.0,
              error: type[Exception] = RuntimeError) -> None:
    """Until GET url gets any HTTP answer; `error` (with the log's tail) when proc exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise error(f"{what} exited during startup (log {log_path}):\n{tail(log_path)}")
        try:
            http_get(url, timeout=2.0)
            return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise error(f"{what} did not answer within {timeout_s:.0f} s (log {log_path}):\n{tail(log_path)}")
        time.sleep(0.1)


@contextlib.contextmanager
def serve_function(target: str, env: dict[str, str], log_path: Path, *, argv: list[str] | None = None,
                   source: str | os.PathLike | None = None, cwd: Path = ROOT, port: int | None = None,
                   timeout_s: float = 60.0) -> Iterator[str]:
    """A function under functions-framework on a free port (its URL), stopped when the block ends.

    `env` is the whole environment of the process; `argv` replaces the command (another
    interpreter's functions-framework), with `port` the one it listens on."""
    port = port or free_port()
    command = argv or functions_framework_argv(target, port, source)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://{LOOPBACK}:{port}"
    try:
        wait_http(url + "/", proc, log_path, f"function {target}", timeout_s)
        yield url
    finally:
        stop_process(proc, group=True)
