"""The explorer page in headless Chromium against the local stack: search, progress, the tree
(node count from the simulator's truth), layouts, zoom, re-centring, big fan-outs, hostile
upstream strings, client-side validation, polling paused while hidden, keyboard and labels."""
from __future__ import annotations

import re
import urllib.parse

import pytest

from tests.browser.conftest import (
    NETWORK,
    PIPELINE_WORDS,
    PIPELINE_TIMEOUT_MS,
    http_json,
    node_position,
    processed,
    search_via_form,
    tree_accounts,
    wait_enriched,
    wait_tree,
    zoom_of,
)

pytestmark = pytest.mark.browser

def truth_source(stats: str, account: str) -> str:
    """The pipeline_source the stats function answers for the account."""
    status, body = http_json(f"{stats}/account-lineage?" + urllib.parse.urlencode({"account": account, "network": NETWORK, "limit": 1}))
    assert status == 200, body
    return body["tree"]["pipeline_source"]

GENESIS = "GAAZI4TCR3TY5OJHCTJC2A4QSY6CJWJH5IAJTGKIN2ER7LBNVKOCCWN7"
PAGE_SIZE = 100  # config.js pageSize (the stack's generated config keeps the default)

_picked: dict[str, str] = {}


def _clean_children(truth: dict) -> bool:
    items = truth["children"]["items"]
    return truth["children"]["total"] == len(items) and not any(c.get("recreation") for c in items)


def pick_hub(sim, stats: str, key: str, lo: int, hi: int, min_depth: int = 2) -> str:
    """An ordinary creator with lo..hi children, min_depth hops below genesis, not yet processed
    when first picked (so its search goes through the pipeline); each key gets its own account."""
    if key in _picked:
        return _picked[key]
    taken = set(_picked.values())
    for item in sim.accounts("hub", limit=1000):
        kinds = set(item.get("kinds") or [])
        if not (lo <= item["num_children"] <= hi and item["depth"] >= min_depth and item["exists"]):
            continue
        if kinds & {"hva", "merged", "airdrop", "exchange", "hostile", "genesis"} or item["account"] in taken:
            continue
        if processed(stats, item["account"]):
            continue
        truth = sim.truth(item["account"])
        if _clean_children(truth):
            _picked[key] = item["account"]
            return item["account"]
    pytest.fail(f"the simulator has no hub with {lo}..{hi} children at depth >= {min_depth}")


def fresh_leaf(sim, stats: str, key: str) -> str:
    if key in _picked:
        return _picked[key]
    taken = set(_picked.values())
    for item in sim.accounts("leaf", limit=500):
        kinds = set(item.get("kinds") or [])
        if item["exists"] and item["depth"] >= 2 and not kinds & {"hva", "merged", "hostile", "sponsored"} and item["account"] not in taken and not processed(stats, item["account"]):
            _picked[key] = item["account"]
            return item["account"]
    pytest.fail("the simulator has no leaf account to search")


def open_tree(probe, site: str, account: str) -> None:
    probe.page.goto(f"{site}/index.html?" + urllib.parse.urlencode({"account": account, "network": NETWORK}))
    wait_tree(probe.page, account)


# ------------------------------------------------------------------ search, progress, tree
def test_search_shows_progress_then_the_tree_with_the_right_node_count(probe, site, sim, stats):
    account = pick_hub(sim, stats, "main", 5, 60)
    truth = sim.truth(account)
    page = probe.page
    search_via_form(page, site, account)
    page.wait_for_selector("body[data-phase=pending]", state="attached", timeout=60_000)
    probe.shot("progress")
    wait_tree(page, account)
    probe.shot("tree")

    phases = page.evaluate("() => window.__phases")
    names = [p["phase"] for p in phases]
    assert names[0] == "searching", phases
    assert "pending" in names and "complete" in names and names.index("pending") < names.index("complete"), phases
    assert max(p["stages"] for p in phases if p["phase"] == "pending") >= 8, f"the stage list was shown while pending: {phases}"
    assert page.is_hidden("#status"), "progress gives way to the tree"

    children = tree_accounts(page, "account")
    expected_children = [c["account"] for c in truth["children"]["items"]]
    assert len(children) == truth["children"]["total"]
    assert sorted(children) == sorted(expected_children)
    assert tree_accounts(page, "ancestor") == truth["ancestors"], "the chain up to genesis, genesis first"
    assert tree_accounts(page, "ancestor")[0] == GENESIS
    assert page.locator("#tree g.node[data-kind=more]").count() == 0
    node_count = int(page.get_attribute("#tree", "data-node-count"))
    assert node_count == len(truth["ancestors"]) + 1 + truth["children"]["total"]
    assert page.locator("#tree g.node").count() == node_count
    # The expand ring is drawn on the expandable accounts, and nowhere else.
    assert page.locator("#tree g.node:not(.has-children) circle.ring").count() == 0
    assert page.locator("#tree g.node.has-children:not(:has(circle.ring))").count() == 0
    assert "account=" + account in page.url


