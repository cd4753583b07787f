"""CKV_STELLARMAP_5: StellarMap's IAM grants stay inside an allowlist.

- project level: only roles/bigquery.jobUser (queries bill to a project) and
  roles/logging.logWriter (the image builder); never an authoritative project policy;
- on a service account: only roles/iam.serviceAccountUser (enqueue tasks that carry the tasks
  invoker's OIDC token), never token creator or admin;
- on a queue: only roles/cloudtasks.enqueuer;
- on a secret: only roles/secretmanager.secretAccessor;
- on a bucket: only roles/storage.objectViewer (the site's public read, the builder reading the
  zips) and roles/storage.objectCreator (Cloud Storage writing usage logs).
"""
from __future__ import annotations

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from _values import first

ALLOWED_ROLES = {
    "google_project_iam_member": {"roles/bigquery.jobUser", "roles/logging.logWriter"},
    "google_project_iam_binding": {"roles/bigquery.jobUser", "roles/logging.logWriter"},
    "google_project_iam_policy": set(),
    "google_service_account_iam_member": {"roles/iam.serviceAccountUser"},
    "google_service_account_iam_binding": {"roles/iam.serviceAccountUser"},
    "google_service_account_iam_policy": set(),
    "google_cloud_tasks_queue_iam_member": {"roles/cloudtasks.enqueuer"},
    "google_cloud_tasks_queue_iam_binding": {"roles/cloudtasks.enqueuer"},
    "google_cloud_tasks_queue_iam_policy": set(),
    "google_secret_manager_secret_iam_member": {"roles/secretmanager.secretAccessor"},
    "google_secret_manager_secret_iam_binding": {"roles/secretmanager.secretAccessor"},
    "google_secret_manager_secret_iam_policy": set(),
    "google_storage_bucket_iam_member": {"roles/storage.objectViewer", "roles/storage.objectCreator"},
    "google_storage_bucket_iam_binding": {"roles/storage.objectViewer", "roles/storage.objectCreator"},
    "google_storage_bucket_iam_policy": set(),
}


class LeastPrivilegeIam(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Project, service-account, queue, secret and bucket IAM grants use only StellarMap's allowlisted roles",
            id="CKV_STELLARMAP_5",
            categories=[CheckCategories.IAM],
            supported_resources=list(ALLOWED_ROLES),
        )

    def scan_resource_conf(self, conf: dict) -> CheckResult:
        allowed = ALLOWED_ROLES.get(self.entity_type, set())
        role = first(conf, "role")
        return CheckResult.PASSED if role in allowed else CheckResult.FAILED


check = LeastPrivilegeIam()
