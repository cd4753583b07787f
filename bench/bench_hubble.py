"""The Hubble path on the embedded engine (DuckDB over the simulator's Hubble export).

Figures, each beside a naive baseline measured in the same run on the same data:
- queries per new account (lineage + its children): ours is process_account's count (the
  accounts_current row, the lives query, then keyset pages); the naive path asks for the
  creator, the accounts_current row and each page of children separately (OFFSET paging);
- bytes scanned by a new account's lineage (creator) query, as the engine's dry run reports them
  (BigQuery's logical bytes of the referenced columns in the unpruned partitions): ours is pruned to
  a closed_at window around the ledger of its sequence number (common/hubble/lineage.py); the
  baseline is the same query over the whole history, 2015 to now, as the Hubble path asked before;
- bytes for the lineage and the accounts_current row together, against the whole-history query
  that joined them (the one process_account ran before);
- bytes per children page and per new account: ours filters closed_at with the narrowest known
  range; the naive queries have no partition filter;
- the time to page an account's 100,000 children (ten 10,000-row pages): keyset pages with
  partition filters vs OFFSET pages without.
No timing is asserted anywhere; this only reports.
"""
from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path

from bench.common import Result, run_cli
from common.queue.port import TaskQueue, task_name

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 1, 1, tzinfo=UTC)
PAGE = 10_000

NAIVE_CREATOR = """\
SELECT funder, closed_at, op_id, starting_balance
FROM `{operations}`
WHERE type = 0 AND successful AND account = @account
ORDER BY closed_at, op_id
"""
NAIVE_STATE = """\
SELECT balance, flags, home_domain, master_weight, threshold_low, threshold_medium, threshold_high, deleted, batch_insert_ts
FROM `{accounts}`
WHERE account_id = @account
"""
NAIVE_CHILDREN = """\
SELECT account, op_id, closed_at, starting_balance
FROM `{operations}`
WHERE type = 0 AND successful AND funder = @account
ORDER BY closed_at, op_id
LIMIT @page_size OFFSET @offset
"""


class _CountingQueue(TaskQueue):
    """Takes the tasks process_account enqueues (expansion, enrichment) without running them."""

    def __init__(self):
        self.names: set[str] = set()

    def enqueue(self, queue, payload, *, purpose, generation=0, delay_s=0.0):
        name = task_name(payload["network"], payload["account"], purpose, generation)
        fresh = name not in self.names
        self.names.add(name)
        return fresh

    def depth(self, queue):
        return None

    def has_live_task(self, queue, name):
        return name in self.names


def _recording_class():
    from common.hubble.port import Hubble

    class Recording(Hubble):
        """Delegates to the engine; keeps (purpose, bytes) of every query it runs."""

        engine = "recording"

        def __init__(self, inner):
            self.inner, self.runs = inner, []

        def tables(self, network):
            return self.inner.tables(network)

        def dry_run(self, query):
            return self.inner.dry_run(query)

        def run(self, query, max_bytes_billed=None, job_id=None):
            result = self.inner.run(query, max_bytes_billed, job_id)
            self.runs.append((query.purpose, result.bytes_processed))
            return result

    return Recording


def _Recording(inner):  # noqa: N802 - built lazily: importing the port is not free for `bench.run --only`
    return _recording_class()(inner)


def _naive_account(hubble, tables, account: str) -> dict:
    """Queries and bytes scanned of the naive path for one new account, by kind of question."""
    from common.hubble.port import HubbleQuery, QueryParam

    tally = {"queries": 0, "lineage_bytes": 0, "page_bytes": 0, "pages": 0}

    def go(sql: str, params: tuple, table: tuple, kind: str) -> list[dict]:
        q = HubbleQuery(sql, params, "naive", table)
        tally[kind] += hubble.dry_run(q).bytes_processed
        tally["queries"] += 1
        return hubble.run(q).rows

    who = (QueryParam("account", "STRING", account),)
    go(NAIVE_CREATOR.format(operations=tables.operations), who, (tables.operations,), "lineage_bytes")
    go(NAIVE_STATE.format(accounts=tables.accounts), who, (tables.accounts,), "lineage_bytes")
    offset = 0
    while True:
        rows = go(NAIVE_CHILDREN.format(operations=tables.operations),
                  who + (QueryParam("page_size", "INT64", PAGE), QueryParam("offset", "INT64", offset)), (tables.operations,), "page_bytes")
        tally["pages"] += 1
        offset += len(rows)
        if len(rows) < PAGE:
            return tally


