"""Scripted job lifecycles for the simulator: the scenario file, its validation, its replay.

Why a script rather than a random generator: the monitor's tests and its ``demo`` command need to
know *exactly* which transitions a job goes through and when, so that an assertion like "one
``run_ended`` with ``end_recover=pod_reschedule``" is a fact of the input, not a coin toss.

Everything here is pure. A scenario is parsed once into frozen dataclasses and each job's
timeline is replayed once into the state after every step; answering "what does job X look like
at scenario time t" is then a bisect plus rendering one dict. Nothing reads a clock: the caller
passes the scenario time ``t`` and the ``epoch`` (the Unix time scenario time 0 stands for).

Scenario file format (YAML)::

    speed: 1.0          # scenario seconds per wall-clock second (the caller may override it)
    jobs:
      - id: 3faf5c03-aaa1-4cbe-879d-24b05d997347   # required, unique, no "/"
        name: bert-pretrain                        # required, 1-64 of [A-Za-z0-9_-]
        workspace_id: "0"          # optional, default "0" (quote it: it is a string)
        user_name: alice           # optional, default ""
        engine: {id: pytorch_1.8.0-cuda_10.2-py_3.7, name: PyTorch,
                 version: PyTorch-1.8.0-python3.7}    # optional; all three keys when given
        flavor: {id: modelarts.vm.gpu.8v100, type: GPU}   # optional; both keys when given
        pool_id: pool-abc          # optional, omitted from the document when absent
        node_count: 4              # requested nodes (spec.resource.node_count), default 1
        tasks: [worker-0, worker-1]  # status.tasks, default [worker-0]
        latency: 0                 # wall seconds to wait before answering for this job
        timeline:                  # at least one step, sorted by `at` (scenario seconds)
          - at: 0                  # the job does not exist before its first step
            phase: Creating        # free text on purpose (undocumented values are allowed)
            secondary_phase: Creating
          - at: 8
            phase: Running
            secondary_phase: Running
            nodes: 4               # appends [ts_ms, 4] to status.node_count_metrics
            run: {start_type: init_or_rescheduled}   # opens a running record, start_at = now
          - at: 16                 # end_run is applied before run in the same step
            end_run: {end_reason: "process exited with 1", end_related_task: worker-1,
                      end_recover: proc_restart, end_recover_before_downgrade: proc_restart}
            run: {start_type: restarted}
          - at: 30                 # replaces status.task_statuses
            task_statuses: [{task: worker-0, exit_code: 137, message: OOMKilled}]
          - at: 40
            gone: true             # deleted: the API answers 400 ModelArts.2775 from now on

Semantics. State accumulates: a step sets only what it names, and a step with nothing but ``at``
changes nothing (handy to mark the end of a scenario). ``run.start_type`` defaults to
``init_or_rescheduled``; every ``end_run`` key is optional and omitted from the record when
absent. Opening a run while one is open, closing one when none is, a first step without a
phase, and steps after ``gone`` are errors. Unknown keys are errors, and every error names its
key path (``jobs[1].timeline[2].nodes: expected an integer, got 'four'``).

Time mapping, with ``now = epoch + at`` for the step at ``at``:

* ``metadata.create_time`` = the first step's ``now``, in ms;
* ``status.start_time`` = ``now`` of the first step whose phase is ``Running``, in ms (0 before);
* ``status.duration`` = ms from start_time to the current scenario time, frozen at the step that
  made the phase terminal (Completed, Failed, Terminated, Abnormal); 0 before the start;
* ``node_count_metrics`` points are ``[ms, nodes]``; running records' ``start_at``/``end_at`` are
  whole **seconds**, and an open record has no ``end_at`` -- the units of the real API.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

__all__ = [
    "TERMINAL_PHASES",
    "Engine",
    "Flavor",
    "JobSpec",
    "JobState",
    "Record",
    "RunEnd",
    "Scenario",
    "ScenarioError",
    "Step",
    "TaskStatus",
    "builtin_scenario",
    "load_scenario",
    "parse_scenario",
]

TERMINAL_PHASES = frozenset({"Completed", "Failed", "Terminated", "Abnormal"})
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")

_TOP_KEYS = ("speed", "jobs")
_JOB_KEYS = (
    "id",
    "name",
    "workspace_id",
    "user_name",
    "engine",
    "flavor",
    "pool_id",
    "node_count",
    "tasks",
    "latency",
    "timeline",
)
_STEP_KEYS = ("at", "phase", "secondary_phase", "nodes", "run", "end_run", "task_statuses", "gone")
_END_KEYS = ("end_reason", "end_related_task", "end_recover", "end_recover_before_downgrade")


class ScenarioError(ValueError):
    """The scenario is unusable; ``problems`` holds one line per problem, each naming its key."""

    def __init__(self, problems: list[str] | str, source: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        text = "; ".join(self.problems)
        super().__init__(f"{source}: {text}" if source else text)


@dataclass(frozen=True, slots=True)
class Engine:
    id: str
    name: str
    version: str


@dataclass(frozen=True, slots=True)
class Flavor:
    id: str
    type: str


DEFAULT_ENGINE = Engine("pytorch_1.8.0-cuda_10.2-py_3.7", "PyTorch", "PyTorch-1.8.0-python3.7")
DEFAULT_FLAVOR = Flavor("modelarts.vm.cpu.8u", "CPU")


@dataclass(frozen=True, slots=True)
class RunEnd:
    """How a running record ends; ``None`` fields are left out of the record."""

    end_reason: str | None = None
    end_related_task: str | None = None
    end_recover: str | None = None
    end_recover_before_downgrade: str | None = None


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


@dataclass(frozen=True, slots=True)
class Record:
    """A running record in scenario time; rendered in epoch seconds."""

    start: float
    start_type: str
    end: float | None = None
    ending: RunEnd | None = None


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
        records = (*records, Record(start=step.at, start_type=step.run))
    if records is not state.records:
        changes["records"] = records
    if step.gone:
        changes["gone"] = True
    return replace(state, **changes)


@dataclass(frozen=True)
class JobSpec:
    """One scripted job: its fixed attributes, its timeline, and the state after each step."""

    id: str
    name: str
    timeline: tuple[Step, ...]
    workspace_id: str = "0"
    user_name: str = ""
    engine: Engine = DEFAULT_ENGINE
    flavor: Flavor = DEFAULT_FLAVOR
    pool_id: str | None = None
    node_count: int = 1
    tasks: tuple[str, ...] = ("worker-0",)
    latency: float = 0.0
    states: tuple[JobState, ...] = field(init=False, repr=False, compare=False)
    _times: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.timeline:
            raise ValueError(f"job {self.id}: a timeline needs at least one step")
        states: list[JobState] = []
        state = JobState(created=self.timeline[0].at)
        for step in self.timeline:
            state = apply(state, step)
            states.append(state)
        object.__setattr__(self, "states", tuple(states))
        object.__setattr__(self, "_times", tuple(s.at for s in self.timeline))

    @property
    def first_at(self) -> float:
        return self.timeline[0].at

    @property
    def last_at(self) -> float:
        return self.timeline[-1].at

    def state_at(self, t: float) -> JobState | None:
        """The state after the last step at or before ``t``; ``None`` before the first step."""
        i = bisect.bisect_right(self._times, t)
        return self.states[i - 1] if i else None

    def document(self, t: float, epoch: float) -> dict[str, Any] | None:
        """The job-detail body at scenario time ``t``; ``None`` if it does not exist (yet)."""
        state = self.state_at(t)
        if state is None or state.gone:
            return None
        return render(self, state, t, epoch)


def render(job: JobSpec, state: JobState, t: float, epoch: float) -> dict[str, Any]:
    """The API's job-detail shape (see the seed reference), timestamps mapped onto ``epoch``."""

    def ms(at: float) -> int:
        return round((epoch + at) * 1000)

    def sec(at: float) -> int:
        return math.floor(epoch + at)

    resource: dict[str, Any] = {"flavor_id": job.flavor.id, "node_count": job.node_count}
    if job.pool_id is not None:
        resource["pool_id"] = job.pool_id
    resource["flavor_detail"] = {"flavor_type": job.flavor.type}
    return {
        "kind": "job",
        "metadata": {
            "id": job.id,
            "name": job.name,
            "description": "",
            "create_time": ms(state.created),
            "workspace_id": job.workspace_id,
            "user_name": job.user_name,
        },
        "status": {
            "phase": state.phase,
            "secondary_phase": state.secondary_phase,
            "duration": round(state.duration(t) * 1000),
            "start_time": ms(state.started) if state.started is not None else 0,
            "node_count_metrics": [[ms(at), n] for at, n in state.node_points],
            "tasks": list(job.tasks),
            "task_statuses": [_task_status(ts) for ts in state.task_statuses],
            "running_records": [_record(r, sec) for r in state.records],
        },
        "algorithm": {
            "code_dir": f"obs://modelarts-sim/{job.name}/code/",
            "boot_file": f"obs://modelarts-sim/{job.name}/code/train.py",
            "engine": {
                "engine_id": job.engine.id,
                "engine_name": job.engine.name,
                "engine_version": job.engine.version,
            },
        },
        "spec": {"resource": resource},
    }


