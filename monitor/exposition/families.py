"""The job metric families: one flat table of name, type, help, labels and a pure function.

Each family maps a job's snapshot and state to its samples, the way kube-state-metrics declares
``jobMetricFamilies``; the label every job series shares (``job_id``, ``job_name``, configured
labels) are added in one place, ``series.job_label_prefix``. The table is the single source of
truth for metric names and their labels: the renderer, the metrics doc and the set of label
names a job may not use are all read from it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from operator import attrgetter

from monitor.core.hang import USAGE_METRICS
from monitor.core.job import (
    OTHER,
    PHASES,
    RECOVER_RECORD_STRATEGIES,
    RECOVER_RESULTS,
    RECOVER_STRATEGIES,
    SECONDARY_PHASES,
    JobSnapshot,
    bounded,
)
from monitor.core.state import JobState
from monitor.exposition.own import OWN_LABELS

SHARED_LABELS: tuple[str, ...] = ("job_id", "job_name")
"""The labels every job series carries before the job's configured ones."""

Sample = tuple[Mapping[str, str], float]
CACHED = " Cached from the last successful poll."
SPARSE_HELP = " Sparse (metrics.state_sets): only the current state's series is exported, at 1."


@dataclass(frozen=True, slots=True)
class StateSet:
    """One series per documented state (and ``other``), 1 for the current state and 0 for the
    rest. Declared as data, not only as a function, because its samples depend on nothing but
    which state is current: the renderer draws each possible set of lines once (``series.View``)
    and a job's poll only picks one, instead of rendering a dozen constant lines per job."""

    label: str
    documented: tuple[str, ...]
    value: Callable[[JobSnapshot], str]
    """The snapshot's raw value of the state (``status.phase``)."""

    def current(self, snapshot: JobSnapshot) -> str | None:
        """The state at 1: the documented value, ``other`` for an undocumented one, None (every
        state at 0) while the API sends none."""
        value = self.value(snapshot)
        return bounded(value, self.documented) if value else None

    @property
    def states(self) -> tuple[str, ...]:
        """The label's values, a series each: the documented states and ``other``."""
        return (*self.documented, OTHER)

    def samples_at(self, current: str | None) -> tuple[Sample, ...]:
        return tuple(({self.label: s}, 1.0 if s == current else 0.0) for s in self.states)

    def of(self, snapshot: JobSnapshot, state: JobState) -> tuple[Sample, ...]:
        """The family's ``samples`` function."""
        return self.samples_at(self.current(snapshot))


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    type: str
    help: str
    labels: tuple[str, ...]
    samples: Callable[[JobSnapshot, JobState], Iterable[Sample]]
    context: tuple[str, ...] = ()
    """Labels (also listed in ``labels``) whose values come from the monitor's own setting of
    the job, not from the API: ``project_id`` on ``_info``. ``series.render_job`` fills them."""
    value: Callable[[JobSnapshot, JobState], float | None] | None = None
    """Set for a family of one series without labels of its own, absent while None (``samples``
    is then that one sample): the renderer draws its line in one step, without samples."""
    state_set: StateSet | None = None
    """Set for a state set (``samples`` is then ``state_set.of``): with
    ``metrics.state_sets: sparse`` only the series at 1 is exported (``series.py``)."""

    @property
    def header(self) -> bytes:
        return self.exposed_header(sparse=False)

    def exposed_header(self, *, sparse: bool) -> bytes:
        """The ``# HELP``/``# TYPE`` lines; a sparse state set says in HELP that the 0s are
        left out, so nobody reads a missing state as a missing job."""
        text = self.help + SPARSE_HELP if sparse and self.state_set else self.help
        return f"# HELP {self.name} {text}\n# TYPE {self.name} {self.type}\n".encode()


def _single(
    name: str, type: str, help: str, value: Callable[[JobSnapshot, JobState], float | None]
) -> Family:
    return Family(name, type, help, (), lambda s, st: one(value(s, st)), value=value)


def _state_set_family(name: str, help: str, state_set: StateSet) -> Family:
    return Family(name, "gauge", help, (state_set.label,), state_set.of, state_set=state_set)


NO_LABELS: Mapping[str, str] = {}
"""The labels of a sample without labels of its own, shared (``Sample`` labels are read-only)."""


def one(value: float | None) -> list[Sample]:
    return [] if value is None else [(NO_LABELS, float(value))]


def _info(s: JobSnapshot, st: JobState) -> list[Sample]:
    return [
        (
            {
                "workspace_id": s.workspace_id,
                "user_name": s.user_name,
                "engine_name": s.engine_name,
                "engine_version": s.engine_version,
                "flavor_id": s.flavor_id,
                "flavor_type": s.flavor_type,
                "pool_id": s.pool_id,
                "pool_name": s.pool_name,
                "flavor_name": s.flavor_name,
            },
            1.0,
        )
    ]


