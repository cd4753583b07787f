// Draws a laid-out lineage with D3 v7: zoom (wheel), pan (drag), fit-to-window, tooltips, keyboard.
// Every upstream string is set with .text() / textContent / setAttribute: never parsed as HTML.
import "../vendor/d3.min.js";
import { CHAR_PX, chooseChainSlant, extentOf, fitTransform } from "./fit.js";
import { layout } from "./layout.js";
import { canExpand } from "./lineage-model.js";
import { childrenNote, isMerged, moreText, nodeFacts, nodeLabel, nodeName, tagsOf } from "./node-text.js";
import { shortAccount } from "./format.js";
import { mergedText } from "./words.js";
import { el, replace, tagBadge } from "./dom.js";

const d3 = globalThis.d3;
const LABEL_MIN_PX = 9; // labels are drawn only when siblings are at least this far apart on screen
const CHAR_SAMPLE = "GA2F…I67V GBKC…KKWG"; // account labels: capitals and digits, the widest common case

function tooltipContent(n, parentData) {
  const note = childrenNote(n, parentData);
  if (n.kind === "more") {
    const parts = [el("strong", {}, `${moreText(n)} accounts`)];
    parts.push(el("p", {}, `Created by ${shortAccount(n.parentAccount)}. Click or press Enter to show the next page.`));
    if (note) parts.push(el("p", { class: "tooltip-note" }, note));
    return parts;
  }
  const d = n.data || {};
  const dl = el("dl", {});
  for (const [k, v] of nodeFacts(d, { account: n.account })) {
    dl.append(el("dt", {}, k), el("dd", { class: k === "Account" || k === "Creator" ? "mono" : null }, v));
  }
  const tags = tagsOf(d);
  const out = [];
  const merged = mergedText(d);
  if (merged) out.push(el("p", { class: "tooltip-merged" }, merged));
  out.push(dl);
  if (tags.length) out.push(el("div", { class: "tags" }, tags.map(tagBadge)));
  if (note) out.push(el("p", { class: "tooltip-note" }, note));
  return out;
}

export class TreeView {
  /**
   * @param {SVGSVGElement} svgEl
   * @param {HTMLElement} tooltipEl
   * @param {{onRecenter?: Function, onMore?: Function, onExpand?: Function, onSelect?: Function}} handlers
   */
  constructor(svgEl, tooltipEl, handlers = {}) {
    this.svgEl = svgEl;
    this.tooltipEl = tooltipEl;
    this.handlers = handlers;
    this.svg = d3.select(svgEl);
    this.svg.selectAll("*").remove();
    this.viewport = this.svg.append("g").attr("class", "viewport");
    this.linksG = this.viewport.append("g").attr("class", "links");
    this.nodesG = this.viewport.append("g").attr("class", "nodes");
    this.byId = new Map();
    this.result = null;
    this.options = null;
    this.renders = 0;
    this.transform = d3.zoomIdentity;
    this.fitted = false;
    this.chainSlant = null;
    this.measuredCharPx = 0;
    this.model = null;
    this.lastOptions = null;
    this.extentCache = null;
    this.size = null;
    this.zoom = d3
      .zoom()
      .scaleExtent([0.01, 8])
      // The last measured drawing area: d3's default reads the SVG's size, which forces a layout of
      // a tree just drawn (about 240 ms for 2,000 nodes) before the browser's own.
      .extent(() => {
        const v = this.size || this.viewportSize();
        return [[0, 0], [v.width, v.height]];
      })
      .on("zoom", (event) => {
        if (event.sourceEvent) this.fitted = false; // the visitor moved the view: keep it on resize
        this.transform = event.transform;
        this.viewport.attr("transform", event.transform);
        this.svgEl.dataset.zoom = event.transform.k.toFixed(4);
        this.svgEl.dataset.panX = event.transform.x.toFixed(1);
        this.svgEl.dataset.panY = event.transform.y.toFixed(1);
        this.updateLabels();
        this.hideTooltip();
      });
    this.svg.call(this.zoom).on("dblclick.zoom", null);
    this.bindEvents();
  }

