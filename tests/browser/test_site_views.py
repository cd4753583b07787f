"""The explorer and the query builder in headless Chromium (1400x900) on the fixture site
(tests/browser/fixture_site.py): views the local stack cannot produce on demand, with answers in
the shape docs/design.md pins ("Merged accounts, creation ledgers, completeness") and older
answers without those fields. Every check is geometric or textual, on what the page shows."""
from __future__ import annotations

import json
import re
import urllib.parse

import pytest

from tests.browser.conftest import PIPELINE_WORDS, node_position, tree_accounts, wait_tree, zoom_of
from tests.browser.fixture_site import FIXTURES

pytestmark = pytest.mark.browser

RAW_PIPELINE = re.compile(r"\b(API|BIGQUERY|BIGQUERY_WITH_API_FALLBACK|HUBBLE_SYNC)\b")
RAW_STAGE = re.compile(r"\b[a-z]+_[a-z_]+\b")


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def open_account(probe, base: str, account: str, layout: str | None = None) -> None:
    page = probe.page
    if layout:
        page.add_init_script(f"localStorage.setItem('stellarmap.layout', {json.dumps(layout)})")
    page.goto(f"{base}/index.html?" + urllib.parse.urlencode({"account": account, "network": "public"}))
    wait_tree(page, account, timeout_ms=30_000)


# What covers each node of the tree: its dot's centre, and points 5%, 50% and 95% along its label
# (in the label's own rotated frame, mapped to the screen); for each, whether it lies inside the
# drawing and whether the topmost element there belongs to the node itself.
COVERAGE = """
() => {
  const svg = document.getElementById('tree').getBoundingClientRect();
  const inside = (x, y) => x >= svg.left - 0.5 && x <= svg.right + 0.5 && y >= svg.top - 0.5 && y <= svg.bottom + 0.5;
  const out = [];
  const check = (g, part, x, y) => {
    const top = document.elementFromPoint(x, y);
    out.push({ account: g.dataset.account || g.dataset.id, kind: g.dataset.kind, part, inside: inside(x, y), ownTop: Boolean(top && g.contains(top)),
               topIs: top ? (top.id || (top.className && top.className.baseVal) || top.className || top.tagName) : null, at: [Math.round(x), Math.round(y)] });
  };
  for (const g of document.querySelectorAll('#tree g.node')) {
    const dot = g.querySelector('circle.dot').getBoundingClientRect();
    check(g, 'dot', dot.left + dot.width / 2, dot.top + dot.height / 2);
    const label = g.querySelector('text.label');
    if (!label.getBoundingClientRect().width) continue;  // a label hidden at this zoom
    const box = label.getBBox();
    const m = label.getScreenCTM();
    for (const f of [0.05, 0.5, 0.95]) {
      const p = new DOMPoint(box.x + f * box.width, box.y + box.height / 2).matrixTransform(m);
      check(g, `label@${f}`, p.x, p.y);
    }
  }
  return out;
}
"""


def assert_every_node_in_view(page) -> list[dict]:
    # the whole tree panel in the window first (elementFromPoint sees only what is on screen)
    page.evaluate("() => document.getElementById('tree-wrap').scrollIntoView({ block: 'end' })")
    seen = page.evaluate(COVERAGE)
    clipped = [s for s in seen if not s["inside"]]
    covered = [s for s in seen if not s["ownTop"]]
    assert not clipped, f"outside the tree panel: {clipped[:5]}"
    assert not covered, f"covered by something else: {covered[:5]}"
    return seen


def rect(page, selector: str) -> dict:
    return page.evaluate("(s) => { const r = document.querySelector(s).getBoundingClientRect(); return {left: r.left, top: r.top, right: r.right, bottom: r.bottom, width: r.width, height: r.height}; }", selector)


def facts_of(page, selector: str) -> dict[str, str]:
    return dict(zip(page.eval_on_selector_all(f"{selector} dt", "ds => ds.map(d => d.textContent)"),
                    page.eval_on_selector_all(f"{selector} dd", "ds => ds.map(d => d.textContent)")))


