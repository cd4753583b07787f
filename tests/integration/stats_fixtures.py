"""Fixtures and helpers of the stats / hva_recalc tests (imported by tests/integration/test_stats*.py,
test_hva*.py and test_openapi*.py).

These tests use `own_store` (tests/conftest.py): SQLite and the real Cassandra, each in a database
of its own (a fresh keyspace on Cassandra), because rankings and counters are per network: a
shared keyspace would mix in other tests' accounts. `recording(store)` is the same database behind a subclass of
the adapter that records every primitive call, to prove what did (or did not) reach the store.
"""
from __future__ import annotations

import uuid

from flask import Flask, request

from common.bootstrap import Container
from common.clock import SettableClock
from common.config import Settings
from common.store.port import Store

SITE = "http://site.example"
INTERNAL = "test-internal-token"
PRIMITIVES = sorted(Store.__abstractmethods__ - {"close", "ping", "applied_migrations", "actual_columns", "apply_migration_statement", "record_migration"})


def recording(store: Store, fail: dict | None = None) -> Store:
    """The same database behind a recording subclass of its adapter.

    `calls` lists (primitive, args). `fail` maps a primitive name to an exception to raise
    instead of running it (a crash injected at that exact point)."""
    base = type(store)
    namespace = {}
    for name in PRIMITIVES:
        def make(n):
            def method(self, *args, **kwargs):
                self.calls.append((n, args))
                boom = (self.fail or {}).get(n)
                if boom is not None:
                    raise boom
                return getattr(base, n)(self, *args, **kwargs)

            return method

        namespace[name] = make(name)
    cls = type(f"Recording{base.__name__}", (base,), namespace)
    if store.backend == "sqlite":
        rec = cls(store.path)
    else:
        rec = cls(store.settings)
    rec.calls = []
    rec.fail = dict(fail or {})
    return rec


def container(store, clock=None, limits: dict | None = None, **overrides) -> Container:
    """Route tests send many requests from one address on a frozen clock: stats' per-client
    limits are set far above that (tests/integration/test_stats_limits.py tests the limits)."""
    from local.stack_env import LOCAL_STATS_LIMITS

    settings = Settings.from_env(env={}, cors_origins=(SITE,), internal_token=INTERNAL, extra=dict(limits or LOCAL_STATS_LIMITS))
    return Container(settings, clock or SettableClock(), store=store, **overrides)


def app_for(handle, c) -> Flask:
    """A WSGI app that hands every request to one function handler (as functions-framework does)."""
    app = Flask(f"test-{uuid.uuid4().hex[:6]}")

    @app.route("/", defaults={"path": ""}, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
    @app.route("/<path:path>", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
    def entry(path):
        return handle(request, c)

    return app


def auth() -> dict:
    return {"Authorization": f"Bearer {INTERNAL}"}
