"""Browser tests: Playwright (Python, sync API) drives Debian's /usr/bin/chromium, headless, against
the real local stack (local/stack.py: the functions behind their HTTP ports, the simulator, the
dispatcher, the site with a generated config.js). The simulator's ground truth (`/_sim/...`)
says what the pages must show.

In CI (CI=true) missing infrastructure (Chromium, Playwright, the stack) FAILS; on a laptop the
tests skip with a message naming what is missing. Playwright's own browsers are never downloaded.
Screenshots land in test-artifacts/browser/ (git-ignored).
"""
from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from local.testing import chromium
from tests.support import ROOT, require

ARTIFACTS = ROOT / "test-artifacts" / "browser"
# The site's words for each pipeline_source (static_site/js/words.js): the pages never show the code.
PIPELINE_WORDS = {
    "API": "Horizon + Stellar Expert",
    "BIGQUERY": "Hubble (BigQuery)",
    "BIGQUERY_WITH_API_FALLBACK": "Hubble, finished by Horizon + Stellar Expert",
    "HUBBLE_SYNC": "Hubble network sync",
}
NETWORK = "public"
PIPELINE_TIMEOUT_MS = 240_000  # a fresh account goes through the whole pipeline

# Records, from the first script on every page: the explorer's phases in order, and any CSP
# violation (none is expected: the site must work under its own policy).
INIT_SCRIPT = """
(() => {
  window.__phases = [];
  window.__csp = [];
  document.addEventListener('securitypolicyviolation', (e) => {
    window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`);
  });
  const watch = () => {
    const record = () => {
      const phase = document.body.dataset.phase;
      const stages = document.querySelectorAll('#stage-list li').length;
      const last = window.__phases[window.__phases.length - 1];
      if (phase && (!last || last.phase !== phase || last.stages !== stages)) window.__phases.push({ phase, stages });
    };
    new MutationObserver(record).observe(document.body, { attributes: true, subtree: true, childList: true, attributeFilter: ['data-phase'] });
    record();
  };
  if (document.body) watch();
  else document.addEventListener('DOMContentLoaded', watch);
})();
"""


# ------------------------------------------------------------------ HTTP helpers
def http_json(url: str, timeout: float = 60) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def get_json(url: str, timeout: float = 60) -> dict:
    status, body = http_json(url, timeout)
    assert status == 200, f"GET {url} -> {status} {body}"
    return body


