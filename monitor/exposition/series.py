"""Job series pre-rendered per job, joined at scrape time.

Rendering happens when a job's state changes, not when Prometheus scrapes: ``SeriesStore`` keeps
each family's lines of every job joined (``sections.py``), joined again only when a job's lines
of that family changed, and a scrape writes them under each family's ``# HELP``/``# TYPE``
header (every sample of a family must be contiguous). The sample lines are the same in the text
format and in OpenMetrics; only the headers differ, and both are rendered once (``View``).
The per-job gauges of the monitor's own health (``up``, last success) are rendered here too,
because they carry each job's own label set; they change at every poll, so they are rendered
only when a scrape next wants them (``Sections.stale``), and only the line that changed.

A line is the family's name, the job's label prefix (rendered once per job and shared by all
its families) and the sample's tail (its own labels and value): a family's lines of a job are
the start joined with the tails, and the tails that repeat across jobs are rendered once
(``_suffix``; a state set's, per current state, by ``View``). Nothing can fail after the prefix: a
health line rendered at a scrape is the book's own float under a prefix already shown.

What ``metrics:`` asks for (sparse state sets, families allowed or denied) is decided once per
family when the store is built (``View``): a dropped family is never rendered, and a scrape
costs the same whatever is filtered.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

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
    StateSet,
)
from monitor.exposition.sections import JobLines, Sections
from monitor.logs import get_logger

log = get_logger("monitor.series")


def escape(value: str) -> str:
    """A label value as the text format writes it; looking first, as most need nothing."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def format_value(value: float) -> str:
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def job_label_prefix(job_id: str, job_name: str, labels: Mapping[str, str]) -> str:
    """The labels every series of a job carries, rendered once per job."""
    parts = [f'job_id="{escape(job_id)}"', f'job_name="{escape(job_name)}"']
    parts += [f'{k}="{escape(v)}"' for k, v in sorted(labels.items())]
    return ",".join(parts)


HEADS: tuple[str, ...] = tuple(f"{f.name}{{" for f in FAMILIES)
"""Each family's line start up to its first label, by ``FAMILIES`` index."""

SUFFIX_CACHE = 2048
"""Most rendered labels repeat across jobs: every job has a line for each documented phase
(``,phase="Running"} 0``), and restarts, exit codes and roles draw from small sets too. Those
tails of a line (the sample's own labels and its value) are kept once rendered, for samples
with labels and a whole value, up to this many; past it, they are rendered each time. Usage
ratios (fractions) and label-less samples never enter: their tails rarely repeat."""
_suffixes: dict[tuple[object, ...], str] = {}


def _suffix(extra: Mapping[str, str], value: float) -> str:
    """The end of a sample's line after the job's labels: its own labels, the value and the
    newline (``,phase="Running"} 1\\n``)."""
    if not extra:
        return f"}} {format_value(value)}\n"
    key = (*extra.items(), value)
    found = _suffixes.get(key)
    if found is None:
        labels = "".join([f',{k}="{escape(v)}"' for k, v in extra.items()])
        found = f"{labels}}} {format_value(value)}\n"
        if value.is_integer() and len(_suffixes) < SUFFIX_CACHE:
            _suffixes[key] = found
    return found


class Exposure(Protocol):
    """What ``metrics:`` says (``config.exposure.MetricsSettings`` is one)."""

    @property
    def sparse(self) -> bool: ...
    def exports(self, name: str) -> bool: ...
    def starved_alerts(self) -> Mapping[str, Sequence[str]]: ...


class Drawn(NamedTuple):
    """A job family a ``View`` shows, with what drawing a job's lines of it needs at hand."""

    at: int
    """In ``JOB_FAMILIES``, and so in a job's chunks."""
    head: str
    family: Family
    state_tails: Mapping[str | None, tuple[str, ...]]
    """A state set's tails for each state that can be current (empty for other families)."""


@dataclass(frozen=True, slots=True)
class View:
    """``metrics:`` decided once per entry of ``FAMILIES``: whether it is shown, its header
    in each format, and whether state sets keep only the current state.

    A state set's lines differ between jobs only in their prefix, so its tails for each state
    that can be current are rendered here, once; a job's current state picks its set."""

    sparse: bool
    shown: tuple[bool, ...]
    headers: tuple[bytes, ...]
    openmetrics_headers: tuple[bytes, ...]
    drawn: tuple[Drawn, ...]
    """The shown entries of ``JOB_FAMILIES``, in order: what rendering a job goes through."""

    @classmethod
    def of(cls, exposure: Exposure | None) -> View:
        sparse = exposure is not None and exposure.sparse
        headers = tuple(f.exposed_header(sparse=sparse) for f in FAMILIES)
        shown = tuple(exposure is None or exposure.exports(f.name) for f in FAMILIES)
        return cls(
            sparse=sparse,
            shown=shown,
            headers=headers,
            openmetrics_headers=tuple(map(openmetrics.header, headers)),
            drawn=tuple(
                Drawn(i, HEADS[i], f, _state_tails(f.state_set, sparse))
                for i, f in enumerate(JOB_FAMILIES)
                if shown[i]
            ),
        )


