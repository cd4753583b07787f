"""Start the Go emulators (built by `local/emulators.sh build` into .cache/bin/) on 127.0.0.1.

    from local.emulators import BigQueryEmulator, CloudTasksEmulator

    with CloudTasksEmulator(queues=["projects/p/locations/l/queues/lineage"]) as ct:
        ct.host   # "127.0.0.1:PORT" (gRPC)   ct.env() -> {"CLOUD_TASKS_EMULATOR_HOST": ct.host}
    with BigQueryEmulator(project="test") as bq:
        bq.url    # "http://127.0.0.1:PORT" (REST)   bq.env() -> {"BIGQUERY_EMULATOR_HOST": bq.url, "BIGQUERY_PROJECT": "test"}

Each context manager starts the binary on a free loopback port (or the one given), waits until
it answers (gRPC channel ready / REST `datasets.list` 200), and stops it on exit (SIGTERM, then
SIGKILL). A missing binary raises EmulatorNotBuilt naming `local/emulators.sh build`.

Notes on the emulators' behaviour (aertje/cloud-tasks-emulator v1.2.0, goccy/bigquery-emulator v0.8.1):
- Cloud Tasks: gRPC only. It dispatches HTTP tasks itself, honouring the queue's rate limits and
  retry config, and sends an OIDC token when the task asks for one (issuer
  `http://cloud-tasks-emulator`). Its optional OpenID discovery server listens on 0.0.0.0, so it is
  not enabled here (loopback only). A queue rate below 1 dispatch/s crashes it.
- BigQuery: REST on `port`, the Storage API (gRPC) on `grpc_port`; `data_yaml` preloads
  projects/datasets/tables (its `--data-from-yaml` format).
"""
from __future__ import annotations

import abc
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Sequence

from local.processes import LOOPBACK, free_port, port_free, stop_process

ROOT = Path(__file__).resolve().parents[1]
BIN_DIR = ROOT / ".cache" / "bin"


class EmulatorNotBuilt(FileNotFoundError):
    """The emulator binary is not in .cache/bin/."""


class EmulatorFailed(RuntimeError):
    """The emulator exited or did not answer in time; the message carries the tail of its log."""


def binary(name: str, bin_dir: Path | None = None) -> Path:
    path = Path(bin_dir or BIN_DIR) / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise EmulatorNotBuilt(f"{name} is not built ({path} is missing): run `local/emulators.sh build` first")
    return path


def is_built(name: str, bin_dir: Path | None = None) -> bool:
    try:
        binary(name, bin_dir)
        return True
    except EmulatorNotBuilt:
        return False


class _Emulator(abc.ABC):
    name = ""
    start_timeout_s = 60.0

    def __init__(self, bin_dir: Path | None = None):
        self._bin_dir = bin_dir
        self._proc: subprocess.Popen | None = None
        self._log_file = None
        self.log_path: Path | None = None

    @abc.abstractmethod
    def argv(self) -> list[str]:
        """Command-line arguments of the binary."""

    @abc.abstractmethod
    def ready(self) -> bool:
        """True once the emulator answers a real request (may raise while it is starting)."""

    @abc.abstractmethod
    def _ports(self) -> list[int]:
        """The loopback ports it will listen on."""

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> "_Emulator":
        if self.running:
            return self
        exe = binary(self.name, self._bin_dir)
        for port in self._ports():
            if not port_free(port):
                raise EmulatorFailed(f"{self.name}: port {LOOPBACK}:{port} is already in use")
        fd, log = tempfile.mkstemp(prefix=f"{self.name}-", suffix=".log")
        os.close(fd)
        self.log_path = Path(log)
        self._log_file = open(self.log_path, "wb")
        self._proc = subprocess.Popen(
            [str(exe), *self.argv()],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            if self._proc.poll() is not None:
                why = self.log_tail()
                self._cleanup()
                raise EmulatorFailed(f"{self.name} exited with code {self._proc.returncode} during startup: {why}")
            try:
                if self.ready():
                    return self
            except Exception:  # noqa: BLE001 - not ready yet
                pass
            if time.monotonic() > deadline:
                why = self.log_tail()
                self.stop()
                raise EmulatorFailed(f"{self.name} did not answer within {self.start_timeout_s:.0f}s: {why}")
            time.sleep(0.1)

    def log_tail(self, lines: int = 15) -> str:
        if not self.log_path or not self.log_path.exists():
            return "(no output)"
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:]) or "(no output)"

    def stop(self, timeout_s: float = 10.0) -> None:
        proc = self._proc
        if proc is not None:
            stop_process(proc, timeout_s, group=True)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        if self.log_path is not None and self.log_path.exists():
            self.log_path.unlink()


