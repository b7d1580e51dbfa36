"""Events as the delivery tests hand them to sinks: ordinary ones and a poisoned one."""

from __future__ import annotations

from typing import Any

from monitor.core.events import new_event, to_cloudevent
from tests.conftest import SEED_ID

NOW = 1_800_000_000.0


def cloud(n: int, job_id: str = SEED_ID) -> dict[str, Any]:
    event = new_event(
        "phase_changed",
        job_id=job_id,
        job_name="bert-pretrain",
        key=("Pending", "Running", n),
        data={"from": "Pending", "to": "Running"},
        time=NOW + n,
    )
    return to_cloudevent(event, "proj")


def poisoned(n: int) -> dict[str, Any]:
    """A task failure whose message holds a lone surrogate (what an older monitor's outbox
    could hold): JSON-escaped in the outbox, but no UTF-8 writer can encode it."""
    event = new_event(
        "task_failed",
        job_id=SEED_ID,
        job_name="bert-pretrain",
        key=("worker-0", n),
        data={"task": "worker-0", "exit_code": 1, "message": "bad \udce9 byte"},
        time=NOW + n,
    )
    return to_cloudevent(event, "proj")