def _task_status(ts: TaskStatus) -> dict[str, Any]:
    out: dict[str, Any] = {"task": ts.task}
    if ts.exit_code is not None:
        out["exit_code"] = ts.exit_code
    if ts.message is not None:
        out["message"] = ts.message
    return out


def _record(r: Record, sec: Callable[[float], int]) -> dict[str, Any]:
    out: dict[str, Any] = {"start_at": sec(r.start)}
    if r.end is not None:
        out["end_at"] = sec(r.end)
    out["start_type"] = r.start_type
    if r.ending is not None:
        for key in _END_KEYS:
            value = getattr(r.ending, key)
            if value is not None:
                out[key] = value
    return out


@dataclass(frozen=True)
class Scenario:
    jobs: tuple[JobSpec, ...]
    speed: float = 1.0
    _index: dict[str, JobSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {j.id: j for j in self.jobs})

    def job(self, job_id: str) -> JobSpec | None:
        return self._index.get(job_id)

    @property
    def end_time(self) -> float:
        """Scenario time of the last step of any job: the scenario is over from then on."""
        return max((j.last_at for j in self.jobs), default=0.0)


# --- loading --------------------------------------------------------------------------------


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; ``ScenarioError`` lists every problem."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read: {exc.strerror or exc}", source) from exc
    return _parse_text(text, source)


