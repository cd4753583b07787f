// The operators' dashboard: pipeline stats by source and status, the last 24 h, a throughput
// chart, alerts (stale records, budget, schema, rate limits, jobs), BigQuery spend and the
// network-wide Hubble sync of every network.
import "../vendor/d3.min.js";
import { accountHref, createApi, siteConfig } from "./api.js";
import { el, replace } from "./dom.js";
import { displayText, formatCount, formatDate, formatDuration, formatUsd, shortAccount } from "./format.js";
import { pipelineWords, stageWords, syncFacts } from "./words.js";
import { VisibilityPoller } from "./poller.js";

const d3 = globalThis.d3;
const cfg = siteConfig();
const api = createApi(cfg);
const $ = (id) => document.getElementById(id);
const RATE_LIMIT_RE = /\b429\b|rate.?limit|too many requests/i;

/**
 * Alerts from the stats answers (pure: unit-tested). Each alert: {id, level: critical|warning|ok, title, text}.
 */
export function computeAlerts({ health, pending, failedStages, now = Date.now(), budgetWarnPct = 80 }) {
  const alerts = [];
  if (health) {
    if (health.store && health.store.reachable === false) {
      alerts.push({ id: "store", level: "critical", title: "Store unreachable", text: "The stats function cannot reach the database." });
    }
    const schema = health.schema || {};
    if (schema.ok === false) {
      const parts = [];
      if (Array.isArray(schema.missing_migrations) && schema.missing_migrations.length) parts.push(`missing migrations: ${schema.missing_migrations.join(", ")}`);
      const cols = schema.missing_columns;
      const colList = Array.isArray(cols)
        ? cols.map(String)
        : cols && typeof cols === "object"
          ? Object.entries(cols).flatMap(([table, names]) => (Array.isArray(names) ? names : [names]).map((c) => `${table}.${c}`))
          : [];
      if (colList.length) parts.push(`missing columns: ${colList.join(", ")}`);
      if (schema.error) parts.push(String(schema.error));
      alerts.push({ id: "schema", level: "critical", title: "Schema mismatch", text: parts.join("; ") || "The database schema is behind the code." });
    }
    const bq = health.bigquery || {};
    const spent = Number(bq.spent_usd);
    const budget = Number(bq.budget_usd);
    if (Number.isFinite(spent) && Number.isFinite(budget) && budget > 0) {
      const pct = (spent / budget) * 100;
      if (bq.over_budget || pct >= 100) {
        alerts.push({ id: "budget", level: "critical", title: "BigQuery budget exhausted", text: `${formatUsd(spent)} of ${formatUsd(budget)} spent in ${bq.month}: new accounts take the API path.` });
      } else if (pct >= budgetWarnPct) {
        alerts.push({ id: "budget", level: "warning", title: "BigQuery budget near its limit", text: `${formatUsd(spent)} of ${formatUsd(budget)} (${pct.toFixed(0)}%) spent in ${bq.month}.` });
      }
    }
    const limiters = health.rate_limiters || {};
    for (const [name, unit] of [["horizon", "hour"], ["expert", "minute"]]) {
      const l = limiters[name];
      if (l && Number(l[`planned_per_${unit}`]) > Number(l[`allowed_per_${unit}`])) {
        alerts.push({
          id: `rate-plan-${name}`,
          level: "warning",
          title: `${name === "horizon" ? "Horizon" : "Stellar Expert"} budget overcommitted`,
          text: `The api-fallback queue may send ${l[`planned_per_${unit}`]} calls per ${unit}; the budget allows ${l[`allowed_per_${unit}`]}.`,
        });
      }
    }
    const cron = health.cron || {};
    for (const [job, info] of Object.entries(cron)) {
      if (!info || typeof info !== "object" || job === "error") continue;
      if (info.status && info.status !== "SUCCESS") {
        alerts.push({ id: `cron-${job}`, level: "warning", title: `Job ${job} failed`, text: `Last run ${formatDate(info.last_run)} ended ${displayText(info.status)}.` });
      } else if (info.overdue) {
        alerts.push({ id: `cron-${job}`, level: "warning", title: `Job ${job} overdue`, text: info.last_run ? `Last run ${formatDate(info.last_run)}.` : "It has never run." });
      }
    }
  }
  if (pending && Array.isArray(pending.accounts)) {
    const stale = pending.accounts.filter((a) => a.stale);
    if (stale.length) {
      const oldest = Math.max(...stale.map((a) => Number(a.age_s) || 0));
      alerts.push({
        id: "stale",
        level: "warning",
        title: `${formatCount(stale.length)} stale record${stale.length === 1 ? "" : "s"}`,
        text: `Pending or processing for too long (oldest ${formatDuration(oldest * 1000)}); reset_stale re-queues them.`,
      });
    }
  }
  if (failedStages && Array.isArray(failedStages.rows)) {
    const hourAgo = now - 3600 * 1000;
    const limited = failedStages.rows.filter((r) => {
      const at = Date.parse(r.started_at || r.finished_at || "");
      return RATE_LIMIT_RE.test(String(r.error_message || "")) && (!Number.isFinite(at) || at >= hourAgo);
    });
    if (limited.length) {
      const stages = [...new Set(limited.map((r) => stageWords(r.stage)))].join(", ");
      alerts.push({
        id: "rate-limited",
        level: "warning",
        title: "Upstream rate-limited",
        text: `${formatCount(limited.length)} stage run${limited.length === 1 ? "" : "s"} hit a rate limit in the last hour (${stages}); Cloud Tasks retries them with backoff.`,
      });
    }
  }
  return alerts;
}

