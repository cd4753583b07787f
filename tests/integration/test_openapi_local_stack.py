"""Schemathesis against the local stack (local/stack.py, docs/design.md): the real search and stats
functions behind their HTTP ports, with the simulator, the dispatcher and the other functions.
Zero 5xx answers and zero schema violations. In CI a missing stack fails; locally it skips."""
from __future__ import annotations

import json
import urllib.parse
import urllib.request

import pytest
from hypothesis import HealthCheck, settings

from tests.integration.openapi_support import schemathesis_schema
from tests.support import require

pytestmark = pytest.mark.e2e


def _get(url: str, timeout: float = 60) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    try:
        from local.stack import LocalStack
    except ImportError as exc:
        require(False, f"the local stack (local/stack.py): {exc}")
    work = tmp_path_factory.mktemp("stack")
    with LocalStack(work, store="sqlite", accounts=1000, seed=7) as s:
        # Real traffic first, so the stats routes have lineage, stages and counters to answer with.
        status, picked = _get(f"{s.simulator_url}/_sim/accounts/public?kind=chain&limit=5")
        assert status == 200, picked
        for item in picked["accounts"]:
            status, body = _get(f"{s.urls['search']}/search?" + urllib.parse.urlencode({"account": item["account"], "network": "public"}))
            assert status in (200, 202), body
        s.wait_idle(600)
        yield s


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
stats_schema = schemathesis_schema("stats")
search_schema = schemathesis_schema("search")


@pytest.mark.serial
@stats_schema.parametrize()
@FUZZ
def test_schemathesis_stats_on_the_local_stack(case, stack):
    case.call_and_validate(base_url=stack.urls["stats"], timeout=60)


@pytest.mark.serial
@search_schema.parametrize()
@FUZZ
def test_schemathesis_search_on_the_local_stack(case, stack):
    case.call_and_validate(base_url=stack.urls["search"], timeout=60)
