"""What the monitor keeps per job between polls, and the form in which it is stored."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from monitor.core.hang import HangState
from monitor.core.job import JobSnapshot, RecoverRecord, RunningRecord, TaskStatus


@dataclass(frozen=True, slots=True)
class JobState:
    """What the monitor keeps per job between polls: the last snapshot plus its own bookkeeping.

    ``restarts`` is a floor for ``restarts_total``: the API's record list is recounted on every
    poll (so the value is right after a monitor restart), but a counter must never go down, even
    if the API one day returns a shorter list. ``recoveries`` (strategy -> result -> count) is the
    same kind of floor for ``recoveries_total``.

    ``last_reason`` is the newest ModelArts event message (``level``, ``time``, ``message``)
    fetched for a failure transition of this job; the poller sets it, ``observe`` carries it.
    """

    job_id: str
    snapshot: JobSnapshot | None = None
    phase_since: float | None = None
    restarts: Mapping[str, int] = field(default_factory=dict)
    recoveries: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    last_reason: Mapping[str, str] = field(default_factory=dict)
    gone: bool = False
    gone_since: float | None = None
    """When the API first said the job does not exist (for ``not_found_retention``)."""
    hang: HangState = field(default_factory=HangState)
    """The hung-job rule's bookkeeping (``usage.observe_hang``); only usage polling changes it."""

    @property
    def job_name(self) -> str:
        return self.snapshot.name if self.snapshot else ""

    @property
    def running(self) -> bool:
        """The API last said the job is Running (usage is swept, hangs can happen)."""
        return self.snapshot is not None and not self.gone and self.snapshot.phase == "Running"


def state_to_dict(state: JobState) -> dict[str, Any]:
    return {
        "job_id": state.job_id,
        "snapshot": asdict(state.snapshot) if state.snapshot else None,
        "phase_since": state.phase_since,
        "restarts": dict(state.restarts),
        "recoveries": {k: dict(v) for k, v in state.recoveries.items()},
        "last_reason": dict(state.last_reason),
        "gone": state.gone,
        "gone_since": state.gone_since,
        "hang": asdict(state.hang),
    }


def state_from_dict(doc: Mapping[str, Any]) -> JobState:
    snap = doc.get("snapshot")
    snapshot = None
    if snap is not None:
        snapshot = JobSnapshot(
            **{
                **snap,
                "tasks": tuple(snap["tasks"]),
                "task_statuses": tuple(TaskStatus(**t) for t in snap["task_statuses"]),
                "running_records": tuple(
                    RunningRecord(
                        **{
                            **r,
                            "recover_records": tuple(
                                RecoverRecord(**x) for x in r.get("recover_records", ())
                            ),
                        }
                    )
                    for r in snap["running_records"]
                ),
            }
        )
    return JobState(
        job_id=doc["job_id"],
        snapshot=snapshot,
        phase_since=doc.get("phase_since"),
        restarts=dict(doc.get("restarts") or {}),
        recoveries={k: dict(v) for k, v in (doc.get("recoveries") or {}).items()},
        last_reason=dict(doc.get("last_reason") or {}),
        gone=bool(doc.get("gone")),
        gone_since=doc.get("gone_since"),
        hang=HangState(**(doc.get("hang") or {})),
    )
