// Pure tree layouts for StellarMap: no DOM, no randomness, no mutation of the input.
//
//   layout(data, options) -> {nodes, links, bounds, stats}
//
// `data` is the body of stats `/account-lineage` (docs/design.md):
//   {ancestors: [Node] (genesis first, direct creator last),
//    tree: Node + {children: [Node + {children?, more?, shown?}], more: {count, next_cursor}|null}}
// Any node may carry `children`/`more` (inline-expanded sub-trees) and `shown`: how many of its
// loaded children the user has revealed. A fan-out larger than `aggregateAbove` is folded: only
// `shown` (default `pageSize`) children are laid out, followed by one aggregated "N more" node
// standing for the rest (loaded but hidden, plus what the server still holds).
//
// Two layouts: "tidy" (top-down Reingold-Tilford, ancestors straight above the searched account)
// (straight, or slanted up-left with `chainSlant`: see fit.js chooseChainSlant)
// and "radial" (searched account at the centre, descendants on rings that leave a wedge free
// straight up, where the ancestor chain runs from the centre to beyond the outermost ring). Both guarantee that no two nodes are closer than
// tidy: min(siblingGap, levelGap, chainGap); radial: min(minSeparation, levelGap, chainGap).
import "../vendor/d3.min.js";

const d3 = globalThis.d3;
const TAU = 2 * Math.PI;

export const DEFAULTS = Object.freeze({
  layout: "radial", // "radial" | "tidy"
  pageSize: 100, // children revealed per page of a folded fan-out
  aggregateAbove: 100, // fan-outs with more loaded children than this are folded
  siblingGap: 22, // tidy: horizontal distance between siblings (px)
  levelGap: 90, // tidy: vertical distance between generations; radial: minimum ring step (px)
  groupGap: 1.6, // tidy + radial: separation between neighbouring sub-trees, in sibling gaps
  minSeparation: 18, // radial: minimum distance between any two nodes (px)
  wedge: Math.PI / 3, // radial: angle kept free (straight up) for the ancestor chain
  maxSlotAngle: Math.PI / 9, // radial: widest angle between two siblings (keeps small fans compact)
  chainGap: 60, // distance between ancestors on the chain (px)
  chainSlant: 0, // tidy: the chain climbs up-left, this many px sideways per px up (0: straight up)
});

export const LAYOUTS = Object.freeze(["radial", "tidy"]);

/** Merge options with defaults and clamp them to sane ranges. */
export function normalizeOptions(options = {}) {
  const o = { ...DEFAULTS, ...options };
  if (!LAYOUTS.includes(o.layout)) throw new RangeError(`unknown layout ${JSON.stringify(o.layout)}`);
  for (const key of ["pageSize", "aggregateAbove", "siblingGap", "levelGap", "groupGap", "minSeparation", "chainGap"]) {
    const v = Number(o[key]);
    if (!Number.isFinite(v) || v <= 0) throw new RangeError(`option ${key} must be a positive number`);
    o[key] = v;
  }
  const slant = Number(o.chainSlant);
  if (!Number.isFinite(slant) || slant < 0) throw new RangeError("option chainSlant must be a number >= 0");
  o.chainSlant = slant;
  o.pageSize = Math.floor(o.pageSize);
  o.aggregateAbove = Math.floor(o.aggregateAbove);
  if (o.groupGap < 1) o.groupGap = 1;
  return o;
}

/** Key of the aggregated node that stands for the hidden children of `parentId`. */
export function moreId(parentId) {
  return `${parentId}::more`;
}

/**
 * How many loaded children of `node` are revealed (`shown`), how many are loaded but folded
 * (`hiddenLoaded`), how many the server still holds (`remote`; `remoteUnknown` when the server has
 * a next page but did not say how many), and `hidden` = hiddenLoaded + remote.
 */
