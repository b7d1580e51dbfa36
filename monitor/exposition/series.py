"""Job series pre-rendered per job, joined at scrape time.

Rendering happens when a job's state changes, not when Prometheus scrapes: ``SeriesStore`` keeps
each family's lines of every job joined (``sections.py``), joined again only when a job's lines
of that family changed, and a scrape writes them under each family's ``# HELP``/``# TYPE``
header (every sample of a family must be contiguous). The sample lines are the same in the text
format and in OpenMetrics; only the headers differ, and both are rendered once (``View``).
The per-job gauges of the monitor's own health (``up``, last success) are rendered here too,
because they carry each job's own label set.

What ``metrics:`` asks for (sparse state sets, families allowed or denied) is decided once per
family when the store is built (``View``): a dropped family is never rendered, and a scrape
costs the same whatever is filtered.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from monitor.core.hang import USAGE_METRICS
from monitor.core.state import JobState
from monitor.exposition import openmetrics
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
from monitor.exposition.sections import JobLines, Sections
from monitor.logs import get_logger

log = get_logger("monitor.series")


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


class Exposure(Protocol):
    """What ``metrics:`` says (``config.exposure.MetricsSettings`` is one)."""

    @property
    def sparse(self) -> bool: ...
    def exports(self, name: str) -> bool: ...
    def starved_alerts(self) -> Mapping[str, Sequence[str]]: ...


@dataclass(frozen=True, slots=True)
class View:
    """``metrics:`` decided once per entry of ``FAMILIES``: whether it is shown, its header
    in each format, and whether state sets keep only the current state."""

    sparse: bool
    shown: tuple[bool, ...]
    headers: tuple[bytes, ...]
    openmetrics_headers: tuple[bytes, ...]

    @classmethod
    def of(cls, exposure: Exposure | None) -> View:
        sparse = exposure is not None and exposure.sparse
        headers = tuple(f.exposed_header(sparse=sparse) for f in FAMILIES)
        return cls(
            sparse=sparse,
            shown=tuple(exposure is None or exposure.exports(f.name) for f in FAMILIES),
            headers=headers,
            openmetrics_headers=tuple(map(openmetrics.header, headers)),
        )

    def samples(self, family: Family, samples: Iterable[Sample]) -> Iterable[Sample]:
        """A sparse state set keeps only its current state (the sample at 1)."""
        if self.sparse and family.state_set:
            return [(labels, value) for labels, value in samples if value == 1]
        return samples


FULL = View.of(None)
"""Every family, every state: what ``metrics:`` gives by default."""


def _render(name: str, prefix: str, samples: Iterable[Sample]) -> bytes:
    lines = []
    for extra, value in samples:
        labels = prefix + "".join(f',{k}="{escape(v)}"' for k, v in extra.items())
        lines.append(f"{name}{{{labels}}} {format_value(value)}\n")
    return "".join(lines).encode()


def render_job(
    state: JobState,
    labels: Mapping[str, str],
    context: Mapping[str, str] | None = None,
    view: View = FULL,
) -> tuple[bytes, ...]:
    """One bytes chunk per entry of ``JOB_FAMILIES`` (empty for a family ``view`` does not
    show, or without samples). ``context`` holds the values of the families' context labels
    (``project_id``)."""
    snapshot = state.snapshot
    if snapshot is None:  # nothing known from the API yet: no series, not zeros
        return (b"",) * len(JOB_FAMILIES)
    prefix = job_label_prefix(state.job_id, state.job_name, labels)
    context = context or {}
    return tuple(
        _render(
            f.name, prefix, _with_context(f, view.samples(f, f.samples(snapshot, state)), context)
        )
        if view.shown[i]
        else b""
        for i, f in enumerate(JOB_FAMILIES)
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
    state: JobState,
    labels: Mapping[str, str],
    context: Mapping[str, str] | None = None,
    view: View = FULL,
) -> Rendered:
    """Render a job's lines (``JOB_FAMILIES``) from its state; raises if a value cannot be
    rendered, before anything is shown."""
    prefix = job_label_prefix(state.job_id, state.job_name, labels)
    return Rendered(state.job_id, prefix, render_job(state, labels, context, view))


class _JobEntry(JobLines):
    """A job's label prefix and health; its lines are in the store's ``Sections``."""

    __slots__ = ("last_success", "prefix", "up")

    def __init__(self, prefix: str) -> None:
        super().__init__(len(FAMILIES))
        self.prefix = prefix
        self.up = False
        self.last_success: float | None = None


class SeriesStore:
    """Per-job pre-rendered series, kept joined family by family between scrapes.

    A scrape costs no rendering and, for a family no job changed since the last scrape, no
    joining either: its cached body is written as it is (``Sections``, the one copy of it).
    """

    def __init__(self, *, project_id: str = "", exposure: Exposure | None = None) -> None:
        self._jobs: dict[str, _JobEntry] = {}
        self._lines = Sections(len(FAMILIES))
        self._context = {"project_id": project_id}
        self._view = View.of(exposure)
        starved = exposure.starved_alerts() if exposure is not None else {}
        if starved:
            # Said once, at start: the filters are the operator's choice, but a shipped alert
            # that can no longer fire should not be found out during an incident.
            log.warning(
                "metrics_filter_starves_alerts",
                alerts={alert: list(names) for alert, names in starved.items()},
                note="metrics.allow/deny drop families these shipped alerts read",
            )

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._jobs

    def __len__(self) -> int:
        return len(self._jobs)

    def prepare(
        self, state: JobState, labels: Mapping[str, str], context: Mapping[str, str] | None = None
    ) -> Rendered:
        """``prepare`` with the job's context (the project it belongs to: its target's), or
        this store's when the caller has none."""
        return prepare(state, labels, self._context if context is None else context, self._view)

    def update(
        self, state: JobState, labels: Mapping[str, str], context: Mapping[str, str] | None = None
    ) -> None:
        """Re-render a job's series after its state (or its configured labels) changed."""
        self.install(self.prepare(state, labels, context))

    def install(self, rendered: Rendered) -> None:
        """Show lines rendered earlier (``prepare``), in place of the job's old ones."""
        entry = self._jobs.get(rendered.job_id)
        if entry is None:
            entry = self._jobs[rendered.job_id] = _JobEntry(rendered.prefix)
        health_stale = entry.prefix != rendered.prefix or not self._lines.get(entry, UP)
        entry.prefix = rendered.prefix
        for i, chunk in enumerate(rendered.chunks):
            self._lines.set(entry, i, chunk)
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
            if not self._view.shown[USAGE + i]:
                continue
            samples: list[Sample] = [
                ({"task": task}, reading[api])
                for task, reading in sorted((usage or {}).items())
                if api in reading
            ]
            lines = _render(FAMILIES[USAGE + i].name, entry.prefix, samples)
            self._lines.set(entry, USAGE + i, lines)

    def remove(self, job_id: str) -> None:
        entry = self._jobs.pop(job_id, None)
        if entry is not None:
            self._lines.drop(entry)

    def job_lines(self, job_id: str) -> bytes:
        """One job's lines of every shown family, each under its (text format) header; b""
        if it has none. Read from where they sit, not found by scanning the whole body."""
        entry = self._jobs.get(job_id)
        if entry is None:
            return b""
        out: list[bytes] = []
        for i, header in enumerate(self._view.headers):
            if self._view.shown[i] and (lines := self._lines.get(entry, i)):
                out += (header, lines)
        return b"".join(out)

    def scrape(self, *, openmetrics: bool = False) -> Iterator[bytes | memoryview]:
        """The exposition a piece at a time, as the server writes it: each shown family's
        header, then its cached body (a view of it, joined again here only if a job changed
        it since), never copied into one body. Without the final ``# EOF``, which
        OpenMetrics wants once, after the monitor's own families too."""
        for header, body in self._families(openmetrics):
            yield header
            if body:
                yield body

    def sections(self) -> Iterator[bytes]:
        """The text format one family at a time (header and lines in one bytes), for readers
        that want a family whole; a copy of each body, so not what a scrape writes."""
        for header, body in self._families(openmetrics=False):
            yield header + body

    def _families(self, openmetrics: bool) -> Iterator[tuple[bytes, memoryview]]:
        headers = self._view.openmetrics_headers if openmetrics else self._view.headers
        for i, header in enumerate(headers):
            if self._view.shown[i]:
                yield header, self._lines.body(i)

    def render(self) -> bytes:
        return b"".join(self.scrape())

    def _render_health(self, entry: _JobEntry) -> None:
        up: list[Sample] = [({}, 1.0 if entry.up else 0.0)]
        self._lines.set(entry, UP, _render(FAMILIES[UP].name, entry.prefix, up))
        success = _render(FAMILIES[LAST_SUCCESS].name, entry.prefix, one(entry.last_success))
        self._lines.set(entry, LAST_SUCCESS, success)
