"""What the daemon tells its readers: ``/readyz`` and the overview's rows, built from views.

Both are read from the job book's and the dispatcher's public views, never from their
attributes, so the web room learns nothing of how jobs are kept.
"""

from __future__ import annotations

from monitor.core.lifecycle import Rules, plan
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


def health_of(view: JobView, now: float | None = None, rules: Rules | None = None) -> str:
    """``gone`` (the API says the job does not exist), ``retired`` (the lifecycle rule stops
    polling it: terminal past ``poll.terminal_retention``; needs ``now`` and ``rules``),
    ``down`` (the last poll failed, or none was made yet) or ``up``."""
    state = view.state
    if state is not None and state.gone:
        return "gone"
    # Only a terminal job can retire: asking the rule just for those spares each of the
    # thousands of other jobs on an overview the making of a ``Plan``.
    terminal = state is not None and state.snapshot is not None and state.snapshot.terminal
    if terminal and now is not None and rules is not None:  # noqa: SIM102 - two reasons
        if plan(state, now, view.interval, rules).interval is None:
            return "retired"
    return "up" if view.health.up else "down"


def job_row(view: JobView, now: float | None = None, rules: Rules | None = None) -> JobRow:
    """The overview's row of a watched job; ``now`` and ``rules`` (the job's target's poll
    settings) tell a retired job from one that is merely finished."""
    state = view.state
    snap = state.snapshot if state else None
    health = health_of(view, now, rules)
    error = ""
    if health == "down":
        error = view.health.last_error or ("" if view.health.polled else "not polled yet")
    return JobRow(
        job_id=view.job_id,
        name=snap.name if snap else "",
        phase=snap.phase if snap else "",
        secondary_phase=snap.secondary_phase if snap else "",
        health=health,
        last_success=view.health.last_success,
        restarts=sum(state.restarts.values()) if state else 0,
        last_reason=reason_line(state),
        labels=view.labels,
        nodes=snap.nodes if snap else None,
        requested_nodes=snap.requested_nodes if snap else None,
        error=error,
    )
