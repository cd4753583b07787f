"""The site over real HTTP with its API answered from saved JSON (static_site/tests/fixtures/).

For the views whose data the local stack cannot produce on demand (yet): answers in the shape
docs/design.md pins ("Merged accounts, creation ledgers, completeness"), long ancestor chains, a
fan-out with an incomplete children list, a pipeline still running, query results with the
server's timestamps. The static site and its generated config.js are served by the local stack's
own site handler; only the search and stats functions are stood in for, by these files.

    search   GET /api/search?account=&network=        200 with the lineage, or 202 for a pending search
    stats    GET /api/stats/account-lineage?account=&cursor=&siblings=
             GET /api/stats/stage-executions?account=
             GET /api/stats/query[?preset=]
             GET /api/stats/sync?network=   (a network without a saved state never synced)
"""
from __future__ import annotations

import json
from pathlib import Path

from stellar_sdk import StrKey

from common.domain import NETWORKS
from common.read_models.sync import sync_body
from local.site_server import SITE_DIR, SiteHandler, SiteServer

FIXTURES = SITE_DIR / "tests" / "fixtures"


class Fixtures:
    """The saved answers, indexed the way the functions look them up."""

    def __init__(self, folder: Path = FIXTURES):
        self.lineages: dict[tuple[str, str | None], dict] = {}
        self.pending: dict[str, dict] = {}
        self.stages: dict[str, dict] = {}
        self.queries: dict[str | None, dict] = {}
        self.syncs: dict[str, dict] = {}
        for path in sorted(folder.glob("*.json")):
            body = json.loads(path.read_text())
            if not isinstance(body, dict):
                continue
            if "tree" in body and "account" in body:
                cursor = (body.get("children_page") or {}).get("cursor")
                self.lineages[(body["account"], cursor)] = body
            elif path.name.startswith("contract-pending-search"):
                self.pending[body["account"]] = body
            elif path.name.startswith("contract-pending-stages"):
                self.stages[body["account"]] = body
            elif path.name == "contract-query-meta.json":
                self.queries[None] = body
            elif path.name.startswith("contract-query-"):
                self.queries[body["preset"]] = body
            elif path.name.startswith("contract-sync-"):
                self.syncs[body["network"]] = body

    def lineage(self, name: str) -> dict:
        """A saved lineage by file name (static_site/tests/fixtures/<name>)."""
        return json.loads((FIXTURES / name).read_text())


def _error(status: int, code: str, message: str, field: str | None = None) -> tuple[int, dict]:
    return status, {"error": {"code": code, "message": message, **({"field": field} if field else {})}}


def answer(fx: Fixtures, path: str, q: dict[str, str]) -> tuple[int, dict] | None:
    """The API's answer to GET `path`?`q` from the fixtures; None when the path is not the API's."""
    if path in ("/api/search", "/api/search/"):
        account = q.get("account", "")
        if not StrKey.is_valid_ed25519_public_key(account):
            return _error(400, "invalid_account", "not a valid Stellar account id (G..., 56 characters, valid checksum)", "account")
        if account in fx.pending:
            return 202, fx.pending[account]
        body = fx.lineages.get((account, None))
        if body is None:
            return _error(404, "account_not_found", f"account {account} does not exist on public")
        return 200, {"status": "COMPLETE", "account": account, "network": "public", "lineage": body, "cached_at": "2026-12-07T03:45:00Z"}
    if path == "/api/stats/account-lineage":
        body = fx.lineages.get((q.get("account", ""), q.get("cursor")))
        if body is None:
            return _error(404, "account_not_found", "no lineage for this account and cursor")
        if q.get("siblings") == "1":
            body = {**body, "siblings": {"items": [], "next_cursor": None}}
        return 200, body
    if path == "/api/stats/stage-executions":
        body = fx.stages.get(q.get("account", ""))
        return (200, body) if body else _error(404, "account_not_found", "no stage executions")
    if path == "/api/stats/query":
        body = fx.queries.get(q.get("preset"))
        return (200, body) if body else _error(400, "invalid_preset", "no saved answer for this query")
    if path == "/api/stats/sync":
        network = q.get("network", "public")
        if network not in NETWORKS:
            return _error(400, "invalid_network", "network must be public or testnet", "network")
        return 200, fx.syncs.get(network) or {**sync_body(network, None), "timestamp": "2026-12-07T03:00:00Z"}
    if path.startswith("/api/"):
        return _error(404, "not_found", f"no saved answer for {path}")
    return None


class _FixtureHandler(SiteHandler):
    fixtures: Fixtures

    def api(self, path: str, query: dict[str, str]) -> tuple[int, dict] | None:
        return answer(self.fixtures, path, query)


class FixtureSite(SiteServer):
    """Static site + fixture API on one loopback port (config.js generated for it)."""

    def __init__(self, fixtures: Fixtures | None = None):
        self.fixtures = fixtures or Fixtures()
        super().__init__(lambda base: {"searchUrl": f"{base}/api/search", "statsUrl": f"{base}/api/stats",
                                       "networks": ["public", "testnet"], "defaultNetwork": "public", "pageSize": 100},
                         handler=_FixtureHandler, generated_by="tests/browser/fixture_site.py", fixtures=self.fixtures)
