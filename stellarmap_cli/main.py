"""`stellarmap`: the operators' command line (README "The stellarmap command").

Every command exits non-zero with a one-line reason when it fails; long ones show progress.
It acts on a deployment with the same code the functions run (common/), built by bootstrap.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

from common.config import PIPELINE_CONFIG_DEFAULTS, ConfigError, PipelineConfig, Settings

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


class CommandError(RuntimeError):
    """A failure the operator can act on: printed as one line, exit status 1."""


def command(name: str):
    def register(fn):
        COMMANDS[name] = fn
        return fn

    return register


def _console():
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)  # one-line summaries stay one line in logs


# What `make demo` (and `make dev`) write: the running stack's URLs and layout (store, queue file).
DEFAULT_STACK_FILE = ".local-data/stack-urls.json"
# Any of these (or a store flag) means the operator chose a deployment: the demo's file is not read.
DEPLOYMENT_VARIABLES = ("STELLARMAP_STORE", "STELLARMAP_SQLITE_PATH", "CASSANDRA_KEYSPACE", "CASSANDRA_CONTACT_POINTS",
                        "ASTRA_SECURE_BUNDLE_PATH", "STELLARMAP_QUEUE", "LOCAL_DISPATCHER_DB")


def _stack_settings(args: argparse.Namespace) -> dict:
    """Settings for the local stack that `make demo` started, read from its URLs file, so that `status`,
    `queue`, `config` and `export` act on the demo with no flags. Only when nothing else is chosen:
    --stack-file (or STELLARMAP_STACK_FILE) names the file; without it, DEFAULT_STACK_FILE is read if it
    exists, and not at all once a store flag or a deployment variable is given."""
    named = getattr(args, "stack_file", None) or os.environ.get("STELLARMAP_STACK_FILE")
    if not named:
        chosen = any(getattr(args, k, None) for k in ("store", "sqlite_path", "keyspace", "bundle"))
        if chosen or any(os.environ.get(v) for v in DEPLOYMENT_VARIABLES) or not Path(DEFAULT_STACK_FILE).is_file():
            return {}
    path = Path(named or DEFAULT_STACK_FILE)
    try:
        stack = json.loads(path.read_text())["stack"]
        store, dispatcher_db = stack["store"], stack["dispatcher_db"]
    except OSError as exc:
        raise CommandError(f"cannot read the stack file {path}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError):
        raise CommandError(f"{path} is not a stack file written by `make demo` (python -m local.stack)") from None
    explicit: dict = {"store_backend": store["backend"], "queue_backend": "local", "extra": {"LOCAL_DISPATCHER_DB": dispatcher_db}}
    hubble = stack.get("hubble") or {}
    if hubble.get("engine") == "duckdb" and hubble.get("duckdb_path"):  # the demo's embedded Hubble (`hubble sync`)
        explicit["hubble_engine"] = "duckdb"
        explicit["extra"]["HUBBLE_DUCKDB_PATH"] = hubble["duckdb_path"]
    if store["backend"] == "sqlite":
        if not Path(store["sqlite_path"]).is_file():
            raise CommandError(f"the demo's store {store['sqlite_path']} (from {path}) is gone: start `make demo` again, "
                               "or choose a store (--store, --sqlite-path, STELLARMAP_STORE)")
        explicit["sqlite_path"] = store["sqlite_path"]
    else:
        explicit["cassandra_keyspace"] = store["cassandra_keyspace"]
        if store.get("cassandra_contact_points"):
            explicit["cassandra_contact_points"] = tuple(store["cassandra_contact_points"])
            explicit["cassandra_port"] = int(store["cassandra_port"])
    print(f"stellarmap: using the local stack of {path} ({store['backend']} store, local queue)", file=sys.stderr)
    return explicit


def _settings(args: argparse.Namespace) -> Settings:
    explicit = _stack_settings(args)
    if getattr(args, "store", None):
        explicit["store_backend"] = args.store
    if getattr(args, "sqlite_path", None):
        explicit["sqlite_path"] = args.sqlite_path
    if getattr(args, "keyspace", None):
        explicit["cassandra_keyspace"] = args.keyspace
    if getattr(args, "bundle", None):
        explicit["astra_bundle_path"] = args.bundle
    return Settings.from_env(**explicit)


def _container(args: argparse.Namespace):
    from common.bootstrap import Container

    return Container(_settings(args))


# ------------------------------------------------------------------ migrate
@command("migrate")
def cmd_migrate(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from common.store import migrations

    console = _console()
    c = _container(args)
    store = c.store
    started = time.monotonic()
    counts = {"applied": 0, "already": 0, "errors": 0}
    verified = "not run"
    try:
        if not args.verify_only:
            with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), console=console) as bar:
                task = bar.add_task("checking applied migrations…", total=None)

                def step(m, i, n):
                    bar.update(task, description=f"applying {m.label}", completed=i, total=n)
                    bar.console.print(f"[{i + 1}/{n}] applying {m.label} ({len(m.statements)} statements)", markup=False)

                report = migrations.migrate(store, dry_run=args.dry_run, progress=step)
                if args.dry_run:
                    bar.remove_task(task)
                else:
                    bar.update(task, description="migrations applied", completed=len(report.applied),
                               total=len(report.applied) + len(report.not_applied))
            counts.update(applied=len(report.applied), already=len(report.already_applied), errors=1 if report.failed else 0)
            console.print(report.summary(), markup=False)
            if not report.ok:
                return 1
        if args.verify or args.verify_only:
            result = migrations.verify(store)
            if result.ok:
                verified = "ok"
                console.print(f"verify: ok ({len(result.applied)} migrations applied, every declared column present)")
            else:
                verified = "FAILED"
                counts["errors"] += 1
                cols = "; ".join(f"{t}: {', '.join(c)}" for t, c in sorted(result.missing_columns.items()))
                console.print(f"verify: FAILED; missing migrations: {', '.join(result.missing_migrations) or 'none'}; missing columns: {cols or 'none'}",
                              markup=False)
                return 1
        return 0
    except Exception:  # reported by main() as one line; the summary still counts it
        counts["errors"] += 1
        raise
    finally:
        store.close()
        would = " (dry run: nothing applied)" if args.dry_run else ""
        console.print(
            f"migrate: {counts['applied']} applied{would}, {counts['already']} already applied, {counts['errors']} error(s), "
            f"verify {verified}; done in {time.monotonic() - started:.1f}s",
            markup=False, highlight=False, soft_wrap=True,
        )


# ------------------------------------------------------------------ config
@command("config")
def cmd_config(args: argparse.Namespace) -> int:
    c = _container(args)
    store = c.store
    try:
        if args.action == "get":
            config = PipelineConfig.from_stored(store.get_config())
            values = dict(config.values)
            if args.key:
                if args.key not in PIPELINE_CONFIG_DEFAULTS:
                    raise CommandError(f"unknown config key {args.key!r}; known keys: {', '.join(sorted(PIPELINE_CONFIG_DEFAULTS))}")
                print(json.dumps(values[args.key]))
            else:
                print(json.dumps(values, indent=2, sort_keys=True))
            return 0
        if args.key is None or args.value is None:
            raise CommandError("usage: stellarmap config set KEY VALUE")
        try:
            raw = json.loads(args.value)
        except ValueError:
            raw = args.value
        try:
            store.set_config(args.key, raw, c.clock.now())
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        print(f"{args.key} = {json.dumps(store.get_config()[args.key])}")
        return 0
    finally:
        store.close()


# ------------------------------------------------------------------ bulk queueing
@command("queue")
def cmd_queue(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from common.bulk import bulk_enqueue

    console = _console()
    if args.file == "-":
        lines = sys.stdin.read().splitlines()
    else:
        try:
            with open(args.file, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError as exc:
            raise CommandError(f"cannot read {args.file}: {exc.strerror}") from None
    c = _container(args)
    started = time.monotonic()
    try:
        c.queue  # its settings are checked (ConfigError names the variable) before a progress bar or a write
        with Progress(TextColumn("enqueueing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task("queue", total=None)
            report = bulk_enqueue(
                c, args.network, lines, workers=args.workers, progress=lambda done, total: bar.update(task, completed=done, total=total)
            )
    finally:
        c.close()
    for err in report.errors[: args.max_errors]:
        console.print(f"line {err['line']}: {err['message']} ({err['code']})")
    if len(report.errors) > args.max_errors:
        console.print(f"… and {len(report.errors) - args.max_errors} more bad lines")
    console.print(
        f"{report.lines} lines, {report.valid} valid, {len(report.errors)} bad, {report.duplicates} duplicates; "
        f"{report.enqueued} enqueued, {report.already_queued_or_known} already queued or known; "
        f"{time.monotonic() - started:.1f}s"
    )
    return 2 if report.errors and args.strict else 0


# ------------------------------------------------------------------ export
@command("export")
def cmd_export(args: argparse.Namespace) -> int:
    import secrets

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from common.addresses import normalize_account_input
    from common.domain import InvalidInput
    from common.export import ExportNotFound, export_lineage

    console = _console()
    try:
        account = normalize_account_input(args.account)
    except InvalidInput as exc:
        raise CommandError(exc.message) from None
    fmt = args.format or os.path.splitext(args.output)[1].lstrip(".") or "json"
    c = _container(args)
    target = os.path.abspath(args.output)
    started = time.monotonic()
    done = {"children": 0}
    # Write beside the target and rename at the end: an interrupted export leaves nothing behind.
    # Mode 0666 less the umask, as any file the operator writes (mkstemp's 0600 would stay on the export).
    # Created inside the try: a Ctrl-C landing just after the create still removes it (the name is ours alone).
    tmp = os.path.join(os.path.dirname(target), f".export-{secrets.token_hex(8)}")
    try:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError as exc:
            raise CommandError(f"cannot write beside {target}: {exc.strerror}") from None
        with os.fdopen(fd, "w", encoding="utf-8") as out, Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
        ) as bar:
            task = bar.add_task("exporting")

            def progress(n: int) -> None:
                done["children"] = n
                bar.update(task, description=f"exported {n:,} children")

            chunks = export_lineage(c.store, args.network, account, fmt, progress=progress)
            for chunk in chunks:
                out.write(chunk)
        os.replace(tmp, target)
    except (InvalidInput, ExportNotFound) as exc:
        raise CommandError(str(exc)) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        c.close()
    console.print(
        f"wrote {target}: {done['children']:,} children ({fmt}, {os.path.getsize(target):,} bytes), 0 errors, "
        f"in {time.monotonic() - started:.1f}s",
        markup=False, highlight=False, soft_wrap=True,
    )
    return 0


# ------------------------------------------------------------------ scheduled jobs
@command("jobs")
def cmd_jobs(args: argparse.Namespace) -> int:
    from google.api_core import exceptions as gexc

    from stellarmap_cli.jobs import NETWORKS, SchedulerTarget, act

    target = SchedulerTarget.from_env(args.project, args.location, args.prefix, args.endpoint)
    networks = NETWORKS if args.network == "all" else (args.network,)
    try:
        for name, state in act(target, args.action, args.job, networks):
            print(f"{args.action}: {name} ({state})")
    except gexc.NotFound as exc:
        raise CommandError(f"job not found: {exc.message}") from None
    except gexc.GoogleAPICallError as exc:
        raise CommandError(f"Cloud Scheduler refused: {exc.message}") from None
    return 0


# ------------------------------------------------------------------ status
def collect_status(c) -> dict:
    """Health, queue depth and BigQuery spend against the budget, as plain data."""
    from common.store import migrations

    now = c.clock.now()
    out: dict = {"store": {"backend": c.settings.store_backend, "reachable": False}}
    store = c.store
    out["store"]["reachable"] = store.ping()
    if not out["store"]["reachable"]:
        return out
    v = migrations.verify(store)
    out["schema"] = {"ok": v.ok, "missing_migrations": v.missing_migrations, "missing_columns": v.missing_columns}
    config = PipelineConfig.from_stored(store.get_config()) if v.ok else PipelineConfig.from_stored({})
    month = f"{now:%Y-%m}"
    spent = store.month_spend_micro_usd(month) / 1e6 if v.ok else None
    budget = float(config["monthly_budget_usd"])
    out["bigquery"] = {"month": month, "spent_usd": spent, "budget_usd": budget}
    out["pipeline_mode"] = config["pipeline_mode"]
    queues = {}
    for name in ("lineage", "api-fallback"):
        try:
            queues[name] = c.queue.depth(name)
        except Exception as exc:  # the operator still gets the rest of the status
            queues[name] = f"unavailable: {type(exc).__name__}: {exc}"
    out["queues"] = queues
    out["cron"] = {}
    for job in ("hva_recalc", "reset_stale"):
        runs = store.get_cron_runs(job, 1) if v.ok else []
        out["cron"][job] = {"last_run": runs[0].run_at.isoformat(), "status": runs[0].status} if runs else None
    out["hubble_sync"] = _sync_status(store) if v.ok else None
    return out


def _sync_status(store) -> dict:
    """Each network's Hubble sync (GET /stats/sync's body), or the reason it could not be read."""
    from common.domain import NETWORKS
    from common.read_models.sync import sync_body

    out: dict = {}
    for network in NETWORKS:
        try:
            out[network] = sync_body(network, store.get_sync_state(network))
        except Exception as exc:  # the operator still gets the rest of the status
            out[network] = f"unavailable: {type(exc).__name__}: {exc}"
    return out


@command("status")
def cmd_status(args: argparse.Namespace) -> int:
    from rich.table import Table

    c = _container(args)
    try:
        status = collect_status(c)
    finally:
        c.close()
    if args.json:
        print(json.dumps(status, indent=2, default=str))
    else:
        table = Table(title="StellarMap status", show_header=False)
        table.add_row("store", f"{status['store']['backend']}: {'reachable' if status['store']['reachable'] else 'UNREACHABLE'}")
        if "schema" in status:
            s = status["schema"]
            table.add_row("schema", "current" if s["ok"] else f"BEHIND: {', '.join(s['missing_migrations'])}")
            table.add_row("pipeline mode", status["pipeline_mode"])
            b = status["bigquery"]
            spent = "unknown" if b["spent_usd"] is None else f"${b['spent_usd']:.2f}"
            table.add_row("BigQuery spend", f"{spent} of ${b['budget_usd']:.2f} ({b['month']})")
            for q, depth in status["queues"].items():
                table.add_row(f"queue {q}", str(depth))
            for job, run in status["cron"].items():
                table.add_row(f"job {job}", "never ran" if run is None else f"{run['status']} at {run['last_run']}")
            from common.read_models.sync import sync_line

            for network, body in (status["hubble_sync"] or {}).items():
                table.add_row(f"Hubble sync {network}", body if isinstance(body, str) else sync_line(body))
        _console().print(table)
    healthy = status["store"]["reachable"] and status.get("schema", {}).get("ok", False)
    return 0 if healthy else 1


# ------------------------------------------------------------------ local tooling
@command("sim")
def cmd_sim(args: argparse.Namespace) -> int:
    from local.simulator.__main__ import main as sim_main

    return sim_main(args.rest) or 0


@command("demo")
def cmd_demo(args: argparse.Namespace) -> int:
    from local.stack import main as stack_main

    return stack_main(args.rest) or 0


HUBBLE_ACTIONS = {"load": "load a Hubble export (NDJSON/Parquet, or raw stellar-etl) into the embedded Hubble (DuckDB) or BigQuery",
                  "sync": "sync the whole network's creation graph from Hubble into the store (budgeted; --dry-run prints the cost)"}


@command("hubble")
def cmd_hubble(args: argparse.Namespace) -> int:
    from local.hubble_load import main as load_main

    rest = list(args.rest)
    if not rest or rest[0] in ("-h", "--help"):
        print("usage: stellarmap hubble load [--db PATH | --bigquery --project P [--endpoint URL]] [--network N] [--table T] SOURCE")
        print("       stellarmap [store options] hubble sync --network public|testnet [--since DATE] [--dry-run] [--local] [--duckdb PATH]\n")
        for action, text in HUBBLE_ACTIONS.items():
            print(f"  {action:<6} {text}")
        print("\n`stellarmap hubble load --help` and `stellarmap hubble sync --help` list every option.")
        return 0 if rest else 2
    if rest[0] not in HUBBLE_ACTIONS:
        raise CommandError(f"unknown hubble action {rest[0]!r}; actions: {', '.join(HUBBLE_ACTIONS)}")
    if rest[0] == "sync":
        return hubble_sync_command(args, rest[1:])
    return load_main(rest[1:], prog="stellarmap hubble load") or 0


def _sync_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stellarmap hubble sync", description=(
        "Sync the whole network's creation graph (every create_account and account_merge) from Hubble into the store: "
        "one pruned query per closed_at range, then accounts_current. Every query is dry-run first and held to "
        "HUBBLE_SYNC_BUDGET_USD. Without --local the ranges are queued (hubble-sync queue) for the hubble_sync function."))
    p.add_argument("--network", required=True, choices=["public", "testnet"])
    p.add_argument("--since", help="first day to sync, YYYY-MM-DD (default: the network's first ledger)")
    p.add_argument("--mode", choices=["full", "daily"], default="full", help="daily: from the last synced closed_at, minus a day")
    p.add_argument("--dry-run", action="store_true", help="print the bytes and dollars the sync would cost; change nothing")
    p.add_argument("--local", action="store_true", help="run every range here, one after another, instead of queueing them")
    p.add_argument("--duckdb", metavar="PATH", help="the embedded Hubble to sync from (sets HUBBLE_ENGINE=duckdb, HUBBLE_DUCKDB_PATH)")
    p.add_argument("--json", action="store_true", help="print the plan's answer as JSON")
    return p


def hubble_sync_command(args: argparse.Namespace, argv: list[str]) -> int:
    from common.domain import InvalidInput
    from common.handlers import hubble_sync

    opts = _sync_parser().parse_args(argv)
    settings = _settings(args)
    if opts.duckdb:
        if not Path(opts.duckdb).is_file():
            raise CommandError(f"no embedded Hubble at {opts.duckdb}: load one with `stellarmap hubble load --db {opts.duckdb} SOURCE`")
        import dataclasses

        settings = dataclasses.replace(settings, hubble_engine="duckdb", extra={**settings.extra, "HUBBLE_DUCKDB_PATH": opts.duckdb})
    from common.bootstrap import Container

    overrides = {}
    if opts.local:
        from common.queue.in_process import InProcessQueue

        overrides["queue"] = InProcessQueue()
    c = Container(settings, **overrides)
    console = _console()
    started = time.monotonic()
    try:
        if settings.hubble_engine == "none":
            raise CommandError("HUBBLE_ENGINE is none: give --duckdb PATH, or HUBBLE_ENGINE=bigquery with BIGQUERY_PROJECT")
        try:
            since = hubble_sync.plan_sql.parse_since(opts.since)
            if not opts.dry_run:
                c.queue  # the queue's settings are checked before anything is written
            answer = hubble_sync.plan(c, opts.network, opts.mode, since, opts.dry_run)
        except InvalidInput as exc:
            raise CommandError(f"{exc.message} ({exc.code})") from None
        except hubble_sync.SyncRefused as exc:
            raise CommandError(f"{exc.message} ({exc.code})") from None
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        if opts.json:
            print(json.dumps(answer, indent=2))
        console.print(f"{answer['network']} {answer['mode']} sync {answer['sync_id']}: {answer['ranges']} ranges "
                      f"({answer['ranges_to_run']} to run) from {answer['start']} to {answer['end']}; "
                      f"dry run: {answer['bytes']:,} bytes, {answer['bytes_billed']:,} billable, ${answer['cost_usd']} "
                      f"(budget ${answer['budget_usd']})")
        if opts.dry_run:
            return 0
        if not opts.local:
            console.print(f"queued {answer.get('enqueued', 0)} range task(s) on the hubble-sync queue; "
                          f"`stellarmap status` shows the sync's progress; {time.monotonic() - started:.1f}s")
            return 0
        return _run_sync_here(c, opts.network, answer, console, started)
    finally:
        c.close()


def _run_sync_here(c, network: str, answer: dict, console, started: float) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from common.handlers import hubble_sync

    failures: list[str] = []

    def run(payload: dict) -> None:
        kind = hubble_sync.task_kind(payload)
        if kind == "range":
            out = hubble_sync.run_range(c, *hubble_sync.parse_range(payload))
        else:
            out = hubble_sync.load_accounts(c, *hubble_sync.parse_accounts(payload))
        if out.get("status") in ("FAILED", "RETRY"):
            failures.append(f"{payload.get('start') or 'accounts'}: {out.get('reason')}")
        bar.update(task, advance=1 if kind == "range" else 0, description=f"{kind} {payload.get('start') or ''}")

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("ranges", total=answer["ranges_to_run"])
        c.queue.drain({hubble_sync.SYNC_QUEUE: run})
    state = c.store.get_sync_state(network)
    console.print(f"{network} sync {state.sync_id}: {state.status}, {state.ranges_done}/{state.ranges_total} ranges, synced through "
                  f"{state.synced_through:%Y-%m-%d %H:%M:%S}Z, {state.edges:,} creation edges, {state.merges:,} merges, "
                  f"{state.accounts:,} accounts, {state.bytes_billed:,} bytes billed (${state.spent_micro_usd / 1e6:.6f}); "
                  f"{len(failures)} failed; {time.monotonic() - started:.1f}s")
    for line in failures[:10]:
        console.print(f"failed: {line}")
    return 1 if failures or state.status != "DONE" else 0


def _count(text: str) -> int:
    """A whole number written in ASCII digits (argparse's int() would read '١٦' as 16)."""
    if not (text.isascii() and text.isdigit()) or int(text) > 1_000_000:
        raise argparse.ArgumentTypeError(f"must be a whole number (0-9 digits), got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stellarmap", description="Operate a StellarMap deployment.")
    p.add_argument("--store", choices=["sqlite", "cassandra"], help="store backend (default: STELLARMAP_STORE or sqlite)")
    p.add_argument("--sqlite-path", help="SQLite file (default: STELLARMAP_SQLITE_PATH)")
    p.add_argument("--keyspace", help="Cassandra/Astra keyspace (default: CASSANDRA_KEYSPACE)")
    p.add_argument("--bundle", help="Astra secure-connect bundle (default: ASTRA_SECURE_BUNDLE_PATH; token from ASTRA_TOKEN)")
    p.add_argument("--stack-file", help=f"act on the local stack described by this URLs file (default: STELLARMAP_STACK_FILE, "
                                        f"else {DEFAULT_STACK_FILE} when it exists and no store setting is given)")
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("migrate", help="apply the cql/ migrations (records each with a checksum)")
    m.add_argument("--dry-run", action="store_true", help="say what would be applied, change nothing")
    m.add_argument("--verify", action="store_true", help="after applying, compare system_schema with the files")
    m.add_argument("--verify-only", action="store_true", help="only verify, apply nothing")

    cfg = sub.add_parser("config", help="get or set run-time pipeline configuration")
    cfg.add_argument("action", choices=["get", "set"])
    cfg.add_argument("key", nargs="?")
    cfg.add_argument("value", nargs="?")

    q = sub.add_parser("queue", help="bulk-enqueue accounts from a file (one per line) or stdin")
    q.add_argument("--file", required=True, help="path, or - for stdin")
    q.add_argument("--network", default="public", choices=["public", "testnet"])
    q.add_argument("--workers", type=_count, default=16, help="parallel enqueues")
    q.add_argument("--max-errors", type=_count, default=50, help="bad lines to print")
    q.add_argument("--strict", action="store_true", help="exit 2 when any line is bad")

    e = sub.add_parser("export", help="export an account's whole lineage to a file")
    e.add_argument("--account", required=True)
    e.add_argument("--network", default="public", choices=["public", "testnet"])
    e.add_argument("--format", choices=["json", "csv", "graphml"], help="default: from the file extension")
    e.add_argument("--output", "-o", required=True)

    j = sub.add_parser("jobs", help="run, pause or resume a scheduled job (Cloud Scheduler)")
    j.add_argument("action", choices=["run", "pause", "resume"])
    from stellarmap_cli.jobs import JOBS

    j.add_argument("job", choices=list(JOBS))
    j.add_argument("--network", default="all", choices=["all", "public", "testnet"])
    j.add_argument("--project", help="default: CLOUD_SCHEDULER_PROJECT or CLOUD_TASKS_PROJECT")
    j.add_argument("--location", help="default: CLOUD_SCHEDULER_LOCATION or CLOUD_TASKS_LOCATION")
    j.add_argument("--prefix", help="job name prefix (terraform name_prefix; default stellarmap)")
    j.add_argument("--endpoint", help="API endpoint override, e.g. a local server (CLOUD_SCHEDULER_ENDPOINT)")

    st = sub.add_parser("status", help="health, queue depth, spend against the budget and the Hubble sync")
    st.add_argument("--json", action="store_true", help="machine-readable output")

    for name, helptext in (
        ("sim", "run the local Stellar network simulator"),
        ("demo", "run the whole local stack"),
        ("hubble", "hubble load|sync: load a Hubble export into the embedded Hubble or BigQuery; sync the network from Hubble"),
    ):
        s = sub.add_parser(name, help=helptext, add_help=False)
        s.add_argument("rest", nargs=argparse.REMAINDER)
    return p


PASS_THROUGH = ("sim", "demo", "hubble")  # their own parsers own every option after the command


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASS_THROUGH:
        try:
            return COMMANDS[argv[0]](argparse.Namespace(command=argv[0], rest=argv[1:]))
        except CommandError as exc:
            print(f"stellarmap {argv[0]}: {exc}", file=sys.stderr)
            return 1
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (CommandError, ConfigError) as exc:
        print(f"stellarmap {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"stellarmap {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line, never a traceback, for operators
        print(f"stellarmap {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
