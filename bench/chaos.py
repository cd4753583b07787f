"""`make chaos` / `make chaos-short`: drive searched accounts through the local stack, backed by
the real Cassandra, while the simulator injects faults of every kind, function processes are
SIGKILLed mid-task and Cassandra is restarted; then check that nothing was lost or wrong.

Then the stale workers: api_fallback workers (separate processes) stop themselves (SIGSTOP) at a
chosen point of their task; the stack's reset_stale releases their claims and its own api_fallback
claims and finishes the accounts; each paused worker is resumed (SIGCONT), after the other worker
completed or while it still holds the claim. Its late writes must change nothing.

Writes bench/chaos.md. Exits non-zero when any check fails. Cassandra is restarted during the run:
point CASSANDRA_PORT (with CASSANDRA_STATE_DIR and CASSANDRA_STORAGE_PORT) at a private instance.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from bench.common import machine_line
from common.domain import parse_iso
from local.processes import ROOT
from local.testing.cassandra import ensure_cassandra
from local.testing.truth import compare_lineage, fetch_json, history_window, truth_with_all_children

REPORT = Path(__file__).with_name("chaos.md")
FAULT_KINDS = ("429", "500", "502", "503", "slow", "timeout", "truncated", "malformed", "reset")
# 10% of upstream answers are faults, spread over every kind.
FAULT_RULE = {**{k: round(0.10 / len(FAULT_KINDS), 4) for k in FAULT_KINDS}, "slow_seconds": 1.5, "timeout_seconds": 4}
KINDS_TO_SEARCH = {"ordinary": 0.45, "recent": 0.15, "old": 0.1, "merged": 0.06, "hostile": 0.06, "hub": 0.06,
                   "flags": 0.04, "missing": 0.04, "merged_gone": 0.04}


def search(search_url: str, network: str, account: str) -> int:
    q = urllib.parse.urlencode({"account": account, "network": network})
    try:
        with urllib.request.urlopen(f"{search_url}?{q}", timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return 0


def pick_accounts(sim_url: str, network: str, total: int) -> list[str]:
    chosen: list[str] = []
    for kind, share in KINDS_TO_SEARCH.items():
        want = max(1, int(total * share))
        got = fetch_json(f"{sim_url}/_sim/accounts/{network}?kind={kind}&limit={want}")["accounts"]
        chosen += [a["account"] for a in got if a.get("num_children", 0) < 20_000 and "airdrop" not in a.get("kinds", ())]
    chosen = list(dict.fromkeys(chosen))
    # Rare kinds run out on a small network: top up with ordinary accounts to reach `total`.
    offset = 0
    while len(chosen) < total:
        got = fetch_json(f"{sim_url}/_sim/accounts/{network}?kind=ordinary&limit=1000&offset={offset}")["accounts"]
        if not got:
            break
        offset += len(got)
        seen = set(chosen)
        chosen += [a["account"] for a in got if a["account"] not in seen and a.get("num_children", 0) < 20_000]
    return chosen[:total]


def restart_cassandra(log: list[str]) -> None:
    t0 = time.monotonic()
    subprocess.run(["bash", str(ROOT / "local" / "cassandra.sh"), "stop"], check=True, capture_output=True, timeout=300)
    log.append(f"Cassandra stopped at +{time.monotonic() - T0:.0f}s")
    subprocess.run(["bash", str(ROOT / "local" / "cassandra.sh"), "start"], check=True, capture_output=True, timeout=600)
    log.append(f"Cassandra restarted at +{time.monotonic() - T0:.0f}s (down {time.monotonic() - t0:.0f}s)")


T0 = time.monotonic()


def run(short: bool) -> int:
    global T0
    from local.stack import LocalStack

    ok, why = ensure_cassandra()
    if not ok:
        print(f"chaos: Cassandra is required: {why}", file=sys.stderr)
        return 1
    n_accounts = 120 if short else 1000
    network = "public"
    events: list[str] = []
    checks: dict[str, tuple[bool, str]] = {}
    with tempfile.TemporaryDirectory() as tmp, LocalStack(
        Path(tmp),
        store="cassandra",
        accounts=3000 if short else 20000,
        seed=11,
        # 3,000 airdrop children (1,000 within Horizon's history): the stale workers' multi-page crawls.
        sim_options={"rate_limits": True, "horizon_rate_per_min": 6000, "expert_rate_per_min": 3000, "airdrop_children": 3000},
        schedule_seconds={"reset_stale": 15, "hva_recalc": 300},
        pipeline_config={"stale_processing_minutes": 1, "stale_pending_hours": 0, "max_retries": 8},
    ) as stack:
        sim = stack.simulator_url
        search_url = stack.urls["search"]
        accounts = pick_accounts(sim, network, n_accounts)
        truths = {a: truth_with_all_children(sim, network, a) for a in accounts}
        req = urllib.request.Request(f"{sim}/_sim/faults", data=json.dumps({"rules": {"horizon.*": FAULT_RULE, "expert.*": FAULT_RULE}, "seed": 5}).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=30).read()
        urllib.request.urlopen(urllib.request.Request(f"{sim}/_sim/stats/reset", method="POST", data=b""), timeout=30).read()
        T0 = time.monotonic()

        statuses: list[int] = []
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(search, search_url, network, a) for a in accounts]
            # Faults while the searches are being worked on.
            disruptions = threading.Thread(target=_disrupt, args=(stack, events), daemon=True)
            disruptions.start()
            statuses = [f.result() for f in futures]
        disruptions.join()
        events.append(f"{len(accounts)} searches sent by +{time.monotonic() - T0:.0f}s: {sorted(set(statuses))}")

        # Faults stay on to the end: retries and reset_stale must finish the tail through them.
        deadline = time.monotonic() + (900 if short else 3600)
        store = _open_store(stack)
        pending = set(accounts)
        while pending and time.monotonic() < deadline:
            for a in list(pending):
                rec = store.get_lineage(network, a)
                if rec is not None and rec.status in ("COMPLETE", "INVALID", "FAILED"):
                    pending.discard(a)
            if pending:
                time.sleep(5)
        events.append(f"all terminal by +{time.monotonic() - T0:.0f}s" if not pending else f"{len(pending)} still not terminal at the deadline")

        mismatches: list[str] = []
        window = history_window(sim, network)
        for a in accounts:
            mismatches += compare_lineage(store, network, a, truths[a], history_from=window)
        stats = fetch_json(f"{sim}/_sim/stats")
        totals = stats["totals"]
        final = {a: store.get_lineage(network, a) for a in accounts}
        by_status: dict[str, int] = {}
        for rec in final.values():
            key = rec.status if rec else "MISSING"
            by_status[key] = by_status.get(key, 0) + 1
        trials = stale_workers(stack, store, short, events)
        store.close()

    checks["every account ends COMPLETE, or INVALID/FAILED with a reason where the simulator says so"] = (
        not pending and not [m for m in mismatches if "status" in m or "without a reason" in m],
        json.dumps(by_status),
    )
    lineage_problems = [m for m in mismatches if "status" not in m and "without a reason" not in m]
    checks["lineage equals the ground truth (creators, creation times and events, children)"] = (not lineage_problems, f"{len(lineage_problems)} differences")
    dupes = [m for m in mismatches if "duplicate" in m]
    checks["0 duplicate children"] = (not dupes, f"{len(dupes)} accounts with duplicates")
    lost = [a for a, rec in final.items() if rec is None]
    checks["0 lost accounts"] = (not lost and not pending, f"{len(lost)} without a row, {len(pending)} never terminal")
    checks["0 rate-limit 429s earned (injected ones excluded)"] = (totals.get("rate_limited_429", 0) == 0,
                                                               f"earned {totals.get('rate_limited_429', 0)}, injected {totals.get('injected_429', 0)}")
    checks.update(stale_checks(trials))
    _write_report(short, n_accounts, len(accounts), events, checks, totals, mismatches, trials)
    failed = [name for name, (passed, _) in checks.items() if not passed]
    for name, (passed, detail) in checks.items():
        print(f"{'PASS' if passed else 'FAIL'}: {name} ({detail})")
    return 1 if failed else 0


# ---------------------------------------------------------------------------------- stale workers
STALE_INTRO = (
    "Each row: an api_fallback worker in its own process claims the account and stops itself (SIGSTOP) at the point named; "
    "the stack's reset_stale releases the claim once it is older than stale_processing_minutes (1 here), and the stack's own "
    "api_fallback claims the account and resumes the crawl from the stored checkpoint. The paused worker is then resumed "
    "(SIGCONT) after that worker completed, or while it still holds the claim. \"Changed by its resume\" compares the row "
    "and its children just before SIGCONT and after the paused worker exited. Upstream faults are off in this phase, "
    "so each worker stops where planned."
)
PAUSED_WORKER = r"""
import json, os, signal, sys
from common.bootstrap import Container
from common.config import Settings
from common.handlers.api_fallback import handle
from common.store.cassandra import CassandraStore
from local.testing.fakes import StealsClaims, call_handler

