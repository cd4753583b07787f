"""CKV_STELLARMAP_1: every Cloud Tasks queue sets bounded rate limits.

max_dispatches_per_second must resolve to a number in (0, 500] and max_concurrent_dispatches to
an integer in [1, 5000] (Cloud Tasks' own bounds); a queue left at Cloud Tasks' defaults would not
throttle the API fallback. A rate below one task per second is allowed only when the resource
carries a lifecycle precondition that demands a stated reason (`slow_rate_reason`).
"""
from __future__ import annotations

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from _values import block, first, number, text


class QueueRateLimits(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Cloud Tasks queue sets max_dispatches_per_second and max_concurrent_dispatches within bounds",
            id="CKV_STELLARMAP_1",
            categories=[CheckCategories.GENERAL_SECURITY],
            supported_resources=["google_cloud_tasks_queue"],
        )

    def scan_resource_conf(self, conf: dict) -> CheckResult:
        limits = block(conf, "rate_limits")
        if limits is None:
            return CheckResult.FAILED
        rate = number(first(limits, "max_dispatches_per_second"))
        concurrent = number(first(limits, "max_concurrent_dispatches"))
        if rate is None or concurrent is None:
            return CheckResult.FAILED
        if not (0 < rate <= 500) or not (1 <= concurrent <= 5000) or concurrent != int(concurrent):
            return CheckResult.FAILED
        if rate < 1:
            lifecycle = block(conf, "lifecycle") or {}
            if "slow_rate_reason" not in text(lifecycle.get("precondition", [])):
                return CheckResult.FAILED
        return CheckResult.PASSED


check = QueueRateLimits()
