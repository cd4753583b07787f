"""`stellarmap`: the operators' command line (ARCHITECTURE section 8).

Every command exits non-zero with a one-line reason when it fails; long ones show progress.
It acts on a deployment with the same code the functions run (common/), built by bootstrap.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
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

    return Console(stderr=True)


def _settings(args: argparse.Namespace) -> Settings:
    explicit = {}
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
    from common.store import migrations

    console = _console()
    c = _container(args)
    store = c.store
    started = time.monotonic()
    try:
        if not args.verify_only:
            with console.status("checking applied migrations…"):
                report = migrations.migrate(
                    store,
                    dry_run=args.dry_run,
                    progress=lambda m, i, n: console.print(f"[{i + 1}/{n}] applying {m.label} ({len(m.statements)} statements)"),
                )
            console.print(report.summary())
            if not report.ok:
                return 1
        if args.verify or args.verify_only:
            result = migrations.verify(store)
            if result.ok:
                console.print(f"verify: ok ({len(result.applied)} migrations applied, every declared column present)")
            else:
                cols = "; ".join(f"{t}: {', '.join(c)}" for t, c in sorted(result.missing_columns.items()))
                console.print(f"verify: FAILED; missing migrations: {', '.join(result.missing_migrations) or 'none'}; missing columns: {cols or 'none'}")
                return 1
        console.print(f"done in {time.monotonic() - started:.1f}s")
        return 0
    finally:
        store.close()


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


# ------------------------------------------------------------------ local tooling
@command("sim")
def cmd_sim(args: argparse.Namespace) -> int:
    from local.simulator.__main__ import main as sim_main

    return sim_main(args.rest) or 0


@command("demo")
def cmd_demo(args: argparse.Namespace) -> int:
    from local.stack import main as stack_main

    return stack_main(args.rest) or 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stellarmap", description="Operate a StellarMap deployment.")
    p.add_argument("--store", choices=["sqlite", "cassandra"], help="store backend (default: STELLARMAP_STORE or sqlite)")
    p.add_argument("--sqlite-path", help="SQLite file (default: STELLARMAP_SQLITE_PATH)")
    p.add_argument("--keyspace", help="Cassandra/Astra keyspace (default: CASSANDRA_KEYSPACE)")
    p.add_argument("--bundle", help="Astra secure-connect bundle (default: ASTRA_SECURE_BUNDLE_PATH; token from ASTRA_TOKEN)")
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("migrate", help="apply the cql/ migrations (records each with a checksum)")
    m.add_argument("--dry-run", action="store_true", help="say what would be applied, change nothing")
    m.add_argument("--verify", action="store_true", help="after applying, compare system_schema with the files")
    m.add_argument("--verify-only", action="store_true", help="only verify, apply nothing")

    cfg = sub.add_parser("config", help="get or set run-time pipeline configuration")
    cfg.add_argument("action", choices=["get", "set"])
    cfg.add_argument("key", nargs="?")
    cfg.add_argument("value", nargs="?")

    for name, helptext in (("sim", "run the local Stellar network simulator"), ("demo", "run the whole local stack")):
        s = sub.add_parser(name, help=helptext, add_help=False)
        s.add_argument("rest", nargs=argparse.REMAINDER)
    return p


def main(argv: list[str] | None = None) -> int:
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
