# Two Cloud Tasks queues. The api-fallback queue is what keeps the API pipeline inside the Horizon
# and Stellar Expert budgets (locals.tf derives its rate); the in-process limiter in common/ is the
# second guard, and a 429/503 from the function makes Cloud Tasks back off per retry_config.
#
# rate_limits.max_burst_size is output only in the Cloud Tasks v2 API (Cloud Tasks derives it
# from max_dispatches_per_second), so it cannot be set here. max_concurrent_dispatches bounds the
# in-flight tasks, and the check block below warns when the burst Cloud Tasks picked is larger
# than the intended one.
resource "google_cloud_tasks_queue" "queue" {
  for_each = local.queues
  name     = each.value.name
  location = var.region

  rate_limits {
    max_dispatches_per_second = each.value.max_dispatches_per_second
    max_concurrent_dispatches = each.value.max_concurrent_dispatches
  }

  retry_config {
    max_attempts       = var.queue_retry.max_attempts
    min_backoff        = "${var.queue_retry.min_backoff_s}s"
    max_backoff        = "${var.queue_retry.max_backoff_s}s"
    max_doublings      = var.queue_retry.max_doublings
    max_retry_duration = "${var.queue_retry.max_retry_hours * 3600}s"
  }

  # Queue-level target: whatever URL a task names, the queue sends it to its own function with an
  # OIDC token of the tasks invoker, so the queue can never carry that identity anywhere else.
  http_target {
    http_method = "POST"

    uri_override {
      scheme                    = "HTTPS"
      host                      = trimprefix(local.function_urls[each.value.target], "https://")
      uri_override_enforce_mode = "ALWAYS"
    }

    oidc_token {
      service_account_email = google_service_account.tasks_invoker.email
      audience              = local.function_urls[each.value.target]
    }
  }

  lifecycle {
    precondition {
      condition     = each.value.max_dispatches_per_second > 0 && each.value.max_dispatches_per_second <= 500
      error_message = "max_dispatches_per_second of queue ${each.key} must be in (0, 500] (Cloud Tasks' limit)."
    }
    precondition {
      # A rate below one task per second is legitimate (api-fallback at the public defaults is
      # 0.71/s) but must come with a stated reason.
      condition     = each.value.max_dispatches_per_second >= 1 || length(trimspace(each.value.slow_rate_reason)) > 0
      error_message = "Queue ${each.key} dispatches fewer than 1 task/s; state why in its slow_rate_reason variable."
    }
  }

  depends_on = [google_project_service.apis]
}

check "queue_burst_within_budget" {
  assert {
    condition = alltrue([
      for k, q in google_cloud_tasks_queue.queue :
      try(q.rate_limits[0].max_burst_size, 0) <= local.queues[k].max_burst_size
    ])
    error_message = "Cloud Tasks picked a max_burst_size above the intended burst for a queue; after an idle period that many tasks may start at once (max_concurrent_dispatches still bounds them)."
  }
}
