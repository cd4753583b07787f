"""The API pipeline through the real queue path: lineages per hour end to end, against the bound
the upstream budgets allow.

What runs: the local stack (local/stack.py: the simulator, the functions under functions-framework,
the SQLite store, the local dispatcher) with pipeline_mode API_ONLY. The simulator enforces
85 Horizon / 35 Stellar Expert requests per minute per client; the stack sets the same maximums in
the pipeline config, so the in-process limiters allow 71% of them (upstream_rate_pct), and the
api-fallback queue gets the limits common/queue/rates.py derives from them (dispatch rate from
HORIZON_CALLS_PER_TASK / EXPERT_CALLS_PER_TASK, concurrency API_FALLBACK_MAX_CONCURRENT), which are the ones Terraform deploys
(tests/unit/test_terraform_consistency.py). N ordinary accounts, spread over the network's age, are
searched over HTTP (the search function); the clock runs from the first search until the last
queued task has finished: creators up to genesis, children crawls and their continuations,
children's enrichment, all through both queues. Before the clock starts the simulator's buckets for
the functions' client are drained (requests until a 429, then its counters are reset), so no run
profits from the upstream's initial burst.

Time is real (wall clock). `--short` scales both upstream maximums by SHORT_SCALE (the simulator,
the in-process limiters and the queue rate scale together; calls per task and the share of the
bound do not depend on it) and searches 30 accounts, to stay within a few minutes; the full run
searches 60 at the real 85/35.

Figures, each beside the baseline measured in the same run:
- lineages per hour (lineage rows COMPLETE or INVALID / elapsed);
- the share of the bound, bound = min(Horizon share x rate / Horizon calls per lineage,
  Expert share x rate / Expert calls per lineage) from the run's own calls per lineage (goal >= 90%),
  also with only the Expert calls a lineage needs (the directory labels use spare budget only);
- upstream 429s, earned (over the simulator's limit; goal 0) and injected (no fault injection here);
- searched accounts that equal the simulator's ground truth (/_sim/truth);
- Horizon and Expert calls per api-fallback dispatch: what rates.py's figures come from.
Baseline: the same stack, accounts and dispatcher with the api-fallback rate rates.py had before the
calls were measured (4 Horizon, 1 Expert call per task: 0.25 tasks/s at 85/35). `--full` adds the
queue paced for the mean calls per task (rates.py's *_MEAN). Nothing is asserted.
"""
from __future__ import annotations

import dataclasses
import json
import re
import tempfile
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.common import Result, run_cli
from common.queue import rates

HORIZON_PER_MIN = 85
EXPERT_PER_MIN = 35
SHORT_SCALE = 10  # --short: both maximums x10 (850/350 per minute): the same run in about a tenth of the time
# The assumption rates.py made before the calls were measured: the baseline's api-fallback rate.
OLD_HORIZON_CALLS_PER_TASK = 4
OLD_EXPERT_CALLS_PER_TASK = 1
OLD_MAX_CONCURRENT = 2
DRAIN_MAX_REQUESTS = 10_000
SEARCH_CLIENTS = 8
ATTEMPT_LINE = re.compile(r" api-fallback \S+ attempt \d+ -> (\S+) in ")


@dataclasses.dataclass
class Plan:
    scale: int
    accounts: int
    sim_accounts: int
    timeout_s: float

    @property
    def horizon_per_min(self) -> float:
        return HORIZON_PER_MIN * self.scale

    @property
    def expert_per_min(self) -> float:
        return EXPERT_PER_MIN * self.scale

    @property
    def share(self) -> float:
        return rates.UPSTREAM_RATE_PCT / 100

    def limits(self, horizon_calls: float, expert_calls: float) -> rates.QueueLimits:
        return rates.api_fallback_limits(self.horizon_per_min * 60, self.expert_per_min, rates.UPSTREAM_RATE_PCT,
                                         horizon_calls, expert_calls)


def plan(short: bool) -> Plan:
    if short:
        return Plan(scale=SHORT_SCALE, accounts=30, sim_accounts=2_000, timeout_s=1_200)
    return Plan(scale=1, accounts=60, sim_accounts=5_000, timeout_s=5_400)


def spread(items: list, n: int) -> list:
    """n items evenly spaced over the list (oldest to newest accounts)."""
    if len(items) <= n:
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


# ---------------------------------------------------------------------------------- the simulator
def _sim_get(stack, path: str) -> tuple[int, Any]:
    from local.processes import http_get

    status, raw = http_get(stack.simulator_url + path, timeout=60)
    return status, json.loads(raw or b"null")