def hover_tooltip(page, selector: str) -> str:
    page.hover(f"{selector} circle.dot")
    page.wait_for_selector("#tooltip:not([hidden])")
    return page.text_content("#tooltip")


# ------------------------------------------------------------------ tidy view geometry
def test_tidy_chain_of_seven_shows_every_child_label_whole(site_probe, fixture_site):
    body = load("contract-chain7.json")
    page = site_probe.page
    open_account(site_probe, fixture_site.base, body["account"])
    page.get_by_label("Tidy", exact=True).check()
    page.wait_for_selector("#tree[data-layout=tidy]", state="attached")
    page.wait_for_function("() => document.getElementById('tree').dataset.rendered === document.getElementById('tree').dataset.renders")
    site_probe.shot("chain7-tidy")
    assert len(tree_accounts(page, "ancestor")) == 7
    assert len(tree_accounts(page, "account")) == 2
    seen = assert_every_node_in_view(page)
    labels = [s for s in seen if s["kind"] == "account" and s["part"].startswith("label")]
    assert len(labels) == 2 * 3, "both child labels are drawn (not hidden at this zoom)"
    # the help line and the legend are outside the drawing: they can never cover it
    svg, help_, legend = rect(page, "#tree"), rect(page, "#tree-help"), rect(page, ".legend")
    for other in (help_, legend):
        assert other["top"] >= svg["bottom"] - 0.5 or other["bottom"] <= svg["top"] + 0.5, (other, svg)


def test_deep_tidy_chain_shows_the_searched_account_and_uses_the_panel(site_probe, fixture_site):
    body = load("contract-chain15.json")
    page = site_probe.page
    open_account(site_probe, fixture_site.base, body["account"], layout="tidy")
    site_probe.shot("chain15-tidy")
    assert page.get_attribute("#tree", "data-layout") == "tidy"
    assert len(tree_accounts(page, "ancestor")) == 15
    seen = assert_every_node_in_view(page)
    root = [s for s in seen if s["kind"] == "root"]
    assert {s["part"] for s in root} == {"dot", "label@0.05", "label@0.5", "label@0.95"}, "the searched account's dot and label are on view"
    # a wide panel is used: labels stay readable (at least 10 px) and the tree spans its width
    assert zoom_of(page) * 11 >= 10, zoom_of(page)
    xs = [s["at"][0] for s in seen]
    assert max(xs) - min(xs) >= 0.5 * rect(page, "#tree")["width"]
    # genesis comes first, top-left; the searched account is the lowest node
    genesis = node_position(page, body["ancestors"][0]["account"])
    me = node_position(page, body["account"])
    assert genesis[1] < me[1] and genesis[0] < me[0]


# ------------------------------------------------------------------ fan-out
def test_n_more_refits_the_view_and_the_tooltip_follows(site_probe, fixture_site):
    body = load("contract-airdrop-api-page1.json")
    account = body["account"]
    page = site_probe.page
    open_account(site_probe, fixture_site.base, account, layout="radial")
    assert len(tree_accounts(page, "account")) == 100
    more = page.locator("#tree g.node[data-kind=more]")
    assert more.locator("text.label").text_content() == "29,900 more"

    def next_page(shown: int, open_it) -> None:
        zoom_before = zoom_of(page)
        open_it()
        page.wait_for_function("(n) => document.querySelectorAll('#tree g.node[data-kind=account]').length === n", arg=shown)
        page.wait_for_function("() => document.getElementById('tree').dataset.rendered === document.getElementById('tree').dataset.renders")
        assert more.locator("text.label").text_content() == f"{30_000 - shown:,} more"
        assert zoom_of(page) < zoom_before, "the bigger ring was fitted again"
        clipped = [s for s in page.evaluate(COVERAGE) if not s["inside"]]
        assert not clipped, f"outside the tree panel after the next page: {clipped[:5]}"

    # From the keyboard: the focused "N more" node keeps its tooltip, which tells the new count.
    more.focus()
    page.wait_for_selector("#tooltip:not([hidden])")
    assert "29,900 more accounts" in page.text_content("#tooltip")
    next_page(200, lambda: page.keyboard.press("Enter"))
    site_probe.shot("after-more-keyboard")
    assert page.evaluate("() => document.activeElement.dataset.kind") == "more"
    assert page.is_visible("#tooltip") and page.get_attribute("#tooltip", "data-for") == f"{account}::more"
    tip = page.text_content("#tooltip")
    assert "29,800 more accounts" in tip and "29,900" not in tip, tip

    # With the mouse: the ring grows and is fitted again; a tooltip on view is never stale.
    next_page(300, lambda: more.locator("circle.dot").click())
    site_probe.shot("after-more-click")
    if page.is_visible("#tooltip"):
        assert "29,700 more accounts" in page.text_content("#tooltip")
    assert "29,700 more accounts" in hover_tooltip(page, "#tree g.node[data-kind=more]")