def test_switching_layouts_is_kept_and_the_tidy_sliders_space_the_tree(probe, site, sim, stats):
    account = pick_hub(sim, stats, "main", 5, 60)
    page = probe.page
    open_tree(probe, site, account)
    assert page.get_attribute("#tree", "data-layout") == "radial", "radial by default"
    assert page.is_hidden("#tidy-spacing")
    child = tree_accounts(page, "account")[0]
    radial_pos = node_position(page, child)

    page.get_by_label("Tidy", exact=True).check()
    page.wait_for_selector("#tree[data-layout=tidy]", state="attached")
    assert node_position(page, child) != radial_pos
    assert page.evaluate("() => localStorage.getItem('stellarmap.layout')") == "tidy"
    assert page.is_visible("#tidy-spacing")
    probe.shot("tidy")

    def width() -> float:
        xs = [node_position(page, a)[0] for a in tree_accounts(page, "account")]
        return max(xs) - min(xs)

    before = width()
    page.locator("#sibling-gap").focus()
    page.keyboard.press("End")  # keyboard on the range input: widest sibling spacing
    page.wait_for_function("() => document.getElementById('sibling-gap').value === '60'")
    assert width() > before * 1.5
    assert '"siblingGap":60' in page.evaluate("() => localStorage.getItem('stellarmap.tidySpacing')")

    page.reload()
    wait_tree(page, account)
    assert page.get_attribute("#tree", "data-layout") == "tidy", "the choice survives a reload"
    assert page.get_by_label("Tidy", exact=True).is_checked()
    assert page.locator("#sibling-gap").input_value() == "60"

    page.get_by_label("Radial", exact=True).check()
    page.wait_for_selector("#tree[data-layout=radial]", state="attached")
    assert page.is_hidden("#tidy-spacing")
    assert page.evaluate("() => localStorage.getItem('stellarmap.layout')") == "radial"


def test_wheel_zoom_drag_pan_and_fit(probe, site, sim, stats):
    account = pick_hub(sim, stats, "main", 5, 60)
    page = probe.page
    open_tree(probe, site, account)
    fitted = zoom_of(page)
    box = page.locator("#tree").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

    page.mouse.move(cx, cy)
    page.mouse.wheel(0, -600)
    page.wait_for_function("(k) => Number(document.getElementById('tree').dataset.zoom) > k * 1.2", arg=fitted)
    zoomed = zoom_of(page)
    probe.shot("zoomed")

    pan_before = page.get_attribute("#tree", "data-pan-x")
    x0, y0 = box["x"] + 30, box["y"] + box["height"] - 40
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + 150, y0 - 40, steps=8)
    page.mouse.up()
    assert page.get_attribute("#tree", "data-pan-x") != pan_before
    assert zoom_of(page) == pytest.approx(zoomed)
    assert "account=" + account in page.url, "a drag is not a click: no re-centring"

    page.get_by_role("button", name="Fit").click()
    page.wait_for_function("(k) => Math.abs(Number(document.getElementById('tree').dataset.zoom) - k) < 1e-3", arg=fitted)

    page.get_by_role("button", name="Zoom in").click()
    assert zoom_of(page) > fitted
    page.focus("#tree")
    page.keyboard.press("0")
    assert zoom_of(page) == pytest.approx(fitted, abs=1e-3)
    page.keyboard.press("+")
    assert zoom_of(page) > fitted
    page.keyboard.press("-")
    page.keyboard.press("-")
    assert zoom_of(page) < fitted


def test_clicking_a_node_recentres_on_that_account(probe, site, sim, stats):
    account = pick_hub(sim, stats, "main", 5, 60)
    truth = sim.truth(account)
    child = truth["children"]["items"][0]["account"]
    page = probe.page
    open_tree(probe, site, account)
    page.click(f'#tree g.node[data-account="{child}"] circle.dot')
    wait_tree(page, child)
    assert f"account={child}" in page.url
    assert tree_accounts(page, "ancestor") == truth["ancestors"] + [account]
    child_truth = sim.truth(child)
    assert len(tree_accounts(page, "account")) == child_truth["children"]["total"]
    probe.shot("recentred")

    page.go_back()
    wait_tree(page, account)
    assert tree_accounts(page, "ancestor") == truth["ancestors"]


