"""CKV_STELLARMAP_4: Cloud Scheduler HTTP jobs authenticate with OIDC and retry.

An internal function accepts only callers with an OIDC token of an invoker service account, so an
HTTP job must carry http_target.oidc_token.service_account_email, and a retry_config with a
retry_count, so a failed hourly run is retried rather than lost.
"""
from __future__ import annotations

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from _values import block, first, number


class SchedulerJobs(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Cloud Scheduler HTTP job uses an OIDC token and a retry_config",
            id="CKV_STELLARMAP_4",
            categories=[CheckCategories.IAM],
            supported_resources=["google_cloud_scheduler_job"],
        )

    def scan_resource_conf(self, conf: dict) -> CheckResult:
        target = block(conf, "http_target")
        if target is None:
            return CheckResult.UNKNOWN
        oidc = block(target, "oidc_token")
        if oidc is None or not first(oidc, "service_account_email"):
            return CheckResult.FAILED
        retry = block(conf, "retry_config")
        if retry is None:
            return CheckResult.FAILED
        count = number(first(retry, "retry_count"))
        if count is None or not (0 <= count <= 5):
            return CheckResult.FAILED
        return CheckResult.PASSED


check = SchedulerJobs()