def test_no_blank_area_under_the_fan_out_tree(site_probe, fixture_site):
    body = load("contract-airdrop-api-page1.json")
    page = site_probe.page
    open_account(site_probe, fixture_site.base, body["account"])
    page.wait_for_selector("#summary:not([hidden])")
    site_probe.shot("fan-out")
    explorer, tree, side = rect(page, "#explorer"), rect(page, "#tree-wrap"), rect(page, ".side")
    assert side["bottom"] <= tree["bottom"] + 1, "the side column is no taller than the tree panel (it scrolls)"
    assert explorer["bottom"] - tree["bottom"] <= 40, (explorer, tree)
    # what the side column holds can still be reached
    page.locator("#siblings-title").scroll_into_view_if_needed()
    assert page.is_visible("#siblings-title")


# ------------------------------------------------------------------ words
def test_incomplete_children_are_said_in_words_wherever_children_are_shown(site_probe, fixture_site):
    body = load("contract-airdrop-api-page1.json")
    message = body["completeness"]["message"]
    page = site_probe.page
    open_account(site_probe, fixture_site.base, body["account"])
    page.wait_for_selector("#summary:not([hidden])")
    assert page.text_content("#completeness-note") == message and page.is_visible("#completeness-note")
    assert page.text_content("#summary-completeness") == message and page.is_visible("#summary-completeness")
    assert page.get_attribute("#explorer", "data-children-complete") == "false"
    assert "of 30,000 children shown (the list is incomplete)" in page.text_content("#tree-summary")
    assert facts_of(page, "#details-body")["Children"] == "30,000 found (incomplete)"
    assert message in hover_tooltip(page, "#tree g.node[data-kind=root]")
    assert message in hover_tooltip(page, "#tree g.node[data-kind=more]")
    site_probe.shot("incomplete")


def test_the_pipeline_path_is_named_in_words(site_probe, fixture_site):
    body = load("contract-airdrop-api-page1.json")
    page = site_probe.page
    open_account(site_probe, fixture_site.base, body["account"])
    assert body["tree"]["pipeline_source"] == "API"
    assert facts_of(page, "#details-body")["Pipeline"] == PIPELINE_WORDS["API"]
    hover_tooltip(page, "#tree g.node[data-kind=root]")
    assert facts_of(page, "#tooltip")["Pipeline"] == PIPELINE_WORDS["API"]
    shown = page.evaluate("() => document.querySelector('#explorer').innerText")
    assert not RAW_PIPELINE.search(shown), RAW_PIPELINE.search(shown)


