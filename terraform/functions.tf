# ------------------------------------------------------------------ packaging
# One zip per function: the function's own files at the root plus common/**/*.py under common/.
# `make package` (local/package.py) builds the same layout into terraform/build/ and
# tests/integration/test_package_zips.py serves every zip with functions-framework.
locals {
  function_files = {
    for k, f in local.functions :
    k => setunion(
      fileset("${local.functions_dir}/${k}", "**/*.py"),
      fileset("${local.functions_dir}/${k}", "requirements.txt"),
    )
  }
  common_files = fileset(local.common_dir, "**/*.py")
}

data "archive_file" "function" {
  for_each    = local.functions
  type        = "zip"
  output_path = "${path.module}/build/archive/${each.key}.zip"

  dynamic "source" {
    for_each = local.function_files[each.key]
    content {
      content  = file("${local.functions_dir}/${each.key}/${source.value}")
      filename = source.value
    }
  }

  dynamic "source" {
    for_each = local.common_files
    content {
      content  = file("${local.common_dir}/${source.value}")
      filename = "common/${source.value}"
    }
  }
}

# Private bucket for the zips. Objects are named by the zip's md5, so a changed zip is a new object
# and the function redeploys; an unchanged one is left alone.
resource "google_storage_bucket" "sources" {
  name                        = "${var.project}-${var.name_prefix}-sources"
  location                    = var.site_location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_buckets

  versioning {
    enabled = true
  }

  logging {
    log_bucket = google_storage_bucket.access_logs.name
  }

  # Replaced zips stay as noncurrent versions for 90 days: long enough to roll back by hand.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 90
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket_object" "function_zip" {
  for_each = local.functions
  name     = "functions/${each.key}-${data.archive_file.function[each.key].output_md5}.zip"
  bucket   = google_storage_bucket.sources.name
  source   = data.archive_file.function[each.key].output_path
}

# Images built from the zips. Our own repository, so the builder may write here and nowhere else.
resource "google_artifact_registry_repository" "functions" {
  #checkov:skip=CKV_GCP_84:Images hold only the public StellarMap code and its public dependencies; Google-managed encryption is enough and a CMEK would add a KMS key ring operators must run.
  location      = var.region
  repository_id = "${var.name_prefix}-functions"
  format        = "DOCKER"
  description   = "Images Cloud Build makes from the StellarMap function zips."

  depends_on = [google_project_service.apis]
}

# ------------------------------------------------------------------ functions
locals {
  function_secret_env = [{
    key     = "ASTRA_TOKEN"
    secret  = var.astra_token_secret_id
    version = var.astra_token_secret_version
  }]
  function_kind_words = { public = "public", internal = "internal", operator = "operators" }
}

# Every function of local.functions (locals.tf): ingress, environment and sizing come from its entry.
# Who may invoke it is iam.tf's business (allUsers for public, the invokers for internal,
# var.operator_members for operator functions).
resource "google_cloudfunctions2_function" "function" {
  #checkov:skip=CKV_GCP_124:Only the public (search, stats) and operator (bulk_queue) instances have ALLOW_ALL ingress: the site calls the public API from browsers and operators call theirs from terminals (run.invoker: var.operator_members only, CKV_STELLARMAP_3). Every internal instance, the only queue and scheduler targets, has ALLOW_INTERNAL_ONLY (local.functions[*].ingress; tests/unit/test_terraform_consistency.py).
  for_each    = local.functions
  name        = local.service_names[each.key]
  location    = var.region
  description = "StellarMap ${each.key} (${local.function_kind_words[each.value.access]})"

  build_config {
    runtime           = "python311"
    entry_point       = each.value.entry_point
    service_account   = google_service_account.builder.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.function_zip[each.key].name
      }
    }
  }

  service_config {
    available_memory                 = each.value.memory
    timeout_seconds                  = each.value.timeout_seconds
    min_instance_count               = each.value.min_instances
    max_instance_count               = each.value.max_instances
    max_instance_request_concurrency = each.value.concurrency
    available_cpu                    = each.value.concurrency > 1 ? "1" : null
    ingress_settings                 = each.value.ingress
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.function[each.key].email
    environment_variables            = local.function_environment[each.key]

    dynamic "secret_environment_variables" {
      for_each = local.function_secret_env
      content {
        key        = secret_environment_variables.value.key
        project_id = var.project
        secret     = secret_environment_variables.value.secret
        version    = secret_environment_variables.value.version
      }
    }

    secret_volumes {
      mount_path = local.astra_bundle_mount
      project_id = var.project
      secret     = var.astra_bundle_secret_id
      versions {
        version = var.astra_bundle_secret_version
        path    = local.astra_bundle_file
      }
    }
  }

  lifecycle {
    precondition {
      condition     = length("${local.service_names[each.key]}-${data.google_project.this.number}") <= 63
      error_message = "Service name plus project number exceed the 63-character DNS label of Cloud Run's deterministic URL; shorten name_prefix."
    }
    precondition {
      condition     = length(local.functions) == sum([for group in local.function_definitions : length(group)])
      error_message = "A function name appears in two access groups of local.function_definitions."
    }
    precondition {
      condition     = contains(["public", "internal", "operator"], each.value.access)
      error_message = "Function ${each.key}: access must be public, internal or operator."
    }
    precondition {
      # An internal function nobody may invoke is dead; a public or operator one needs no invoker account.
      condition = (
        alltrue([for who in each.value.invokers : contains(["tasks", "scheduler"], who)]) &&
        (each.value.access == "internal") == (length(each.value.invokers) > 0)
      )
      error_message = "Function ${each.key}: invokers must be tasks and/or scheduler, given for internal functions only (and for every one of them)."
    }
    precondition {
      condition     = each.value.access != "public" || contains(["search", "stats"], each.key)
      error_message = "Function ${each.key}: only search and stats may be public (docs/design.md, CKV_STELLARMAP_3)."
    }
  }

  depends_on = [
    google_secret_manager_secret_iam_member.token_accessor,
    google_secret_manager_secret_iam_member.bundle_accessor,
    google_project_iam_member.builder,
    google_artifact_registry_repository_iam_member.builder,
    google_storage_bucket_iam_member.builder_reads_sources,
  ]
}

# The functions used to be three resources (public, internal, operator); these keep the deployed
# instances instead of replacing them. Safe to delete once every deployment has applied them.
moved {
  from = google_cloudfunctions2_function.public["search"]
  to   = google_cloudfunctions2_function.function["search"]
}
moved {
  from = google_cloudfunctions2_function.public["stats"]
  to   = google_cloudfunctions2_function.function["stats"]
}
moved {
  from = google_cloudfunctions2_function.internal["process_account"]
  to   = google_cloudfunctions2_function.function["process_account"]
}
moved {
  from = google_cloudfunctions2_function.internal["api_fallback"]
  to   = google_cloudfunctions2_function.function["api_fallback"]
}
moved {
  from = google_cloudfunctions2_function.internal["hva_recalc"]
  to   = google_cloudfunctions2_function.function["hva_recalc"]
}
moved {
  from = google_cloudfunctions2_function.internal["reset_stale"]
  to   = google_cloudfunctions2_function.function["reset_stale"]
}
moved {
  from = google_cloudfunctions2_function.operator["bulk_queue"]
  to   = google_cloudfunctions2_function.function["bulk_queue"]
}

locals {
  # The URL Cloud Run reports for every function, by folder name.
  deployed_urls = { for k, f in google_cloudfunctions2_function.function : k => f.service_config[0].uri }
}
