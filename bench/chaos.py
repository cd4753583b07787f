"""`make chaos` / `make chaos-short`: drive searched accounts through the local stack, backed by
the real Cassandra, while the simulator injects faults of every kind, function processes are
SIGKILLed mid-task and Cassandra is restarted; then check that nothing was lost or wrong.

Writes bench/chaos.md. Exits non-zero when any check fails.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
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
from bench.truth import compare_lineage, fetch_json, history_window, truth_with_all_children
from tests.support import ROOT, ensure_cassandra

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
        chosen += [a["account"] for a in got if a.get("num_children", 0) < 20_000]
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
        sim_options={"rate_limits": True, "horizon_rate_per_min": 6000, "expert_rate_per_min": 3000},
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
    _write_report(short, n_accounts, len(accounts), events, checks, totals, mismatches)
    failed = [name for name, (passed, _) in checks.items() if not passed]
    for name, (passed, detail) in checks.items():
        print(f"{'PASS' if passed else 'FAIL'}: {name} ({detail})")
    return 1 if failed else 0


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


def _write_report(short, wanted, n, events, checks, totals, mismatches) -> None:
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
