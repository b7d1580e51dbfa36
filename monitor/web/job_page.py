"""The job page at ``/jobs/{job_id}``: one job's life, from its state and the event journal.

What a person opens it for is the job that restarted, was rescheduled and failed: its phases
over time, its runs as bars (``running_records``: start, end, start type, end reason, the
recovery ModelArts chose and how it went, the task it blamed), its node count against what it
asked for, the latest usage per task, and the reasons ModelArts gave. The model (``JobPage``)
is built by ``daemon/page_data.py``; this module only renders it, every value escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

from monitor.core.hang import USAGE_METRICS
from monitor.core.job import JobSnapshot, RunningRecord
from monitor.web.frame import (
    HEALTH_COLOURS,
    badge,
    esc,
    frame,
    phase_badge,
    phase_colour,
    span,
    when,
)
from monitor.web.pages import REFRESH_SECONDS, JobRow
from monitor.web.svg import Bar, bars, steps

RUN_COLOURS = {
    "running": "#1f6feb",
    "recovered": "#c98a00",
    "failed": "#cf222e",
    "ended": "#57606a",
}
"""A run still open; one that ended in a recovery; the last run of a job that failed; any
other that ended (the job completed or was stopped)."""
FAILURE_PHASES = ("Failed", "Abnormal")


@dataclass(frozen=True, slots=True)
class PhaseSpan:
    phase: str
    start: float
    end: float | None = None
    """None: the job is still in it."""


@dataclass(frozen=True, slots=True)
class Change:
    """One journal event as a line of the job's history."""

    time: float
    kind: str
    text: str


@dataclass(frozen=True, slots=True)
class Reason:
    """A reason ModelArts gave, and the transition it was fetched for."""

    about: str
    level: str
    time: str
    message: str


@dataclass(frozen=True, slots=True)
class JobPage:
    row: JobRow
    snapshot: JobSnapshot | None
    now: float
    target: str = ""
    phases: Sequence[PhaseSpan] = ()
    history: Sequence[Change] = ()
    """Oldest first."""
    nodes: Sequence[tuple[float, int]] = ()
    """(time, node count) from the journal's ``nodes_changed`` and the current snapshot."""
    usage: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    reasons: Sequence[Reason] = ()
    journal_note: str = ""
    """Said when the journal could not tell the whole story (cut, unreadable, unavailable)."""


def job_page(page: JobPage) -> str:
    r, snap = page.row, page.snapshot
    title = r.name or r.job_id
    body = [
        f"<h1 id='job-name'>{esc(title)}</h1>",
        f"<p>{phase_badge(r.phase)} <span class='muted'>{esc(r.secondary_phase)}</span> · "
        f"health {badge(r.health, HEALTH_COLOURS.get(r.health, '#6e7781'), r.error)}"
        f"{' <span class=muted>(' + esc(r.error) + ')</span>' if r.error else ''}</p>",
        _facts(page),
        f"<p class='muted'>{esc(page.journal_note)}</p>" if page.journal_note else "",
        "<h2>Phases</h2>",
        _phases(page),
        "<h2>Runs</h2>",
        _runs(page),
        "<h2>Nodes</h2>",
        _nodes(page),
        "<h2>Usage per task</h2>",
        _usage(page),
        "<h2>Task statuses</h2>",
        _tasks(snap),
        "<h2>Reasons ModelArts gave</h2>",
        _reasons(page),
        "<h2>History</h2>",
        _history(page),
    ]
    return frame(f"{title} · modelarts-monitor", "".join(body), refresh=REFRESH_SECONDS)


def _facts(page: JobPage) -> str:
    r, snap = page.row, page.snapshot
    path = quote(r.job_id, safe="")
    rows: list[tuple[str, str]] = [
        ("job id", f"<code>{esc(r.job_id)}</code>"),
        (
            "metrics",
            f"<a id='metrics-link' href='/jobs/{esc(path)}/metrics'>this job's lines of"
            " /metrics</a>",
        ),
    ]
    if page.target:
        rows.append(("target", esc(page.target)))
    if r.labels:
        labels = " ".join(
            f"<a href='/?{esc(quote(k, safe=''))}={esc(quote(v, safe=''))}'>{esc(k)}={esc(v)}</a>"
            for k, v in sorted(r.labels.items())
        )
        rows.append(("labels", labels))
    if snap is not None:
        accel = f"{snap.accelerators} {esc(snap.accelerator_type)}" if snap.accelerators else "none"
        rows += [
            ("nodes", f"{_num(snap.nodes)} of {_num(snap.requested_nodes)} requested"),
            ("accelerators", accel),
            ("flavor", esc(snap.flavor_name or snap.flavor_id) or "-"),
            ("pool", esc(snap.pool_name or snap.pool_id) or "-"),
            ("engine", esc(f"{snap.engine_name} {snap.engine_version}".strip()) or "-"),
            ("user", esc(snap.user_name) or "-"),
            (
                "restarts",
                f"{r.restarts}"
                + (f" (limit {snap.retry_limit})" if snap.retry_limit is not None else ""),
            ),
            ("created", when(snap.create_time_ms / 1000 if snap.create_time_ms else None, "-")),
            ("started", when(snap.start_time_ms / 1000 if snap.start_time_ms else None, "-")),
            ("ran for", span(snap.duration_ms / 1000 if snap.duration_ms is not None else None)),
        ]
    rows.append(("last successful poll", when(r.last_success)))
    if r.last_reason:
        rows.append(("last reason", esc(r.last_reason)))
    cells = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows)
    return f"<table class='kv' id='facts'>{cells}</table>"


