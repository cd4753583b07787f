// Unit tests of what the site says in words (words.js, node-text.js) and of the lineage model's
// handling of the contract's new fields (docs/design.md, "Merged accounts, creation ledgers,
// completeness"), against saved answers with and without those fields.
//   node --test static_site/tests/
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { formatTimestamp, isIsoDateTime } from "../js/format.js";
import { layout } from "../js/layout.js";
import { attachChildren, awaitingEnrichment, fromLineage, refreshFacts } from "../js/lineage-model.js";
import { GENESIS, childrenNote, nodeFacts, nodeName } from "../js/node-text.js";
import { GAP_WORDS, PIPELINE_WORDS, STAGE_WORDS, completenessText, ledgerText, livesText, mergedText, pipelineWords, stageWords, syncFacts, syncSourceText } from "../js/words.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const load = (name) => JSON.parse(readFileSync(join(HERE, "fixtures", name), "utf8"));
const RAW_CODE = /^[A-Z_]+$|_/;

describe("pipeline paths and stages in words", () => {
  test("every pipeline_source of the contract has words, and none is a code", () => {
    assert.deepEqual(Object.keys(PIPELINE_WORDS).sort(), ["API", "BIGQUERY", "BIGQUERY_WITH_API_FALLBACK", "HUBBLE_SYNC"]);
    assert.equal(pipelineWords("API"), "Horizon + Stellar Expert");
    assert.equal(pipelineWords("BIGQUERY_WITH_API_FALLBACK"), "Hubble, finished by Horizon + Stellar Expert");
    assert.equal(pipelineWords("BIGQUERY"), "Hubble (BigQuery)");
    assert.equal(pipelineWords("HUBBLE_SYNC"), "Hubble network sync"); // docs/design.md, "The network-wide Hubble sync"
    for (const words of Object.values(PIPELINE_WORDS)) assert.doesNotMatch(words, RAW_CODE);
  });

  test("an unknown or missing path is never shown as a raw code", () => {
    assert.equal(pipelineWords("SOME_NEW_PATH"), "Some new path");
    assert.equal(pipelineWords(null), "—");
    assert.equal(pipelineWords(undefined), "—");
    assert.equal(pipelineWords("\u202eEVIL"), "\\u202eevil", "control characters stay visible");
  });

  test("stage names in words, the label stages included", () => {
    assert.equal(stageWords("stellar_toml"), "stellar.toml check");
    assert.equal(stageWords("directory_labels"), "Directory labels (Stellar Expert)");
    assert.equal(stageWords("expansion"), "Children");
    assert.equal(stageWords("future_stage"), "Future stage");
    assert.equal(stageWords(""), "—");
    for (const [code, words] of Object.entries(STAGE_WORDS)) assert.ok(!words.includes("_"), `${code}: ${words}`);
  });
});

describe("completeness in words", () => {
  test("complete, absent (older answers) or malformed: nothing to say", () => {
    assert.equal(completenessText(undefined), null);
    assert.equal(completenessText(null), null);
    assert.equal(completenessText("incomplete"), null);
    assert.equal(completenessText({ children_complete: true, children_found: 4 }), null);
    assert.equal(completenessText(load("lineage-small.json").completeness), null);
  });

  test("the server's message wins", () => {
    const c = load("contract-airdrop-api-page1.json").completeness;
    assert.equal(completenessText(c), "30,000 children found; history before 2025-01-01 is not visible without Hubble");
  });

  test("without a message the words are built from the count, the reason and visible_from", () => {
    const base = { children_complete: false, children_found: 4, message: null, visible_from: "2025-01-01T00:00:00Z" };
    assert.equal(completenessText({ ...base, reason: "history_pruned" }), "4 children found; history before 2025-01-01 is not visible without Hubble");
    assert.match(completenessText({ ...base, reason: "hubble_budget" }), /^4 children found; history before 2025-01-01 was not read: .*cost guard$/);
    assert.match(completenessText({ ...base, reason: "hubble_unavailable" }), /Hubble was not available/);
    assert.equal(completenessText({ ...base, reason: "children_cap", visible_from: null }), `4 children found; ${GAP_WORDS.children_cap}`);
    assert.equal(completenessText({ ...base, children_found: 1, reason: "children_cap" }), `1 child found; ${GAP_WORDS.children_cap}`);
    assert.equal(completenessText({ children_complete: false }), "The children list may be incomplete");
    assert.equal(completenessText({ children_complete: false, reason: "children_cap" }), `The children list is incomplete; ${GAP_WORDS.children_cap}`);
    assert.equal(completenessText({ ...base, reason: "new_reason", visible_from: null }), "4 children found; the list is incomplete (new reason)");
  });

  test("a hostile message stays visible text", () => {
    assert.equal(completenessText({ children_complete: false, message: "<b>4</b>\u202e found" }), "<b>4</b>\\u202E found");
  });
});

