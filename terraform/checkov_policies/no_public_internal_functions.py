"""CKV_STELLARMAP_3: allUsers / allAuthenticatedUsers may invoke search and stats only.

Any IAM resource that can grant invocation of a function (Cloud Run v1/v2 service IAM, Cloud
Functions v1/v2 IAM) and names a public principal must target a public function by a literal
key (`...["search"]`) and nothing else. A grant whose target cannot be resolved to public
functions fails: the policy fails closed.
"""
from __future__ import annotations

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from _values import PUBLIC_FUNCTIONS, PUBLIC_PRINCIPALS, first, referenced_keys, text

IAM_RESOURCES = [
    f"{base}_{kind}"
    for base in (
        "google_cloud_run_v2_service_iam",
        "google_cloud_run_service_iam",
        "google_cloudfunctions2_function_iam",
        "google_cloudfunctions_function_iam",
    )
    for kind in ("member", "binding", "policy")
]
TARGET_ATTRIBUTES = ("name", "service", "cloud_function")


class NoPublicInternalFunctions(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Only the public functions (search, stats) grant invocation to allUsers or allAuthenticatedUsers",
            id="CKV_STELLARMAP_3",
            categories=[CheckCategories.IAM],
            supported_resources=IAM_RESOURCES,
        )

    def scan_resource_conf(self, conf: dict) -> CheckResult:
        grants = text([conf.get("member"), conf.get("members"), conf.get("policy_data")])
        if not any(p in grants for p in PUBLIC_PRINCIPALS):
            return CheckResult.PASSED
        target = [first(conf, a) for a in TARGET_ATTRIBUTES if a in conf]
        target_text = text(target)
        keys = referenced_keys(target)
        if "internal" in target_text or "each." in target_text:
            return CheckResult.FAILED
        if keys and keys <= PUBLIC_FUNCTIONS:
            return CheckResult.PASSED
        return CheckResult.FAILED


check = NoPublicInternalFunctions()
