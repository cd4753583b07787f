data "google_project" "this" {
  project_id = var.project
}

locals {
  functions_dir = "${path.module}/../functions"
  common_dir    = "${path.module}/../common"
  site_dir      = "${path.module}/${var.site_dir}"

  # ---------------------------------------------------------------- functions
  # Every function, declared once: one entry per functions/<name> folder
  # (tests/unit/test_terraform_consistency.py checks the two agree), grouped by access, and one
  # for_each'd resource per kind of thing in functions.tf and iam.tf. Access:
  #   public    internet ingress; allUsers may invoke (search and stats only, CKV_STELLARMAP_3)
  #   internal  internal ingress; only the identities in `invokers` may invoke
  #   operator  internet ingress for operators' terminals (`gcloud auth print-identity-token`);
  #             run.invoker held only by var.operator_members (nobody without members)
  # Fields:
  #   invokers  "tasks" (the Cloud Tasks invoker) and/or "scheduler" (the Cloud Scheduler invoker)
  #   enqueues  queues the function's own service account may add tasks to
  #   bigquery  may run query jobs in this project (the Hubble path)
  #   env       variables on top of the shared environment (local.function_environment)
  # Memory, timeout, instances and concurrency come from var.function_sizing. Adding a function is
  # one more entry here, a function_sizing entry, its functions/<name> folder and its row in
  # docs/design.md; the tests fail until all four agree. The groups are literal maps so that
  # checkov can resolve the public set (CKV_STELLARMAP_3 fails closed on a computed one).
  function_definitions = {
    public = {
      search = { entry_point = "search", invokers = [], enqueues = ["lineage"], bigquery = false, env = {} }
      stats  = { entry_point = "stats", invokers = [], enqueues = [], bigquery = false, env = {} }
    }
    internal = {
      process_account = { entry_point = "process_account", invokers = ["tasks"], enqueues = ["lineage", "api-fallback"], bigquery = true, env = {} }
      api_fallback    = { entry_point = "api_fallback", invokers = ["tasks"], enqueues = ["lineage"], bigquery = false, env = {} }
      hva_recalc      = { entry_point = "hva_recalc", invokers = ["scheduler"], enqueues = [], bigquery = false, env = {} }
      reset_stale     = { entry_point = "reset_stale", invokers = ["scheduler"], enqueues = ["lineage", "api-fallback"], bigquery = false, env = {} }
      # The network-wide Hubble sync: the daily job plans it, its queue runs one range at a time.
      hubble_sync = { entry_point = "hubble_sync", invokers = ["tasks", "scheduler"], enqueues = ["hubble-sync"], bigquery = true, env = { HUBBLE_SYNC_BUDGET_USD = tostring(var.hubble_sync_budget_usd) } }
    }
    operator = {
      bulk_queue = { entry_point = "bulk_queue", invokers = [], enqueues = ["lineage"], bigquery = false, env = {} }
    }
  }

  # The typed map every function resource iterates: tomap() fails the plan when an entry lacks a
  # field or gives one another type; the function resource's preconditions check the values.
  functions = {
    for k, f in tomap(merge([
      for access, group in local.function_definitions : { for name, f in group : name => merge(f, { access = access }) }
    ]...)) :
    k => merge(f, var.function_sizing[k], { ingress = f.access == "internal" ? "ALLOW_INTERNAL_ONLY" : "ALLOW_ALL" })
  }

  # Cloud Run service names (a gen2 function is a Cloud Run service of the same name).
  service_names = { for k, f in local.functions : k => "${var.name_prefix}-${replace(k, "_", "-")}" }

  # Function URLs used inside the functions' environment. search needs process_account's URL,
  # process_account needs api_fallback's and api_fallback (children expansion) needs
  # process_account's: referencing google_cloudfunctions2_function.*.url there would be a
  # dependency cycle. Cloud Run gives every service a deterministic URL,
  # https://SERVICE-PROJECT_NUMBER.REGION.run.app, known before the service exists, so the
  # environment uses that form (a precondition checks the 63-character DNS label limit). It is a
  # run.app URL, which internal ingress admits for Cloud Tasks and Cloud Scheduler, and a valid
  # OIDC audience for the service.
  function_urls = {
    for k, name in local.service_names :
    k => "https://${name}-${data.google_project.this.number}.${var.region}.run.app"
  }

  # ---------------------------------------------------------------- queues
  # api-fallback: the upstream budget divided by the calls per task, for each upstream; the smaller
  # rate wins. A ceiling on task starts (the lightest task's Horizon calls, the mean Expert lookups;
  # common/queue/rates.py says why); the function's in-process limiter paces the calls themselves.
  # Same formula as common/queue/rates.py:api_fallback_limits, rounded down to 4 decimals so
  # rounding never lifts the rate above the budget.
  horizon_tasks_per_second = var.horizon_max_per_hour * var.upstream_rate_pct / 100 / 3600 / var.horizon_calls_per_task
  expert_tasks_per_second  = var.expert_max_per_minute * var.upstream_rate_pct / 100 / 60 / var.expert_calls_per_task
  api_fallback_rate        = floor(min(local.horizon_tasks_per_second, local.expert_tasks_per_second) * 10000) / 10000

  queues = {
    lineage = {
      name                      = "${var.name_prefix}-lineage"
      target                    = "process_account"
      max_dispatches_per_second = var.lineage_max_dispatches_per_second
      max_burst_size            = var.lineage_max_burst_size
      max_concurrent_dispatches = var.lineage_max_concurrent_dispatches
      slow_rate_reason          = ""
    }
    api-fallback = {
      name                      = "${var.name_prefix}-api-fallback"
      target                    = "api_fallback"
      max_dispatches_per_second = local.api_fallback_rate
      max_burst_size            = var.api_fallback_max_burst_size
      max_concurrent_dispatches = var.api_fallback_max_concurrent_dispatches
      slow_rate_reason          = var.api_fallback_slow_rate_reason
    }
    # One range at a time (docs/design.md): the sync's BigQuery spend and its bulk writes into the
    # store stay sequential, and a range's task never races the next one for the same partitions.
    hubble-sync = {
      name                      = "${var.name_prefix}-hubble-sync"
      target                    = "hubble_sync"
      max_dispatches_per_second = 1
      max_burst_size            = 1
      max_concurrent_dispatches = 1
      slow_rate_reason          = ""
    }
  }

  # ---------------------------------------------------------------- scheduled jobs
  schedules = {
    hva_recalc        = { target = "hva_recalc", schedule = var.hva_recalc_schedule, body = {}, networks = var.networks }
    reset_stale       = { target = "reset_stale", schedule = var.reset_stale_schedule, body = { dry_run = false }, networks = var.networks }
    hubble_sync_daily = { target = "hubble_sync", schedule = var.hubble_sync_schedule, body = { mode = "daily" }, networks = var.hubble_sync_networks }
  }

  # One job per (schedule, network); the function takes {"network": ...} in its JSON body.
  scheduler_jobs = merge([
    for job, s in local.schedules : {
      for network in s.networks :
      "${job}-${network}" => merge(s, { job = job, network = network })
    }
  ]...)

  # ---------------------------------------------------------------- environment
  cors_origins = join(",", concat([var.site_origin], var.extra_cors_origins))

  astra_bundle_mount = "/etc/secrets/astra"
  astra_bundle_file  = "secure-connect.zip"

  # Settings.from_env (common/config.py) and the adapters read these; docs/design.md lists them.
  function_env = {
    STELLARMAP_STORE         = "cassandra"
    CASSANDRA_KEYSPACE       = var.astra_keyspace
    ASTRA_SECURE_BUNDLE_PATH = "${local.astra_bundle_mount}/${local.astra_bundle_file}"
    STELLARMAP_QUEUE         = "cloudtasks"
    CLOUD_TASKS_PROJECT      = var.project
    CLOUD_TASKS_LOCATION     = var.region
    LINEAGE_QUEUE            = local.queues["lineage"].name
    API_FALLBACK_QUEUE       = local.queues["api-fallback"].name
    PROCESS_ACCOUNT_URL      = local.function_urls["process_account"]
    API_FALLBACK_URL         = local.function_urls["api_fallback"]
    TASKS_INVOKER_SA         = google_service_account.tasks_invoker.email
    CORS_ORIGINS             = local.cors_origins
    HUBBLE_ENGINE            = "bigquery"
    BIGQUERY_PROJECT         = var.project
    HUBBLE_DATASET           = var.hubble_dataset
    HUBBLE_DBT_DATASET       = var.hubble_dbt_dataset
    HORIZON_URL_PUBLIC       = var.horizon_url_public
    HORIZON_URL_TESTNET      = var.horizon_url_testnet
    EXPERT_URL               = var.expert_url
  }

  # search and stats are reached through Google's front end, which appends the caller's address to
  # X-Forwarded-For: their per-client limits key on it (docs/design.md, common/ratelimit_clients.py).
  public_function_env = merge(local.function_env, {
    SEARCH_TRUSTED_PROXY_HOPS               = tostring(var.trusted_proxy_hops)
    STATS_RATE_PER_MIN                      = tostring(var.stats_client_limits.rate_per_min)
    STATS_BURST                             = tostring(var.stats_client_limits.burst)
    STATS_EXPORT_RATE_PER_MIN               = tostring(var.stats_client_limits.export_rate_per_min)
    STATS_EXPORT_BURST                      = tostring(var.stats_client_limits.export_burst)
    STATS_MAX_CONCURRENT_EXPORTS            = tostring(var.stats_client_limits.max_concurrent_exports)
    STATS_MAX_CONCURRENT_EXPORTS_PER_CLIENT = tostring(var.stats_client_limits.max_concurrent_exports_per_client)
  })

  # Each function's environment: the shared one (with the front-end settings for public
  # functions), the sync queue's settings for a function that enqueues on it (both or neither,
  # common/queue/cloud_tasks.py), and its own `env`.
  function_environment = {
    for k, f in local.functions :
    k => merge(
      f.access == "public" ? local.public_function_env : local.function_env,
      contains(f.enqueues, "hubble-sync") ? local.sync_queue_env : {},
      f.env,
    )
  }
  sync_queue_env = {
    HUBBLE_SYNC_QUEUE = local.queues["hubble-sync"].name
    HUBBLE_SYNC_URL   = local.function_urls["hubble_sync"]
  }

  # Static site: every file but the generated config.js and the site's own docs and tests.
  site_files = toset([
    for f in fileset(local.site_dir, "**") : f
    if f != "config.js" && !startswith(f, ".") && !startswith(f, "tests/") && !startswith(f, "node_modules/") && !endswith(f, ".md")
  ])

  mime_types = {
    html  = "text/html; charset=utf-8"
    js    = "text/javascript; charset=utf-8"
    mjs   = "text/javascript; charset=utf-8"
    css   = "text/css; charset=utf-8"
    json  = "application/json"
    svg   = "image/svg+xml"
    png   = "image/png"
    ico   = "image/x-icon"
    txt   = "text/plain; charset=utf-8"
    woff2 = "font/woff2"
    map   = "application/json"
  }
}
