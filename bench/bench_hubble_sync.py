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
  now, the day after a full sync) against the full sync's, at the network's end and on an
  ordinary day a month before it. Goal: at most 1/1000.
No timing is asserted anywhere; this only reports.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import tempfile
from pathlib import Path

from bench.common import Result, run_cli

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
        c = Container(Settings.from_env(env={}), SettableClock(now), store=store, queue=None, hubble=hubble,
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
        days = (now - plan_sql.sync_start("public", None)).days

        def daily_bytes(end: dt.datetime) -> int:
            """A daily sync ending at `end`, the day after the last one: [end - 2 days, end)."""
            synced_through = end - dt.timedelta(days=1)
            return sum(hubble.dry_run(plan_sql.range_query(tables, "public", a, b)).bytes_processed
                       for a, b in plan_sql.plan_ranges(synced_through - plan_sql.DAILY_OVERLAP, end))

        last = daily_bytes(now.replace(microsecond=0))
        typical = daily_bytes(now.replace(microsecond=0) - dt.timedelta(days=30))
        results.append(Result(area, "daily increment dry-run bytes (the network's last 2 days)", last, "B",
                              "the full sync (history part)", history, higher_is_better=False, goal="<= 1/1000 of the full sync",
                              note=f"1/{history / max(last, 1):,.0f}: the simulated network ends with a burst of creations on its "
                                   f"last day; its history spans {days:,} days (an even spread would give 1/{days / 2:,.0f})"))
        results.append(Result(area, "daily increment dry-run bytes (2 days, a month before the end)", typical, "B",
                              "the full sync (history part)", history, higher_is_better=False, goal="<= 1/1000 of the full sync",
                              note=f"1/{history / max(typical, 1):,.0f} on an ordinary day of the simulated history"))

        hubble.close()
    return results


def main(argv: list[str] | None = None) -> int:
    return run_cli(run, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
