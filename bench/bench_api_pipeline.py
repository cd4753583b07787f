"""The API pipeline end to end: accounts per hour through process_account (API_ONLY) and
api_fallback against the simulator, whose Horizon allows 85 requests/min and Stellar Expert 35/min.

What runs: N ordinary accounts (spread over the whole network's age, so old ones whose creation
Horizon has pruned are included) are requested as search would (pipeline.request_lineage); an
in-process driver (tests.fakes.TaskRunner) dispatches the lineage and api-fallback tasks to the
real handlers (real Flask requests, the SQLite store, HTTP to the simulator) until no task is
left: the creators expansion asks for, children's enrichment (children_enrichment_cap 100),
crawl continuations. Our budgets are the defaults: 71% of each upstream's maximum.

Time: the simulator's rate limiter and ours run on one WarpClock: real monotonic time plus every
sleep a limiter asked for, added instead of slept. Elapsed time is therefore the real processing
time plus the waits the rate limits impose, and accounts/hour is measured against it; nothing
blocks for an hour. Both sides' limiters see the same time, so 429s are real 429s.

Figures (each beside the naive baseline measured in the same run, on the same accounts):
- accounts per hour (searched accounts COMPLETE / elapsed), goal >= 1,000 (the original: ~90);
- Horizon and Expert calls per account; Horizon calls per api-fallback task (rates.py's figure);
- Horizon budget utilisation: requests / (71% of 85/min x elapsed), goal >= 80%;
- 429s received, goal 0.
The naive baseline is the original app's pattern: per account GET /accounts, the operations in
Horizon's default pages of 10 (newest first, up to its 1,000-operation cap), Stellar Expert every
time and the creator's account (the "grandparent" lookup), with no limiter: it sleeps Retry-After
when it gets a 429. Nothing is asserted; this only reports.
"""
from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import threading
import time
from pathlib import Path

import requests

from bench.common import Result
from common.clock import Clock
from common.queue.rates import EXPERT_CALLS_PER_TASK, HORIZON_CALLS_PER_TASK

HORIZON_PER_MIN = 85
EXPERT_PER_MIN = 35
AREA = "api pipeline (simulator, 85/35 req/min)"


class WarpClock(Clock):
    """Real monotonic time plus every sleep, which is added instead of slept."""

    def __init__(self, start: dt.datetime | None = None):
        self._start_wall = start or dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
        self._start_mono = time.monotonic()
        self._offset = 0.0
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return time.monotonic() + self._offset

    def now(self) -> dt.datetime:
        return self._start_wall + dt.timedelta(seconds=self.monotonic() - self._start_mono)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self._offset += seconds


def spread(items: list, n: int) -> list:
    """n items evenly spaced over the list (oldest to newest accounts)."""
    if len(items) <= n:
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def _totals(stats: dict, prefix: str) -> tuple[int, int]:
    requests_ = sum(sum(per.values()) for ep, per in stats["requests"].items() if ep.startswith(prefix))
    limited = sum(sum(per.values()) for ep, per in stats["rate_limited_429"].items() if ep.startswith(prefix))
    return requests_, limited