def _window(page: JobPage) -> tuple[float, float]:
    """The time axis every chart of the page shares: the job's first known moment to now."""
    starts = [s.start for s in page.phases] + [t for t, _ in page.nodes]
    snap = page.snapshot
    if snap is not None:
        starts += [float(x.start_at) for x in snap.running_records if x.start_at is not None]
        if snap.create_time_ms:
            starts.append(snap.create_time_ms / 1000)
    t0 = min(starts, default=page.now - 60)
    return t0, max(page.now, t0 + 1)


def _phases(page: JobPage) -> str:
    if not page.phases:
        return "<p class='muted'>no phase known yet</p>"
    t0, t1 = _window(page)
    items = [
        Bar(
            p.start,
            p.end if p.end is not None else t1,
            phase_colour(p.phase),
            p.phase,
            f"{p.phase}: {when(p.start)} to {when(p.end, 'now')}",
        )
        for p in page.phases
    ]
    rows = "".join(
        f"<tr><td>{phase_badge(p.phase)}</td><td>{when(p.start)}</td>"
        f"<td>{when(p.end, 'now')}</td><td>{span((p.end or page.now) - p.start)}</td></tr>"
        for p in page.phases
    )
    return (
        bars(items, t0, t1, ["phase"], element_id="phase-timeline")
        + "<table id='phases'><tr><th>phase</th><th>from</th><th>to</th><th>for</th></tr>"
        + rows
        + "</table>"
    )


def _outcome(record: RunningRecord, failed: bool) -> str:
    """``failed``: the job failed and this is its last run."""
    if not record.ended:
        return "running"
    if record.end_recover:
        return "recovered"
    return "failed" if failed else "ended"


def _runs(page: JobPage) -> str:
    snap = page.snapshot
    records = snap.running_records if snap else ()
    if not records:
        return "<p class='muted'>no run yet</p>"
    t0, t1 = _window(page)
    failed = page.row.phase in FAILURE_PHASES
    outcomes = [_outcome(rec, failed and i == len(records) - 1) for i, rec in enumerate(records)]
    items = []
    for i, (rec, outcome) in enumerate(zip(records, outcomes, strict=True)):
        start = float(rec.start_at) if rec.start_at is not None else t0
        end = float(rec.end_at) if rec.end_at is not None else t1
        tip = f"run #{i}: {rec.start_type or '?'}; {rec.end_reason or outcome}"
        items.append(Bar(start, end, RUN_COLOURS[outcome], f"#{i}", tip, row=i))
    chart = bars(
        items, t0, t1, [f"run #{i}" for i in range(len(records))], element_id="runs-timeline"
    )
    head = (
        "<tr><th>run</th><th>start</th><th>end</th><th>for</th><th>start type</th>"
        "<th>end reason</th><th>related task</th><th>recovery</th><th>recovery records</th></tr>"
    )
    rows = "".join(
        _run_row(i, rec, outcome, page.now)
        for i, (rec, outcome) in enumerate(zip(records, outcomes, strict=True))
    )
    return f"{chart}<table id='runs'>{head}{rows}</table>"


