terraform {
  # check blocks need 1.5; nothing here needs a newer language feature.
  required_version = ">= 1.5.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "= 6.45.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = "= 2.7.1"
    }
  }
}

provider "google" {
  project = var.project
  region  = var.region
}
