"""Prometheus exposition: job series pre-rendered per job, joined at scrape time.

The job families are one flat table (``JOB_FAMILIES``): name, type, help, and a pure function
from a job's state to its samples, the way kube-state-metrics declares ``jobMetricFamilies``.
Shared labels (``job_id``, ``job_name``, configured labels) are added in one place, ``_render``.

Rendering happens when a job's state changes, not when Prometheus scrapes: ``SeriesStore`` keeps
each job's lines as bytes per family, and a scrape only concatenates them under each family's
``# HELP``/``# TYPE`` header (every sample of a family must be contiguous in the text format).
The joined body is cached until something changes.

The monitor's own counters and histograms use prometheus-client's collector model
(``MonitorMetrics``); their per-job gauges (``up``, last success) are rendered here too because
they carry each job's own label set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from monitor.core.diff import JobState
from monitor.core.hang import USAGE_METRICS
from monitor.exposition.own import MonitorMetrics
from monitor.modelarts.parse import (
    OTHER,
    PHASES,
    RECOVER_RECORD_STRATEGIES,
    RECOVER_RESULTS,
    RECOVER_STRATEGIES,
    SECONDARY_PHASES,
    JobSnapshot,
    bounded,
)

__all__ = ["FAMILIES", "JOB_FAMILIES", "MonitorMetrics", "SeriesStore", "metrics_doc"]

Sample = tuple[Mapping[str, str], float]
CACHED = " Cached from the last successful poll."


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    type: str
    help: str
    labels: tuple[str, ...]
    samples: Callable[[JobSnapshot, JobState], Iterable[Sample]]

    @property
    def header(self) -> bytes:
        return f"# HELP {self.name} {self.help}\n# TYPE {self.name} {self.type}\n".encode()


def _state_set(label: str, value: str, documented: tuple[str, ...]) -> list[Sample]:
    current = bounded(value, documented) if value else None
    return [({label: s}, 1.0 if s == current else 0.0) for s in (*documented, OTHER)]


def _one(value: float | None) -> list[Sample]:
    return [] if value is None else [({}, float(value))]


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
            },
            1.0,
        )
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
        ),
        _info,
    ),
    Family(
        "modelarts_training_job_phase",
        "gauge",
        "1 for the job's current phase (status.phase), 0 for every other documented phase;"
        " undocumented values are exported as other." + CACHED,
        ("phase",),
        (lambda s, st: _state_set("phase", s.phase, PHASES)),
    ),
    Family(
        "modelarts_training_job_secondary_phase",
        "gauge",
        "1 for the job's current secondary phase (status.secondary_phase), 0 for the others;"
        " undocumented values are exported as other." + CACHED,
        ("secondary_phase",),
        (
            lambda s, st: _state_set(
                "secondary_phase",
                s.secondary_phase,
                SECONDARY_PHASES,
            )
        ),
    ),
    Family(
        "modelarts_training_job_duration_seconds",
        "gauge",
        "Run time of the job reported by ModelArts (status.duration)." + CACHED,
        (),
        (lambda s, st: _one(_ms(s.duration_ms))),
    ),
    Family(
        "modelarts_training_job_nodes",
        "gauge",
        "Nodes in the newest point of status.node_count_metrics." + CACHED,
        (),
        (lambda s, st: _one(s.nodes)),
    ),
    Family(
        "modelarts_training_job_requested_nodes",
        "gauge",
        "Nodes requested by the job (spec.resource.node_count)." + CACHED,
        (),
        (lambda s, st: _one(s.requested_nodes)),
    ),
    Family(
        "modelarts_training_job_created_timestamp_seconds",
        "gauge",
        "When the job was created (metadata.create_time), Unix seconds." + CACHED,
        (),
        (lambda s, st: _one(_ms(s.create_time_ms))),
    ),
    Family(
        "modelarts_training_job_start_timestamp_seconds",
        "gauge",
        "When the job started (status.start_time), Unix seconds; absent until it has started."
        + CACHED,
        (),
        (lambda s, st: _one(_ms(s.start_time_ms or None))),
    ),
    Family(
        "modelarts_training_job_running_records",
        "gauge",
        "Runs of the job so far, one per start and fault recovery (status.running_records)."
        + CACHED,
        (),
        (lambda s, st: _one(len(s.running_records))),
    ),
    Family(
        "modelarts_training_job_restarts_total",
        "counter",
        "Runs that ended with each fault-recovery strategy (running_records[].end_recover),"
        " counted from the job's full record list; undocumented strategies as other." + CACHED,
        ("end_recover",),
        (
            lambda s, st: [
                ({"end_recover": k}, float(st.restarts.get(k, 0)))
                for k in (*RECOVER_STRATEGIES, OTHER)
            ]
        ),
    ),
    Family(
        "modelarts_training_job_recoveries_total",
        "counter",
        "Fault-recovery actions by strategy and outcome (running_records[].recover_records[]:"
        " recover, recover_result), counted from the job's full record list once an outcome is"
        " known (recovering ones are not counted yet); only combinations that occurred are"
        " exported; undocumented values as other." + CACHED,
        ("recover", "recover_result"),
        (
            lambda s, st: [
                ({"recover": r, "recover_result": k}, float(st.recoveries[r][k]))
                for r in (*RECOVER_RECORD_STRATEGIES, OTHER)
                for k in (*RECOVER_RESULTS, OTHER)
                if k in st.recoveries.get(r, {})
            ]
        ),
    ),
    Family(
        "modelarts_training_job_task_exit_code",
        "gauge",
        "Exit code of each task that reported one (status.task_statuses)." + CACHED,
        ("task",),
        (
            lambda s, st: [
                ({"task": t.task}, float(t.exit_code))
                for t in s.task_statuses
                if t.exit_code is not None and t.task
            ]
        ),
    ),
    Family(
        "modelarts_training_job_phase_last_change_timestamp_seconds",
        "gauge",
        "When the monitor first saw the job's current phase, Unix seconds.",
        (),
        (lambda s, st: _one(st.phase_since)),
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


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_value(value: float) -> str:
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def job_label_prefix(job_id: str, job_name: str, labels: Mapping[str, str]) -> str:
    """The labels every series of a job carries, rendered once per job."""
    parts = [f'job_id="{escape(job_id)}"', f'job_name="{escape(job_name)}"']
    parts += [f'{k}="{escape(v)}"' for k, v in sorted(labels.items())]
    return ",".join(parts)


def _render(name: str, prefix: str, samples: Iterable[Sample]) -> bytes:
    lines = []
    for extra, value in samples:
        labels = prefix + "".join(f',{k}="{escape(v)}"' for k, v in extra.items())
        lines.append(f"{name}{{{labels}}} {format_value(value)}\n")
    return "".join(lines).encode()


def render_job(state: JobState, labels: Mapping[str, str]) -> tuple[bytes, ...]:
    """One bytes chunk per entry of ``JOB_FAMILIES`` (possibly empty)."""
    snapshot = state.snapshot
    if snapshot is None:  # nothing known from the API yet: no series, not zeros
        return (b"",) * len(JOB_FAMILIES)
    prefix = job_label_prefix(state.job_id, state.job_name, labels)
    return tuple(_render(f.name, prefix, f.samples(snapshot, state)) for f in JOB_FAMILIES)


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
_USAGE = len(JOB_FAMILIES)
_UP = _USAGE + len(USAGE_FAMILIES)
_LAST_SUCCESS = _UP + 1


@dataclass(slots=True)
class _JobEntry:
    prefix: str
    chunks: list[bytes]
    """This job's lines, one bytes chunk per entry of ``FAMILIES`` (possibly empty)."""
    up: bool = False
    last_success: float | None = None