env, task, hook, at = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4])
settings = Settings.from_env(env=env)
store = type("PausingStore", (StealsClaims, CassandraStore), {})(settings)
store.arm(hook, task["account"], lambda: os.kill(os.getpid(), signal.SIGSTOP), at=at)
answer = call_handler(handle, Container(settings, store=store), task, headers={"Authorization": "Bearer " + env["INTERNAL_TOKEN"]})
print(json.dumps({"status_code": answer.status_code, "body": answer.get_json()}), flush=True)
"""
# (hook, nth call, resume when the other worker has "completed" or has "claimed", what the pause point is)
PAUSE_MID_CRAWL = ("_add_children", 2, "completed", "page 2's children stored; next write: checkpoint 2")
PAUSE_HOLDING = ("update_claimed", 3, "claimed", "checkpoint 2; next: page 3, then checkpoint 3")
PAUSE_LAST_PAGE = ("_add_children", 1, "completed", "its only page of children stored; next write: the completion")
PAUSE_CREATOR = ("_add_creation_event", 1, "claimed", "its creation event stored; next write: the creator")


def stale_workers(stack, store, short: bool, events: list[str]) -> list[dict]:
    """The stale-worker trials, all at once (each waits for reset_stale): one dict per trial."""
    sim = stack.simulator_url
    urllib.request.urlopen(urllib.request.Request(f"{sim}/_sim/faults", method="DELETE"), timeout=30).read()
    stack.wait_idle(900)  # nothing in flight: the trial accounts are left to the paused workers
    plan = [("testnet", _sim_accounts(sim, "testnet", "airdrop")[0], PAUSE_MID_CRAWL),
            ("public", _sim_accounts(sim, "public", "airdrop")[0], PAUSE_HOLDING)]
    small = [a for a in _sim_accounts(sim, "testnet", "hub", 60) if _visible_children(sim, "testnet", a) >= 3]
    for i, account in enumerate(small[: 2 if short else 8]):
        plan.append(("testnet", account, (PAUSE_LAST_PAGE, PAUSE_CREATOR)[i % 2]))
    env = {**stack.function_env(), "API_TASK_SECONDS": "3600"}  # the next write after the pause is the planned one
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(len(plan)) as pool:
        trials = list(pool.map(lambda p: _stale_trial(store, sim, env, *p), plan))
    events.append(f"stale workers: {len(trials)} paused workers resumed after another worker took over, in {time.monotonic() - started:.0f}s")
    return trials


def stale_checks(trials: list[dict]) -> dict[str, tuple[bool, str]]:
    skipped = sum(t["skipped"] for t in trials)
    changed = sum(t["changed"] == "yes" for t in trials)
    wrong = sum(not t["final_ok"] for t in trials)
    lost = sum(t["lost_children"] if isinstance(t["lost_children"], int) else 1 for t in trials)
    after_completion = sum(t["other"] == "completed" for t in trials)
    return {
        "stale workers: 0 overwritten results": (
            bool(trials) and skipped == len(trials) and changed == 0 and wrong == 0,
            f"{len(trials)} paused workers resumed; {skipped} answered 200 SKIPPED (claim lost); {changed} of the "
            f"{after_completion} resumed after the other worker's completion changed its row or children; {wrong} rows "
            "not COMPLETE with the true creator, count and no cursor",
        ),
        "stale workers: 0 lost children": (bool(trials) and lost == 0, f"{lost} children missing from the {len(trials)} accounts"),
    }


def _sim_accounts(sim: str, network: str, kind: str, limit: int = 1) -> list[str]:
    got = fetch_json(f"{sim}/_sim/accounts/{network}?kind={kind}&limit={limit}")["accounts"]
    return [a["account"] for a in got if kind == "airdrop" or not {"airdrop", "genesis"} & set(a.get("kinds", ()))]


def _visible_children(sim: str, network: str, account: str) -> int:
    window = history_window(sim, network)
    return sum(1 for c in truth_with_all_children(sim, network, account)["all_children"] if parse_iso(c["created_at"]) >= window)


def _stopped(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
    except (OSError, IndexError):
        return False


def _wait_for(check, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    return None


def _snapshot(store, network: str, account: str):
    return store.get_lineage(network, account), sorted(c.child for c in store.iter_children(network, account, 1000))


def _stale_trial(store, sim: str, env: dict, network: str, account: str, pause: tuple) -> dict:
    hook, at, resume_when, label = pause
    truth = truth_with_all_children(sim, network, account)
    window = history_window(sim, network)
    result = {"network": network, "account": account, "pause": label, "other": "-", "answer": "-", "changed": "-",
              "lost_children": "-", "skipped": False, "final_ok": False, "children": len(truth["all_children"])}
    now = dt.datetime.now(dt.timezone.utc)
    # Claimable, with no task: updated_at ahead so reset_stale's lost-task sweep (stale_pending_hours=0 here)
    # leaves the row to the worker about to claim it. A row from an earlier run is crawled again from scratch.
    ahead = now + dt.timedelta(minutes=30)
    if not (store.transition_lineage(network, account, None, "PENDING", created_at=now, updated_at=ahead, retry_count=0)
            or store.transition_lineage(network, account, (None, "COMPLETE", "FAILED", "INVALID"), "PENDING", retry_count=0,
                                        updated_at=ahead, children_complete=None, children_cursor=None)):
        result["answer"] = f"not claimable: {store.get_lineage(network, account).status}"
        return result
    task = {"network": network, "account": account, "purpose": "lineage", "generation": "stale-trial"}
    proc = subprocess.Popen([sys.executable, "-c", PAUSED_WORKER, json.dumps(env), json.dumps(task), hook, str(at)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if not _wait_for(lambda: _stopped(proc.pid) or proc.poll() is not None, 300) or not _stopped(proc.pid):
            out, err = proc.communicate(timeout=60) if proc.poll() is not None else ("", "")
            result["answer"] = f"never paused: {out.strip()[-200:]} {err.strip()[-300:]}".replace("|", "/").replace("\n", " ")
            return result
        mine = store.get_lineage(network, account).claim_token

        def took_over():
            rec = store.get_lineage(network, account)
            if rec.status == "COMPLETE":
                return "completed"
            if resume_when == "claimed" and rec.status == "PROCESSING" and rec.claim_token != mine:
                return "holds the claim"
            return None

        result["other"] = _wait_for(took_over, 900) or "never took over"
        before = _snapshot(store, network, account)
        os.kill(proc.pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=300)
        after = _snapshot(store, network, account)
        try:
            answer = json.loads(out.strip().splitlines()[-1])
        except (IndexError, ValueError):
            result["answer"] = f"no answer: {err.strip()[-300:]}".replace("|", "/").replace("\n", " ")
            return result
        body = answer["body"]
        reason = body.get("reason") or body.get("error", {}).get("message") or ""
        result["skipped"] = answer["status_code"] == 200 and body.get("status") == "SKIPPED" and "claim lost" in reason
        result["answer"] = f"{answer['status_code']} {body.get('status') or body.get('error', {}).get('code')}" + (
            " (claim lost)" if result["skipped"] else f": {reason[:80]}".replace("|", "/"))
        # While the other worker still holds the claim it writes too: only its end state can be checked.
        result["changed"] = ("yes" if before != after else "nothing") if result["other"] == "completed" else "(end state checked)"
        _wait_for(lambda: store.get_lineage(network, account).status == "COMPLETE", 900)
        rec = store.get_lineage(network, account)
        want = {c["account"] for c in truth["all_children"] if rec.children_complete or parse_iso(c["created_at"]) >= window}
        stored = {c.child for c in store.iter_children(network, account, 1000)}
        result["children"] = len(want)
        result["lost_children"] = len(want - stored)
        result["final_ok"] = (rec.status == "COMPLETE" and rec.num_child_accounts == len(want) and rec.children_cursor is None
                              and rec.stellar_creator_account == truth.get("creator") and stored == want
                              and not compare_lineage(store, network, account, truth, history_from=window))
        return result
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.wait(30)


def _disrupt(stack, events: list[str]) -> None:
    """Three SIGKILLs of function processes mid-task, and one Cassandra restart."""
    for i, (delay, name) in enumerate(((5, "api_fallback"), (15, "process_account"), (30, "api_fallback"))):
        time.sleep(max(0.0, T0 + delay - time.monotonic()))
        stack.kill_function(name)
        events.append(f"SIGKILL {name} at +{time.monotonic() - T0:.0f}s")
    time.sleep(max(0.0, T0 + 40 - time.monotonic()))
    restart_cassandra(events)


def _open_store(stack):
    from common.bootstrap import build_store

    return build_store(stack.settings)


def _write_report(short, wanted, n, events, checks, totals, mismatches, trials) -> None:
    lines = [
        "# Chaos run",
        "",
        f"Run: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}, mode `{'short' if short else 'full'}`, "
        f"{n} searched accounts (asked for {wanted}), store: real Cassandra 5.0.",
        f"Machine: {machine_line()}.",
        "",
        f"Faults: every upstream endpoint answers 10% faults spread over {', '.join(FAULT_KINDS)}; "
        "3 function processes SIGKILLed mid-task; Cassandra stopped and restarted once.",
        "",
        "## Checks",
        "",
        "| check | result | detail |",
        "|---|---|---|",
    ]
    for name, (passed, detail) in checks.items():
        lines.append(f"| {name} | {'PASS' if passed else 'FAIL'} | {detail} |")
    lines += ["", "## Stale workers", "", STALE_INTRO, "",
              "| account | paused after | other worker at resume | paused worker's answer | changed by its resume | lost children |",
              "|---|---|---|---|---|---|"]
    for t in trials:
        lines.append(f"| {t['network']} {t['account'][:8]}… ({t['children']} children) | {t['pause']} | {t['other']} | {t['answer']} "
                     f"| {t['changed']} | {t['lost_children']} |")
    lines += ["", "## Timeline", ""] + [f"- {e}" for e in events]
    lines += ["", "## Simulator totals", "", "```json", json.dumps(totals, indent=2), "```"]
    if mismatches:
        lines += ["", "## Differences (first 50)", ""] + [f"- {m}" for m in mismatches[:50]]
    lines += ["", "Reproduce: `make chaos` (full) or `make chaos-short` (the CI version)."]
    REPORT.write_text("\n".join(lines) + "\n")
    print(f"wrote {REPORT}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--short", action="store_true")
    g.add_argument("--full", action="store_true")
    args = ap.parse_args(argv)
    return run(short=bool(args.short))


if __name__ == "__main__":
    sys.exit(main())