def test_merged_account_says_merged_into_whom_and_when(site_probe, fixture_site):
    body = load("contract-merged.json")
    tree = body["tree"]
    page = site_probe.page
    open_account(site_probe, fixture_site.base, body["account"])
    page.wait_for_selector("body[data-enrichment=done]", state="attached", timeout=5_000)
    assert page.is_hidden("#enrichment-note"), "a merged account has no balance to wait for"
    expected = f"Merged into {tree['merged_into']} on 2024-03-01 12:00 UTC"
    assert page.text_content("#details-body .merged-note") == expected
    facts = facts_of(page, "#details-body")
    assert facts["Creation ledger"] == f"{tree['creation_ledger']:,}"
    assert facts["Creator"] == tree["creator"]
    lives = page.eval_on_selector_all("#details-body .lives li", "lis => lis.map(li => li.textContent)")
    assert len(lives) == 2
    assert lives[0].startswith("Life 1: Created 2018-03-04 05:06 UTC by ") and "merged into GABG…6TRS on 2019-07-08 09:10 UTC" in lives[0]
    assert lives[1].startswith("Life 2: Created 2020-01-02 03:04 UTC") and "merged into " in lives[1]
    assert "merged" in page.get_attribute("#tree g.node[data-kind=root]", "class").split()
    assert expected in hover_tooltip(page, "#tree g.node[data-kind=root]")
    merged_child = next(c for c in tree["children"] if c["merged_into"])
    tip = hover_tooltip(page, f'#tree g.node[data-account="{merged_child["account"]}"]')
    assert f"Merged into {body['account']} on 2021-05-06 07:08 UTC" in tip
    assert page.locator("#tree g.node.merged").count() == 2
    assert "Merged" in page.text_content(".legend")
    site_probe.shot("merged")


def test_an_older_answer_without_the_new_fields_still_reads_well(site_probe, fixture_site):
    body = load("lineage-small.json")
    assert "completeness" not in body and "lives" not in body["tree"] and "merged_at" not in body["tree"]
    page = site_probe.page
    open_account(site_probe, fixture_site.base, body["account"])
    assert len(tree_accounts(page, "account")) == len(body["tree"]["children"])
    assert page.is_hidden("#completeness-note")
    assert page.get_attribute("#explorer", "data-children-complete") == "true"
    facts = facts_of(page, "#details-body")
    assert "Creation ledger" not in facts and "Merged" not in facts
    assert page.locator("#details-body .merged-note, #details-body .lives").count() == 0
    assert facts["Pipeline"] in ("Horizon + Stellar Expert", "Hubble (BigQuery)")
    assert page.locator("#tree g.node.merged").count() == 0


def test_stage_names_are_words_while_the_pipeline_runs(site_probe, fixture_site):
    pending = load("contract-pending-search.json")
    page = site_probe.page
    page.goto(f"{fixture_site.base}/index.html?" + urllib.parse.urlencode({"account": pending["account"], "network": "public"}))
    page.wait_for_selector("body[data-phase=pending]", state="attached")
    page.wait_for_function("() => document.querySelectorAll('#stage-list li[data-stage=stellar_toml]').length === 1")
    site_probe.shot("stages")
    names = dict(zip(page.eval_on_selector_all("#stage-list li", "lis => lis.map(li => li.dataset.stage)"),
                     page.eval_on_selector_all("#stage-list .stage-name", "ss => ss.map(s => s.textContent)")))
    assert names["stellar_toml"] == "stellar.toml check"
    assert names["directory_labels"] == "Directory labels (Stellar Expert)"
    assert not [n for n in names.values() if RAW_STAGE.search(n)], names
    details = page.eval_on_selector_all("#stage-list .stage-detail", "ss => ss.map(s => s.textContent)")
    assert any("Hubble, finished by Horizon + Stellar Expert" in d for d in details), details
    assert not [d for d in details if RAW_PIPELINE.search(d)], details


