// The query builder: presets, a filter builder (add / remove filters), sortable results,
// clickable accounts and a notice when the scan cap cut the results short.
import { accountHref, createApi, preferredNetwork, rememberNetwork, siteConfig } from "./api.js";
import { announce, el, replace, tagBadge } from "./dom.js";
import { displayText, formatCount, formatTimestamp, formatXlm, isIsoDateTime, truncate } from "./format.js";
import { pipelineWords, stageWords } from "./words.js";
import { networkSwitch, setNetworkBadge } from "./network-switch.js";
import { isValidAccountId } from "./strkey.js";

const cfg = siteConfig();
const api = createApi(cfg);
const $ = (id) => document.getElementById(id);

// Operators offered per filter row: the server's, plus "is empty" / "is not empty" (value null).
const EMPTY_OPS = [
  { value: "is_null", label: "is empty", op: "=", nullValue: true },
  { value: "not_null", label: "is not empty", op: "!=", nullValue: true },
];
const OP_LABELS = { "=": "=", "!=": "≠", ">": ">", "<": "<", ">=": "≥", "<=": "≤", contains: "contains" };

const state = {
  network: preferredNetwork(cfg),
  meta: null,
  rows: [],
  columns: [],
  sort: { column: null, dir: "none" },
  seq: 0,
  filterSeq: 0,
};

function showError(id, message) {
  const box = $(id);
  box.textContent = message || "";
  box.hidden = !message;
}

// ------------------------------------------------------------------ builder

function columnsOf(table) {
  return (state.meta && state.meta.tables && state.meta.tables[table]) || [];
}

function fillTables() {
  const tables = Object.keys((state.meta && state.meta.tables) || {});
  replace(
    $("table"),
    tables.map((t) => el("option", { value: t }, t)),
  );
  fillSort();
}

function fillSort() {
  const cols = columnsOf($("table").value);
  replace($("sort"), el("option", { value: "" }, "(none)"), cols.map((c) => el("option", { value: c }, c)));
}

function addFilter(initial = {}) {
  const n = ++state.filterSeq;
  const cols = columnsOf($("table").value);
  const column = el("select", { id: `filter-${n}-column` }, cols.map((c) => el("option", { value: c }, c)));
  const ops = (state.meta && state.meta.operators) || ["="];
  const op = el(
    "select",
    { id: `filter-${n}-op` },
    ops.map((o) => el("option", { value: o }, OP_LABELS[o] || o)),
    EMPTY_OPS.map((o) => el("option", { value: o.value }, o.label)),
  );
  const value = el("input", { id: `filter-${n}-value`, type: "text", maxlength: 256, autocomplete: "off" });
  const remove = el("button", { type: "button", class: "remove-filter", "aria-label": `Remove filter ${n}` }, "Remove");
  if (initial.column) column.value = initial.column;
  if (initial.op) op.value = initial.op;
  if (initial.value !== undefined) value.value = initial.value;
  const syncValue = () => {
    value.disabled = EMPTY_OPS.some((o) => o.value === op.value);
  };
  op.addEventListener("change", syncValue);
  syncValue();
  const row = el(
    "li",
    { class: "filter-row", dataset: { filter: String(n) } },
    el("div", { class: "control" }, el("label", { for: column.id }, `Column (filter ${n})`), column),
    el("div", { class: "control" }, el("label", { for: op.id }, "Operator"), op),
    el("div", { class: "control" }, el("label", { for: value.id }, "Value"), value),
    remove,
  );
  remove.addEventListener("click", () => {
    const next = row.nextElementSibling || row.previousElementSibling;
    row.remove();
    announce(`Filter ${n} removed.`);
    const focusTarget = next ? next.querySelector("select") : $("add-filter");
    focusTarget.focus();
  });
  $("filters").append(row);
  return row;
}

function readFilters() {
  const out = [];
  for (const row of $("filters").querySelectorAll("li.filter-row")) {
    const n = row.dataset.filter;
    const column = $(`filter-${n}-column`).value;
    const opValue = $(`filter-${n}-op`).value;
    const empty = EMPTY_OPS.find((o) => o.value === opValue);
    if (empty) {
      out.push({ column, op: empty.op, value: null });
      continue;
    }
    const value = $(`filter-${n}-value`).value.trim();
    if (!value) {
      return { error: `Filter ${n}: enter a value (or choose “is empty”).`, field: $(`filter-${n}-value`) };
    }
    out.push({ column, op: opValue, value });
  }
  return { filters: out };
}

