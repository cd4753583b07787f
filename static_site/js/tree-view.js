// Draws a laid-out lineage with D3 v7: zoom (wheel), pan (drag), fit-to-window, tooltips, keyboard.
// Every upstream string is set with .text() / textContent / setAttribute: never parsed as HTML.
import "../vendor/d3.min.js";
import { layout } from "./layout.js";
import { canExpand } from "./lineage-model.js";
import {
  displayText,
  formatCount,
  formatDate,
  formatFlags,
  formatXlm,
  labelFacts,
  shortAccount,
  truncate,
} from "./format.js";
import { el, replace, tagBadge } from "./dom.js";

const d3 = globalThis.d3;
const GENESIS = "GAAZI4TCR3TY5OJHCTJC2A4QSY6CJWJH5IAJTGKIN2ER7LBNVKOCCWN7";
const LABEL_MIN_PX = 9; // labels are drawn only when siblings are at least this far apart on screen

function tagsOf(data) {
  return data && Array.isArray(data.tags) ? data.tags.map(String) : [];
}

/** The one-line label of a node (plain text). */
export function moreText(n) {
  if (!n.remoteUnknown) return `${formatCount(n.count)} more`;
  return n.count > 0 ? `${formatCount(n.count)}+ more` : "more…";
}

export function nodeLabel(n) {
  if (n.kind === "more") return moreText(n);
  const data = n.data || {};
  if (n.account === GENESIS) return "genesis";
  const base = data.home_domain ? truncate(displayText(data.home_domain), 22) : shortAccount(n.account);
  return tagsOf(data).includes("malicious") ? `⚠ ${base}` : base;
}

/** Screen-reader name of a node (plain text). */
function nodeName(n) {
  if (n.kind === "more") {
    return `${moreText(n)} children of ${shortAccount(n.parentAccount)}. Press Enter to show the next page.`;
  }
  const data = n.data || {};
  const role = n.kind === "root" ? "Searched account" : n.kind === "ancestor" ? "Ancestor" : "Child account";
  const domain = data.home_domain ? `, home domain ${displayText(data.home_domain)}` : "";
  const tags = tagsOf(data).length ? `, tagged ${tagsOf(data).join(", ")}` : "";
  const kids = n.kind === "account" && canExpand(data) ? ` Has ${formatCount(data.num_children)} children; press + to show them here.` : "";
  const action = n.kind === "root" ? "" : " Press Enter to centre on it.";
  return `${role} ${n.account}${domain}${tags}.${action}${kids}`;
}

