"""The simulator's command line (`python -m local.simulator`, and `stellarmap sim`)."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import sys
import threading
from pathlib import Path

from common.domain import InvalidInput
from local.simulator.network import DEFAULT_ACCOUNTS, DEFAULT_AIRDROP_CHILDREN, DEFAULT_RETENTION_DAYS, iso_z
from local.simulator.ratelimit import DEFAULT_RATE_PER_MIN


def _when(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value


def _faults(text: str) -> dict:
    raw = Path(text[1:]).read_text() if text.startswith("@") else text
    try:
        value = json.loads(raw)
    except ValueError:
        raise argparse.ArgumentTypeError("--faults must be JSON (or @file holding JSON)") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--faults must be a JSON object {endpoint: {kind: probability}}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m local.simulator", description=__doc__)
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8100, help="port (0 picks a free one; default 8100)")
    p.add_argument("--accounts", type=int, default=DEFAULT_ACCOUNTS, help="core accounts per network")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--airdrop-children", type=int, default=DEFAULT_AIRDROP_CHILDREN)
    p.add_argument("--retention-days", type=int, default=DEFAULT_RETENTION_DAYS,
                   help="Horizon history window (0 keeps all history)")
    p.add_argument("--now", type=_when, help="the simulated present (default 2026-01-01T00:00:00Z)")
    p.add_argument("--horizon-rate-per-min", type=float, default=DEFAULT_RATE_PER_MIN["horizon"])
    p.add_argument("--horizon-burst", type=int)
    p.add_argument("--expert-rate-per-min", type=float, default=DEFAULT_RATE_PER_MIN["expert"])
    p.add_argument("--expert-burst", type=int)
    p.add_argument("--no-rate-limits", action="store_true", help="serve without rate limits")
    p.add_argument("--faults", type=_faults, help='JSON or @file: {"horizon.*": {"503": 0.05, "slow": 0.1}}')
    p.add_argument("--fault-seed", type=int)
    p.add_argument("--urls-file", type=Path, help="write the URLs as JSON here once serving")
    p.add_argument("--export", type=Path, metavar="DIR", help="write the Hubble NDJSON export to DIR and exit")
    p.add_argument("--verbose", action="store_true", help="log every request")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # `stellarmap sim -- --accounts 5` hands the separator through
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    from local.simulator.server import Simulator

    kwargs = dict(
        accounts=args.accounts, seed=args.seed, port=args.port, host=args.host,
        airdrop_children=args.airdrop_children, retention_days=args.retention_days,
        horizon_rate_per_min=args.horizon_rate_per_min, horizon_burst=args.horizon_burst,
        expert_rate_per_min=args.expert_rate_per_min, expert_burst=args.expert_burst,
        rate_limits=not args.no_rate_limits, faults=args.faults, fault_seed=args.fault_seed, verbose=args.verbose,
    )
    if args.now is not None:
        kwargs["now"] = args.now
    try:
        sim = Simulator(**kwargs)
        if args.export:
            manifest = sim.export_hubble(args.export)
            for name, info in manifest["networks"].items():
                for table, file in info["files"].items():
                    print(f"{name}/{table}: {file['rows']} rows -> {file['path']}")
            return 0
        sim.start()
    except (InvalidInput, ValueError, OSError) as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        if args.urls_file:
            args.urls_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = args.urls_file.with_suffix(args.urls_file.suffix + ".tmp")
            tmp.write_text(json.dumps({**sim.urls, "env": sim.env()}, indent=2) + "\n")
            tmp.replace(args.urls_file)
        public = sim.network("public")
        print(f"stellarmap simulator on {sim.base_url} ({public.size} accounts + {public.airdrop_size} airdrop children "
              f"per network, seed {args.seed}, now {iso_z(public.now)})", flush=True)
        for name, value in sim.env().items():
            print(f"  export {name}={value}", flush=True)
        print(f"  control and ground truth: {sim.base_url}/_sim/  (Ctrl-C stops)", flush=True)
        stop.wait()
    finally:
        sim.stop()
    return 0