// ------------------------------------------------------------------ results

function looksLikeAccount(column, value) {
  return typeof value === "string" && value.length === 56 && value.startsWith("G") && isValidAccountId(value);
}

function cellContent(column, value) {
  if (value === null || value === undefined) return el("span", { class: "muted" }, "—");
  if (looksLikeAccount(column, value)) {
    return el("a", { href: accountHref(value, state.network), class: "mono", title: value }, `${value.slice(0, 8)}…${value.slice(-8)}`);
  }
  if (column === "tags" && Array.isArray(value)) return value.length ? el("span", { class: "tags" }, value.map(tagBadge)) : "—";
  if (Array.isArray(value)) return value.map((v) => displayText(v)).join(", ") || "—";
  if (typeof value === "object") return truncate(displayText(JSON.stringify(value)), 120);
  if (typeof value === "boolean") return value ? "yes" : "no";
  // Timestamps readable and in UTC, without microseconds; the exact value stays in the title.
  if (isIsoDateTime(value)) return el("time", { datetime: value, title: value }, formatTimestamp(value));
  if (column === "status" && typeof value === "string") {
    const slug = value.toLowerCase().replace(/[^a-z_]/g, "");
    return el("span", { class: `status-badge status-${slug} nowrap` }, displayText(value));
  }
  if (column === "stage") return el("span", { class: "nowrap", title: displayText(value) }, stageWords(value));
  if (column === "pipeline_source") return el("span", { class: "nowrap", title: displayText(value) }, pipelineWords(value));
  if (/balance/.test(column) && /^-?\d+(\.\d+)?$/.test(String(value))) return formatXlm(value);
  return truncate(displayText(value), 120);
}

// Prose (an error message) gets room to read instead of a narrow column of single words.
function isLongText(value) {
  return typeof value === "string" && value.length > 40 && !looksLikeAccount(null, value);
}

function isNumeric(values) {
  const present = values.filter((v) => v !== null && v !== undefined && v !== "");
  return present.length > 0 && present.every((v) => typeof v === "number" || (typeof v === "string" && /^-?\d+(\.\d+)?$/.test(v)));
}

function sortedRows() {
  const { column, dir } = state.sort;
  if (!column || dir === "none") return state.rows;
  const numeric = isNumeric(state.rows.map((r) => r[column]));
  const sign = dir === "ascending" ? 1 : -1;
  const key = (v) => (v === null || v === undefined ? null : numeric ? Number(v) : String(Array.isArray(v) ? v.join(",") : v));
  // Stable: ties keep the server's order. Empty values sort last either way.
  return state.rows
    .map((row, i) => ({ row, i, k: key(row[column]) }))
    .sort((a, b) => {
      if (a.k === null && b.k === null) return a.i - b.i;
      if (a.k === null) return 1;
      if (b.k === null) return -1;
      if (a.k < b.k) return -sign;
      if (a.k > b.k) return sign;
      return a.i - b.i;
    })
    .map((x) => x.row);
}

function renderResults() {
  const table = $("result-table");
  const numericCols = new Set(state.columns.filter((c) => isNumeric(state.rows.map((r) => r[c]))));
  const head = el(
    "tr",
    {},
    state.columns.map((c) => {
      const dir = state.sort.column === c ? state.sort.dir : "none";
      const button = el("button", { type: "button", class: "sort", "aria-label": `Sort by ${c}` }, c);
      button.addEventListener("click", () => {
        const next = state.sort.column === c && state.sort.dir === "ascending" ? "descending" : "ascending";
        state.sort = { column: c, dir: next };
        renderResults();
        table.querySelector(`th[data-column="${CSS.escape(c)}"] button`).focus();
        announce(`Sorted by ${c}, ${next}.`);
      });
      return el("th", { scope: "col", "aria-sort": dir, class: numericCols.has(c) ? "num" : null, dataset: { column: c } }, button);
    }),
  );
  replace(table.tHead, head);
  const rows = sortedRows();
  replace(
    table.tBodies[0],
    rows.length
      ? rows.map((r) => el("tr", {}, state.columns.map((c) => el("td", { class: numericCols.has(c) ? "num" : isLongText(r[c]) ? "long" : null }, cellContent(c, r[c])))))
      : el("tr", {}, el("td", { colspan: Math.max(1, state.columns.length), class: "empty" }, "No rows match.")),
  );
}

