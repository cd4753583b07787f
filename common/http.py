"""HTTP helpers shared by the function handlers: JSON, errors, CORS, internal auth, schema gate."""
from __future__ import annotations

import hmac
import logging
import json
from typing import Any, Mapping

from flask import Request, Response

from common.domain import InvalidInput

JSON_TYPE = "application/json"


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    resp = Response(json.dumps(body, ensure_ascii=False, default=str), status=status, mimetype=JSON_TYPE)
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def error_response(
    code: str,
    message: str,
    status: int = 400,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
    details: Mapping[str, Any] | None = None,
) -> Response:
    err: dict[str, Any] = {"code": code, "message": message}
    if field:
        err["field"] = field
    if details:
        err["details"] = dict(details)
    return json_response({"error": err}, status, headers)


def invalid_input_response(exc: InvalidInput) -> Response:
    return error_response(exc.code, exc.message, 400, exc.field)


class BodyTooLarge(InvalidInput):
    """The body is longer than the handler reads (declared, or found while reading a chunked body)."""

    def __init__(self, max_bytes: int, message: str | None = None):
        super().__init__("body_too_large", message or f"request body must be at most {max_bytes} bytes")


def read_body(request: Request, max_bytes: int, message: str | None = None) -> bytes:
    """The request body, never more than `max_bytes` of it read: a Content-Length over the cap is refused
    before reading, and a body without one (Transfer-Encoding: chunked) is read only up to the cap + 1
    byte, then refused (BodyTooLarge): the cap holds for the bytes actually read, not the header."""
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise BodyTooLarge(max_bytes, message)
    stream = request.stream
    chunks, total = [], 0
    while True:
        chunk = stream.read(min(65_536, max_bytes + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            raise BodyTooLarge(max_bytes, message)


def request_params(request: Request, max_body_bytes: int = 16_384) -> dict[str, Any]:
    """Query parameters merged with a JSON object body (body wins). Raises InvalidInput on bad JSON."""
    params: dict[str, Any] = {k: v for k, v in request.args.items()}
    if request.method in ("POST", "PUT", "PATCH"):
        raw = read_body(request, max_body_bytes)
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError:
                raise InvalidInput("invalid_json", "request body is not valid JSON") from None
            if not isinstance(body, dict):
                raise InvalidInput("invalid_json", "request body must be a JSON object")
            params.update(body)
    return params


def cors_headers(request: Request, allowed_origins: tuple) -> dict[str, str]:
    origin = request.headers.get("Origin")
    if origin and (origin in allowed_origins or "*" in allowed_origins):
        return {
            "Access-Control-Allow-Origin": origin,
            "Vary": "Origin",
            "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
            "Access-Control-Allow-Headers": "Content-Type",
            "Access-Control-Max-Age": "3600",
        }
    return {"Vary": "Origin"}


def with_headers(resp: Response, headers: Mapping[str, str]) -> Response:
    for k, v in headers.items():
        resp.headers[k] = v
    return resp


def check_internal_auth(request: Request, internal_token: str | None) -> Response | None:
    """Internal functions: on GCP the platform verifies the OIDC token (no allUsers invoker),
    so no shared token is configured. Locally (INTERNAL_TOKEN set) callers must present it."""
    if not internal_token:
        return None
    header = request.headers.get("Authorization", "")
    supplied = header[7:] if header.startswith("Bearer ") else request.headers.get("X-Internal-Token", "")
    if not supplied:
        return error_response("unauthenticated", "this function accepts only authenticated internal callers", 401)
    if not hmac.compare_digest(supplied.encode(), internal_token.encode()):
        return error_response("forbidden", "caller is not allowed to invoke this function", 403)
    return None


def schema_unavailable(result) -> Response:
    """503 for a function whose database schema is behind the code; nothing is written."""
    return error_response(
        "schema_behind",
        "database schema is behind the code: run `stellarmap migrate`; missing migrations: "
        + (", ".join(result.missing_migrations) or "none")
        + "; missing columns: "
        + ("; ".join(f"{t}: {', '.join(c)}" for t, c in sorted(result.missing_columns.items())) or "none"),
        503,
        headers={"Retry-After": "30"},
        details={"missing_migrations": result.missing_migrations, "missing_columns": result.missing_columns},
    )


def internal_post_only(request: Request, internal_token: str | None, usage: str) -> Response | None:
    """The door of every internal worker: its callers only (check_internal_auth), and POST only."""
    denied = check_internal_auth(request, internal_token)
    if denied is not None:
        return denied
    if request.method != "POST":
        return error_response("method_not_allowed", usage, 405, headers={"Allow": "POST"})
    return None


def schema_gate_response(schema_gate, retry_after_s: int = 30) -> Response | None:
    """None when the schema is current; else 503 (behind, or the store cannot be reached) with
    Retry-After, so Cloud Tasks or Cloud Scheduler retries and nothing is written."""
    try:
        behind = schema_gate.check()
    except Exception as exc:  # noqa: BLE001 - the store is unreachable: the caller retries
        logging.getLogger(__name__).warning("schema check failed: %s", exc)
        return error_response("store_unavailable", f"the store cannot be reached: {type(exc).__name__}", 503,
                              headers={"Retry-After": str(retry_after_s)})
    return schema_unavailable(behind) if behind is not None else None