# ------------------------------------------------------------------ the network-wide Hubble sync
def test_an_answer_from_the_network_sync_says_so_with_its_day(site_probe, fixture_site):
    body = load("contract-hubble-sync.json")
    sync = load("contract-sync-public.json")
    assert body["tree"]["pipeline_source"] == "HUBBLE_SYNC" and sync["synced_through"].startswith("2026-12-06")
    page = site_probe.page
    open_account(site_probe, fixture_site.base, body["account"])
    page.wait_for_function("() => document.getElementById('sync-note').textContent.includes('2026-12-06')")
    assert page.is_visible("#sync-note")
    assert page.text_content("#sync-note") == "From the network sync of 2026-12-06."
    assert page.text_content("#details-body .sync-note") == "From the network sync of 2026-12-06."
    assert facts_of(page, "#details-body")["Pipeline"] == PIPELINE_WORDS["HUBBLE_SYNC"] == "Hubble network sync"
    hover_tooltip(page, "#tree g.node[data-kind=account]")
    assert facts_of(page, "#tooltip")["Pipeline"] == "Hubble network sync"
    shown = page.evaluate("() => document.querySelector('#explorer').innerText")
    assert not RAW_PIPELINE.search(shown), RAW_PIPELINE.search(shown)
    site_probe.shot("hubble-sync")
    # an answer of another path says nothing about the sync
    other = load("contract-chain7.json")
    open_account(site_probe, fixture_site.base, other["account"])
    assert page.is_hidden("#sync-note")
    assert page.locator("#details-body .sync-note").count() == 0


def test_dashboard_shows_the_network_sync_panel(site_probe, fixture_site):
    sync = load("contract-sync-public.json")
    page = site_probe.page
    page.goto(f"{fixture_site.base}/dashboard.html")
    page.wait_for_selector("body[data-ready=true]", state="attached", timeout=30_000)
    assert page.text_content("#sync-title") == "Network sync"
    blocks = page.eval_on_selector_all("#sync .sync-network", "ds => ds.map(d => [d.dataset.network, d.dataset.status])")
    assert blocks == [["public", "DONE"], ["testnet", "NEVER_SYNCED"]]
    public = facts_of(page, "#sync .sync-network[data-network=public]")
    assert public == {
        "Status": "Done",
        "Synced through": "2026-12-06 00:00 UTC",
        "Accounts": f"{sync['accounts']:,}",
        "Edges": f"{sync['edges']:,}",
        "Merges": f"{sync['merges']:,}",
        "Ranges": "2 of 2 done",
        "Spent": "$0.000610",
    }
    assert facts_of(page, "#sync .sync-network[data-network=testnet]") == {"Status": "Never synced"}
    # the panel is on screen, beside the other cards, and nothing in it overflows its card
    box = rect(page, "#sync")
    card = rect(page, "section[aria-labelledby=sync-title]")
    assert box["width"] > 0 and box["height"] > 0
    assert card["left"] <= box["left"] and box["right"] <= card["right"] + 0.5
    assert not page.evaluate("() => [...document.querySelectorAll('#sync dd')].some(d => d.scrollWidth > d.clientWidth + 1)")
    site_probe.shot("dashboard-sync")


# ------------------------------------------------------------------ query builder
LINES = """
(sel) => [...document.querySelectorAll(sel)].map((td) => {
  // the lines the cell's text runs on (its text nodes' boxes; an element's own box is not a line)
  const lines = new Set();
  const walker = document.createTreeWalker(td, NodeFilter.SHOW_TEXT);
  for (let t = walker.nextNode(); t; t = walker.nextNode()) {
    const range = document.createRange();
    range.selectNodeContents(t);
    for (const r of range.getClientRects()) if (r.width > 0) lines.add(Math.round(r.top));
  }
  const time = td.querySelector('time');
  return { text: td.textContent, lines: lines.size, title: time ? time.getAttribute('title') : (td.firstElementChild ? td.firstElementChild.getAttribute('title') : null) };
})
"""


