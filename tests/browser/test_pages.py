"""The leaderboard, query builder and dashboard pages in headless Chromium against the local
stack: what they show is what the stats function answers (fetched beside them over HTTP)."""
from __future__ import annotations

import json
import urllib.parse
from decimal import Decimal

import pytest

from tests.browser.conftest import NETWORK, PIPELINE_WORDS, get_json, wait_tree

pytestmark = pytest.mark.browser


def _num(text: str) -> Decimal:
    return Decimal(text.replace(",", "").strip())


def _table_accounts(page, body_selector: str) -> list[str]:
    return page.eval_on_selector_all(f"{body_selector} tr[data-account]", "rows => rows.map(r => r.dataset.account)")


# ------------------------------------------------------------------ leaderboard
def test_leaderboard_threshold_network_badges_and_links(probe, site, stack):
    stats = stack.urls["stats"].rstrip("/")
    config = get_json(f"{stats}/config")
    page = probe.page
    page.goto(f"{site}/leaderboard.html")
    page.wait_for_selector("body[data-ready=true]", state="attached")

    options = page.eval_on_selector_all("#threshold option", "os => os.map(o => Number(o.value))")
    assert options == sorted(config["hva_thresholds"]), "the dropdown is filled from the run-time config"
    assert page.text_content("#network-badge") == NETWORK

    first = get_json(f"{stats}/hva-leaderboard?network={NETWORK}&threshold={options[0]}&limit=50")
    assert first["entries"], "the session searched high-value accounts and hva_recalc ranked them"
    page.wait_for_selector(f"#leaderboard[data-threshold='{options[0]}']", state="attached")
    assert _table_accounts(page, "#lb-body") == [e["account"] for e in first["entries"]]
    badges = page.eval_on_selector_all("#lb-body tr td:last-child", "tds => tds.map(td => td.textContent)")
    assert badges == [e["badge"] or "—" for e in first["entries"]], "rank-change badges as the function gives them"
    probe.shot("lowest-threshold")

    # A higher threshold: the table follows, every balance at or above it.
    higher = next(t for t in options[1:] if get_json(f"{stats}/hva-leaderboard?network={NETWORK}&threshold={t}&limit=50")["entries"])
    page.get_by_label("Minimum balance (XLM)", exact=True).select_option(str(higher))
    page.wait_for_selector(f"#leaderboard[data-threshold='{higher}']", state="attached")
    expected = get_json(f"{stats}/hva-leaderboard?network={NETWORK}&threshold={higher}&limit=50")
    assert _table_accounts(page, "#lb-body") == [e["account"] for e in expected["entries"]]
    balances = page.eval_on_selector_all("#lb-body tr td:nth-child(3)", "tds => tds.map(td => td.textContent)")
    assert all(_num(b) >= higher for b in balances), balances
    assert f"threshold={higher}" in page.url
    probe.shot("higher-threshold")

    # The network switch moves the badge and the table.
    page.get_by_label("Testnet", exact=True).check()
    page.wait_for_selector("#leaderboard[data-network=testnet]", state="attached")
    assert page.text_content("#network-badge") == "testnet"
    testnet = get_json(f"{stats}/hva-leaderboard?network=testnet&threshold={higher}&limit=50")
    assert _table_accounts(page, "#lb-body") == [e["account"] for e in testnet["entries"]]
    page.get_by_label("Public", exact=True).check()
    page.wait_for_selector("#leaderboard[data-network=public]", state="attached")

    # Accounts are links to their lineage.
    account = expected["entries"][0]["account"]
    page.click(f'#lb-body tr[data-account="{account}"] a')
    wait_tree(page, account)
    assert f"account={account}" in page.url and "network=public" in page.url


# ------------------------------------------------------------------ query builder
def test_query_preset_sortable_results_and_clickable_accounts(probe, site, stack):
    stats = stack.urls["stats"].rstrip("/")
    page = probe.page
    page.goto(f"{site}/query.html")
    page.wait_for_selector("body[data-ready=true]", state="attached")
    catalogue = get_json(f"{stats}/query")
    presets = page.eval_on_selector_all("#presets button[data-preset]", "bs => bs.map(b => b.dataset.preset)")
    assert presets == [p["name"] for p in catalogue["presets"]]

    page.click("#presets button[data-preset=hva_accounts]")
    page.wait_for_selector("#results[data-rows]", state="attached")
    expected = get_json(f"{stats}/query?" + urllib.parse.urlencode({"network": NETWORK, "preset": "hva_accounts"}))
    assert expected["rows"], expected
    headers = page.eval_on_selector_all("#result-table thead th", "ths => ths.map(th => th.dataset.column)")
    assert headers == expected["columns"]
    assert page.locator("#result-table tbody tr").count() == len(expected["rows"])
    assert page.is_visible("#cap-notice") == bool(expected["cap_hit"])
    probe.shot("preset")

    # Sort by balance: ascending, then descending (client-side, numeric).
    col = expected["columns"].index("xlm_balance") + 1
    page.click("#result-table thead th[data-column=xlm_balance] button")
    assert page.get_attribute("#result-table thead th[data-column=xlm_balance]", "aria-sort") == "ascending"
    values = [_num(v) for v in page.eval_on_selector_all(f"#result-table tbody td:nth-child({col})", "tds => tds.map(td => td.textContent)")]
    assert values == sorted(values)
    page.click("#result-table thead th[data-column=xlm_balance] button")
    assert page.get_attribute("#result-table thead th[data-column=xlm_balance]", "aria-sort") == "descending"
    values = [_num(v) for v in page.eval_on_selector_all(f"#result-table tbody td:nth-child({col})", "tds => tds.map(td => td.textContent)")]
    assert values == sorted(values, reverse=True)

    # Accounts are links to the explorer.
    hrefs = page.eval_on_selector_all("#result-table tbody a", "as => as.map(a => a.getAttribute('href'))")
    assert len(hrefs) == len(expected["rows"])
    assert all(h.startswith("index.html?account=G") for h in hrefs)


