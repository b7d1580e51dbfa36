"""The value types the settings schema is built from: durations, strict models, label names
and job ids.

Shared by ``settings.py`` (the schema) and ``scale.py`` (sharding and discovery), and
re-exported by ``settings.py``, which is where callers import them from. The label names a job
may not use come from the metric family table (``exposition/families.py``). Every pattern is
applied with ``fullmatch``: ``re.match`` with ``$`` also matches before a trailing newline,
which once let ``"abc\n"`` through as a job id and broke the URL of every poll.
"""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict

from monitor.exposition.families import reserved_label_names

_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)?\s*")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
"""A ModelArts job id as ``jobs[].id`` and a discovered search item may give it: safe in a URL
path as it is. Use ``JOB_ID.fullmatch``."""

RESERVED_LABELS = reserved_label_names()
"""Label names the monitor sets itself (read from the metric family tables)."""


def finite(number: float) -> bool:
    """``math.isfinite`` that answers False, instead of raising, for an int beyond float range
    (YAML reads a 1 followed by 400 zeros as one)."""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False


def parse_duration(value: object) -> float:
    """``"500ms"``, ``"15s"``, ``"5m"``, ``"1h"``, ``"7d"`` or a number of seconds, as float
    seconds > 0 (days for spans such as the journal's retention)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 500ms, 15s, 5m, 1h")
    if isinstance(value, int | float):
        seconds = float(value) if finite(value) else math.inf
    elif isinstance(value, str) and (m := _DURATION.fullmatch(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError(f"{value!r} is not a duration such as 500ms, 15s, 5m, 1h")
    if not math.isfinite(seconds):
        raise ValueError("must be a finite duration")
    if seconds <= 0:
        raise ValueError("must be greater than zero")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
NonNegativeDuration = Annotated[
    float, BeforeValidator(lambda v: 0.0 if v in (0, "0", "0s", "0ms") else parse_duration(v))
]


class Model(BaseModel):
    """A settings block: unknown keys are errors, and settings never change once read."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    """``allow_inf_nan=False``: text such as ``rate_limit: ${RATE}`` with ``RATE=inf`` is not
    a number any setting can use (YAML's own ``.inf``/``.nan`` are refused by ``loading.py``)."""


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    """Job labels: valid Prometheus label names, none of them one the monitor sets itself."""
    for name in labels:
        if not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
            raise ValueError(f"{name!r} is not a valid Prometheus label name")
        if name in RESERVED_LABELS:
            raise ValueError(f"{name!r} is set by the monitor itself; choose another name")
    return labels