export function fanOut(node, options = DEFAULTS) {
  const children = Array.isArray(node.children) ? node.children : [];
  const loaded = children.length;
  const defaultShown = loaded > options.aggregateAbove ? options.pageSize : loaded;
  const wanted = Number.isInteger(node.shown) ? node.shown : defaultShown;
  const shown = Math.max(0, Math.min(loaded, wanted));
  const more = node.more && typeof node.more === "object" ? node.more : null;
  const counted = more && more.count !== null && more.count !== undefined && Number.isFinite(Number(more.count));
  const remote = counted ? Math.max(0, Math.floor(Number(more.count))) : 0;
  const remoteUnknown = Boolean(more && !counted && more.next_cursor);
  const hiddenLoaded = loaded - shown;
  return { loaded, shown, hiddenLoaded, remote, remoteUnknown, hidden: hiddenLoaded + remote };
}

// Build the visible hierarchy (plain objects) rooted at the searched account.
function visibleTree(rootData, options) {
  const seen = new Map();
  const uniqueId = (account) => {
    const base = String(account ?? "unknown");
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    return n === 0 ? base : `${base}#${n}`;
  };
  const build = (data, kind) => {
    const id = uniqueId(data.account);
    const out = { id, kind, data, children: [] };
    const f = fanOut(data, options);
    for (let i = 0; i < f.shown; i += 1) out.children.push(build(data.children[i], "account"));
    if (f.hidden > 0 || f.remoteUnknown) {
      out.children.push({
        id: moreId(id),
        kind: "more",
        data: null,
        count: f.hidden,
        hiddenLoaded: f.hiddenLoaded,
        remote: f.remote,
        remoteUnknown: f.remoteUnknown,
        parentAccount: data.account,
        children: [],
      });
    }
    return out;
  };
  return { tree: build(rootData, "root"), reserve: (account) => uniqueId(account) };
}

function nodeRecord(d, x, y, extra) {
  const rec = {
    id: d.data.id,
    kind: d.data.kind,
    account: d.data.kind === "more" ? null : d.data.data.account ?? null,
    depth: d.depth,
    parentId: d.parent ? d.parent.data.id : null,
    x,
    y,
    leaf: !d.children || d.children.length === 0,
    data: d.data.data,
    ...extra,
  };
  if (d.data.kind === "more") {
    rec.count = d.data.count;
    rec.hiddenLoaded = d.data.hiddenLoaded;
    rec.remote = d.data.remote;
    rec.remoteUnknown = d.data.remoteUnknown;
    rec.parentAccount = d.data.parentAccount;
  }
  return rec;
}

function ancestorRecords(ancestors, reserve, place) {
  // ancestors: genesis first, direct creator last. The direct creator is the nearest to the root.
  const out = [];
  const n = ancestors.length;
  for (let i = n - 1; i >= 0; i -= 1) {
    const hop = n - i; // 1 for the direct creator
    const a = ancestors[i];
    const { x, y } = place(hop);
    out.push({
      id: reserve(a.account),
      kind: "ancestor",
      account: a.account ?? null,
      depth: -hop,
      parentId: null,
      x,
      y,
      leaf: false,
      data: a,
      hop,
    });
  }
  // Chain links: genesis -> ... -> direct creator -> root.
  return out;
}

function chainLinks(ancestorNodes, rootNode) {
  const links = [];
  // ancestorNodes are ordered direct creator first; link each to the next nearer node.
  let below = rootNode;
  for (const a of ancestorNodes) {
    links.push({ source: a.id, target: below.id, kind: "ancestor", sx: a.x, sy: a.y, tx: below.x, ty: below.y });
    below = a;
  }
  return links.reverse();
}

function boundsOf(nodes) {
  let minX = Infinity;
  let maxX = -Infinity;
  let minY = Infinity;
  let maxY = -Infinity;
  for (const n of nodes) {
    if (n.x < minX) minX = n.x;
    if (n.x > maxX) maxX = n.x;
    if (n.y < minY) minY = n.y;
    if (n.y > maxY) maxY = n.y;
  }
  if (!nodes.length) return { minX: 0, maxX: 0, minY: 0, maxY: 0 };
  return { minX, maxX, minY, maxY };
}

