"""``modelarts-monitor status``: the monitored jobs as the state database knows them, then each
sink's dead letters (events it can never take), which would otherwise only be in the logs.

It opens the database read-only, so it is safe to run beside a live daemon, and it renders
plain text (pure functions, so they are tested without a database). When the jobs belong to
more than one target (``targets:``), a TARGET column comes first; a single project's table is
what it always was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from monitor.core.events import rfc3339
from monitor.core.state import JobState
from monitor.store.database import SinkDeadLetters

COLUMNS = (
    "JOB",
    "ID",
    "PHASE",
    "SECONDARY",
    "NODES",
    "RESTARTS",
    "PHASE SINCE",
    "LAST SUCCESSFUL POLL",
)


def status_rows(
    job_ids: Sequence[str],
    states: Mapping[str, JobState],
    last_success: Mapping[str, float],
    targets: Mapping[str, str] | None = None,
) -> list[tuple[str, ...]]:
    """One row per configured job, then any job the database still holds but the config no
    longer names (marked as such), so nothing the monitor remembers is hidden. ``targets``
    (job id to target name): with more than one name among the rows, each row starts with its
    job's target."""
    rows = _rows(job_ids, states, last_success)
    named = targets or {}
    if len({named.get(row[1], "") for row in rows}) <= 1:
        return rows
    return [(named.get(row[1], "") or "-", *row) for row in rows]


def _rows(
    job_ids: Sequence[str], states: Mapping[str, JobState], last_success: Mapping[str, float]
) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    extra = sorted(set(states) - set(job_ids))
    for job_id in [*job_ids, *extra]:
        state = states.get(job_id)
        snap = state.snapshot if state else None
        name = snap.name if snap and snap.name else "?"
        if job_id in extra:
            name += " (not configured)"
        if state is None or snap is None:
            # Gone before the monitor ever saw it: the configured id does not exist.
            phase = "- (gone)" if state is not None and state.gone else "never polled"
            rows.append((name, job_id, phase, "-", "-", "-", "-", _time(last_success.get(job_id))))
            continue
        phase = snap.phase or "-"
        if state.gone:
            phase += " (gone)"
        nodes = "-" if snap.nodes is None else str(snap.nodes)
        if snap.requested_nodes is not None:
            nodes += f"/{snap.requested_nodes}"
        rows.append(
            (
                name,
                job_id,
                phase,
                snap.secondary_phase or "-",
                nodes,
                str(sum(state.restarts.values())),
                _time(state.phase_since),
                _time(last_success.get(job_id)),
            )
        )
    return rows


def render_table(rows: Sequence[tuple[str, ...]]) -> str:
    """The rows under their header; rows one cell wider than ``COLUMNS`` have a target."""
    columns = ("TARGET", *COLUMNS) if rows and len(rows[0]) > len(COLUMNS) else COLUMNS
    widths = [max(len(r[i]) for r in [columns, *rows]) for i in range(len(columns))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [columns, *rows]
    ]
    return "\n".join(lines) + "\n"


def render_dead_letters(sinks: Sequence[SinkDeadLetters]) -> str:
    """After the table: per sink with dead letters, a line with their count, then its newest
    few (time, event id, reason). Nothing at all when no sink has any."""
    lines: list[str] = []
    for sink in sinks:
        lines += ["", f"dead letters of sink {sink.sink}: {sink.count}, newest first"]
        lines += [f"  {_time(d.at)}  {d.event_id}  {_one_line(d.reason)}" for d in sink.newest]
    return "".join(f"{line}\n" for line in lines)


def _one_line(text: str) -> str:
    """A reason quotes a receiver's reply: folded to one line, no terminal control codes."""
    return "".join(c if c.isprintable() else "?" for c in " ".join(text.split()))


def _time(ts: float | None) -> str:
    return rfc3339(ts) if ts else "-"
