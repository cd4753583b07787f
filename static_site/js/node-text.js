// The text of a tree node: its one-line label, its screen-reader name and its facts (tooltip and
// account card). Pure: plain strings out (tested under Node); the drawing sets them as text.
import { displayText, formatAssets, formatCount, formatDate, formatFlags, formatXlm, labelFacts, shortAccount, truncate } from "./format.js";
import { canExpand, isMerged } from "./lineage-model.js";
import { completenessText, ledgerText, mergedText, pipelineWords } from "./words.js";

export { isMerged } from "./lineage-model.js";

export const GENESIS = "GAAZI4TCR3TY5OJHCTJC2A4QSY6CJWJH5IAJTGKIN2ER7LBNVKOCCWN7";

export function tagsOf(data) {
  return data && Array.isArray(data.tags) ? data.tags.map(String) : [];
}

/** The label of an aggregated node: "99,900 more" (or "1,000+ more" when the server has no total). */
export function moreText(n) {
  if (!n.remoteUnknown) return `${formatCount(n.count)} more`;
  return n.count > 0 ? `${formatCount(n.count)}+ more` : "more…";
}

/** The one-line label of a node (plain text). */
export function nodeLabel(n) {
  if (n.kind === "more") return moreText(n);
  const data = n.data || {};
  if (n.account === GENESIS) return "genesis";
  const base = data.home_domain ? truncate(displayText(data.home_domain), 22) : shortAccount(n.account);
  return tagsOf(data).includes("malicious") ? `⚠ ${base}` : base;
}

/** Screen-reader name of a node (plain text). */
export function nodeName(n) {
  if (n.kind === "more") {
    return `${moreText(n)} children of ${shortAccount(n.parentAccount)}. Press Enter to show the next page.`;
  }
  const data = n.data || {};
  const role = n.kind === "root" ? "Searched account" : n.kind === "ancestor" ? "Ancestor" : "Child account";
  const domain = data.home_domain ? `, home domain ${displayText(data.home_domain)}` : "";
  const tags = tagsOf(data).length ? `, tagged ${tagsOf(data).join(", ")}` : "";
  const said = isMerged(data) ? mergedText(data, { short: true }) : null;
  const merged = said ? `, ${said[0].toLowerCase()}${said.slice(1)}` : "";
  const kids = n.kind === "account" && canExpand(data) ? ` Has ${formatCount(data.num_children)} children; press + to show them here.` : "";
  const action = n.kind === "root" ? "" : " Press Enter to centre on it.";
  return `${role} ${n.account}${domain}${tags}${merged}.${action}${kids}`;
}

/** Who created the account, never a silent blank: a finished account whose creator nobody could tell says so. */
export function creatorText(data) {
  if (data.creator) return data.creator;
  if (data.account === GENESIS) return "none (genesis)";
  if (data.status === "COMPLETE") return "unknown: beyond Horizon's history, unknown to Stellar Expert, not read from Hubble";
  return "—";
}

/**
 * The facts of an account as [label, text] rows (a merge is told apart, as a sentence: mergedText). `full` adds what the account card shows beyond
 * the tooltip (assets, status). Fields an older answer lacks are left out, never shown as codes.
 */
export function nodeFacts(d, { account = null, full = false } = {}) {
  const data = d && typeof d === "object" ? d : {};
  const rows = [
    ["Account", data.account ?? account ?? "—"],
    ["Creator", creatorText(data)],
    ["Created", formatDate(data.created_at)],
  ];
  if (data.creation_ledger !== undefined && data.creation_ledger !== null) rows.push(["Creation ledger", ledgerText(data.creation_ledger)]);
  rows.push(["XLM balance", formatXlm(data.xlm_balance)], ["Home domain", displayText(data.home_domain)], ["Flags", formatFlags(data.flags)]);
  if (full) rows.push(["Assets", formatAssets(data.assets)]);
  rows.push(["Pipeline", pipelineWords(data.pipeline_source)]);
  if (full) rows.push(["Status", displayText(data.status)]);
  if (full || (Number.isFinite(Number(data.num_children)) && data.num_children !== null)) {
    const count = data.num_children === null || data.num_children === undefined ? "—" : formatCount(data.num_children);
    rows.push(["Children", completenessText(data.completeness) ? `${count} found (incomplete)` : count]);
  }
  rows.push(...labelFacts(data));
  return rows;
}

/**
 * What a node's tooltip says about its children list when it is incomplete (null otherwise): the
 * node's own list, or for an aggregated "N more" node its parent's (`parentData`).
 */
export function childrenNote(n, parentData = null) {
  const owner = n.kind === "more" ? parentData : n.data;
  return completenessText(owner && owner.completeness);
}