describe("merges and lives in words", () => {
  test("merged into whom and when; a live account says nothing", () => {
    const tree = load("contract-merged.json").tree;
    assert.equal(mergedText(tree), `Merged into ${tree.merged_into} on 2024-03-01 12:00 UTC`);
    assert.equal(mergedText(tree, { short: true }), `Merged into ${tree.merged_into.slice(0, 4)}…${tree.merged_into.slice(-4)} on 2024-03-01 12:00 UTC`);
    assert.equal(mergedText({ merged_at: "2024-03-01T12:00:00Z" }), "Merged on 2024-03-01 12:00 UTC");
    assert.equal(mergedText({ merged_into: tree.merged_into }), `Merged into ${tree.merged_into}`);
    assert.equal(mergedText({ merged_at: null, merged_into: null }), null);
    assert.equal(mergedText(load("lineage-small.json").tree), null);
    assert.equal(mergedText({ merged_at: "not a date" }), null);
  });

  test("every life of a re-created account, oldest first; one life says nothing more", () => {
    const lives = livesText(load("contract-merged.json").tree.lives);
    assert.equal(lives.length, 2);
    assert.match(lives[0], /^Life 1: Created 2018-03-04 05:06 UTC by G\w{3}…\w{4} \(ledger [\d,]+\); merged into G\w{3}…\w{4} on 2019-07-08 09:10 UTC\.$/);
    assert.match(lives[1], /^Life 2: Created 2020-01-02 03:04 UTC .*; merged into .* on 2024-03-01 12:00 UTC\.$/);
    assert.deepEqual(livesText(load("contract-chain7.json").tree.lives), []);
    assert.deepEqual(livesText(undefined), []);
    const open = livesText([{ created_at: "2018-01-01T00:00:00Z", merged_at: "2019-01-01T00:00:00Z" }, { created_at: "2020-01-01T00:00:00Z" }]);
    assert.match(open[1], /; still open\.$/);
  });

  test("creation ledgers comma-grouped", () => {
    assert.equal(ledgerText(37362540), "37,362,540");
    assert.equal(ledgerText(null), "—");
    assert.equal(ledgerText("x"), "—");
  });
});

describe("timestamps", () => {
  test("ISO date-times with microseconds read as UTC seconds", () => {
    assert.equal(formatTimestamp("2026-12-07T03:42:46.607000Z"), "2026-12-07 03:42:46 UTC");
    assert.equal(formatTimestamp("2026-12-07T05:42:46+02:00"), "2026-12-07 03:42:46 UTC");
    assert.equal(formatTimestamp(null), "—");
    assert.equal(formatTimestamp("soon"), "—");
    assert.ok(isIsoDateTime("2026-12-07T03:42:46.607000Z"));
    assert.ok(!isIsoDateTime("2026-12-07"), "a date alone is not a timestamp");
    assert.ok(!isIsoDateTime("2026-13-45T99:00:00Z"));
    assert.ok(!isIsoDateTime(20261207));
  });
});

