"""What the daemon tells its readers: ``/readyz`` and the overview's rows, built from views.

Both are read from the job book's and the dispatcher's public views, never from their
attributes, so the web room learns nothing of how jobs are kept.
"""

from __future__ import annotations

from monitor.core.reasons import reason_line
from monitor.daemon.handoff import JobView
from monitor.daemon.jobs import JobBook
from monitor.delivery.dispatcher import Dispatcher
from monitor.web.pages import JobRow


def readiness(book: JobBook, dispatcher: Dispatcher) -> tuple[bool, str]:
    """Ready when the state database takes commits, every watched job was polled once in
    this run, and no sink's backlog is over ``events.outbox_limit``. The text has a line per
    check (and one per sink), the failing ones first, so the probe's body says why."""
    failing: list[str] = []
    passing: list[str] = []
    error = book.store_error
    (failing if error else passing).append(
        f"state database: {error}" if error else "state database: ok"
    )
    polled, watched = book.first_round()
    if polled < watched:
        failing.append(f"first round: {watched - polled} of {watched} jobs not polled yet")
    else:
        passing.append(f"first round: all {watched} jobs polled")
    over = set(dispatcher.over_limit())
    for sink, pending in dispatcher.backlog().items():
        line = f"sink {sink}: {pending} events pending (limit {dispatcher.limit})"
        if sink in over:
            failing.append(f"{line}: event outbox over its limit")
        else:
            passing.append(line)
    head = "not ready" if failing else "ok"
    return not failing, "\n".join([head, *failing, *passing])


def job_row(view: JobView) -> JobRow:
    state = view.state
    snap = state.snapshot if state else None
    return JobRow(
        job_id=view.job_id,
        name=snap.name if snap else "",
        phase=snap.phase if snap else "",
        secondary_phase=snap.secondary_phase if snap else "",
        up=view.health.up,
        last_success=view.health.last_success,
        restarts=sum(state.restarts.values()) if state else 0,
        last_reason=reason_line(state),
    )
