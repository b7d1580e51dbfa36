"""Job events of the fake API: ``GET /v2/{project_id}/training-jobs/{id}/events``.

Per ``shared/reference/modelarts-api-notes.md``: query ``offset``, ``limit`` (1..100),
``order``, ``level`` (``Info | Warning | Error``), optional ``start_time``/``end_time``
(together) and ``pattern`` (at most 256 characters); the answer is ``{"total", "limit",
"offset", "order", "start_time", "end_time", "events": [{"time", "level", "message",
"source"}]}`` with ``time`` like ``2022-11-26T16:03:41+08:00``.

A scenario step's ``events`` (``[{level, message, source}]``, ``source`` defaulting to ``Job``)
are recorded at that step's time. What the simulator answers at scenario time ``t``:

* the events recorded at or before ``t``, ``time`` in ISO 8601 at UTC+08:00, whole seconds
  (as in the API reference);
* ``level``: only events of exactly that level; ``pattern``: only events whose message contains
  it (case-sensitive); ``source`` (in the current API reference, not in SDK 3.1.219): only that
  source; ``start_time``/``end_time``: ISO 8601 (no offset means +08:00; a space stands for an
  unencoded ``+``), inclusive bounds;
* ``order`` ``desc`` (the default: newest first) or ``asc``; events of one step keep the order
  the scenario lists them in (reversed for ``desc``);
* ``offset`` is a **row offset** (skip that many matching events), default 0. The notes give
  only ``offset=0``; the API reference calls it the offset of data entries, while the SDK
  3.1.219 docstring calls it the start page -- the two agree for ``offset=0``;
* ``limit`` 1..100, default 50 (the API reference's and the SDK's default);
* ``total`` counts every matching event, before paging; ``start_time``/``end_time`` echo the
  query, or are ``null`` without one;
* an invalid parameter is answered 400 (``EventQueryError``); unknown parameters are ignored.

Pure: the caller passes the scenario time and the epoch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from monitor.simulator.checks import Checker

if TYPE_CHECKING:
    from monitor.simulator.scenario import JobSpec

__all__ = [
    "DEFAULT_LIMIT",
    "LEVELS",
    "MAX_LIMIT",
    "MAX_PATTERN",
    "EventQueryError",
    "JobEvent",
    "event_time",
    "list_events",
    "parse_events",
]

LEVELS = ("Info", "Warning", "Error")
ORDERS = ("asc", "desc")
DEFAULT_LIMIT = 50
MAX_LIMIT = 100
MAX_PATTERN = 256
DEFAULT_SOURCE = "Job"
CST = timezone(timedelta(hours=8))
"""The offset the API reference's event times carry (China Standard Time)."""
_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True, slots=True)
class JobEvent:
    level: str
    message: str
    source: str = DEFAULT_SOURCE


class EventQueryError(ValueError):
    """A query parameter is invalid; the message names it."""


# --- the scenario key ---------------------------------------------------------------------------


def parse_events(c: Checker, raw: object, path: str) -> tuple[JobEvent, ...]:
    """A step's ``events``: a list of ``{level, message, source}``."""
    out: list[JobEvent] = []
    for i, item in enumerate(c.sequence(raw, path) or []):
        p = f"{path}[{i}]"
        m = c.mapping(item, p, ("level", "message", "source"), required=("level", "message"))
        if m is None:
            continue
        before = len(c.problems)
        level = c.get(m, "level", p, c.string, default="")
        if isinstance(m.get("level"), str) and level not in LEVELS:
            c.fail(f"{p}.level", f"expected one of {', '.join(LEVELS)}, got {level!r}")
        message = c.get(m, "message", p, c.string, default="", non_empty=True)
        source = c.get(m, "source", p, c.string, default=DEFAULT_SOURCE, non_empty=True)
        if len(c.problems) == before and "level" in m and "message" in m:
            out.append(JobEvent(level, message, source))
    return tuple(out)


# --- the endpoint -------------------------------------------------------------------------------


def event_time(unix: float) -> str:
    """``2022-11-26T16:03:41+08:00``: whole seconds, at UTC+08:00."""
    return datetime.fromtimestamp(math.floor(unix), CST).isoformat()


def list_events(job: JobSpec, query: Mapping[str, str], t: float, epoch: float) -> dict[str, Any]:
    """The events answer for ``job`` at scenario time ``t``; ``EventQueryError`` if invalid."""
    offset = _integer(query, "offset", 0, 0, None)
    limit = _integer(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    order = query.get("order", "desc")
    if order not in ORDERS:
        raise EventQueryError(f"order: {order!r} is not asc or desc")
    level = query.get("level")
    if level is not None and level not in LEVELS:
        raise EventQueryError(f"level: {level!r} is not one of {', '.join(LEVELS)}")
    pattern = query.get("pattern")
    if pattern is not None and len(pattern) > MAX_PATTERN:
        raise EventQueryError(f"pattern: longer than {MAX_PATTERN} characters")
    source = query.get("source")
    # An unencoded "+08:00" arrives as " 08:00" ("+" means a space in a query string).
    start_time, end_time = (
        None if (v := query.get(k)) is None else v.replace(" ", "+")
        for k in ("start_time", "end_time")
    )
    if (start_time is None) != (end_time is None):
        raise EventQueryError("start_time and end_time must be given together")
    low = _instant(start_time, "start_time") if start_time is not None else -math.inf
    high = _instant(end_time, "end_time") if end_time is not None else math.inf
    if low > high:
        raise EventQueryError("start_time is after end_time")

    matched = [
        (epoch + step.at, event)
        for step in job.timeline
        if step.at <= t
        for event in step.events
        if (level is None or event.level == level)
        and (pattern is None or pattern in event.message)
        and (source is None or event.source == source)
        and low <= math.floor(epoch + step.at) <= high
    ]
    if order == "desc":
        matched.reverse()
    page = matched[offset : offset + limit]
    return {
        "total": len(matched),
        "limit": limit,
        "offset": offset,
        "order": order,
        "start_time": start_time,
        "end_time": end_time,
        "events": [
            {"time": event_time(at), "level": e.level, "message": e.message, "source": e.source}
            for at, e in page
        ],
    }


def _integer(query: Mapping[str, str], key: str, default: int, low: int, high: int | None) -> int:
    raw = query.get(key)
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw):
        raise EventQueryError(f"{key}: expected a non-negative integer, got {raw!r}")
    value = int(raw)
    if value < low or (high is not None and value > high):
        bounds = f"{low}..{high}" if high is not None else f">= {low}"
        raise EventQueryError(f"{key}: {value} is out of range {bounds}")
    return value


def _instant(raw: str, key: str) -> float:
    """Unix seconds of an ISO 8601 time; without an offset it is read at UTC+08:00."""
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise EventQueryError(
            f"{key}: expected an ISO 8601 time like 2022-11-26T16:03:41+08:00, got {raw!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=CST)
    return parsed.timestamp()