# The label sets that are constants of their family, built once rather than at every sample of
# every poll (``Sample`` labels are read-only).
_RESTARTS: tuple[tuple[str, Mapping[str, str]], ...] = tuple(
    (k, {"end_recover": k}) for k in (*RECOVER_STRATEGIES, OTHER)
)
_RECOVERIES: tuple[tuple[str, tuple[tuple[str, Mapping[str, str]], ...]], ...] = tuple(
    (r, tuple((k, {"recover": r, "recover_result": k}) for k in (*RECOVER_RESULTS, OTHER)))
    for r in (*RECOVER_RECORD_STRATEGIES, OTHER)
)


def _restarts(s: JobSnapshot, st: JobState) -> list[Sample]:
    return [(labels, float(st.restarts.get(k, 0))) for k, labels in _RESTARTS]


def _recoveries(s: JobSnapshot, st: JobState) -> list[Sample]:
    """Only the combinations that occurred, in the documented order; most jobs have none."""
    recoveries = st.recoveries
    if not recoveries:
        return []
    return [
        (labels, float(results[k]))
        for r, combinations in _RECOVERIES
        if (results := recoveries.get(r))
        for k, labels in combinations
        if k in results
    ]


def _ms(value: int | None) -> float | None:
    return None if value is None else value / 1000


JOB_FAMILIES: tuple[Family, ...] = (
    Family(
        "modelarts_training_job_info",
        "gauge",
        "Fixed attributes of a training job, value 1." + CACHED,
        (
            "workspace_id",
            "user_name",
            "engine_name",
            "engine_version",
            "flavor_id",
            "flavor_type",
            "pool_id",
            "pool_name",
            "flavor_name",
            "project_id",
        ),
        _info,
        context=("project_id",),
    ),
    _state_set_family(
        "modelarts_training_job_phase",
        "1 for the job's current phase (status.phase), 0 for every other documented phase;"
        " undocumented values are exported as other." + CACHED,
        StateSet("phase", PHASES, attrgetter("phase")),
    ),
    _state_set_family(
        "modelarts_training_job_secondary_phase",
        "1 for the job's current secondary phase (status.secondary_phase), 0 for the others;"
        " undocumented values are exported as other." + CACHED,
        StateSet("secondary_phase", SECONDARY_PHASES, attrgetter("secondary_phase")),
    ),
    _single(
        "modelarts_training_job_gone",
        "gauge",
        "1 while the API says the job no longer exists (deleted: ModelArts.2775), else 0. A gone"
        " job is not down: its modelarts_monitor_up is 0, so leave gone jobs out of alerts on"
        " unreachable jobs (unless modelarts_training_job_gone == 1); its series leave after"
        " poll.not_found_retention.",
        lambda s, st: 1.0 if st.gone else 0.0,
    ),
    _single(
        "modelarts_training_job_duration_seconds",
        "gauge",
        "Run time of the job reported by ModelArts (status.duration)." + CACHED,
        lambda s, st: _ms(s.duration_ms),
    ),
    _single(
        "modelarts_training_job_nodes",
        "gauge",
        "Nodes in the newest point of status.node_count_metrics." + CACHED,
        lambda s, st: s.nodes,
    ),
    _single(
        "modelarts_training_job_requested_nodes",
        "gauge",
        "Nodes requested by the job (spec.resource.node_count)." + CACHED,
        lambda s, st: s.requested_nodes,
    ),
    _single(
        "modelarts_training_job_created_timestamp_seconds",
        "gauge",
        "When the job was created (metadata.create_time), Unix seconds." + CACHED,
        lambda s, st: _ms(s.create_time_ms),
    ),
    _single(
        "modelarts_training_job_start_timestamp_seconds",
        "gauge",
        "When the job started (status.start_time), Unix seconds; absent until it has started."
        + CACHED,
        lambda s, st: _ms(s.start_time_ms or None),
    ),
    _single(
        "modelarts_training_job_running_records",
        "gauge",
        "Runs of the job so far, one per start and fault recovery (status.running_records)."
        + CACHED,
        lambda s, st: len(s.running_records),
    ),
    Family(
        "modelarts_training_job_restarts_total",
        "counter",
        "Runs that ended with each fault-recovery strategy (running_records[].end_recover),"
        " counted from the job's full record list; undocumented strategies as other." + CACHED,
        ("end_recover",),
        _restarts,
    ),
    Family(
        "modelarts_training_job_recoveries_total",
        "counter",
        "Fault-recovery actions by strategy and outcome (running_records[].recover_records[]:"
        " recover, recover_result), counted from the job's full record list once an outcome is"
        " known (recovering ones are not counted yet); only combinations that occurred are"
        " exported; undocumented values as other." + CACHED,
        ("recover", "recover_result"),
        _recoveries,
    ),
    Family(
        "modelarts_training_job_task_exit_code",
        "gauge",
        "Exit code of each task that reported one (status.task_statuses)." + CACHED,
        ("task",),
        (
            # One series per task (a task listed twice: the last entry wins): a duplicate series
            # would make the whole scrape unparseable.
            lambda s, st: [
                ({"task": task}, float(code))
                for task, code in {
                    t.task: t.exit_code
                    for t in s.task_statuses
                    if t.exit_code is not None and t.task
                }.items()
            ]
        ),
    ),
    _single(
        "modelarts_training_job_retry_limit",
        "gauge",
        "Automatic restarts allowed on faults (metadata.annotations"
        " fault-tolerance/job-retry-num); absent when the job sets none." + CACHED,
        lambda s, st: s.retry_limit,
    ),
    Family(
        "modelarts_training_job_accelerators",
        "gauge",
        "Accelerators the job holds in all: per-node cards (flavor_detail.flavor_info on public"
        " pools, main_container_allocated_resources on dedicated ones) x spec.resource.node_count;"
        " type gpu or npu (Ascend); absent when the job holds none." + CACHED,
        ("type",),
        (
            lambda s, st: (
                [({"type": s.accelerator_type}, float(s.accelerators))]
                if s.accelerators and s.accelerator_type
                else []
            )
        ),
    ),
    Family(
        "modelarts_training_job_role_info",
        "gauge",
        "Each role of a heterogeneous job (the top-level tasks[]) and the flavour of its"
        " task_resource, value 1; role_index is the role's position in tasks[] (the API may"
        " leave role empty); absent for other jobs." + CACHED,
        ("role_index", "role", "flavor_id", "flavor_name", "flavor_type", "pool_id"),
        (
            lambda s, st: [
                (
                    {
                        "role_index": str(i),
                        "role": r.role,
                        "flavor_id": r.flavor_id,
                        "flavor_name": r.flavor_name,
                        "flavor_type": r.flavor_type,
                        "pool_id": r.pool_id,
                    },
                    1.0,
                )
                for i, r in enumerate(s.roles)
            ]
        ),
    ),
    Family(
        "modelarts_training_job_role_accelerators_per_node",
        "gauge",
        "Accelerators on each node of a heterogeneous job's role (tasks[].task_resource"
        ".flavor_info), type gpu or npu (Ascend); per node because the API gives no node count"
        " per role; absent for roles without accelerators." + CACHED,
        ("role_index", "role", "type"),
        (
            lambda s, st: [
                (
                    {"role_index": str(i), "role": r.role, "type": r.accelerator_type},
                    float(r.accelerators_per_node),
                )
                for i, r in enumerate(s.roles)
                if r.accelerators_per_node and r.accelerator_type
            ]
        ),
    ),
    _single(
        "modelarts_training_job_phase_last_change_timestamp_seconds",
        "gauge",
        "When the monitor first saw the job's current phase, Unix seconds.",
        lambda s, st: st.phase_since,
    ),
)

