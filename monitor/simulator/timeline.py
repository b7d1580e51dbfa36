"""A scripted job's steps and the state they accumulate: what ``scenario.py`` replays.

Pure values and one pure function (``apply``: a state and a step give the next state), so a
job's whole timeline is folded once when the scenario loads, and the fixed attributes a job's
documents show (engine, flavour, roles) are plain values the loader builds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from monitor.simulator.events import JobEvent
from monitor.simulator.recovery import RecoverRecord
from monitor.simulator.usage import UsageSet

TERMINAL_PHASES = frozenset({"Completed", "Failed", "Terminated", "Abnormal"})
"""Phases after which ModelArts stops a job for good (the API reference's lifecycle); the
simulator's own copy: it must not learn ModelArts from the monitor it checks."""
END_KEYS = ("end_reason", "end_related_task", "end_recover", "end_recover_before_downgrade")


@dataclass(frozen=True, slots=True)
class Engine:
    id: str
    name: str
    version: str


@dataclass(frozen=True, slots=True)
class Flavor:
    """``flavor_detail`` of a public pool: ``type``, and ``gpus`` or ``npus`` per node."""

    id: str
    type: str
    name: str | None = None
    gpus: int | None = None
    npus: int | None = None


@dataclass(frozen=True, slots=True)
class Role:
    """One role of a heterogeneous job: an entry of the top-level ``tasks[]`` (SDK
    ``TaskResponse``), with the flavour of its ``task_resource`` (``FlavorResponse``)."""

    role: str
    flavor: Flavor
    pool_id: str | None = None


DEFAULT_ENGINE = Engine("pytorch_1.8.0-cuda_10.2-py_3.7", "PyTorch", "PyTorch-1.8.0-python3.7")
DEFAULT_FLAVOR = Flavor("modelarts.vm.cpu.8u", "CPU")


@dataclass(frozen=True, slots=True)
class RunEnd:
    """How a running record ends; ``None`` fields are left out of the record."""

    end_reason: str | None = None
    end_related_task: str | None = None
    end_recover: str | None = None
    end_recover_before_downgrade: str | None = None
    recover_records: tuple[RecoverRecord, ...] = field(default=(), kw_only=True)
    """Rendered as ``recover_records``, both timestamps the closing step's (``recovery.py``)."""


@dataclass(frozen=True, slots=True)
class TaskStatus:
    task: str
    exit_code: int | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """One timeline entry; ``None`` means "leave as it was"."""

    at: float
    phase: str | None = None
    secondary_phase: str | None = None
    nodes: int | None = None
    run: str | None = None
    """``start_type`` of the running record this step opens."""
    end_run: RunEnd | None = None
    task_statuses: tuple[TaskStatus, ...] | None = None
    gone: bool = False
    usage: tuple[UsageSet, ...] = ()
    """Utilisation from this step on (``usage.py``); not part of ``JobState``."""
    events: tuple[JobEvent, ...] = ()
    """Job events recorded at this step's time (``events.py``)."""
    xpu_after: float | None = None
    """Seconds from the opened run's start to its accelerators' (``xpu_start_at``)."""


@dataclass(frozen=True, slots=True)
class Record:
    """A running record in scenario time; rendered in epoch seconds."""

    start: float
    start_type: str
    end: float | None = None
    ending: RunEnd | None = None
    xpu_after: float | None = None


@dataclass(frozen=True, slots=True)
class JobState:
    """A job after some step, in scenario time."""

    created: float
    phase: str = ""
    secondary_phase: str = ""
    gone: bool = False
    started: float | None = None
    terminal_since: float | None = None
    node_points: tuple[tuple[float, int], ...] = ()
    task_statuses: tuple[TaskStatus, ...] = ()
    records: tuple[Record, ...] = ()

    def duration(self, t: float) -> float:
        """Scenario seconds run by time ``t``: 0 before the start, frozen once terminal."""
        if self.started is None:
            return 0.0
        end = self.terminal_since if self.terminal_since is not None else t
        return max(0.0, end - self.started)


def apply(state: JobState, step: Step) -> JobState:
    """The state after ``step``. Assumes a validated step (see ``parse_scenario``)."""
    changes: dict[str, Any] = {}
    phase = state.phase
    if step.phase is not None:
        phase = changes["phase"] = step.phase
        if phase == "Running" and state.started is None:
            changes["started"] = step.at
        if phase in TERMINAL_PHASES:
            if state.phase not in TERMINAL_PHASES or state.terminal_since is None:
                changes["terminal_since"] = step.at
        else:
            changes["terminal_since"] = None
    if step.secondary_phase is not None:
        changes["secondary_phase"] = step.secondary_phase
    if step.nodes is not None:
        changes["node_points"] = (*state.node_points, (step.at, step.nodes))
    if step.task_statuses is not None:
        changes["task_statuses"] = step.task_statuses
    records = state.records
    if step.end_run is not None and records and records[-1].end is None:
        records = (*records[:-1], replace(records[-1], end=step.at, ending=step.end_run))
    if step.run is not None:
        records = (*records, Record(step.at, step.run, xpu_after=step.xpu_after))
    if records is not state.records:
        changes["records"] = records
    if step.gone:
        changes["gone"] = True
    return replace(state, **changes)
