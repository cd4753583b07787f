"""The network-wide Hubble sync's cost (issue 15, item 6), on the embedded engine's dry runs
(BigQuery's logical bytes of the referenced columns in the unpruned day partitions).

Figures, each beside a baseline measured in the same run on the same data:
- the full sync's dry-run bytes (every closed_at range query plus the accounts_current read, as
  `hubble sync --dry-run` sums them) against ONE whole-history per-account lineage query
  (common/hubble/sql.lineage_query from the network's start to now, joined with accounts_current:
  what the Hubble path asked per account before). Goal: at most 1.5x.
- the same, the history part only (the range queries) against that query's history part (the
  lineage SQL without its accounts_current join);
- a daily increment's bytes (the range from the last synced closed_at minus a day of overlap to
  now, the day after a full sync) against the full sync's. Goal: at most 1/1000.
- the time to write the whole network through the handler (plan, ranges, accounts_current) on
  SQLite, against the same edges written one row at a time by the per-account store calls.
No timing is asserted anywhere; this only reports.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import tempfile
import time
from pathlib import Path

from bench.common import Result

UTC = dt.timezone.utc

LINEAGE_HISTORY_ONLY = """\
SELECT op_id, closed_at, funder, starting_balance
FROM `{operations}`
WHERE closed_at >= @lo AND closed_at < @hi
  AND type = 0 AND successful
  AND account = @account
