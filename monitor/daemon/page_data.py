"""What the pages show, built from the job book's views and the event journal.

The overview's rows come from the book's views alone (``reports.job_row``), so ``/`` costs no
database read however many jobs are watched. A job page reads that job's journal (its events,
newest ``JOURNAL_LIMIT``) on the store's thread and folds them with the job's current state
into a ``JobPage``: the phases over time, the node count over time, the reasons ModelArts gave
and the job's history as the console sink prints it. The journal is a record of what was
*seen*: a page whose journal is cut, partly unreadable or unavailable still shows the current
state, and says what it lacks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from monitor.config.targets import Target
from monitor.core.events import TYPE_PREFIX
from monitor.core.lifecycle import Rules
from monitor.daemon.handoff import JobView
from monitor.daemon.jobs import JobBook
from monitor.daemon.reports import health_of, job_row
from monitor.delivery.sinks import describe
from monitor.errors import StateError
from monitor.exposition.series import SeriesStore
from monitor.logs import get_logger
from monitor.store import Store
from monitor.web.job_page import Change, JobPage, PhaseSpan, Reason
from monitor.web.pages import JobRow

log = get_logger("monitor.pages")

JOURNAL_LIMIT = 1000
"""Events of one job a page reads, newest first: a job's whole story is a few dozen; a job
whose tasks fail over and over is shown its newest thousand."""


Entry = tuple[float, str, Mapping[str, Any], str]
"""A readable journal event: (time, short type, data, its line as the console sink prints it)."""


class PageData:
    """What ``web.server.create_app`` reads for the pages (its ``Pages``): the book's views,
    the store's journal and the job series, never their insides."""

    def __init__(
        self,
        book: JobBook,
        store: Store,
        series: SeriesStore,
        target_of: Callable[[str], Target],
        clock: Callable[[], float],
    ) -> None:
        """``target_of``: a target by name, for its poll rules (whether a job is retired)."""
        self._book = book
        self._store = store
        self._series = series
        self._target_of = target_of
        self._clock = clock
        self._made: dict[str, tuple[object, object, JobRow]] = {}
        """Per job: the state and health its row was made from, and the row."""

    def rows(self) -> list[JobRow]:
        """Every watched job's row. A row is made again only when its job's state, health,
        labels or (a terminal job retiring with time alone) health word changed since the
        last overview; the book replaces, never mutates, states and healths, so most rows of
        10,000 are reused."""
        now = self._clock()
        rules: dict[str, Rules] = {}
        made: dict[str, tuple[object, object, JobRow]] = {}
        for view in self._book.views():
            if view.target not in rules:
                rules[view.target] = self._target_of(view.target).poll
            old = self._made.get(view.job_id)
            snap = view.state.snapshot if view.state else None
            if (
                old is not None
                and old[0] is view.state
                and old[1] is view.health
                and old[2].labels == view.labels
                and not (
                    snap is not None
                    and snap.terminal
                    and health_of(view, now, rules[view.target]) != old[2].health
                )
            ):
                made[view.job_id] = old
            else:
                row = job_row(view, now, rules[view.target])
                made[view.job_id] = (view.state, view.health, row)
        self._made = made
        return [row for _, _, row in made.values()]

    def job_metrics(self, job_id: str) -> bytes:
        """The job's lines of ``/metrics`` under their headers (b"" for a job without series),
        for the job page's link."""
        return self._series.job_lines(job_id)

    async def job(self, job_id: str) -> JobPage | None:
        """The page of a watched job, or None."""
        view = self._book.view(job_id)
        if view is None:
            return None
        note = ""
        try:
            events = await self._store.call(
                self._store.journal, job_ids=[job_id], limit=JOURNAL_LIMIT, newest_first=True
            )
        except StateError as exc:
            log.warning("journal_read_failed", job_id=job_id, error=str(exc))
            events, note = [], f"the event journal could not be read ({exc}): current state only"
        view = self._book.view(job_id) or view  # the freshest picture after the await
        page = build_page(view, events, self._clock(), self._target_of(view.target).poll)
        if note:
            page = replace(page, journal_note=note)
        elif len(events) >= JOURNAL_LIMIT:
            page = replace(page, journal_note=f"only the newest {JOURNAL_LIMIT} events are shown")
        return page


