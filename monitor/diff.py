"""Transition rules: what changed between two observations of a job, as events.

Everything here is a pure function of its arguments (``now`` is passed in), so every rule is
tested from a table without a network, a clock or a database.

Event order within one poll is fixed: ``discovered`` | ``phase_changed``,
``secondary_phase_changed``, run events by record index (``run_started`` before ``run_ended`` of
the same record), ``nodes_changed``, ``task_failed``.

Running records are identified by their position in ``status.running_records``: ModelArts appends
a record per run. Their contents are not trusted to be consistent (``end_at`` may precede
``start_at``); they are reported as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from monitor.events import Event, new_event
from monitor.modelarts.schema import OTHER, RECOVER_STRATEGIES, JobSnapshot, bounded


@dataclass(frozen=True, slots=True)
class JobGone:
    """The API answered that the job does not exist (400 ``ModelArts.2775``)."""

    job_id: str


Observation = JobSnapshot | JobGone


@dataclass(frozen=True, slots=True)
class JobState:
    """What the monitor keeps per job between polls: the last snapshot plus its own bookkeeping.

    ``restarts`` is a floor for ``restarts_total``: the API's record list is recounted on every
    poll (so the value is right after a monitor restart), but a counter must never go down, even
    if the API one day returns a shorter list.
    """

    job_id: str
    snapshot: JobSnapshot | None = None
    phase_since: float | None = None
    restarts: Mapping[str, int] = field(default_factory=dict)
    gone: bool = False
    gone_since: float | None = None
    """When the API first said the job does not exist (for ``not_found_retention``)."""

    @property
    def job_name(self) -> str:
        return self.snapshot.name if self.snapshot else ""


def restart_counts(snapshot: JobSnapshot) -> dict[str, int]:
    """Records that ended with each recovery strategy; every strategy and ``other`` present."""
    counts = dict.fromkeys((*RECOVER_STRATEGIES, OTHER), 0)
    for record in snapshot.running_records:
        if record.end_recover:
            counts[bounded(record.end_recover, RECOVER_STRATEGIES)] += 1
    return counts


def observe(prev: JobState | None, cur: Observation, now: float) -> tuple[JobState, list[Event]]:
    """Fold one observation into the job's state; return the new state and what happened."""
    if isinstance(cur, JobGone):
        return _observe_gone(prev, cur, now)
    prev_snapshot = prev.snapshot if prev else None
    events = diff(prev_snapshot, cur, now)
    if prev_snapshot is None or prev is None or prev_snapshot.phase != cur.phase:
        phase_since = now
    else:
        phase_since = prev.phase_since if prev.phase_since is not None else now
    counts = restart_counts(cur)
    if prev:
        counts = {k: max(v, prev.restarts.get(k, 0)) for k, v in counts.items()}
    state = JobState(
        job_id=cur.job_id, snapshot=cur, phase_since=phase_since, restarts=counts, gone=False
    )
    return state, events


def _observe_gone(prev: JobState | None, cur: JobGone, now: float) -> tuple[JobState, list[Event]]:
    if prev is not None and prev.gone:
        return prev, []
    snapshot = prev.snapshot if prev else None
    event = new_event(
        "not_found",
        job_id=cur.job_id,
        job_name=snapshot.name if snapshot else "",
        key=(len(snapshot.running_records) if snapshot else -1,),
        data={"last_phase": snapshot.phase if snapshot else None},
        time=now,
    )
    base = prev or JobState(job_id=cur.job_id)
    return JobState(
        job_id=base.job_id,
        snapshot=base.snapshot,
        phase_since=base.phase_since,
        restarts=base.restarts,
        gone=True,
        gone_since=now,
    ), [event]


def diff(prev: JobSnapshot | None, cur: JobSnapshot, now: float) -> list[Event]:
    """Every transition from ``prev`` to ``cur``; ``prev is None`` means first sight."""

    def make(type_: str, key: tuple[object, ...], data: Mapping[str, object]) -> Event:
        return new_event(type_, job_id=cur.job_id, job_name=cur.name, key=key, data=data, time=now)

    if prev is None:
        return [
            make("discovered", (), {"phase": cur.phase, "secondary_phase": cur.secondary_phase})
        ]

    events: list[Event] = []
    runs = len(cur.running_records)
    # Phase pairs can repeat in a job's life (Running -> Pending -> Running after a
    # reschedule); the number of runs so far tells the occurrences apart.
    for type_, old, new in (
        ("phase_changed", prev.phase, cur.phase),
        ("secondary_phase_changed", prev.secondary_phase, cur.secondary_phase),
    ):
        if old != new:
            events.append(make(type_, (old, new, runs), {"from": old, "to": new}))

    for index, record in enumerate(cur.running_records):
        before = prev.running_records[index] if index < len(prev.running_records) else None
        if before is None:
            events.append(
                make(
                    "run_started",
                    (index,),
                    {
                        "index": index,
                        "start_at": record.start_at,
                        "start_type": record.start_type,
                    },
                )
            )
        if record.ended and (before is None or not before.ended):
            events.append(
                make(
                    "run_ended",
                    (index,),
                    {
                        "index": index,
                        "end_at": record.end_at,
                        "end_reason": record.end_reason,
                        "end_related_task": record.end_related_task,
                        "end_recover": record.end_recover,
                        "end_recover_before_downgrade": record.end_recover_before_downgrade,
                    },
                )
            )

    if prev.nodes is not None and cur.nodes is not None and prev.nodes != cur.nodes:
        events.append(
            make(
                "nodes_changed",
                (prev.nodes, cur.nodes, cur.nodes_at_ms),
                {"from": prev.nodes, "to": cur.nodes},
            )
        )

    failed_before = {(t.task, t.exit_code) for t in prev.task_statuses}
    for status in cur.task_statuses:
        if status.exit_code in (None, 0) or (status.task, status.exit_code) in failed_before:
            continue
        events.append(
            make(
                "task_failed",
                (status.task, status.exit_code, runs),
                {"task": status.task, "exit_code": status.exit_code, "message": status.message},
            )
        )
    return events
