"""`python -m local.stack` (`make demo`, `make dev`, `stellarmap demo`): the local stack in the
foreground. It prints the URLs, writes them (and the stack's layout) to a JSON file for scripts,
and stops everything on Ctrl-C or when a process dies.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import threading
from pathlib import Path

from local.processes import ROOT
from local.stack import LocalStack
from local.stack_env import StackError


def _dev_hubble() -> str:
    """BigQuery for `make dev` when credentials and a project are configured, else none."""
    creds = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    adc = Path.home() / ".config" / "gcloud" / "application_default_credentials.json"
    has_creds = bool(creds and Path(creds).is_file()) or adc.is_file()
    return "bigquery" if has_creds and os.environ.get("BIGQUERY_PROJECT") else "none"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m local.stack", description="Run the whole StellarMap stack locally (Ctrl-C stops it).")
    p.add_argument("--dev", action="store_true", help="use the real Horizon and Stellar Expert (and BigQuery when configured) instead of the simulator")
    p.add_argument("--workdir", type=Path, help="data and logs (default .local-data/demo, or .local-data/dev with --dev)")
    p.add_argument("--fresh", action="store_true", help="delete the workdir first (store, queued tasks, logs)")
    p.add_argument("--urls-file", type=Path, help="write the URLs (and the stack's layout) as JSON here")
    p.add_argument("--store", choices=("sqlite", "cassandra"), default="sqlite")
    p.add_argument("--base-port", type=int, default=8080, help="site on BASE, search BASE+1, stats BASE+2, ... simulator BASE+20 (0: free ports)")
    p.add_argument("--accounts", type=int, default=5000, help="simulated accounts per network")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--airdrop-children", type=int, help="children of the simulated airdrop account (simulator default 100,000)")
    p.add_argument("--hubble", choices=("none", "duckdb", "bigquery"),
                   help="Hubble path: duckdb (the simulator's Hubble tables, embedded; the demo's default), none (the API path "
                        "only), bigquery (make dev's default when credentials are configured)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    workdir = (args.workdir or ROOT / ".local-data" / ("dev" if args.dev else "demo")).resolve()
    if args.fresh and workdir.exists():
        shutil.rmtree(workdir)
    # The workdir keeps the store and the queued tasks between runs; they belong to one simulated network.
    params = {"dev": args.dev, "store": args.store} | ({} if args.dev else {"accounts": args.accounts, "seed": args.seed,
                                                                         "airdrop_children": args.airdrop_children})
    params_file = workdir / "stack-params.json"
    if params_file.exists() and json.loads(params_file.read_text()) != params:
        print(f"stack: {workdir} holds data of another network ({params_file.read_text().strip()}); "
              "add --fresh to start over, or pass another --workdir", file=sys.stderr)
        return 1
    workdir.mkdir(parents=True, exist_ok=True)
    params_file.write_text(json.dumps(params) + "\n")
    hubble = args.hubble or (_dev_hubble() if args.dev else "duckdb")
    sim_options = {"airdrop_children": args.airdrop_children} if args.airdrop_children is not None else {}
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stack = LocalStack(workdir, store=args.store, accounts=args.accounts, seed=args.seed, sim_options=sim_options,
                       base_port=args.base_port or None, dev=args.dev, hubble=hubble, log=lambda m: print(f"stack: {m}", flush=True))
    try:
        stack.start()
    except (StackError, OSError, ValueError) as exc:
        stack.stop()
        print(f"stack: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        stack.stop()
        return 130
    # The default workdir's file is the one `stellarmap` reads by default (and `make demo` names).
    urls_file = stack.write_urls_file(args.urls_file or (workdir / "stack-urls.json" if args.workdir else ROOT / ".local-data" / "stack-urls.json"))
    u = stack.urls
    print("\nStellarMap is running" + (" against the real Horizon and Stellar Expert" if args.dev else " on the simulated Stellar network") + ":")
    print(f"  site             {u['site']}/")
    print(f"  search           {u['search']}/search?account=G...&network=public")
    print(f"  stats            {u['stats']}/health")
    for name in ("process_account", "api_fallback", "hva_recalc", "reset_stale", "hubble_sync"):
        print(f"  {name:<16} {u[name]}  (internal: Authorization: Bearer <stack.internal_token in the URLs file>)")
    if not args.dev:
        print(f"  simulator        {u['simulator']}/_sim/health  (try: {u['simulator']}/_sim/accounts/public?kind=chain&limit=5)")
    for name, why in stack.missing.items():
        print(f"  ! {name}: {why}")
    print(f"URLs for scripts: {urls_file}")
    print(f"Logs: {stack.logs}/   Data: {workdir}/   Ctrl-C stops everything.", flush=True)
    try:
        while not stop.wait(1.0):
            dead = [n for n, p in stack.procs.items() if not p.alive]
            if dead:
                print(f"stack: {', '.join(dead)} stopped unexpectedly; see {stack.logs}/", file=sys.stderr, flush=True)
                break
    finally:
        print("stack: stopping ...", flush=True)
        stack.stop()
    return 0 if stop.is_set() else 1


if __name__ == "__main__":
    sys.exit(main())