# ---------------------------------------------------------------------------------- ours
def run_ours(sim, clock: WarpClock, accounts: list[str], workdir: Path) -> dict:
    from common import pipeline
    from common.bootstrap import Container
    from common.config import PipelineConfig, Settings
    from common.handlers import api_fallback, process_account
    from common.store import migrations
    from common.store.sqlite import SQLiteStore
    from tests.fakes import TaskRunner, call_handler, http_answer

    store = SQLiteStore(workdir / "store.sqlite3")
    migrations.migrate(store)
    runner = TaskRunner(clock)
    config = PipelineConfig.from_stored({
        "pipeline_mode": "API_ONLY",
        "horizon_max_per_hour": HORIZON_PER_MIN * 60,
        "expert_max_per_minute": EXPERT_PER_MIN,
    })
    c = Container(Settings.from_env(env={**sim.env(), "HUBBLE_ENGINE": "none"}), clock, store=store, queue=runner,
                  pipeline_config=config)
    api_calls = {"tasks": 0, "horizon": 0, "expert": 0}

    def api(payload):
        response = call_handler(api_fallback.handle, c, payload)
        body = response.get_json(silent=True) or {}
        calls = body.get("calls") or (body.get("error", {}).get("details") or {}).get("calls") or {}
        api_calls["tasks"] += 1
        api_calls["horizon"] += calls.get("horizon", 0)
        api_calls["expert"] += calls.get("expert", 0)
        return http_answer(response)

    handlers = {"lineage": lambda p: http_answer(call_handler(process_account.handle, c, p)), "api-fallback": api}
    sim.reset_stats()
    t0, wall0 = clock.monotonic(), time.monotonic()
    for account in accounts:
        pipeline.request_lineage(c, "public", account)
    runner.drain(handlers)
    elapsed = clock.monotonic() - t0
    wall = time.monotonic() - wall0
    stats = sim.stats()
    done = sum(1 for a in accounts if (r := store.get_lineage("public", a)) is not None and r.status in ("COMPLETE", "INVALID"))
    lineages = sum(1 for row in store.scan("account_lineage", "public", 1_000_000) if row.get("status") in ("COMPLETE", "INVALID"))
    lineage_runs = runner.dispatches["lineage"]
    horizon, horizon_429 = _totals(stats, "horizon.")
    expert, expert_429 = _totals(stats, "expert.")
    store.close()
    return {
        "accounts": done, "lineages": lineages, "elapsed_s": elapsed, "wall_s": wall, "horizon": horizon, "expert": expert,
        "received_429": horizon_429 + expert_429, "lineage_tasks": lineage_runs, "api_tasks": api_calls["tasks"],
        "api_horizon": api_calls["horizon"], "api_expert": api_calls["expert"],
        "dropped": len(runner.dropped), "answers": dict(runner.answers),
    }


# ---------------------------------------------------------------------------------- naive
def run_naive(sim, clock: WarpClock, accounts: list[str], cap: int = 100) -> dict:
    """The same work done the straightforward way (the original app's pattern): for every account
    whose creator is unknown, GET /accounts, its operations newest first in Horizon's default pages
    of 10 (up to the original's 1,000-operation cap), Stellar Expert every time, the creator's own
    lineage (expansion), and GET /accounts for up to `cap` children. Pacing: a fixed sleep of one
    budget interval after every request (no burst, processing time not counted) and Retry-After
    slept on a 429. It keeps its results in memory (no store), which only flatters it."""
    from common.domain import GENESIS_ACCOUNT

    session = requests.Session()
    session.trust_env = False
    horizon, expert = sim.horizon_url("public"), sim.expert_url
    pace = {"horizon": 60 / (HORIZON_PER_MIN * 0.71), "expert": 60 / (EXPERT_PER_MIN * 0.71)}
    sim.set_limits(reset_clients=True)
    sim.reset_stats()

    def get(upstream: str, url: str, params: dict | None = None):
        for _ in range(50):
            resp = session.get(url, params=params, timeout=30)
            clock.sleep(pace[upstream])
            if resp.status_code == 429:
                clock.sleep(float(resp.headers.get("Retry-After") or 1))
                continue
            return resp.json() if resp.status_code == 200 else None
        return None

    creators: dict[str, str | None] = {}  # account -> creator, known from its own run or a parent's crawl
    enriched: set[str] = set()
    lineages = 0
    t0 = clock.monotonic()
    for searched in accounts:
        stack = [searched]
        while stack:
            account = stack.pop()
            if account in creators and (creators[account] is not None or account == GENESIS_ACCOUNT) and account != searched:
                continue
            if get("horizon", f"{horizon}/accounts/{account}") is None:
                creators[account] = None
                continue
            enriched.add(account)
            ops, cursor = [], None
            while len(ops) < 1000:
                page = get("horizon", f"{horizon}/accounts/{account}/operations",
                           {"order": "desc", "limit": 10, **({"cursor": cursor} if cursor else {})})
                records = (page or {}).get("_embedded", {}).get("records", [])
                ops += records
                if len(records) < 10:
                    break
                cursor = records[-1]["paging_token"]
            info = get("expert", f"{expert}/explorer/public/account/{account}") or {}
            own = [o for o in ops if o.get("type") == "create_account" and o.get("account") == account]
            creator = info.get("creator") or (own[-1]["funder"] if own else None)
            creators[account] = creator
            lineages += 1
            kids = [o["account"] for o in reversed(ops) if o.get("type") == "create_account" and o.get("funder") == account]
            for child in kids:
                creators.setdefault(child, account)
            for child in kids[:cap]:
                if child not in enriched:
                    get("horizon", f"{horizon}/accounts/{child}")
                    enriched.add(child)
            if creator and creator != GENESIS_ACCOUNT and creators.get(creator) is None:
                stack.append(creator)
    elapsed = clock.monotonic() - t0
    stats = sim.stats()
    h, h429 = _totals(stats, "horizon.")
    e, e429 = _totals(stats, "expert.")
    session.close()
    return {"accounts": len(accounts), "lineages": lineages, "elapsed_s": elapsed, "horizon": h, "expert": e,
            "received_429": h429 + e429}


