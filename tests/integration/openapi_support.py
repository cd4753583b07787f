"""Shared by the OpenAPI tests: the document, a validator for real responses, the schemathesis
setup (the `stellar-account` format, per-operation allowances), a seeded store and a
functions-framework server running a function's real entry point."""
from __future__ import annotations

import contextlib
import datetime as dt
import os
from decimal import Decimal
from pathlib import Path

import yaml

from local.processes import serve_function

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = ROOT / "openapi.yaml"
T0 = dt.datetime(2026, 5, 1, 12, tzinfo=dt.timezone.utc)

# Rules between parameters that JSON Schema cannot express, so a schema-valid request may still be
# refused with a 400 (schemathesis' positive_data_acceptance is told so, for these operations only):
# /query: a filter's column must belong to the table and its value match the column's type; a
# preset's `value` has preset-specific meaning; preset and table exclude each other.
SCHEMATHESIS_CONFIG = """
[[operations]]
include-path = "/query"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404", "429"]
"""


def load_spec() -> dict:
    with OPENAPI.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


class ResponseValidator:
    """Validates a real response against the document's schema for its path, method and status."""

    def __init__(self, spec: dict):
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT4

        self.spec = spec
        self.registry = Registry().with_resource("urn:openapi", Resource.from_contents(spec, default_specification=DRAFT4))

    def _response(self, path: str, method: str, status: int) -> tuple[dict, str]:
        responses = self.spec["paths"][path][method.lower()]["responses"]
        key = str(status)
        assert key in responses, f"{method} {path}: status {status} is not documented ({sorted(responses)})"
        response, pointer = responses[key], _pointer("paths", path, method.lower(), "responses", key)
        if "$ref" in response:
            pointer = response["$ref"][2:]  # "#/components/responses/X" -> "components/responses/X"
            response = self._walk(pointer)
        return response, pointer

    def _walk(self, pointer: str) -> dict:
        node = self.spec
        for part in pointer.split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def validate(self, path: str, method: str, status: int, content_type: str, body) -> None:
        from openapi_schema_validator import OAS30Validator, oas30_format_checker

        response, pointer = self._response(path, method, status)
        media = content_type.split(";")[0].strip()
        content = response.get("content") or {}
        assert media in content, f"{method} {path} {status}: content type {media} is not documented ({sorted(content)})"
        schema = {"$ref": f"urn:openapi#/{pointer}/content/{_pointer(media)}/schema"}
        validator = OAS30Validator(schema, registry=self.registry, format_checker=oas30_format_checker)
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        assert not errors, f"{method} {path} {status}: " + "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])


def register_formats() -> None:
    """`stellar-account`: a valid StrKey G… address (the checksum a pattern cannot express)."""
    import schemathesis
    from hypothesis import strategies as st
    from stellar_sdk import StrKey

    schemathesis.openapi.format("stellar-account", st.binary(min_size=32, max_size=32).map(StrKey.encode_ed25519_public_key))


def schemathesis_schema(tag: str):
    import schemathesis
    from schemathesis.config import SchemathesisConfig

    register_formats()
    config = SchemathesisConfig.from_str(SCHEMATHESIS_CONFIG)
    others = sorted({"search", "stats"} - {tag})
    # exclude, not include: includes are OR-ed with the config's per-operation sections
    return schemathesis.openapi.from_path(OPENAPI, config=config).exclude(tag=others)


# ------------------------------------------------------------------ seeded data
def seed(store) -> dict:
    """A small but complete picture: a chain from genesis, a fan-out with a summary, rankings,
    events, stages, pending work, cache entries, spend, cron runs. Returns the accounts used."""
    from common import pipeline
    from common.bootstrap import Container
    from common.clock import SettableClock
    from common.config import Settings
    from common.domain import GENESIS_ACCOUNT, ChildEdge, CronRun, StageExecution
    from common.handlers.hva_recalc import run as hva_run
    from local.testing.fakes import RecordingQueue
    from tests.support import random_account

    clock = SettableClock(T0)
    c = Container(Settings.from_env(env={}), clock, store=store, queue=RecordingQueue())
    chain = [GENESIS_ACCOUNT] + [random_account() for _ in range(3)]
    for parent, child in zip(chain, chain[1:]):
        store.put_lineage("public", child, stellar_creator_account=parent, account_creation_date=T0, xlm_balance=Decimal("12.5"),
                          home_domain="chain.example", status="COMPLETE", pipeline_source="API", updated_at=T0, last_pipeline_attempt=T0)
        store.add_children("public", parent, [ChildEdge("public", parent, child, T0, "1", Decimal("1"))])
    kids = [random_account() for _ in range(1200)]
    store.add_children("public", GENESIS_ACCOUNT, [ChildEdge("public", GENESIS_ACCOUNT, k, T0, str(i)) for i, k in enumerate(kids)])
    for i, k in enumerate(kids[:300]):
        bal = Decimal(10 ** (i % 8))
        store.put_lineage("public", k, stellar_creator_account=GENESIS_ACCOUNT, xlm_balance=bal, home_domain=f"k{i}.example")
        store.set_balance("public", k, bal, None)
    store.put_lineage("public", GENESIS_ACCOUNT, status="PROCESSING", num_child_accounts=1201, updated_at=T0)
    pipeline.complete_account(c, "public", GENESIS_ACCOUNT, "BIGQUERY", claim_token=None, num_child_accounts=1201)
    hva_run(c, ["public", "testnet"], T0 - dt.timedelta(hours=2))
    for k in kids[:40]:
        store.set_balance("public", k, Decimal(3_000_000), store.get_lineage("public", k).xlm_balance)
        store.put_lineage("public", k, xlm_balance=Decimal(3_000_000))
    hva_run(c, ["public", "testnet"], T0)
    pend, proc = random_account(), random_account()
    pipeline.request_lineage(c, "public", pend)
    pipeline.request_lineage(c, "testnet", proc)
    store.claim("testnet", proc, T0 - dt.timedelta(hours=1))
    store.put_search("public", pend, status="PENDING", updated_at=T0 - dt.timedelta(hours=3))
    store.put_search("public", chain[1], status="FAILED", last_error="upstream 500", updated_at=T0)
    store.record_stage(StageExecution("public", chain[2], "horizon_data", "SUCCESS", T0, T0, 30, None, "API"))
    store.record_stage(StageExecution("public", chain[2], "assets", "FAILED", T0, T0, 12, "HTTP 500", "API"))
    store.record_cron_run(CronRun("reset_stale", T0, "SUCCESS", 40, {}))
    store.try_reserve_spend(T0.strftime("%Y-%m"), 2_000_000, 100_000_000, T0)
    return {"chain": chain, "kids": kids, "pending": pend, "processing": proc}


# ------------------------------------------------------------------ a function behind functions-framework
@contextlib.contextmanager
def function_server(name: str, env: dict[str, str], log_path: Path):
    """Run functions/<name>/main.py (its real entry point) with functions-framework on a free port."""
    with serve_function(name, {**os.environ, "PYTHONPATH": str(ROOT), **env}, log_path) as url:
        yield url
