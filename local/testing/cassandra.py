"""The project's Cassandra (local/cassandra.sh) for the tests and the benchmarks."""
from __future__ import annotations

import os
import shutil
import subprocess

from local.processes import LOOPBACK, ROOT, port_open

CASSANDRA_PORT = int(os.environ.get("CASSANDRA_PORT", "9042"))


def cassandra_running() -> bool:
    return port_open(LOOPBACK, CASSANDRA_PORT)


def ensure_cassandra() -> tuple[bool, str]:
    """(available, reason). Starts the project's Cassandra with local/cassandra.sh if it is not up."""
    if cassandra_running():
        return True, ""
    script = ROOT / "local" / "cassandra.sh"
    if not script.exists():
        return False, "local/cassandra.sh is missing"
    if shutil.which("java") is None:
        return False, "Cassandra needs Java 17 (java not on PATH); start it with local/cassandra.sh start"
    proc = subprocess.run(["bash", str(script), "start"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        return False, f"local/cassandra.sh start failed: {(proc.stdout + proc.stderr)[-800:]}"
    return cassandra_running(), "Cassandra did not open its CQL port"


def quiet_cassandra_store(settings):
    """A CassandraStore whose driver does not track schema changes, for memory measurements: on
    the shared test Cassandra other keyspaces come and go all the time, and the driver's metadata
    of them would be counted (in production the keyspace is ours alone)."""
    from common.store.cassandra import CassandraStore

    class QuietCassandraStore(CassandraStore):
        def cluster_kwargs(self):
            return {**super().cluster_kwargs(), "schema_metadata_enabled": False}

    return QuietCassandraStore(settings)
