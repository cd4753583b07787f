"""CKV_STELLARMAP_2: every Cloud Tasks queue has an explicit, finite retry policy.

retry_config must set max_attempts (1..100, never -1 = unlimited), min_backoff <= max_backoff
(durations such as "5s") and max_doublings >= 0, so that a 429/503 from api_fallback backs off
instead of hammering the upstreams, and a poison task ends.
"""
from __future__ import annotations

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from _values import block, duration_seconds, first, number


class QueueRetry(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Cloud Tasks queue sets a finite retry_config with exponential backoff",
            id="CKV_STELLARMAP_2",
            categories=[CheckCategories.GENERAL_SECURITY],
            supported_resources=["google_cloud_tasks_queue"],
        )

    def scan_resource_conf(self, conf: dict) -> CheckResult:
        retry = block(conf, "retry_config")
        if retry is None:
            return CheckResult.FAILED
        attempts = number(first(retry, "max_attempts"))
        doublings = number(first(retry, "max_doublings"))
        min_backoff = duration_seconds(first(retry, "min_backoff"))
        max_backoff = duration_seconds(first(retry, "max_backoff"))
        if None in (attempts, doublings, min_backoff, max_backoff):
            return CheckResult.FAILED
        if not (1 <= attempts <= 100) or doublings < 0 or not (0 < min_backoff <= max_backoff):
            return CheckResult.FAILED
        return CheckResult.PASSED


check = QueueRetry()
