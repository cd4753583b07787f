// Account labels on the site (issue 10): directory tags as badges and the directory name and
// stellar.toml facts as plain text. A small stand-in document records what the helpers build, so
// the tests can show hostile label text only ever becomes text nodes and attribute values.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { labelFacts } from "../js/format.js";

class FakeNode {}
class FakeText extends FakeNode {
  constructor(text) {
    super();
    this.textContent = text;
  }
}
class FakeElement extends FakeNode {
  constructor(tag) {
    super();
    this.tagName = tag;
    this.attributes = {};
    this.children = [];
    this.dataset = {};
    this.className = "";
  }
  setAttribute(k, v) {
    this.attributes[k] = v;
  }
  append(child) {
    this.children.push(child);
  }
  get textContent() {
    return this.children.map((c) => c.textContent).join("");
  }
  set innerHTML(_) {
    throw new Error("innerHTML is never used");
  }
}
globalThis.Node = FakeNode;
globalThis.document = { createElement: (tag) => new FakeElement(tag), createTextNode: (t) => new FakeText(t) };
const { tagBadge } = await import("../js/dom.js");

describe("tag badges", () => {
  test("a tag becomes a text-only badge with a safe class", () => {
    const badge = tagBadge("blocked-domain");
    assert.equal(badge.tagName, "span");
    assert.equal(badge.className, "badge tag tag-blocked-domain");
    assert.equal(badge.textContent, "blocked-domain");
    assert.ok(badge.children.every((c) => c instanceof FakeText));
  });

  test("hostile tag text stays text, and the class keeps only a slug", () => {
    const evil = "<img src=x onerror=alert(1)>";
    const badge = tagBadge(evil);
    assert.equal(badge.textContent, evil);
    assert.match(badge.className, /^badge tag tag-[a-z0-9-]+$/);
    assert.equal(tagBadge("!!!").className, "badge tag tag-other");
  });
});

describe("label facts (details panel and tooltip)", () => {
  test("directory name and what the stellar.toml says", () => {
    assert.deepEqual(labelFacts({ directory_name: "Exchange 1", toml_org_name: "Exchange 1", toml_lists_account: true }), [
      ["Directory name", "Exchange 1"],
      ["stellar.toml", "Exchange 1 (lists this account)"],
    ]);
    assert.deepEqual(labelFacts({ toml_org_name: "Exchange 1 (official support)", toml_lists_account: false }), [
      ["stellar.toml", "Exchange 1 (official support) (does not list this account)"],
    ]);
  });

  test("nothing to show: no rows", () => {
    assert.deepEqual(labelFacts({}), []);
    assert.deepEqual(labelFacts(null), []);
    assert.deepEqual(labelFacts({ directory_name: "", toml_org_name: 5 }), []);
  });

  test("hostile names are made visible and capped, never markup", () => {
    const [[, name]] = labelFacts({ directory_name: `<script>alert(1)</script>\u202eevil${"N".repeat(1000)}` });
    assert.ok(name.startsWith("<script>alert(1)</script>"), "kept as text (the caller sets it as a text node)");
    assert.ok(!name.includes("\u202e"), "the bidi override is shown, not obeyed");
    assert.ok(Array.from(name).length <= 80);
  });
});
