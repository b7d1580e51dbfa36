"""Scripted job lifecycles for the simulator: the scenario file, its validation, its replay.

Why a script rather than a random generator: the monitor's tests and its ``demo`` command need to
know *exactly* which transitions a job goes through and when ("one ``run_ended`` with
``end_recover=pod_reschedule``" is a fact of the input, not a coin toss). Everything here is
pure: each job's timeline is replayed once into the state after every step, so "job X at
scenario time t" is a bisect plus rendering one dict; the caller passes ``t`` and the ``epoch``
(the Unix time scenario time 0 stands for).

Scenario file format (YAML)::

    speed: 1.0          # scenario seconds per wall-clock second (the caller may override it)
    jobs:
      - id: 3faf5c03-aaa1-4cbe-879d-24b05d997347   # required, unique, no "/"
        name: bert-pretrain                        # required, 1-64 of [A-Za-z0-9_-]
        workspace_id: "0"          # optional, default "0" (quote it: it is a string)
        user_name: alice           # optional, default ""
        engine: {id: pytorch_1.8.0-cuda_10.2-py_3.7, name: PyTorch,
                 version: PyTorch-1.8.0-python3.7}    # optional; all three keys when given
        flavor: {id: modelarts.vm.gpu.8v100, type: GPU, name: "GPU: 8*V100", gpus: 8}
                                   # optional; id, type required; gpus|npus: cards per node
        pool_id: pool-abc          # optional, omitted when absent (so is pool_name)
        pool_name: team-pool
        allocated: {accelerator_type: ascend-snt9b, accelerator_num: 8}   # a dedicated pool:
                                   # main_container_allocated_resources, no flavor_detail
        annotations: {fault-tolerance/job-retry-num: "3"}   # metadata.annotations, strings
        node_count: 4              # requested nodes (spec.resource.node_count), default 1
        tasks: [worker-0, worker-1]  # status.tasks, default [worker-0]
        roles:                     # a heterogeneous job's top-level tasks[] (optional): each a
          - {role: learner, flavor: {id: modelarts.vm.gpu.8v100, type: GPU, gpus: 8},
             pool_id: pool-abc}    # role and flavour (as above) of its task_resource
        latency: 0                 # wall seconds to wait before answering for this job
        timeline:                  # at least one step, sorted by `at` (scenario seconds)
          - at: 0                  # the job does not exist before its first step
            phase: Creating        # free text on purpose (undocumented values are allowed)
            secondary_phase: Creating
          - at: 8
            phase: Running
            secondary_phase: Running
            nodes: 4               # appends [ts_ms, 4] to status.node_count_metrics
            run: {start_type: init_or_rescheduled, xpu_after: 3}   # opens a running record,
                                   # start_at = now, xpu_start_at = now + xpu_after (optional)
          - at: 16                 # end_run is applied before run in the same step
            end_run: {end_reason: "process exited with 1", end_related_task: worker-1,
                      end_recover: proc_restart, recover_records: [{recover: proc_restart}]}
            run: {start_type: restarted}
            usage: {gpuUtil: 85, cpuUsage: 40}   # percent, every task, or {worker-0: {...}}
          - at: 30
            task_statuses: [{task: worker-0, exit_code: 137, message: OOMKilled}]   # replaced
            events: [{level: Error, message: "Process exited with code 137", source: Job}]
          - {at: 40, gone: true}   # deleted: the API answers 400 ModelArts.2775 from now on
    faults: {rate: 0.3, seed: 7}   # optional: fault injection (every key: demo.yaml, faults.py)
    iam: {users: [{name: alice, password: secret, domain: my-account}]}   # optional (iam.py)

Semantics. State accumulates: a step sets only what it names, and a step with nothing but ``at``
changes nothing (handy to mark the end of a scenario). ``run.start_type`` defaults to
``init_or_rescheduled``; every ``end_run`` key is optional and omitted from the record when
absent. ``usage`` names either metrics (``cpuUsage, memUsage, gpuUtil, gpuMemUsage, npuUtil,
npuMemUsage``; applied to every task) or tasks of the job (each mapping to such metrics); a
metric not named keeps its value, and every metric is -1 (no data) before any ``usage`` step.
An event's ``level`` is ``Error``, ``Warning`` or ``Info``, its ``source`` defaults to ``Job``.
``recover_records`` get ``recover_start_at`` = ``recover_end_at`` = the closing step's time.
Opening a run while one is open, closing one when none is, a first step without a phase, steps
after ``gone``, ``gpus`` and ``npus`` together and unknown keys are errors, each naming its key
path (``jobs[1].timeline[2].nodes: expected an integer, got 'four'``). With ``iam`` users, a job
request may carry a valid ``X-Auth-Token`` instead of (or, with AK/SK credentials configured
too, as well as) a signature; ``faults`` never touch IAM or ``/_sim``.

Time mapping, with ``now = epoch + at`` for the step at ``at``: ``metadata.create_time`` = the
first step's ``now``, in ms; ``status.start_time`` = ``now`` of the first step whose phase is
``Running``, in ms (0 before); ``status.duration`` = ms from start_time to the current scenario
time, frozen at the step that made the phase terminal (Completed, Failed, Terminated, Abnormal),
0 before the start; ``node_count_metrics`` points are ``[ms, nodes]``; running records'
``start_at``/``end_at``/``xpu_start_at`` are whole **seconds**, and an open record has no
``end_at`` -- the units of the real API; the task metrics endpoint samples ``usage`` once a
scenario minute (``usage.py``: -1 while the job is not running), and event times are ISO 8601
at +08:00 (``events.py``).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from monitor.simulator.faults import FaultConfig
from monitor.simulator.iam import IamConfig
from monitor.simulator.recovery import render_recover_record
from monitor.simulator.timeline import (
    DEFAULT_ENGINE,
    DEFAULT_FLAVOR,
    END_KEYS,
    Engine,
    Flavor,
    JobState,
    Record,
    Role,
    RunEnd,
    Step,
    TaskStatus,
    apply,
)

__all__ = [
    "Engine",
    "Flavor",
    "JobSpec",
    "JobState",
    "Record",
    "RunEnd",
    "Scenario",
    "Step",
    "TaskStatus",
]


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
    pool_name: str | None = None
    allocated: tuple[str, int] | None = None
    """A dedicated pool's ``main_container_allocated_resources``: accelerator type and count."""
    annotations: tuple[tuple[str, str], ...] = ()
    node_count: int = 1
    tasks: tuple[str, ...] = ("worker-0",)
    roles: tuple[Role, ...] = ()
    """A heterogeneous job's roles (the top-level ``tasks[]``); none for an ordinary job."""
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

    metadata: dict[str, Any] = {
        "id": job.id,
        "name": job.name,
        "description": "",
        "create_time": ms(state.created),
        "workspace_id": job.workspace_id,
        "user_name": job.user_name,
    }
    if job.annotations:
        metadata["annotations"] = dict(job.annotations)
    doc: dict[str, Any] = {
        "kind": "job",
        "metadata": metadata,
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
        "spec": {"resource": _resource(job)},
    }
    if job.roles:
        doc["tasks"] = [_role(r) for r in job.roles]
    return doc


