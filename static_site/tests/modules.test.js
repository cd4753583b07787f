// Unit tests of the site's other pure modules: StrKey validation, formatting, the lineage model,
// and the visibility-aware poller (mocked timers, a stand-in document).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, mock, test } from "node:test";
import { fileURLToPath } from "node:url";
import { displayText, formatCount, formatDate, formatFlags, formatUsd, formatXlm, shortAccount, truncate } from "../js/format.js";
import { layout, normalizeOptions } from "../js/layout.js";
import { appendPage, attachChildren, awaitingEnrichment, canExpand, countLoaded, findNode, fromLineage, refreshFacts, revealMore } from "../js/lineage-model.js";
import { VisibilityPoller } from "../js/poller.js";
import { KIND_BY_PREFIX, MESSAGES, encodeAccountId, isValidAccountId, muxedToAccountId, normalizeAccountInput, validateSearch } from "../js/strkey.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const load = (name) => JSON.parse(readFileSync(join(HERE, "fixtures", name), "utf8"));
const GENESIS = "GAAZI4TCR3TY5OJHCTJC2A4QSY6CJWJH5IAJTGKIN2ER7LBNVKOCCWN7";

describe("StrKey validation mirrors the server", () => {
  test("valid ids pass (genesis, fixtures)", () => {
    assert.ok(isValidAccountId(GENESIS));
    for (const c of load("lineage-small.json").tree.children) assert.ok(isValidAccountId(c.account));
  });

  test("known encoding: 32 bytes i*7 (checked against stellar_sdk)", () => {
    const key = Uint8Array.from({ length: 32 }, (_, i) => (i * 7) % 256);
    assert.equal(encodeAccountId(key), "GAAAODQVDQRSUMJYH5DE2VC3MJUXA536QWGJHGVBVCX3NPOEZPJNST4N");
  });

  test("bad checksum, length, alphabet, version and type fail", () => {
    const bad = [
      GENESIS.slice(0, -1) + "6", // checksum
      GENESIS.slice(0, -1), // 55 chars
      `${GENESIS}A`, // 57 chars
      GENESIS.toLowerCase(),
      `S${GENESIS.slice(1)}`, // secret-seed prefix
      GENESIS.replace("A", "1"), // 1 is not base32
      "",
      null,
      42,
    ];
    for (const value of bad) assert.equal(isValidAccountId(value), false, String(value));
  });

  test("form validation answers in the server's error shape and words", () => {
    assert.deepEqual(validateSearch("nope", "public"), {
      ok: false,
      error: { code: "invalid_account", message: "not a Stellar account id (G…, 56 characters)", field: "account" },
    });
    assert.deepEqual(validateSearch(GENESIS, "mainnet").error, {
      code: "invalid_network",
      message: "network must be one of public, testnet",
      field: "network",
    });
    assert.deepEqual(validateSearch(`  ${GENESIS}\n`, "testnet"), { ok: true, account: GENESIS, network: "testnet" });
    const code = (input) => normalizeAccountInput(input).error?.code ?? "ok";
    assert.equal(code(""), "missing_account");
    assert.equal(code("   "), "missing_account");
    assert.equal(code(GENESIS.slice(0, -1) + "6"), "invalid_checksum");
    assert.equal(code(GENESIS.slice(0, 40)), "invalid_account");
    assert.equal(code("G".repeat(300)), "input_too_long");
    assert.equal(code(`S${GENESIS.slice(1)}`), "wrong_key_kind");
    assert.equal(normalizeAccountInput(`S${GENESIS.slice(1)}`).error.message.includes(GENESIS.slice(1)), false, "never echoes input");
    assert.equal(code(`C${GENESIS.slice(1)}`), "wrong_key_kind");
    assert.equal(code("hello"), "invalid_account");
  });

  test("a muxed account (M…) stands for its G… account (checked against stellar_sdk)", () => {
    const muxed = "MAAZI4TCR3TY5OJHCTJC2A4QSY6CJWJH5IAJTGKIN2ER7LBNVKOCCAAAAEPXD6YEZOA4M";
    assert.equal(muxedToAccountId(muxed), GENESIS);
    assert.deepEqual(normalizeAccountInput(muxed), { ok: true, account: GENESIS });
    assert.equal(normalizeAccountInput(muxed.slice(0, -1) + "A").error.code, "invalid_checksum");
  });

  test("the messages are the ones the server raises (common/addresses.py, common/domain.py)", () => {
    const root = join(HERE, "..", "..", "common");
    const addresses = readFileSync(join(root, "addresses.py"), "utf8");
    for (const key of ["missing_account", "invalid_checksum", "invalid_muxed", "invalid_account"]) {
      assert.ok(addresses.includes(`"${MESSAGES[key]}"`), `${key} message drifted from common/addresses.py`);
    }
    for (const message of Object.values(KIND_BY_PREFIX)) assert.ok(addresses.includes(`"${message}"`), message);
    assert.ok(addresses.includes("MAX_INPUT_CHARS = 256"));
    assert.ok(addresses.includes('f"the account must be at most {MAX_INPUT_CHARS} characters"'));
    const domain = readFileSync(join(root, "domain.py"), "utf8");
    assert.ok(domain.includes('f"network must be one of {\', \'.join(NETWORKS)}"'), "invalid_network message drifted");
    assert.ok(domain.includes('NETWORKS = ("public", "testnet")'));
  });
});

