// The explorer page: search form, pipeline progress, lineage tree, details and siblings.
import { ApiError, accountHref, createApi, preferredNetwork, rememberNetwork, siteConfig } from "./api.js";
import { announce, el, replace, tagBadge } from "./dom.js";
import { DEFAULTS, fanOut, normalizeOptions } from "./layout.js";
import { appendPage, attachChildren, awaitingEnrichment, canExpand, countLoaded, findNode, fromLineage, refreshFacts, revealMore } from "./lineage-model.js";
import { displayText, formatCount, formatDate, formatDuration, formatXlm, shortAccount } from "./format.js";
import { nodeFacts } from "./node-text.js";
import { networkSwitch } from "./network-switch.js";
import { VisibilityPoller } from "./poller.js";
import { validateSearch } from "./strkey.js";
import { TreeView } from "./tree-view.js";
import { STAGE_WORDS, completenessText, livesText, mergedText, pipelineWords, stageWords, syncSourceText } from "./words.js";

const cfg = siteConfig();
const api = createApi(cfg);
const LAYOUT_KEY = "stellarmap.layout";
const SPACING_KEY = "stellarmap.tidySpacing";
// The explorer lists these stages in this order (then any other the server reports); the optional
// ones only once the server reports them (the Hubble query, the best-effort label stages).
const STAGE_ORDER = Object.keys(STAGE_WORDS);
const OPTIONAL_STAGES = new Set(["hubble_lineage", "directory_labels", "stellar_toml"]);

const $ = (id) => document.getElementById(id);

const state = {
  account: null,
  network: preferredNetwork(cfg),
  model: null,
  poller: null,
  abort: null,
  selected: null,
  siblingsCursor: null,
  siblingsFor: null,
  layout: readLayout(),
  spacing: readSpacing(),
  busy: false,
  sync: null, // GET /stats/sync of state.network, read once an answer from the sync is on view
};

