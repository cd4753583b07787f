"""Streaming lineage export (json | csv | graphml): ancestors, the account, then every child page by page.

Memory stays bounded by one page of children (plus the ancestor chain), whatever the fan-out:
nothing builds the whole lineage in memory. Used by `/account-lineage?format=` and `stellarmap export`.
"""
from __future__ import annotations

import csv
import io
import json
import re
from typing import Callable, Iterator
from xml.sax.saxutils import escape, quoteattr

from common.domain import InvalidInput
from common.lineage_view import ancestors, children_nodes, completeness, lives, node
from common.store.port import Store

FORMATS = {"json": "application/json", "csv": "text/csv; charset=utf-8", "graphml": "application/graphml+xml"}
PAGE = 1000
CSV_COLUMNS = ("relation", "account", "creator", "created_at", "xlm_balance", "home_domain", "pipeline_source", "status", "num_children", "tags",
               "creation_ledger", "merged_at", "merged_into", "completeness")
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
GRAPHML_KEYS = ("created_at", "xlm_balance", "home_domain", "pipeline_source", "status", "relation",
                "creation_ledger", "merged_at", "merged_into")
GRAPHML_GRAPH_KEYS = ("children_complete", "children_found", "completeness_reason", "completeness")


class ExportNotFound(LookupError):
    pass


def _pages(store: Store, network: str, account: str, page_size: int) -> Iterator[list[dict]]:
    cursor = None
    while True:
        page = store.get_children_page(network, account, cursor, page_size)
        if page.items:
            yield children_nodes(store, network, page.items)
        if not page.next_cursor:
            return
        cursor = page.next_cursor


def export_lineage(
    store: Store,
    network: str,
    account: str,
    fmt: str,
    page_size: int = PAGE,
    progress: Callable[[int], None] | None = None,
) -> Iterator[str]:
    """Yield the export as text chunks. Raises InvalidInput for a bad format and ExportNotFound
    for an unknown account before the first chunk, so an HTTP handler can still answer 400/404."""
    if fmt not in FORMATS:
        raise InvalidInput("invalid_format", f"format must be one of {', '.join(FORMATS)}", "format")
    rec = store.get_lineage(network, account)
    if rec is None:
        raise ExportNotFound(f"account {account} is not known on {network}")
    chain = ancestors(store, network, rec)
    me = node(account, rec)
    me["lives"] = lives(store, network, account)
    whole = completeness(rec)
    writer = {"json": _json, "csv": _csv, "graphml": _graphml}[fmt]
    return writer(network, account, chain, me, whole, _counted(_pages(store, network, account, page_size), progress))


def _counted(pages: Iterator[list[dict]], progress: Callable[[int], None] | None) -> Iterator[list[dict]]:
    done = 0
    for page in pages:
        done += len(page)
        yield page
        if progress:
            progress(done)


def _json(network, account, chain, me, whole, pages) -> Iterator[str]:
    yield '{"account": %s, "network": %s, "completeness": %s, "ancestors": %s, "account_node": %s, "children": [' % (
        json.dumps(account),
        json.dumps(network),
        json.dumps(whole, ensure_ascii=False),
        json.dumps(chain, ensure_ascii=False),
        json.dumps(me, ensure_ascii=False),
    )
    first = True
    for page in pages:
        chunk = ",\n".join(json.dumps(n, ensure_ascii=False) for n in page)
        yield ("" if first else ",\n") + chunk
        first = False
    yield "]}\n"


def _csv_safe(value) -> str:
    """Plain text for spreadsheets: a leading = + - @ would otherwise run as a formula."""
    if value is None:
        return ""
    if isinstance(value, list):
        value = ";".join(str(v) for v in value)
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_rows(rows: list[tuple[str, dict]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for relation, n in rows:
        w.writerow([relation] + [_csv_safe(n.get(col)) for col in CSV_COLUMNS[1:]])
    return buf.getvalue()


def _completeness_words(whole: dict) -> str:
    """The completeness in words, for the formats that carry text (csv, graphml)."""
    if whole["children_complete"]:
        return f"complete: {whole['children_found']} children"
    return whole["message"] or "incomplete"


def _csv(network, account, chain, me, whole, pages) -> Iterator[str]:
    yield ",".join(CSV_COLUMNS) + "\n"
    yield _csv_rows([("ancestor", a) for a in chain] + [("account", dict(me, completeness=_completeness_words(whole)))])
    for page in pages:
        yield _csv_rows([("child", n) for n in page])


def _xml_text(value) -> str:
    return _XML_BAD.sub("\ufffd", "" if value is None else str(value))


def _graphml_node(n: dict, relation: str) -> str:
    data = dict(n, relation=relation)
    parts = [f"<node id={quoteattr(n['account'])}>"]
    for key in GRAPHML_KEYS:
        if data.get(key) is not None:
            parts.append(f'<data key="{key}">{escape(_xml_text(data[key]))}</data>')
    parts.append("</node>")
    return "".join(parts)


def _graphml_edge(creator: str, child: str) -> str:
    return f"<edge source={quoteattr(creator)} target={quoteattr(child)}/>"


def _graphml(network, account, chain, me, whole, pages) -> Iterator[str]:
    keys = "".join(f'<key id="{k}" for="node" attr.name="{k}" attr.type="string"/>' for k in GRAPHML_KEYS)
    keys += "".join(f'<key id="{k}" for="graph" attr.name="{k}" attr.type="string"/>' for k in GRAPHML_GRAPH_KEYS)
    graph_data = {"children_complete": str(whole["children_complete"]).lower(), "children_found": whole["children_found"],
                  "completeness_reason": whole["reason"], "completeness": _completeness_words(whole)}
    data = "".join(f'<data key="{k}">{escape(_xml_text(v))}</data>' for k, v in graph_data.items() if v is not None)
    yield (
        '<?xml version="1.0" encoding="UTF-8"?>\n<graphml xmlns="http://graphml.graphdrawing.org/xmlns">'
        f"{keys}<graph id={quoteattr(f'{network}:{account}')} edgedefault=\"directed\">{data}\n"
    )
    lines = [_graphml_node(a, "ancestor") for a in chain] + [_graphml_node(me, "account")]
    path = [a["account"] for a in chain] + [account]
    lines += [_graphml_edge(p, c) for p, c in zip(path, path[1:])]
    yield "\n".join(lines) + "\n"
    for page in pages:
        yield "\n".join(_graphml_node(n, "child") + _graphml_edge(account, n["account"]) for n in page) + "\n"
    yield "</graph></graphml>\n"
