"""What each handler needs, typed: one small Protocol per handler (cosmicpython's bootstrap injects them).

`common.bootstrap.Container` builds every dependency lazily and satisfies each Protocol below
(tests/unit/test_deps.py checks it); tests pass their own Container with fakes or local adapters.
A handler's functions take the Protocol of their handler, so their signature says what they use.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol

if TYPE_CHECKING:
    from common.clock import Clock
    from common.config import PipelineConfig, Settings
    from common.enrichment.toml import StellarTomlSource
    from common.hubble.port import Hubble
    from common.queue.port import TaskQueue
    from common.ratelimit_clients import ClientRateLimiter
    from common.read_models.limits import StatsLimits
    from common.store.migrations import SchemaGate
    from common.store.port import FlowStore, ScheduledStore, StatsStore, SyncStore, WorkerStore
    from common.upstream.clients import Upstream


class PipelineDeps(Protocol):
    """common/pipeline.py: the account flow (lineage and search rows, stages; the queue for tasks)."""
    settings: Settings
    clock: Clock
    store: FlowStore
    queue: TaskQueue


class WorkerDeps(PipelineDeps, Protocol):
    """What both account workers read besides the flow: the schema gate and run-time configuration."""
    store: WorkerStore
    schema_gate: SchemaGate
    pipeline_config: Callable[[], PipelineConfig]


class ProcessAccountDeps(WorkerDeps, Protocol):
    """process_account: the Hubble path."""
    hubble: Hubble | None


class ApiFallbackDeps(WorkerDeps, Protocol):
    """api_fallback: Horizon + Stellar Expert, stellar.toml, and Hubble for what Horizon cannot see."""
    upstream: Upstream
    toml: StellarTomlSource | None
    hubble: Hubble | None


class HubbleSyncDeps(WorkerDeps, Protocol):
    """hubble_sync: the network-wide sync (and the hubble-sync queue)."""
    store: SyncStore
    hubble: Hubble | None


class SearchDeps(PipelineDeps, Protocol):
    """search: the cache, the flow, and its per-client limiter."""
    schema_gate: SchemaGate
    pipeline_config: Callable[[], PipelineConfig]
    search_options: dict[str, Any]
    search_rate_limiter: ClientRateLimiter


class StatsDeps(Protocol):
    """stats: read models only (and the configuration writes of /config)."""
    settings: Settings
    clock: Clock
    store: StatsStore
    schema_gate: SchemaGate
    pipeline_config: Callable[[], PipelineConfig]
    stats_limits: StatsLimits


class ScheduledDeps(Protocol):
    """hva_recalc and reset_stale (Cloud Scheduler): the store, the schedule's clock, and the queue."""
    settings: Settings
    clock: Clock
    store: ScheduledStore
    queue: TaskQueue
    schema_gate: SchemaGate
    pipeline_config: Callable[[], PipelineConfig]


class BulkQueueDeps(PipelineDeps, Protocol):
    """bulk_queue (operators): the flow, behind the schema gate."""
    schema_gate: SchemaGate
