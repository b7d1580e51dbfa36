"""Transition rules: what changed between two observations of a job, as events.

Everything here is a pure function of its arguments (``now`` is passed in), so every rule is
tested from a table without a network, a clock or a database.

Event order within one poll is fixed: ``discovered`` | ``phase_changed``,
``secondary_phase_changed``, run events by record index (``run_started`` before ``run_ended`` of
the same record), ``nodes_changed``, ``task_failed``.

Running records are identified by their position in ``status.running_records``: ModelArts appends
a record per run. Their contents are not trusted to be consistent (``end_at`` may precede
``start_at``); they are reported as they are.

An event's key holds what the API's data says about the transition (``events.py``). Where that
cannot tell two transitions apart (``LOOK_ALIKE``), ``observe`` numbers them from the job's
committed ``occurrences``, so the second gets its own id and a replay of either gets the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from monitor.core.events import Event, Occurrences, event_id, event_with_id, numbered_id
from monitor.core.job import (
    OTHER,
    RECOVER_RECORD_STRATEGIES,
    RECOVER_RESULTS,
    RECOVER_STRATEGIES,
    RECOVERING,
    JobGone,
    JobSnapshot,
    Observation,
    RecoverRecord,
    bounded,
)
from monitor.core.state import JobState
from monitor.core.text import clip

MAX_RECOVER_RECORDS = 10
"""Most ``recover_records`` a ``run_ended`` event carries (the newest, by list position)."""


def restart_counts(snapshot: JobSnapshot) -> dict[str, int]:
    """Records that ended with each recovery strategy; every strategy and ``other`` present."""
    counts = dict.fromkeys((*RECOVER_STRATEGIES, OTHER), 0)
    for record in snapshot.running_records:
        if record.end_recover:
            counts[bounded(record.end_recover, RECOVER_STRATEGIES)] += 1
    return counts


def recovery_counts(snapshot: JobSnapshot) -> dict[str, dict[str, int]]:
    """Recoveries with an outcome, by strategy and result, over every record's
    ``recover_records``; only combinations that occur. A ``recovering`` (or empty) result is
    not counted yet: counting it would count the same recovery again once its outcome is known.
    """
    counts: dict[str, dict[str, int]] = {}
    for record in snapshot.running_records:
        for rec in record.recover_records:
            if not rec.recover_result or rec.recover_result == RECOVERING:
                continue
            by_result = counts.setdefault(bounded(rec.recover, RECOVER_RECORD_STRATEGIES), {})
            result = bounded(rec.recover_result, RECOVER_RESULTS)
            by_result[result] = by_result.get(result, 0) + 1
    return counts


def _floor(
    cur: Mapping[str, Mapping[str, int]], prev: Mapping[str, Mapping[str, int]]
) -> dict[str, dict[str, int]]:
    """Per (strategy, result), the larger of the two counts: a combination once seen stays."""
    out: dict[str, dict[str, int]] = {}
    for recover in cur.keys() | prev.keys():
        now, before = cur.get(recover, {}), prev.get(recover, {})
        out[recover] = {k: max(now.get(k, 0), before.get(k, 0)) for k in now.keys() | before.keys()}
    return out


def recover_details(records: tuple[RecoverRecord, ...]) -> list[dict[str, object]]:
    """A run's recover records for its ``run_ended`` event: the newest ``MAX_RECOVER_RECORDS``,
    free text clipped to ``text.TEXT_LIMIT`` (the edge clipped it already; a record's
    fields are bounded again here because this list is what an event carries)."""
    return [
        {
            "recover": clip(r.recover),
            "recover_result": clip(r.recover_result),
            "fault_scenario": clip(r.fault_scenario),
            "reason": clip(r.reason),
            "related_task": clip(r.related_task),
            "recover_start_at": r.recover_start_at,
            "recover_end_at": r.recover_end_at,
        }
        for r in records[-MAX_RECOVER_RECORDS:]
    ]


LOOK_ALIKE = frozenset(
    {"phase_changed", "secondary_phase_changed", "nodes_changed", "task_failed", "not_found"}
)
"""The types whose key can recur for a new transition, because nothing the API says tells the
two apart: the same phase pair twice within one run, the same task failing twice with the same
exit code before the next running record, a job gone, back and gone again with as many records,
a node count that changes back and forth while its newest point keeps its timestamp.
``observe`` numbers their occurrences from the job's state (``JobState.occurrences``). Not the
run events: a record's index is its identity, so a record missing from one answer and back in
the next is the same run and must not page again; nor ``discovered``, which a state has once."""

Draft = tuple[str, tuple[object, ...], Mapping[str, object]]
"""An event before it has an id: type, transition key, data."""


def observe(prev: JobState | None, cur: Observation, now: float) -> tuple[JobState, list[Event]]:
    """Fold one observation into the job's state; return the new state and what happened."""
    if isinstance(cur, JobGone):
        return _observe_gone(prev, cur, now)
    prev_snapshot = prev.snapshot if prev else None
    seen = prev.occurrences if prev else {}
    events, occurrences = _events(_drafts(prev_snapshot, cur), cur.job_id, cur.name, now, seen)
    if prev_snapshot is None or prev is None or prev_snapshot.phase != cur.phase:
        phase_since = now
    else:
        phase_since = prev.phase_since if prev.phase_since is not None else now
    counts = restart_counts(cur)
    recoveries = recovery_counts(cur)
    if prev:
        counts = {k: max(v, prev.restarts.get(k, 0)) for k, v in counts.items()}
        recoveries = _floor(recoveries, prev.recoveries)
    # replace(), not a new JobState: bookkeeping this function does not own is carried over.
    state = replace(
        prev or JobState(job_id=cur.job_id),
        snapshot=cur,
        phase_since=phase_since,
        restarts=counts,
        recoveries=recoveries,
        occurrences=occurrences,
        gone=False,
        gone_since=None,
    )
    return state, events


