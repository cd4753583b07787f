"""Fault injection per endpoint: probabilities of each fault kind, plus a FIFO queue of faults
to inject next (deterministic chaos for tests). Draws come from a seeded RNG."""
from __future__ import annotations

import random
import threading
from typing import Any

ENDPOINTS = (
    "horizon.root",
    "horizon.account",
    "horizon.operations",
    "horizon.operation",
    "horizon.other",
    "expert.account",
    "expert.directory",
    "expert.blocked_domains",
    "expert.other",
    "toml",
)
GROUPS = ("*", "horizon.*", "expert.*")
KINDS = ("429", "500", "502", "503", "slow", "timeout", "truncated", "malformed", "reset")
PARAMS = {"slow_seconds": (2.0, 600.0), "timeout_seconds": (30.0, 3600.0)}  # default, maximum


class FaultInjector:
    def __init__(self, seed: int = 0):
        self._rng = random.Random(f"faults/{seed}")
        self._rules: dict[str, dict[str, float]] = {}
        self._queue: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _check_target(name: Any) -> str:
        if name not in ENDPOINTS and name not in GROUPS:
            raise ValueError(f"unknown endpoint {name!r}; use one of {', '.join(GROUPS + ENDPOINTS)}")
        return name

    @classmethod
    def parse_rules(cls, raw: Any) -> dict[str, dict[str, float]]:
        if not isinstance(raw, dict):
            raise ValueError("rules must be an object: {endpoint: {kind: probability, ...}}")
        rules = {}
        for target, spec in raw.items():
            cls._check_target(target)
            if not isinstance(spec, dict):
                raise ValueError(f"rules[{target!r}] must be an object")
            rule: dict[str, float] = {}
            total = 0.0
            for key, value in spec.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"rules[{target!r}][{key!r}] must be a number")
                if key in PARAMS:
                    if not 0 < value <= PARAMS[key][1]:
                        raise ValueError(f"rules[{target!r}].{key} must be above 0 and at most {PARAMS[key][1]:g}")
                elif key in KINDS:
                    if not 0 <= value <= 1:
                        raise ValueError(f"rules[{target!r}][{key!r}] is a probability: from 0 to 1")
                    total += value
                else:
                    raise ValueError(f"rules[{target!r}]: unknown key {key!r}; kinds are {', '.join(KINDS)}, "
                                     f"parameters {', '.join(PARAMS)}")
                rule[key] = float(value)
            if total > 1 + 1e-9:
                raise ValueError(f"rules[{target!r}]: probabilities add up to {total:g}, more than 1")
            rules[target] = rule
        return rules

    @classmethod
    def parse_queue(cls, raw: Any) -> dict[str, list[str]]:
        if not isinstance(raw, dict):
            raise ValueError("queue must be an object: {endpoint: [kind, ...]}")
        queue = {}
        for target, kinds in raw.items():
            cls._check_target(target)
            if not isinstance(kinds, list) or not all(k in KINDS for k in kinds):
                raise ValueError(f"queue[{target!r}] must be a list of kinds from {', '.join(KINDS)}")
            queue[target] = list(kinds)
        return queue

    def configure(self, rules: Any = None, queue: Any = None, clear_queue: bool = False, seed: Any = None) -> None:
        """Validate everything first so a bad request changes nothing."""
        parsed_rules = self.parse_rules(rules) if rules is not None else None
        parsed_queue = self.parse_queue(queue) if queue is not None else None
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError("seed must be an integer")
        with self._lock:
            if parsed_rules is not None:
                self._rules = parsed_rules
            if clear_queue:
                self._queue = {}
            for target, kinds in (parsed_queue or {}).items():
                self._queue.setdefault(target, []).extend(kinds)
            if seed is not None:
                self._rng = random.Random(f"faults/{seed}")

    def clear(self) -> None:
        with self._lock:
            self._rules = {}
            self._queue = {}

    def snapshot(self) -> dict:
        with self._lock:
            return {"rules": {k: dict(v) for k, v in self._rules.items()},
                    "queue": {k: list(v) for k, v in self._queue.items() if v},
                    "kinds": list(KINDS), "endpoints": list(ENDPOINTS), "groups": list(GROUPS),
                    "parameters": {k: v[0] for k, v in PARAMS.items()}}

    def _lookup(self, table: dict, endpoint: str):
        group = endpoint.split(".")[0] + ".*"
        for key in (endpoint, group, "*"):
            if key in table and table[key]:
                return key
        return None

    def pick(self, endpoint: str) -> tuple[str, dict] | None:
        """The fault to inject into this request (kind, parameters), or None."""
        with self._lock:
            key = self._lookup(self._queue, endpoint)
            rule_key = self._lookup(self._rules, endpoint)
            rule = self._rules.get(rule_key, {}) if rule_key else {}
            params = {name: rule.get(name, default) for name, (default, _) in PARAMS.items()}
            if key is not None:
                return self._queue[key].pop(0), params
            if not rule:
                return None
            draw = self._rng.random()
            for kind in KINDS:
                probability = rule.get(kind, 0.0)
                if draw < probability:
                    return kind, params
                draw -= probability
            return None