  bindEvents() {
    const nodeOf = (target) => {
      const g = target && target.closest ? target.closest("g.node") : null;
      return g ? { g, n: this.byId.get(g.dataset.id) } : null;
    };
    this.nodesG.on("click", (event) => {
      const hit = nodeOf(event.target);
      if (!hit || !hit.n) return;
      event.stopPropagation();
      this.activate(hit.n, event.shiftKey ? "expand" : "primary");
    });
    this.nodesG.on("keydown", (event) => {
      const hit = nodeOf(event.target);
      if (!hit || !hit.n) return;
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        this.activate(hit.n, "primary");
      } else if (event.key === "+" || event.key === "e") {
        event.preventDefault();
        this.activate(hit.n, "expand");
      } else if (event.key === "Escape") {
        this.hideTooltip();
      }
    });
    const show = (event) => {
      const hit = nodeOf(event.target);
      if (hit && hit.n) {
        this.showTooltip(hit.n, hit.g);
        if (this.handlers.onSelect && hit.n.kind !== "more") this.handlers.onSelect(hit.n);
      }
    };
    this.nodesG.on("pointerover", show);
    this.nodesG.on("focusin", show);
    this.nodesG.on("pointerout", (event) => {
      const hit = nodeOf(event.target);
      const to = nodeOf(event.relatedTarget);
      if (hit && (!to || to.g !== hit.g)) this.hideTooltip();
    });
    this.nodesG.on("focusout", () => this.hideTooltip());
    // Keyboard on the canvas itself: arrows pan, +/- zoom, 0 fits.
    this.svg.on("keydown.canvas", (event) => {
      if (event.target !== this.svgEl) return;
      const step = 60;
      const keys = {
        ArrowLeft: () => this.panBy(step, 0),
        ArrowRight: () => this.panBy(-step, 0),
        ArrowUp: () => this.panBy(0, step),
        ArrowDown: () => this.panBy(0, -step),
        "+": () => this.zoomBy(1.25),
        "=": () => this.zoomBy(1.25),
        "-": () => this.zoomBy(0.8),
        0: () => this.fit(),
      };
      const action = keys[event.key];
      if (action) {
        event.preventDefault();
        action();
      }
    });
  }

  activate(n, how) {
    if (n.kind === "more") {
      if (this.handlers.onMore) this.handlers.onMore(n);
      return;
    }
    if (how === "expand") {
      if (n.data && canExpand(n.data) && this.handlers.onExpand) this.handlers.onExpand(n);
      return;
    }
    if (n.kind !== "root" && this.handlers.onRecenter) this.handlers.onRecenter(n.account);
  }

  /** Spacing between neighbours in layout units (labels are hidden when it is too small on screen). */
  spacing() {
    if (!this.options) return 20;
    return this.options.layout === "tidy" ? this.options.siblingGap : this.options.minSeparation;
  }

  updateLabels() {
    const k = this.transform.k;
    this.svgEl.classList.toggle("labels-off", k * this.spacing() < LABEL_MIN_PX);
  }

  /** The drawing area in px (the SVG's box), measured now and kept for the zoom. */
  viewportSize() {
    this.size = { width: this.svgEl.clientWidth || 800, height: this.svgEl.clientHeight || 600 };
    return this.size;
  }

  /**
   * Px per label character, measured once on a sample label in the page's font (the fit estimates
   * label lengths from it); the saved default when the SVG cannot measure (hidden, no fonts yet).
   */
  charPx() {
    if (this.measuredCharPx) return this.measuredCharPx;
    let px = 0;
    try {
      const probe = this.nodesG.append("text").attr("class", "label").attr("visibility", "hidden").text(CHAR_SAMPLE);
      px = probe.node().getComputedTextLength() / Array.from(CHAR_SAMPLE).length;
      probe.remove();
    } catch {
      px = 0;
    }
    if (Number.isFinite(px) && px > 2) this.measuredCharPx = px;
    return this.measuredCharPx || CHAR_PX;
  }

  /**
   * Lay out `model` with `options` and draw it. `fit: true` fits the whole tree in the window (and,
   * in the tidy view, picks the chain's slant for this window); otherwise the current zoom, pan and
   * slant stay. Returns the layout result.
   */
  render(model, options, { fit = false, focusId = null } = {}) {
    const t0 = performance.now();
    const tipFor = this.tooltipEl && !this.tooltipEl.hidden ? this.tooltipEl.dataset.for : null;
    // Measured before the DOM changes: read after the new nodes are in, the box and the text width
    // each force a layout of the whole new tree.
    const viewport = this.viewportSize();
    const charPx = this.charPx();
    let result;
    let extent = null;
    if (options.layout === "tidy" && (fit || this.chainSlant === null)) {
      const chosen = chooseChainSlant(model, options, viewport, { charPx });
      this.chainSlant = chosen.slant;
      result = chosen.result;
      extent = chosen.extent;
    } else {
      result = layout(model, options.layout === "tidy" ? { ...options, chainSlant: this.chainSlant } : options);
    }
    this.model = model;
    this.lastOptions = options;
    this.result = result;
    this.extentCache = extent;
    this.options = { ...options, ...{ layout: result.layout } };
    this.byId = new Map(result.nodes.map((n) => [n.id, n]));
    const radial = result.layout === "radial";

    const linkVertical = d3.linkVertical();
    const linkRadial = d3.linkRadial();
    const pathOf = (l) => {
      if (l.kind === "ancestor") return `M${l.sx},${l.sy}L${l.tx},${l.ty}`;
      if (radial) return linkRadial({ source: [l.sAngle, l.sRadius], target: [l.tAngle, l.tRadius] });
      return linkVertical({ source: [l.sx, l.sy], target: [l.tx, l.ty] });
    };
    this.linksG
      .selectAll("path.link")
      .data(result.links, (l) => `${l.source}>${l.target}`)
      .join("path")
      .attr("class", (l) => `link link-${l.kind}`)
      .attr("d", pathOf);

    const nodes = this.nodesG
      .selectAll("g.node")
      .data(result.nodes, (n) => n.id)
      .join((enter) => {
        const g = enter.append("g").attr("tabindex", 0).attr("role", "button");
        g.append("circle").attr("class", "dot");
        g.append("text").attr("class", "label");
        return g;
      });
    nodes
      .attr("class", (n) => {
        const status = n.data && n.data.status ? String(n.data.status).toLowerCase().replace(/[^a-z_]/g, "") : "";
        const tags = tagsOf(n.data).map((t) => `tag-${t.toLowerCase().replace(/[^a-z0-9-]/g, "")}`);
        const expandable = n.kind === "account" && n.data && canExpand(n.data) ? "has-children" : "";
        const merged = n.kind !== "more" && isMerged(n.data) ? "merged" : "";
        return ["node", `node-${n.kind}`, status ? `status-${status}` : "", n.leaf ? "leaf" : "inner", expandable, merged, ...tags]
          .filter(Boolean)
          .join(" ");
      })
      .attr("data-id", (n) => n.id)
      .attr("data-kind", (n) => n.kind)
      .attr("data-account", (n) => n.account)
      .attr("transform", (n) => `translate(${n.x},${n.y})`)
      .attr("aria-label", nodeName);
    // The ring marks an account that can be expanded: drawn there only (most nodes of a big tree
    // are leaves, and every element costs style, layout and paint).
    nodes.each(function ring() {
      const want = this.classList.contains("has-children");
      const have = this.querySelector("circle.ring");
      if (want && !have) d3.select(this).insert("circle", "circle.dot").attr("class", "ring").attr("r", 9);
      else if (!want && have) have.remove();
    });
    nodes
      .select("circle.dot")
      .attr("r", (n) => (n.kind === "root" ? 9 : n.kind === "more" ? 8 : n.kind === "ancestor" ? 6 : 5.5));
    nodes.each(function placeLabel(n) {
      const text = d3.select(this).select("text.label").text(nodeLabel(n));
      let rotate = 0;
      let x = 12;
      let anchor = "start";
      const outward = n.kind === "account" || n.kind === "more";
      if (outward && n.leaf) {
        if (radial) {
          const deg = (n.angle * 180) / Math.PI - 90;
          const flip = n.angle > Math.PI;
          rotate = flip ? deg + 180 : deg;
          x = flip ? -10 : 10;
          anchor = flip ? "end" : "start";
        } else {
          rotate = 90;
          x = 10;
        }
      } else if (n.kind === "root" && radial) {
        // Reading upward beside the ancestor chain, in the wedge no descendant enters.
        rotate = -90;
        x = 14;
      } else if (n.kind === "account") {
        // Expanded (inner) accounts: a short label above-left, out of the way of their children.
        x = -10;
        anchor = "end";
      }
      text
        .attr("x", x)
        .attr("y", n.kind === "root" && radial ? -6 : null)
        .attr("dy", n.kind === "root" && radial ? null : "0.32em")
        .attr("text-anchor", anchor)
        .attr("transform", rotate ? `rotate(${rotate})` : null);
    });
    const counts = { account: 0, ancestor: 0, root: 0, more: 0 };
    for (const n of result.nodes) counts[n.kind] += 1;
    const ds = this.svgEl.dataset;
    ds.layout = result.layout;
    ds.nodeCount = String(counts.account + counts.ancestor + counts.root);
    ds.childCount = String(counts.account);
    ds.ancestorCount = String(counts.ancestor);
    ds.moreCount = String(counts.more);
    ds.hidden = String(result.stats.hidden);
    this.renders += 1;
    ds.renders = String(this.renders);
    ds.layoutMs = (performance.now() - t0).toFixed(1);

    if (fit) this.fit(viewport);
    this.updateLabels();
    if (focusId) {
      const g = this.gOf(focusId);
      if (g) g.focus();
    }
    // A tooltip on view tells what the node is now (a "N more" node's count changes with a page).
    if (tipFor) {
      const g = this.gOf(tipFor);
      if (g && this.byId.has(tipFor)) this.showTooltip(this.byId.get(tipFor), g);
      else this.hideTooltip();
    }
    const renderId = this.renders;
    requestAnimationFrame(() =>
      setTimeout(() => {
        this.svgEl.dataset.rendered = String(renderId);
        document.dispatchEvent(new CustomEvent("stellarmap:rendered", { detail: { renderId, nodes: result.nodes.length, at: performance.now() } }));
      }, 0),
    );
    return result;
  }

  /** The drawn extent in layout units, labels included (fit.js extentOf). */
  extent() {
    if (!this.extentCache) this.extentCache = extentOf(this.result, { charPx: this.charPx() });
    return this.extentCache;
  }

  /** Fit the whole tree, labels included, in the window (fit.js fitTransform). */
  fit(viewport = this.viewportSize()) {
    if (!this.result || !this.result.nodes.length) return;
    const t = fitTransform(this.extent(), viewport);
    this.svg.call(this.zoom.transform, d3.zoomIdentity.translate(t.x, t.y).scale(t.k));
    this.fitted = true;
  }

  /**
   * The window changed size: lay out and fit again if the view is the fitted one (the tidy chain's
   * best slant depends on the window's shape), else keep what the visitor chose.
   */
  resized() {
    this.viewportSize();
    if (this.fitted && this.model) this.render(this.model, this.lastOptions, { fit: true });
  }

  zoomBy(factor) {
    this.svg.call(this.zoom.scaleBy, factor);
    this.fitted = false;
  }

  panBy(dx, dy) {
    this.svg.call(this.zoom.translateBy, dx / this.transform.k, dy / this.transform.k);
    this.fitted = false;
  }

  gOf(id) {
    return this.nodesG.node().querySelector(`g.node[data-id="${CSS.escape(id)}"]`);
  }

  showTooltip(n, g) {
    const tip = this.tooltipEl;
    if (!tip) return;
    const parent = n.parentId ? this.byId.get(n.parentId) : null;
    replace(tip, tooltipContent(n, parent ? parent.data : null));
    tip.hidden = false;
    const host = tip.offsetParent || tip.parentElement;
    const hostRect = host.getBoundingClientRect();
    const r = g.getBoundingClientRect();
    let left = r.right - hostRect.left + 12;
    let top = r.top - hostRect.top - 8;
    const tw = tip.offsetWidth;
    const th = tip.offsetHeight;
    if (left + tw > hostRect.width - 8) left = Math.max(8, r.left - hostRect.left - tw - 12);
    if (top + th > hostRect.height - 8) top = Math.max(8, hostRect.height - th - 8);
    tip.style.left = `${Math.round(left)}px`;
    tip.style.top = `${Math.round(Math.max(8, top))}px`;
    tip.dataset.for = n.id;
  }

  hideTooltip() {
    if (this.tooltipEl) {
      this.tooltipEl.hidden = true;
      delete this.tooltipEl.dataset.for;
    }
  }
}