class Sim:
    """The simulator's ground truth (local/simulator/README.md)."""

    def __init__(self, base: str):
        self.base = base.rstrip("/")

    def accounts(self, kind: str, limit: int = 100, **params) -> list[dict]:
        q = urllib.parse.urlencode({"kind": kind, "limit": limit, **params})
        return get_json(f"{self.base}/_sim/accounts/{NETWORK}?{q}")["accounts"]

    def truth(self, account: str, children_limit: int = 1000) -> dict:
        return get_json(f"{self.base}/_sim/truth/{NETWORK}/{account}?children_limit={children_limit}")

    def post(self, path: str, body: dict | None = None, method: str = "POST") -> dict:
        req = urllib.request.Request(f"{self.base}{path}", data=json.dumps(body or {}).encode(), method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"{}")


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 1.0):
    """Poll until predicate() is truthy (its value is returned); fail naming `what`."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    pytest.fail(f"timed out waiting for {what} (last: {last!r})")


def processed(stats_url: str, account: str) -> bool:
    """True when the store already holds a COMPLETE lineage for the account (a search answers 200)."""
    status, body = http_json(f"{stats_url}/account-lineage?" + urllib.parse.urlencode({"account": account, "network": NETWORK, "limit": 1}))
    return status == 200 and (body.get("tree") or {}).get("status") == "COMPLETE"


# ------------------------------------------------------------------ infrastructure
@pytest.fixture(scope="session")
def playwright_api():
    require(chromium.available(), chromium.MISSING)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        require(False, f"the playwright Python package ({exc}); pip install -e '.[test]'")
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright_api):
    b = chromium.launch(playwright_api)
    yield b
    b.close()


# The stack the browser tests need: the simulated network (1,000 accounts a network, seed 7), the
# embedded Hubble (the pipeline's BigQuery path on DuckDB) with the API path for the enrichment
# (Horizon, Stellar Expert: directory tags), no simulated rate limits and upstream budgets to
# match (the in-process limiters would otherwise pace a test's enrichment at the public rates),
# and hva_recalc every 10 s so the leaderboard follows the searches.
STACK_PARAMS = {
    "accounts": 1000,
    "seed": 7,
    "hubble": "duckdb",
    "sim_options": {"rate_limits": False},
    "pipeline_config": {"horizon_max_per_hour": 3_600_000, "expert_max_per_minute": 60_000},
    "schedule_seconds": {"hva_recalc": 10},
}


class RunningStack:
    """A stack started outside the tests with STACK_PARAMS (its URLs file: LocalStack.write_urls_file)."""

    def __init__(self, urls_file: str):
        data = json.loads(Path(urls_file).read_text())
        self.urls = {k: v for k, v in data.items() if isinstance(v, str)}
        self.simulator_url = self.urls["simulator"]


def _warm(s) -> None:
    """High-value accounts through the real search, so hva_recalc has a ranking to publish."""
    sim = Sim(s.simulator_url)
    stats_url = s.urls["stats"].rstrip("/")
    rich = [item["account"] for item in sim.accounts("hva", limit=12, min_balance=10_000)]
    for account in rich:
        status, body = http_json(f"{s.urls['search']}/search?" + urllib.parse.urlencode({"account": account, "network": NETWORK}))
        assert status in (200, 202), body
    # Their lineage is enough (the enrichment of their children goes on in the background).
    wait_for(lambda: all(processed(stats_url, a) for a in rich), 300, "the high-value accounts' lineage", interval_s=2)
    wait_for(
        lambda: http_json(f"{stats_url}/hva-leaderboard?network={NETWORK}")[1].get("entries"),
        180,
        "a leaderboard snapshot from the scheduled hva_recalc",
        interval_s=2,
    )


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """The real local stack. STELLARMAP_BROWSER_STACK=<urls file> reuses one already running with
    STACK_PARAMS (to iterate on the tests); otherwise the session starts its own."""
    external = os.environ.get("STELLARMAP_BROWSER_STACK")
    if external:
        s = RunningStack(external)
        _warm(s)
        yield s
        return
    try:
        from local.stack import LocalStack
    except ImportError as exc:
        require(False, f"the local stack (local/stack.py): {exc}")
    work = tmp_path_factory.mktemp("browser-stack")
    with LocalStack(work, **STACK_PARAMS) as s:
        assert "site" in s.urls and "site" not in s.missing, f"the stack serves no site: {s.urls} {s.missing}"
        _warm(s)
        yield s


@pytest.fixture(scope="session")
def sim(stack) -> Sim:
    return Sim(stack.simulator_url)


@pytest.fixture(scope="session")
def site(stack) -> str:
    return stack.urls["site"].rstrip("/")


@pytest.fixture(scope="session")
def stats(stack) -> str:
    return stack.urls["stats"].rstrip("/")



def _slug(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.split("::", 1)[-1])[:120]


@pytest.fixture(scope="session", autouse=True)
def _artifacts_dir():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)


class PageProbe:
    """A page plus what it did: uncaught errors, dialogs (a hostile string that ran would open one)."""

    def __init__(self, page, name: str):
        self.page = page
        self.name = name
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.requests: list[str] = []
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("dialog", self._dialog)
        page.on("request", lambda r: self.requests.append(r.url))

    def _dialog(self, dialog):
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def shot(self, label: str) -> Path:
        path = ARTIFACTS / f"{self.name}--{label}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def csp_violations(self) -> list[str]:
        try:
            return self.page.evaluate("() => window.__csp || []")
        except Exception:  # noqa: BLE001 - the page is gone (closed by the test)
            return []


def _probe(browser, request):
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="en-US", timezone_id="UTC")
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.add_init_script(INIT_SCRIPT)
    p = PageProbe(page, _slug(request.node.nodeid))
    yield p
    try:
        p.shot("final")
    except Exception:  # noqa: BLE001 - a screenshot is an artifact, not a check
        pass
    violations = p.csp_violations()
    context.close()
    assert not p.errors, f"uncaught errors in the page: {p.errors}"
    assert not p.dialogs, f"a dialog opened (script ran?): {p.dialogs}"
    assert not violations, f"CSP violations: {violations}"


@pytest.fixture
def probe(browser, request, stack):
    """A page (1400x900) on the local stack's site."""
    yield from _probe(browser, request)


@pytest.fixture(scope="session")
def fixture_site():
    """The site with its API answered from the saved fixtures (tests/browser/fixture_site.py)."""
    from tests.browser.fixture_site import FixtureSite

    with FixtureSite() as s:
        yield s


@pytest.fixture
def site_probe(browser, request, fixture_site):
    """A page (1400x900) on the fixture site: no local stack needed."""
    yield from _probe(browser, request)


# ------------------------------------------------------------------ page helpers
def tree_accounts(page, kind: str) -> list[str]:
    return page.eval_on_selector_all(f"#tree g.node[data-kind={kind}]", "els => els.map(e => e.dataset.account)")


def wait_tree(page, account: str, timeout_ms: int = PIPELINE_TIMEOUT_MS) -> None:
    """Until the explorer has drawn the tree of `account` (the pipeline may have to run first)."""
    page.wait_for_function(
        """(account) => {
          const root = document.querySelector('#tree g.node[data-kind=root]');
          const svg = document.getElementById('tree');
          return root && root.dataset.account === account && svg.dataset.rendered === svg.dataset.renders;
        }""",
        arg=account,
        timeout=timeout_ms,
    )


def wait_enriched(page, timeout_ms: int = 90_000) -> None:
    """Until the explorer has refreshed the enrichment (balances, home domains, tags) that arrives after COMPLETE."""
    page.wait_for_selector("body[data-enrichment=done]", state="attached", timeout=timeout_ms)


def search_via_form(page, site: str, account: str) -> None:
    page.goto(f"{site}/index.html")
    page.wait_for_selector("body[data-ready=true]", state="attached")
    page.get_by_label("Stellar account", exact=True).fill(account)
    page.get_by_label("Public", exact=True).check()
    page.get_by_role("button", name="Map account").click()


def node_position(page, account: str) -> tuple[float, float]:
    t = page.get_attribute(f'#tree g.node[data-account="{account}"]', "transform")
    m = re.match(r"translate\(([-\d.e]+),([-\d.e]+)\)", t or "")
    assert m, t
    return float(m.group(1)), float(m.group(2))


def zoom_of(page) -> float:
    return float(page.get_attribute("#tree", "data-zoom"))

