output "function_urls" {
  description = "URL of every function, by functions/ folder name."
  value       = local.deployed_urls
}

output "search_url" {
  description = "Public search endpoint."
  value       = local.deployed_urls["search"]
}

output "stats_url" {
  description = "Public stats endpoint."
  value       = local.deployed_urls["stats"]
}

output "site_url" {
  description = "The D3 site."
  value       = "https://storage.googleapis.com/${google_storage_bucket.site.name}/index.html"
}

output "queue_names" {
  description = "Cloud Tasks queue names, by role."
  value       = { for k, q in google_cloud_tasks_queue.queue : k => q.name }
}

output "queue_rate_limits" {
  description = "Rate limits Terraform set (and the burst Cloud Tasks picked), by queue."
  value = {
    for k, q in local.queues : k => {
      max_dispatches_per_second = q.max_dispatches_per_second
      max_concurrent_dispatches = q.max_concurrent_dispatches
      intended_max_burst_size   = q.max_burst_size
      actual_max_burst_size     = try(google_cloud_tasks_queue.queue[k].rate_limits[0].max_burst_size, null)
    }
  }
}

output "scheduler_jobs" {
  description = "Cloud Scheduler job names (pause or run them with `stellarmap jobs` or gcloud)."
  value       = [for j in google_cloud_scheduler_job.job : j.name]
}

output "service_accounts" {
  description = "Service account emails, by role."
  value = merge(
    { for k, sa in google_service_account.function : "function:${k}" => sa.email },
    {
      tasks_invoker     = google_service_account.tasks_invoker.email
      scheduler_invoker = google_service_account.scheduler_invoker.email
      builder           = google_service_account.builder.email
    },
  )
}
