# Every input has a type and a default, so `terraform plan -var project=ID` is a complete command.
# The defaults mirror common/config.py and common/queue/rates.py; tests/unit/test_terraform_consistency.py
# fails when the two drift apart.

# ------------------------------------------------------------------ where
variable "project" {
  description = "GCP project id that hosts StellarMap."
  type        = string
  default     = "stellarmap-prod"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project))
    error_message = "project must be a GCP project id (6-30 lowercase letters, digits or hyphens)."
  }
}

variable "region" {
  description = "Region of the functions, queues, scheduler jobs and Artifact Registry repository."
  type        = string
  default     = "us-central1"
}

variable "name_prefix" {
  description = "Prefix of every resource name. At most 13 characters so that service account ids (max 30) fit."
  type        = string
  default     = "stellarmap"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,12}$", var.name_prefix))
    error_message = "name_prefix must be 2-13 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "site_location" {
  description = "Location of the static-site, function-source and access-log buckets."
  type        = string
  default     = "US"
}

variable "networks" {
  description = "Stellar networks served; the scheduled jobs run once per network."
  type        = list(string)
  default     = ["public", "testnet"]

  validation {
    condition     = length(var.networks) > 0 && alltrue([for n in var.networks : contains(["public", "testnet"], n)])
    error_message = "networks must be a non-empty subset of [\"public\", \"testnet\"] (common.domain.NETWORKS)."
  }
}

# ------------------------------------------------------------------ Astra DB (Cassandra)
variable "astra_keyspace" {
  description = "Keyspace of the Astra database (created in the Astra console; migrations never create keyspaces)."
  type        = string
  default     = "stellarmap"
}

variable "astra_token_secret_id" {
  description = "Secret Manager secret id holding the Astra application token (AstraCS:...). Created by the operator, never by Terraform, so the token never enters the state."
  type        = string
  default     = "stellarmap-astra-token"
}

variable "astra_token_secret_version" {
  description = "Version of the token secret exposed as ASTRA_TOKEN. A number pins it; new instances read 'latest'."
  type        = string
  default     = "latest"
}

variable "astra_bundle_secret_id" {
  description = "Secret Manager secret id holding the Astra secure-connect bundle (the zip, uploaded as binary data). Mounted as a file."
  type        = string
  default     = "stellarmap-astra-bundle"
}

variable "astra_bundle_secret_version" {
  description = "Version of the secure-connect bundle secret mounted into the functions."
  type        = string
  default     = "latest"
}

# ------------------------------------------------------------------ Hubble (BigQuery)
variable "hubble_dataset" {
  description = "Stellar Hubble dataset (project.dataset) read by the BigQuery path."
  type        = string
  default     = "crypto-stellar.crypto_stellar"
}

variable "hubble_dbt_dataset" {
  description = "Stellar Hubble dbt dataset (project.dataset)."
  type        = string
  default     = "crypto-stellar.crypto_stellar_dbt"
}

# ------------------------------------------------------------------ upstream budgets and rates
variable "horizon_url_public" {
  description = "Horizon base URL for the public network."
  type        = string
  default     = "https://horizon.stellar.org"
}

variable "horizon_url_testnet" {
  description = "Horizon base URL for testnet."
  type        = string
  default     = "https://horizon-testnet.stellar.org"
}

variable "expert_url" {
  description = "Stellar Expert API base URL."
  type        = string
  default     = "https://api.stellar.expert"
}

variable "horizon_max_per_hour" {
  description = "Upstream budget: requests per hour public Horizon allows one client (its documented default per IP)."
  type        = number
  default     = 3600

  validation {
    condition     = var.horizon_max_per_hour > 0
    error_message = "horizon_max_per_hour must be positive."
  }
}

variable "expert_max_per_minute" {
  description = "Upstream budget: requests per minute we assume Stellar Expert tolerates (it publishes none)."
  type        = number
  default     = 50

  validation {
    condition     = var.expert_max_per_minute > 0
    error_message = "expert_max_per_minute must be positive."
  }
}