function tooltipContent(n) {
  if (n.kind === "more") {
    const parts = [el("strong", {}, `${moreText(n)} accounts`)];
    parts.push(el("p", {}, `Created by ${shortAccount(n.parentAccount)}. Click or press Enter to show the next page.`));
    return parts;
  }
  const d = n.data || {};
  const rows = [
    ["Account", d.account ?? n.account],
    ["Creator", d.creator ?? "—"],
    ["Created", formatDate(d.created_at)],
    ["XLM balance", formatXlm(d.xlm_balance)],
    ["Home domain", displayText(d.home_domain)],
    ["Flags", formatFlags(d.flags)],
    ["Pipeline", displayText(d.pipeline_source)],
    ...labelFacts(d),
  ];
  if (Number.isFinite(Number(d.num_children)) && d.num_children !== null) rows.push(["Children", formatCount(d.num_children)]);
  const dl = el("dl", {});
  for (const [k, v] of rows) {
    dl.append(el("dt", {}, k), el("dd", { class: k === "Account" || k === "Creator" ? "mono" : null }, v));
  }
  const tags = tagsOf(d);
  const out = [dl];
  if (tags.length) out.push(el("div", { class: "tags" }, tags.map(tagBadge)));
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
    this.zoom = d3
      .zoom()
      .scaleExtent([0.01, 8])
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

  /**
   * Lay out `model` with `options` and draw it. `fit: true` fits the whole tree in the window;
   * otherwise the current zoom and pan stay. Returns the layout result.
   */
  render(model, options, { fit = false, focusId = null } = {}) {
    const t0 = performance.now();
    const result = layout(model, options);
    this.result = result;
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
        g.append("circle").attr("class", "ring").attr("r", 9);
        g.append("circle").attr("class", "dot");
        g.append("text").attr("class", "label");
        return g;
      });
    nodes
      .attr("class", (n) => {
        const status = n.data && n.data.status ? String(n.data.status).toLowerCase().replace(/[^a-z_]/g, "") : "";
        const tags = tagsOf(n.data).map((t) => `tag-${t.toLowerCase().replace(/[^a-z0-9-]/g, "")}`);
        const expandable = n.kind === "account" && n.data && canExpand(n.data) ? "has-children" : "";
        return ["node", `node-${n.kind}`, status ? `status-${status}` : "", n.leaf ? "leaf" : "inner", expandable, ...tags]
          .filter(Boolean)
          .join(" ");
      })
      .attr("data-id", (n) => n.id)
      .attr("data-kind", (n) => n.kind)
      .attr("data-account", (n) => n.account)
      .attr("transform", (n) => `translate(${n.x},${n.y})`)
      .attr("aria-label", nodeName);
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

    if (fit) this.fit();
    this.updateLabels();
    if (focusId) {
      const g = this.nodesG.node().querySelector(`g.node[data-id="${CSS.escape(focusId)}"]`);
      if (g) g.focus();
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

  /**
   * The drawn extent in layout units, labels included. Label lengths are estimated from their
   * characters (no getBBox: measuring would force a synchronous layout of every label).
   */
  extent() {
    const { nodes } = this.result;
    const radial = this.result.layout === "radial";
    const CHAR = 6.6; // px per character at the label font size (a generous average)
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
    for (const n of nodes) {
      add(n.x - 10, n.y - 10);
      add(n.x + 10, n.y + 10);
      const reach = 12 + nodeLabel(n).length * (n.kind === "root" ? CHAR * 1.25 : CHAR);
      const outward = (n.kind === "account" || n.kind === "more") && n.leaf;
      if (outward && radial) add(n.x + reach * Math.sin(n.angle), n.y - reach * Math.cos(n.angle));
      else if (outward) add(n.x, n.y + reach);
      else if (n.kind === "root" && radial) add(n.x, n.y - reach);
      else if (n.kind === "account") add(n.x - reach, n.y);
      else add(n.x + reach, n.y);
    }
    return { minX, maxX, minY, maxY };
  }

  /** Fit the whole tree, labels included, in the window. */
  fit() {
    if (!this.result || !this.result.nodes.length) return;
    const { minX, maxX, minY, maxY } = this.extent();
    const pad = 30; // clear of the help line and the legend
    const w = this.svgEl.clientWidth || 800;
    const h = this.svgEl.clientHeight || 600;
    const bw = maxX - minX + 2 * pad;
    const bh = maxY - minY + 2 * pad;
    const k = Math.max(0.01, Math.min(w / bw, h / bh, 1.6));
    const cx = (minX + maxX) / 2;
    const cy = (minY + maxY) / 2;
    const t = d3.zoomIdentity.translate(w / 2 - k * cx, h / 2 - k * cy).scale(k);
    this.svg.call(this.zoom.transform, t);
    this.fitted = true;
  }

  /** The window changed size: refit if the view is the fitted one, else keep what the visitor chose. */
  resized() {
    if (this.fitted) this.fit();
  }

  zoomBy(factor) {
    this.svg.call(this.zoom.scaleBy, factor);
    this.fitted = false;
  }

  panBy(dx, dy) {
    this.svg.call(this.zoom.translateBy, dx / this.transform.k, dy / this.transform.k);
    this.fitted = false;
  }

  showTooltip(n, g) {
    const tip = this.tooltipEl;
    if (!tip) return;
    replace(tip, tooltipContent(n));
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