def _role(r: Role) -> dict[str, Any]:
    """A ``TaskResponse``: the role and its ``task_resource`` (a ``FlavorResponse``, whose
    ``flavor_type`` sits beside the flavour's id rather than in a ``flavor_detail``)."""
    resource: dict[str, Any] = {"flavor_id": r.flavor.id, "flavor_type": r.flavor.type}
    if r.flavor.name is not None:
        resource["flavor_name"] = r.flavor.name
    if r.pool_id is not None:
        resource["pool_id"] = r.pool_id
    if info := _flavor_info(r.flavor):
        resource["flavor_info"] = info
    return {"role": r.role, "task_resource": resource}


def _flavor_info(flavor: Flavor) -> dict[str, Any]:
    """``flavor_info`` (SDK ``FlavorInfo`` / ``FlavorInfoResponse``, the same ``Gpu``/``Npu``):
    the GPU count a number, the NPU count a string, as the SDK types them."""
    info: dict[str, Any] = {}
    if flavor.gpus is not None:
        info["gpu"] = {"unit_num": flavor.gpus}
    if flavor.npus is not None:
        info["npu"] = {"unit_num": str(flavor.npus)}
    return info


def _resource(job: JobSpec) -> dict[str, Any]:
    """``spec.resource`` in the SDK's shape (``Resource``): a public pool has ``flavor_detail``
    (its NPU count a string), a dedicated one ``main_container_allocated_resources`` (floats)."""
    flavor, allocated = job.flavor, job.allocated
    optional = {"flavor_name": flavor.name, "pool_id": job.pool_id, "pool_name": job.pool_name}
    out: dict[str, Any] = {"flavor_id": flavor.id, "node_count": job.node_count}
    out.update({k: v for k, v in optional.items() if v is not None})
    if allocated is None:
        out["flavor_detail"] = {"flavor_type": flavor.type}
        if info := _flavor_info(flavor):
            out["flavor_detail"]["flavor_info"] = info
    else:
        kind, count = allocated
        out["main_container_allocated_resources"] = {
            "accelerator_type": kind,
            "accelerator_num": float(count),
        }
    return out


def _task_status(ts: TaskStatus) -> dict[str, Any]:
    given = {"task": ts.task, "exit_code": ts.exit_code, "message": ts.message}
    return {k: v for k, v in given.items() if v is not None}


def _record(r: Record, sec: Callable[[float], int]) -> dict[str, Any]:
    out: dict[str, Any] = {"start_at": sec(r.start)}
    if r.xpu_after is not None:
        out["xpu_start_at"] = sec(r.start + r.xpu_after)
    if r.end is not None:
        out["end_at"] = sec(r.end)
    out["start_type"] = r.start_type
    if r.ending is not None:
        for key in END_KEYS:
            value = getattr(r.ending, key)
            if value is not None:
                out[key] = value
        recovered = r.ending.recover_records
        if recovered and r.end is not None:
            out["recover_records"] = [render_recover_record(x, sec(r.end)) for x in recovered]
    return out


@dataclass(frozen=True)
class Scenario:
    jobs: tuple[JobSpec, ...]
    speed: float = 1.0
    faults: FaultConfig | None = None
    iam: IamConfig | None = None
    _index: dict[str, JobSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {j.id: j for j in self.jobs})

    def job(self, job_id: str) -> JobSpec | None:
        return self._index.get(job_id)

    @property
    def end_time(self) -> float:
        """Scenario time of the last step of any job: the scenario is over from then on."""
        return max((j.last_at for j in self.jobs), default=0.0)