class CloudTasksEmulator(_Emulator):
    """aertje/cloud-tasks-emulator: the Cloud Tasks gRPC API on 127.0.0.1:port.

    `queues` are full names, `projects/P/locations/L/queues/Q`, created at startup (the emulator
    dispatches their tasks to the tasks' HTTP targets).
    """

    name = "cloud-tasks-emulator"

    def __init__(self, port: int = 0, queues: Sequence[str] = (), bin_dir: Path | None = None):
        super().__init__(bin_dir)
        for q in queues:
            parts = q.split("/")
            if len(parts) != 6 or parts[0] != "projects" or parts[2] != "locations" or parts[4] != "queues" or not all(parts):
                raise ValueError(f"queue must be projects/P/locations/L/queues/Q, got {q!r}")
            if not all(c.isalnum() or c == "-" for c in parts[5]):
                raise ValueError(f"queue id may hold only letters, digits and hyphens, got {parts[5]!r}")
        self.queues = list(queues)
        self.port = int(port) or free_port()

    @property
    def host(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def env(self) -> dict[str, str]:
        return {"CLOUD_TASKS_EMULATOR_HOST": self.host}

    def _ports(self) -> list[int]:
        return [self.port]

    def argv(self) -> list[str]:
        args = ["-host", LOOPBACK, "-port", str(self.port)]
        for q in self.queues:
            args += ["-queue", q]
        return args

    def ready(self) -> bool:
        # The emulator creates its start-up queues before it serves, so a ready gRPC channel
        # means the queues exist.
        import grpc

        with grpc.insecure_channel(self.host) as channel:
            grpc.channel_ready_future(channel).result(timeout=1.0)
        return True

    def client(self):
        """A google-cloud-tasks CloudTasksClient talking to this emulator (insecure gRPC)."""
        import grpc
        from google.cloud import tasks_v2
        from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

        return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=grpc.insecure_channel(self.host)))


class BigQueryEmulator(_Emulator):
    """goccy/bigquery-emulator: the BigQuery REST API on 127.0.0.1:port (Storage API on grpc_port)."""

    name = "bigquery-emulator"

    def __init__(
        self,
        project: str = "test",
        port: int = 0,
        grpc_port: int = 0,
        data_yaml: str | os.PathLike | None = None,
        dataset: str | None = None,
        database: str | os.PathLike | None = None,
        bin_dir: Path | None = None,
    ):
        super().__init__(bin_dir)
        if not project or not all(c.isalnum() or c in "-_" for c in project):
            raise ValueError(f"project must be a plain id (letters, digits, - and _), got {project!r}")
        if data_yaml is not None and not Path(data_yaml).is_file():
            raise ValueError(f"data_yaml {data_yaml} is not a file")
        self.project = project
        self.dataset = dataset
        self.data_yaml = str(data_yaml) if data_yaml is not None else None
        self.database = str(database) if database is not None else None
        self.port = int(port) or free_port()
        self.grpc_port = int(grpc_port) or free_port()
        while self.grpc_port == self.port:
            self.grpc_port = free_port()

    @property
    def host(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def env(self) -> dict[str, str]:
        return {"BIGQUERY_EMULATOR_HOST": self.url, "BIGQUERY_PROJECT": self.project}

    def _ports(self) -> list[int]:
        return [self.port, self.grpc_port]

    def argv(self) -> list[str]:
        args = [
            f"--project={self.project}",
            f"--host={LOOPBACK}",
            f"--port={self.port}",
            f"--grpc-port={self.grpc_port}",
            "--log-level=warn",
        ]
        if self.dataset:
            args.append(f"--dataset={self.dataset}")
        if self.data_yaml:
            args.append(f"--data-from-yaml={self.data_yaml}")
        if self.database:
            args.append(f"--database={self.database}")
        return args

    def ready(self) -> bool:
        import urllib.request

        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
        with direct.open(f"{self.url}/bigquery/v2/projects/{self.project}/datasets", timeout=1.0) as resp:
            return resp.status == 200

    def client(self):
        """A google-cloud-bigquery Client pointed at this emulator with anonymous credentials."""
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        return bigquery.Client(project=self.project, credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=self.url))
