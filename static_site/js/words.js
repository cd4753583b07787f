// What the site says in words for the API's codes: pipeline paths, stage names, the completeness
// of a children list, merges and lives (docs/design.md, "Merged accounts, creation ledgers,
// completeness"). Pure: plain strings out, rendered by the callers with textContent / .text().
import { displayText, formatCount, formatDate, shortAccount } from "./format.js";

/** pipeline_source -> the path that ran, in words. */
export const PIPELINE_WORDS = Object.freeze({
  API: "Horizon + Stellar Expert",
  BIGQUERY: "Hubble (BigQuery)",
  BIGQUERY_WITH_API_FALLBACK: "Hubble, finished by Horizon + Stellar Expert",
  HUBBLE_SYNC: "Hubble network sync",
});

/** Pipeline stages, in the order the explorer lists them, with their names in words. */
export const STAGE_WORDS = Object.freeze({
  hubble_lineage: "Creator from Hubble",
  parent_lineage: "Creator lineage",
  horizon_data: "Horizon account data",
  attributes: "Attributes",
  assets: "Assets",
  flags: "Flags",
  expert_enrichment: "Stellar Expert enrichment",
  creator_discovery: "Creator discovery",
  expansion: "Children",
  directory_labels: "Directory labels (Stellar Expert)",
  stellar_toml: "stellar.toml check",
});

/** Reason codes of an incomplete children list -> why, in words. */
export const GAP_WORDS = Object.freeze({
  history_pruned: "Horizon's history starts after this account was created and Hubble could not fill the gap",
  children_cap: "the crawl stopped at its cap on children",
  hubble_budget: "the Hubble query for the older history was refused by the cost guard",
  hubble_unavailable: "Hubble was not available for the older history",
});

// "SOME_CODE" / "some_code" -> "Some code": never show an unknown code raw.
function codeToWords(code) {
  const text = displayText(code);
  if (text === "—") return text;
  const spaced = text.replace(/_+/g, " ").trim().toLowerCase();
  return spaced ? spaced[0].toUpperCase() + spaced.slice(1) : "—";
}

/** The pipeline path that produced a record, in words; null/absent -> "—". */
export function pipelineWords(source) {
  if (source === null || source === undefined || source === "") return "—";
  return PIPELINE_WORDS[String(source).toUpperCase()] ?? codeToWords(source);
}

/** A stage name in words ("stellar_toml" -> "stellar.toml check"); unknown stages lose their underscores. */
export function stageWords(stage) {
  if (stage === null || stage === undefined || stage === "") return "—";
  return STAGE_WORDS[String(stage)] ?? codeToWords(stage);
}

const isDate = (iso) => formatDate(iso) !== "—";
const dayOf = (iso) => formatDate(iso).slice(0, 10);

/**
 * The completeness of a children list in words, or null when the list is complete or the answer
 * predates the field (older answers carry no `completeness`). The server's `message` wins; without
 * one the words are built from the counts, the reason and `visible_from`.
 */
export function completenessText(completeness) {
  if (!completeness || typeof completeness !== "object" || completeness.children_complete !== false) return null;
  if (typeof completeness.message === "string" && completeness.message.trim()) return displayText(completeness.message.trim());
  const found = Number.isFinite(Number(completeness.children_found)) && completeness.children_found !== null ? Number(completeness.children_found) : null;
  const head = found === null ? "The children list is incomplete" : `${formatCount(found)} ${found === 1 ? "child" : "children"} found`;
  const reason = completeness.reason;
  if (found === null && !reason) return "The children list may be incomplete";
  const from = isDate(completeness.visible_from) ? dayOf(completeness.visible_from) : null;
  if (reason === "history_pruned" && from) return `${head}; history before ${from} is not visible without Hubble`;
  if (reason === "hubble_budget" && from) return `${head}; history before ${from} was not read: the Hubble query was refused by the cost guard`;
  if (reason === "hubble_unavailable" && from) return `${head}; history before ${from} is not visible: Hubble was not available`;
  const why = typeof reason === "string" && reason ? GAP_WORDS[reason] ?? `the list is incomplete (${codeToWords(reason).toLowerCase()})` : "the list may be incomplete";
  return `${head}; ${why}`;
}