def builtin_scenario(name: str = "demo") -> Scenario:
    """A scenario shipped with the package, ``monitor/scenarios/<name>.yaml``."""
    folder = resources.files("monitor").joinpath("scenarios")
    available = sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )
    if not _NAME.fullmatch(name) or name not in available:
        raise ScenarioError(f"no built-in scenario {name!r} (available: {', '.join(available)})")
    resource = folder.joinpath(f"{name}.yaml")
    return _parse_text(resource.read_text(encoding="utf-8"), f"builtin:{name}")


def _parse_text(text: str, source: str) -> Scenario:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"not valid YAML: {exc}", source) from exc
    return parse_scenario(data, source)


def parse_scenario(data: object, source: str | None = None) -> Scenario:
    """Validate decoded YAML/JSON into a ``Scenario``; every problem is reported, not the first."""
    c = _Checker()
    top = c.mapping(data, "", _TOP_KEYS, required=("jobs",))
    if top is None:
        raise ScenarioError(c.problems, source)
    speed = c.get(top, "speed", "", c.number, default=1.0, positive=True)
    jobs: list[JobSpec] = []
    raw_jobs = c.sequence(top.get("jobs"), "jobs") if "jobs" in top else None
    if raw_jobs is not None and not raw_jobs:
        c.fail("jobs", "expected at least one job")
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_jobs or []):
        job = _parse_job(c, raw, f"jobs[{i}]")
        if job is None:
            continue
        if job.id in seen:
            c.fail(f"jobs[{i}].id", f"duplicate of jobs[{seen[job.id]}].id ({job.id!r})")
        seen.setdefault(job.id, i)
        jobs.append(job)
    if c.problems:
        raise ScenarioError(c.problems, source)
    return Scenario(jobs=tuple(jobs), speed=speed)


