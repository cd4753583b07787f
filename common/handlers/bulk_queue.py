"""The operators' bulk-queue endpoint (internal: only authenticated callers; never public).

POST text/plain (one account per line) with ?network=, or JSON {"network", "accounts": [...]}.
Answers the same report as `stellarmap queue`: bad lines with their numbers, counts.
"""
from __future__ import annotations

import json

from flask import Request

from common.bulk import bulk_enqueue
from common.domain import InvalidInput, validate_network
from common.http import BodyTooLarge, error_response, internal_post_only, invalid_input_response, json_response, read_body, schema_gate_response
from common.deps import BulkQueueDeps

MAX_BODY_BYTES = 12 * 1024 * 1024  # 100,000 lines of 56-character ids, with room to spare


def handle(request: Request, c: BulkQueueDeps) -> object:
    refused = internal_post_only(request, c.settings.internal_token, "use POST with one account per line, or JSON {network, accounts}") \
        or schema_gate_response(c.schema_gate)
    if refused is not None:
        return refused
    try:
        # The bytes read are capped, not only the declared length: a chunked body has none.
        raw = read_body(request, MAX_BODY_BYTES, f"at most {MAX_BODY_BYTES // (1024 * 1024)} MB per request")
    except BodyTooLarge as exc:
        return error_response(exc.code, exc.message, 413)
    try:
        network = request.args.get("network", "public")
        raw = raw.decode("utf-8", errors="replace")
        if request.mimetype == "application/json":
            try:
                body = json.loads(raw or "{}")
            except ValueError:
                raise InvalidInput("invalid_json", "request body is not valid JSON") from None
            if not isinstance(body, dict) or not isinstance(body.get("accounts"), list):
                raise InvalidInput("invalid_json", 'JSON body must be {"network": ..., "accounts": [...]}', "accounts")
            network = body.get("network", network)
            lines = [a if isinstance(a, str) else json.dumps(a) for a in body["accounts"]]
        else:
            lines = raw.splitlines()
        validate_network(network)
        report = bulk_enqueue(c, network, lines)
    except InvalidInput as exc:
        return invalid_input_response(exc)
    return json_response(report.to_json())