def test_a_big_fan_out_is_aggregated_and_pages_open_one_by_one(probe, site, sim, stats):
    big = [a for a in sim.accounts("hub", limit=1000) if 100 < a["num_children"] <= 1000 and "airdrop" not in (a.get("kinds") or [])]
    account = big[0]["account"] if big else GENESIS
    truth = sim.truth(account, children_limit=1000)
    total = truth["children"]["total"]
    assert total > PAGE_SIZE
    page = probe.page
    search_via_form(page, site, account)
    wait_tree(page, account)
    probe.shot("aggregated")
    assert len(tree_accounts(page, "account")) == PAGE_SIZE
    more = page.locator("#tree g.node[data-kind=more]")
    assert more.count() == 1
    assert more.locator("text.label").text_content() == f"{total - PAGE_SIZE:,} more"

    more.locator("circle.dot").click()
    shown = min(total, 2 * PAGE_SIZE)
    page.wait_for_function("(n) => document.querySelectorAll('#tree g.node[data-kind=account]').length === n", arg=shown)
    all_children = {c["account"] for c in truth["children"]["items"]}
    assert set(tree_accounts(page, "account")) <= all_children
    assert len(set(tree_accounts(page, "account"))) == shown
    if total > shown:
        assert more.locator("text.label").text_content().startswith(f"{total - shown:,}")
        # keyboard: the aggregated node is a button
        more.focus()
        page.keyboard.press("Enter")
        page.wait_for_function("(n) => document.querySelectorAll('#tree g.node[data-kind=account]').length === n", arg=min(total, 3 * PAGE_SIZE))
    else:
        assert page.locator("#tree g.node[data-kind=more]").count() == 0
    probe.shot("paged")


# ------------------------------------------------------------------ safety
def test_hostile_home_domains_are_rendered_as_inert_text(probe, site, sim, stats):
    hostile = []
    for item in sim.accounts("hostile", limit=50):
        t = sim.truth(item["account"])
        domain = t.get("home_domain") or ""
        if t["exists"] and ("<script" in domain or "<img" in domain or "\u202e" in domain):
            hostile.append((item["account"], domain))
    assert any("<script" in d for _, d in hostile) and any("<img" in d for _, d in hostile), hostile
    page = probe.page
    for account, domain in hostile:
        search_via_form(page, site, account)
        wait_tree(page, account)
        wait_enriched(page)
        shown = domain.replace("\u202e", "\\u202E")  # bidi overrides are made visible
        # the details panel (the searched account is selected) shows the exact string, as text
        facts = page.evaluate("() => Object.fromEntries([...document.querySelectorAll('#details-body dt')].map((dt) => [dt.textContent, dt.nextElementSibling.textContent]))")
        assert facts["Home domain"] == shown
        page.hover("#tree g.node[data-kind=root] circle.dot")
        page.wait_for_selector("#tooltip:not([hidden])")
        assert shown in page.text_content("#tooltip")
        label = page.text_content("#tree g.node[data-kind=root] text.label")
        assert label and shown.startswith(label.rstrip("…")), label
        probe.shot(f"hostile-{account[:6]}")
        inert = page.evaluate(
            """() => ({
              injected: document.querySelectorAll('img, iframe, object, embed, svg script, #main script').length,
              scripts: [...document.scripts].map((s) => s.getAttribute('src')),
              pwned: typeof window.__pwned,
            })"""
        )
        assert inert == {"injected": 0, "scripts": ["config.js", "js/search-page.js"], "pwned": "undefined"}, inert
    # Trusted Types: even our own code could not assign HTML from a string on this page.
    assert probe.csp_violations() == []
    blocked = page.evaluate("() => { try { document.createElement('div').innerHTML = '<b>x</b>'; return 'allowed'; } catch (e) { return e.name; } }")
    assert blocked == "TypeError"
    page.wait_for_function("() => window.__csp.length === 1")
    assert probe.csp_violations() == ["require-trusted-types-for trusted-types-sink"]
    page.evaluate("() => { window.__csp = []; }")  # that one was this test's own attempt
    csp = page.get_attribute('meta[http-equiv="Content-Security-Policy"]', "content")
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


