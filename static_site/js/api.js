// HTTP client for the two public functions (search, stats). Shapes: docs/design.md.
// Base URLs come from config.js (window.STELLARMAP_CONFIG); see static_site/README.md.

const DEFAULT_CONFIG = Object.freeze({
  searchUrl: "http://127.0.0.1:8081",
  statsUrl: "http://127.0.0.1:8082",
  networks: ["public", "testnet"],
  defaultNetwork: "public",
  hvaThresholds: [10000, 50000, 100000, 500000, 750000, 1000000],
  pageSize: 100,
  siblingsPageSize: 50,
  budgetWarnPct: 80,
  dashboardRefreshS: 30,
});

/** The site's configuration: config.js over the defaults. */
export function siteConfig() {
  const given = globalThis.STELLARMAP_CONFIG && typeof globalThis.STELLARMAP_CONFIG === "object" ? globalThis.STELLARMAP_CONFIG : {};
  const merged = { ...DEFAULT_CONFIG, ...given };
  merged.networks = Array.isArray(merged.networks) && merged.networks.length ? merged.networks.map(String) : [...DEFAULT_CONFIG.networks];
  if (!merged.networks.includes(merged.defaultNetwork)) merged.defaultNetwork = merged.networks[0];
  merged.pageSize = Math.min(1000, Math.max(1, Math.floor(Number(merged.pageSize)) || DEFAULT_CONFIG.pageSize));
  return merged;
}

export class ApiError extends Error {
  constructor(status, body, retryAfter) {
    const err = body && body.error && typeof body.error === "object" ? body.error : null;
    super(err && err.message ? String(err.message) : `request failed with HTTP ${status}`);
    this.status = status;
    this.code = err && err.code ? String(err.code) : status === 0 ? "network_error" : `http_${status}`;
    this.field = err && err.field ? String(err.field) : null;
    this.retryAfter = retryAfter;
  }
}

function endpoint(base, path, params) {
  const root = String(base).replace(/\/+$/, "");
  const url = new URL(`${root}${path}`, globalThis.location ? globalThis.location.href : undefined);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, String(v));
  }
  return url.toString();
}

async function getJson(url, { signal, accept = [200] } = {}) {
  let response;
  try {
    response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "omit", mode: "cors", signal });
  } catch (error) {
    if (error && error.name === "AbortError") throw error;
    throw new ApiError(0, { error: { code: "network_error", message: "the service could not be reached" } });
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!accept.includes(response.status)) {
    const retry = Number(response.headers.get("Retry-After"));
    throw new ApiError(response.status, body, Number.isFinite(retry) ? retry : null);
  }
  if (body === null || typeof body !== "object") throw new ApiError(response.status, { error: { code: "bad_response", message: "the service answered something that is not JSON" } });
  return { status: response.status, body };
}

export function createApi(cfg = siteConfig()) {
  const stats = (path, params, opts) => getJson(endpoint(cfg.statsUrl, path, params), opts).then((r) => r.body);
  return {
    config: cfg,
    /** 200 {status: COMPLETE, lineage, ...} or 202 {status, stages, poll_after_s}. */
    search: (account, network, opts) => getJson(endpoint(cfg.searchUrl, "", { account, network }), { ...opts, accept: [200, 202] }),
    stageExecutions: (account, network, opts) => stats("/stage-executions", { account, network }, opts),
    lineage: (account, network, { cursor, limit, siblings, siblingsCursor } = {}, opts) =>
      stats(
        "/account-lineage",
        { account, network, cursor, limit, siblings: siblings ? 1 : undefined, siblings_cursor: siblingsCursor },
        opts,
      ),
    pipelineStats: (opts) => stats("/pipeline-stats", {}, opts),
    pendingAccounts: (opts) => stats("/pending-accounts", {}, opts),
    health: (opts) => stats("/health", {}, { ...opts, accept: [200, 503] }),
    leaderboard: (network, threshold, limit, opts) => stats("/hva-leaderboard", { network, threshold, limit }, opts),
    hvaChanges: (network, threshold, since, opts) => stats("/hva-changes", { network, threshold, since }, opts),
    publicConfig: (opts) => stats("/config", {}, opts),
    /** The network-wide Hubble sync of one network (status NEVER_SYNCED when it never ran). */
    sync: (network, opts) => stats("/sync", { network }, opts),
    queryMeta: (opts) => stats("/query", {}, opts),
    query: (params, opts) => stats("/query", params, opts),
  };
}

/** Link to the explorer page for an account. */
export function accountHref(account, network) {
  const params = new URLSearchParams({ account: String(account), network: String(network) });
  return `index.html?${params.toString()}`;
}

const NETWORK_KEY = "stellarmap.network";

/** The network the visitor last chose (localStorage), if it is one the config allows. */
export function preferredNetwork(cfg = siteConfig()) {
  const fromUrl = new URLSearchParams(globalThis.location ? globalThis.location.search : "").get("network");
  if (fromUrl && cfg.networks.includes(fromUrl)) return fromUrl;
  try {
    const stored = globalThis.localStorage && globalThis.localStorage.getItem(NETWORK_KEY);
    if (stored && cfg.networks.includes(stored)) return stored;
  } catch {
    // storage disabled: fall back to the default
  }
  return cfg.defaultNetwork;
}

export function rememberNetwork(network) {
  try {
    globalThis.localStorage.setItem(NETWORK_KEY, network);
  } catch {
    // storage disabled: the choice lasts for this page only
  }
}