def _state_tails(state_set: StateSet | None, sparse: bool) -> Mapping[str | None, tuple[str, ...]]:
    """A state set's tails for each state that can be current (None: the API sent none); a
    sparse state set keeps only the current state's (the sample at 1)."""
    if state_set is None:
        return {}
    return {
        current: tuple(_suffix(s, v) for s, v in state_set.samples_at(current) if v or not sparse)
        for current in (*state_set.states, None)
    }


FULL = View.of(None)
"""Every family, every state: what ``metrics:`` gives by default."""


def _render(head: str, prefix: str, samples: Iterable[Sample]) -> bytes:
    """A family's lines of one job: its ``head`` and the job's ``prefix`` before each tail."""
    return _lines(head + prefix, [_suffix(extra, value) for extra, value in samples])


def _lines(start: str, tails: Sequence[str]) -> bytes:
    return (start + start.join(tails)).encode() if tails else b""


def _render_one(head: str, prefix: str, value: float) -> bytes:
    """``_render`` of one sample without labels of its own (a health line), in one step."""
    return f"{head}{prefix}}} {format_value(value)}\n".encode()


NO_LINES: tuple[bytes, ...] = (b"",) * len(JOB_FAMILIES)


def render_job(
    state: JobState,
    labels: Mapping[str, str],
    context: Mapping[str, str] | None = None,
    view: View = FULL,
) -> tuple[bytes, ...]:
    """One bytes chunk per entry of ``JOB_FAMILIES`` (empty for a family ``view`` does not
    show, or without samples). ``context`` holds the values of the families' context labels
    (``project_id``)."""
    prefix = job_label_prefix(state.job_id, state.job_name, labels)
    return _render_job(state, prefix, context or {}, view)


def _render_job(
    state: JobState, prefix: str, context: Mapping[str, str], view: View
) -> tuple[bytes, ...]:
    snapshot = state.snapshot
    if snapshot is None:  # nothing known from the API yet: no series, not zeros
        return NO_LINES
    chunks = list(NO_LINES)  # a family not shown, or without samples, stays b""
    for i, head, family, state_tails in view.drawn:
        if (single := family.value) is not None:
            value = single(snapshot, state)
            if value is not None:
                chunks[i] = _render_one(head, prefix, float(value))
        elif (states := family.state_set) is not None:
            chunks[i] = _lines(head + prefix, state_tails[states.current(snapshot)])
        else:
            samples = family.samples(snapshot, state)
            if family.context:
                samples = _with_context(family, samples, context)
            chunks[i] = _render(head, prefix, samples)
    return tuple(chunks)


def _with_context(
    family: Family, samples: Iterable[Sample], context: Mapping[str, str]
) -> Iterable[Sample]:
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
    return Rendered(state.job_id, prefix, _render_job(state, prefix, context or {}, view))


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
        self._lines = Sections[_JobEntry](len(FAMILIES), self._health_lines)
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
            relabelled = True
        else:
            relabelled = entry.prefix != rendered.prefix
            if relabelled:
                entry.prefix = rendered.prefix
        self._lines.set_all(entry, rendered.chunks)
        if relabelled:  # the health lines carry the job's labels too (a new job: up only)
            self._health_changed(entry, UP)
            if entry.last_success is not None:
                self._health_changed(entry, LAST_SUCCESS)

    def set_health(self, job_id: str, up: bool, last_success: float | None) -> None:
        """The job's health after a poll. Only the line whose value moved is marked, and it is
        rendered at the next scrape, not now: a poll of an unchanged job (its last-success
        time moves, nothing else) costs the exposition a mark, and nothing is joined again
        until a scrape wants the family."""
        entry = self._jobs.get(job_id)
        if entry is None:
            return
        if entry.up != up:
            entry.up = up
            self._health_changed(entry, UP)
        if entry.last_success != last_success:
            entry.last_success = last_success
            self._health_changed(entry, LAST_SUCCESS)

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
            lines = _render(HEADS[USAGE + i], entry.prefix, samples)
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

    def _health_changed(self, entry: _JobEntry, family: int) -> None:
        if self._view.shown[family]:  # a family never scraped is never rendered either
            self._lines.stale(entry, family)

    @staticmethod
    def _health_lines(entry: _JobEntry, family: int) -> bytes:
        """A job's line of a health family (``UP``, ``LAST_SUCCESS``) from its health now:
        what ``Sections`` asks for when it next joins a family marked stale."""
        if family == UP:
            return _render_one(HEADS[UP], entry.prefix, 1.0 if entry.up else 0.0)
        if entry.last_success is None:
            return b""
        return _render_one(HEADS[LAST_SUCCESS], entry.prefix, entry.last_success)