function showResult(body, label) {
  state.columns = Array.isArray(body.columns) ? body.columns.map(String) : [];
  state.rows = Array.isArray(body.rows) ? body.rows : [];
  state.sort = { column: null, dir: "none" };
  renderResults();
  const meta = `${label}: ${formatCount(state.rows.length)} row${state.rows.length === 1 ? "" : "s"} (limit ${formatCount(body.limit)}), ${formatCount(body.scanned)} scanned.`;
  $("result-meta").textContent = meta;
  if (body.cap_hit) {
    showError(
      "cap-notice",
      `The scan stopped at its cap of ${formatCount(body.scan_cap)} rows, so there may be more matches than shown. Add filters to narrow the search.`,
    );
  } else {
    showError("cap-notice", "");
  }
  $("results").dataset.capHit = String(Boolean(body.cap_hit));
  $("results").dataset.rows = String(state.rows.length);
  announce(meta);
}

async function runQuery(params, label) {
  const seq = ++state.seq;
  showError("query-error", "");
  $("results").setAttribute("aria-busy", "true");
  try {
    const body = await api.query({ network: state.network, ...params });
    if (seq !== state.seq) return;
    showResult(body, label);
  } catch (error) {
    if (seq !== state.seq) return;
    showError("query-error", `The query failed: ${error.message}`);
  } finally {
    if (seq === state.seq) $("results").removeAttribute("aria-busy");
  }
}

// ------------------------------------------------------------------ presets

function renderPresets() {
  const presets = (state.meta && state.meta.presets) || [];
  replace(
    $("presets"),
    presets.map((p) => {
      const name = String(p.name);
      const button = el(
        "button",
        { type: "button", dataset: { preset: name } },
        el("span", { class: "preset-name" }, name.replace(/_/g, " ")),
        el("span", { class: "preset-desc" }, displayText(p.description)),
      );
      const item = el("li", {}, button);
      let valueInput = null;
      if (p.value) {
        const id = `preset-${name}-value`;
        valueInput = el("input", { id, type: "text", maxlength: 256, placeholder: "default" });
        item.append(el("div", { class: "control" }, el("label", { for: id }, `${displayText(p.value)} (optional)`), valueInput));
      }
      button.addEventListener("click", () => {
        const params = { preset: name };
        if (valueInput && valueInput.value.trim()) params.value = valueInput.value.trim();
        runQuery(params, `Preset “${name.replace(/_/g, " ")}”`);
      });
      return item;
    }),
  );
}

// ------------------------------------------------------------------ start

async function start() {
  setNetworkBadge($("network-badge"), state.network);
  networkSwitch($("network-options"), cfg.networks, state.network, (name) => {
    state.network = name;
    rememberNetwork(name);
    setNetworkBadge($("network-badge"), name);
  });
  try {
    state.meta = await api.queryMeta();
  } catch (error) {
    showError("query-error", `The query builder is unavailable: ${error.message}`);
    return;
  }
  const limits = state.meta.limit || { min: 50, max: 500, default: 100 };
  $("limit").min = String(limits.min);
  $("limit").max = String(limits.max);
  $("limit").value = String(limits.default);
  renderPresets();
  fillTables();
  $("table").addEventListener("change", () => {
    fillSort();
    for (const row of [...$("filters").children]) row.remove();
  });
  $("add-filter").addEventListener("click", () => {
    const row = addFilter();
    row.querySelector("select").focus();
  });
  $("builder").addEventListener("submit", (event) => {
    event.preventDefault();
    showError("builder-error", "");
    const read = readFilters();
    if (read.error) {
      showError("builder-error", read.error);
      read.field.focus();
      return;
    }
    const limit = Number($("limit").value);
    if (!Number.isInteger(limit) || limit < limits.min || limit > limits.max) {
      showError("builder-error", `Rows must be a whole number from ${limits.min} to ${limits.max}.`);
      $("limit").focus();
      return;
    }
    const params = { table: $("table").value, limit };
    if (read.filters.length) params.filters = JSON.stringify(read.filters);
    if ($("sort").value) {
      params.sort = $("sort").value;
      params.order = $("order").value;
    }
    runQuery(params, `Table ${params.table}`);
  });
  document.body.dataset.ready = "true";
}

start();