def drain_buckets(stack) -> dict[str, int]:
    """Spend the functions' client's burst at the simulator (loopback, as the functions call it),
    until each upstream answers 429; returns the requests it took."""
    from common.domain import GENESIS_ACCOUNT
    from local.processes import http_get

    urls = {"horizon": f"{stack.urls['horizon_public']}/", "expert": f"{stack.urls['expert']}/explorer/public/account/{GENESIS_ACCOUNT}"}
    spent = {}
    for upstream, url in urls.items():
        for n in range(1, DRAIN_MAX_REQUESTS + 1):
            if http_get(url, timeout=30)[0] == 429:
                spent[upstream] = n
                break
        else:
            raise RuntimeError(f"the simulator's {upstream} never answered 429 in {DRAIN_MAX_REQUESTS} requests: are its limits on?")
    return spent


def upstream_counts(stats: dict) -> dict[str, int]:
    def total(table: dict, prefix: str) -> int:
        return sum(sum(per.values()) for ep, per in table.items() if ep.startswith(prefix))

    requests_ = stats["requests"]
    return {
        "horizon": total(requests_, "horizon."),
        "expert": total(requests_, "expert."),
        "horizon_account": total(requests_, "horizon.account"),
        "expert_account": total(requests_, "expert.account"),
        "earned_429": stats["totals"]["rate_limited_429"],
        "injected_429": stats["totals"]["injected_429"],
    }


# ---------------------------------------------------------------------------------- correctness
def differences(store, sim_url: str, account: str, window) -> list[str]:
    """The stored lineage against /_sim/truth: status, creator, creation time and events, children
    (those inside Horizon's window when the API could not see older ones), the ancestor chain up to
    genesis, the XLM balance and home_domain."""
    from local.testing.truth import compare_lineage, truth_with_all_children
    from common.lineage_view import ancestors

    truth = truth_with_all_children(sim_url, "public", account)
    problems = compare_lineage(store, "public", account, truth, history_from=window)
    rec = store.get_lineage("public", account)
    if problems or rec is None or rec.status != "COMPLETE":
        return problems
    chain = [n["account"] for n in ancestors(store, "public", rec)]
    if chain != truth["ancestors"]:
        problems.append(f"{account}: ancestors {len(chain)} hops, truth {len(truth['ancestors'])}")
    if rec.xlm_balance is None or rec.xlm_balance != Decimal(str(truth["xlm_balance"])):
        problems.append(f"{account}: xlm_balance {rec.xlm_balance}, truth {truth['xlm_balance']}")
    if (rec.home_domain or None) != (truth["home_domain"] or None):
        problems.append(f"{account}: home_domain {rec.home_domain!r}, truth {truth['home_domain']!r}")
    return problems


# ---------------------------------------------------------------------------------- one run
def run_through_queue(p: Plan, workdir: Path, queue_limits: dict[str, Any] | None = None) -> dict[str, Any]:
    """One cold stack: search the accounts, wait until both queues are empty, measure."""
    from local.testing.truth import history_window
    from common.bootstrap import build_store
    from local.processes import http_get, http_post_json
    from local.stack import LocalStack

    with LocalStack(
        workdir,
        store="sqlite",
        accounts=p.sim_accounts,
        seed=7,
        sim_options={"rate_limits": True, "horizon_rate_per_min": p.horizon_per_min, "expert_rate_per_min": p.expert_per_min,
                     "airdrop_children": 5_000},
        pipeline_config={"pipeline_mode": "API_ONLY"},
        queue_limits=queue_limits,
        search_rate_per_min=1_000_000,
        search_burst=100_000,
    ) as stack:
        _, picked = _sim_get(stack, "/_sim/accounts/public?kind=ordinary&limit=10000")
        accounts = spread([a["account"] for a in picked["accounts"]], p.accounts)
        window = history_window(stack.simulator_url, "public")
        drained = drain_buckets(stack)
        http_post_json(stack.simulator_url + "/_sim/stats/reset", {})
        t0 = time.time()
        with ThreadPoolExecutor(SEARCH_CLIENTS) as pool:  # the accounts are searched at once, as by several users
            searched = pool.map(lambda a: (a, *http_get(f"{stack.urls['search']}/search?" + urllib.parse.urlencode(
                {"account": a, "network": "public"}), timeout=60)), accounts)
            for account, status, body in searched:
                if status not in (200, 202):
                    raise RuntimeError(f"search {account}: {status} {body[:300]!r}")
        db = stack.task_db()
        try:
            deadline = time.monotonic() + p.timeout_s
            while db.count() > 0:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the queues still hold tasks after {p.timeout_s:.0f} s: {stack.queue_counts()}")
                time.sleep(0.2)
            tasks = db.tasks()
        finally:
            db.close()
        end = max(float(t["finished_at"]) for t in tasks if t["finished_at"] is not None)
        elapsed = end - t0
        _, stats = _sim_get(stack, "/_sim/stats")
        api_tasks = [t for t in tasks if t["queue"] == "api-fallback"]
        answers: dict[str, int] = {}  # the api-fallback dispatches by HTTP answer
        log = stack.logs / "dispatcher.log"
        for line in log.read_text(errors="replace").splitlines():
            m = ATTEMPT_LINE.search(line)
            if m:
                answers[m.group(1)] = answers.get(m.group(1), 0) + 1
        store = build_store(stack.settings)
        try:
            lineages = sum(1 for row in store.scan("account_lineage", "public", 1_000_000) if row.get("status") in ("COMPLETE", "INVALID"))
            wrong = {a: d for a in accounts if (d := differences(store, stack.simulator_url, a, window))}
        finally:
            store.close()
        limits = stack.queue_limits["api-fallback"]
    return {
        "accounts": len(accounts), "lineages": lineages, "elapsed_s": elapsed, "drained": drained,
        **upstream_counts(stats),
        "api_tasks": len(api_tasks), "api_attempts": sum(int(t["dispatch_count"]) for t in api_tasks),
        "lineage_tasks": sum(1 for t in tasks if t["queue"] == "lineage"),
        "dropped": sum(1 for t in tasks if t["state"] == "dropped"), "answers": answers,
        "right": len(accounts) - len(wrong), "wrong": wrong, "limits": limits,
    }


