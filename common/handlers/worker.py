"""What the two account workers share: the task body they accept, and giving a claim back.

process_account (the Hubble path) and api_fallback (Horizon + Stellar Expert) both receive
`{"network", "account", "purpose", "generation", "cursor"}` from their queue, claim the account's
lineage row (common/pipeline.py fences every later write by the claim token) and, when their own
store or queue fails, release the claim so the queue's retry finds the account PENDING again.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any

from common import pipeline
from common.domain import InvalidInput, validate_account_id, validate_network
from common.deps import PipelineDeps

log = logging.getLogger(__name__)

TASK_KEYS = frozenset({"network", "account", "purpose", "generation", "cursor"})
MAX_TEXT = 200


@dataclasses.dataclass(frozen=True)
class WorkerTask:
    network: str
    account: str
    purpose: str
    generation: Any
    cursor: str | None = None


def parse_worker_task(params: dict, purposes: tuple[str, ...], wrong_purpose: str | None = None) -> WorkerTask:
    """The queue's task body, validated; InvalidInput (a 400, nothing written) when it is not one."""
    unknown = set(params) - TASK_KEYS
    if unknown:
        raise InvalidInput("invalid_request", f"unknown field(s): {', '.join(sorted(unknown))}")
    network = validate_network(params.get("network"))
    account = validate_account_id(params.get("account"))
    purpose = params.get("purpose", "lineage")
    if purpose not in purposes:
        raise InvalidInput("invalid_purpose", wrong_purpose or f"purpose must be one of {', '.join(purposes)}", "purpose")
    generation = params.get("generation", 0)
    if isinstance(generation, bool) or not isinstance(generation, (int, str)) or (isinstance(generation, str) and len(generation) > MAX_TEXT):
        raise InvalidInput("invalid_generation", "generation must be an integer or a short string", "generation")
    cursor = params.get("cursor")
    if cursor is not None and (not isinstance(cursor, str) or len(cursor) > MAX_TEXT):
        raise InvalidInput("invalid_cursor", "cursor must be a short string", "cursor")
    return WorkerTask(network, account, purpose, generation, cursor)


def give_back(c: PipelineDeps, network: str, account: str, claim_token: str | None, reason: str, count_attempt: bool = True) -> bool:
    """Release our claim for the queue's retry. True when the account will be retried (also when
    the release itself failed: the row stays PROCESSING and reset_stale recovers it); False when
    max_retries was reached and the account is now FAILED."""
    try:
        return pipeline.release_for_retry(c, network, account, reason, count_attempt=count_attempt, claim_token=claim_token)
    except Exception:  # noqa: BLE001 - still PROCESSING: reset_stale recovers it
        log.warning("could not release %s/%s for retry", network, account, exc_info=True)
        return True
