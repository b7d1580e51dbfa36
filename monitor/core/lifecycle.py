"""How often a job is polled, and whether it is still exported, given what is known of it.

A pure function of the job's state and the time, so the rules are tested from a table:

- a job the API says is gone (``ModelArts.2775``) is polled at ``not_found_interval`` in case
  it comes back, and its series leave ``/metrics`` after ``not_found_retention``;
- a job in a terminal phase (Completed, Failed, Terminated, Abnormal) is polled at
  ``terminal_interval``, and after ``terminal_retention`` in that phase it is retired: no more
  polls, no more series, so cardinality stays bounded over months of finished jobs;
- every other job is polled at its own interval.

A slower interval never makes a job polled *more* often than its own interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from monitor.core.state import JobState


class Rules(Protocol):
    """The lifecycle settings (``poll.*`` in the config; ``PollSettings`` is one)."""

    @property
    def not_found_interval(self) -> float: ...
    @property
    def not_found_retention(self) -> float: ...
    @property
    def terminal_interval(self) -> float: ...
    @property
    def terminal_retention(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Plan:
    interval: float | None
    """Seconds between polls; None: stop polling (retired)."""
    export: bool
    """Whether the job's series belong in /metrics."""


def plan(state: JobState | None, now: float, interval: float, poll: Rules) -> Plan:
    if state is None:
        return Plan(interval, True)
    if state.gone:
        since = state.gone_since if state.gone_since is not None else now
        return Plan(max(interval, poll.not_found_interval), now - since < poll.not_found_retention)
    if state.snapshot is not None and state.snapshot.terminal:
        since = state.phase_since if state.phase_since is not None else now
        if now - since >= poll.terminal_retention:
            return Plan(None, False)
        return Plan(max(interval, poll.terminal_interval), True)
    return Plan(interval, True)
