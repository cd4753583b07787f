// Fitting a laid-out lineage in the tree panel. Pure (no DOM): the drawn extent with labels, the
// zoom transform that shows it whole, and the tidy chain's slant that makes best use of a wide
// panel. Tested under Node against the saved fixtures (tests/fit.test.js).
import { layout, normalizeOptions } from "./layout.js";
import { nodeLabel } from "./node-text.js";

export const CHAR_PX = 6.6; // px per label character at 11px (measured in the page when it can be)
export const FIT_PAD = 24; // px of screen kept clear around the fitted tree
export const MAX_SCALE = 1.6; // a small tree is not blown up beyond this
export const CHAIN_SLANTS = Object.freeze([0, 0.8, 1.6, 2.4]);
export const SLANT_TOLERANCE = 0.92; // a straighter chain wins unless a slant fits at least 1/0.92 larger
export const NATURAL_SCALE = 1; // ... or unless the straight chain would draw labels below their natural size

// Where a node's label runs (must match tree-view.js placeLabel): "out" along the ray of a radial
// leaf, "down" under a tidy leaf, "up" beside the radial root, "left" of an expanded account, else "right".
export function labelDirection(n, layoutKind) {
  const outward = (n.kind === "account" || n.kind === "more") && n.leaf;
  if (outward) return layoutKind === "radial" ? "out" : "down";
  if (n.kind === "root" && layoutKind === "radial") return "up";
  if (n.kind === "account") return "left";
  return "right";
}

/** Label length in px: the root's is larger and bold, the ancestors' semi-bold. */
export function labelLength(n, text, charPx = CHAR_PX) {
  const scale = n.kind === "root" ? 1.3 : n.kind === "ancestor" ? 1.08 : 1;
  return 12 + Array.from(text).length * charPx * scale;
}

/**
 * The drawn extent of a layout in layout units, dots and labels included. Label lengths are
 * estimated from their characters (`charPx`); no text is measured.
 */
export function extentOf(result, { charPx = CHAR_PX } = {}) {
  let minX = Infinity;
  let maxX = -Infinity;
  let minY = Infinity;
  let maxY = -Infinity;
  const add = (x, y) => {
    if (x < minX) minX = x;
    if (x > maxX) maxX = x;
    if (y < minY) minY = y;
    if (y > maxY) maxY = y;
  };
  const half = 7; // half a label's height
  for (const n of result.nodes) {
    add(n.x - 10, n.y - 10);
    add(n.x + 10, n.y + 10);
    const reach = labelLength(n, nodeLabel(n), charPx);
    switch (labelDirection(n, result.layout)) {
      case "out": {
        const ex = n.x + reach * Math.sin(n.angle);
        const ey = n.y - reach * Math.cos(n.angle);
        add(ex - half, ey - half);
        add(ex + half, ey + half);
        break;
      }
      case "down":
        add(n.x - half, n.y + reach);
        add(n.x + half, n.y + reach);
        break;
      case "up":
        add(n.x + 20, n.y - reach);
        break;
      case "left":
        add(n.x - reach, n.y - half);
        add(n.x - reach, n.y + half);
        break;
      default:
        add(n.x + reach, n.y - half);
        add(n.x + reach, n.y + half);
    }
  }
  if (!Number.isFinite(minX)) return { minX: 0, maxX: 0, minY: 0, maxY: 0 };
  return { minX, maxX, minY, maxY };
}

/**
 * The zoom transform {k, x, y} (screen = k * layout + (x, y)) that shows `extent` whole and
 * centred in a viewport of {width, height} px, `pad` px clear on every side, scale at most `maxScale`.
 */
export function fitTransform(extent, viewport, { pad = FIT_PAD, maxScale = MAX_SCALE, minScale = 0.01 } = {}) {
  const w = Math.max(1, Number(viewport.width) || 0);
  const h = Math.max(1, Number(viewport.height) || 0);
  const bw = Math.max(1, extent.maxX - extent.minX);
  const bh = Math.max(1, extent.maxY - extent.minY);
  const k = Math.max(minScale, Math.min((w - 2 * pad) / bw, (h - 2 * pad) / bh, maxScale));
  const cx = (extent.minX + extent.maxX) / 2;
  const cy = (extent.minY + extent.maxY) / 2;
  return { k, x: w / 2 - k * cx, y: h / 2 - k * cy };
}

/** The screen rectangle {left, top, right, bottom} of a layout-unit extent under transform t. */
export function screenRect(extent, t) {
  return { left: t.x + t.k * extent.minX, top: t.y + t.k * extent.minY, right: t.x + t.k * extent.maxX, bottom: t.y + t.k * extent.maxY };
}

/**
 * The tidy chain's slant for this lineage in this viewport: each candidate is laid out and fitted,
 * and the straightest one wins whose fitted scale is within SLANT_TOLERANCE of the best, or at
 * least NATURAL_SCALE (a long chain over a few children climbs sideways instead of shrinking to a
 * thin column; a short one that already fits at full size stays straight).
 * Returns {slant, k, result, extent}. Radial layouts, and chains of one hop, stay as they are.
 */
export function chooseChainSlant(data, options, viewport, { charPx = CHAR_PX, slants = CHAIN_SLANTS, pad = FIT_PAD, maxScale = MAX_SCALE } = {}) {
  const o = normalizeOptions(options);
  const hops = Array.isArray(data.ancestors) ? data.ancestors.length : 0;
  const candidates = o.layout === "tidy" && hops > 1 ? slants : [o.layout === "tidy" ? o.chainSlant : 0];
  const tried = candidates.map((slant) => {
    const result = layout(data, { ...o, chainSlant: slant });
    const extent = extentOf(result, { charPx });
    return { slant, result, extent, k: fitTransform(extent, viewport, { pad, maxScale }).k };
  });
  const best = Math.max(...tried.map((t) => t.k));
  const enough = Math.min(best * SLANT_TOLERANCE, NATURAL_SCALE);
  return tried.find((t) => t.k >= enough);
}