function storageGet(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

function storageSet(key, value) {
  try {
    localStorage.setItem(key, value);
  } catch {
    // storage disabled: the choice lasts for this page only
  }
}

function readLayout() {
  const stored = storageGet(LAYOUT_KEY);
  return stored === "tidy" || stored === "radial" ? stored : "radial";
}

function readSpacing() {
  const base = { siblingGap: DEFAULTS.siblingGap, levelGap: DEFAULTS.levelGap, groupGap: DEFAULTS.groupGap };
  try {
    const stored = JSON.parse(storageGet(SPACING_KEY) || "{}");
    for (const key of Object.keys(base)) {
      const v = Number(stored[key]);
      if (Number.isFinite(v) && v > 0) base[key] = v;
    }
  } catch {
    // ignore a corrupt stored value
  }
  return base;
}

function layoutOptions() {
  return { layout: state.layout, pageSize: cfg.pageSize, aggregateAbove: cfg.pageSize, ...state.spacing };
}

// ------------------------------------------------------------------ tree view

const view = new TreeView($("tree"), $("tooltip"), {
  onRecenter: (account) => search(account, state.network, { push: true }),
  onMore: (n) => showMore(n.parentAccount, n.id),
  onExpand: (n) => expandInPlace(n.account),
  onSelect: (n) => showDetails(n),
});

// The tree panel takes the window's height below its top (at least 460 px), so the explorer fits
// the window whatever the lines above it hold (a completeness notice, the spacing sliders).
const PANEL_MIN_PX = 460;
const PANEL_BOTTOM_PX = 50; // the explorer's padding and the page's bottom margin

function sizeTreePanel() {
  const body = document.querySelector(".explorer-body");
  if (!body || $("explorer").hidden) return;
  const top = body.getBoundingClientRect().top + window.scrollY;
  const height = Math.max(PANEL_MIN_PX, Math.floor(window.innerHeight - top - PANEL_BOTTOM_PX));
  if (body.style.getPropertyValue("--tree-h") !== `${height}px`) body.style.setProperty("--tree-h", `${height}px`);
}

function redraw({ fit = false, focusId = null } = {}) {
  if (!state.model) return;
  // The lines above the tree first: they move the tree panel the fit measures.
  showCompleteness();
  updateSummary();
  if (fit) sizeTreePanel();
  view.render(state.model, layoutOptions(), { fit, focusId });
}

// Never silent: an incomplete children list says so where the children are shown.
function showCompleteness() {
  const gap = completenessText(state.model.tree.completeness);
  for (const id of ["completeness-note", "summary-completeness"]) {
    $(id).textContent = gap || "";
    $(id).hidden = !gap;
  }
  $("explorer").dataset.childrenComplete = gap ? "false" : "true";
}

function updateSummary() {
  const tree = state.model.tree;
  const total = Number.isFinite(Number(tree.num_children)) && tree.num_children !== null ? Number(tree.num_children) : null;
  const loaded = Array.isArray(tree.children) ? tree.children.length : 0;
  const shown = fanOut(tree, normalizeOptions(layoutOptions())).shown;
  const gap = completenessText(tree.completeness);
  const parts = [
    `${formatCount(state.model.ancestors.length)} ancestor${state.model.ancestors.length === 1 ? "" : "s"} up to genesis`,
    `${formatCount(Math.min(loaded, shown))} of ${formatCount(total ?? loaded + (tree.more ? tree.more.count : 0))} children shown${gap ? " (the list is incomplete)" : ""}`,
  ];
  const extra = countLoaded(state.model) - 1 - loaded;
  if (extra > 0) parts.push(`${formatCount(extra)} grandchildren and below`);
  $("tree-summary").textContent = parts.join(" · ");
}

async function showMore(parentAccount, moreNodeId) {
  if (state.busy) return;
  const opts = layoutOptions();
  const step = revealMore(state.model, parentAccount, opts);
  if (step.fetch) {
    state.busy = true;
    try {
      const body = await api.lineage(parentAccount, state.network, { cursor: step.fetch, limit: cfg.pageSize });
      appendPage(state.model, parentAccount, body, opts);
    } catch (error) {
      announce(`Could not load more children: ${error.message}`);
      return;
    } finally {
      state.busy = false;
    }
  }
  redraw({ fit: true, focusId: moreNodeId });
  announce(`Showing ${$("tree").dataset.childCount} accounts; ${formatCount(Number($("tree").dataset.hidden))} more hidden.`);
}

async function expandInPlace(account) {
  const node = findNode(state.model, account);
  if (!node || !canExpand(node) || state.busy) return;
  state.busy = true;
  try {
    const body = await api.lineage(account, state.network, { limit: cfg.pageSize });
    attachChildren(state.model, account, body);
  } catch (error) {
    announce(`Could not load the children of ${shortAccount(account)}: ${error.message}`);
    return;
  } finally {
    state.busy = false;
  }
  redraw({ fit: true, focusId: account });
  announce(`Showing the children of ${shortAccount(account)}.`);
}

// ------------------------------------------------------------------ details + siblings

function field(label, value, cls) {
  return [el("dt", {}, label), el("dd", { class: cls }, value)];
}

function showDetails(n) {
  state.selected = n;
  const d = n.data || {};
  const title = n.kind === "root" ? "Searched account" : n.kind === "ancestor" ? "Ancestor" : "Child account";
  $("details-title").textContent = title;
  const tags = Array.isArray(d.tags) ? d.tags : [];
  const merged = mergedText(d);
  const synced = syncSourceText(d.pipeline_source, state.sync);
  const lives = n.kind === "root" ? livesText(d.lives) : [];
  const dl = el(
    "dl",
    { class: "facts" },
    nodeFacts(d, { account: n.account, full: true }).map(([label, text]) =>
      field(label, text, label === "Account" || label === "Creator" ? "mono" : label === "Home domain" ? "domain" : null),
    ),
  );
  replace(
    $("details-body"),
    merged ? el("p", { class: "notice notice-info merged-note" }, merged) : null,
    synced ? el("p", { class: "notice notice-info sync-note" }, `${synced}.`) : null,
    tags.length ? el("div", { class: "tags" }, tags.map(tagBadge)) : null,
    dl,
    lives.length ? el("div", { class: "lives" }, el("h4", {}, "Lives"), el("ol", {}, lives.map((text) => el("li", {}, text)))) : null,
  );
  $("details-recenter").hidden = n.kind === "root";
  $("details-expand").hidden = !(n.kind === "account" && canExpand(d));
}

function showSummary(summary) {
  const box = $("summary");
  if (!summary || typeof summary !== "object") {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  const bins = Array.isArray(summary.balance_histogram) ? summary.balance_histogram : [];
  const max = Math.max(1, ...bins.map((b) => Number(b.count) || 0));
  replace(
    $("summary-histogram"),
    bins.map((b) => {
      const fill = el("div", { class: "bar-fill" });
      fill.style.width = `${(((Number(b.count) || 0) / max) * 100).toFixed(1)}%`;
      return el("li", { class: "bar-row" }, el("span", {}, displayText(b.label)), el("div", { class: "bar-track", "aria-hidden": "true" }, fill), el("span", { class: "num" }, formatCount(b.count)));
    }),
  );
  const top = Array.isArray(summary.top_by_balance) ? summary.top_by_balance : [];
  replace(
    $("summary-top"),
    top.map((t) => {
      const link = el("a", { href: accountHref(t.account, state.network), class: "mono" }, shortAccount(t.account, 6, 6));
      link.addEventListener("click", (event) => {
        event.preventDefault();
        search(t.account, state.network, { push: true });
      });
      return el("li", {}, link, el("span", { class: "muted" }, ` ${formatXlm(t.xlm_balance)} XLM`));
    }),
  );
  const when = summary.computed_at ? ` · computed ${formatDate(summary.computed_at)}${summary.stale ? " (refreshing)" : ""}` : "";
  $("summary-note").textContent = `${formatCount(summary.count)} children, ${formatCount(summary.known_balances ?? 0)} with a known balance${when}.`;
}

function showRootDetails() {
  const root = view.result && view.result.nodes.find((x) => x.kind === "root");
  if (root) showDetails(root);
}

async function loadSiblings({ append = false } = {}) {
  const account = state.account;
  const list = $("siblings-list");
  if (!append) {
    list.replaceChildren();
    state.siblingsCursor = null;
  }
  state.siblingsFor = account;
  $("siblings-note").textContent = "Loading…";
  $("siblings-more").hidden = true;
  try {
    const body = await api.lineage(account, state.network, {
      siblings: true,
      limit: cfg.siblingsPageSize,
      siblingsCursor: append ? state.siblingsCursor : undefined,
    });
    if (state.siblingsFor !== account) return;
    const sib = body.siblings && typeof body.siblings === "object" ? body.siblings : { items: [], next_cursor: null };
    const items = Array.isArray(sib.items) ? sib.items.filter((s) => s.account !== account) : [];
    for (const s of items) {
      const link = el("a", { href: accountHref(s.account, state.network), class: "mono", dataset: { account: s.account } }, shortAccount(s.account, 6, 6));
      link.addEventListener("click", (event) => {
        event.preventDefault();
        search(s.account, state.network, { push: true });
      });
      const meta = [formatXlm(s.xlm_balance) + " XLM"];
      if (s.home_domain) meta.push(displayText(s.home_domain));
      const tags = Array.isArray(s.tags) ? s.tags.map(tagBadge) : [];
      list.append(el("li", {}, link, el("span", { class: "muted" }, meta.join(" · ")), tags));
    }
    state.siblingsCursor = sib.next_cursor || null;
    const count = list.children.length;
    const creator = state.model && state.model.tree.creator;
    const parent = state.model && state.model.ancestors.length ? state.model.ancestors[state.model.ancestors.length - 1] : null;
    const creatorKids = parent && Number.isFinite(Number(parent.num_children)) ? Number(parent.num_children) : 0;
    if (!creator) $("siblings-note").textContent = "Genesis has no siblings.";
    else if (count === 0 && creatorKids > 1) {
      $("siblings-note").textContent = `${shortAccount(creator)} created ${formatCount(creatorKids)} accounts; they are not listed yet. Open the creator to list them.`;
    } else if (count === 0) $("siblings-note").textContent = `No other account created by ${shortAccount(creator)} is known yet.`;
    else {
      $("siblings-note").textContent = `${formatCount(count)} other account${count === 1 ? "" : "s"} created by ${shortAccount(creator)}${state.siblingsCursor ? " so far" : ""}.`;
    }
    $("siblings-more").hidden = !state.siblingsCursor;
  } catch (error) {
    $("siblings-note").textContent = `Siblings unavailable: ${error.message}`;
  }
}

// ------------------------------------------------------------------ progress

function setPhase(phase, title, text) {
  const panel = $("status");
  panel.hidden = phase === "idle";
  panel.dataset.phase = phase;
  $("status-title").textContent = title || "";
  $("status-text").textContent = text || "";
  document.body.dataset.phase = phase;
}

function renderStages(stages) {
  const list = $("stage-list");
  const byName = new Map();
  for (const s of Array.isArray(stages) ? stages : []) {
    if (s && s.stage) byName.set(String(s.stage), s);
  }
  const names = STAGE_ORDER.filter((n) => byName.has(n) || !OPTIONAL_STAGES.has(n));
  for (const extra of byName.keys()) if (!names.includes(extra)) names.push(extra);
  const items = names.map((name) => {
    const s = byName.get(name);
    const status = s && s.status ? String(s.status).toUpperCase() : "WAITING";
    const detail = [];
    if (s && s.duration_ms !== null && s.duration_ms !== undefined) detail.push(formatDuration(s.duration_ms));
    if (s && s.pipeline_source) detail.push(pipelineWords(s.pipeline_source));
    if (s && s.error) detail.push(displayText(s.error));
    return el(
      "li",
      { class: `stage stage-${status.toLowerCase().replace(/[^a-z]/g, "")}`, dataset: { stage: name, status } },
      el("span", { class: "stage-dot", "aria-hidden": "true" }),
      el("span", { class: "stage-name" }, stageWords(name)),
      el("span", { class: "stage-status" }, status.toLowerCase()),
      detail.length ? el("span", { class: "stage-detail" }, detail.join(" · ")) : null,
    );
  });
  replace(list, items);
  const done = items.filter((li) => ["SUCCESS", "SKIPPED"].includes(li.dataset.status)).length;
  $("status-text").textContent = `${done} of ${items.length} stages done.`;
}

function stopWork() {
  if (state.poller) state.poller.stop();
  state.poller = null;
  if (state.abort) state.abort.abort();
  state.abort = null;
}

function showTree(lineage, { fit = true } = {}) {
  state.model = fromLineage(lineage);
  $("explorer").hidden = false;
  document.querySelector(".search-panel").classList.add("compact");
  $("explorer-title").textContent = `Lineage of ${shortAccount(state.account, 6, 6)}`;
  redraw({ fit });
  showRootDetails();
  showSyncSource(lineage);
  showSummary(lineage.summary);
  loadSiblings();
  watchEnrichment();
}

// An answer from the network-wide Hubble sync says so, with the day the sync is complete up to
// (GET /stats/sync; without it the sentence goes without the day, never a wrong one).
async function showSyncSource(lineage) {
  const fromSync = (node) => Boolean(syncSourceText(node && node.pipeline_source));
  const note = () => {
    const text = syncSourceText(state.model.tree.pipeline_source, state.sync);
    $("sync-note").textContent = text ? `${text}.` : "";
    $("sync-note").hidden = !text;
  };
  state.sync = null;
  note();
  const nodes = [lineage.tree, ...(lineage.ancestors || []), ...((lineage.tree && lineage.tree.children) || [])];
  if (!nodes.some(fromSync)) return;
  const model = state.model;
  try {
    const sync = await api.sync(state.network);
    if (state.model !== model) return; // another account is on view now
    state.sync = sync;
    note();
    if (state.selected) showDetails(state.selected);
  } catch {
    // the sentence stays without its day
  }
}

// The lineage is COMPLETE before every balance, home domain and tag has arrived (the enrichment
// runs behind it): refresh the facts on view for a while, paused like the progress polling.
const ENRICHMENT_TRIES = 20;

function watchEnrichment() {
  if (!state.model || !awaitingEnrichment(state.model, cfg.pageSize)) {
    document.body.dataset.enrichment = "done";
    return;
  }
  const account = state.account;
  const network = state.network;
  let tries = 0;
  document.body.dataset.enrichment = "waiting";
  $("enrichment-note").hidden = false;
  const done = () => {
    $("enrichment-note").hidden = true;
    document.body.dataset.enrichment = "done";
    return { done: true };
  };
  state.poller = new VisibilityPoller({
    intervalMs: 3000,
    onError: () => done(),
    tick: async () => {
      tries += 1;
      const body = await api.lineage(account, network, { limit: cfg.pageSize });
      if (state.account !== account || !state.model) return { done: true };
      if (refreshFacts(state.model, body) > 0) {
        redraw();
        const selected = state.selected && view.result && view.result.nodes.find((n) => n.id === state.selected.id);
        if (selected) showDetails(selected);
      }
      if (!awaitingEnrichment(state.model, cfg.pageSize) || tries >= ENRICHMENT_TRIES) return done();
      return {};
    },
  });
  state.poller.start({ immediate: true });
}

function fail(title, text) {
  setPhase("failed", title, text);
  announce(`${title}. ${text}`);
}

async function search(account, network, { push = false } = {}) {
  const check = validateSearch(account, network);
  showFieldError(check.ok ? null : check.error);
  if (!check.ok) return;
  stopWork();
  state.account = check.account;
  state.network = check.network;
  $("account").value = check.account;
  setNetworkRadio(check.network);
  const url = `?${new URLSearchParams({ account: check.account, network: check.network })}`;
  if (push) history.pushState({ account: check.account, network: check.network }, "", url);
  else history.replaceState({ account: check.account, network: check.network }, "", url);
  document.title = `${shortAccount(check.account)} · StellarMap`;

  const controller = new AbortController();
  state.abort = controller;
  setPhase("searching", "Looking up the account…", "");
  $("stage-list").replaceChildren();
  let first;
  try {
    first = await api.search(check.account, check.network, { signal: controller.signal });
  } catch (error) {
    if (error.name === "AbortError") return;
    handleError(error);
    return;
  }
  if (first.status === 200 && first.body.lineage) {
    setPhase("complete", "Done", "");
    $("status").hidden = true;
    showTree(first.body.lineage);
    announce(`Lineage of ${shortAccount(check.account)} loaded.`);
    return;
  }
  setPhase("pending", "Tracing the lineage…", "");
  $("explorer").hidden = true;
  renderStages(first.body.stages);
  const intervalMs = Math.max(500, Number(first.body.poll_after_s || 2) * 1000);
  state.poller = new VisibilityPoller({
    intervalMs,
    onState: (s) => {
      $("poll-state").hidden = s !== "paused";
      document.body.dataset.polling = s;
    },
    onError: (error) => handleError(error),
    tick: async () => {
      const ex = await api.stageExecutions(check.account, check.network, { signal: controller.signal });
      renderStages(ex.stages);
      const status = String(ex.status || "").toUpperCase();
      if (status === "FAILED") {
        const last = (ex.stages || []).filter((s) => s.error).pop();
        fail("The pipeline failed", last ? displayText(last.error) : "It gave up after its retries. Try again later.");
        return { done: true };
      }
      if (status === "INVALID") {
        fail("No such account", `This address does not exist on the ${check.network} network.`);
        return { done: true };
      }
      if (status === "COMPLETE") {
        const again = await api.search(check.account, check.network, { signal: controller.signal });
        if (again.status === 200 && again.body.lineage) {
          setPhase("complete", "Done", "");
          $("status").hidden = true;
          showTree(again.body.lineage);
          announce(`Lineage of ${shortAccount(check.account)} loaded.`);
          return { done: true };
        }
      }
      return { nextMs: intervalMs };
    },
  });
  state.poller.start();
}

function handleError(error) {
  if (error && error.name === "AbortError") return;
  if (error instanceof ApiError) {
    if (error.status === 400 && error.field) {
      showFieldError({ message: error.message, field: error.field });
      setPhase("idle");
      return;
    }
    if (error.status === 404) {
      fail("No such account", error.message);
      return;
    }
    if (error.status === 409) {
      fail("The pipeline failed for this account", error.message);
      return;
    }
    if (error.status === 429) {
      const wait = error.retryAfter ? ` Try again in ${error.retryAfter} s.` : "";
      fail("Too many searches", `You are searching faster than the service allows.${wait}`);
      return;
    }
    fail("Something went wrong", error.message);
    return;
  }
  fail("Something went wrong", String(error && error.message ? error.message : error));
}

// ------------------------------------------------------------------ form

function showFieldError(error) {
  const accountError = $("account-error");
  const networkError = $("network-error");
  accountError.hidden = true;
  networkError.hidden = true;
  $("account").removeAttribute("aria-invalid");
  if (!error) return;
  if (error.field === "network") {
    networkError.textContent = error.message;
    networkError.hidden = false;
  } else {
    accountError.textContent = error.message;
    accountError.hidden = false;
    $("account").setAttribute("aria-invalid", "true");
    $("account").focus();
  }
}

let networks = null;

function buildNetworkSwitch() {
  networks = networkSwitch($("network-options"), cfg.networks, state.network, (name) => {
    state.network = name;
    rememberNetwork(name);
  });
}

function setNetworkRadio(network) {
  if (networks) networks.set(network);
}

function selectedNetwork() {
  return networks ? networks.get() : state.network;
}

function bindControls() {
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const network = selectedNetwork();
    rememberNetwork(network);
    search($("account").value, network, { push: true });
  });
  $("account").addEventListener("input", () => {
    if ($("account").getAttribute("aria-invalid") === "true") {
      const check = validateSearch($("account").value, selectedNetwork());
      if (check.ok) showFieldError(null);
    }
  });

  for (const input of document.querySelectorAll('input[name="layout"]')) {
    input.checked = input.value === state.layout;
    input.addEventListener("change", () => {
      if (!input.checked) return;
      state.layout = input.value;
      storageSet(LAYOUT_KEY, state.layout);
      $("tidy-spacing").hidden = state.layout !== "tidy";
      redraw({ fit: true });
    });
  }
  $("tidy-spacing").hidden = state.layout !== "tidy";

  const sliders = [
    ["sibling-gap", "siblingGap", (v) => `${v} px`],
    ["level-gap", "levelGap", (v) => `${v} px`],
    ["group-gap", "groupGap", (v) => `×${Number(v).toFixed(1)}`],
  ];
  for (const [id, key, show] of sliders) {
    const input = $(id);
    input.value = String(state.spacing[key]);
    $(`${id}-value`).textContent = show(state.spacing[key]);
    input.addEventListener("input", () => {
      state.spacing[key] = Number(input.value);
      $(`${id}-value`).textContent = show(input.value);
      storageSet(SPACING_KEY, JSON.stringify(state.spacing));
      redraw();
    });
  }

  $("zoom-in").addEventListener("click", () => view.zoomBy(1.3));
  $("zoom-out").addEventListener("click", () => view.zoomBy(1 / 1.3));
  $("zoom-fit").addEventListener("click", () => view.fit());
  $("details-recenter").addEventListener("click", () => {
    if (state.selected && state.selected.account) search(state.selected.account, state.network, { push: true });
  });
  $("details-expand").addEventListener("click", () => {
    if (state.selected && state.selected.account) expandInPlace(state.selected.account);
  });
  $("siblings-more").addEventListener("click", () => loadSiblings({ append: true }));

  window.addEventListener("popstate", () => {
    const params = new URLSearchParams(location.search);
    const account = params.get("account");
    if (account) search(account, params.get("network") || cfg.defaultNetwork);
  });
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      sizeTreePanel();
      view.resized();
    }, 150);
  });
}

function start() {
  buildNetworkSwitch();
  bindControls();
  const params = new URLSearchParams(location.search);
  const account = params.get("account");
  if (account) {
    $("account").value = account;
    search(account, params.get("network") || state.network);
  } else {
    $("account").focus();
  }
  document.body.dataset.ready = "true";
}

start();
