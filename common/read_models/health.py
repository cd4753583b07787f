"""`/health`: schema version, last cron runs, upstream rate limits, BigQuery spend, store reachability.

Every part is read independently: one failing part (the store down, a schema behind) is reported,
never turned into an error of the whole answer. `status` is "ok" only when every part is.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from common.domain import iso
from common.queue.rates import EXPERT_CALLS_PER_TASK, HORIZON_CALLS_PER_TASK, api_fallback_limits
from common.read_models.counters import RECONCILE_JOB
from common.deps import StatsDeps

# Scheduled jobs and how long each may go without a successful run before /health degrades.
CRON_JOBS = {"hva_recalc": dt.timedelta(hours=3), "reset_stale": dt.timedelta(hours=1), RECONCILE_JOB: dt.timedelta(hours=3)}


def _schema(c: StatsDeps) -> dict[str, Any]:
    from common.store.migrations import verify

    r = verify(c.store)
    return {
        "ok": r.ok,
        "applied": r.applied,
        "expected": r.expected,
        "missing_migrations": r.missing_migrations,
        "missing_columns": r.missing_columns,
    }


def _cron(c: StatsDeps, now: dt.datetime) -> tuple[dict[str, Any], bool]:
    out, ok = {}, True
    for job, max_gap in CRON_JOBS.items():
        runs = c.store.get_cron_runs(job, 1)
        if not runs:
            out[job] = {"last_run": None, "status": None, "duration_ms": None, "overdue": True}
            ok = False  # never ran: the scheduler is not wired (or not yet run) on this deployment
            continue
        last = runs[0]
        overdue = now - last.run_at > max_gap
        out[job] = {"last_run": iso(last.run_at), "status": last.status, "duration_ms": last.duration_ms, "overdue": overdue}
        ok = ok and last.status == "SUCCESS" and not overdue
    return out, ok


def _rate_limiters(config) -> dict[str, Any]:
    """The upstream budgets the api-fallback queue enforces (dispatch rate × calls per task).

    These are the configured figures: each function instance has its own in-process limiter, so
    the stats function cannot observe another process's counters; the queue's dispatch rate is
    the global guard (docs/architecture.md)."""
    pct = float(config["upstream_rate_pct"])
    horizon = float(config["horizon_max_per_hour"])
    expert = float(config["expert_max_per_minute"])
    q = api_fallback_limits(horizon, expert, pct)
    return {
        "horizon": {
            "max_per_hour": horizon,
            "allowed_per_hour": round(horizon * pct / 100, 2),
            "planned_per_hour": round(q.max_dispatches_per_second * HORIZON_CALLS_PER_TASK * 3600, 2),
        },
        "expert": {
            "max_per_minute": expert,
            "allowed_per_minute": round(expert * pct / 100, 2),
            "planned_per_minute": round(q.max_dispatches_per_second * EXPERT_CALLS_PER_TASK * 60, 2),
        },
        "api_fallback_queue": {
            "max_dispatches_per_second": q.max_dispatches_per_second,
            "max_burst_size": q.max_burst_size,
            "max_concurrent_dispatches": q.max_concurrent_dispatches,
        },
        "upstream_rate_pct": pct,
    }


def _bigquery(c: StatsDeps, config, now: dt.datetime) -> tuple[dict[str, Any], bool]:
    month = now.strftime("%Y-%m")
    spent = Decimal(c.store.month_spend_micro_usd(month)) / Decimal(1_000_000)
    budget = config.decimal("monthly_budget_usd")
    return (
        {
            "month": month,
            "spent_usd": float(round(spent, 6)),
            "budget_usd": float(budget),
            "remaining_usd": float(round(max(Decimal(0), budget - spent), 6)),
            "over_budget": spent >= budget and budget > 0,
        },
        spent < budget or budget == 0,
    )


def health(c: StatsDeps, now: dt.datetime) -> dict[str, Any]:
    from common.config import PipelineConfig

    reachable = False
    try:
        reachable = bool(c.store.ping())
    except Exception:  # noqa: BLE001 - reported as unreachable
        reachable = False
    body: dict[str, Any] = {"status": "ok", "timestamp": iso(now), "store": {"reachable": reachable, "backend": getattr(c.store, "backend", None)}}
    ok = reachable
    config = PipelineConfig.from_stored({})
    if reachable:
        try:
            body["schema"] = _schema(c)
            ok = ok and body["schema"]["ok"]
        except Exception as exc:  # noqa: BLE001
            body["schema"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
            ok = False
        try:
            config = c.pipeline_config()
        except Exception:  # noqa: BLE001 - defaults still describe the limits
            ok = False
        try:
            body["cron"], cron_ok = _cron(c, now)
            ok = ok and cron_ok
        except Exception as exc:  # noqa: BLE001
            body["cron"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            ok = False
        try:
            body["bigquery"], spend_ok = _bigquery(c, config, now)
            ok = ok and spend_ok
        except Exception as exc:  # noqa: BLE001
            body["bigquery"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            ok = False
    else:
        body["schema"] = {"ok": False, "error": "store unreachable"}
        body["cron"] = {"error": "store unreachable"}
        body["bigquery"] = {"error": "store unreachable"}
    body["rate_limiters"] = _rate_limiters(config)
    body["status"] = "ok" if ok else "degraded"
    return body