describe("node facts and notes", () => {
  test("a contract answer: creation ledger, pipeline in words, incomplete children said", () => {
    const model = fromLineage(load("contract-airdrop-api-page1.json"));
    const facts = Object.fromEntries(nodeFacts(model.tree, { full: true }));
    assert.equal(facts["Creation ledger"], model.tree.creation_ledger.toLocaleString("en-US"));
    assert.equal(facts.Pipeline, "Horizon + Stellar Expert");
    assert.equal(facts.Children, "30,000 found (incomplete)");
    for (const value of Object.values(facts)) assert.doesNotMatch(String(value), /\bAPI\b|BIGQUERY/);
  });

  test("the creator is never a silent blank: genesis, unknown after the crawl, not yet known", () => {
    const creator = (d) => Object.fromEntries(nodeFacts(d)).Creator;
    assert.equal(creator({ account: "GB", creator: "GA", status: "COMPLETE" }), "GA");
    assert.equal(creator({ account: GENESIS, creator: null, status: "COMPLETE" }), "none (genesis)");
    assert.match(creator({ account: "GB", creator: null, status: "COMPLETE" }), /^unknown: /);
    assert.equal(creator({ account: "GB", creator: null, status: "PENDING" }), "—");
  });

  test("an older answer: no creation ledger row, no merge, children as a count", () => {
    const model = fromLineage(load("lineage-small.json"));
    const facts = Object.fromEntries(nodeFacts(model.tree, { full: true }));
    assert.ok(!("Creation ledger" in facts));
    assert.equal(facts.Children, "20");
    assert.ok(["Horizon + Stellar Expert", "Hubble (BigQuery)"].includes(facts.Pipeline));
  });

  test("the 'N more' tooltip tells its parent's completeness; a complete list tells nothing", () => {
    const model = fromLineage(load("contract-airdrop-api-page1.json"));
    const r = layout(model, { layout: "radial" });
    const more = r.nodes.find((n) => n.kind === "more");
    const root = r.nodes.find((n) => n.kind === "root");
    assert.equal(childrenNote(more, root.data), model.completeness.message);
    assert.equal(childrenNote(root), model.completeness.message);
    assert.equal(childrenNote(r.nodes.find((n) => n.kind === "account")), null);
    const small = layout(fromLineage(load("lineage-small.json")), { layout: "radial" });
    assert.equal(childrenNote(small.nodes.find((n) => n.kind === "root")), null);
  });

  test("a merged node's screen-reader name says so", () => {
    const r = layout(fromLineage(load("contract-merged.json")), { layout: "tidy" });
    assert.match(nodeName(r.nodes.find((n) => n.kind === "root")), /, merged into G\w{3}…\w{4} on 2024-03-01 12:00 UTC\./);
  });
});

describe("the lineage model keeps completeness with its node", () => {
  test("fromLineage, attachChildren and refreshFacts carry the body's completeness", () => {
    const model = fromLineage(load("contract-airdrop-api-page1.json"));
    assert.equal(model.tree.completeness.children_complete, false);
    const legacy = fromLineage(load("lineage-small.json"));
    assert.ok(!("completeness" in legacy.tree));

    const small = fromLineage(load("lineage-small.json"));
    const child = small.tree.children.find((c) => c.num_children > 0);
    const sub = load("contract-airdrop-api-page1.json");
    sub.tree.account = child.account;
    sub.account = child.account;
    assert.equal(attachChildren(small, child.account, sub), 100);
    const attached = small.tree.children.find((c) => c.account === child.account);
    assert.equal(attached.completeness.children_found, 30000);
    attached.completeness.children_found = 1;
    assert.equal(sub.completeness.children_found, 30000, "a copy: the answer itself is untouched");

    const fresh = load("contract-airdrop-api-page1.json");
    fresh.completeness = { ...fresh.completeness, children_complete: true, message: null };
    assert.ok(refreshFacts(model, fresh) >= 1);
    assert.equal(model.tree.completeness.children_complete, true);
    assert.equal(refreshFacts(model, fresh), 0, "nothing changed the second time");
    delete fresh.completeness;
    refreshFacts(model, fresh);
    assert.ok(!("completeness" in model.tree), "an answer without it clears it");
  });

  test("a merged account has no balance to wait for", () => {
    const model = fromLineage(load("contract-merged.json"));
    assert.equal(model.tree.xlm_balance, null);
    assert.equal(awaitingEnrichment(model), false);
    model.tree.merged_at = null;
    model.tree.merged_into = null;
    assert.equal(awaitingEnrichment(model), true);
  });
});

