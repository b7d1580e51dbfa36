"""What the job book trades in: the outcomes the poller hands it and the views it gives back.

All immutable: an outcome is applied once, a view is a picture of the moment it was taken, and
neither lets anyone outside the book change a job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from monitor.core.job import Observation
from monitor.core.state import JobState


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


@dataclass(frozen=True, slots=True)
class JobView:
    """A read-only picture of one watched job, for the rooms that act on jobs."""

    job_id: str
    labels: Mapping[str, str]
    interval: float
    state: JobState | None
    health: Health

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
