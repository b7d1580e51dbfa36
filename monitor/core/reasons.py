"""Which transitions are worth asking ModelArts *why*, and how its answers become reasons.

When a poll's events include a failure (``phase_changed`` to Failed or Abnormal, or a
``run_ended`` with an ``end_recover``), the daemon fetches the job's newest Error and Warning
events; these functions decide that, merge the two lists newest first and clip them, pure, so
the rules are tested from tables. Event ids do not depend on ``data``, so a transition keeps
its id with or without reasons.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from monitor.core.events import Event
from monitor.core.state import JobState
from monitor.core.text import clip

Reason = dict[str, str]
"""One ModelArts job event as a reason: ``level``, ``time``, ``message``."""

FAILURE_PHASES = ("Failed", "Abnormal")
REASON_LEVELS = ("Error", "Warning")
"""The job-event levels fetched as reasons, both at once."""


def wants_reasons(event: Event) -> bool:
    """A transition whose *why* is worth an extra API call: the job failed, or a run ended in a
    fault recovery."""
    if event.type == "phase_changed":
        return event.data.get("to") in FAILURE_PHASES
    return event.type == "run_ended" and bool(event.data.get("end_recover"))


def newest_reasons(
    batches: Iterable[Sequence[Mapping[str, str]]], limit: int
) -> list[dict[str, str]]:
    """Events of several levels merged newest first (by their ``time``; an unreadable time
    sorts last, ties keep the batches' order), the first ``limit``, messages clipped."""
    merged = sorted((e for batch in batches for e in batch), key=_event_time, reverse=True)
    return [
        {"level": clip(e["level"], 32), "time": clip(e["time"], 64), "message": clip(e["message"])}
        for e in merged[:limit]
    ]


def _event_time(event: Mapping[str, str]) -> float:
    try:
        return datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError, OSError):
        return float("-inf")


def attach_reasons(
    state: JobState, events: list[Event], reasons: list[Reason]
) -> tuple[JobState, list[Event]]:
    """The reasons go into the failure events' ``data["reasons"]`` (an empty list when none
    could be had: the transition is never held back) and the newest becomes the job's
    ``last_reason``."""
    if reasons:
        state = replace(state, last_reason=reasons[0])
    return state, [
        replace(e, data={**e.data, "reasons": reasons}) if wants_reasons(e) else e for e in events
    ]


def reason_line(state: JobState | None) -> str:
    """The newest reason fetched for a failure of this job, as one line (or "")."""
    reason = state.last_reason if state else {}
    if not reason.get("message"):
        return ""
    head = " ".join(part for part in (reason.get("level"), reason.get("time")) if part)
    return f"{head}: {reason['message']}"