describe("formatting", () => {
  test("XLM balances are comma-grouped without float rounding", () => {
    assert.equal(formatXlm("12345678.1234500"), "12,345,678.12345");
    assert.equal(formatXlm("1000000.0000000"), "1,000,000");
    assert.equal(formatXlm("9999999999999.9999999"), "9,999,999,999,999.9999999");
    assert.equal(formatXlm("0.0000001"), "0.0000001");
    assert.equal(formatXlm("999"), "999");
    assert.equal(formatXlm(null), "—");
    assert.equal(formatXlm("<b>1</b>"), "—");
    assert.equal(formatXlm(1234.5), "1,234.5");
  });

  test("counts, accounts, dates, flags, money", () => {
    assert.equal(formatCount(99900), "99,900");
    assert.equal(shortAccount(GENESIS), "GAAZ…CWN7");
    assert.equal(formatDate("2019-11-03T16:36:04Z"), "2019-11-03 16:36 UTC");
    assert.equal(formatDate("garbage"), "—");
    assert.equal(formatFlags({ auth_required: true, auth_revocable: false, auth_clawback_enabled: true }), "auth_clawback_enabled, auth_required");
    assert.equal(formatFlags({ auth_required: false }), "none");
    assert.equal(formatFlags(3), "auth_required, auth_revocable");
    assert.equal(formatUsd("12.345"), "$12.35");
    assert.equal(formatUsd(1234567.999), "$1,234,568.00");
  });

  test("display text makes control and bidi characters visible, truncation counts code points", () => {
    assert.equal(displayText("\u202Eelpmaxe.evil"), "\\u202Eelpmaxe.evil");
    assert.equal(displayText("bad\u0000\u0007domain"), "bad\\u0000\\u0007domain");
    assert.equal(displayText("<script>x</script>"), "<script>x</script>", "markup stays as text: rendering uses textContent");
    assert.equal(displayText(""), "—");
    assert.equal(truncate("😀".repeat(30), 5), "😀😀😀😀…");
  });
});

describe("lineage model", () => {
  const opts = normalizeOptions({ pageSize: 100, aggregateAbove: 100 });

  test("fromLineage derives what the server still holds from children_page", () => {
    const model = fromLineage(load("lineage-airdrop-page1.json"));
    assert.deepEqual(model.tree.more, { count: 99900, next_cursor: "100" });
    assert.equal(countLoaded(model), 101);
  });

  test("'N more' on a server-side remainder asks for the next page; the page is appended", () => {
    const model = fromLineage(load("lineage-airdrop-page1.json"));
    const step = revealMore(model, model.tree.account, opts);
    assert.deepEqual(step, { fetch: "100", revealed: 0 });
    const added = appendPage(model, model.tree.account, load("lineage-airdrop-page2.json"), opts);
    assert.equal(added, 100);
    assert.equal(model.tree.children.length, 200);
    assert.equal(model.tree.shown, 200);
    assert.deepEqual(model.tree.more, { count: 99800, next_cursor: "200" });
    const r = layout(model, opts);
    assert.equal(r.nodes.filter((n) => n.kind === "account").length, 200);
    assert.equal(r.nodes.find((n) => n.kind === "more").count, 99800);
  });

  test("later pages without a count (more.count null, as /account-lineage answers with a cursor)", () => {
    const model = fromLineage(load("lineage-airdrop-page1.json"));
    const page2 = load("lineage-airdrop-page2.json");
    page2.tree.more.count = null;
    page2.children_page.total = null;
    appendPage(model, model.tree.account, page2, opts);
    assert.deepEqual(model.tree.more, { count: null, next_cursor: "200" });
    const r = layout(model, opts);
    const more = r.nodes.find((n) => n.kind === "more");
    assert.equal(more.remoteUnknown, true);
    assert.equal(more.count, 0);
    assert.deepEqual(revealMore(model, model.tree.account, opts), { fetch: "200", revealed: 0 });
  });

  test("a stale total (fewer than loaded) keeps paging while the server has a next page", () => {
    const model = fromLineage(load("lineage-airdrop-page1.json"));
    const page2 = load("lineage-airdrop-page2.json");
    page2.children_page.total = 150;
    appendPage(model, model.tree.account, page2, opts);
    assert.deepEqual(model.tree.more, { count: null, next_cursor: "200" });
  });

  test("appending the same page twice adds nothing", () => {
    const model = fromLineage(load("lineage-airdrop-page1.json"));
    appendPage(model, model.tree.account, load("lineage-airdrop-page2.json"), opts);
    assert.equal(appendPage(model, model.tree.account, load("lineage-airdrop-page2.json"), opts), 0);
    assert.equal(model.tree.children.length, 200);
  });

  test("'N more' on loaded-but-folded children reveals a page without fetching", () => {
    const model = fromLineage(load("lineage-airdrop-1000.json"));
    assert.deepEqual(revealMore(model, model.tree.account, opts), { fetch: null, revealed: 100 });
    assert.equal(model.tree.shown, 200);
    const r = layout(model, opts);
    assert.equal(r.nodes.find((n) => n.kind === "more").count, 100000 - 200);
  });

  test("expanding a child in place attaches its first page", () => {
    const model = fromLineage(load("lineage-small.json"));
    const child = model.tree.children[0];
    assert.ok(canExpand(child));
    const page = load("lineage-airdrop-page1.json");
    attachChildren(model, child.account, page);
    assert.equal(findNode(model, child.account).children.length, 100);
    assert.deepEqual(findNode(model, child.account).more, { count: 99900, next_cursor: "100" });
    assert.ok(!canExpand(findNode(model, child.account)));
    assert.equal(countLoaded(model), 1 + 20 + 100);
  });

  test("enrichment arriving later refreshes the facts, never the structure", () => {
    const body = load("lineage-airdrop-page1.json");
    const bare = structuredClone(body);
    bare.tree.xlm_balance = null;
    bare.tree.home_domain = null;
    bare.tree.children[3].xlm_balance = null;
    const model = fromLineage(bare);
    assert.ok(awaitingEnrichment(model));
    appendPage(model, model.tree.account, load("lineage-airdrop-page2.json"), opts);
    const changed = refreshFacts(model, body);
    assert.equal(changed, 2);
    assert.equal(model.tree.xlm_balance, body.tree.xlm_balance);
    assert.equal(model.tree.children[3].xlm_balance, body.tree.children[3].xlm_balance);
    assert.equal(model.tree.children.length, 200, "pages loaded stay");
    assert.equal(model.tree.shown, 200);
    assert.equal(awaitingEnrichment(model), false);
    assert.equal(refreshFacts(model, body), 0, "nothing new, nothing changed");
    assert.equal(refreshFacts(model, load("lineage-small.json")), 0, "another account's body is ignored");
  });

  test("the model is a copy: the fetched body is not changed", () => {
    const body = load("lineage-airdrop-page1.json");
    const before = structuredClone(body);
    const model = fromLineage(body);
    appendPage(model, model.tree.account, load("lineage-airdrop-page2.json"), opts);
    assert.deepEqual(body, before);
  });
});

