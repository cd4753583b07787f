// The HVA leaderboard: threshold dropdown (from config), network badge, rank-change badges.
import { accountHref, createApi, preferredNetwork, rememberNetwork, siteConfig } from "./api.js";
import { announce, el, replace } from "./dom.js";
import { displayText, formatCount, formatDate, formatXlm, shortAccount, truncate } from "./format.js";
import { networkSwitch, setNetworkBadge } from "./network-switch.js";

const cfg = siteConfig();
const api = createApi(cfg);
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

const state = {
  network: preferredNetwork(cfg),
  threshold: Number(params.get("threshold")) || null,
  thresholds: normalizeThresholds(cfg.hvaThresholds),
  limit: 50,
  seq: 0,
};

function normalizeThresholds(list) {
  const values = (Array.isArray(list) ? list : []).map(Number).filter((v) => Number.isInteger(v) && v > 0);
  return [...new Set(values)].sort((a, b) => a - b);
}

function fillThresholds() {
  const select = $("threshold");
  if (!state.thresholds.includes(state.threshold)) state.threshold = state.thresholds[0] ?? null;
  replace(
    select,
    state.thresholds.map((t) => {
      const option = el("option", { value: t }, `${formatCount(t)} XLM or more`);
      option.selected = t === state.threshold;
      return option;
    }),
  );
}

function badgeFor(badge) {
  if (!badge) return el("span", { class: "muted" }, "—");
  const text = String(badge);
  let cls = "badge";
  let label = text;
  if (text.startsWith("↑")) {
    cls += " badge-up";
    label = `up ${text.slice(1)} places`;
  } else if (text.startsWith("↓")) {
    cls += " badge-down";
    label = `down ${text.slice(1)} places`;
  } else if (text.toUpperCase() === "NEW") {
    cls += " badge-new";
    label = "new entry";
  }
  return el("span", { class: cls, "aria-label": label, title: label }, text);
}

function accountLink(account) {
  return el("a", { href: accountHref(account, state.network), class: "mono", title: account }, shortAccount(account, 8, 8));
}

function syncUrl() {
  const q = new URLSearchParams({ network: state.network, threshold: String(state.threshold) });
  history.replaceState(null, "", `?${q}`);
}

async function load() {
  const seq = ++state.seq;
  setNetworkBadge($("network-badge"), state.network);
  syncUrl();
  $("lb-error").hidden = true;
  $("leaderboard").setAttribute("aria-busy", "true");
  try {
    const body = await api.leaderboard(state.network, state.threshold, state.limit);
    if (seq !== state.seq) return;
    const fromServer = normalizeThresholds(body.thresholds);
    if (fromServer.length && fromServer.join() !== state.thresholds.join()) {
      state.thresholds = fromServer;
      fillThresholds();
    }
    const entries = Array.isArray(body.entries) ? body.entries : [];
    const rows = entries.map((e) =>
      el(
        "tr",
        { dataset: { account: e.account } },
        el("td", { class: "num" }, formatCount(e.rank)),
        el("td", {}, accountLink(e.account)),
        el("td", { class: "num" }, formatXlm(e.xlm_balance)),
        el("td", { title: e.home_domain ? displayText(e.home_domain) : null }, e.home_domain ? truncate(displayText(e.home_domain), 40) : "—"),
        el("td", {}, badgeFor(e.badge)),
      ),
    );
    replace(
      $("lb-body"),
      rows.length ? rows : el("tr", {}, el("td", { colspan: 5, class: "empty" }, "No account holds this much yet (or the ranking has not run).")),
    );
    $("leaderboard").dataset.threshold = String(body.threshold ?? state.threshold);
    $("leaderboard").dataset.network = String(body.network ?? state.network);
    $("snapshot").textContent = body.snapshot_at
      ? `${formatCount(entries.length)} accounts · snapshot ${formatDate(body.snapshot_at)}`
      : `${formatCount(entries.length)} accounts`;
    announce(`Leaderboard for ${formatCount(state.threshold)} XLM: ${entries.length} accounts.`);
  } catch (error) {
    if (seq !== state.seq) return;
    replace($("lb-body"));
    $("lb-error").textContent = `Could not load the leaderboard: ${error.message}`;
    $("lb-error").hidden = false;
  } finally {
    if (seq === state.seq) $("leaderboard").removeAttribute("aria-busy");
  }
  loadChanges(seq);
}

const EVENT_WORDS = { ENTERED: "entered", EXITED: "left", RANK_UP: "rose", RANK_DOWN: "fell" };

async function loadChanges(seq) {
  const since = new Date(Date.now() - 7 * 24 * 3600 * 1000).toISOString();
  try {
    const body = await api.hvaChanges(state.network, state.threshold, since);
    if (seq !== state.seq) return;
    const events = (Array.isArray(body.events) ? body.events : []).slice(0, 30);
    replace(
      $("changes"),
      events.length
        ? events.map((e) => {
            const ranks = e.old_rank || e.new_rank ? ` (rank ${e.old_rank ?? "—"} → ${e.new_rank ?? "—"})` : "";
            const pct = Number.isFinite(Number(e.pct_change)) && e.pct_change !== null ? ` · ${Number(e.pct_change).toFixed(1)}%` : "";
            return el(
              "li",
              {},
              accountLink(e.account),
              el("span", {}, `${EVENT_WORDS[e.event_type] || displayText(e.event_type)}${ranks}${pct}`),
              el("span", { class: "muted" }, formatDate(e.event_time)),
            );
          })
        : el("li", { class: "muted" }, "No changes in the last 7 days."),
    );
  } catch (error) {
    if (seq === state.seq) replace($("changes"), el("li", { class: "muted" }, `Changes unavailable: ${error.message}`));
  }
}

async function start() {
  fillThresholds();
  networkSwitch($("network-options"), cfg.networks, state.network, (name) => {
    state.network = name;
    rememberNetwork(name);
    load();
  });
  $("threshold").addEventListener("change", () => {
    state.threshold = Number($("threshold").value);
    load();
  });
  $("limit").addEventListener("change", () => {
    state.limit = Number($("limit").value);
    load();
  });
  // The run-time thresholds (stats /config) win over config.js when the function answers.
  try {
    const pub = await api.publicConfig();
    const fromServer = normalizeThresholds(pub.hva_thresholds);
    if (fromServer.length) {
      state.thresholds = fromServer;
      fillThresholds();
    }
  } catch {
    // keep config.js thresholds
  }
  await load();
  document.body.dataset.ready = "true";
}

start();
