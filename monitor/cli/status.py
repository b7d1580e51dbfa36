"""``modelarts-monitor status``: the monitored jobs as the state database knows them.

It opens the database read-only, so it is safe to run beside a live daemon, and it renders a
plain table (pure function, so it is tested without a database).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from monitor.core.events import rfc3339
from monitor.core.state import JobState

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
    job_ids: Sequence[str], states: Mapping[str, JobState], last_success: Mapping[str, float]
) -> list[tuple[str, ...]]:
    """One row per configured job, then any job the database still holds but the config no
    longer names (marked as such), so nothing the monitor remembers is hidden."""
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
    widths = [max(len(r[i]) for r in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [COLUMNS, *rows]
    ]
    return "\n".join(lines) + "\n"


def _time(ts: float | None) -> str:
    return rfc3339(ts) if ts else "-"
