"""Bulk queueing and streaming export on the embedded store."""
import csv
import datetime as dt
import io
import json
import xml.etree.ElementTree as ET
from decimal import Decimal

import pytest

from common import bulk
from common.bootstrap import Container
from common.clock import SettableClock
from common.config import Settings
from common.domain import GENESIS_ACCOUNT, ChildEdge, InvalidInput
from common.export import ExportNotFound, export_lineage
from common.store import migrations
from common.store.sqlite import SQLiteStore
from local.testing.fakes import RecordingQueue
from tests.support import random_account

pytestmark = pytest.mark.unit
T0 = dt.datetime(2021, 5, 1, tzinfo=dt.timezone.utc)


@pytest.fixture
def c(tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
    migrations.migrate(store)
    container = Container(Settings.from_env(env={}), SettableClock(), store=store, queue=RecordingQueue())
    yield container
    store.close()


def test_bulk_reports_bad_lines_and_enqueues_each_account_once(c):
    from stellar_sdk import Keypair, MuxedAccount

    good = [random_account() for _ in range(5)]
    kp = Keypair.random()
    bad_checksum = good[0][:-2] + ("AB" if good[0][-2:] != "AB" else "CD")
    lines = [good[0], "", "# a comment", good[1], "  " + good[2] + "  ", bad_checksum, kp.secret, good[0],
             MuxedAccount(good[3], 7).account_muxed, "'; DROP TABLE account_lineage; --", good[4]]
    report = bulk.bulk_enqueue(c, "public", lines)
    assert report.lines == len(lines)
    assert [e["line"] for e in report.errors] == [6, 7, 10]
    assert all(kp.secret not in e["message"] for e in report.errors), "a secret seed is never echoed"
    assert report.duplicates == 1 and report.enqueued == 5
    assert sorted(t["payload"]["account"] for t in c.queue.tasks) == sorted(good)
    rerun = bulk.bulk_enqueue(c, "public", lines)
    assert rerun.enqueued == 0 and rerun.already_queued_or_known == 5 and len(c.queue.tasks) == 5


def test_bulk_refuses_a_bad_network_before_anything(c):
    with pytest.raises(InvalidInput):
        bulk.bulk_enqueue(c, "mainnet", [random_account()])
    assert c.queue.tasks == []


def _tree(store, n_children):
    parent = random_account()
    store.put_lineage("public", GENESIS_ACCOUNT, status="COMPLETE")
    store.put_lineage("public", parent, stellar_creator_account=GENESIS_ACCOUNT, status="COMPLETE", num_child_accounts=n_children,
                      home_domain='=HYPERLINK("http://evil")', xlm_balance=Decimal("10.5"))
    kids = [random_account() for _ in range(n_children)]
    store.add_children("public", parent, [ChildEdge("public", parent, k, T0, str(i)) for i, k in enumerate(kids)])
    store.put_lineage("public", kids[0], home_domain="<script>\x01&</script>")
    return parent, kids


@pytest.mark.parametrize("fmt", ["json", "csv", "graphml"])
def test_export_streams_every_child_once(c, fmt):
    parent, kids = _tree(c.store, 2345)
    seen_progress = []
    chunks = list(export_lineage(c.store, "public", parent, fmt, page_size=500, progress=seen_progress.append))
    assert seen_progress == [500, 1000, 1500, 2000, 2345]
    text = "".join(chunks)
    if fmt == "json":
        doc = json.loads(text)
        assert [a["account"] for a in doc["ancestors"]] == [GENESIS_ACCOUNT]
        assert sorted(n["account"] for n in doc["children"]) == sorted(kids)
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert [r["relation"] for r in rows[:2]] == ["ancestor", "account"]
        assert rows[1]["home_domain"].startswith("'="), "formula injection is neutralised"
        assert sorted(r["account"] for r in rows if r["relation"] == "child") == sorted(kids)
    else:
        root = ET.fromstring(text)
        ns = {"g": "http://graphml.graphdrawing.org/xmlns"}
        nodes = root.findall(".//g:node", ns)
        edges = root.findall(".//g:edge", ns)
        assert len(nodes) == 2 + 2345 and len(edges) == 1 + 2345


def test_export_errors_before_the_first_chunk(c):
    with pytest.raises(InvalidInput):
        export_lineage(c.store, "public", random_account(), "xlsx")
    with pytest.raises(ExportNotFound):
        export_lineage(c.store, "public", random_account(), "json")


def test_every_export_format_says_how_complete_the_children_are(c):
    account, child = random_account(), random_account()
    c.store.put_lineage("public", account, stellar_creator_account=GENESIS_ACCOUNT, account_creation_date=T0, status="COMPLETE",
                        num_child_accounts=1, children_complete=False, children_gap="history_pruned", creation_ledger=35_000_000,
                        children_visible_from=dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc))
    c.store.add_children("public", account, [ChildEdge("public", account, child, T0, "1")])
    words = "1 child found; history before 2025-01-01 is not visible without Hubble"
    body = json.loads("".join(export_lineage(c.store, "public", account, "json")))
    assert body["completeness"]["message"] == words and body["completeness"]["reason"] == "history_pruned"
    assert body["account_node"]["creation_ledger"] == 35_000_000 and body["account_node"]["lives"] == []
    rows = list(csv.DictReader(io.StringIO("".join(export_lineage(c.store, "public", account, "csv")))))
    root = [r for r in rows if r["relation"] == "account"][0]
    assert root["completeness"] == words and root["creation_ledger"] == "35000000"
    assert [r["completeness"] for r in rows if r["relation"] == "child"] == [""]
    tree = ET.fromstring("".join(export_lineage(c.store, "public", account, "graphml")))
    ns = {"g": "http://graphml.graphdrawing.org/xmlns"}
    graph_data = {d.get("key"): d.text for d in tree.find("g:graph", ns).findall("g:data", ns)}
    assert graph_data == {"children_complete": "false", "children_found": "1", "completeness_reason": "history_pruned",
                          "completeness": words}
