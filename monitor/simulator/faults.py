"""Fault injection: the ways a real API gateway lets a client down, on demand and reproducibly.

Why: the monitor must stay truthful through a faulty API -- a 502 page from a proxy, a cut-off
body, a field of the wrong type or a dropped connection must become a failed poll, never a
made-up transition or a job declared gone. The simulator's job-detail endpoint (only that one:
not IAM, not ``/_sim``) can answer with one of these instead of the truth:

* ``server_error``: 500 or 503 with a ModelArts-style JSON error body;
* ``rate_limited``: 429 with the gateway's ``APIG.0308`` body and ``Retry-After`` (if set);
* ``gateway_html``: 502 with an nginx HTML page, as a proxy in front of the API sends;
* ``truncated``: the correct body and status, cut at a random point, with a Content-Length
  that matches what is sent (so HTTP is fine and only the JSON is broken);
* ``wrong_types``: the correct status and body with one field of a wrong type
  (for an unknown or gone job, the 400 body's ``error_code`` becomes a number);
* ``reset``: the connection is dropped without any HTTP response (a TCP RST);
* ``slow``: ``slow_seconds`` of wall time pass before the correct answer.

Everything here is pure except the random generator, which a ``seed`` makes deterministic:
the same seed and the same sequence of requests give the same faults.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from monitor.simulator.checks import Checker, ScenarioError

__all__ = [
    "FAULT_KINDS",
    "FaultAnswer",
    "FaultConfig",
    "FaultInjector",
    "fault_config",
    "parse_faults",
]

FAULT_KINDS: tuple[str, ...] = (
    "server_error",
    "rate_limited",
    "gateway_html",
    "truncated",
    "wrong_types",
    "reset",
    "slow",
)
FAULT_KEYS = ("rate", "kinds", "retry_after", "slow_seconds", "seed")

RATE_LIMITED_BODY = {
    "error_code": "APIG.0308",
    "error_msg": "The throttling threshold has been reached: "
    "policy ip over ratelimit,limit:5,time:1 second",
}
SERVER_ERROR_BODIES = {
    500: {"error_code": "ModelArts.0001", "error_msg": "Internal server error."},
    503: {
        "error_code": "ModelArts.0002",
        "error_msg": "Service temporarily unavailable, please try again later.",
    },
}
GATEWAY_HTML = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
JSON = "application/json"


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """The ``faults`` block of a scenario; the defaults are what an omitted key means."""

    rate: float = 0.0
    """Probability that a job-detail request gets a fault, 0..1."""
    kinds: tuple[str, ...] = FAULT_KINDS
    retry_after: float | None = 1.0
    """Seconds sent as ``Retry-After`` with ``rate_limited``; ``None`` omits the header."""
    slow_seconds: float = 5.0
    seed: int | None = None
    """Seed of the generator choosing which requests fail and how; ``None`` is random."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "kinds": list(self.kinds),
            "retry_after": self.retry_after,
            "slow_seconds": self.slow_seconds,
            "seed": self.seed,
        }


def parse_faults(
    c: Checker, raw: object, path: str, base: FaultConfig | None = None
) -> FaultConfig | None:
    """Validate a ``faults`` mapping. With a ``base``, keys left out keep its values (a runtime
    update); without one it is a scenario's block, and ``rate`` is required."""
    before = len(c.problems)
    m = c.mapping(raw, path, FAULT_KEYS, required=None if base is not None else ("rate",))
    if m is None:
        return None
    old = base if base is not None else FaultConfig()
    rate = c.get(m, "rate", path, c.number, default=old.rate)
    if isinstance(rate, float) and rate > 1:
        c.fail(_key(path, "rate"), f"expected a probability from 0 to 1, got {rate:g}")
    kinds = old.kinds
    if "kinds" in m:
        kinds = _parse_kinds(c, m["kinds"], _key(path, "kinds")) or old.kinds
    retry_after = c.nullable(m, "retry_after", path, c.number, default=old.retry_after)
    slow_seconds = c.get(m, "slow_seconds", path, c.number, default=old.slow_seconds)
    seed = c.nullable(m, "seed", path, c.integer, default=old.seed)
    if len(c.problems) > before:
        return None
    return FaultConfig(rate, kinds, retry_after, slow_seconds, seed)