HEALTH_FAMILIES: tuple[Family, ...] = (
    Family(
        "modelarts_monitor_up",
        "gauge",
        "1 if the last poll of this job succeeded, else 0.",
        (),
        lambda s, st: (),  # health values are not part of JobState; see SeriesStore.set_health
    ),
    Family(
        "modelarts_monitor_last_poll_success_timestamp_seconds",
        "gauge",
        "When this job was last polled successfully, Unix seconds.",
        (),
        lambda s, st: (),
    ),
)


USAGE_FAMILIES: tuple[Family, ...] = tuple(
    Family(
        f"modelarts_training_job_task_{name}_ratio",
        "gauge",
        f"Newest valid {api} of each task of a Running job (GET .../metrics/{{task}}), as a"
        " ratio 0..1. Assumes the API reports percent (its reference does not say); absent"
        " while the API has no data (-1).",
        ("task",),
        lambda s, st: (),  # rendered from usage readings; see SeriesStore.set_usage
    )
    for api, name in USAGE_METRICS.items()
)
FAMILIES = (*JOB_FAMILIES, *USAGE_FAMILIES, *HEALTH_FAMILIES)
USAGE = len(JOB_FAMILIES)
UP = USAGE + len(USAGE_FAMILIES)
LAST_SUCCESS = UP + 1


def reserved_label_names() -> frozenset[str]:
    """Every label name the monitor sets itself, read from the tables: the shared job labels,
    each family's own, the monitor's own metrics' and the exposition format's (``le``,
    ``quantile``). A job label with one of these names would render a duplicate label and
    make the whole scrape unparseable, so the config refuses it."""
    return frozenset(
        {*SHARED_LABELS, *(name for f in FAMILIES for name in f.labels), *OWN_LABELS}
        | {"le", "quantile"}
    )
