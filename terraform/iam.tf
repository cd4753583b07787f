# Service accounts, one per role, each granted only what that role does:
#   function[<name>]  runtime identity of one function: read the two Astra secrets; enqueue on the
#                     queues it feeds and act as the tasks invoker (to sign the tasks' OIDC tokens);
#                     run BigQuery jobs only where `bigquery = true` (process_account).
#   tasks_invoker     the identity Cloud Tasks presents to process_account and api_fallback.
#   scheduler_invoker the identity Cloud Scheduler presents to hva_recalc and reset_stale.
#   builder           Cloud Build for the function images: read the zips, write our repository, log.
# No role is granted at project level except bigquery.jobUser (queries can only be billed to a
# project) and the builder's logging.logWriter; the checkov policy CKV_STELLARMAP_5 enforces that.

resource "google_project_service" "apis" {
  for_each = toset([
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudscheduler.googleapis.com",
    "cloudtasks.googleapis.com",
    "iam.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ])
  project            = var.project
  service            = each.value
  disable_on_destroy = false
}

resource "google_service_account" "function" {
  for_each     = local.functions
  account_id   = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  display_name = "StellarMap ${each.key} function"
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "tasks_invoker" {
  account_id   = "${var.name_prefix}-tasks"
  display_name = "StellarMap Cloud Tasks invoker (OIDC identity of queued calls)"
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "scheduler_invoker" {
  account_id   = "${var.name_prefix}-scheduler"
  display_name = "StellarMap Cloud Scheduler invoker (OIDC identity of scheduled calls)"
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "builder" {
  account_id   = "${var.name_prefix}-builder"
  display_name = "StellarMap Cloud Build identity for function images"
  depends_on   = [google_project_service.apis]
}

locals {
  invoker_members = {
    tasks     = "serviceAccount:${google_service_account.tasks_invoker.email}"
    scheduler = "serviceAccount:${google_service_account.scheduler_invoker.email}"
  }

  # (function, queue) pairs: the function's service account may enqueue on that queue.
  enqueue_grants = merge([
    for k, f in local.functions : {
      for q in f.enqueues : "${k}/${q}" => { function = k, queue = q }
    }
  ]...)

  enqueuing_functions = toset([for k, f in local.functions : k if length(f.enqueues) > 0])
  bigquery_functions  = toset([for k, f in local.functions : k if f.bigquery])
}

# ------------------------------------------------------------------ secrets (read only, per secret)
resource "google_secret_manager_secret_iam_member" "token_accessor" {
  for_each  = local.functions
  project   = var.project
  secret_id = var.astra_token_secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.function[each.key].email}"
}

resource "google_secret_manager_secret_iam_member" "bundle_accessor" {
  for_each  = local.functions
  project   = var.project
  secret_id = var.astra_bundle_secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.function[each.key].email}"
}

# ------------------------------------------------------------------ queues: enqueue + act as invoker
resource "google_cloud_tasks_queue_iam_member" "enqueuer" {
  for_each = local.enqueue_grants
  project  = var.project
  location = var.region
  name     = google_cloud_tasks_queue.queue[each.value.queue].name
  role     = "roles/cloudtasks.enqueuer"
  member   = "serviceAccount:${google_service_account.function[each.value.function].email}"
}

# Creating a task whose OIDC token is signed for tasks_invoker needs actAs on that one account.
resource "google_service_account_iam_member" "act_as_tasks_invoker" {
  for_each           = local.enqueuing_functions
  service_account_id = google_service_account.tasks_invoker.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.function[each.key].email}"
}

# ------------------------------------------------------------------ BigQuery jobs (Hubble path)
resource "google_project_iam_member" "bigquery_job_user" {
  for_each = local.bigquery_functions
  project  = var.project
  role     = "roles/bigquery.jobUser"
  member   = "serviceAccount:${google_service_account.function[each.key].email}"
}

# ------------------------------------------------------------------ invokers
# A gen2 function is invoked through its Cloud Run service, so the invoker role is run.invoker on
# that service. The bindings are authoritative: any other run.invoker member added by hand (say
# allUsers from the console) is removed on the next apply.
#
# Internal functions: only the tasks / scheduler service accounts named in `invokers`.
resource "google_cloud_run_v2_service_iam_binding" "internal_invoker" {
  for_each = local.function_definitions.internal
  project  = var.project
  location = var.region
  name     = google_cloudfunctions2_function.function[each.key].name
  role     = "roles/run.invoker"
  members  = [for who in each.value.invokers : local.invoker_members[who]]
}

# Public functions: anyone may call search and stats (the site runs in visitors' browsers). They
# validate input and rate-limit per client; CKV_STELLARMAP_3 fails any allUsers grant elsewhere.
resource "google_cloud_run_v2_service_iam_binding" "public_invoker" {
  for_each = local.function_definitions.public
  project  = var.project
  location = var.region
  name     = google_cloudfunctions2_function.function[each.key].name
  role     = "roles/run.invoker"
  members  = ["allUsers"]
}

# Operator functions: only the members listed in var.operator_members (no binding without them).
resource "google_cloud_run_v2_service_iam_binding" "operator_invoker" {
  for_each = length(var.operator_members) > 0 ? local.function_definitions.operator : {}
  project  = var.project
  location = var.region
  name     = google_cloudfunctions2_function.function[each.key].name
  role     = "roles/run.invoker"
  members  = var.operator_members
}

# ------------------------------------------------------------------ builder
resource "google_project_iam_member" "builder" {
  project = var.project
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.builder.email}"
}

resource "google_artifact_registry_repository_iam_member" "builder" {
  project    = var.project
  location   = var.region
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.builder.email}"
}

resource "google_storage_bucket_iam_member" "builder_reads_sources" {
  bucket = google_storage_bucket.sources.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.builder.email}"
}
