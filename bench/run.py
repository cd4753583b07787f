"""`make bench` / `make bench-short`: run every benchmark and write bench/results.md.

Each bench module exposes run(short) -> list[Result]; a module that fails is reported in the
table as failed (with its reason) and makes the run exit non-zero, so benchmarks cannot rot.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib
import sys
import time
import traceback
from pathlib import Path

from bench.common import Result, machine_line

BENCH_MODULES = (
    "bench.bench_store",
    "bench.bench_api_pipeline",
    "bench.bench_hubble",
    "bench.bench_lineage_read",
    "bench.bench_hva",
    "bench.bench_search",
    "bench.bench_site_render",
    "bench.bench_export",
    "bench.bench_stats_limits",
    "bench.bench_bulk_write",
    "bench.bench_hubble_sync",
)
RESULTS = Path(__file__).with_name("results.md")


def _fmt(v: float | None) -> str:
    if v is None:
        return "–"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 1:
        return f"{v:,.2f}"
    return f"{v:.4f}"


def render(results: list[Result], failures: list[tuple[str, str]], mode: str, seconds: float) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Run: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}, mode `{mode}`, {seconds:.0f} s in all.",
        f"Machine: {machine_line()}.",
        "",
        "Every baseline is an honest naive version measured in the same run; ratio > 1 means ours is better.",
        "",
        "| area | figure | value | unit | baseline (same run) | baseline value | ratio | goal | note |",
        "|---|---|---:|---|---|---:|---:|---|---|",
    ]
    for r in results:
        ratio = f"{r.ratio:,.1f}×" if r.ratio else "–"
        lines.append(
            f"| {r.area} | {r.figure} | {_fmt(r.value)} | {r.unit} | {r.baseline_name} | {_fmt(r.baseline_value)} | {ratio} | {r.goal} | {r.note} |"
        )
    for module, why in failures:
        lines.append(f"| {module} | FAILED | – | – | – | – | – | – | {why} |")
    lines.append("")
    lines.append("Reproduce: `make bench` (full) or `make bench-short` (the CI version).")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--short", action="store_true", help="the quick CI version")
    mode.add_argument("--full", action="store_true", help="the full version (default)")
    ap.add_argument("--only", nargs="*", help="module names to run (e.g. bench_store)")
    ap.add_argument("--output", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    short = bool(args.short)
    started = time.monotonic()
    results: list[Result] = []
    failures: list[tuple[str, str]] = []
    for name in BENCH_MODULES:
        if args.only and name.rsplit(".", 1)[1] not in args.only:
            continue
        t0 = time.monotonic()
        print(f"== {name} ({'short' if short else 'full'})", flush=True)
        try:
            module = importlib.import_module(name)
            got = module.run(short=short)
        except Exception as exc:
            traceback.print_exc()
            failures.append((name, f"{type(exc).__name__}: {exc}".replace("|", "/")[:300]))
            continue
        for r in got:
            print(f"   {r.figure}: {_fmt(r.value)} {r.unit} (baseline {_fmt(r.baseline_value)}; ratio {_fmt(r.ratio)})", flush=True)
        results.extend(got)
        print(f"   ({time.monotonic() - t0:.0f} s)", flush=True)
    args.output.write_text(render(results, failures, "short" if short else "full", time.monotonic() - started))
    print(f"wrote {args.output}")
    if failures:
        print(f"{len(failures)} benchmark module(s) failed: {', '.join(m for m, _ in failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
