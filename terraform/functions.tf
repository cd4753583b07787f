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
# Shared parts of both function resources below.
locals {
  function_secret_env = [{
    key     = "ASTRA_TOKEN"
    secret  = var.astra_token_secret_id
    version = var.astra_token_secret_version
  }]
}

# search and stats: internet ingress, public invoker (iam.tf), CORS limited to the site origin.
resource "google_cloudfunctions2_function" "public" {
  #checkov:skip=CKV_GCP_124:search and stats are the public API the D3 site calls from browsers; they need ALLOW_ALL ingress. Internal functions are the separate google_cloudfunctions2_function.internal resource with ALLOW_INTERNAL_ONLY.
  for_each    = local.public_functions
  name        = local.service_names[each.key]
  location    = var.region
  description = "StellarMap ${each.key} (public)"

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
    available_memory                 = var.function_sizing[each.key].memory
    timeout_seconds                  = var.function_sizing[each.key].timeout_seconds
    min_instance_count               = var.function_sizing[each.key].min_instances
    max_instance_count               = var.function_sizing[each.key].max_instances
    max_instance_request_concurrency = var.function_sizing[each.key].concurrency
    available_cpu                    = var.function_sizing[each.key].concurrency > 1 ? "1" : null
    ingress_settings                 = "ALLOW_ALL"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.function[each.key].email
    environment_variables            = local.public_function_env

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
  }

  depends_on = [
    google_secret_manager_secret_iam_member.token_accessor,
    google_secret_manager_secret_iam_member.bundle_accessor,
    google_project_iam_member.builder,
    google_artifact_registry_repository_iam_member.builder,
    google_storage_bucket_iam_member.builder_reads_sources,
  ]
}

# process_account, api_fallback, hva_recalc, reset_stale: internal ingress only; only the Cloud
# Tasks and Cloud Scheduler invoker service accounts hold run.invoker on them (iam.tf).
resource "google_cloudfunctions2_function" "internal" {
  for_each    = local.internal_functions
  name        = local.service_names[each.key]
  location    = var.region
  description = "StellarMap ${each.key} (internal)"

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
    available_memory                 = var.function_sizing[each.key].memory
    timeout_seconds                  = var.function_sizing[each.key].timeout_seconds
    min_instance_count               = var.function_sizing[each.key].min_instances
    max_instance_count               = var.function_sizing[each.key].max_instances
    max_instance_request_concurrency = var.function_sizing[each.key].concurrency
    available_cpu                    = var.function_sizing[each.key].concurrency > 1 ? "1" : null
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.function[each.key].email
    environment_variables            = local.function_env

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
  }

  depends_on = [
    google_secret_manager_secret_iam_member.token_accessor,
    google_secret_manager_secret_iam_member.bundle_accessor,
    google_project_iam_member.builder,
    google_artifact_registry_repository_iam_member.builder,
    google_storage_bucket_iam_member.builder_reads_sources,
  ]
}

# bulk_queue (operator functions): operators call it from their terminals with an identity token,
# so ingress admits the internet; run.invoker is held only by var.operator_members (iam.tf).
resource "google_cloudfunctions2_function" "operator" {
  #checkov:skip=CKV_GCP_124:Operator endpoints are called from operators' terminals over the internet; only var.operator_members hold run.invoker (never allUsers, CKV_STELLARMAP_3). Queue and scheduler targets are google_cloudfunctions2_function.internal with ALLOW_INTERNAL_ONLY.
  for_each    = local.operator_functions
  name        = local.service_names[each.key]
  location    = var.region
  description = "StellarMap ${each.key} (operators)"

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
    available_memory                 = var.function_sizing[each.key].memory
    timeout_seconds                  = var.function_sizing[each.key].timeout_seconds
    min_instance_count               = var.function_sizing[each.key].min_instances
    max_instance_count               = var.function_sizing[each.key].max_instances
    max_instance_request_concurrency = var.function_sizing[each.key].concurrency
    available_cpu                    = var.function_sizing[each.key].concurrency > 1 ? "1" : null
    ingress_settings                 = "ALLOW_ALL"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.function[each.key].email
    environment_variables            = local.function_env

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
  }

  depends_on = [
    google_secret_manager_secret_iam_member.token_accessor,
    google_secret_manager_secret_iam_member.bundle_accessor,
    google_project_iam_member.builder,
    google_artifact_registry_repository_iam_member.builder,
    google_storage_bucket_iam_member.builder_reads_sources,
  ]
}

locals {
  # Every function resource instance by folder name, and the URL Cloud Run reports for it.
  function_resources = merge(
    google_cloudfunctions2_function.public,
    google_cloudfunctions2_function.internal,
    google_cloudfunctions2_function.operator,
  )
  deployed_urls = { for k, f in local.function_resources : k => f.service_config[0].uri }
}