def _parse_job(c: _Checker, raw: object, path: str) -> JobSpec | None:
    m = c.mapping(raw, path, _JOB_KEYS, required=("id", "name", "timeline"))
    if m is None:
        return None
    before = len(c.problems)
    job_id = c.get(m, "id", path, c.string, default="")
    if isinstance(m.get("id"), str) and (not job_id or "/" in job_id):
        c.fail(f"{path}.id", f"expected a non-empty string without '/', got {job_id!r}")
    name = c.get(m, "name", path, c.string, default="")
    if isinstance(m.get("name"), str) and not _NAME.fullmatch(name):
        c.fail(f"{path}.name", f"expected 1-64 of letters, digits, '_' and '-', got {name!r}")
    workspace_id = c.get(m, "workspace_id", path, c.string, default="0")
    user_name = c.get(m, "user_name", path, c.string, default="")
    engine = DEFAULT_ENGINE
    if "engine" in m:
        e = c.mapping(
            m["engine"],
            f"{path}.engine",
            ("id", "name", "version"),
            required=("id", "name", "version"),
        )
        if e is not None:
            p = f"{path}.engine"
            engine = Engine(
                *(c.get(e, k, p, c.string, default="") for k in ("id", "name", "version"))
            )
    flavor = DEFAULT_FLAVOR
    if "flavor" in m:
        f = c.mapping(m["flavor"], f"{path}.flavor", ("id", "type"), required=("id", "type"))
        if f is not None:
            p = f"{path}.flavor"
            flavor = Flavor(*(c.get(f, k, p, c.string, default="") for k in ("id", "type")))
    pool_id = c.get(m, "pool_id", path, c.string, default=None)
    node_count = c.get(m, "node_count", path, c.integer, default=1, minimum=1)
    tasks: tuple[str, ...] = ("worker-0",)
    if "tasks" in m:
        raw_tasks = c.sequence(m["tasks"], f"{path}.tasks") or []
        tasks = tuple(c.string(t, f"{path}.tasks[{i}]") or "" for i, t in enumerate(raw_tasks))
    latency = c.get(m, "latency", path, c.number, default=0.0)
    steps = _parse_timeline(c, m.get("timeline"), f"{path}.timeline") if "timeline" in m else []
    if len(c.problems) > before or not steps:
        return None
    return JobSpec(
        id=job_id,
        name=name,
        timeline=tuple(steps),
        workspace_id=workspace_id,
        user_name=user_name,
        engine=engine,
        flavor=flavor,
        pool_id=pool_id,
        node_count=node_count,
        tasks=tasks,
        latency=latency,
    )


def _parse_timeline(c: _Checker, raw: object, path: str) -> list[Step]:
    items = c.sequence(raw, path)
    if items is None:
        return []
    if not items:
        c.fail(path, "expected at least one step")
    steps: list[Step] = []
    run_open = gone = False
    last_at = -math.inf
    for i, item in enumerate(items):
        p = f"{path}[{i}]"
        step = _parse_step(c, item, p)
        if step is None:
            continue
        if step.at < last_at:
            c.fail(f"{p}.at", f"steps must be sorted by 'at' ({step.at:g} < {last_at:g})")
        last_at = max(last_at, step.at)
        if gone:
            c.fail(p, "the job is already gone; no step may follow 'gone: true'")
        if i == 0 and step.phase is None:
            c.fail(f"{p}.phase", "the first step must set a phase (the job exists from it on)")
        if step.end_run is not None:
            if not run_open:
                c.fail(f"{p}.end_run", "no running record is open")
            run_open = False
        if step.run is not None:
            if run_open:
                c.fail(f"{p}.run", "a running record is already open; close it with end_run")
            run_open = True
        gone = gone or step.gone
        steps.append(step)
    return steps


