// The client-side model of a lineage being explored: the `/account-lineage` body, plus the pages
// of children fetched since and the sub-trees expanded in place. No DOM; unit-tested under Node.
//
// Each tree node may hold `children` (loaded), `more` ({count, next_cursor}: what the server still
// holds, derived from children_page when present) and `shown` (how many loaded children the user
// revealed; see layout.js fanOut).
import { fanOut } from "./layout.js";

// What the server still holds under a node after `loaded` children: {count, next_cursor} or null.
// count is null when the server has a next page but no total to count from.
function remaining(body, loaded) {
  const page = body && body.children_page;
  const more = body && body.tree && body.tree.more;
  const nextCursor = (page && page.next_cursor) || (more && more.next_cursor) || null;
  if (!nextCursor) return null;
  const total = page && page.total !== null && page.total !== undefined && Number.isFinite(Number(page.total)) ? Number(page.total) : null;
  let count = null;
  if (total !== null) count = total - loaded;
  else if (more && more.count !== null && more.count !== undefined && Number.isFinite(Number(more.count))) count = Number(more.count);
  return { count: count !== null && count > 0 ? count : null, next_cursor: nextCursor };
}

// The body's `completeness` (absent in older answers) describes the children of its tree node: kept
// on that node so every expanded sub-tree carries its own.
function setCompleteness(node, body) {
  const c = body && body.completeness;
  if (c && typeof c === "object") node.completeness = structuredClone(c);
  else delete node.completeness;
}

/** A deep copy of an `/account-lineage` body, ready to explore (more derived from children_page). */
export function fromLineage(body) {
  if (!body || !body.tree) throw new TypeError("not an account-lineage body");
  const copy = structuredClone(body);
  copy.ancestors = Array.isArray(copy.ancestors) ? copy.ancestors : [];
  copy.tree.children = Array.isArray(copy.tree.children) ? copy.tree.children : [];
  copy.tree.more = remaining(body, copy.tree.children.length);
  delete copy.tree.shown;
  setCompleteness(copy.tree, body);
  return copy;
}

/** Find a node of the tree (root or any loaded descendant) by account; null when absent. */
export function findNode(model, account) {
  const stack = [model.tree];
  while (stack.length) {
    const node = stack.pop();
    if (node.account === account) return node;
    if (Array.isArray(node.children)) for (const c of node.children) stack.push(c);
  }
  return null;
}

/**
 * The user activated the "N more" node under `parentAccount`. Reveals the next page of loaded
 * children if any are hidden and answers {fetch: null}; otherwise answers {fetch: cursor} when the
 * server holds more (the caller fetches that page and calls appendPage), or {fetch: null} if nothing is left.
 */
export function revealMore(model, parentAccount, options) {
  const node = findNode(model, parentAccount);
  if (!node) return { fetch: null, revealed: 0 };
  const f = fanOut(node, options);
  if (f.hiddenLoaded > 0) {
    const revealed = Math.min(options.pageSize, f.hiddenLoaded);
    node.shown = f.shown + revealed;
    return { fetch: null, revealed };
  }
  if ((f.remote > 0 || f.remoteUnknown) && node.more && node.more.next_cursor) return { fetch: node.more.next_cursor, revealed: 0 };
  return { fetch: null, revealed: 0 };
}

/** Append one fetched page of children (an `/account-lineage?cursor=` body) under `parentAccount`. */
export function appendPage(model, parentAccount, body, options) {
  const node = findNode(model, parentAccount);
  if (!node) return 0;
  const f = fanOut(node, options);
  const existing = new Set((node.children || []).map((c) => c.account));
  const incoming = (body && body.tree && Array.isArray(body.tree.children) ? body.tree.children : []).filter(
    (c) => !existing.has(c.account),
  );
  node.children = (node.children || []).concat(structuredClone(incoming));
  node.shown = f.shown + incoming.length;
  node.more = remaining(body, node.children.length);
  return incoming.length;
}

/** Expand a loaded account in place with its own first page of children (an `/account-lineage` body). */
export function attachChildren(model, account, body) {
  const node = findNode(model, account);
  if (!node || !body || !body.tree) return 0;
  const children = Array.isArray(body.tree.children) ? structuredClone(body.tree.children) : [];
  node.children = children;
  node.more = remaining(body, children.length);
  delete node.shown;
  setCompleteness(node, body);
  if (body.tree.num_children !== undefined && node.num_children === undefined) node.num_children = body.tree.num_children;
  return children.length;
}

/** True when `node` can be expanded in place: it has children on the server and none loaded. */
export function canExpand(node) {
  const loaded = Array.isArray(node.children) ? node.children.length : 0;
  return loaded === 0 && !node.more && Number(node.num_children) > 0;
}

/** Count the accounts of the model (root + every loaded descendant). */
export function countLoaded(model) {
  let n = 0;
  const stack = [model.tree];
  while (stack.length) {
    const node = stack.pop();
    n += 1;
    if (Array.isArray(node.children)) for (const c of node.children) stack.push(c);
  }
  return n;
}

const STRUCTURE = new Set(["children", "more", "shown", "completeness"]);

function copyFacts(target, source) {
  let changed = false;
  for (const [key, value] of Object.entries(source)) {
    if (STRUCTURE.has(key)) continue;
    if (JSON.stringify(target[key]) !== JSON.stringify(value)) {
      target[key] = structuredClone(value);
      changed = true;
    }
  }
  return changed;
}

/**
 * Newer facts for what is already drawn (a fresh first page of `/account-lineage` for the root):
 * the root's and its loaded children's fields and the ancestors, without touching the structure
 * (pages loaded, sub-trees expanded). Returns how many nodes changed.
 */
export function refreshFacts(model, body) {
  if (!body || !body.tree || body.tree.account !== model.tree.account) return 0;
  let changed = copyFacts(model.tree, body.tree) ? 1 : 0;
  const fresh = body.completeness && typeof body.completeness === "object" ? body.completeness : undefined;
  if (JSON.stringify(model.tree.completeness) !== JSON.stringify(fresh)) {
    setCompleteness(model.tree, body);
    changed += 1;
  }
  const byAccount = new Map((model.tree.children || []).map((c) => [c.account, c]));
  for (const fresh of Array.isArray(body.tree.children) ? body.tree.children : []) {
    const known = byAccount.get(fresh.account);
    if (known && copyFacts(known, fresh)) changed += 1;
  }
  if (Array.isArray(body.ancestors) && body.ancestors.length === model.ancestors.length) {
    body.ancestors.forEach((a, i) => {
      if (model.ancestors[i].account === a.account && copyFacts(model.ancestors[i], a)) changed += 1;
    });
  }
  return changed;
}

/** True when the account was merged away (its current life ended: no balance to wait for). */
export function isMerged(node) {
  return Boolean(node && (node.merged_at || node.merged_into));
}

/** True while the searched account (or a child of its first page) still waits for its enrichment. */
export function awaitingEnrichment(model, pageSize = 100) {
  const missing = (n) => !isMerged(n) && (n.xlm_balance === null || n.xlm_balance === undefined);
  if (missing(model.tree)) return true;
  return (model.tree.children || []).slice(0, pageSize).some(missing);
}