function tidy(root, ancestors, reserve, o) {
  const separation = (a, b) => (a.parent === b.parent ? 1 : o.groupGap);
  d3.tree().nodeSize([o.siblingGap, o.levelGap]).separation(separation)(root);
  const nodes = [];
  root.each((d) => nodes.push(nodeRecord(d, d.x, d.y, {})));
  const links = [];
  root.each((d) => {
    if (d.parent) {
      links.push({
        source: d.parent.data.id,
        target: d.data.id,
        kind: d.data.kind === "more" ? "more" : "child",
        sx: d.parent.x,
        sy: d.parent.y,
        tx: d.x,
        ty: d.y,
      });
    }
  });
  // Each hop is one chain step long whatever the slant: a slanted chain trades height for the
  // width a wide panel has to spare (genesis top-left, the searched account below-right).
  const step = Math.min(o.levelGap, o.chainGap);
  const dy = step / Math.hypot(1, o.chainSlant);
  const dx = dy * o.chainSlant;
  const chain = ancestorRecords(ancestors, reserve, (hop) => ({ x: dx ? -hop * dx : 0, y: -hop * dy }));
  const rootRec = nodes[0];
  return { nodes: chain.slice().reverse().concat(nodes), links: chainLinks(chain, rootRec).concat(links) };
}

function radial(root, ancestors, reserve, o) {
  const separation = (a, b) => (a.parent === b.parent ? 1 : o.groupGap);
  // Slot units: siblings one slot apart, neighbouring sub-trees groupGap slots apart.
  d3.tree().nodeSize([1, 1]).separation(separation)(root);
  const hasChain = ancestors.length > 0;
  const wedge = hasChain ? Math.min(Math.max(o.wedge, 0), Math.PI) : 0;
  let minX = Infinity;
  let maxX = -Infinity;
  root.each((d) => {
    if (d.depth > 0) {
      if (d.x < minX) minX = d.x;
      if (d.x > maxX) maxX = d.x;
    }
  });
  const span = Number.isFinite(minX) ? maxX - minX : 0;
  // One extra slot closes the ring when there is no wedge (last and first siblings stay apart).
  const slot = Math.min((TAU - wedge) / (span + 1), o.maxSlotAngle);
  const mid = Number.isFinite(minX) ? (minX + maxX) / 2 : 0;
  // Angle measured clockwise from straight up; the fan is centred straight down (angle = pi).
  const angleOf = (d) => Math.PI + (d.x - mid) * slot;

  // Per-depth radius: the smallest that keeps adjacent nodes on that ring minSeparation apart
  // (chord = 2 r sin(gap / 2)), and at least levelGap beyond the previous ring.
  const byDepth = [];
  root.each((d) => {
    if (d.depth > 0) (byDepth[d.depth] ??= []).push(angleOf(d));
  });
  const radii = [0];
  const sinHalfWedge = Math.sin(wedge / 2);
  for (let depth = 1; depth < byDepth.length; depth += 1) {
    const angles = byDepth[depth].slice().sort((a, b) => a - b);
    let need = radii[depth - 1] + o.levelGap;
    if (angles.length > 1) {
      let gap = TAU - (angles[angles.length - 1] - angles[0]);
      for (let i = 1; i < angles.length; i += 1) gap = Math.min(gap, angles[i] - angles[i - 1]);
      const chordNeed = o.minSeparation / (2 * Math.sin(Math.min(gap, Math.PI) / 2));
      need = Math.max(need, chordNeed);
    }
    // Keep every descendant at least minSeparation from the ancestor chain (straight up).
    if (hasChain && sinHalfWedge > 0) need = Math.max(need, o.minSeparation / sinHalfWedge);
    radii[depth] = need;
  }

  const nodes = [];
  const pos = new Map();
  root.each((d) => {
    const angle = d.depth === 0 ? 0 : angleOf(d);
    const radius = radii[d.depth];
    const x = radius * Math.sin(angle);
    const y = -radius * Math.cos(angle);
    pos.set(d, { x, y });
    nodes.push(nodeRecord(d, x, y, { angle, radius }));
  });
  const links = [];
  root.each((d) => {
    if (d.parent) {
      const s = pos.get(d.parent);
      const t = pos.get(d);
      links.push({
        source: d.parent.data.id,
        target: d.data.id,
        kind: d.data.kind === "more" ? "more" : "child",
        sx: s.x,
        sy: s.y,
        tx: t.x,
        ty: t.y,
        sAngle: d.parent.depth === 0 ? angleOf(d) : angleOf(d.parent),
        tAngle: angleOf(d),
        sRadius: radii[d.parent.depth],
        tRadius: radii[d.depth],
      });
    }
  });
  // The chain starts beyond the outermost ring, so it and its labels never meet a descendant's.
  const outer = radii.length > 1 ? radii[radii.length - 1] + o.chainGap / 2 : 0;
  const chainRadius = (hop) => outer + hop * o.chainGap;
  const chain = ancestorRecords(ancestors, reserve, (hop) => ({ x: 0, y: -chainRadius(hop) }));
  for (const a of chain) {
    a.angle = 0;
    a.radius = chainRadius(a.hop);
  }
  const rootRec = nodes[0];
  return { nodes: chain.slice().reverse().concat(nodes), links: chainLinks(chain, rootRec).concat(links), radii };
}

