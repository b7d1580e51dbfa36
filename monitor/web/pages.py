"""The overview at ``/``: every watched job, filtered by the query and a page at a time.

The filters are query parameters, so a filtered view is a link to share:
``?phase=Failed``, ``?team=nlp`` (any job label), ``?phase=Running&team=nlp`` (all must hold),
``?phase=Failed&phase=Abnormal`` (any of a parameter's values). A parameter that is neither
``phase``, ``page`` nor a label some job has is ignored, so a stray ``?utm_source=`` costs
nothing. Values longer than any label value can be match nothing; at most
``MAX_FILTERS`` parameters are read. The page reloads itself every ``REFRESH_SECONDS`` with a
``<meta>`` refresh (no script), and shows ``PAGE_SIZE`` rows a page, so it stays fast at
10,000 jobs: filtering and sorting rows is cheap, rendering them is what costs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

from monitor.core.job import PHASES
from monitor.core.text import LABEL_LIMIT
from monitor.web.frame import HEALTH_COLOURS, badge, esc, frame, phase_badge, when

PAGE_SIZE = 200
REFRESH_SECONDS = 10
MAX_FILTERS = 32
"""Query parameters read; a URL with more is cut, not refused."""
RESERVED = ("phase", "page")
"""Query parameters that are not labels."""
HEALTH_VALUES = ("up", "down", "gone", "retired")


@dataclass(slots=True)
class JobRow:
    """One job as the overview shows it (built by ``daemon/reports.job_row``).

    Not frozen, though nothing changes a row: the overview builds one per watched job on
    every view, and a frozen dataclass's ``__init__`` costs four times as much (~30 ms more
    at 10,000 jobs)."""

    job_id: str
    name: str
    phase: str
    secondary_phase: str
    health: str
    """``up``, ``down`` (the last poll failed, or none was made yet), ``gone`` (the API says
    the job does not exist) or ``retired`` (terminal past ``poll.terminal_retention``)."""
    last_success: float | None
    restarts: int
    last_reason: str = ""
    """The newest ModelArts event message fetched for a failure of this job, as one line."""
    labels: Mapping[str, str] = field(default_factory=dict)
    nodes: int | None = None
    requested_nodes: int | None = None
    error: str = ""
    """Why the job is down: the last poll's error, or that it was not polled yet."""

    @property
    def up(self) -> bool:
        """The last poll of the job succeeded (``modelarts_monitor_up`` 1)."""
        return self.health == "up"


@dataclass(frozen=True, slots=True)
class OverviewQuery:
    """The overview's filters and page, read from the URL (``parse_query``)."""

    phases: frozenset[str] = frozenset()
    labels: Mapping[str, frozenset[str]] = field(default_factory=dict)
    page: int = 1

    def items(self, page: int | None = None) -> list[tuple[str, str]]:
        """The query as URL parameters again, in a stable order, for links that keep it."""
        pairs = [("phase", p) for p in sorted(self.phases)]
        pairs += [(k, v) for k, values in sorted(self.labels.items()) for v in sorted(values)]
        chosen = self.page if page is None else page
        return pairs + ([("page", str(chosen))] if chosen > 1 else [])

    def href(self, page: int | None = None) -> str:
        """A link to the overview with this query (at another ``page``)."""
        pairs = self.items(page)
        return "/?" + urlencode(pairs, quote_via=quote) if pairs else "/"

    def with_phase(self, phase: str | None) -> OverviewQuery:
        """This query for one phase (None: any), from its first page."""
        return OverviewQuery(frozenset([phase] if phase else []), self.labels)

    def with_label(self, key: str, value: str | None) -> OverviewQuery:
        """This query with ``key`` filtered to ``value`` (None: not filtered), first page."""
        labels = {k: v for k, v in self.labels.items() if k != key}
        if value is not None:
            labels[key] = frozenset([value])
        return OverviewQuery(self.phases, labels)


def parse_query(pairs: Iterable[tuple[str, str]]) -> OverviewQuery:
    """The URL's parameters as filters: bounded, never an error (a bad ``page`` is page 1)."""
    phases: set[str] = set()
    labels: dict[str, set[str]] = {}
    page = 1
    for n, (key, value) in enumerate(pairs):
        if n >= MAX_FILTERS:
            break
        if len(key) > LABEL_LIMIT or not value:
            continue
        value = value[: LABEL_LIMIT + 1]  # longer than any label value: matches nothing
        if key == "page":
            page = int(value) if value.isdigit() and len(value) < 7 else 1
        elif key == "phase":
            phases.add(value)
        else:
            labels.setdefault(key, set()).add(value)
    return OverviewQuery(
        frozenset(phases), {k: frozenset(v) for k, v in labels.items()}, max(page, 1)
    )


