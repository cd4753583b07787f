// Static checks of the site's files: CSP on every page, no inline scripts, styles or event
// handlers, no HTML parsing of strings in our modules, a label for every control, D3 pinned.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";

const SITE = join(dirname(fileURLToPath(import.meta.url)), "..");
const PAGES = readdirSync(SITE).filter((f) => f.endsWith(".html"));
const MODULES = readdirSync(join(SITE, "js")).filter((f) => f.endsWith(".js"));
const read = (...p) => readFileSync(join(SITE, ...p), "utf8");

test("the site has the four pages", () => {
  assert.deepEqual(PAGES.sort(), ["dashboard.html", "index.html", "leaderboard.html", "query.html"]);
});

describe("every page", () => {
  for (const page of PAGES) {
    const html = read(page);
    test(`${page}: a strict CSP comes first`, () => {
      const m = html.match(/<meta http-equiv="Content-Security-Policy" content="([^"]+)">/);
      assert.ok(m, "CSP meta tag");
      const csp = Object.fromEntries(m[1].split(";").map((d) => d.trim().split(/\s+/)).map(([k, ...v]) => [k, v]));
      assert.deepEqual(csp["default-src"], ["'none'"]);
      assert.deepEqual(csp["script-src"], ["'self'"]);
      assert.deepEqual(csp["style-src"], ["'self'"]);
      assert.deepEqual(csp["object-src"], ["'none'"]);
      assert.deepEqual(csp["base-uri"], ["'none'"]);
      assert.deepEqual(csp["require-trusted-types-for"], ["'script'"]);
      assert.ok(!m[1].includes("unsafe-"), "no unsafe-inline / unsafe-eval");
      assert.ok(html.indexOf("Content-Security-Policy") < html.indexOf("<script"), "CSP before any script");
    });

    test(`${page}: no inline scripts, styles or event handlers`, () => {
      for (const tag of html.match(/<script\b[^>]*>[\s\S]*?<\/script>/g) || []) {
        assert.match(tag, /^<script [^>]*src="[^"]+"[^>]*><\/script>$/, `inline script: ${tag.slice(0, 80)}`);
      }
      assert.doesNotMatch(html, /<style\b/i);
      assert.doesNotMatch(html, /\sstyle\s*=/i);
      assert.doesNotMatch(html, /\son[a-z]+\s*=/i);
      assert.doesNotMatch(html, /javascript:/i);
      assert.doesNotMatch(html, /https?:\/\/(?!127\.0\.0\.1|localhost|\*\.)/i, "no third-party URL (no CDN)");
    });

    test(`${page}: every control has a label`, () => {
      const ids = new Set([...html.matchAll(/<label [^>]*for="([^"]+)"/g)].map((m) => m[1]));
      for (const m of html.matchAll(/<(input|select|textarea)\b([^>]*)>/g)) {
        const attrs = m[2];
        const id = (attrs.match(/\sid="([^"]+)"/) || [])[1];
        const labelled = /aria-label(ledby)?="/.test(attrs) || (id && ids.has(id));
        assert.ok(labelled, `unlabelled ${m[1]} ${attrs.trim()}`);
      }
      for (const m of html.matchAll(/<button\b([^>]*)>([\s\S]*?)<\/button>/g)) {
        assert.ok(/aria-label="/.test(m[1]) || m[2].replace(/<[^>]+>/g, "").trim(), `button without a name: ${m[0]}`);
      }
      assert.match(html, /<html lang="en">/);
      assert.match(html, /<main id="main">/);
    });

    test(`${page}: loads config.js, then one module of our own`, () => {
      assert.match(html, /<script src="config.js"><\/script>/);
      assert.match(html, /<script type="module" src="js\/[a-z-]+\.js"><\/script>/);
    });
  }
});

describe("our modules", () => {
  for (const file of MODULES) {
    const src = read("js", file);
    test(`${file}: never parses strings as HTML, never evaluates code`, () => {
      for (const banned of [/\.innerHTML\b/, /\.outerHTML\b/, /insertAdjacentHTML/, /\.html\(/, /document\.write/, /\beval\(/, /new Function\b/, /createContextualFragment/, /DOMParser/]) {
        assert.doesNotMatch(src, banned, `${banned} in ${file}`);
      }
      assert.doesNotMatch(src, /setAttribute\(\s*["']on/i, "no inline handlers set from code");
      assert.doesNotMatch(src, /setAttribute\(\s*["']style["']/, "styles through CSSOM only (CSP style-src 'self')");
      assert.doesNotMatch(src, /\.attr\(\s*["']style["']/, "styles through CSSOM only (CSP style-src 'self')");
      assert.doesNotMatch(src, /\b(TODO|FIXME|XXX)\b/);
    });
  }
});

describe("vendored D3", () => {
  test("d3 v7.9.0 single-file bundle, with its ISC license, pinned by hash", () => {
    const bundle = readFileSync(join(SITE, "vendor", "d3.min.js"));
    assert.match(bundle.subarray(0, 80).toString(), /^\/\/ https:\/\/d3js\.org v7\.9\.0 Copyright 2010-2023 Mike Bostock/);
    const sha = createHash("sha256").update(bundle).digest("hex");
    const readme = read("vendor", "README.md");
    assert.ok(readme.includes(sha), `vendor/README.md must pin sha256 ${sha}`);
    assert.match(read("vendor", "d3-LICENSE"), /Copyright 2010-2023 Mike Bostock/);
    assert.match(read("vendor", "d3-LICENSE"), /Permission to use, copy, modify, and\/or distribute this software/);
  });
});