def _parse_kinds(c: Checker, raw: object, path: str) -> tuple[str, ...] | None:
    items = c.sequence(raw, path)
    if items is None:
        return None
    if not items:
        c.fail(path, f"expected at least one of {', '.join(FAULT_KINDS)}")
        return None
    kinds: list[str] = []
    for i, item in enumerate(items):
        kind = c.string(item, f"{path}[{i}]")
        if kind is None:
            continue
        if kind not in FAULT_KINDS:
            c.fail(f"{path}[{i}]", f"unknown fault kind {kind!r} (known: {', '.join(FAULT_KINDS)})")
        elif kind in kinds:
            c.fail(f"{path}[{i}]", f"{kind!r} is listed twice")
        else:
            kinds.append(kind)
    return tuple(kinds)


def fault_config(data: object, base: FaultConfig | None = None) -> FaultConfig:
    """``parse_faults`` for a mapping on its own (``Simulator(faults=...)``, ``/_sim/faults``);
    ``ScenarioError`` lists every problem, each naming its key."""
    c = Checker()
    config = parse_faults(c, data, "", base if base is not None else FaultConfig())
    if config is None or c.problems:
        raise ScenarioError(c.problems)
    return config


def _key(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


@dataclass(frozen=True, slots=True)
class FaultAnswer:
    """What to send instead of the truth; ``reset`` means nothing at all (drop the connection)."""

    status: int = 0
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    reset: bool = False


class FaultInjector:
    """Draws faults for requests and counts them; the one source of randomness is ``seed``'s."""

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)  # noqa: S311 -- test data, not cryptography
        self.counts: dict[str, int] = dict.fromkeys(FAULT_KINDS, 0)

    def reconfigure(self, config: FaultConfig, *, reseed: bool) -> None:
        """Use ``config`` from the next request on; ``reseed`` restarts the generator."""
        self.config = config
        if reseed:
            self._rng.seed(config.seed)

    def draw(self) -> str | None:
        """The fault for the next request, counted, or ``None`` for a clean answer."""
        config = self.config
        if config.rate <= 0 or self._rng.random() >= config.rate:
            return None
        kind = self._rng.choice(config.kinds)
        self.counts[kind] += 1
        return kind

    def answer(self, kind: str, status: int, body: Mapping[str, Any]) -> FaultAnswer:
        """The faulty answer replacing the correct ``status`` and JSON ``body`` (not ``slow``,
        which answers correctly, only late)."""
        if kind == "server_error":
            code = self._rng.choice((500, 503))
            return FaultAnswer(code, _dumps(SERVER_ERROR_BODIES[code]), {"Content-Type": JSON})
        if kind == "rate_limited":
            headers = {"Content-Type": JSON}
            if self.config.retry_after is not None:
                headers["Retry-After"] = f"{self.config.retry_after:g}"
            return FaultAnswer(429, _dumps(RATE_LIMITED_BODY), headers)
        if kind == "gateway_html":
            headers = {"Content-Type": "text/html", "Server": "nginx"}
            return FaultAnswer(502, GATEWAY_HTML, headers)
        if kind == "truncated":
            full = _dumps(body)
            return FaultAnswer(
                status, full[: self._rng.randint(1, len(full) - 1)], {"Content-Type": JSON}
            )
        if kind == "wrong_types":
            return FaultAnswer(status, _dumps(self._mistype(status, body)), {"Content-Type": JSON})
        if kind == "reset":
            return FaultAnswer(reset=True)
        raise ValueError(f"no faulty answer for {kind!r}")

    def _mistype(self, status: int, body: Mapping[str, Any]) -> dict[str, Any]:
        doc = copy.deepcopy(dict(body))
        if status != 200:
            doc["error_code"] = 2775
            return doc
        _field, corrupt = self._rng.choice(_CORRUPTIONS)
        corrupt(doc)
        return doc


def _phase_number(doc: dict[str, Any]) -> None:
    doc["status"]["phase"] = 3


def _records_string(doc: dict[str, Any]) -> None:
    doc["status"]["running_records"] = json.dumps(doc["status"]["running_records"])


def _create_time_string(doc: dict[str, Any]) -> None:
    ms = doc["metadata"]["create_time"]
    doc["metadata"]["create_time"] = datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def _nodes_pair(doc: dict[str, Any]) -> None:
    doc["status"]["node_count_metrics"] = [[1]]


def _node_count_string(doc: dict[str, Any]) -> None:
    resource = doc["spec"]["resource"]
    resource["node_count"] = str(resource["node_count"])


_CORRUPTIONS: tuple[tuple[str, Callable[[dict[str, Any]], None]], ...] = (
    ("status.phase", _phase_number),
    ("status.running_records", _records_string),
    ("metadata.create_time", _create_time_string),
    ("status.node_count_metrics", _nodes_pair),
    ("spec.resource.node_count", _node_count_string),
)


def _dumps(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data).encode()