# ---------------------------------------------------------------------------------- figures
def hourly(r: dict) -> float:
    return r["lineages"] / r["elapsed_s"] * 3600 if r["elapsed_s"] > 0 else 0.0


def bound(p: Plan, r: dict, expert_key: str = "expert") -> tuple[float, str]:
    """Lineages per hour the upstream shares allow at the run's own calls per lineage:
    min(Horizon share / Horizon calls per lineage, Expert share / Expert calls per lineage).
    expert_key "expert_account" counts only the lookups a lineage needs (not the best-effort labels)."""
    horizon_share_h = p.horizon_per_min * p.share * 60
    expert_share_h = p.expert_per_min * p.share * 60
    per_lineage_h = r["horizon"] / max(1, r["lineages"])
    per_lineage_e = r[expert_key] / max(1, r["lineages"])
    by_h = horizon_share_h / per_lineage_h if per_lineage_h else float("inf")
    by_e = expert_share_h / per_lineage_e if per_lineage_e else float("inf")
    value = min(by_h, by_e)
    binding = "Horizon" if by_h <= by_e else "Stellar Expert"
    text = (f"bound = min(Horizon {p.share:.0%} x {p.horizon_per_min:g}/min = {horizon_share_h:,.0f}/h / {per_lineage_h:.2f} calls per "
            f"lineage = {by_h:,.0f}, Expert {p.share:.0%} x {p.expert_per_min:g}/min = {expert_share_h:,.0f}/h / {per_lineage_e:.2f} "
            f"calls per lineage = {by_e:,.0f}) = {value:,.0f} lineages/h ({binding} binds); measured {hourly(r):,.0f} lineages/h")
    return value, text


def share_of_bound(p: Plan, r: dict, expert_key: str = "expert") -> float:
    return 100 * hourly(r) / bound(p, r, expert_key)[0]


def per_dispatch(r: dict, key: str) -> float:
    return r[key] / max(1, r["api_attempts"])


def run_note(r: dict) -> str:
    return (f"{r['accounts']} ordinary accounts searched on a cold store, {r['lineages']} lineages in {r['elapsed_s']:.0f} s wall; "
            f"{r['lineage_tasks']} lineage + {r['api_tasks']} api-fallback tasks ({r['api_attempts']} dispatches, answers "
            f"{dict(sorted(r['answers'].items()))}), {r['dropped']} dropped; api-fallback queue "
            f"{r['limits'].max_dispatches_per_second:g}/s, {r['limits'].max_concurrent_dispatches} concurrent; simulator buckets "
            f"drained first ({r['drained']['horizon']} Horizon + {r['drained']['expert']} Expert requests)")