function bars(list, counts, { total, label = displayText } = {}) {
  const entries = Object.entries(counts || {}).sort((a, b) => b[1] - a[1]);
  const max = total || Math.max(1, ...entries.map(([, n]) => Number(n) || 0));
  replace(
    list,
    entries.length
      ? entries.map(([name, n]) => {
          const fill = el("div", { class: "bar-fill" });
          fill.style.width = `${Math.max(0, Math.min(100, ((Number(n) || 0) / max) * 100)).toFixed(1)}%`;
          return el("li", { class: "bar-row", dataset: { key: name } }, el("span", { title: name }, label(name)), el("div", { class: "bar-track", "aria-hidden": "true" }, fill), el("span", { class: "num" }, formatCount(n)));
        })
      : el("li", { class: "muted" }, "Nothing yet."),
  );
}

function drawThroughput(points) {
  const svg = d3.select("#throughput");
  svg.selectAll("*").remove();
  const data = (Array.isArray(points) ? points : [])
    .map((p) => ({ t: new Date(p.hour), n: Number(p.count) || 0 }))
    .filter((p) => !Number.isNaN(p.t.getTime()));
  const node = svg.node();
  const width = node.clientWidth || 600;
  const height = node.clientHeight || 240;
  svg.attr("viewBox", `0 0 ${width} ${height}`);
  const m = { top: 12, right: 16, bottom: 28, left: 44 };
  if (!data.length) {
    svg.append("text").attr("x", width / 2).attr("y", height / 2).attr("text-anchor", "middle").attr("class", "muted").text("No completed accounts in the last 24 h.");
    $("throughput-desc").textContent = "No data.";
    return;
  }
  const x = d3.scaleTime().domain(d3.extent(data, (d) => d.t)).range([m.left, width - m.right]);
  const y = d3.scaleLinear().domain([0, Math.max(1, d3.max(data, (d) => d.n))]).nice().range([height - m.bottom, m.top]);
  svg.append("g").attr("class", "grid").attr("transform", `translate(${m.left},0)`).call(d3.axisLeft(y).ticks(4).tickSize(-(width - m.left - m.right)).tickFormat(() => "")).call((g) => g.select(".domain").remove());
  svg.append("path").datum(data).attr("class", "area").attr("d", d3.area().x((d) => x(d.t)).y0(y(0)).y1((d) => y(d.n)).curve(d3.curveMonotoneX));
  svg.append("path").datum(data).attr("class", "line").attr("d", d3.line().x((d) => x(d.t)).y((d) => y(d.n)).curve(d3.curveMonotoneX));
  svg.append("g").selectAll("circle").data(data).join("circle").attr("class", "dot").attr("r", 2.5).attr("cx", (d) => x(d.t)).attr("cy", (d) => y(d.n)).append("title").text((d) => `${d3.utcFormat("%Y-%m-%d %H:00 UTC")(d.t)}: ${formatCount(d.n)}`);
  svg.append("g").attr("class", "axis").attr("transform", `translate(0,${height - m.bottom})`).call(d3.axisBottom(x).ticks(Math.min(8, data.length)).tickFormat(d3.utcFormat("%H:%M")));
  svg.append("g").attr("class", "axis").attr("transform", `translate(${m.left},0)`).call(d3.axisLeft(y).ticks(4).tickFormat(d3.format("~s")));
  const total = d3.sum(data, (d) => d.n);
  const peak = d3.max(data, (d) => d.n);
  $("throughput-desc").textContent = `${formatCount(total)} accounts completed over ${data.length} hours; peak ${formatCount(peak)} in one hour.`;
  svg.node().dataset.points = String(data.length);
}

function renderSpend(bq) {
  const fill = $("spend-fill");
  const meter = $("spend-meter");
  if (!bq || bq.error || !Number.isFinite(Number(bq.budget_usd))) {
    $("spend-text").textContent = bq && bq.error ? `Unavailable: ${displayText(bq.error)}` : "Unavailable.";
    return;
  }
  const spent = Number(bq.spent_usd) || 0;
  const budget = Number(bq.budget_usd) || 0;
  const pct = budget > 0 ? (spent / budget) * 100 : 0;
  fill.style.width = `${Math.min(100, pct).toFixed(1)}%`;
  fill.classList.toggle("warn", pct >= cfg.budgetWarnPct && pct < 100);
  fill.classList.toggle("over", pct >= 100 || Boolean(bq.over_budget));
  meter.setAttribute("aria-valuenow", String(Math.min(100, Math.round(pct))));
  meter.setAttribute("aria-valuetext", `${formatUsd(spent)} of ${formatUsd(budget)}`);
  $("spend-text").textContent = budget > 0 ? `${formatUsd(spent)} of ${formatUsd(budget)} (${pct.toFixed(1)}%)` : `${formatUsd(spent)} (no budget set)`;
  $("spend-month").textContent = `Month ${bq.month}; ${formatUsd(bq.remaining_usd)} left.`;
}