# ---------------------------------------------------------------------------------- run
def run(short: bool = False) -> list[Result]:
    from local.simulator import Simulator

    n = 150 if short else 1200
    clock = WarpClock()
    with Simulator(accounts=2_000 if short else 5_000, airdrop_children=5_000, seed=7, port=0, clock=clock,
                   horizon_rate_per_min=HORIZON_PER_MIN, expert_rate_per_min=EXPERT_PER_MIN, rate_limits=True) as sim, \
            tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        ordinary = [a["account"] for a in sim.network("public").pick("ordinary", limit=10_000)["accounts"]]
        accounts = spread(ordinary, n)
        ours = run_ours(sim, clock, accounts, Path(tmp))
        naive = run_naive(sim, clock, accounts)

    def hourly(count: int, r: dict) -> float:
        return count / r["elapsed_s"] * 3600 if r["elapsed_s"] > 0 else 0.0

    budget_per_s = HORIZON_PER_MIN * 0.71 / 60
    utilisation = 100 * ours["horizon"] / (budget_per_s * ours["elapsed_s"])
    naive_util = 100 * naive["horizon"] / (budget_per_s * naive["elapsed_s"])
    baseline = "naive client, same work"
    run_note = (f"{n} ordinary accounts searched on a cold store; {ours['lineages']} lineages completed in "
                f"{ours['elapsed_s'] / 60:.0f} simulated min ({ours['wall_s']:.0f} s wall), one task at a time; "
                f"{ours['lineage_tasks']} lineage + {ours['api_tasks']} api-fallback tasks; {ours['dropped']} dropped")
    return [
        Result(AREA, "accounts per hour (lineages completed)", hourly(ours["lineages"], ours), "accounts/h", baseline,
               hourly(naive["lineages"], naive), note=run_note + "; a lineage = creator, children, enrichment, stored",
               goal="≥ 1,000 (original: ~90)"),
        Result(AREA, "searched accounts per hour (cold store)", hourly(ours["accounts"], ours), "accounts/h", baseline,
               hourly(naive["accounts"], naive),
               note="each searched account also pulls its unknown creators up to genesis and queues its children's enrichment"),
        Result(AREA, "Horizon calls per lineage", ours["horizon"] / max(1, ours["lineages"]), "calls", baseline,
               naive["horizon"] / max(1, naive["lineages"]), higher_is_better=False,
               note="GET /accounts + ascending pages of 200 + children's enrichment (cap 100)"),
        Result(AREA, "Stellar Expert calls per lineage", ours["expert"] / max(1, ours["lineages"]), "calls", baseline,
               naive["expert"] / max(1, naive["lineages"]), higher_is_better=False,
               note="asked because Horizon's history is pruned (retention 365 days)"),
        Result(AREA, "Horizon budget utilisation", utilisation, "% of 71% × 85/min", baseline, naive_util, goal="≥ 80%"),
        Result(AREA, "429s received", ours["received_429"], "responses", baseline, naive["received_429"],
               higher_is_better=False, goal="0"),
        Result(AREA, "Horizon calls per api-fallback task", ours["api_horizon"] / max(1, ours["api_tasks"]), "calls",
               "(informational: no baseline)", None, higher_is_better=False,
               note=(f"the queue rate assumes {HORIZON_CALLS_PER_TASK} (common/queue/rates.py); Expert calls per "
                     f"api-fallback task: {ours['api_expert'] / max(1, ours['api_tasks']):.2f} (assumed {EXPERT_CALLS_PER_TASK})")),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--short", action="store_true")
    args = ap.parse_args(argv)
    for r in run(short=args.short):
        ratio = f"{r.ratio:.2f}x" if r.ratio else "-"
        print(f"{r.figure}: {r.value:,.2f} {r.unit} | {r.baseline_name}: {r.baseline_value} | ratio {ratio} | {r.goal} | {r.note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