class SeriesStore:
    """Per-job pre-rendered series, concatenated family by family at scrape time.

    A scrape only joins bytes: every job's lines are rendered when its state changes, never at
    scrape time. The joined body is not kept between scrapes: at 10,000 jobs it is tens of MB,
    a second copy of every job's lines, while joining them again costs tens of milliseconds.
    """

    def __init__(self) -> None:
        self._jobs: dict[str, _JobEntry] = {}

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._jobs

    def __len__(self) -> int:
        return len(self._jobs)

    def update(self, state: JobState, labels: Mapping[str, str]) -> None:
        """Re-render a job's series after its state (or its configured labels) changed."""
        prefix = job_label_prefix(state.job_id, state.job_name, labels)
        entry = self._jobs.get(state.job_id)
        if entry is None:
            entry = self._jobs[state.job_id] = _JobEntry(prefix, [b""] * len(FAMILIES))
        health_stale = entry.prefix != prefix or not entry.chunks[_UP]
        entry.prefix = prefix
        entry.chunks[: len(JOB_FAMILIES)] = render_job(state, labels)
        if health_stale:
            self._render_health(entry)

    def set_health(self, job_id: str, up: bool, last_success: float | None) -> None:
        entry = self._jobs.get(job_id)
        if entry is None or (entry.up, entry.last_success) == (up, last_success):
            return
        entry.up, entry.last_success = up, last_success
        self._render_health(entry)

    def set_usage(self, job_id: str, usage: Mapping[str, Mapping[str, float]] | None) -> None:
        """Per-task readings (task -> API metric -> ratio), or None to drop them."""
        entry = self._jobs.get(job_id)
        if entry is None:
            return
        for i, api in enumerate(USAGE_METRICS):
            samples: list[Sample] = [
                ({"task": task}, reading[api])
                for task, reading in sorted((usage or {}).items())
                if api in reading
            ]
            entry.chunks[_USAGE + i] = _render(FAMILIES[_USAGE + i].name, entry.prefix, samples)

    def remove(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)

    def sections(self) -> Iterator[bytes]:
        """The exposition text one family at a time, joined as it is asked for, so the server
        sends a section while the next is joined, and never holds tens of MB twice."""
        entries = [e.chunks for e in self._jobs.values()]
        for i, family in enumerate(FAMILIES):
            yield family.header + b"".join([chunks[i] for chunks in entries])

    def render(self) -> bytes:
        return b"".join(self.sections())

    def _render_health(self, entry: _JobEntry) -> None:
        up: list[Sample] = [({}, 1.0 if entry.up else 0.0)]
        entry.chunks[_UP] = _render(FAMILIES[_UP].name, entry.prefix, up)
        success = _one(entry.last_success)
        entry.chunks[_LAST_SUCCESS] = _render(FAMILIES[_LAST_SUCCESS].name, entry.prefix, success)