def test_query_filter_builder_adds_removes_and_runs(probe, site, stack):
    stats = stack.urls["stats"].rstrip("/")
    page = probe.page
    page.goto(f"{site}/query.html")
    page.wait_for_selector("body[data-ready=true]", state="attached")
    page.get_by_label("Table", exact=True).select_option("account_lineage")

    page.get_by_role("button", name="Add filter").click()
    page.get_by_label("Column (filter 1)", exact=True).select_option("xlm_balance")
    page.get_by_label("Operator", exact=True).first.select_option(">=")
    page.get_by_label("Value", exact=True).first.fill("10000")
    page.get_by_role("button", name="Add filter").click()
    page.get_by_role("button", name="Add filter").click()
    assert page.locator("#filters li").count() == 3
    page.get_by_role("button", name="Remove filter 2").click()
    page.get_by_role("button", name="Remove filter 3").click()
    assert page.locator("#filters li").count() == 1
    page.get_by_label("Sort by", exact=True).select_option("xlm_balance")
    page.get_by_label("Order", exact=True).select_option("desc")
    page.get_by_label("Rows", exact=True).fill("50")
    page.get_by_role("button", name="Run query").click()
    page.wait_for_selector("#results[data-rows]", state="attached")
    probe.shot("filters")

    filters = json.dumps([{"column": "xlm_balance", "op": ">=", "value": "10000"}])
    expected = get_json(f"{stats}/query?" + urllib.parse.urlencode({"network": NETWORK, "table": "account_lineage", "filters": filters, "limit": 50, "sort": "xlm_balance", "order": "desc"}))
    assert int(page.get_attribute("#results", "data-rows")) == len(expected["rows"]) > 0
    shown = page.eval_on_selector_all("#result-table tbody td:first-child a", "as => as.map(a => a.getAttribute('title'))")
    assert shown == [r["stellar_account"] for r in expected["rows"]]
    assert page.get_attribute("#results", "data-cap-hit") == str(bool(expected["cap_hit"])).lower()
    assert page.is_visible("#cap-notice") == bool(expected["cap_hit"])

    # A filter without a value is refused before anything is sent.
    page.get_by_role("button", name="Add filter").click()
    page.get_by_role("button", name="Run query").click()
    page.wait_for_selector("#builder-error:not([hidden])")
    assert "enter a value" in page.text_content("#builder-error")


# ------------------------------------------------------------------ dashboard
def test_dashboard_shows_the_pipeline_figures(probe, site, stack):
    stats = stack.urls["stats"].rstrip("/")
    page = probe.page
    before = get_json(f"{stats}/pipeline-stats")
    page.goto(f"{site}/dashboard.html")
    page.wait_for_selector("body[data-ready=true]", state="attached", timeout=60_000)
    figures = get_json(f"{stats}/pipeline-stats")
    shown = int(_num(page.text_content("#total")))
    assert before["total"] <= shown <= figures["total"] and shown >= 1, (before["total"], shown, figures["total"])
    sources = page.eval_on_selector_all("#by-source li[data-key]", "lis => lis.map(li => li.dataset.key)")
    assert set(sources) <= {"BIGQUERY", "BIGQUERY_WITH_API_FALLBACK", "API", "HUBBLE_SYNC"} and sources
    # shown in words, the code kept in the title
    labels = page.eval_on_selector_all("#by-source li[data-key] > span:first-child", "ss => ss.map(s => [s.title, s.textContent])")
    assert labels == [[code, PIPELINE_WORDS[code]] for code in sources]
    assert page.get_attribute("#throughput", "data-points") == str(len(figures["throughput"]))
    assert page.locator("#alerts li").count() >= 1
    health = get_json(f"{stats}/health")
    assert page.text_content("#spend-text").endswith(f"${health['bigquery']['budget_usd']:,.2f} ({health['bigquery']['spent_usd'] / health['bigquery']['budget_usd'] * 100:.1f}%)")
    # the Network sync panel shows what the stats function answers for each network
    for network in ("public", "testnet"):
        sync = get_json(f"{stats}/sync?network={network}")
        block = f"#sync .sync-network[data-network={network}]"
        assert page.get_attribute(block, "data-status") == sync["status"]
        if sync["status"] == "NEVER_SYNCED":
            assert page.text_content(f"{block} dd") == "Never synced"
    probe.shot("dashboard")