variable "upstream_rate_pct" {
  description = "Share (percent) of each upstream budget the api-fallback queue may use. Keep it equal to the run-time setting `stellarmap config set upstream_rate_pct`, which drives the in-process limiter."
  type        = number
  default     = 71

  validation {
    condition     = var.upstream_rate_pct > 0 && var.upstream_rate_pct <= 100
    error_message = "upstream_rate_pct must be in (0, 100]."
  }
}

variable "horizon_calls_per_task" {
  description = "Horizon requests of the lightest api_fallback task (an enrich task's one GET /accounts): the queue's rate is a ceiling that never binds before the in-process limiter does. common/queue/rates.py says how it was measured (bench/bench_api_pipeline.py)."
  type        = number
  default     = 1

  validation {
    condition     = var.horizon_calls_per_task > 0
    error_message = "horizon_calls_per_task must be positive."
  }
}

variable "expert_calls_per_task" {
  description = "Stellar Expert account lookups per api_fallback task, the measured mean (a lineage task of an account older than Horizon's history window makes 1, other tasks 0). common/queue/rates.py says how it was measured."
  type        = number
  default     = 0.4

  validation {
    condition     = var.expert_calls_per_task > 0
    error_message = "expert_calls_per_task must be positive."
  }
}

variable "api_fallback_max_concurrent_dispatches" {
  description = "Tasks of the api-fallback queue that may run at once: what the api_fallback function takes (function_sizing max_instances x concurrency; a test checks it)."
  type        = number
  default     = 4

  validation {
    condition     = var.api_fallback_max_concurrent_dispatches >= 1 && var.api_fallback_max_concurrent_dispatches <= 5000
    error_message = "api_fallback_max_concurrent_dispatches must be in [1, 5000]."
  }
}

variable "api_fallback_max_burst_size" {
  description = "Intended token-bucket size of the api-fallback queue. Cloud Tasks v2 picks max_burst_size itself (output only), so Terraform cannot set it: a check block warns after apply when the burst it picked exceeds this value."
  type        = number
  default     = 1
}

variable "api_fallback_slow_rate_reason" {
  description = "Why the api-fallback queue may dispatch fewer than one task per second. Required (non-empty) whenever the derived rate is below 1/s; a precondition on the queue enforces it."
  type        = string
  default     = "Public Horizon allows 3,600 requests/hour per IP. We use 71% of it and every api_fallback task makes at least one Horizon call, so the queue may start at most 3600 x 0.71 / 1 / 3600 = 0.71 tasks/s. Cloud Tasks accepts fractional rates; a faster queue would only make tasks wait in the function's upstream limiter."
}

variable "lineage_max_dispatches_per_second" {
  description = "Dispatch rate of the lineage queue (process_account: BigQuery path, guarded by the cost guard, no per-call upstream budget)."
  type        = number
  default     = 5

  validation {
    condition     = var.lineage_max_dispatches_per_second >= 1 && var.lineage_max_dispatches_per_second <= 500
    error_message = "lineage_max_dispatches_per_second must be in [1, 500]; it has no upstream budget that would justify less."
  }
}

variable "lineage_max_burst_size" {
  description = "Intended token-bucket size of the lineage queue (Cloud Tasks picks the real one; see api_fallback_max_burst_size)."
  type        = number
  default     = 10
}

variable "lineage_max_concurrent_dispatches" {
  description = "Tasks of the lineage queue that may run at once."
  type        = number
  default     = 10

  validation {
    condition     = var.lineage_max_concurrent_dispatches >= 1 && var.lineage_max_concurrent_dispatches <= 5000
    error_message = "lineage_max_concurrent_dispatches must be in [1, 5000]."
  }
}

