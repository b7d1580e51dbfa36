"""Job series pre-rendered per job, joined at scrape time.

Rendering happens when a job's state changes, not when Prometheus scrapes: ``SeriesStore`` keeps
each job's lines as bytes per family, and a scrape only concatenates them under each family's
``# HELP``/``# TYPE`` header (every sample of a family must be contiguous in the text format).
The per-job gauges of the monitor's own health (``up``, last success) are rendered here too,
because they carry each job's own label set.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from monitor.core.hang import USAGE_METRICS
from monitor.core.state import JobState
from monitor.exposition.families import (
    FAMILIES,
    JOB_FAMILIES,
    LAST_SUCCESS,
    UP,
    USAGE,
    Family,
    Sample,
    one,
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


def render_job(
    state: JobState, labels: Mapping[str, str], context: Mapping[str, str] | None = None
) -> tuple[bytes, ...]:
    """One bytes chunk per entry of ``JOB_FAMILIES`` (possibly empty). ``context`` holds the
    values of the families' context labels (``project_id``)."""
    snapshot = state.snapshot
    if snapshot is None:  # nothing known from the API yet: no series, not zeros
        return (b"",) * len(JOB_FAMILIES)
    prefix = job_label_prefix(state.job_id, state.job_name, labels)
    context = context or {}
    return tuple(
        _render(f.name, prefix, _with_context(f, f.samples(snapshot, state), context))
        for f in JOB_FAMILIES
    )


def _with_context(
    family: Family, samples: Iterable[Sample], context: Mapping[str, str]
) -> Iterable[Sample]:
    if not family.context:
        return samples
    extra = {name: context.get(name, "") for name in family.context}
    return [({**labels, **extra}, value) for labels, value in samples]


@dataclass(frozen=True, slots=True)
class Rendered:
    """A job's lines rendered from one state but not shown yet. The job book renders before
    it commits and installs after: a state that cannot be rendered or committed never reaches
    ``/metrics``, which keeps showing what the last good poll said."""

    job_id: str
    prefix: str
    chunks: tuple[bytes, ...]


def prepare(
    state: JobState, labels: Mapping[str, str], context: Mapping[str, str] | None = None
) -> Rendered:
    """Render a job's lines (``JOB_FAMILIES``) from its state; raises if a value cannot be
    rendered, before anything is shown."""
    prefix = job_label_prefix(state.job_id, state.job_name, labels)
    return Rendered(state.job_id, prefix, render_job(state, labels, context))


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

    def __init__(self, *, project_id: str = "") -> None:
        self._jobs: dict[str, _JobEntry] = {}
        self._context = {"project_id": project_id}

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._jobs

    def __len__(self) -> int:
        return len(self._jobs)

    def prepare(self, state: JobState, labels: Mapping[str, str]) -> Rendered:
        """``prepare`` with this store's context (the project the jobs belong to)."""
        return prepare(state, labels, self._context)

    def update(self, state: JobState, labels: Mapping[str, str]) -> None:
        """Re-render a job's series after its state (or its configured labels) changed."""
        self.install(self.prepare(state, labels))

    def install(self, rendered: Rendered) -> None:
        """Show lines rendered earlier (``prepare``), in place of the job's old ones."""
        entry = self._jobs.get(rendered.job_id)
        if entry is None:
            entry = self._jobs[rendered.job_id] = _JobEntry(rendered.prefix, [b""] * len(FAMILIES))
        health_stale = entry.prefix != rendered.prefix or not entry.chunks[UP]
        entry.prefix = rendered.prefix
        entry.chunks[: len(JOB_FAMILIES)] = rendered.chunks
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
            entry.chunks[USAGE + i] = _render(FAMILIES[USAGE + i].name, entry.prefix, samples)

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
        entry.chunks[UP] = _render(FAMILIES[UP].name, entry.prefix, up)
        success = one(entry.last_success)
        entry.chunks[LAST_SUCCESS] = _render(FAMILIES[LAST_SUCCESS].name, entry.prefix, success)