// GET /stats/sync's body (docs/design.md, "The network-wide Hubble sync").
const SYNC_DONE = Object.freeze({
  network: "public", status: "DONE", sync_id: "full-1", mode: "full", synced_through: "2026-12-06T09:00:00Z",
  ranges_total: 130, ranges_done: 130, accounts: 9876543, edges: 9876542, merges: 123456, bytes_billed: 1073741824,
  spent_usd: "6.103516", last_error: null, started_at: "2026-12-05T00:00:00Z", updated_at: "2026-12-06T10:00:00Z",
});
const NEVER = Object.freeze({ network: "testnet", status: "NEVER_SYNCED", sync_id: null, synced_through: null, accounts: null, edges: null, merges: null, spent_usd: null });

describe("the network-wide Hubble sync in words", () => {
  test("a sync that never ran says so, whatever the answer lacks", () => {
    for (const body of [NEVER, null, undefined, {}, { status: "" }]) assert.deepEqual(syncFacts(body), [["Status", "Never synced"]]);
  });

  test("a finished sync: the last synced closed_at, counts, ranges and the exact spend", () => {
    assert.deepEqual(Object.fromEntries(syncFacts(SYNC_DONE)), {
      Status: "Done",
      "Synced through": "2026-12-06 09:00 UTC",
      Accounts: "9,876,543",
      Edges: "9,876,542",
      Merges: "123,456",
      Ranges: "130 of 130 done",
      Spent: "$6.103516",
    });
  });

  test("a sync under way with an error; nothing is shown as a code or a made-up figure", () => {
    const rows = Object.fromEntries(syncFacts({ ...SYNC_DONE, status: "RUNNING", synced_through: null, ranges_done: 3, edges: null, spent_usd: "1e3", last_error: "BigQuery: 503\u202e" }));
    assert.equal(rows.Status, "Running");
    assert.equal(rows["Synced through"], "nothing yet");
    assert.equal(rows.Ranges, "3 of 130 done");
    assert.equal(rows.Edges, "—");
    assert.equal(rows.Spent, "—", "a spend that is not a plain decimal is not shown");
    assert.equal(rows["Last error"], "BigQuery: 503\\u202E", "control characters stay visible");
    assert.equal(Object.fromEntries(syncFacts({ ...SYNC_DONE, status: "FAILED" })).Status, "Failed (its tasks are retried)");
    assert.equal(Object.fromEntries(syncFacts({ ...SYNC_DONE, status: "PAUSED_NEW" })).Status, "Paused new");
  });

  test("an answer from the sync names the day the sync is complete up to", () => {
    assert.equal(syncSourceText("HUBBLE_SYNC", SYNC_DONE), "From the network sync of 2026-12-06");
    assert.equal(syncSourceText("hubble_sync", SYNC_DONE), "From the network sync of 2026-12-06");
    assert.equal(syncSourceText("HUBBLE_SYNC", null), "From the network sync", "the day unknown: no day, never a wrong one");
    assert.equal(syncSourceText("HUBBLE_SYNC", NEVER), "From the network sync");
    for (const other of ["API", "BIGQUERY", "BIGQUERY_WITH_API_FALLBACK", null, undefined, ""]) assert.equal(syncSourceText(other, SYNC_DONE), null);
  });
});
