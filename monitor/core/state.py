"""What the monitor keeps per job between polls, and the versioned form in which it is stored.

The stored form is explicit: every key is written and read by name here (``encode_state``,
``decode_state``), never ``asdict()`` of whatever the dataclasses are today, so renaming a field
changes nothing on disk, and a database written by an older monitor still loads. Each row says
its ``format``; a change of the stored form is a new format with an upgrade step.

- format 1: ``asdict()`` of the dataclasses with no version key (rows written before the form
  was versioned, schema version 3 and older); read by upgrading to 2.
- format 2: the same names, explicit, with ``"format": 2``.
- format 3: adds ``occurrences`` (first event id -> count); read from 2 with none counted.
- format 4: the snapshot adds ``flavor_name``, ``pool_name``, ``retry_limit``,
  ``accelerator_type`` and ``accelerators``, and running records ``xpu_start_at``; read from 3
  with them unknown (empty, ``None``) until the next poll fills them in.
- format 5: the snapshot adds ``roles`` (a heterogeneous job's ``tasks[]``: role and flavour);
  read from 4 with none known until the next poll.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from monitor.core.events import Occurrences
from monitor.core.hang import HangState
from monitor.core.job import JobSnapshot, RecoverRecord, RunningRecord, TaskRole, TaskStatus


@dataclass(frozen=True, slots=True)
class JobState:
    """What the monitor keeps per job between polls: the last snapshot plus its own bookkeeping.

    ``restarts`` is a floor for ``restarts_total``: the API's record list is recounted on every
    poll (so the value is right after a monitor restart), but a counter must never go down, even
    if the API one day returns a shorter list. ``recoveries`` (strategy -> result -> count) is the
    same kind of floor for ``recoveries_total``.

    ``occurrences`` counts the transitions that look alike in the API's data (``diff.LOOK_ALIKE``),
    by the id of their first occurrence, so the n-th gets its own id. It is committed with the
    rest of the state, so a re-detected transition counts to the same n and keeps its id.

    ``last_reason`` is the newest ModelArts event message (``level``, ``time``, ``message``)
    fetched for a failure transition of this job; the job book sets it, ``observe`` carries it.
    """

    job_id: str
    snapshot: JobSnapshot | None = None
    phase_since: float | None = None
    restarts: Mapping[str, int] = field(default_factory=dict)
    recoveries: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    occurrences: Occurrences = field(default_factory=dict)
    last_reason: Mapping[str, str] = field(default_factory=dict)
    gone: bool = False
    gone_since: float | None = None
    """When the API first said the job does not exist (for ``not_found_retention``)."""
    hang: HangState = field(default_factory=HangState)
    """The hung-job rule's bookkeeping (``hang.observe_hang``); only usage sweeps change it."""

    @property
    def job_name(self) -> str:
        return self.snapshot.name if self.snapshot else ""

    @property
    def running(self) -> bool:
        """The API last said the job is Running (usage is swept, hangs can happen)."""
        return self.snapshot is not None and not self.gone and self.snapshot.phase == "Running"


STATE_FORMAT = 5


class StoredFormError(ValueError):
    """A stored state this monitor cannot read (a newer format, or a damaged row)."""


def encode_state(state: JobState) -> dict[str, Any]:
    """The stored form (format ``STATE_FORMAT``) of a job's state, JSON-ready."""
    snap = state.snapshot
    return {
        "format": STATE_FORMAT,
        "job_id": state.job_id,
        "snapshot": None if snap is None else _encode_snapshot(snap),
        "phase_since": state.phase_since,
        "restarts": dict(state.restarts),
        "recoveries": {k: dict(v) for k, v in state.recoveries.items()},
        "occurrences": dict(state.occurrences),
        "last_reason": dict(state.last_reason),
        "gone": state.gone,
        "gone_since": state.gone_since,
        "hang": {
            "idle_since": state.hang.idle_since,
            "suspected_at": state.hang.suspected_at,
            "episode": state.hang.episode,
        },
    }


def decode_state(doc: object) -> JobState:
    """A stored state of any known format; ``StoredFormError`` says why one cannot be read."""
    if not isinstance(doc, dict):
        raise StoredFormError(f"expected an object, got {type(doc).__name__}")
    version = doc.get("format", 1)
    if not isinstance(version, int) or not 1 <= version <= STATE_FORMAT:
        raise StoredFormError(
            f"format {version!r} is not one this monitor reads (1 to {STATE_FORMAT})"
        )
    while version < STATE_FORMAT:
        doc = _UPGRADES[version](doc)
        version += 1
    try:
        return _decode(doc)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StoredFormError(f"{type(exc).__name__}: {exc}") from exc


_UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    1: lambda doc: {**doc, "format": 2},  # same names; what 1 lacked has defaults in 2
    2: lambda doc: {**doc, "format": 3, "occurrences": {}},  # nothing was counted before 3
    3: lambda doc: {**doc, "format": 4},  # the new snapshot names have defaults: unknown yet
    4: lambda doc: {**doc, "format": 5},  # no roles until the next poll: their default
}
"""``_UPGRADES[n]`` takes a stored state from format n to n+1."""


def _encode_snapshot(s: JobSnapshot) -> dict[str, Any]:
    return {
        **{name: getattr(s, name) for name in _SNAPSHOT_SCALARS},
        "tasks": list(s.tasks),
        "task_statuses": [
            {"task": t.task, "exit_code": t.exit_code, "message": t.message}
            for t in s.task_statuses
        ],
        "running_records": [
            {
                **{name: getattr(r, name) for name in _RECORD_SCALARS},
                "recover_records": [
                    {name: getattr(x, name) for name in _RECOVER_SCALARS} for x in r.recover_records
                ],
            }
            for r in s.running_records
        ],
        "roles": [{name: getattr(r, name) for name in _ROLE_SCALARS} for r in s.roles],
    }


def _decode(doc: Mapping[str, Any]) -> JobState:
    snap = doc.get("snapshot")
    hang = doc.get("hang") or {}
    return JobState(
        job_id=str(doc["job_id"]),
        snapshot=None if snap is None else _decode_snapshot(snap),
        phase_since=doc.get("phase_since"),
        restarts={str(k): int(v) for k, v in (doc.get("restarts") or {}).items()},
        recoveries={
            str(k): {str(r): int(n) for r, n in v.items()}
            for k, v in (doc.get("recoveries") or {}).items()
        },
        occurrences={str(k): _occurrence(v) for k, v in doc["occurrences"].items()},
        last_reason={str(k): str(v) for k, v in (doc.get("last_reason") or {}).items()},
        gone=bool(doc.get("gone")),
        gone_since=doc.get("gone_since"),
        hang=HangState(
            idle_since=hang.get("idle_since"),
            suspected_at=hang.get("suspected_at"),
            episode=int(hang.get("episode", 0)),
        ),
    )


def _occurrence(value: object) -> int:
    """A count of ``occurrences``: a whole number from 1 (a transition had at least once)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"occurrences: expected a count of at least 1, got {value!r}")
    return value


def _decode_snapshot(s: Mapping[str, Any]) -> JobSnapshot:
    return JobSnapshot(
        job_id=str(s["job_id"]),
        **{name: s[name] for name in _SNAPSHOT_SCALARS if name != "job_id" and name in s},
        tasks=tuple(str(t) for t in s.get("tasks", ())),
        task_statuses=tuple(
            TaskStatus(task=t["task"], exit_code=t.get("exit_code"), message=t.get("message", ""))
            for t in s.get("task_statuses", ())
        ),
        running_records=tuple(
            RunningRecord(
                **{name: r[name] for name in _RECORD_SCALARS if name in r},
                recover_records=tuple(
                    RecoverRecord(**{name: x[name] for name in _RECOVER_SCALARS if name in x})
                    for x in r.get("recover_records", ())
                ),
            )
            for r in s.get("running_records", ())
        ),
        roles=tuple(
            TaskRole(**{name: r[name] for name in _ROLE_SCALARS if name in r})
            for r in s.get("roles", ())
        ),
    )


# The stored names of the scalar fields. They are the format: a field renamed in the
# dataclasses keeps its stored name here (``name`` -> ``getattr(s, "new_name")``).
_SNAPSHOT_SCALARS = (
    "job_id",
    "name",
    "kind",
    "workspace_id",
    "user_name",
    "create_time_ms",
    "engine_name",
    "engine_version",
    "flavor_id",
    "flavor_name",
    "flavor_type",
    "pool_id",
    "pool_name",
    "requested_nodes",
    "retry_limit",
    "accelerator_type",
    "accelerators",
    "phase",
    "secondary_phase",
    "duration_ms",
    "start_time_ms",
    "nodes",
    "nodes_at_ms",
)
_RECORD_SCALARS = (
    "start_at",
    "end_at",
    "xpu_start_at",
    "start_type",
    "end_reason",
    "end_related_task",
    "end_recover",
    "end_recover_before_downgrade",
)
_RECOVER_SCALARS = (
    "recover",
    "recover_result",
    "fault_scenario",
    "reason",
    "related_task",
    "recover_start_at",
    "recover_end_at",
)
_ROLE_SCALARS = (
    "role",
    "flavor_id",
    "flavor_name",
    "flavor_type",
    "pool_id",
    "accelerator_type",
    "accelerators_per_node",
)