variable "queue_retry" {
  description = "Retry policy of both queues: attempts per task and exponential backoff (seconds)."
  type = object({
    max_attempts    = number
    min_backoff_s   = number
    max_backoff_s   = number
    max_doublings   = number
    max_retry_hours = number
  })
  default = {
    max_attempts    = 10
    min_backoff_s   = 5
    max_backoff_s   = 600
    max_doublings   = 5
    max_retry_hours = 24
  }

  validation {
    condition = (
      var.queue_retry.max_attempts >= 1 && var.queue_retry.min_backoff_s > 0 &&
      var.queue_retry.max_backoff_s >= var.queue_retry.min_backoff_s && var.queue_retry.max_doublings >= 0
    )
    error_message = "queue_retry needs max_attempts >= 1 (finite), 0 < min_backoff_s <= max_backoff_s and max_doublings >= 0."
  }
}

# ------------------------------------------------------------------ schedules
variable "hva_recalc_schedule" {
  description = "Cron schedule of hva_recalc (default: hourly)."
  type        = string
  default     = "0 * * * *"
}

variable "reset_stale_schedule" {
  description = "Cron schedule of reset_stale (default: every 15 minutes)."
  type        = string
  default     = "*/15 * * * *"
}

variable "schedule_time_zone" {
  description = "Time zone the cron schedules are read in."
  type        = string
  default     = "Etc/UTC"
}

variable "hubble_sync_schedule" {
  description = "Cron schedule of the daily Hubble sync (hubble-sync-daily: the partitions since the last synced closed_at, with a day of overlap)."
  type        = string
  default     = "30 2 * * *"
}

variable "hubble_sync_networks" {
  description = "Networks the daily Hubble sync runs for. Testnet needs a Hubble testnet dataset (HUBBLE_TESTNET_DATASET), which the public Hubble does not have, so only public by default."
  type        = list(string)
  default     = ["public"]

  validation {
    condition     = alltrue([for n in var.hubble_sync_networks : contains(["public", "testnet"], n)])
    error_message = "hubble_sync_networks must be a subset of [\"public\", \"testnet\"] (common.domain.NETWORKS); [] runs no daily sync."
  }
}

variable "hubble_sync_budget_usd" {
  description = "Budget of one Hubble sync in USD (HUBBLE_SYNC_BUDGET_USD): a plan whose dry-run cost is above it is refused (409 sync_over_budget) before anything is spent. Separate from the per-account cost guard and the monthly budget, which still apply."
  type        = number
  default     = 5

  validation {
    # The spend ledger counts micro-dollars; above $1,000 a sync is almost surely a typo.
    condition     = var.hubble_sync_budget_usd > 0 && var.hubble_sync_budget_usd <= 1000 && floor(var.hubble_sync_budget_usd * 1000000) == var.hubble_sync_budget_usd * 1000000
    error_message = "hubble_sync_budget_usd must be in (0, 1000] with at most 6 decimals (micro-dollars)."
  }
}

variable "scheduler_retry_count" {
  description = "Retries of a failed scheduled call (Cloud Scheduler allows 0-5)."
  type        = number
  default     = 3

  validation {
    condition     = var.scheduler_retry_count >= 0 && var.scheduler_retry_count <= 5
    error_message = "scheduler_retry_count must be in [0, 5]."
  }
}

