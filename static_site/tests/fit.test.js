// Unit tests of the pure fit (fit.js) and the tidy chain's slant (layout.js chainSlant) against the
// saved /account-lineage fixtures: the whole tree, labels included, lands inside the panel; a long
// chain climbs sideways instead of shrinking; a next page of children is fitted again.
//   node --test static_site/tests/
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { CHAIN_SLANTS, CHAR_PX, FIT_PAD, MAX_SCALE, NATURAL_SCALE, SLANT_TOLERANCE, chooseChainSlant, extentOf, fitTransform, labelDirection, labelLength, screenRect } from "../js/fit.js";
import { LAYOUTS, layout, minimumDistance, normalizeOptions } from "../js/layout.js";
import { appendPage, fromLineage, revealMore } from "../js/lineage-model.js";
import { nodeLabel } from "../js/node-text.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const load = (name) => JSON.parse(readFileSync(join(HERE, "fixtures", name), "utf8"));
const PANEL = { width: 960, height: 560 }; // the tree panel at 1400x900
const EPS = 1e-6;

const FIXTURES = ["contract-chain7.json", "contract-chain15.json", "contract-airdrop-api-page1.json", "contract-merged.json", "lineage-small.json", "lineage-leaf.json", "lineage-genesis.json", "lineage-expanded-2000.json"];

function assertInside(rect, viewport, pad, what) {
  assert.ok(rect.left >= pad - EPS && rect.top >= pad - EPS, `${what}: ${JSON.stringify(rect)} starts inside`);
  assert.ok(rect.right <= viewport.width - pad + EPS && rect.bottom <= viewport.height - pad + EPS, `${what}: ${JSON.stringify(rect)} ends inside`);
}

describe("extent: dots and labels", () => {
  test("every label's far end is inside the extent, in the direction the label runs", () => {
    for (const name of FIXTURES) {
      for (const kind of LAYOUTS) {
        const r = layout(load(name), { layout: kind });
        const e = extentOf(r);
        for (const n of r.nodes) {
          const reach = labelLength(n, nodeLabel(n));
          const dir = labelDirection(n, kind);
          const end = dir === "out" ? [n.x + reach * Math.sin(n.angle), n.y - reach * Math.cos(n.angle)]
            : dir === "down" ? [n.x, n.y + reach]
              : dir === "up" ? [n.x, n.y - reach]
                : dir === "left" ? [n.x - reach, n.y] : [n.x + reach, n.y];
          assert.ok(end[0] >= e.minX - EPS && end[0] <= e.maxX + EPS && end[1] >= e.minY - EPS && end[1] <= e.maxY + EPS, `${name} ${kind} ${n.id}`);
        }
      }
    }
  });

  test("label directions follow the drawing: tidy leaves down, radial leaves outward, ancestors right", () => {
    const r = layout(load("contract-chain7.json"), { layout: "tidy" });
    const kinds = Object.fromEntries(r.nodes.map((n) => [n.kind, labelDirection(n, "tidy")]));
    assert.deepEqual(kinds, { ancestor: "right", root: "right", account: "down" });
    const radial = layout(load("contract-chain7.json"), { layout: "radial" });
    assert.equal(labelDirection(radial.nodes.find((n) => n.kind === "root"), "radial"), "up");
    assert.equal(labelDirection(radial.nodes.find((n) => n.kind === "account"), "radial"), "out");
  });

  test("wider characters give a wider extent", () => {
    const r = layout(load("contract-chain7.json"), { layout: "tidy" });
    assert.ok(extentOf(r, { charPx: 9 }).maxY > extentOf(r, { charPx: CHAR_PX }).maxY);
  });
});

describe("fitTransform", () => {
  test("the fitted tree, labels included, lies inside the panel with its padding, centred", () => {
    for (const name of FIXTURES) {
      for (const kind of LAYOUTS) {
        const e = extentOf(layout(load(name), { layout: kind }));
        for (const viewport of [PANEL, { width: 600, height: 900 }, { width: 1800, height: 500 }]) {
          const t = fitTransform(e, viewport);
          const rect = screenRect(e, t);
          assertInside(rect, viewport, FIT_PAD, `${name} ${kind} ${viewport.width}x${viewport.height}`);
          assert.ok(Math.abs((rect.left + rect.right) / 2 - viewport.width / 2) < 1e-6);
          assert.ok(Math.abs((rect.top + rect.bottom) / 2 - viewport.height / 2) < 1e-6);
          // one side touches its padding unless the scale is capped
          const fills = Math.abs(rect.right - rect.left - (viewport.width - 2 * FIT_PAD)) < 1e-6 || Math.abs(rect.bottom - rect.top - (viewport.height - 2 * FIT_PAD)) < 1e-6;
          assert.ok(fills || t.k === MAX_SCALE, `${name} ${kind}: uses the panel`);
        }
      }
    }
  });

  test("a tiny tree is not blown up beyond the maximum scale", () => {
    const t = fitTransform({ minX: -10, maxX: 10, minY: -10, maxY: 10 }, PANEL);
    assert.equal(t.k, MAX_SCALE);
  });

  test("a degenerate viewport still gives a finite transform", () => {
    const t = fitTransform({ minX: 0, maxX: 0, minY: 0, maxY: 0 }, { width: 0, height: 0 });
    assert.ok(Number.isFinite(t.k) && Number.isFinite(t.x) && Number.isFinite(t.y));
  });
});

