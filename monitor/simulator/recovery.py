"""Fault-tolerance records of a closed run: ``running_records[].recover_records[]``.

The job-detail seed does not show them, but the official SDK (``RunningRecord.recover_records``,
``RecoverRecord``) does: every fault-tolerance policy applied when a run ended abnormally, with
``recover_start_at``/``recover_end_at`` (Unix **seconds**) and ``recover``, ``fault_scenario``,
``reason``, ``related_task``, ``recover_result`` (strings; the SDK documents e.g. ``recover``
``proc_restart | pod_reschedule | job_reschedule | ...``, ``fault_scenario`` ``chip_fault |
node_fault | job_failed | job_hanged | ...``, ``recover_result`` ``recovering | success | failed |
downgrade | terminated | quotaExceeded``; the simulator accepts any string, as the API may grow).

In a scenario they are listed under ``end_run.recover_records``; both timestamps are the time of
the step that closes the run. Pure: no clock, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from monitor.simulator.checks import Checker

__all__ = ["RECOVER_KEYS", "RecoverRecord", "parse_recover_records", "render_recover_record"]

RECOVER_KEYS = ("recover", "fault_scenario", "reason", "related_task", "recover_result")
"""In the order of the SDK's ``RecoverRecord``."""


@dataclass(frozen=True, slots=True)
class RecoverRecord:
    """One fault-tolerance policy applied at the end of a run; ``None`` fields are left out."""

    recover: str | None = None
    fault_scenario: str | None = None
    reason: str | None = None
    related_task: str | None = None
    recover_result: str | None = None


def parse_recover_records(c: Checker, raw: object, path: str) -> tuple[RecoverRecord, ...]:
    """``end_run.recover_records``: a list of mappings of ``RECOVER_KEYS`` (all optional)."""
    out: list[RecoverRecord] = []
    for i, item in enumerate(c.sequence(raw, path) or []):
        p = f"{path}[{i}]"
        m = c.mapping(item, p, RECOVER_KEYS, required=None)
        if m is not None:
            out.append(
                RecoverRecord(*(c.get(m, k, p, c.string, default=None) for k in RECOVER_KEYS))
            )
    return tuple(out)


def render_recover_record(record: RecoverRecord, at: int) -> dict[str, Any]:
    """The API shape; ``at`` (Unix seconds) is both the start and the end of the recovery."""
    out: dict[str, Any] = {"recover_start_at": at, "recover_end_at": at}
    for key in RECOVER_KEYS:
        value = getattr(record, key)
        if value is not None:
            out[key] = value
    return out
