# The D3 site: a bucket that holds nothing but the site's files, readable by everyone. With uniform
# bucket-level access there are no per-object ACLs, and IAM conditions cannot narrow allUsers, so
# "public read only on the site objects" means a dedicated bucket: the function zips live in the
# private `sources` bucket (public access prevention enforced) and access logs in `access_logs`.

resource "google_storage_bucket" "access_logs" {
  #checkov:skip=CKV_GCP_62:This bucket is the access-log sink of the other two; logging it into itself is CKV_GCP_63's anti-pattern and into a fourth bucket only moves the question.
  name                        = "${var.project}-${var.name_prefix}-access-logs"
  location                    = var.site_location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_buckets

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age = 90
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

# Cloud Storage writes usage logs as this Google group; it needs to create objects in the sink.
resource "google_storage_bucket_iam_member" "access_logs_writer" {
  bucket = google_storage_bucket.access_logs.name
  role   = "roles/storage.objectCreator"
  member = "group:cloud-storage-analytics@google.com"
}

resource "google_storage_bucket" "site" {
  #checkov:skip=CKV_GCP_114:The site bucket serves the public D3 site, so public access prevention cannot be enforced on it; it holds only the site's files (sources and logs are in private buckets).
  name                        = "${var.project}-${var.name_prefix}-site"
  location                    = var.site_location
  uniform_bucket_level_access = true
  public_access_prevention    = "inherited"
  force_destroy               = var.force_destroy_buckets

  versioning {
    enabled = true
  }

  website {
    main_page_suffix = "index.html"
    not_found_page   = "index.html"
  }

  logging {
    log_bucket = google_storage_bucket.access_logs.name
  }

  lifecycle_rule {
    condition {
      num_newer_versions = 10
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket_iam_member" "site_public_read" {
  #checkov:skip=CKV_GCP_28:Public read of the static site is the point of this bucket; it contains only the site's files (see the comment at the top of site.tf).
  bucket = google_storage_bucket.site.name
  role   = "roles/storage.objectViewer"
  member = "allUsers"
}

resource "google_storage_bucket_object" "site_file" {
  for_each      = local.site_files
  bucket        = google_storage_bucket.site.name
  name          = each.value
  source        = "${local.site_dir}/${each.value}"
  content_type  = lookup(local.mime_types, lower(reverse(split(".", each.value))[0]), "application/octet-stream")
  cache_control = "public, max-age=300"
}

# config.js points the site at the deployed functions (same shape as static_site/config.js).
resource "google_storage_bucket_object" "site_config" {
  bucket        = google_storage_bucket.site.name
  name          = "config.js"
  content_type  = "text/javascript; charset=utf-8"
  cache_control = "no-cache, max-age=0"
  content = templatefile("${path.module}/templates/config.js.tftpl", {
    config = jsonencode({
      searchUrl      = local.deployed_urls["search"]
      statsUrl       = local.deployed_urls["stats"]
      networks       = var.networks
      defaultNetwork = var.networks[0]
    })
  })
}