function renderAlerts(alerts) {
  replace(
    $("alerts"),
    alerts.length
      ? alerts.map((a) => el("li", { class: `alert alert-${a.level}`, dataset: { alert: a.id } }, el("strong", {}, a.title), a.text))
      : el("li", { class: "alert alert-ok", dataset: { alert: "none" } }, el("strong", {}, "All clear"), "No stale records, budget, schema or rate-limit alerts."),
  );
}

function renderPending(pending) {
  const rows = (pending && Array.isArray(pending.accounts) ? pending.accounts : []).slice(0, 50);
  replace(
    $("pending"),
    rows.length
      ? rows.map((a) =>
          el(
            "tr",
            {},
            el("td", {}, el("a", { href: accountHref(a.account, a.network), class: "mono", title: a.account }, shortAccount(a.account, 8, 8))),
            el("td", {}, displayText(a.network)),
            el("td", {}, displayText(a.table)),
            el("td", {}, displayText(a.status), a.stale ? el("span", { class: "badge badge-down" }, " stale") : null),
            el("td", { class: "num" }, formatDuration((Number(a.age_s) || 0) * 1000)),
          ),
        )
      : el("tr", {}, el("td", { colspan: 5, class: "empty" }, "Nothing pending.")),
  );
}

function renderJobs(cron) {
  const entries = Object.entries(cron || {}).filter(([, v]) => v && typeof v === "object");
  replace(
    $("jobs"),
    entries.length
      ? entries.map(([job, info]) => el("li", {}, el("strong", {}, displayText(job)), el("span", { class: "muted" }, `${info.status ? displayText(info.status) : "never run"} · ${formatDate(info.last_run)}${info.overdue ? " · overdue" : ""}`)))
      : el("li", { class: "muted" }, "No job runs recorded."),
  );
}

// One block per network; a network whose sync could not be read says so, never "never synced".
function renderSync(networks, answers) {
  replace(
    $("sync"),
    networks.map((network, i) => {
      const got = answers[i];
      const rows = got.status === "fulfilled" ? syncFacts(got.value) : [["Status", `Unavailable: ${displayText(got.reason && got.reason.message)}`]];
      const status = got.status === "fulfilled" ? String((got.value && got.value.status) || "NEVER_SYNCED") : "UNAVAILABLE";
      return el(
        "div",
        { class: "sync-network", dataset: { network, status } },
        el("h3", {}, displayText(network)),
        el("dl", { class: "facts" }, rows.map(([label, text]) => [el("dt", {}, label), el("dd", {}, text)])),
      );
    }),
  );
}

async function refresh() {
  const syncs = Promise.allSettled(cfg.networks.map((network) => api.sync(network)));
  const settled = await Promise.allSettled([api.pipelineStats(), api.health(), api.pendingAccounts(), api.query({ network: cfg.defaultNetwork, preset: "failed_stages", limit: 50 })]);
  const [stats, health, pending, failed] = settled.map((r) => (r.status === "fulfilled" ? r.value : null));
  renderSync(cfg.networks, await syncs);
  const errors = settled.filter((r) => r.status === "rejected").map((r) => r.reason && r.reason.message);
  $("dash-error").textContent = errors.length ? `Some figures are unavailable: ${[...new Set(errors)].join("; ")}` : "";
  $("dash-error").hidden = !errors.length;
  if (stats) {
    $("total").textContent = formatCount(stats.total);
    bars($("by-source"), stats.by_source, { label: pipelineWords });
    bars($("by-status"), stats.by_status);
    bars($("last24"), stats.last_24h_by_source, { label: pipelineWords });
    drawThroughput(stats.throughput);
  }
  if (health) {
    renderSpend(health.bigquery);
    renderJobs(health.cron);
  }
  renderPending(pending);
  renderAlerts(computeAlerts({ health, pending, failedStages: failed, budgetWarnPct: cfg.budgetWarnPct }));
  $("updated").textContent = `Updated ${formatDate(new Date().toISOString())}`;
  document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
}

function start() {
  const poller = new VisibilityPoller({ intervalMs: Math.max(5, Number(cfg.dashboardRefreshS) || 30) * 1000, tick: refresh, onError: () => {} });
  $("refresh").addEventListener("click", () => refresh());
  refresh().finally(() => {
    document.body.dataset.ready = "true";
    poller.start();
  });
}

if (globalThis.document && document.getElementById("alerts")) start();
