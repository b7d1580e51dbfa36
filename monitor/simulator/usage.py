"""Per-task resource usage of the fake API: ``GET .../training-jobs/{id}/metrics/{task_id}``.

Per ``shared/reference/modelarts-api-notes.md`` the answer is ``{"metrics": [{"metric": m,
"value": [...]}]}`` with one value a minute, oldest first (the reference example has 15), ``-1``
meaning "no data", and values that read as percentages (an assumption: the unit is not stated).

A scenario step's ``usage`` sets the utilisation from that step's time on, for every task
(``{gpuUtil: 85, cpuUsage: 40}``) or per task (``{worker-0: {gpuUtil: 0}, worker-1: {...}}``);
metrics a step does not name keep their value, and before any ``usage`` step every metric of
every task is ``-1``. Values are percentages 0..100, or -1 for "no data".

What the simulator answers at scenario time ``t``: the six metrics (``METRICS``, in that order),
each with ``POINTS`` values sampled at ``t - 14 min, t - 13 min, ..., t`` -- one per scenario
minute, ending now. A sample is the usage in force at its time, or ``-1`` when the job was not
running then: before it existed, before its first ``Running`` phase, once its phase is terminal
(the pods are gone) or once it is gone. Pure: the caller passes the scenario time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from monitor.simulator.checks import Checker, describe

if TYPE_CHECKING:
    from monitor.simulator.scenario import JobSpec

__all__ = [
    "INTERVAL",
    "METRICS",
    "NO_DATA",
    "POINTS",
    "UsageSet",
    "check_usage_tasks",
    "parse_usage",
    "task_metrics",
    "usage_at",
]

METRICS = ("cpuUsage", "memUsage", "gpuUtil", "gpuMemUsage", "npuUtil", "npuMemUsage")
NO_DATA = -1.0
POINTS = 15
INTERVAL = 60.0
"""Scenario seconds between two points of a series."""


@dataclass(frozen=True, slots=True)
class UsageSet:
    """One part of a step's ``usage``: ``values`` for ``task``, or for every task (``None``)."""

    task: str | None
    values: tuple[tuple[str, float], ...]


# --- the scenario key ---------------------------------------------------------------------------


def parse_usage(c: Checker, raw: object, path: str) -> tuple[UsageSet, ...]:
    """A step's ``usage``: a mapping of metrics (every task) or of tasks to such mappings.

    Whether a task key names one of the job's tasks is checked by ``check_usage_tasks``."""
    if not isinstance(raw, dict) or not raw:
        c.fail(path, f"expected a mapping of metrics or of tasks, got {describe(raw)}")
        return ()
    metric_keys = [k for k in raw if k in METRICS]
    if len(metric_keys) == len(raw):
        return (UsageSet(None, _values(c, raw, path)),)
    if metric_keys:
        c.fail(
            path,
            "expected either metrics (for every task) or tasks, not both "
            f"(metrics: {', '.join(METRICS)})",
        )
        return ()
    out: list[UsageSet] = []
    for task, values in raw.items():
        p = f"{path}.{task}"
        if not isinstance(task, str):
            c.fail(p, f"expected a task name, got {describe(task)}")
        elif not isinstance(values, dict) or not values:
            c.fail(
                p, f"expected a mapping of metrics ({', '.join(METRICS)}), got {describe(values)}"
            )
        else:
            out.append(UsageSet(task, _values(c, values, p)))
    return tuple(out)


def _values(c: Checker, raw: dict[Any, Any], path: str) -> tuple[tuple[str, float], ...]:
    out: list[tuple[str, float]] = []
    for key, value in raw.items():
        p = f"{path}.{key}"
        if key not in METRICS:
            c.fail(p, f"unknown metric (allowed: {', '.join(METRICS)})")
        elif (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not (0 <= value <= 100 or value == NO_DATA)
        ):
            c.fail(p, f"expected a percentage 0..100 or -1 (no data), got {describe(value)}")
        else:
            out.append((key, float(value)))
    return tuple(out)


def check_usage_tasks(c: Checker, timeline: object, tasks: Iterable[str], path: str) -> None:
    """Every task a per-task ``usage`` names must be one of the job's ``tasks``.

    Works on the raw ``timeline`` so that each problem names the step's own index."""
    known = tuple(tasks)
    if not isinstance(timeline, list):
        return
    for i, step in enumerate(timeline):
        usage = step.get("usage") if isinstance(step, dict) else None
        if not isinstance(usage, dict) or any(k in METRICS for k in usage):
            continue
        for task in usage:
            if isinstance(task, str) and task not in known:
                c.fail(
                    f"{path}[{i}].usage.{task}",
                    f"not a task of this job (tasks: {', '.join(known)})",
                )


# --- replay -------------------------------------------------------------------------------------


def usage_at(job: JobSpec, t: float) -> dict[str, dict[str, float]]:
    """Task -> metric -> the value set by the ``usage`` steps at or before ``t`` (-1: none)."""
    current = {task: dict.fromkeys(METRICS, NO_DATA) for task in job.tasks}
    for step in job.timeline:
        if step.at > t:
            break
        for part in step.usage:
            for task in job.tasks if part.task is None else (part.task,):
                current[task].update(part.values)
    return current


def _running(job: JobSpec, t: float) -> bool:
    """Whether the job's pods run at ``t``: started, not terminal, not gone."""
    state = job.state_at(t)
    return (
        state is not None
        and not state.gone
        and state.started is not None
        and state.terminal_since is None
    )


def task_metrics(job: JobSpec, task: str, t: float) -> dict[str, Any]:
    """The metrics answer for ``task`` (one of ``job.tasks``) at scenario time ``t``."""
    series: dict[str, list[float]] = {m: [] for m in METRICS}
    for k in range(POINTS):
        at = t - INTERVAL * (POINTS - 1 - k)
        values = usage_at(job, at)[task] if _running(job, at) else None
        for metric in METRICS:
            series[metric].append(values[metric] if values is not None else NO_DATA)
    return {"metrics": [{"metric": m, "value": series[m]} for m in METRICS]}