def _run_row(i: int, rec: RunningRecord, outcome: str, now: float) -> str:
    recovery = esc(rec.end_recover) or "-"
    if rec.end_recover_before_downgrade and rec.end_recover_before_downgrade != rec.end_recover:
        recovery += (
            f" <span class='muted'>(downgraded from {esc(rec.end_recover_before_downgrade)})</span>"
        )
    actions = "<br>".join(
        f"{esc(x.recover)}: <b>{esc(x.recover_result) or '?'}</b>"
        + (f" · {esc(x.fault_scenario)}" if x.fault_scenario else "")
        + (f" · {esc(x.reason)}" if x.reason else "")
        + (f" · task {esc(x.related_task)}" if x.related_task else "")
        for x in rec.recover_records
    )
    end = when(float(rec.end_at), "-") if rec.end_at is not None else "<i>running</i>"
    took = span((rec.end_at if rec.end_at is not None else now) - rec.start_at) if (
        rec.start_at is not None) else "-"  # fmt: skip
    return (
        f"<tr class='run {outcome}'><td>#{i}</td>"
        f"<td>{when(float(rec.start_at) if rec.start_at is not None else None, '-')}</td>"
        f"<td>{end}</td><td>{took}</td><td>{esc(rec.start_type) or '-'}</td>"
        f"<td>{esc(rec.end_reason) or '-'}</td><td>{esc(rec.end_related_task) or '-'}</td>"
        f"<td>{recovery}</td><td>{actions or '-'}</td></tr>"
    )


def _nodes(page: JobPage) -> str:
    if not page.nodes:
        return "<p class='muted'>no node count reported yet</p>"
    t0, t1 = _window(page)
    requested = page.snapshot.requested_nodes if page.snapshot else None
    chart = steps(
        [(t, float(n)) for t, n in page.nodes],
        t0,
        t1,
        reference=float(requested) if requested is not None else None,
        element_id="nodes-chart",
    )
    rows = "".join(f"<tr><td>{when(t)}</td><td>{n}</td></tr>" for t, n in page.nodes)
    return (
        f"{chart}<p class='muted'>dashed: requested ({_num(requested)})</p>"
        f"<table id='nodes'><tr><th>from</th><th>nodes</th></tr>{rows}</table>"
    )


def _usage(page: JobPage) -> str:
    if not page.usage:
        return "<p class='muted'>no usage reading (usage is swept while the job is Running)</p>"
    shown = [m for m in USAGE_METRICS if any(m in u for u in page.usage.values())]
    head = "".join(f"<th>{esc(USAGE_METRICS[m].replace('_', ' '))}</th>" for m in shown)
    rows = []
    for task, reading in sorted(page.usage.items()):
        cells = "".join(_percent(reading.get(m)) for m in shown)
        rows.append(f"<tr><td>{esc(task)}</td>{cells}</tr>")
    return f"<table id='usage'><tr><th>task</th>{head}</tr>{''.join(rows)}</table>"


def _percent(ratio: float | None) -> str:
    if ratio is None:
        return "<td class='muted'>-</td>"
    pct = max(0.0, min(ratio, 1.0)) * 100
    return f"<td><span class='bar' style='width:{pct * 0.6:.0f}px'></span> {pct:.0f}%</td>"


def _tasks(snap: JobSnapshot | None) -> str:
    statuses = snap.task_statuses if snap else ()
    if not statuses:
        return "<p class='muted'>no task has exited</p>"
    rows = "".join(
        f"<tr><td>{esc(t.task)}</td><td>{_num(t.exit_code)}</td>"
        f"<td>{esc(t.message) or '-'}</td></tr>"
        for t in statuses
    )
    return (
        f"<table id='tasks'><tr><th>task</th><th>exit code</th><th>message</th></tr>{rows}</table>"
    )


def _reasons(page: JobPage) -> str:
    if not page.reasons:
        return (
            "<p class='muted'>none fetched (reasons are asked for when the job fails or a run"
            " ends in a recovery)</p>"
        )
    rows = "".join(
        f"<tr class='reason'><td>{esc(x.about)}</td><td>{esc(x.level)}</td><td>{esc(x.time)}</td>"
        f"<td>{esc(x.message)}</td></tr>"
        for x in page.reasons
    )
    head = "<tr><th>fetched for</th><th>level</th><th>time</th><th>message</th></tr>"
    return f"<table id='reasons'>{head}{rows}</table>"


def _history(page: JobPage) -> str:
    if not page.history:
        return "<p class='muted'>no event in the journal</p>"
    rows = "".join(
        f"<tr data-kind='{esc(c.kind)}'><td>{when(c.time)}</td>"
        f"<td><code>{esc(c.text)}</code></td></tr>"
        for c in reversed(page.history)
    )
    head = "<tr><th>time</th><th>event, as the console sink prints it</th></tr>"
    return f"<table id='history'>{head}{rows}</table>"


def _num(value: int | None) -> str:
    return "-" if value is None else str(value)


def not_watched(job_id: str) -> str:
    """The page for an id the monitor does not watch (never configured, or unwatched)."""
    return frame(
        "not watched · modelarts-monitor",
        f"<h1>Not watched</h1><p>The monitor does not watch a job <code>{esc(job_id)}</code>"
        " (not configured or discovered, or retired). <a href='/'>All jobs</a></p>",
    )