def run(short: bool = False) -> list[Result]:
    p = plan(short)
    ours_limits = p.limits(rates.HORIZON_CALLS_PER_TASK, rates.EXPERT_CALLS_PER_TASK)
    mean_limits = p.limits(rates.HORIZON_CALLS_PER_TASK_MEAN, rates.EXPERT_CALLS_PER_TASK_MEAN)
    old_limits = p.limits(OLD_HORIZON_CALLS_PER_TASK, OLD_EXPERT_CALLS_PER_TASK)
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        ours = run_through_queue(p, Path(tmp) / "ours")
        old = run_through_queue(p, Path(tmp) / "old-rates", {"api-fallback": {"max_dispatches_per_second": old_limits.max_dispatches_per_second,
                                                                             "max_concurrent_dispatches": OLD_MAX_CONCURRENT}})
        # --full also measures the queue paced for the mean calls per task (rates.py's reason for the lightest).
        mean = None if short else run_through_queue(
            p, Path(tmp) / "mean-rate", {"api-fallback": {"max_dispatches_per_second": mean_limits.max_dispatches_per_second}})
    if ours["limits"] != ours_limits:
        raise RuntimeError(f"the stack's api-fallback limits {ours['limits']} are not rates.py's {ours_limits}")

    area = f"api pipeline via the queue (simulator {p.horizon_per_min:g}/{p.expert_per_min:g} req/min)"
    scale = (f"--short: both upstream maximums x{p.scale} of 85/35 per min (the queue rate and limiters scale with them). "
             if p.scale != 1 else "")
    baseline = (f"same stack, old rates.py ({OLD_HORIZON_CALLS_PER_TASK} Horizon / {OLD_EXPERT_CALLS_PER_TASK} Expert calls per task, "
                f"{OLD_MAX_CONCURRENT} concurrent)")
    _, ours_text = bound(p, ours)
    _, ours_required_text = bound(p, ours, "expert_account")
    wrong = "; ".join(d[0] for d in list(ours["wrong"].values())[:3])
    results = [
        Result(area, "lineages per hour, end to end", hourly(ours), "lineages/h", baseline, hourly(old),
               note=scale + run_note(ours) + f" | baseline: {run_note(old)}", goal="≥ 90% of the bound"),
        Result(area, "share of the bound at the configured share (71%)", share_of_bound(p, ours, "expert_account"), "%",
               baseline, share_of_bound(p, old, "expert_account"), goal="≥ 90%",
               note=(ours_required_text + "; calls per lineage = the run's upstream requests / lineages completed, Stellar Expert's "
                     "directory-label calls left out: they take spare budget only, so they would lower the bound whenever the "
                     "pipeline leaves budget unused (next row)")),
        Result(area, "share of the bound counting every Expert call", share_of_bound(p, ours), "%", baseline, share_of_bound(p, old),
               note=(ours_text + "; not a fair yardstick: the labels fill whatever Expert budget the lineages leave, so a queue "
                     "that starves the pipeline still scores high here (the baseline)")),
        Result(area, "upstream 429s earned", ours["earned_429"], "responses", baseline, old["earned_429"], higher_is_better=False,
               goal="0", note=f"injected 429s: {ours['injected_429']} (baseline {old['injected_429']}; no fault injection in this run)"),
        Result(area, "searched accounts equal to /_sim/truth", ours["right"], f"of {ours['accounts']}", baseline, old["right"],
               note=("creator, creation time and events, children (those inside Horizon's window when its history is pruned), "
                     "ancestors up to genesis, XLM balance, home_domain" + (f"; e.g. {wrong}" if wrong else ""))),
        Result(area, "Horizon calls per api-fallback dispatch", per_dispatch(ours, "horizon"), "calls", baseline, per_dispatch(old, "horizon"),
               higher_is_better=False,
               note=(f"of which GET /accounts {per_dispatch(ours, 'horizon_account'):.2f} (each task reads its account once: the lightest "
                     f"task's 1 call); rates.py: HORIZON_CALLS_PER_TASK = {rates.HORIZON_CALLS_PER_TASK:g} (lightest), _MEAN = "
                     f"{rates.HORIZON_CALLS_PER_TASK_MEAN:g}; before: {OLD_HORIZON_CALLS_PER_TASK}")),
        Result(area, "Stellar Expert account lookups per api-fallback dispatch", per_dispatch(ours, "expert_account"), "calls", baseline,
               per_dispatch(old, "expert_account"), higher_is_better=False,
               note=(f"plus {per_dispatch(ours, 'expert') - per_dispatch(ours, 'expert_account'):.2f} best-effort directory-label calls "
                     f"(baseline {per_dispatch(old, 'expert') - per_dispatch(old, 'expert_account'):.2f}); rates.py: "
                     f"EXPERT_CALLS_PER_TASK = {rates.EXPERT_CALLS_PER_TASK:g}, _MEAN = {rates.EXPERT_CALLS_PER_TASK_MEAN:g}; "
                     f"before: {OLD_EXPERT_CALLS_PER_TASK}")),
    ]
    if mean is not None:
        _, mean_text = bound(p, mean, "expert_account")
        results.append(Result(
            area, "share of the bound vs a queue paced for the mean calls per task", share_of_bound(p, ours, "expert_account"), "%",
            f"same stack, queue rate from the means ({rates.HORIZON_CALLS_PER_TASK_MEAN:g} Horizon / "
            f"{rates.EXPERT_CALLS_PER_TASK_MEAN:g} Expert per task)", share_of_bound(p, mean, "expert_account"),
            note=f"the variant: {mean_text}; {mean['earned_429']} 429s earned, {mean['right']}/{mean['accounts']} equal to the truth; "
                 f"{run_note(mean)}"))
    return results


def main(argv: list[str] | None = None) -> int:
    return run_cli(run, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
