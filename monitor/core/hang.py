"""Per-task resource usage and the hung-job rule, as pure functions.

``modelarts/parse.py`` reads the per-task metrics endpoint into ``TaskUsage`` (the newest valid
point of each metric as a ratio 0..1, the API's -1 "no data" left out, never exported as 0).

A job is suspected hung when it is Running and every task's accelerator utilisation (GPU or
NPU) reads 0 continuously for ``window`` seconds: one ``hang_suspected`` event per episode, and
one ``hang_cleared`` when any task works again or the job leaves Running.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from monitor.core.events import Event, new_event

USAGE_METRICS: dict[str, str] = {
    "cpuUsage": "cpu_usage",
    "memUsage": "memory_usage",
    "gpuUtil": "gpu_utilization",
    "gpuMemUsage": "gpu_memory_usage",
    "npuUtil": "npu_utilization",
    "npuMemUsage": "npu_memory_usage",
}
"""API metric name -> the middle of ``modelarts_training_job_task_<name>_ratio``."""
ACCELERATOR = ("gpuUtil", "npuUtil")

TaskUsage = Mapping[str, float]
"""API metric name -> newest valid value as a ratio 0..1."""


@dataclass(frozen=True, slots=True)
class HangState:
    idle_since: float | None = None
    """When every task's accelerator was first seen at 0 in the current stretch."""
    suspected_at: float | None = None
    """When the current episode was reported (None: no episode open)."""
    episode: int = 0
    """Episodes reported so far; part of the events' ids."""


def accelerators_idle(usage: Mapping[str, TaskUsage]) -> bool | None:
    """True: every task reports an accelerator and all read 0. None: no accelerator data."""
    readings = [u[m] for u in usage.values() for m in ACCELERATOR if m in u]
    if not readings or any(not any(m in u for m in ACCELERATOR) for u in usage.values()):
        return None
    return all(r == 0 for r in readings)


def observe_hang(
    prev: HangState,
    *,
    job_id: str,
    job_name: str,
    running: bool,
    usage: Mapping[str, TaskUsage],
    now: float,
    window: float,
) -> tuple[HangState, list[Event]]:
    idle = accelerators_idle(usage) if running else False
    if idle is None:  # no data: neither evidence of a hang nor of work
        return prev, []
    if not idle:
        if prev.suspected_at is None:
            return HangState(episode=prev.episode), []
        event = new_event(
            "hang_cleared",
            job_id=job_id,
            job_name=job_name,
            key=(prev.episode,),
            data={
                "suspected_at": prev.suspected_at,
                "idle_seconds": now - (prev.idle_since or now),
            },
            time=now,
        )
        return HangState(episode=prev.episode), [event]
    idle_since = prev.idle_since if prev.idle_since is not None else now
    if prev.suspected_at is not None or now - idle_since < window:
        return HangState(idle_since, prev.suspected_at, prev.episode), []
    episode = prev.episode + 1
    event = new_event(
        "hang_suspected",
        job_id=job_id,
        job_name=job_name,
        key=(episode,),
        data={"idle_since": idle_since, "window_seconds": window, "tasks": sorted(usage)},
        time=now,
    )
    return HangState(idle_since, now, episode), [event]
