"""store/journal.py: every committed event stays readable after delivery, filtered as ``events``
and the job pages ask; pruning keeps what a sink still owes; version 7 journals the outbox."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from monitor.core.events import new_event, to_cloudevent
from monitor.core.state import JobState
from monitor.errors import StateError
from monitor.store.database import Store
from monitor.store.journal import Pruned
from monitor.store.migrations import MIGRATIONS
from tests.conftest import SEED_ID

NOW = 1_800_000_000.0
OTHER_ID = "7c0d2f7e-0000-4000-8000-000000000002"
DAY = 86400.0
SINKS = ["log", "file"]


def event(
    n: int, job_id: str = SEED_ID, kind: str = "phase_changed", at: float = NOW
) -> dict[str, Any]:
    """A CloudEvent with an id of its own per ``n``, observed at ``at + n``."""
    data = {"from": "Pending", "to": "Running"} if kind == "phase_changed" else {"task": "w"}
    made = new_event(kind, job_id=job_id, job_name="train-a", key=(n,), data=data, time=at + n)
    return to_cloudevent(made, "proj")


def deliver_all(store: Store, sinks: list[str] = SINKS) -> None:
    """Every sink takes everything in the outbox."""
    for sink in sinks:
        pending = store.pending(sink, limit=10_000)
        if pending:
            store.ack(sink, pending[-1][0], sinks)


def prune(
    store: Store,
    now: float,
    *,
    retention: float = 7 * DAY,
    max_events: int = 1000,
    sinks: list[str] = SINKS,
    batch: int = 1000,
) -> Pruned:
    return store.prune_journal(
        now=now, retention=retention, max_events=max_events, sinks=sinks, batch=batch
    )


def ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["id"] for e in events]


def test_delivered_events_stay_in_the_journal_as_committed_after_the_outbox_drops_them(
    db_path: Path,
) -> None:
    docs = [event(n) for n in range(3)]
    store = Store(db_path)
    store.commit(JobState(job_id=SEED_ID), docs[:2], NOW)
    store.commit(JobState(job_id=SEED_ID), docs[2:], NOW + 1)
    deliver_all(store)
    assert store.outbox_size() == 0
    store.close()
    reopened = Store(db_path)
    try:
        assert reopened.journal() == docs
    finally:
        reopened.close()


def test_a_failed_commit_journals_none_of_its_events(store: Store) -> None:
    broken = {**event(2), "id": ["not", "bindable"]}
    with pytest.raises(StateError, match="cannot commit"):
        store.commit(JobState(job_id=SEED_ID), [event(1), broken], NOW)
    assert store.journal() == []


def test_a_re_detected_event_is_journaled_once(store: Store) -> None:
    store.commit(JobState(job_id=SEED_ID), [event(1)], NOW)
    deliver_all(store)
    store.commit(JobState(job_id=SEED_ID), [event(1), event(2)], NOW + 1)
    assert ids(store.journal()) == ids([event(1), event(2)])


def test_the_journal_filters_by_job_type_time_and_target_and_pages_from_either_end(
    store: Store,
) -> None:
    a1, a2 = event(1), event(2, kind="task_failed")
    b1, b2 = event(3, OTHER_ID), event(4, OTHER_ID, kind="task_failed")
    store.commit(JobState(job_id=SEED_ID), [a1, a2], NOW, target="beijing")
    store.commit(JobState(job_id=OTHER_ID), [b1, b2], NOW, target="shanghai")

    assert ids(store.journal(job_ids=[SEED_ID])) == ids([a1, a2])
    assert ids(store.journal(types=["task_failed"])) == ids([a2, b2])
    assert ids(store.journal(types=["modelarts.job.task_failed"])) == ids([a2, b2])
    assert ids(store.journal(since=NOW + 3)) == ids([b1, b2])
    assert ids(store.journal(targets=["shanghai"])) == ids([b1, b2])
    assert ids(store.journal(job_ids=[SEED_ID, OTHER_ID], types=["phase_changed"])) == ids([a1, b1])
    assert ids(store.journal(limit=2)) == ids([a1, a2])
    assert ids(store.journal(limit=2, newest_first=True)) == ids([b2, b1])
    assert len(store.journal(limit=0)) == 4


def test_the_journal_is_readable_read_only_beside_a_live_writer(db_path: Path) -> None:
    writer = Store(db_path)
    try:
        writer.commit(JobState(job_id=SEED_ID), [event(1)], NOW)
        reader = Store(db_path, readonly=True)
        try:
            assert ids(reader.journal()) == ids([event(1)])
            writer.commit(JobState(job_id=SEED_ID), [event(2)], NOW + 1)
            assert ids(reader.journal()) == ids([event(1), event(2)])
        finally:
            reader.close()
    finally:
        writer.close()


def test_retention_prunes_delivered_events_older_than_it_and_keeps_younger_ones(
    store: Store,
) -> None:
    old, young = event(0, at=NOW - 8 * DAY), event(1)
    store.commit(JobState(job_id=SEED_ID), [old, young], NOW)
    deliver_all(store)
    assert prune(store, NOW) == Pruned(expired=1, over_limit=0)
    assert ids(store.journal()) == ids([young])
    assert prune(store, NOW + 7 * DAY + 2) == Pruned(expired=1)
    assert store.journal() == []


def test_an_event_a_sink_has_not_taken_is_never_pruned_however_old(store: Store) -> None:
    docs = [event(n, at=NOW - 30 * DAY) for n in range(3)]
    store.commit(JobState(job_id=SEED_ID), docs, NOW)
    first = store.pending("log")[0][0]
    store.ack("log", store.pending("log")[-1][0], SINKS)  # log took all three
    store.ack("file", first, SINKS)  # file only the first
    assert prune(store, NOW, max_events=1) == Pruned(expired=1)
    assert ids(store.journal()) == ids(docs[1:])


def test_a_configured_sink_that_has_taken_nothing_yet_keeps_the_journal(store: Store) -> None:
    configured = [*SINKS, "webhook"]
    store.commit(JobState(job_id=SEED_ID), [event(0, at=NOW - 30 * DAY)], NOW)
    for sink in SINKS:
        store.ack(sink, store.pending(sink)[-1][0], configured)
    assert prune(store, NOW, sinks=configured) == Pruned()
    assert len(store.journal()) == 1


def test_over_the_row_bound_the_oldest_delivered_events_go_first(store: Store) -> None:
    docs = [event(n) for n in range(5)]
    store.commit(JobState(job_id=SEED_ID), docs[:4], NOW)
    deliver_all(store)
    store.commit(JobState(job_id=SEED_ID), docs[4:], NOW)  # not delivered yet
    assert prune(store, NOW, max_events=2) == Pruned(over_limit=3)
    assert ids(store.journal()) == ids(docs[3:])
    # Over the bound again, but the rest is undelivered: it stays.
    assert prune(store, NOW, max_events=1) == Pruned(over_limit=1)
    assert ids(store.journal()) == ids(docs[4:])


def test_one_pruning_round_deletes_at_most_its_batch(store: Store) -> None:
    store.commit(JobState(job_id=SEED_ID), [event(n, at=NOW - 9 * DAY) for n in range(5)], NOW)
    deliver_all(store)
    assert prune(store, NOW, batch=2).total == 2
    assert prune(store, NOW, batch=2).total == 2
    assert prune(store, NOW, batch=2).total == 1
    assert store.journal() == []


def test_pruning_a_read_only_store_is_a_state_error(store: Store, db_path: Path) -> None:
    reader = Store(db_path, readonly=True)
    try:
        with pytest.raises(StateError, match="cannot prune the journal"):
            prune(reader, NOW)
    finally:
        reader.close()


def test_upgrading_to_version_7_journals_the_events_still_in_the_outbox(db_path: Path) -> None:
    db_path.parent.mkdir()
    db = sqlite3.connect(db_path, isolation_level=None)
    for version in range(1, 7):
        step = MIGRATIONS[version]
        if isinstance(step, str):
            db.executescript(step)
        else:
            step(db)
    db.execute("PRAGMA user_version = 6")
    db.execute(
        "INSERT INTO jobs(job_id, state, updated_at, target) VALUES (?, '{}', 0, 'beijing')",
        (SEED_ID,),
    )
    waiting = [event(1), event(2)]
    db.executemany(
        "INSERT INTO outbox(id, job_id, body) VALUES (?, ?, ?)",
        [(e["id"], e["subject"], json.dumps(e)) for e in waiting]
        + [("broken", SEED_ID, "{not json")],
    )
    db.close()

    store = Store(db_path)
    try:
        assert store.journal(targets=["beijing"]) == waiting
        assert ids(store.journal(since=NOW + 2)) == ids(waiting[1:])
        assert store.outbox_size() == 3  # the unreadable one is still the outbox's business
    finally:
        store.close()
