"""The reply value every route returns, and the JSON error shape of the control API."""
from __future__ import annotations

import dataclasses
import json
from typing import Any

JSON = "application/json; charset=utf-8"


@dataclasses.dataclass
class Reply:
    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    # Set by a handler whose body is JSON, so fault injection can truncate or corrupt it.
    is_json: bool = False


def json_reply(body: Any, status: int = 200, content_type: str = JSON, headers: list | None = None) -> Reply:
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    return Reply(status, data, content_type, list(headers or []), is_json=True)


def control_error(code: str, message: str, status: int = 400, field: str | None = None) -> Reply:
    """The project's error shape, used by the /_sim control API."""
    error = {"code": code, "message": message}
    if field:
        error["field"] = field
    return json_reply({"error": error}, status)
