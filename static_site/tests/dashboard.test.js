// The dashboard's alerts from stats answers (shapes: docs/design.md /health, /pending-accounts, /query).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { computeAlerts } from "../js/dashboard-page.js";

const NOW = Date.parse("2026-01-01T12:00:00Z");
const healthy = () => ({
  status: "ok",
  store: { reachable: true, backend: "sqlite" },
  schema: { ok: true, applied: ["0001"], expected: ["0001"], missing_migrations: [], missing_columns: {} },
  cron: { hva_recalc: { last_run: "2026-01-01T11:30:00Z", status: "SUCCESS", duration_ms: 40, overdue: false } },
  rate_limiters: {
    horizon: { max_per_hour: 3600, allowed_per_hour: 2556, planned_per_hour: 1278 },
    expert: { max_per_minute: 50, allowed_per_minute: 35.5, planned_per_minute: 5.3 },
    api_fallback_queue: { max_dispatches_per_second: 0.0887, max_burst_size: 1, max_concurrent_dispatches: 2 },
    upstream_rate_pct: 71,
  },
  bigquery: { month: "2026-01", spent_usd: 10, budget_usd: 100, remaining_usd: 90, over_budget: false },
});
const ids = (alerts) => alerts.map((a) => `${a.id}:${a.level}`);

describe("dashboard alerts", () => {
  test("all clear", () => {
    assert.deepEqual(computeAlerts({ health: healthy(), pending: { accounts: [] }, failedStages: { rows: [] }, now: NOW }), []);
  });

  test("stale records", () => {
    const pending = { accounts: [{ account: "G1", stale: true, age_s: 7200 }, { account: "G2", stale: false, age_s: 5 }, { account: "G3", stale: true, age_s: 9000 }] };
    const alerts = computeAlerts({ health: healthy(), pending, now: NOW });
    assert.deepEqual(ids(alerts), ["stale:warning"]);
    assert.match(alerts[0].title, /^2 stale records$/);
    assert.match(alerts[0].text, /2 h 30 min/);
  });

  test("budget near its limit, then exhausted", () => {
    const h = healthy();
    h.bigquery.spent_usd = 85;
    assert.deepEqual(ids(computeAlerts({ health: h, now: NOW })), ["budget:warning"]);
    assert.deepEqual(ids(computeAlerts({ health: h, now: NOW, budgetWarnPct: 90 })), []);
    h.bigquery.spent_usd = 100;
    h.bigquery.over_budget = true;
    assert.deepEqual(ids(computeAlerts({ health: h, now: NOW })), ["budget:critical"]);
  });

  test("schema mismatch names what is missing", () => {
    const h = healthy();
    h.schema = { ok: false, missing_migrations: ["0003"], missing_columns: { account_lineage: ["pipeline_source"] } };
    const alerts = computeAlerts({ health: h, now: NOW });
    assert.deepEqual(ids(alerts), ["schema:critical"]);
    assert.match(alerts[0].text, /0003/);
    assert.match(alerts[0].text, /account_lineage\.pipeline_source/);
  });

  test("a rate-limited upstream: recent stage failures that hit a 429, and an overcommitted queue", () => {
    const failedStages = {
      rows: [
        { stage: "horizon_data", status: "FAILED", started_at: "2026-01-01T11:50:00Z", error_message: "HTTP 429 rate_limit_exceeded" },
        { stage: "expert_enrichment", status: "FAILED", started_at: "2026-01-01T11:40:00Z", error_message: "Too many requests." },
        { stage: "assets", status: "FAILED", started_at: "2026-01-01T11:55:00Z", error_message: "timeout" },
        { stage: "flags", status: "FAILED", started_at: "2026-01-01T09:00:00Z", error_message: "HTTP 429" },
      ],
    };
    const alerts = computeAlerts({ health: healthy(), failedStages, now: NOW });
    assert.deepEqual(ids(alerts), ["rate-limited:warning"]);
    assert.match(alerts[0].text, /^2 stage runs hit a rate limit in the last hour \(Horizon account data, Stellar Expert enrichment\)/, "stage names in words");
    const h = healthy();
    h.rate_limiters.horizon.planned_per_hour = 3000;
    assert.deepEqual(ids(computeAlerts({ health: h, now: NOW })), ["rate-plan-horizon:warning"]);
  });

  test("store down and jobs failing or overdue", () => {
    const h = healthy();
    h.store.reachable = false;
    h.cron = { hva_recalc: { last_run: null, status: null, overdue: true }, reset_stale: { last_run: "2026-01-01T11:00:00Z", status: "FAILED", overdue: false } };
    assert.deepEqual(ids(computeAlerts({ health: h, now: NOW })), ["store:critical", "cron-hva_recalc:warning", "cron-reset_stale:warning"]);
  });
});