def _page_ours(hubble, tables, account: str, first: dt.datetime) -> list[str]:
    """Keyset pages as process_account asks for them (rows fetched, not turned into edges)."""
    from common.hubble import sql as S

    cursor, seen = S.ChildCursor(first, -1), []
    while True:
        rows = hubble.run(S.children_query(tables, "public", account, cursor, NOW, PAGE)).rows  # PAGE + 1 rows at most
        seen += [row["account"] for row in rows[:PAGE]]
        if len(rows) <= PAGE:
            return seen
        cursor = S.ChildCursor(rows[PAGE - 1]["closed_at"], rows[PAGE - 1]["op_id"])


def _page_naive(hubble, tables, account: str) -> list[str]:
    from common.hubble.port import HubbleQuery, QueryParam

    seen, offset = [], 0
    while True:
        q = HubbleQuery(NAIVE_CHILDREN.format(operations=tables.operations),
                        (QueryParam("account", "STRING", account), QueryParam("page_size", "INT64", PAGE), QueryParam("offset", "INT64", offset)),
                        "naive", (tables.operations,))
        rows = hubble.run(q).rows
        seen += [row["account"] for row in rows]
        offset += len(rows)
        if len(rows) < PAGE:
            return seen


def run(short: bool = False) -> list[Result]:
    from common import pipeline
    from common.bootstrap import Container
    from common.clock import SettableClock
    from common.config import PipelineConfig, Settings
    from common.handlers.process_account import process
    from common.hubble import sql as S
    from common.hubble.duckdb_engine import DuckDBHubble
    from common.store import migrations
    from common.store.sqlite import SQLiteStore
    from local.hubble_load import load_duckdb
    from local.simulator.hubble import export
    from local.simulator.network import Network, NetworkConfig

    area = "hubble (embedded DuckDB)"
    sample_size = 60 if short else 300
    with tempfile.TemporaryDirectory(prefix="bench-hubble-") as tmp:
        root = Path(tmp)
        network = Network(NetworkConfig(accounts=2_000, airdrop_children=100_000, seed=3))
        export({"public": network}, root / "export")
        load_duckdb(root / "hubble.duckdb", root / "export", "public")
        hubble = DuckDBHubble(root / "hubble.duckdb")
        tables = hubble.tables("public")
        airdrop = network.pick("airdrop", limit=1)["accounts"][0]["account"]

        accounts: list[str] = []
        for kind in ("merged", "chain", "exchange", "issuer", "failed_target", "hub", "recent", "old", "leaf", "ordinary"):
            for entry in network.pick(kind, limit=sample_size)["accounts"]:
                if entry["account"] not in accounts and entry["account"] != airdrop and len(accounts) < sample_size:
                    accounts.append(entry["account"])

        store = SQLiteStore(root / "store.sqlite3")
        migrations.migrate(store)
        recorder = _Recording(hubble)
        c = Container(Settings.from_env(env={}), SettableClock(NOW), store=store, queue=_CountingQueue(), hubble=recorder,
                      pipeline_config=PipelineConfig.from_stored({}))
        ours_queries = 0
        per_account: dict[str, int] = {}
        for account in accounts:
            recorder.runs.clear()
            pipeline.request_lineage(c, "public", account)
            out = process(c, "public", account)
            if out.status != "COMPLETE":
                raise RuntimeError(f"{account} did not complete on the Hubble path: {out}")
            ours_queries += out.queries
            per_account[account] = sum(nbytes for purpose, nbytes in recorder.runs if purpose == "lineage")
        ledger = store.get_spend_ledger(NOW.strftime("%Y-%m"), 1000)
        store.close()
        if len(ledger) != ours_queries:
            raise RuntimeError(f"the ledger holds {len(ledger)} queries, process_account reported {ours_queries}")
        ours_lineage = sum(e["bytes_processed"] for e in ledger if e["purpose"] == "lineage")
        ours_state = sum(e["bytes_processed"] for e in ledger if e["purpose"] == "state")
        ours_pages = [e["bytes_processed"] for e in ledger if e["purpose"] == "children"]
        whole_lives = whole_joined = 0
        ratios = []
        for account in accounts:  # the same questions over the whole history, as asked before
            whole = hubble.dry_run(S.lives_query(tables, "public", account, S.NETWORK_START["public"], NOW)).bytes_processed
            whole_lives += whole
            ratios.append((whole / max(per_account[account], 1), account, per_account[account], whole))
            whole_joined += hubble.dry_run(S.lineage_query(tables, "public", account, NOW)).bytes_processed
        ratios.sort()
        _, _, median_ours, median_whole = ratios[len(ratios) // 2]
        special = ("merged", "merged_gone", "bump_sequence")
        wide = [next((k for k in network.truth(a)["kinds"] if k in special), network.truth(a)["kinds"][0])
                for r, a, _, _ in ratios if r < 20]

        naive = {"queries": 0, "lineage_bytes": 0, "page_bytes": 0, "pages": 0}
        for account in accounts:
            for key, value in _naive_account(hubble, tables, account).items():
                naive[key] += value

        n = len(accounts)
        ours_total = ours_lineage + ours_state + sum(ours_pages)
        naive_total = naive["lineage_bytes"] + naive["page_bytes"]
        note = f"simulated network: {network.total:,} accounts, {n} new accounts of every kind"
        results = [
            Result(area, "queries per new account (lineage + children)", ours_queries / n, "queries",
                   "creator, state and each child page asked separately", naive["queries"] / n, higher_is_better=False,
                   goal="<= 3 for an account with <= 10,000 children", note=note),
            Result(area, "bytes scanned by a new account's lineage query (dry run, median account)", median_ours, "bytes",
                   "the same query over the whole history (2015 to now)", median_whole, higher_is_better=False,
                   goal=">= 100x fewer", note="closed_at window around the ledger of its sequence number; partitions as the engine has them"),
            Result(area, "bytes scanned by a new account's lineage query (dry run, mean of every kind)", ours_lineage / n, "bytes",
                   "the same query over the whole history (2015 to now)", whole_lives / n, higher_is_better=False,
                   note=f"wider windows (under 20x fewer) for {len(wide)} of {n}: {', '.join(sorted(set(wide)))} "
                   "(a merged, re-created or bumped account widens its window by design: a deleted account's last merge "
                   "and every earlier life are looked for over wider windows, which dominate the mean)"),
            Result(area, "bytes scanned per children-page query (dry run)", sum(ours_pages) / len(ours_pages), "bytes",
                   "OFFSET page without partition filter", naive["page_bytes"] / naive["pages"], higher_is_better=False,
                   note="closed_at from the account's creation (or the last child) to now"),
            Result(area, "bytes scanned for an account's lineage + accounts_current (dry run)", (ours_lineage + ours_state) / n, "bytes",
                   "one whole-history query joining both (before)", whole_joined / n, higher_is_better=False,
                   note="accounts_current is not partitioned: its row costs its columns' full size, here most of the figure"),
            Result(area, "bytes scanned per new account (all its queries)", ours_total / n, "bytes",
                   "the same questions without partition filters", naive_total / n, higher_is_better=False),
        ]

        first = dt.datetime.fromisoformat(network.truth(airdrop)["created_at"].replace("Z", "+00:00"))
        repeats = 1 if short else 3
        ours_t, naive_t = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            ours = _page_ours(hubble, tables, airdrop, first)
            ours_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            naive = _page_naive(hubble, tables, airdrop)
            naive_t.append(time.perf_counter() - t0)
        if len(ours) != 100_000 or ours != naive:
            raise RuntimeError(f"paging disagrees: {len(ours)} keyset children vs {len(naive)} OFFSET children")
        results.append(Result(area, "time to page 100,000 children (10 pages)", min(ours_t), "s",
                              "OFFSET pages without partition filters", min(naive_t), higher_is_better=False,
                              note=f"best of {repeats}; queries and row fetches, the same for both (no parsing, no store writes)"))
        hubble.close()
    return results


def main(argv: list[str] | None = None) -> int:
    return run_cli(run, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