def _observe_gone(prev: JobState | None, cur: JobGone, now: float) -> tuple[JobState, list[Event]]:
    if prev is not None and prev.gone:
        return prev, []
    state = prev or JobState(job_id=cur.job_id)
    snapshot = state.snapshot
    key = (len(snapshot.running_records) if snapshot else -1,)
    events, occurrences = _events(
        [("not_found", key, {"last_phase": snapshot.phase if snapshot else None})],
        cur.job_id,
        state.job_name,
        now,
        state.occurrences,
    )
    return replace(state, gone=True, gone_since=now, occurrences=occurrences), events


def diff(prev: JobSnapshot | None, cur: JobSnapshot, now: float) -> list[Event]:
    """Every transition from ``prev`` to ``cur`` (``prev is None``: first sight), with the ids
    of first occurrences; ``observe`` numbers look-alikes from what the job has had before."""
    return _events(_drafts(prev, cur), cur.job_id, cur.name, now, {})[0]


def _events(
    drafts: list[Draft], job_id: str, job_name: str, now: float, seen: Occurrences
) -> tuple[list[Event], Occurrences]:
    """The drafts as events with their ids, and the job's occurrence counts with them."""
    events: list[Event] = []
    for type_, key, data in drafts:
        if type_ in LOOK_ALIKE:
            id_, seen = numbered_id(seen, job_id, type_, key)
        else:
            id_ = event_id(job_id, type_, key)
        events.append(
            event_with_id(id_, type_, job_id=job_id, job_name=job_name, data=data, time=now)
        )
    return events, seen


def _drafts(prev: JobSnapshot | None, cur: JobSnapshot) -> list[Draft]:
    """The transition rules: what changed from ``prev`` to ``cur``, in the module's order."""
    if prev is None:
        return [("discovered", (), {"phase": cur.phase, "secondary_phase": cur.secondary_phase})]

    drafts: list[Draft] = []
    runs = len(cur.running_records)
    # Phase pairs can repeat in a job's life (Running -> Pending -> Running after a
    # reschedule); the number of runs so far tells most occurrences apart, and the occurrence
    # count (LOOK_ALIKE) the rest.
    for type_, old, new in (
        ("phase_changed", prev.phase, cur.phase),
        ("secondary_phase_changed", prev.secondary_phase, cur.secondary_phase),
    ):
        if old != new:
            drafts.append((type_, (old, new, runs), {"from": old, "to": new}))

    for index, record in enumerate(cur.running_records):
        before = prev.running_records[index] if index < len(prev.running_records) else None
        if before is None:
            drafts.append(
                (
                    "run_started",
                    (index,),
                    {
                        "index": index,
                        "start_at": record.start_at,
                        "xpu_start_at": record.xpu_start_at,
                        "start_type": record.start_type,
                    },
                )
            )
        if record.ended and (before is None or not before.ended):
            drafts.append(
                (
                    "run_ended",
                    (index,),
                    {
                        "index": index,
                        "end_at": record.end_at,
                        "end_reason": record.end_reason,
                        "end_related_task": record.end_related_task,
                        "end_recover": record.end_recover,
                        "end_recover_before_downgrade": record.end_recover_before_downgrade,
                        "recover_records": recover_details(record.recover_records),
                    },
                )
            )

    if prev.nodes is not None and cur.nodes is not None and prev.nodes != cur.nodes:
        drafts.append(
            (
                "nodes_changed",
                (prev.nodes, cur.nodes, cur.nodes_at_ms),
                {"from": prev.nodes, "to": cur.nodes},
            )
        )

    # A (task, exit code) pair is one failure however often one answer lists it: counted as a
    # look-alike, a repeated entry would page twice.
    failed = {(t.task, t.exit_code) for t in prev.task_statuses}
    for status in cur.task_statuses:
        if status.exit_code in (None, 0) or (status.task, status.exit_code) in failed:
            continue
        failed.add((status.task, status.exit_code))
        drafts.append(
            (
                "task_failed",
                (status.task, status.exit_code, runs),
                {"task": status.task, "exit_code": status.exit_code, "message": status.message},
            )
        )
    return drafts