def metrics_doc() -> str:
    """docs/metrics.md, generated so the doc cannot drift from the code (a test compares them).

    Regenerate with ``python -m monitor.exposition.series > docs/metrics.md``.
    """
    rows = [
        "# Metrics",
        "",
        "Generated from `monitor/exposition/` by",
        "`python -m monitor.exposition.series > docs/metrics.md`;",
        "a test fails when this file and the code disagree.",
        "",
        "Every job series carries `job_id`, `job_name` and the job's configured `labels`.",
        "Undocumented enum values are exported as `other`; the raw value goes to events and logs.",
        "",
        "## Job series",
        "",
        "| name | type | extra labels | help |",
        "| --- | --- | --- | --- |",
    ]
    for f in (*JOB_FAMILIES, *HEALTH_FAMILIES):
        rows.append(f"| `{f.name}` | {f.type} | {', '.join(f.labels)} | {f.help} |")
    rows += [
        "",
        "## The monitor itself",
        "",
        "| name | type | labels | help |",
        "| --- | --- | --- | --- |",
    ]
    for family in MonitorMetrics().registry.collect():
        labels = sorted({k for s in family.samples for k in s.labels} - {"le"})
        name = f"{family.name}_total" if family.type == "counter" else family.name
        rows.append(f"| `{name}` | {family.type} | {', '.join(labels)} | {family.documentation} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(metrics_doc(), end="")
