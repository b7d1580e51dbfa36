"""The ``Event`` type, its deterministic id and its CloudEvents 1.0 structured form.

An event's id is a hash of what the event is *about* (job, type and the transition or record it
describes), never of when or by whom it was seen. The same transition therefore gets the same id
from a replayed outbox, from a restarted monitor that re-detects it, or from a second replica
watching the same job, and a consumer that de-duplicates on ``id`` pages once.

Some transitions look alike in everything the API says about them: a task failing twice with the
same exit code before the next running record appears, or the same phase pair twice within one
run. The job's state counts those (``Occurrences``, kept with the job's committed state), and the
n-th occurrence's key ends in ``n``. The first occurrence keeps the id it has always had, so ids
consumers already hold do not change; and because the count comes from committed state, a replay
(the same poll re-observed after a commit that failed, or re-detected after a restart) counts to
the same ``n`` and gets the same id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

TYPE_PREFIX = "modelarts.job."
EVENT_TYPES: tuple[str, ...] = (
    "discovered",
    "phase_changed",
    "secondary_phase_changed",
    "run_started",
    "run_ended",
    "nodes_changed",
    "task_failed",
    "not_found",
    "hang_suspected",
    "hang_cleared",
)
"""Short names; the CloudEvents ``type`` is ``TYPE_PREFIX + name``."""


@dataclass(frozen=True, slots=True)
class Event:
    """One transition of one job. ``data`` holds the type's own fields (see DESIGN.md)."""

    id: str
    type: str
    job_id: str
    job_name: str
    time: float
    """Unix seconds at which the monitor observed the transition."""
    data: Mapping[str, Any]
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def cloud_type(self) -> str:
        return TYPE_PREFIX + self.type


Occurrences = Mapping[str, int]
"""A job's count of look-alike transitions: the id a transition gets on its first occurrence ->
how many times the job has had it so far."""


def event_id(job_id: str, type_: str, key: tuple[object, ...], occurrence: int = 1) -> str:
    """Deterministic id: 32 hex digits of SHA-256 over job, type and the transition key, and the
    occurrence number from the second occurrence on (the first keeps its historical id)."""
    parts = (*key, occurrence) if occurrence > 1 else key
    material = "\x1f".join((job_id, type_, *map(str, parts)))
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def numbered_id(
    seen: Occurrences, job_id: str, type_: str, key: tuple[object, ...]
) -> tuple[str, dict[str, int]]:
    """The id of the occurrence of this transition the job is having now (``event_id`` with
    the number ``seen`` gives it), and the counts with it included. The key's own id is both
    the counter's key and the first occurrence's id, so it is hashed once for both: every
    look-alike event of a poll used to hash it twice. Pure: ``seen`` is not changed."""
    first = event_id(job_id, type_, key)
    occurrence = seen.get(first, 0) + 1
    counts = {**seen, first: occurrence}
    return (first if occurrence == 1 else event_id(job_id, type_, key, occurrence)), counts


def new_event(
    type_: str,
    *,
    job_id: str,
    job_name: str,
    key: tuple[object, ...],
    data: Mapping[str, Any],
    time: float,
    occurrence: int = 1,
) -> Event:
    """The event of a transition, its id computed from its key (``event_id``)."""
    return event_with_id(
        event_id(job_id, type_, key, occurrence),
        type_,
        job_id=job_id,
        job_name=job_name,
        data=data,
        time=time,
    )


def event_with_id(
    id_: str, type_: str, *, job_id: str, job_name: str, data: Mapping[str, Any], time: float
) -> Event:
    """The event of a transition whose id the caller computed already from its key
    (``event_id`` or ``numbered_id``), so the key is not hashed a second time."""
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type_!r}")
    return Event(id=id_, type=type_, job_id=job_id, job_name=job_name, time=time, data=dict(data))


def rfc3339(ts: float) -> str:
    """UTC, second precision unless there is a fraction, ``Z`` suffix."""
    dt = datetime.fromtimestamp(ts, tz=UTC)
    text = dt.isoformat(timespec="milliseconds" if dt.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def to_cloudevent(
    event: Event, project_id: str, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The structured-mode JSON object of DESIGN.md's event contract. ``labels`` (the job's)
    stand in for the event's own when given, so a caller labelling a batch of events need not
    copy each one (``dataclasses.replace``) just to convert it."""
    return {
        "specversion": "1.0",
        "id": event.id,
        "source": f"modelarts-monitor/{project_id}",
        "type": event.cloud_type,
        "subject": event.job_id,
        "time": rfc3339(event.time),
        "datacontenttype": "application/json",
        "data": {
            "job_id": event.job_id,
            "job_name": event.job_name,
            **event.data,
            "labels": dict(event.labels if labels is None else labels),
        },
    }