# ------------------------------------------------------------------ function sizing
variable "function_sizing" {
  description = "Memory, timeout and instance limits per function (keys are the functions/ folder names)."
  type = map(object({
    memory          = string
    timeout_seconds = number
    min_instances   = number
    max_instances   = number
    concurrency     = number
  }))
  # api_fallback: one instance, so its in-process limiter sees every upstream call (UPSTREAM_PROCESSES
  # stays 1), serving the api-fallback queue's 4 concurrent tasks (I/O bound: they wait on the limiter).
  default = {
    search          = { memory = "512M", timeout_seconds = 30, min_instances = 0, max_instances = 20, concurrency = 8 }
    stats           = { memory = "512M", timeout_seconds = 60, min_instances = 0, max_instances = 10, concurrency = 8 }
    process_account = { memory = "1Gi", timeout_seconds = 540, min_instances = 0, max_instances = 10, concurrency = 1 }
    api_fallback    = { memory = "512M", timeout_seconds = 540, min_instances = 0, max_instances = 1, concurrency = 4 }
    hva_recalc      = { memory = "1Gi", timeout_seconds = 900, min_instances = 0, max_instances = 1, concurrency = 1 }
    reset_stale     = { memory = "256M", timeout_seconds = 300, min_instances = 0, max_instances = 1, concurrency = 1 }
    bulk_queue      = { memory = "512M", timeout_seconds = 540, min_instances = 0, max_instances = 2, concurrency = 1 }
    # hubble_sync: one range task at a time (its queue) plus room for the daily plan call; a task near
    # its time budget continues in a new task (common/handlers/hubble_sync.py), so 540 s suffice.
    hubble_sync = { memory = "1Gi", timeout_seconds = 540, min_instances = 0, max_instances = 2, concurrency = 1 }
  }
}

# ------------------------------------------------------------------ per-client limits of the public functions
variable "trusted_proxy_hops" {
  description = "Proxies in front of the public functions that append the caller's address to X-Forwarded-For (SEARCH_TRUSTED_PROXY_HOPS). On GCP, Google's front end is one: the per-client limits key on the address it appends. 0 would key every caller on the front end itself (one bucket for everybody)."
  type        = number
  default     = 1

  validation {
    condition     = var.trusted_proxy_hops >= 0 && var.trusted_proxy_hops <= 10 && floor(var.trusted_proxy_hops) == var.trusted_proxy_hops
    error_message = "trusted_proxy_hops must be a whole number from 0 to 10."
  }
}

variable "stats_client_limits" {
  description = "Per-client limits of the stats function, per instance (common/read_models/limits.py): requests per minute and burst; exports (/account-lineage?format=...) per minute and burst; exports running at once per instance and per client."
  type = object({
    rate_per_min                      = number
    burst                             = number
    export_rate_per_min               = number
    export_burst                      = number
    max_concurrent_exports            = number
    max_concurrent_exports_per_client = number
  })
  default = {
    rate_per_min                      = 300
    burst                             = 100
    export_rate_per_min               = 6
    export_burst                      = 3
    max_concurrent_exports            = 2
    max_concurrent_exports_per_client = 1
  }

  validation {
    condition     = alltrue([for v in values(var.stats_client_limits) : v > 0])
    error_message = "Every stats_client_limits value must be > 0."
  }
}

variable "operator_members" {
  description = "IAM members allowed to invoke the operator functions (bulk_queue), e.g. [\"group:stellarmap-ops@example.com\"]. Empty: nobody can invoke them."
  type        = list(string)
  default     = []

  validation {
    condition = alltrue([
      for m in var.operator_members : can(regex("^(user|group|serviceAccount|domain):.+", m))
    ])
    error_message = "operator_members must be user:, group:, serviceAccount: or domain: members; allUsers and allAuthenticatedUsers are not allowed."
  }
}

# ------------------------------------------------------------------ static site and CORS
variable "site_origin" {
  description = "Origin the browser sends when the D3 site calls the API (CORS_ORIGINS of the public functions). The default is the origin of the site bucket's public URL; set your domain if you serve the site elsewhere."
  type        = string
  default     = "https://storage.googleapis.com"

  validation {
    condition     = can(regex("^https?://[^/]+$", var.site_origin))
    error_message = "site_origin must be an origin: scheme://host[:port], no path and no trailing slash."
  }
}

variable "extra_cors_origins" {
  description = "More origins allowed to call the public functions (for example a staging domain)."
  type        = list(string)
  default     = []
}

variable "site_dir" {
  description = "Folder of the static site, relative to this module."
  type        = string
  default     = "../static_site"
}

variable "force_destroy_buckets" {
  description = "Let `terraform destroy` delete non-empty buckets (only for throwaway environments)."
  type        = bool
  default     = false
}