def test_query_table_keeps_codes_on_one_line_and_formats_timestamps(site_probe, fixture_site):
    answer = load("contract-query-recent-cache.json")
    page = site_probe.page
    page.goto(f"{fixture_site.base}/query.html")
    page.wait_for_selector("body[data-ready=true]", state="attached")
    page.click("#presets button[data-preset=recent_cache_entries]")
    page.wait_for_selector("#results[data-rows]", state="attached")
    site_probe.shot("query")
    columns = answer["columns"]
    for column in ("status", "last_fetched_at", "created_at", "updated_at"):
        cells = page.evaluate(LINES, f"#result-table tbody td:nth-child({columns.index(column) + 1})")
        assert len(cells) == len(answer["rows"])
        for cell, row in zip(cells, answer["rows"]):
            raw = row[column]
            assert cell["lines"] <= 1, f"{column} wraps: {cell}"
            if column == "status":
                assert cell["text"] == raw
            elif raw is None:
                assert cell["text"] == "—"
            else:
                assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", cell["text"]), cell
                assert cell["text"] == raw[:19].replace("T", " ") + " UTC"
                assert cell["title"] == raw, "the exact value stays in the title"

    page.click("#presets button[data-preset=failed_stages]")
    page.wait_for_function("() => document.querySelector('#result-table thead th[data-column=stage]')")
    failed = load("contract-query-failed-stages.json")
    col = failed["columns"].index("stage") + 1
    stages = page.evaluate(LINES, f"#result-table tbody td:nth-child({col})")
    assert [s["text"] for s in stages] == ["stellar.toml check", "Directory labels (Stellar Expert)", "Horizon account data"]
    assert [s["title"] for s in stages] == [r["stage"] for r in failed["rows"]]
    col = failed["columns"].index("pipeline_source") + 1
    sources = page.evaluate(LINES, f"#result-table tbody td:nth-child({col})")
    assert [s["text"] for s in sources] == ["Horizon + Stellar Expert", "Horizon + Stellar Expert", "Hubble, finished by Horizon + Stellar Expert"]


# The page's own modules draw a hand-made model: a ring on each account that can be expanded,
# none elsewhere, and it goes once the account's children are in.
RING_MODEL = """
async ([body]) => {
  const { TreeView } = await import('./js/tree-view.js');
  const { fromLineage, attachChildren } = await import('./js/lineage-model.js');
  const view = new TreeView(document.getElementById('tree'), document.getElementById('tooltip'), {});
  const options = { layout: 'radial', pageSize: 100, aggregateAbove: 100 };
  const rings = () => [...document.querySelectorAll('#tree g.node')].filter((g) => g.querySelector('circle.ring')).map((g) => g.dataset.account);
  const expandable = () => [...document.querySelectorAll('#tree g.node.has-children')].map((g) => g.dataset.account);
  const model = fromLineage(body);
  view.render(model, options, { fit: true });
  const before = { rings: rings(), expandable: expandable(), nodes: document.querySelectorAll('#tree g.node').length };
  const [first] = body.tree.children;
  const grandchildren = [1, 2].map((i) => ({ ...first, account: `${first.account.slice(0, 50)}GRAND${i}`, creator: first.account, num_children: 0 }));
  attachChildren(model, first.account, { tree: { account: first.account, num_children: grandchildren.length, children: grandchildren, more: null },
                                          children_page: { returned: grandchildren.length, total: grandchildren.length, next_cursor: null } });
  view.render(model, options, { fit: true });
  return { before, after: { rings: rings(), expandable: expandable(), nodes: document.querySelectorAll('#tree g.node').length } };
}
"""


def test_the_expand_ring_is_drawn_on_expandable_accounts_only(site_probe, fixture_site):
    body = load("contract-merged.json")
    children = body["tree"]["children"]
    assert len(children) == 3
    body["tree"]["children"] = [dict(children[0], num_children=4), dict(children[1], num_children=0), dict(children[2], num_children=7)]
    page = site_probe.page
    page.goto(f"{fixture_site.base}/index.html")
    page.wait_for_selector("body[data-ready=true]", state="attached")
    got = page.evaluate(RING_MODEL, [body])
    expandable = [children[0]["account"], children[2]["account"]]
    assert sorted(got["before"]["expandable"]) == sorted(expandable)
    assert sorted(got["before"]["rings"]) == sorted(expandable), "a ring on each expandable account, none on the leaf, root or chain"
    # The first child's two children are in: it is no longer expandable and its ring goes; they are leaves.
    assert got["after"]["nodes"] == got["before"]["nodes"] + 2
    assert got["after"]["expandable"] == [children[2]["account"]]
    assert got["after"]["rings"] == [children[2]["account"]]
