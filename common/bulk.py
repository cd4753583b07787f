"""Bulk queueing: validate every line, enqueue each valid account once (CLI and operator endpoint)."""
from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable

from common import pipeline
from common.addresses import normalize_account_input
from common.domain import InvalidInput, validate_network
from common.deps import PipelineDeps

MAX_LINES = 1_000_000


@dataclasses.dataclass
class BulkReport:
    lines: int = 0
    valid: int = 0
    duplicates: int = 0
    enqueued: int = 0
    already_queued_or_known: int = 0
    errors: list = dataclasses.field(default_factory=list)  # [{"line", "code", "message"}]

    def to_json(self, max_errors: int = 1000) -> dict:
        body = dataclasses.asdict(self)
        body["errors"] = self.errors[:max_errors]
        body["errors_total"] = len(self.errors)
        return body


def parse_lines(lines: Iterable[str], report: BulkReport) -> list[str]:
    """Valid, de-duplicated accounts in file order; bad lines recorded with their line numbers.

    Blank lines and lines starting with # are skipped."""
    seen: set[str] = set()
    accounts: list[str] = []
    for number, raw in enumerate(lines, start=1):
        if number > MAX_LINES:
            raise InvalidInput("too_many_lines", f"at most {MAX_LINES:,} lines per bulk request")
        report.lines = number
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        try:
            account = normalize_account_input(text)
        except InvalidInput as exc:
            report.errors.append({"line": number, "code": exc.code, "message": exc.message})
            continue
        report.valid += 1
        if account in seen:
            report.duplicates += 1
            continue
        seen.add(account)
        accounts.append(account)
    return accounts


def bulk_enqueue(
    c: PipelineDeps,
    network: str,
    lines: Iterable[str],
    workers: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> BulkReport:
    """Each distinct valid account is requested once; a rerun creates no second task
    (request_lineage skips accounts already pending or complete, and task names are deterministic)."""
    validate_network(network)
    c.queue  # built (its settings checked: ConfigError names the variable) before anything is written
    report = BulkReport()
    accounts = parse_lines(lines, report)
    now = c.clock.now()
    done = 0

    def one(account: str) -> bool:
        return pipeline.request_lineage(c, network, account, now)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for created in pool.map(one, accounts):
            done += 1
            if created:
                report.enqueued += 1
            else:
                report.already_queued_or_known += 1
            if progress and (done % 500 == 0 or done == len(accounts)):
                progress(done, len(accounts))
    return report
