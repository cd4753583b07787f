# hva_recalc (hourly) and reset_stale (every 15 minutes) per network, and the daily Hubble sync
# (hubble-sync-daily, {"network", "mode": "daily"}) per var.hubble_sync_networks, called with an
# OIDC token of the scheduler invoker, which holds run.invoker on those three functions.
resource "google_cloud_scheduler_job" "job" {
  for_each         = local.scheduler_jobs
  name             = "${var.name_prefix}-${replace(each.value.job, "_", "-")}-${each.value.network}"
  description      = "StellarMap ${each.value.job} for the ${each.value.network} network"
  region           = var.region
  schedule         = each.value.schedule
  time_zone        = var.schedule_time_zone
  attempt_deadline = "${min(local.functions[each.value.target].timeout_seconds, 1800)}s"

  retry_config {
    retry_count          = var.scheduler_retry_count
    min_backoff_duration = "30s"
    max_backoff_duration = "600s"
    max_doublings        = 3
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.function[each.value.target].service_config[0].uri
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode(jsonencode(merge(each.value.body, { network = each.value.network })))

    oidc_token {
      service_account_email = google_service_account.scheduler_invoker.email
      audience              = google_cloudfunctions2_function.function[each.value.target].service_config[0].uri
    }
  }

  lifecycle {
    precondition {
      condition     = contains(var.networks, each.value.network)
      error_message = "Job ${each.key}: network ${each.value.network} is not served (var.networks)."
    }
  }

  depends_on = [google_cloud_run_v2_service_iam_binding.internal_invoker]
}