def _parse_step(c: _Checker, raw: object, path: str) -> Step | None:
    m = c.mapping(raw, path, _STEP_KEYS, required=("at",))
    if m is None:
        return None
    before = len(c.problems)
    at = c.get(m, "at", path, c.number, default=0.0)
    phase = c.get(m, "phase", path, c.string, default=None)
    secondary = c.get(m, "secondary_phase", path, c.string, default=None)
    nodes = c.get(m, "nodes", path, c.integer, default=None, minimum=0)
    run: str | None = None
    if "run" in m:
        r = c.mapping(m["run"], f"{path}.run", ("start_type",), required=None)
        if r is not None:
            run = c.get(r, "start_type", f"{path}.run", c.string, default="init_or_rescheduled")
    end_run: RunEnd | None = None
    if "end_run" in m:
        e = c.mapping(m["end_run"], f"{path}.end_run", _END_KEYS, required=None)
        if e is not None:
            p = f"{path}.end_run"
            end_run = RunEnd(*(c.get(e, k, p, c.string, default=None) for k in _END_KEYS))
    task_statuses: tuple[TaskStatus, ...] | None = None
    if "task_statuses" in m:
        task_statuses = tuple(
            ts
            for j, item in enumerate(c.sequence(m["task_statuses"], f"{path}.task_statuses") or [])
            if (ts := _parse_task_status(c, item, f"{path}.task_statuses[{j}]")) is not None
        )
    gone = c.get(m, "gone", path, c.boolean, default=False)
    if len(c.problems) > before:
        return None
    return Step(at, phase, secondary, nodes, run, end_run, task_statuses, gone)


def _parse_task_status(c: _Checker, raw: object, path: str) -> TaskStatus | None:
    m = c.mapping(raw, path, ("task", "exit_code", "message"), required=("task",))
    if m is None:
        return None
    return TaskStatus(
        task=c.get(m, "task", path, c.string, default=""),
        exit_code=c.get(m, "exit_code", path, c.integer, default=None),
        message=c.get(m, "message", path, c.string, default=None),
    )


T = TypeVar("T")
D = TypeVar("D")


class _Checker:
    """Collects problems as ``path: message`` lines while turning raw values into typed ones."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{path or '(top level)'}: {message}")

    def get(
        self,
        m: Mapping[str, Any],
        key: str,
        path: str,
        convert: Callable[..., T | None],
        *,
        default: D,
        **kw: Any,
    ) -> T | D:
        """``m[key]`` converted, or ``default`` when absent or wrong (the problem is recorded)."""
        if key not in m:
            return default
        value = convert(m[key], f"{path}.{key}" if path else key, **kw)
        return default if value is None else value

    def mapping(
        self,
        value: object,
        path: str,
        allowed: tuple[str, ...],
        required: tuple[str, ...] | None,
    ) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.fail(path, f"expected a mapping, got {_describe(value)}")
            return None
        prefix = f"{path}." if path else ""
        for key in value:
            if key not in allowed:
                self.fail(f"{prefix}{key}", f"unknown key (allowed: {', '.join(allowed)})")
        for key in required or ():
            if key not in value:
                self.fail(f"{prefix}{key}", "required")
        return value

    def sequence(self, value: object, path: str) -> list[Any] | None:
        if not isinstance(value, list):
            self.fail(path, f"expected a list, got {_describe(value)}")
            return None
        return value

    def string(self, value: object, path: str) -> str | None:
        if isinstance(value, str):
            return value
        hint = " (quote it in YAML)" if isinstance(value, int | float) else ""
        self.fail(path, f"expected a string, got {_describe(value)}{hint}")
        return None

    def integer(self, value: object, path: str, minimum: int | None = None) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"expected an integer, got {_describe(value)}")
            return None
        if minimum is not None and value < minimum:
            self.fail(path, f"expected an integer >= {minimum}, got {value}")
            return None
        return value

    def number(self, value: object, path: str, positive: bool = False) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            self.fail(path, f"expected a number, got {_describe(value)}")
            return None
        if math.isinf(value) or value < 0 or (positive and value == 0):
            self.fail(
                path, f"expected a finite number {'> 0' if positive else '>= 0'}, got {value}"
            )
            return None
        return float(value)

    def boolean(self, value: object, path: str) -> bool | None:
        if not isinstance(value, bool):
            self.fail(path, f"expected true or false, got {_describe(value)}")
            return None
        return value


def _describe(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, str | int | float | bool):
        return repr(value)
    return type(value).__name__