describe("the next page of a fan-out is fitted again", () => {
  test("100 -> 200 children: the old transform lets the ring run off the panel, a new fit brings it back", () => {
    const opts = normalizeOptions({ layout: "radial" });
    const model = fromLineage(load("contract-airdrop-api-page1.json"));
    const before = extentOf(layout(model, opts));
    const oldT = fitTransform(before, PANEL);
    const step = revealMore(model, model.account, opts);
    assert.ok(step.fetch, "the next page comes from the server");
    appendPage(model, model.account, load("contract-airdrop-api-page2.json"), opts);
    const r = layout(model, opts);
    assert.equal(r.nodes.filter((n) => n.kind === "account").length, 200);
    assert.equal(r.nodes.find((n) => n.kind === "more").count, 29800);
    const after = extentOf(r);
    const stale = screenRect(after, oldT);
    assert.ok(stale.left < 0 || stale.top < 0 || stale.right > PANEL.width || stale.bottom > PANEL.height, "without a new fit the ring leaves the panel");
    const newT = fitTransform(after, PANEL);
    assert.ok(newT.k < oldT.k);
    assertInside(screenRect(after, newT), PANEL, FIT_PAD, "after the new fit");
  });
});

describe("tidy chain slant", () => {
  test("every hop stays one chain step long and the minimum distance holds for every slant", () => {
    const data = load("contract-chain15.json");
    for (const slant of [0, ...CHAIN_SLANTS, 5]) {
      const o = { layout: "tidy", chainSlant: slant };
      const r = layout(data, o);
      const chain = r.nodes.filter((n) => n.kind === "ancestor").concat(r.nodes.filter((n) => n.kind === "root"));
      for (let i = 1; i < chain.length; i += 1) {
        assert.ok(Math.abs(Math.hypot(chain[i].x - chain[i - 1].x, chain[i].y - chain[i - 1].y) - 60) < 1e-9, `slant ${slant} hop ${i}`);
      }
      assert.ok(minimumDistance(r.nodes).distance >= 22 - EPS);
      const genesis = chain[0];
      assert.ok(genesis.y < 0 && (slant === 0 ? genesis.x === 0 : genesis.x < 0), "genesis top-left of the searched account");
    }
  });

  test("the straight chain is the default and keeps the golden layout (no -0)", () => {
    const r = layout(load("lineage-small.json"), { layout: "tidy" });
    for (const n of r.nodes.filter((x) => x.kind === "ancestor")) assert.ok(Object.is(n.x, 0));
    assert.throws(() => layout(load("lineage-small.json"), { layout: "tidy", chainSlant: -1 }), RangeError);
    assert.throws(() => layout(load("lineage-small.json"), { layout: "tidy", chainSlant: "steep" }), RangeError);
  });

  test("a 15-ancestor chain climbs sideways: a larger scale than straight, and everything inside the panel", () => {
    const data = load("contract-chain15.json");
    const straight = fitTransform(extentOf(layout(data, { layout: "tidy" })), PANEL).k;
    const chosen = chooseChainSlant(data, { layout: "tidy" }, PANEL);
    assert.ok(chosen.slant > 0, `slant ${chosen.slant}`);
    assert.ok(chosen.k >= straight / SLANT_TOLERANCE, `${chosen.k} vs straight ${straight}`);
    assert.ok(chosen.k * 11 >= 10, "labels at least 10 px");
    const t = fitTransform(chosen.extent, PANEL);
    assertInside(screenRect(chosen.extent, t), PANEL, FIT_PAD, "chain15");
    const root = chosen.result.nodes.find((n) => n.kind === "root");
    const sx = t.x + t.k * root.x;
    const sy = t.y + t.k * root.y;
    assert.ok(sx > 0 && sx < PANEL.width && sy > 0 && sy < PANEL.height, "the searched account is on view");
  });

  test("the straightest slant within the tolerance of the best (or at natural size) wins", () => {
    for (const name of ["contract-chain7.json", "contract-chain15.json", "contract-airdrop-api-page1.json", "lineage-expanded-2000.json", "lineage-small.json"]) {
      const data = load(name);
      const ks = CHAIN_SLANTS.map((s) => fitTransform(extentOf(layout(data, { layout: "tidy", chainSlant: s })), PANEL).k);
      const best = Math.max(...ks);
      const chosen = chooseChainSlant(data, { layout: "tidy" }, PANEL);
      const expected = CHAIN_SLANTS[ks.findIndex((k) => k >= Math.min(best * SLANT_TOLERANCE, NATURAL_SCALE))];
      assert.equal(chosen.slant, expected, name);
    }
  });

  test("a short chain that fits at natural size stays straight even if a slant would draw it larger", () => {
    const data = load("lineage-small.json");
    data.ancestors = data.ancestors.slice(-2);
    data.tree.children = data.tree.children.slice(0, 12).map((c) => ({ ...c, num_children: 0 }));
    const low = { width: 955, height: 460 }; // the panel's smallest height
    const straight = fitTransform(extentOf(layout(data, { layout: "tidy" })), low).k;
    const slanted = fitTransform(extentOf(layout(data, { layout: "tidy", chainSlant: 2.4 })), low).k;
    assert.ok(straight >= NATURAL_SCALE && slanted > straight / SLANT_TOLERANCE, `${straight} ${slanted}`);
    assert.equal(chooseChainSlant(data, { layout: "tidy" }, low).slant, 0);
  });

  test("a tall narrow panel keeps the chain straight; radial and one-hop chains are left alone", () => {
    const tall = chooseChainSlant(load("contract-chain7.json"), { layout: "tidy" }, { width: 360, height: 1400 });
    assert.equal(tall.slant, 0);
    const radial = chooseChainSlant(load("contract-chain15.json"), { layout: "radial" }, PANEL);
    assert.equal(radial.slant, 0);
    assert.equal(radial.result.layout, "radial");
    const oneHop = load("lineage-small.json");
    oneHop.ancestors = oneHop.ancestors.slice(0, 1);
    assert.equal(chooseChainSlant(oneHop, { layout: "tidy" }, PANEL).slant, 0);
  });
});