def build_page(
    view: JobView, events: Sequence[Mapping[str, Any]], now: float, rules: Rules
) -> JobPage:
    """A job page from the job's view and its journal (CloudEvents, in any order)."""
    entries, unreadable = readable(events)
    state = view.state
    snap = state.snapshot if state else None
    page = JobPage(
        row=job_row(view, now, rules),
        snapshot=snap,
        now=now,
        target=view.target,
        phases=phase_spans(
            entries, snap.phase if snap else None, state.phase_since if state else None, now
        ),
        history=[Change(t, kind, line) for t, kind, _, line in entries],
        nodes=node_points(
            entries,
            snap.nodes if snap else None,
            snap.nodes_at_ms / 1000 if snap and snap.nodes_at_ms else None,
        ),
        usage=view.usage,
        reasons=reasons(entries, state.last_reason if state else {}),
    )
    if unreadable:
        page = replace(page, journal_note=f"{unreadable} journal events could not be read")
    return page


def readable(events: Sequence[Mapping[str, Any]]) -> tuple[list[Entry], int]:
    """The events the page can use, oldest first, and how many it cannot (damaged rows, or
    shapes this monitor does not know): they are left out, not guessed at."""
    entries: list[Entry] = []
    for doc in events:
        try:
            data = doc["data"]
            time = datetime.fromisoformat(str(doc["time"])).timestamp()
            kind = str(doc["type"]).removeprefix(TYPE_PREFIX)
            line = describe(doc)  # the history line: a shape it cannot read fails here
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
        if isinstance(data, Mapping):
            entries.append((time, kind, data, line))
    entries.sort(key=lambda e: e[0])
    return entries, len(events) - len(entries)


def phase_spans(
    entries: Sequence[Entry], phase: str | None, since: float | None, now: float
) -> list[PhaseSpan]:
    """The phases one after another, from the journal's ``discovered`` and ``phase_changed``;
    the current phase (from ``phase_since``) closes the list if the journal does not show it
    (pruned, or not committed yet)."""
    spans: list[PhaseSpan] = []
    for t, kind, data, _ in entries:
        to = data.get("phase") if kind == "discovered" else data.get("to")
        if kind not in ("discovered", "phase_changed") or not isinstance(to, str):
            continue
        if spans and spans[-1].phase == to:
            continue
        if spans:
            spans[-1] = replace(spans[-1], end=t)
        spans.append(PhaseSpan(to, t))
    if phase is not None and (not spans or spans[-1].phase != phase):
        start = since if since is not None else now
        if spans:
            spans[-1] = replace(spans[-1], end=max(start, spans[-1].start))
        spans.append(PhaseSpan(phase, start))
    return spans


def node_points(
    entries: Sequence[Entry], nodes: int | None, nodes_at: float | None
) -> list[tuple[float, int]]:
    """(time, count) at each change: the journal's ``nodes_changed`` (the count before the
    first one held from the job's first event on), then the snapshot's newest point."""
    points: list[tuple[float, int]] = []
    first = entries[0][0] if entries else None
    for t, kind, data, _ in entries:
        before, after = data.get("from"), data.get("to")
        if kind != "nodes_changed" or not isinstance(after, int):
            continue
        if not points and isinstance(before, int) and first is not None and first < t:
            points.append((first, before))
        points.append((t, after))
    if nodes is not None and (not points or points[-1][1] != nodes):
        at = nodes_at if nodes_at is not None else first
        if at is None or (points and at < points[-1][0]):
            at = points[-1][0] if points else 0.0
        points.append((at, nodes))
    return points


def reasons(entries: Sequence[Entry], last: Mapping[str, str]) -> list[Reason]:
    """The reasons fetched for the failure transitions (``data.reasons``), newest transition
    first, each reason once; the job's ``last_reason`` too if the journal no longer has it."""
    found: list[Reason] = []
    seen: set[tuple[str, str, str]] = set()
    for _, kind, data, _ in reversed(entries):
        listed = data.get("reasons")
        if not isinstance(listed, list):
            continue
        about = _about(kind, data)
        for r in listed:
            if not isinstance(r, Mapping):
                continue
            key = (str(r.get("level", "")), str(r.get("time", "")), str(r.get("message", "")))
            if key not in seen and key[2]:
                seen.add(key)
                found.append(Reason(about, *key))
    key = (last.get("level", ""), last.get("time", ""), last.get("message", ""))
    if key[2] and key not in seen:
        found.insert(0, Reason("the latest failure", *key))
    return found


def _about(kind: str, data: Mapping[str, Any]) -> str:
    if kind == "phase_changed":
        return f"phase {data.get('from')} -> {data.get('to')}"
    if kind == "run_ended":
        return f"run #{data.get('index')} ended ({data.get('end_recover') or 'no recovery'})"
    return kind
