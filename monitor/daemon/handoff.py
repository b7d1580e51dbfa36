"""What the job book trades in: the outcomes the poller hands it and the views it gives back.

All immutable: an outcome is applied once, a view is a picture of the moment it was taken, and
neither lets anyone outside the book change a job.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace

from monitor.core.hang import TaskUsage
from monitor.core.job import JobGone, Observation
from monitor.core.reasons import Reason
from monitor.core.state import JobState

Schedule = Callable[[str, float | None, bool], None]
"""``schedule(job_id, interval or None to stop, initial)``: how the book asks the scheduler to
(re)plan a job's polls; ``initial`` means the first poll should come soon."""
Explain = Callable[[str], Awaitable[list[Reason]]]
"""Fetches a job's newest reasons (``[]`` when they cannot be had); called inside an apply."""


@dataclass(frozen=True, slots=True)
class Health:
    """How polling a job is going; replaced, never mutated, on every change."""

    polled: bool = False
    up: bool = False
    last_success: float | None = None
    last_error: str | None = None
    failures: int = 0
    """Consecutive failed polls; each one doubles the wait before the next (capped)."""
    not_before: float = 0.0
    slow: bool = False
    """The last poll timed out or was slow: the job polls in the slow lane."""

    def failed(self, error: str, slow: bool, not_before: float | None) -> Health:
        """After a failed poll: ``up`` 0; with ``not_before`` (backing off) one more failure
        counted, without (the monitor's own failure, such as the database) none."""
        backoff = not_before is not None
        return replace(
            self,
            polled=True,
            up=False,
            last_error=error,
            failures=self.failures + 1 if backoff else self.failures,
            not_before=not_before if not_before is not None else self.not_before,
            slow=slow,
        )


@dataclass(frozen=True, slots=True)
class JobView:
    """A read-only picture of one watched job, for the rooms that act on jobs."""

    job_id: str
    labels: Mapping[str, str]
    interval: float
    state: JobState | None
    health: Health
    target: str = ""
    """The name of the job's target ("" for the single-project config's)."""
    usage: Mapping[str, TaskUsage] = field(default_factory=dict)
    """The latest usage sweep's readings per task (none unless the job is Running)."""

    @property
    def running(self) -> bool:
        return self.state is not None and self.state.running


@dataclass(frozen=True, slots=True)
class Unchanged:
    """The body is byte for byte the one behind the job's state: nothing to parse or diff."""


@dataclass(frozen=True, slots=True)
class Observed:
    observation: Observation
    digest: bytes = b""
    """Of the body the observation was parsed from (empty for a gone job)."""


@dataclass(frozen=True, slots=True)
class Failed:
    result: str
    """A ``polls_total`` result: ``timeout``, ``server_error``, ..."""
    message: str


PollOutcome = Unchanged | Observed | Failed


def poll_result(outcome: PollOutcome) -> str:
    """The ``polls_total`` result of what a poll came to."""
    if isinstance(outcome, Failed):
        return outcome.result
    if isinstance(outcome, Observed) and isinstance(outcome.observation, JobGone):
        return "not_found"
    return "ok"
