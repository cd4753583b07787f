"""`stellarmap jobs run|pause|resume JOB`: Cloud Scheduler operator commands (google-cloud-scheduler).

Job ids follow terraform/scheduler.tf: `{prefix}-{job with dashes}-{network}`.
"""
from __future__ import annotations

import dataclasses

from common.config import setting

JOBS = ("hva_recalc", "reset_stale", "hubble_sync_daily")  # terraform/locals.tf local.schedules
NETWORKS = ("public", "testnet")


@dataclasses.dataclass(frozen=True)
class SchedulerTarget:
    project: str
    location: str
    prefix: str = "stellarmap"
    api_endpoint: str | None = None  # a local server speaking the REST API (tests, demo)

    @classmethod
    def from_env(cls, project=None, location=None, prefix=None, api_endpoint=None) -> "SchedulerTarget":
        project = project or setting("CLOUD_SCHEDULER_PROJECT", None, None) or setting("CLOUD_TASKS_PROJECT")
        location = location or setting("CLOUD_SCHEDULER_LOCATION", None, None) or setting("CLOUD_TASKS_LOCATION")
        return cls(
            project=project,
            location=location,
            prefix=prefix or setting("STELLARMAP_NAME_PREFIX", None, "stellarmap"),
            api_endpoint=api_endpoint or setting("CLOUD_SCHEDULER_ENDPOINT", None, None),
        )

    def job_name(self, job: str, network: str) -> str:
        return f"projects/{self.project}/locations/{self.location}/jobs/{self.prefix}-{job.replace('_', '-')}-{network}"


def client(target: SchedulerTarget):
    from google.cloud import scheduler_v1

    if target.api_endpoint:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        return scheduler_v1.CloudSchedulerClient(
            transport="rest", client_options=ClientOptions(api_endpoint=target.api_endpoint), credentials=AnonymousCredentials()
        )
    return scheduler_v1.CloudSchedulerClient()


def act(target: SchedulerTarget, action: str, job: str, networks: tuple[str, ...]) -> list[tuple[str, str]]:
    """Run, pause or resume the job for each network; returns (job name, state after)."""
    if action not in ("run", "pause", "resume"):
        raise ValueError(f"unknown action {action!r}: run, pause or resume")
    if job not in JOBS:
        raise ValueError(f"unknown job {job!r}: {', '.join(JOBS)}")
    api = client(target)
    out = []
    for network in networks:
        name = target.job_name(job, network)
        call = {"run": api.run_job, "pause": api.pause_job, "resume": api.resume_job}[action]
        result = call(name=name)
        out.append((name, result.state.name))
    return out
