"""Helpers shared by the StellarMap checkov policies.

checkov hands a check the resource configuration with every attribute wrapped in a list and with
variables and locals substituted where it could evaluate them. These helpers unwrap values and
turn what checkov left unresolved into text, so that a policy can fail closed on anything it
cannot prove.
"""
from __future__ import annotations

import json
import re
from typing import Any

# Functions that may be public (docs/design.md "Function entry points").
# tests/unit/test_terraform_consistency.py checks that terraform/locals.tf agrees.
PUBLIC_FUNCTIONS = frozenset({"search", "stats"})

PUBLIC_PRINCIPALS = ("allUsers", "allAuthenticatedUsers")


def first(conf: dict, key: str, default: Any = None) -> Any:
    """The value of `key`, unwrapped from checkov's one-element list."""
    if key not in conf:
        return default
    value = conf[key]
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value


def block(conf: dict, key: str) -> dict | None:
    """A nested block (`rate_limits { ... }`) as a dict, or None when it is absent."""
    value = first(conf, key)
    return value if isinstance(value, dict) else None


def number(value: Any) -> float | None:
    """A resolved number, or None when checkov left an expression behind."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d+)?", value.strip()):
        return float(value)
    return None


def duration_seconds(value: Any) -> float | None:
    """A resolved protobuf duration ("5s", "0.5s"), or None."""
    if isinstance(value, str):
        match = re.fullmatch(r"(\d+(?:\.\d+)?)s", value.strip())
        if match:
            return float(match.group(1))
    return None


def text(value: Any) -> str:
    """Everything in `value` as one string (for searching unresolved expressions)."""
    return value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)


def referenced_keys(value: Any) -> set[str]:
    """Map keys an expression indexes with a literal: local.x["search"] or x[search] -> {"search"}."""
    found = set()
    for match in re.finditer(r"\[\s*\\?[\"']?([A-Za-z0-9_-]+)\\?[\"']?\s*\]", text(value)):
        key = match.group(1)
        if not key.isdigit():
            found.add(key)
    return found