describe("visibility-aware poller", () => {
  class FakeDocument extends EventTarget {
    constructor() {
      super();
      this.hidden = false;
    }
    setHidden(hidden) {
      this.hidden = hidden;
      this.dispatchEvent(new Event("visibilitychange"));
    }
  }
  const flush = () => new Promise((resolve) => setImmediate(resolve));

  test("polls on its interval, pauses while hidden, polls at once when visible again", async () => {
    mock.timers.enable({ apis: ["setTimeout"] });
    try {
      const doc = new FakeDocument();
      let ticks = 0;
      const states = [];
      const poller = new VisibilityPoller({ intervalMs: 1000, doc, tick: async () => void (ticks += 1), onState: (s) => states.push(s) });
      poller.start();
      assert.equal(ticks, 0);
      mock.timers.tick(1000);
      await flush();
      assert.equal(ticks, 1);
      mock.timers.tick(1000);
      await flush();
      assert.equal(ticks, 2);
      doc.setHidden(true);
      mock.timers.tick(10_000);
      await flush();
      assert.equal(ticks, 2, "no polls while hidden");
      assert.equal(poller.state, "paused");
      doc.setHidden(false);
      await flush();
      assert.equal(ticks, 3, "one poll at once when visible");
      mock.timers.tick(1000);
      await flush();
      assert.equal(ticks, 4);
      poller.stop();
      mock.timers.tick(5000);
      await flush();
      assert.equal(ticks, 4);
      assert.deepEqual(states, ["running", "paused", "running", "stopped"]);
    } finally {
      mock.timers.reset();
    }
  });

  test("starting while hidden waits for the page to be shown; done stops; errors stop", async () => {
    mock.timers.enable({ apis: ["setTimeout"] });
    try {
      const doc = new FakeDocument();
      doc.hidden = true;
      let ticks = 0;
      const poller = new VisibilityPoller({ intervalMs: 500, doc, tick: async () => ({ done: ++ticks >= 2, nextMs: 200 }) });
      poller.start();
      mock.timers.tick(5000);
      await flush();
      assert.equal(ticks, 0);
      doc.setHidden(false);
      await flush();
      assert.equal(ticks, 1);
      mock.timers.tick(200);
      await flush();
      assert.equal(ticks, 2);
      assert.equal(poller.state, "stopped");

      const errors = [];
      const failing = new VisibilityPoller({ intervalMs: 10, doc, tick: async () => { throw new Error("boom"); }, onError: (e) => errors.push(e.message) });
      failing.start({ immediate: true });
      await flush();
      assert.deepEqual(errors, ["boom"]);
      assert.equal(failing.state, "stopped");
    } finally {
      mock.timers.reset();
    }
  });
});