def test_client_validation_uses_the_servers_words_and_sends_nothing(probe, site, stack):
    page = probe.page
    page.goto(f"{site}/index.html")
    page.wait_for_selector("body[data-ready=true]", state="attached")
    bad_checksum = GENESIS[:-1] + ("A" if GENESIS[-1] != "A" else "B")
    seed_like = "S" + GENESIS[1:]
    search_base = stack.urls["search"].rstrip("/")
    for text in ("", "not an account", bad_checksum, seed_like, "G" * 300):
        before = len([u for u in probe.requests if u.startswith(search_base)])
        page.get_by_label("Stellar account", exact=True).fill(text)
        page.get_by_role("button", name="Map account").click()
        page.wait_for_selector("#account-error:not([hidden])")
        shown = page.text_content("#account-error")
        status, body = http_json(f"{search_base}/search?" + urllib.parse.urlencode({"account": text, "network": NETWORK}))
        assert status == 400, body
        assert shown == body["error"]["message"], (text[:20], shown, body)
        assert page.get_attribute("#account", "aria-invalid") == "true"
        assert len([u for u in probe.requests if u.startswith(search_base)]) == before, "nothing was sent"
        assert seed_like[1:] not in shown, "the input is never echoed"
    probe.shot("validation")


def test_polling_stops_while_the_tab_is_hidden(probe, site, sim, stats, stack):
    account = fresh_leaf(sim, stats, "hidden")
    page = probe.page
    page.goto(f"{site}/index.html")
    page.wait_for_selector("body[data-ready=true]", state="attached")
    page.evaluate(
        """() => {
          window.__hidden = true;
          Object.defineProperty(document, 'hidden', { configurable: true, get: () => window.__hidden });
          Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => (window.__hidden ? 'hidden' : 'visible') });
          document.dispatchEvent(new Event('visibilitychange'));
        }"""
    )
    page.get_by_label("Stellar account", exact=True).fill(account)
    page.get_by_role("button", name="Map account").click()
    page.wait_for_selector("body[data-phase=pending][data-polling=paused]", state="attached")
    assert page.is_visible("#poll-state")
    stats_base = stack.urls["stats"].rstrip("/")
    polls = lambda: len([u for u in probe.requests if u.startswith(f"{stats_base}/stage-executions")])  # noqa: E731
    assert polls() == 0
    page.wait_for_timeout(8_000)  # several poll intervals (poll_after_s) go by while hidden
    assert polls() == 0, "no polling while the page is hidden"
    probe.shot("paused")

    page.evaluate("() => { window.__hidden = false; document.dispatchEvent(new Event('visibilitychange')); }")
    wait_tree(page, account)
    assert polls() >= 1, "polling resumed when the page became visible"


