"""Reading and validating scenario files into a ``Scenario`` (the format: ``scenario.py``).

Every problem is collected and reported at once, each line naming its key path
(``jobs[1].timeline[2].nodes: expected an integer``), because a scenario is written by hand.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from importlib import resources
from pathlib import Path

import yaml

from monitor.simulator.checks import Checker, ScenarioError, describe
from monitor.simulator.events import parse_events
from monitor.simulator.faults import parse_faults
from monitor.simulator.iam import parse_iam
from monitor.simulator.recovery import parse_recover_records
from monitor.simulator.scenario import JobSpec, Scenario
from monitor.simulator.timeline import (
    DEFAULT_ENGINE,
    DEFAULT_FLAVOR,
    END_KEYS,
    Engine,
    Flavor,
    Role,
    RunEnd,
    Step,
    TaskStatus,
)
from monitor.simulator.usage import check_usage_tasks, parse_usage

__all__ = ["ScenarioError", "builtin_scenario", "load_scenario", "parse_scenario"]

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")

_TOP_KEYS = ("speed", "jobs", "faults", "iam")
_JOB_KEYS = (
    "id",
    "name",
    "workspace_id",
    "user_name",
    "engine",
    "flavor",
    "pool_id",
    "pool_name",
    "allocated",
    "annotations",
    "node_count",
    "tasks",
    "roles",
    "latency",
    "timeline",
)
_STEP_KEYS = (
    "at",
    "phase",
    "secondary_phase",
    "nodes",
    "run",
    "end_run",
    "task_statuses",
    "gone",
    "usage",
    "events",
)


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
    """A scenario shipped with the package, ``monitor/simulator/scenarios/<name>.yaml``."""
    folder = resources.files("monitor.simulator").joinpath("scenarios")
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
    c = Checker()
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
    faults = parse_faults(c, top["faults"], "faults") if "faults" in top else None
    iam = parse_iam(c, top["iam"], "iam") if "iam" in top else None
    if c.problems:
        raise ScenarioError(c.problems, source)
    return Scenario(jobs=tuple(jobs), speed=speed, faults=faults, iam=iam)


def _parse_job(c: Checker, raw: object, path: str) -> JobSpec | None:
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
    flavor = _parse_flavor(c, m["flavor"], f"{path}.flavor") if "flavor" in m else DEFAULT_FLAVOR
    pool_id = c.get(m, "pool_id", path, c.string, default=None)
    pool_name = c.get(m, "pool_name", path, c.string, default=None)
    allocated = (
        _parse_allocated(c, m["allocated"], f"{path}.allocated") if "allocated" in m else None
    )
    annotations = _parse_annotations(c, m.get("annotations", {}), f"{path}.annotations")
    node_count = c.get(m, "node_count", path, c.integer, default=1, minimum=1)
    tasks: tuple[str, ...] = ("worker-0",)
    if "tasks" in m:
        raw_tasks = c.sequence(m["tasks"], f"{path}.tasks") or []
        tasks = tuple(c.string(t, f"{path}.tasks[{i}]") or "" for i, t in enumerate(raw_tasks))
    roles = _parse_roles(c, m["roles"], f"{path}.roles") if "roles" in m else ()
    latency = c.get(m, "latency", path, c.number, default=0.0)
    steps = _parse_timeline(c, m.get("timeline"), f"{path}.timeline") if "timeline" in m else []
    check_usage_tasks(c, m.get("timeline"), tasks, f"{path}.timeline")
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
        pool_name=pool_name,
        allocated=allocated,
        annotations=annotations,
        node_count=node_count,
        tasks=tasks,
        roles=roles,
        latency=latency,
    )


def _parse_flavor(c: Checker, raw: object, path: str) -> Flavor:
    f = c.mapping(raw, path, ("id", "type", "name", "gpus", "npus"), required=("id", "type"))
    if f is None:
        return DEFAULT_FLAVOR
    if "gpus" in f and "npus" in f:
        c.fail(path, "gpus and npus: a flavour has one kind of accelerator, give one of them")
    return Flavor(
        id=c.get(f, "id", path, c.string, default=""),
        type=c.get(f, "type", path, c.string, default=""),
        name=c.get(f, "name", path, c.string, default=None),
        gpus=c.get(f, "gpus", path, c.integer, default=None, minimum=0),
        npus=c.get(f, "npus", path, c.integer, default=None, minimum=0),
    )


def _parse_roles(c: Checker, raw: object, path: str) -> tuple[Role, ...]:
    roles = []
    for i, item in enumerate(c.sequence(raw, path) or []):
        p = f"{path}[{i}]"
        r = c.mapping(item, p, ("role", "flavor", "pool_id"), required=("role", "flavor"))
        if r is None or "flavor" not in r:
            continue
        roles.append(
            Role(
                role=c.get(r, "role", p, c.string, default=""),
                flavor=_parse_flavor(c, r["flavor"], f"{p}.flavor"),
                pool_id=c.get(r, "pool_id", p, c.string, default=None),
            )
        )
    return tuple(roles)


def _parse_allocated(c: Checker, raw: object, path: str) -> tuple[str, int] | None:
    keys = ("accelerator_type", "accelerator_num")
    a = c.mapping(raw, path, keys, required=keys)
    if a is None or any(k not in a for k in keys):
        return None
    kind = c.get(a, "accelerator_type", path, c.string, default=None)
    count = c.get(a, "accelerator_num", path, c.integer, default=None, minimum=0)
    return None if kind is None or count is None else (kind, count)


def _parse_annotations(c: Checker, raw: object, path: str) -> tuple[tuple[str, str], ...]:
    """``metadata.annotations``: strings to strings in the API, numbers too (quote them)."""
    if not isinstance(raw, dict):
        c.fail(path, f"expected a mapping, got {describe(raw)}")
        return ()
    pairs = []
    for key, value in raw.items():
        text = c.string(value, f"{path}.{key}")
        if not isinstance(key, str):
            c.fail(f"{path}.{key}", f"expected a string key, got {describe(key)}")
        elif text is not None:
            pairs.append((key, text))
    return tuple(pairs)


def _parse_timeline(c: Checker, raw: object, path: str) -> list[Step]:
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


def _parse_step(c: Checker, raw: object, path: str) -> Step | None:
    m = c.mapping(raw, path, _STEP_KEYS, required=("at",))
    if m is None:
        return None
    before = len(c.problems)
    at = c.get(m, "at", path, c.number, default=0.0)
    phase = c.get(m, "phase", path, c.string, default=None)
    secondary = c.get(m, "secondary_phase", path, c.string, default=None)
    nodes = c.get(m, "nodes", path, c.integer, default=None, minimum=0)
    run: str | None = None
    xpu_after: float | None = None
    if "run" in m:
        r = c.mapping(m["run"], f"{path}.run", ("start_type", "xpu_after"), required=None)
        if r is not None:
            run = c.get(r, "start_type", f"{path}.run", c.string, default="init_or_rescheduled")
            xpu_after = c.get(r, "xpu_after", f"{path}.run", c.number, default=None)
    end_run: RunEnd | None = None
    if "end_run" in m:
        e = c.mapping(m["end_run"], f"{path}.end_run", (*END_KEYS, "recover_records"), None)
        if e is not None:
            p = f"{path}.end_run"
            end_run = RunEnd(*(c.get(e, k, p, c.string, default=None) for k in END_KEYS))
            if "recover_records" in e:
                recover = parse_recover_records(c, e["recover_records"], f"{p}.recover_records")
                end_run = replace(end_run, recover_records=recover)
    task_statuses: tuple[TaskStatus, ...] | None = None
    if "task_statuses" in m:
        task_statuses = tuple(
            ts
            for j, item in enumerate(c.sequence(m["task_statuses"], f"{path}.task_statuses") or [])
            if (ts := _parse_task_status(c, item, f"{path}.task_statuses[{j}]")) is not None
        )
    gone = c.get(m, "gone", path, c.boolean, default=False)
    usage = parse_usage(c, m["usage"], f"{path}.usage") if "usage" in m else ()
    events = parse_events(c, m["events"], f"{path}.events") if "events" in m else ()
    if len(c.problems) > before:
        return None
    return Step(
        at, phase, secondary, nodes, run, end_run, task_statuses, gone, usage, events, xpu_after
    )


def _parse_task_status(c: Checker, raw: object, path: str) -> TaskStatus | None:
    m = c.mapping(raw, path, ("task", "exit_code", "message"), required=("task",))
    if m is None:
        return None
    return TaskStatus(
        task=c.get(m, "task", path, c.string, default=""),
        exit_code=c.get(m, "exit_code", path, c.integer, default=None),
        message=c.get(m, "message", path, c.string, default=None),
    )
