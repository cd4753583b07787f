"""Every packaged function zip answers a real request.

For each functions/<name> folder: build its zip with local/package.py (the layout Terraform
uploads), unzip it into a temp dir, install its requirements.txt into a venv of its own (cached
under .cache/package-venvs/ by the requirements' hash, so reruns are fast; pip's cache helps the
first run), start `functions-framework --target <entry point>` on a free loopback port against an
embedded SQLite store in the temp dir, and send one request the handler contract answers:

- search: a well-shaped G-address with a bad checksum -> 400 {"error": {"code": "invalid_checksum"}}
  (this also proves stellar-sdk is in the zip's requirements);
- stats: GET /health -> JSON with a status;
- internal and operator functions (any folder not public in terraform/locals.tf): POST without
  credentials -> 401 "unauthenticated", with a wrong bearer -> 403 "forbidden" (INTERNAL_TOKEN is
  set, as in the local stack; on GCP the platform's IAM check stands in front).

The venv holds only the zip's requirements, not this project, so an import of `common` can only
come from the zip itself; the test checks that too.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import hcl2
import pytest

from local import package
from local.processes import free_port, serve_function

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
VENV_CACHE = ROOT / ".cache" / "package-venvs"
INTERNAL_TOKEN = "package-test-internal-token"
BAD_CHECKSUM_ACCOUNT = "G" + "A" * 55


def _unquote(value):
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _hcl_functions() -> tuple[dict[str, str], set[str]]:
    """(folder -> entry point, public folders) from terraform/locals.tf."""
    with (ROOT / "terraform" / "locals.tf").open() as fh:
        locals_ = {k: v for block in hcl2.load(fh)["locals"] for k, v in block.items()}
    entries, public = {}, set()
    for access, group in locals_["function_definitions"].items():
        for name, spec in group.items():
            entries[_unquote(name)] = _unquote(spec["entry_point"])
            if _unquote(access) == "public":
                public.add(_unquote(name))
    return entries, public


ENTRY_POINTS, PUBLIC = _hcl_functions()
FUNCTIONS = package.function_names(ROOT)


def _infra_missing(why: str):
    if os.environ.get("CI") == "true":
        pytest.fail(why)
    pytest.skip(why)


def venv_for(requirements: Path) -> Path:
    """A venv with exactly `requirements` installed, reused while the file's content is unchanged."""
    digest = hashlib.sha256(requirements.read_bytes() + sys.version.encode()).hexdigest()[:16]
    venv = VENV_CACHE / digest
    ready = venv / ".stellarmap-ready"
    VENV_CACHE.mkdir(parents=True, exist_ok=True)
    with open(VENV_CACHE / f"{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready.exists() and _made_here(venv):
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        proc = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "--quiet",
             "-r", str(requirements)],
            capture_output=True, text=True, timeout=1500,
        )
        if proc.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            _infra_missing(f"pip could not install {requirements.name} (needs PyPI): {proc.stderr.strip()[-1500:]}")
        ready.write_text(requirements.read_text())
    return venv


def _made_here(venv: Path) -> bool:
    """pip writes the venv's own path into its scripts' shebangs: a venv copied or moved from
    another checkout cannot run them."""
    script = venv / "bin" / "functions-framework"
    return script.is_file() and script.read_text(errors="replace").split("\n", 1)[0] == f"#!{venv / 'bin' / 'python'}"


@contextlib.contextmanager
def serve(workdir: Path, venv: Path, entry_point: str, data_dir: Path):
    port = free_port()
    env = {
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(data_dir),
        "PYTHONDONTWRITEBYTECODE": "1",
        "STELLARMAP_STORE": "sqlite",
        "STELLARMAP_SQLITE_PATH": str(data_dir / "store.sqlite3"),
        "STELLARMAP_QUEUE": "local",
        "LOCAL_DISPATCHER_DB": str(data_dir / "dispatcher.sqlite3"),
        "HUBBLE_ENGINE": "none",
        "INTERNAL_TOKEN": INTERNAL_TOKEN,
        "CORS_ORIGINS": "http://localhost:8080",
        "HORIZON_URL_PUBLIC": "http://127.0.0.1:9/horizon/public",
        "HORIZON_URL_TESTNET": "http://127.0.0.1:9/horizon/testnet",
        "EXPERT_URL": "http://127.0.0.1:9/expert",
    }
    log_path = data_dir / "server.log"
    argv = [str(venv / "bin" / "functions-framework"), "--target", entry_point, "--source", "main.py",
            "--host", "127.0.0.1", "--port", str(port)]
    with serve_function(entry_point, env, log_path, argv=argv, cwd=workdir, port=port, timeout_s=120) as url:
        yield url, log_path


def request(url: str, method: str = "GET", body: dict | None = None, headers: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, json.loads(raw)
        except ValueError:
            pytest.fail(f"{method} {url} -> {err.code} with a non-JSON body: {raw[:500]!r}")


def probe_search(base: str) -> None:
    status, body = request(f"{base}/search?account={BAD_CHECKSUM_ACCOUNT}&network=public")
    assert status == 400, body
    assert body["error"]["code"] == "invalid_checksum" and body["error"]["field"] == "account", body


def probe_stats(base: str) -> None:
    status, body = request(f"{base}/health")
    assert status in (200, 503), body
    assert body["status"] in ("ok", "degraded"), body
    assert "schema" in body and "store" in body, body


def probe_internal(base: str) -> None:
    payload = {"network": "public"}
    status, body = request(base + "/", "POST", payload)
    assert status == 401 and body["error"]["code"] == "unauthenticated", (status, body)
    status, body = request(base + "/", "POST", payload, {"Authorization": "Bearer not-the-token"})
    assert status == 403 and body["error"]["code"] == "forbidden", (status, body)


PROBES = {"search": probe_search, "stats": probe_stats}


@pytest.fixture(scope="module")
def zips(tmp_path_factory) -> dict[str, Path]:
    if not FUNCTIONS:
        pytest.fail("no functions/<name>/main.py in the repository")
    out = tmp_path_factory.mktemp("zips")
    return {p.stem: p for p in package.build_all(out, ROOT)}


def test_every_function_folder_is_packaged_and_deployed():
    assert FUNCTIONS, "no functions/<name>/main.py in the repository"
    assert set(FUNCTIONS) == set(ENTRY_POINTS), "functions/ and terraform/locals.tf disagree"


@pytest.mark.timeout(2400)
@pytest.mark.parametrize("name", FUNCTIONS)
def test_packaged_zip_serves_a_request(name, zips, tmp_path):
    workdir = tmp_path / "app"
    with zipfile.ZipFile(zips[name]) as archive:
        archive.extractall(workdir)
    requirements = workdir / "requirements.txt"
    assert requirements.is_file(), f"{name}.zip has no requirements.txt"
    for line in requirements.read_text().splitlines():
        stripped = line.strip()
        assert not stripped.startswith(("-e", ".", "/", "file:")), f"{name}: requirements.txt installs a local path: {line}"

    venv = venv_for(requirements)
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import common, sys; print(common.__file__)"],
        cwd=workdir, capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"},
    )
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()).resolve().is_relative_to(workdir.resolve()), found.stdout

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with serve(workdir, venv, ENTRY_POINTS.get(name, name), data_dir) as (base, log_path):
        probe = PROBES.get(name, probe_internal if name not in PUBLIC else None)
        assert probe is not None, f"public function {name} has no probe; add one to PROBES"
        try:
            probe(base)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- server log ---\n{log_path.read_text()[-4000:]}") from None