# ------------------------------------------------------------------ keyboard and labels
UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea, button, a[href], [role=button]')]
  .filter((el) => !el.closest('[hidden]'))
  .map((el) => {
    const byLabel = el.labels && el.labels.length ? [...el.labels].map((l) => l.textContent).join(' ') : '';
    const byIds = (el.getAttribute('aria-labelledby') || '').split(/\\s+/).filter(Boolean)
      .map((id) => (document.getElementById(id) || {}).textContent || '').join(' ');
    const name = byLabel || el.getAttribute('aria-label') || byIds || el.textContent || el.getAttribute('title') || '';
    return { tag: el.tagName, id: el.id, cls: el.getAttribute('class'), name: name.trim() };
  })
  .filter((x) => !x.name)"""


@pytest.mark.parametrize("path", ["index.html", "leaderboard.html", "query.html", "dashboard.html"])
def test_every_control_has_a_label(probe, site, path):
    probe.page.goto(f"{site}/{path}")
    probe.page.wait_for_selector("body[data-ready=true]", state="attached", timeout=60_000)
    assert probe.page.evaluate(UNLABELLED) == []


def test_the_explorer_works_from_the_keyboard(probe, site, sim, stats):
    account = pick_hub(sim, stats, "main", 5, 60)
    page = probe.page
    page.goto(f"{site}/index.html")
    page.wait_for_selector("body[data-ready=true]", state="attached")
    assert page.evaluate("() => document.activeElement.id") == "account", "the account field has focus on arrival"
    page.keyboard.type(account)
    page.keyboard.press("Enter")
    wait_tree(page, account)
    assert page.evaluate(UNLABELLED) == []

    # Tab from the Fit button onward reaches the tree, then its nodes.
    page.focus("#zoom-fit")
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.matches('#tree g.node[data-kind=account]')"):
            break
    else:
        pytest.fail("Tab never reached an account of the tree")
    focused = page.evaluate("() => document.activeElement.dataset.account")
    assert page.is_visible("#tooltip"), "focus shows the tooltip"
    assert page.get_attribute("#tooltip", "data-for") == focused
    page.keyboard.press("Escape")
    assert page.is_hidden("#tooltip")
    page.keyboard.press("Enter")
    wait_tree(page, focused)
    assert re.search(f"account={focused}", page.url)
    probe.shot("keyboard")


def test_the_tooltip_shows_the_account_facts(probe, site, sim, stats):
    account = pick_hub(sim, stats, "main", 5, 60)
    truth = sim.truth(account)
    page = probe.page
    open_tree(probe, site, account)
    wait_enriched(page)
    page.hover("#tree g.node[data-kind=root] circle.dot")
    tip = page.locator("#tooltip")
    tip.wait_for(state="visible")
    facts = dict(zip(tip.locator("dt").all_text_contents(), tip.locator("dd").all_text_contents()))
    assert set(facts) >= {"Account", "Creator", "Created", "XLM balance", "Home domain", "Flags", "Pipeline"}
    assert facts["Account"] == account
    assert facts["Creator"] == truth["ancestors"][-1]
    assert facts["Created"].startswith(truth["created_at"][:10])
    whole, _, frac = truth["xlm_balance"].partition(".")
    expected = f"{int(whole):,}" + (f".{frac.rstrip('0')}" if frac.rstrip("0") else "")
    assert facts["XLM balance"] == expected, "comma-formatted, exact"
    # the path that ran, in words (never the code); which one depends on the stack's Hubble
    assert facts["Pipeline"] == PIPELINE_WORDS[truth_source(stats, account)]
    probe.shot("tooltip")


# ------------------------------------------------------------------ siblings and directory labels
def test_siblings_view_lists_the_creators_other_children_page_by_page(probe, site, sim, stats):
    creator = GENESIS  # the simulated network's widest creator: more siblings than one page (50)
    truth = sim.truth(creator, children_limit=1000)
    assert truth["children"]["total"] > 51
    page = probe.page
    search_via_form(page, site, creator)  # the creator's crawl is what lists its children
    wait_tree(page, creator)
    child = next(c["account"] for c in truth["children"]["items"] if not c.get("recreation"))
    expected = {c["account"] for c in truth["children"]["items"]} - {child}
    open_tree(probe, site, child)
    page.wait_for_function("() => document.querySelectorAll('#siblings-list li').length > 0")
    first = page.eval_on_selector_all("#siblings-list a", "as => as.map(a => a.dataset.account)")
    assert 49 <= len(first) <= 50, "one page (the account itself is left out of it)"
    assert set(first) <= expected and child not in first
    assert page.is_visible("#siblings-more"), "more siblings than one page"
    page.get_by_role("button", name="Load more siblings").click()
    page.wait_for_function("(n) => document.querySelectorAll('#siblings-list li').length > n", arg=len(first))
    both = page.eval_on_selector_all("#siblings-list a", "as => as.map(a => a.dataset.account)")
    assert set(both) <= expected and len(set(both)) == len(both)
    probe.shot("siblings")
    # a sibling is a way to re-centre
    target = both[-1]
    page.click(f'#siblings-list a[data-account="{target}"]')
    wait_tree(page, target)
    assert tree_accounts(page, "ancestor")[-1] == creator


def test_directory_labels_show_as_badges(probe, site, sim):
    tagged = [a for a in sim.accounts("malicious", limit=10) if a["exists"]]
    account = tagged[0]["account"]
    tags = sim.truth(account)["directory"]["tags"]
    page = probe.page
    search_via_form(page, site, account)
    wait_tree(page, account)
    page.wait_for_function("() => document.querySelectorAll('#details-body .badge.tag').length > 0", timeout=45_000)
    badges = page.eval_on_selector_all("#details-body .badge.tag", "bs => bs.map(b => b.textContent)")
    # Expert's tags, plus blocked-domain: the simulated malicious accounts use blocked home domains
    assert badges == sorted(set(tags) | {"blocked-domain"})
    facts = dict(zip(page.eval_on_selector_all("#details-body dt", "ds => ds.map(d => d.textContent)"),
                     page.eval_on_selector_all("#details-body dd", "ds => ds.map(d => d.textContent)")))
    assert facts["Directory name"] == sim.truth(account)["directory"]["name"]
    assert "tag-malicious" in page.get_attribute("#tree g.node[data-kind=root]", "class")
    assert page.text_content("#tree g.node[data-kind=root] text.label").startswith("⚠")
