"""Every handler's typed needs (common/deps.py) are built by the Container (common/bootstrap.py),
and no handler reaches past its Protocol for anything the Container builds."""
from __future__ import annotations

import ast
import inspect
import typing
from pathlib import Path

import pytest

from common import deps
from common.bootstrap import Container

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
PROTOCOLS = [obj for _, obj in inspect.getmembers(deps, inspect.isclass) if obj.__module__ == deps.__name__]
CONTAINER_ATTRS = {n for n, v in vars(Container).items() if isinstance(v, property) or (callable(v) and not n.startswith("_"))}


def _needs(protocol) -> set[str]:
    return {n for klass in protocol.__mro__ if klass.__module__ == deps.__name__ for n in klass.__annotations__}


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.__name__)
def test_the_container_builds_everything_a_handler_declares(protocol):
    missing = _needs(protocol) - CONTAINER_ATTRS - {"settings", "clock"}  # plain attributes set in __init__
    assert not missing, f"{protocol.__name__} needs {sorted(missing)}, which the Container does not build"
    assert {"settings", "clock"} <= set(typing.get_type_hints(protocol, localns=vars(deps), globalns=_type_names()))


def _type_names() -> dict:
    from common.clock import Clock
    from common.config import PipelineConfig, Settings
    from common.enrichment.toml import StellarTomlSource
    from common.hubble.port import Hubble
    from common.queue.port import TaskQueue
    from common.ratelimit_clients import ClientRateLimiter
    from common.read_models.limits import StatsLimits
    from common.store.migrations import SchemaGate
    from common.store.port import FlowStore, ScheduledStore, StatsStore, Store, SyncStore, WorkerStore
    from common.upstream.clients import Upstream

    return {**vars(typing), **locals()}


MODULE_DEPS = {
    "common/pipeline.py": "PipelineDeps", "common/bulk.py": "PipelineDeps", "common/handlers/worker.py": "PipelineDeps",
    "common/handlers/process_account.py": "ProcessAccountDeps", "common/handlers/api_fallback.py": "ApiFallbackDeps",
    "common/handlers/api_hubble.py": "ApiFallbackDeps", "common/handlers/search.py": "SearchDeps",
    "common/handlers/stats.py": "StatsDeps", "common/read_models/health.py": "StatsDeps",
    "common/handlers/reset_stale.py": "ScheduledDeps", "common/handlers/hva_recalc.py": "ScheduledDeps",
    "common/handlers/bulk_queue.py": "BulkQueueDeps", "common/handlers/hubble_sync.py": "HubbleSyncDeps",
}


@pytest.mark.parametrize("path", sorted(MODULE_DEPS))
def test_every_function_taking_the_dependencies_types_them_and_uses_only_what_it_declares(path):
    tree = ast.parse((ROOT / path).read_text())
    needs = _needs(getattr(deps, MODULE_DEPS[path])) | {"pipeline_config"}
    untyped, beyond = [], set()
    for fn in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
        args = [a for a in fn.args.posonlyargs + fn.args.args if a.arg == "c"]
        if not args:
            continue
        if args[0].annotation is None:
            untyped.append(fn.name)
        beyond |= {n.attr for n in ast.walk(fn) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                   and n.value.id == "c" and n.attr in CONTAINER_ATTRS | {"settings", "clock"}} - needs
    assert not untyped, f"{path}: untyped dependencies in {untyped}"
    assert not beyond, f"{path} uses {sorted(beyond)} beyond {MODULE_DEPS[path]}"
    assert "extra(" not in (ROOT / path).read_text(), "no string-keyed lookups"


def _store_view(protocol):
    hints = typing.get_type_hints(protocol, localns=vars(deps), globalns=_type_names())
    return hints["store"]


def _store_calls(tree) -> set[str]:
    """Methods called on `c.store` or on a local `store` (= c.store) in a module."""
    calls = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute):
            target = n.func.value
            if (isinstance(target, ast.Name) and target.id == "store") or (
                    isinstance(target, ast.Attribute) and target.attr == "store" and isinstance(target.value, ast.Name) and target.value.id == "c"):
                calls.add(n.func.attr)
    return calls


CALLING_THE_STORE = sorted(p for p in MODULE_DEPS if _store_calls(ast.parse((ROOT / p).read_text())))


def test_the_store_call_check_sees_the_handlers():
    assert {"common/pipeline.py", "common/handlers/process_account.py", "common/handlers/stats.py",
            "common/handlers/hubble_sync.py"} <= set(CALLING_THE_STORE)


@pytest.mark.parametrize("path", CALLING_THE_STORE)
def test_a_handler_calls_only_the_store_ports_its_dependencies_name(path):
    view = _store_view(getattr(deps, MODULE_DEPS[path]))
    allowed = {n for n in dir(view) if not n.startswith("_")}
    used = _store_calls(ast.parse((ROOT / path).read_text()))
    assert used <= allowed, f"{path} calls {sorted(used - allowed)}, beyond {view.__name__}"


def test_the_store_views_narrow_the_bundle():
    from common.store.port import FlowStore, StatsStore, Store, SyncStore

    everything = {n for n in dir(Store) if not n.startswith("_")}
    assert {n for n in dir(FlowStore) if not n.startswith("_")} < everything
    assert "bulk_add_creations" not in dir(StatsStore) and "scan" not in dir(SyncStore)