@dataclass(frozen=True, slots=True)
class Selection:
    """The rows a query selects, and the page of them to show."""

    query: OverviewQuery
    """With label filters no job has left out (ignored), and the page clamped."""
    rows: Sequence[JobRow]
    matched: int
    total: int
    pages: int
    phases: Mapping[str, int]
    """Phase -> jobs in it among those the label filters select (for the phase links)."""


def select(rows: Sequence[JobRow], query: OverviewQuery) -> Selection:
    known = {k for r in rows for k in r.labels}
    labels = {k: v for k, v in query.labels.items() if k in known}
    by_label = [r for r in rows if all(r.labels.get(k) in v for k, v in labels.items())]
    matched = [r for r in by_label if not query.phases or r.phase in query.phases]
    matched.sort(key=lambda r: (r.name, r.job_id))
    pages = max(1, -(-len(matched) // PAGE_SIZE))
    page = min(query.page, pages)
    start = (page - 1) * PAGE_SIZE
    return Selection(
        query=OverviewQuery(query.phases, labels, page),
        rows=matched[start : start + PAGE_SIZE],
        matched=len(matched),
        total=len(rows),
        pages=pages,
        phases=Counter(r.phase for r in by_label),
    )


def landing_page(rows: Sequence[JobRow], query: OverviewQuery | None = None) -> str:
    """The overview: the rows ``query`` selects, a page of them, every value escaped."""
    chosen = select(rows, query or OverviewQuery())
    q = chosen.query
    body = [
        "<h1>Training jobs</h1>",
        f"<p id='summary'>{chosen.matched} of {chosen.total} jobs"
        f"{' match' if q.phases or q.labels else ''} · page {q.page} of {chosen.pages}"
        f" · reloads every {REFRESH_SECONDS} s</p>",
        _filters(chosen),
        "<table id='jobs'><thead><tr><th>job</th><th>phase</th><th>health</th>"
        "<th>restarts</th><th>nodes</th><th>labels</th><th>last successful poll</th>"
        "<th>last reason</th></tr></thead><tbody>",
        *(_row(r, q) for r in chosen.rows),
        "</tbody></table>",
        _pager(chosen),
    ]
    return frame("modelarts-monitor", "".join(body), refresh=REFRESH_SECONDS)


def _filters(chosen: Selection) -> str:
    q = chosen.query
    links = [f"<a href='{esc(q.with_phase(None).href())}'>all phases</a>"]
    for phase in sorted(chosen.phases, key=_phase_order):
        text = f"{esc(phase) or 'unknown'} ({chosen.phases[phase]})"
        on = phase in q.phases
        links.append(
            f"<b>{text}</b>" if on else f"<a href='{esc(q.with_phase(phase).href())}'>{text}</a>"
        )
    active = [
        f"{esc(k)}={esc(v)} <a href='{esc(q.with_label(k, None).href())}'"
        f" title='remove this filter'>&times;</a>"
        for k, values in sorted(q.labels.items())
        for v in sorted(values)
    ]
    labels = f"<p class='chips' id='label-filters'>labels: {' '.join(active)}</p>" if active else ""
    return f"<p class='chips' id='phase-filters'>{' '.join(links)}</p>{labels}"


def _row(r: JobRow, q: OverviewQuery) -> str:
    nodes = f"{_count(r.nodes)} / {_count(r.requested_nodes)}"
    labels = " ".join(
        f"<a href='{esc(q.with_label(k, v).href())}'>{esc(k)}={esc(v)}</a>"
        for k, v in sorted(r.labels.items())
    )
    health = badge(r.health, HEALTH_COLOURS.get(r.health, "#6e7781"), r.error)
    secondary = f" <span class='muted'>{esc(r.secondary_phase)}</span>" if r.secondary_phase else ""
    return (
        f"<tr data-job-id='{esc(r.job_id)}'>"
        f"<td><a href='/jobs/{esc(quote(r.job_id, safe=''))}'>{esc(r.name) or '<i>unknown</i>'}</a>"
        f"<br><code class='muted'>{esc(r.job_id)}</code></td>"
        f"<td>{phase_badge(r.phase)}{secondary}</td>"
        f"<td class='health'>{health}</td><td>{r.restarts}</td><td>{nodes}</td>"
        f"<td>{labels}</td><td>{when(r.last_success)}</td><td>{esc(r.last_reason) or '-'}</td>"
        "</tr>"
    )


def _pager(chosen: Selection) -> str:
    if chosen.pages == 1:
        return ""
    q = chosen.query
    parts = []
    if q.page > 1:
        parts.append(f"<a rel='prev' href='{esc(q.href(q.page - 1))}'>← previous</a>")
    parts.append(f"page {q.page} of {chosen.pages}")
    if q.page < chosen.pages:
        parts.append(f"<a rel='next' href='{esc(q.href(q.page + 1))}'>next →</a>")
    return f"<p id='pager'>{' · '.join(parts)}</p>"


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _phase_order(phase: str) -> tuple[int, str]:
    return (PHASES.index(phase) if phase in PHASES else len(PHASES), phase)