"""


def run(short: bool = False) -> list[Result]:
    from common.bootstrap import Container
    from common.clock import SettableClock
    from common.config import PipelineConfig, Settings
    from common.handlers import hubble_sync
    from common.hubble import sql as S
    from common.hubble import sync as plan_sql
    from common.hubble.duckdb_engine import DuckDBHubble
    from common.queue.in_process import InProcessQueue
    from common.store import migrations
    from common.store.sqlite import SQLiteStore
    from local.hubble_load import load_duckdb
    from local.simulator.hubble import export
    from local.simulator.network import Network, NetworkConfig

    area = "hubble sync (embedded DuckDB)"
    accounts, airdrop = (2_000, 10_000) if short else (20_000, 100_000)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-hubble-sync-") as tmp:
        root = Path(tmp)
        network = Network(NetworkConfig(accounts=accounts, airdrop_children=airdrop, seed=5))
        export({"public": network}, root / "export")
        load_duckdb(root / "hubble.duckdb", root / "export", "public")
        hubble = DuckDBHubble(root / "hubble.duckdb")
        tables = hubble.tables("public")
        now = network.now
        store = SQLiteStore(root / "store.sqlite3")
        migrations.migrate(store)
        c = Container(Settings.from_env(env={}), SettableClock(now), store=store, queue=InProcessQueue(), hubble=hubble,
                      pipeline_config=PipelineConfig.from_stored({}))
        dry = hubble_sync.plan(c, "public", "full", None, dry_run=True)
        ranges = plan_sql.plan_ranges(plan_sql.sync_start("public", None), now.replace(microsecond=0))
        history = sum(hubble.dry_run(plan_sql.range_query(tables, "public", a, b)).bytes_processed for a, b in ranges)
        someone = network.pick("chain", limit=1)["accounts"][0]["account"]
        lineage = S.lineage_query(tables, "public", someone, now)
        lineage_bytes = hubble.dry_run(lineage).bytes_processed
        lineage_history = hubble.dry_run(dataclasses.replace(
            lineage, sql=LINEAGE_HISTORY_ONLY.format(operations=tables.operations),
            params=tuple(p for p in lineage.params if p.name in ("account", "lo", "hi")), tables=(tables.operations,),
        )).bytes_processed
        shape = (f"{network.total:,} accounts ({airdrop:,}-child airdrop), {len(ranges)} ranges of 30 days; "
                 f"sync {dry['bytes']:,} B vs lineage {lineage_bytes:,} B")
        results.append(Result(area, "full sync dry-run bytes (ranges + accounts_current)", dry["bytes"], "B",
                              "one whole-history lineage query (+ accounts_current join)", lineage_bytes,
                              higher_is_better=False, goal="<= 1.5x the single query", note=shape))
        results.append(Result(area, "full sync dry-run bytes, history only (range queries)", history, "B",
                              "one whole-history lineage query, history only", lineage_history, higher_is_better=False,
                              goal="<= 1.5x the single query",
                              note="the sync reads 9 columns (+ ledger_sequence, into, account, type for merges); the lineage query 7"))
        synced_through = now.replace(microsecond=0) - dt.timedelta(days=1)
        daily = sum(hubble.dry_run(plan_sql.range_query(tables, "public", a, b)).bytes_processed
                    for a, b in plan_sql.plan_ranges(synced_through - plan_sql.DAILY_OVERLAP, now.replace(microsecond=0)))
        days = (now - plan_sql.sync_start("public", None)).days
        results.append(Result(area, "daily increment dry-run bytes (2 day partitions)", daily, "B",
                              "the full sync (history part)", history, higher_is_better=False, goal="<= 1/1000 of the full sync",
                              note=f"history spans {days:,} days; the simulated network's last days are denser than its average day"
                                   f" (1/{history / max(daily, 1):,.0f}); a day with the average density would be 1/{days / 2:,.0f}"))

        # write speed: the handler's bulk path against per-row store calls for the same edges
        t0 = time.perf_counter()
        hubble_sync.plan(c, "public", "full", None)
        c.queue.drain({hubble_sync.SYNC_QUEUE: lambda p: _task(c, hubble_sync, p)})
        sync_s = time.perf_counter() - t0
        state = store.get_sync_state("public")
        if state.status != "DONE" or state.edges != sum(len(network.creation_events(i)) for i in range(network.total)):
            raise RuntimeError(f"the sync did not finish with every edge: {state}")
        naive_store = SQLiteStore(root / "naive.sqlite3")
        migrations.migrate(naive_store)
        sample = min(state.edges, 5_000)
        t0 = time.perf_counter()
        _per_row(naive_store, store, sample)
        per_row_s = (time.perf_counter() - t0) / sample * state.edges
        results.append(Result(area, "whole-network sync write time (SQLite, plan + ranges + accounts_current)", sync_s, "s",
                              "per-row add_creation_event + add_children + put_lineage (extrapolated)", per_row_s,
                              higher_is_better=False, note=f"{state.edges:,} edges, {state.accounts:,} accounts; per-row from {sample:,} edges"))
        hubble.close()
    return results


def _task(c, hubble_sync, payload: dict) -> None:
    kind = hubble_sync.task_kind(payload)
    out = hubble_sync.run_range(c, *hubble_sync.parse_range(payload)) if kind == "range" else \
        hubble_sync.load_accounts(c, *hubble_sync.parse_accounts(payload))
    if out.get("status") not in ("DONE", "SKIPPED", "CONTINUED"):
        raise RuntimeError(f"sync task failed: {out}")


def _per_row(naive_store, synced_store, sample: int) -> None:
    """The same edges written with the per-account calls, one row at a time."""
    from common.domain import ChildEdge, CreationEvent

    for row in synced_store.scan("creation_events", "public", sample):
        naive_store.add_creation_event(CreationEvent(
            row["network_name"], row["stellar_account"], row["created_at"], row["operation_id"], row["creator"],
            row["starting_balance"], None, "BIGQUERY", row.get("ledger")))
        naive_store.add_children("public", row["creator"], [ChildEdge("public", row["creator"], row["stellar_account"],
                                                                       row["created_at"], row["operation_id"], row["starting_balance"])])
        naive_store.put_lineage("public", row["stellar_account"], stellar_creator_account=row["creator"],
                                account_creation_date=row["created_at"], creation_ledger=row.get("ledger"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_hubble_sync")
    parser.add_argument("--short", action="store_true")
    args = parser.parse_args(argv)
    for r in run(args.short):
        ratio = f"{r.ratio:.2f}x" if r.ratio else "-"
        print(f"{r.figure}: {r.value:,.2f} {r.unit}  |  {r.baseline_name}: {r.baseline_value:,.2f}  ({ratio})"
              + (f"\n    {r.note}" if r.note else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
