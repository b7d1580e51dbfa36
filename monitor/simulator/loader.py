"""Reading and validating scenario files into a ``Scenario`` (the format: ``scenario.py``).

Every problem is collected and reported at once, each line naming its key path
(``jobs[1].timeline[2].nodes: expected an integer``), because a scenario is written by hand.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

from monitor.simulator.scenario import (
    DEFAULT_ENGINE,
    DEFAULT_FLAVOR,
    END_KEYS,
    Engine,
    Flavor,
    JobSpec,
    RunEnd,
    Scenario,
    Step,
    TaskStatus,
)

__all__ = ["ScenarioError", "builtin_scenario", "load_scenario", "parse_scenario"]

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


class ScenarioError(ValueError):
    """The scenario is unusable; ``problems`` holds one line per problem, each naming its key."""

    def __init__(self, problems: list[str] | str, source: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        text = "; ".join(self.problems)
        super().__init__(f"{source}: {text}" if source else text)


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
        e = c.mapping(m["end_run"], f"{path}.end_run", END_KEYS, required=None)
        if e is not None:
            p = f"{path}.end_run"
            end_run = RunEnd(*(c.get(e, k, p, c.string, default=None) for k in END_KEYS))
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
