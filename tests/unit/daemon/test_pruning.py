"""daemon/pruning.py: rounds on an injected clock over a real state database: what retention and
the row bound remove, one log line per round that removed anything, and a round that fails does
not stop the next."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from monitor.config.settings import JournalSettings
from monitor.core.events import new_event, to_cloudevent
from monitor.core.state import JobState
from monitor.daemon.pruning import JournalPruner
from monitor.store.database import Store
from monitor.store.journal import Pruned
from tests.conftest import SEED_ID, wait_for

NOW = 1_800_000_000.0
DAY = 86400.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def event(n: int, at: float) -> dict[str, Any]:
    made = new_event(
        "phase_changed",
        job_id=SEED_ID,
        job_name="bert",
        key=(n,),
        data={"from": "Pending", "to": "Running"},
        time=at,
    )
    return to_cloudevent(made, "proj")


def delivered(store: Store, events: list[dict[str, Any]], sinks: list[str]) -> None:
    store.commit(JobState(job_id=SEED_ID), events, NOW)
    for sink in sinks:
        store.ack(sink, store.pending(sink)[-1][0], sinks)


async def test_a_round_prunes_what_the_clock_has_aged_past_retention_and_logs_it_once(
    store: Store,
) -> None:
    delivered(store, [event(1, NOW), event(2, NOW + DAY)], ["log"])
    clock = Clock(NOW + 2 * DAY)
    pruner = JournalPruner(store, JournalSettings(retention="7d"), ["log"], clock=clock)
    with capture_logs() as logs:
        assert await pruner.prune_once() == Pruned()
        clock.now = NOW + 7 * DAY + 1
        assert await pruner.prune_once() == Pruned(expired=1)
    assert [e["id"] for e in store.journal()] == [event(2, NOW + DAY)["id"]]
    assert [(entry["event"], entry["expired"], entry["over_limit"]) for entry in logs] == [
        ("journal_pruned", 1, 0)
    ]


async def test_a_round_keeps_the_journal_to_max_events_and_no_more_than_its_batch(
    store: Store,
) -> None:
    delivered(store, [event(n, NOW) for n in range(5)], ["log", "file"])
    settings = JournalSettings(max_events=1)
    pruner = JournalPruner(store, settings, ["log", "file"], clock=Clock(NOW), batch=3)
    assert await pruner.prune_once() == Pruned(over_limit=3)
    assert await pruner.prune_once() == Pruned(over_limit=1)
    assert [e["id"] for e in store.journal()] == [event(4, NOW)["id"]]


async def test_a_failing_round_is_logged_and_the_rounds_go_on(tmp_path: Path) -> None:
    Store(tmp_path / "state.db").close()
    readonly = Store(tmp_path / "state.db", readonly=True)  # every DELETE fails
    pruner = JournalPruner(readonly, JournalSettings(), ["log"], clock=Clock(NOW))
    try:
        with capture_logs() as logs:
            task = asyncio.create_task(pruner.run(interval=0))
            await wait_for(lambda: len(logs) >= 2)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        readonly.close()
    assert {entry["event"] for entry in logs} == {"journal_prune_failed"}
    assert "cannot prune the journal" in logs[0]["error"]
