// StellarMap site configuration: where the public functions live.
// This committed file holds local defaults. The local stack serves a generated one in its place,
// and Terraform writes one for each deploy (shape: static_site/README.md).
window.STELLARMAP_CONFIG = {
  searchUrl: "http://127.0.0.1:8081",
  statsUrl: "http://127.0.0.1:8082",
  networks: ["public", "testnet"],
  defaultNetwork: "public",
  hvaThresholds: [10000, 50000, 100000, 500000, 750000, 1000000],
  pageSize: 100,
  siblingsPageSize: 50,
  budgetWarnPct: 80,
  dashboardRefreshS: 30,
};