/**
 * Lay out a lineage. Returns
 *   nodes: [{id, kind: "ancestor"|"root"|"account"|"more", account, depth, parentId, x, y, leaf, data,
 *            angle?, radius?, count?}]  (ancestors first, genesis first; then the tree breadth-first, root first)
 *   links: [{source, target, kind: "ancestor"|"child"|"more", sx, sy, tx, ty}]
 *   bounds: {minX, maxX, minY, maxY}; stats: {accounts, more, hidden}
 */
export function layout(data, options = {}) {
  const o = normalizeOptions(options);
  if (!data || !data.tree) throw new TypeError("layout needs an account-lineage body with a tree");
  const ancestors = Array.isArray(data.ancestors) ? data.ancestors : [];
  const { tree, reserve } = visibleTree(data.tree, o);
  const root = d3.hierarchy(tree, (d) => (d.children.length ? d.children : null));
  const result = o.layout === "tidy" ? tidy(root, ancestors, reserve, o) : radial(root, ancestors, reserve, o);
  let more = 0;
  let hidden = 0;
  for (const n of result.nodes) {
    if (n.kind === "more") {
      more += 1;
      hidden += n.count;
    }
  }
  return {
    layout: o.layout,
    nodes: result.nodes,
    links: result.links,
    bounds: boundsOf(result.nodes),
    stats: { accounts: result.nodes.length - more, more, hidden },
  };
}

/** Smallest distance between two nodes of a layout and the pair (for tests and debugging). */
export function minimumDistance(nodes, filter = () => true) {
  // Sort-and-sweep on x: fine for the few thousand nodes a page shows.
  const pts = nodes.filter(filter).slice().sort((a, b) => a.x - b.x || a.y - b.y);
  let best = Infinity;
  let pair = null;
  for (let i = 0; i < pts.length; i += 1) {
    for (let j = i + 1; j < pts.length; j += 1) {
      const dx = pts[j].x - pts[i].x;
      if (dx >= best) break;
      const d = Math.hypot(dx, pts[j].y - pts[i].y);
      if (d < best) {
        best = d;
        pair = [pts[i].id, pts[j].id];
      }
    }
  }
  return { distance: best, pair };
}