/** "Merged into GABC…WXYZ on 2024-03-01 12:00 UTC" for a merged account; null otherwise. */
export function mergedText(node, { short = false } = {}) {
  if (!node || typeof node !== "object") return null;
  const into = typeof node.merged_into === "string" && node.merged_into ? displayText(node.merged_into) : null;
  const when = isDate(node.merged_at) ? formatDate(node.merged_at) : null;
  if (!into && !when) return null;
  const who = into ? ` into ${short ? shortAccount(into) : into}` : "";
  return `Merged${who}${when ? ` on ${when}` : ""}`;
}

/** The creation ledger, comma-grouped ("37,362,540"), or "—". */
export function ledgerText(ledger) {
  if (ledger === null || ledger === undefined || ledger === "" || !Number.isFinite(Number(ledger))) return "—";
  return formatCount(ledger);
}

/**
 * Every life of a re-created account, oldest first, one sentence each:
 * "Created 2019-01-02 03:04 UTC by GABC…WXYZ (ledger 1,234); merged into GDEF…UVWX on …".
 * An answer without `lives` (or with a single life, already told by Creator/Created) gives [].
 */
export function livesText(lives) {
  if (!Array.isArray(lives) || lives.length < 2) return [];
  return lives.map((life, i) => {
    const l = life && typeof life === "object" ? life : {};
    const by = typeof l.creator === "string" && l.creator ? ` by ${shortAccount(displayText(l.creator))}` : "";
    const ledger = ledgerText(l.creation_ledger);
    const created = `Created ${formatDate(l.created_at)}${by}${ledger === "—" ? "" : ` (ledger ${ledger})`}`;
    const merged = mergedText(l, { short: true });
    const end = merged ? `; ${merged[0].toLowerCase()}${merged.slice(1)}` : i === lives.length - 1 ? "; still open" : "";
    return `Life ${i + 1}: ${created}${end}.`;
  });
}

// ------------------------------------------------------------------ the network-wide Hubble sync
// GET /stats/sync's body (docs/design.md, "The network-wide Hubble sync"): status NEVER_SYNCED
// (null counts) or RUNNING | DONE | FAILED with what is written so far.

const SYNC_STATUS_WORDS = Object.freeze({ RUNNING: "Running", DONE: "Done", FAILED: "Failed (its tasks are retried)" });
const count = (n) => (n === null || n === undefined || !Number.isFinite(Number(n)) ? "—" : formatCount(n));

/** The sync of a network as [label, text] rows; one row "Never synced" when it never ran or is unknown. */
export function syncFacts(sync) {
  if (!sync || typeof sync !== "object" || !sync.status || sync.status === "NEVER_SYNCED") return [["Status", "Never synced"]];
  const rows = [
    ["Status", SYNC_STATUS_WORDS[String(sync.status).toUpperCase()] ?? codeToWords(sync.status)],
    ["Synced through", isDate(sync.synced_through) ? formatDate(sync.synced_through) : "nothing yet"],
    ["Accounts", count(sync.accounts)],
    ["Edges", count(sync.edges)],
    ["Merges", count(sync.merges)],
    ["Ranges", `${count(sync.ranges_done)} of ${count(sync.ranges_total)} done`],
    // spent_usd is an exact decimal string: shown as given, never rounded through a float
    ["Spent", typeof sync.spent_usd === "string" && /^[0-9]+(\.[0-9]+)?$/.test(sync.spent_usd) ? `$${sync.spent_usd}` : "—"],
  ];
  if (typeof sync.last_error === "string" && sync.last_error.trim()) rows.push(["Last error", displayText(sync.last_error.trim())]);
  return rows;
}

/**
 * What the lineage view says about an answer from the sync: "From the network sync of 2026-12-06"
 * (the day the sync is complete up to), "From the network sync" when that day is not known, and null
 * for an answer of another path.
 */
export function syncSourceText(source, sync = null) {
  if (source === null || source === undefined || String(source).toUpperCase() !== "HUBBLE_SYNC") return null;
  const through = sync && typeof sync === "object" && isDate(sync.synced_through) ? dayOf(sync.synced_through) : null;
  return through ? `From the network sync of ${through}` : "From the network sync";
}
