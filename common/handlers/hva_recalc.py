"""hva_recalc (internal; Cloud Scheduler, hourly): HVA rankings and the stats maintenance.

POST JSON `{"network"?: "public"|"testnet"}` (both networks when absent). For each network and
configured threshold it ranks from the balance index, writes the standing-change events and the
new snapshot, and keeps `is_hva` right (common/hva.py). Then, as the hourly maintenance of the
stats read models: the pipeline counters' reconciliation (common/read_models/counters.py) and the
refresh of stale fan-out summaries (common/lineage_view/fanout.py), each in a bounded amount of work.

Every run records a cron health row (SUCCESS or FAILED). 200 when done; 503 when the run failed,
so the scheduler retries; 401/403 for callers that are not the scheduler.
"""
from __future__ import annotations

import datetime as dt
import logging
import time

from flask import Request

from common.domain import NETWORKS, CronRun, InvalidInput, as_utc, iso, validate_network
from common.http import error_response, internal_post_only, invalid_input_response, json_response, request_params, schema_gate_response
from common.deps import ScheduledDeps

log = logging.getLogger(__name__)
JOB = "hva_recalc"
SUMMARY_BUDGET_S = 20.0


def run(c: ScheduledDeps, networks: list[str], now: dt.datetime) -> dict:
    """One recalculation (the handler's work, callable from the CLI and benchmarks)."""
    from common.hva import recalc_network
    from common.lineage_view import fanout
    from common.read_models import counters

    config = c.pipeline_config()
    thresholds = [int(t) for t in config.hva_thresholds]
    rank_min = int(config["hva_rank_change_min"])
    results = [recalc_network(c.store, n, thresholds, rank_min, now).to_json() for n in networks]
    reconcile = counters.reconcile(c.store, now, networks)
    summaries = {n: fanout.refresh_stale(c.store, n, now, budget_s=SUMMARY_BUDGET_S / len(networks)) for n in networks}
    return {"networks": results, "events_written": sum(r["events_written"] for r in results), "reconcile": reconcile, "summaries": summaries}


def handle(request: Request, c: ScheduledDeps) -> object:
    refused = internal_post_only(request, c.settings.internal_token, 'use POST with JSON {"network"?: "public"|"testnet"}')
    if refused is not None:
        return refused
    try:
        params = request_params(request)
        unknown = set(params) - {"network"}
        if unknown:
            raise InvalidInput("unknown_parameter", f"unknown parameter(s): {', '.join(sorted(unknown))}")
        networks = [validate_network(params["network"])] if params.get("network") is not None else list(NETWORKS)
    except InvalidInput as exc:
        return invalid_input_response(exc)
    refused = schema_gate_response(c.schema_gate, retry_after_s=60)
    if refused is not None:
        return refused
    now = as_utc(c.clock.now())
    t0 = time.monotonic()
    try:
        report = run(c, networks, now)
    except Exception as exc:  # noqa: BLE001 - recorded, then 503 so the scheduler retries
        log.exception("hva_recalc failed")
        error = f"{type(exc).__name__}: {exc}"[:500]
        try:
            c.store.record_cron_run(CronRun(JOB, now, "FAILED", int((time.monotonic() - t0) * 1000), {"networks": networks, "error": error}))
        except Exception:  # noqa: BLE001 - the store itself may be what failed
            log.exception("could not record the failed hva_recalc run")
        return error_response("recalc_failed", f"hva_recalc failed: {error}", 503, headers={"Retry-After": "60"})
    duration_ms = int((time.monotonic() - t0) * 1000)
    summary = {
        "networks": networks,
        "events_written": report["events_written"],
        "per_network": {r["network"]: {"accounts_read": r["accounts_read"], "events": r["events_written"], "hva": r["hva_accounts"]} for r in report["networks"]},
    }
    c.store.record_cron_run(CronRun(JOB, now, "SUCCESS", duration_ms, summary))
    return json_response({"status": "ok", "run_at": iso(now), "duration_ms": duration_ms, **report})
