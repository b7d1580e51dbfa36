"""store.py: job states survive a restart, state and events commit together, the outbox per sink,
each sink's dead letters."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from monitor.core.diff import observe
from monitor.core.events import new_event, to_cloudevent
from monitor.core.state import JobState
from monitor.errors import StateError
from monitor.modelarts.parse import parse_job
from monitor.store.commits import Commit
from monitor.store.database import Store
from monitor.store.migrations import SCHEMA_VERSION
from monitor.store.outbox import Batch
from tests.conftest import SEED_ID, job_doc

NOW = 1_800_000_000.0
OTHER_ID = "7c0d2f7e-0000-4000-8000-000000000002"


def event_doc(n: int, job_id: str = SEED_ID) -> dict[str, Any]:
    """A CloudEvent whose id depends on ``n`` only (deterministic, like the real ones)."""
    event = new_event(
        "phase_changed",
        job_id=job_id,
        job_name="train-a",
        key=("Pending", "Running", n),
        data={"from": "Pending", "to": "Running"},
        time=NOW + n,
    )
    return to_cloudevent(event, "proj")


def rich_state() -> JobState:
    """A state with every kind of field filled in: records, task statuses, restarts, gone."""
    doc = job_doc(
        phase="Running",
        records=[
            {
                "start_at": 100,
                "end_at": 200,
                "start_type": "init_or_rescheduled",
                "end_reason": "exit 1",
                "end_related_task": "worker-1",
                "end_recover": "proc_restart",
                "end_recover_before_downgrade": "pod_reschedule",
            },
            {"start_at": 210, "start_type": "restarted"},
        ],
        task_statuses=[
            {"task": "worker-0", "exit_code": 0, "message": ""},
            {"task": "worker-1", "exit_code": 137, "message": "OOMKilled"},
        ],
    )
    state, _ = observe(None, parse_job(doc), NOW)
    return JobState(
        job_id=state.job_id,
        snapshot=state.snapshot,
        phase_since=NOW - 12.5,
        restarts=state.restarts,
        gone=True,
    )


def test_committed_states_are_loaded_back_equal_after_reopening_the_file(db_path: Path) -> None:
    state = rich_state()
    bare = JobState(job_id=OTHER_ID)
    first = Store(db_path)
    try:
        first.commit(state, [], NOW)
        first.commit(bare, [], NOW)
    finally:
        first.close()

    again = Store(db_path)
    try:
        loaded = again.load_states()
    finally:
        again.close()
    assert loaded == {SEED_ID: state, OTHER_ID: bare}
    snap = loaded[SEED_ID].snapshot
    assert snap is not None
    assert snap.running_records[0].end_recover == "proc_restart"
    assert snap.task_statuses[1].exit_code == 137
    assert loaded[SEED_ID].restarts["proc_restart"] == 1
    assert loaded[SEED_ID].gone is True


def test_a_later_commit_replaces_the_job_state(store: Store) -> None:
    first = JobState(job_id=SEED_ID, phase_since=1.0)
    second = JobState(job_id=SEED_ID, phase_since=2.0)
    store.commit(first, [], NOW)
    store.commit(second, [], NOW + 1)
    assert store.load_states() == {SEED_ID: second}


def test_state_and_events_are_written_together_or_not_at_all(store: Store) -> None:
    """A failing outbox insert rolls back the job state written in the same transaction."""
    good = event_doc(1)
    broken = {**event_doc(2), "id": ["not", "bindable"]}  # sqlite3 cannot bind a list
    with pytest.raises(StateError, match="cannot commit"):
        store.commit(rich_state(), [good, broken], NOW)
    assert store.load_states() == {}
    assert store.outbox_size() == 0
    assert store.pending("log") == []


def test_a_failed_commit_leaves_the_previous_state_and_events_in_place(store: Store) -> None:
    before = JobState(job_id=SEED_ID, phase_since=1.0)
    store.commit(before, [event_doc(1)], NOW)
    with pytest.raises(StateError):
        store.commit(rich_state(), [event_doc(2), {**event_doc(3), "id": ["not", "bindable"]}], NOW)
    assert store.load_states() == {SEED_ID: before}
    assert [body["id"] for _, body in store.pending("log")] == [event_doc(1)["id"]]


def test_a_batch_of_commits_is_written_together_or_not_at_all(store: Store) -> None:
    """The job book's group commit: several jobs' states and events in one transaction; one
    bad row anywhere refuses the whole batch and leaves every job as it was."""
    first, other = JobState(job_id=SEED_ID, phase_since=1.0), JobState(job_id=OTHER_ID)
    store.commit_many(
        [
            Commit(first, [event_doc(1)], NOW),
            Commit(other, [event_doc(2, OTHER_ID), event_doc(3, OTHER_ID)], NOW, "east"),
        ]
    )
    assert store.load_states() == {SEED_ID: first, OTHER_ID: other}
    assert store.load_targets() == {SEED_ID: "", OTHER_ID: "east"}
    committed = [event_doc(n)["id"] for n in (1,)] + [event_doc(n, OTHER_ID)["id"] for n in (2, 3)]
    assert [body["id"] for _, body in store.pending("log")] == committed
    with pytest.raises(StateError, match="cannot commit"):
        store.commit_many(
            [
                Commit(rich_state(), [event_doc(4)], NOW + 1),
                Commit(
                    JobState(job_id=OTHER_ID, phase_since=2.0), [{**event_doc(5), "id": []}], NOW
                ),
            ]
        )
    assert store.load_states() == {SEED_ID: first, OTHER_ID: other}
    assert [body["id"] for _, body in store.pending("log")] == committed


def test_the_same_event_id_is_stored_once(store: Store) -> None:
    """A re-detected transition (same deterministic id) is not queued a second time."""
    state = JobState(job_id=SEED_ID)
    store.commit(state, [event_doc(1), event_doc(1)], NOW)
    store.commit(state, [event_doc(1), event_doc(2)], NOW + 1)
    assert store.outbox_size() == 2
    assert [b["id"] for _, b in store.pending("log")] == [event_doc(1)["id"], event_doc(2)["id"]]


def test_pending_returns_a_sinks_events_oldest_first_as_committed(store: Store) -> None:
    docs = [event_doc(n) for n in range(5)]
    store.commit(JobState(job_id=SEED_ID), docs[:3], NOW)
    store.commit(JobState(job_id=SEED_ID), docs[3:], NOW + 1)
    pending = store.pending("log")
    assert [body for _, body in pending] == docs
    seqs = [seq for seq, _ in pending]
    assert seqs == sorted(seqs)
    assert [body for _, body in store.pending("log", limit=2)] == docs[:2]


def test_ack_moves_only_that_sinks_position(store: Store) -> None:
    sinks = ["log", "file"]
    docs = [event_doc(n) for n in range(3)]
    store.commit(JobState(job_id=SEED_ID), docs, NOW)
    seqs = [seq for seq, _ in store.pending("log")]

    store.ack("log", seqs[1], sinks)
    assert [b for _, b in store.pending("log")] == docs[2:]
    assert [b for _, b in store.pending("file")] == docs
    assert store.outbox_size("log") == 1
    assert store.outbox_size("file") == 3
    assert store.outbox_size() == 3  # file has not taken any: nothing may be deleted


def test_an_event_is_deleted_once_every_sink_has_acked_it(store: Store) -> None:
    sinks = ["log", "file"]
    docs = [event_doc(n) for n in range(3)]
    store.commit(JobState(job_id=SEED_ID), docs, NOW)
    seqs = [seq for seq, _ in store.pending("log")]

    store.ack("log", seqs[2], sinks)
    assert store.outbox_size() == 3
    store.ack("file", seqs[0], sinks)
    assert store.outbox_size() == 2  # both have passed the first event only
    store.ack("file", seqs[2], sinks)
    assert store.outbox_size() == 0
    assert store.pending("log") == [] and store.pending("file") == []


def test_a_sink_position_never_moves_backwards(store: Store) -> None:
    docs = [event_doc(n) for n in range(3)]
    store.commit(JobState(job_id=SEED_ID), docs, NOW)
    seqs = [seq for seq, _ in store.pending("log")]
    store.ack("log", seqs[2], ["log", "file"])
    store.ack("log", seqs[0], ["log", "file"])
    assert store.pending("log") == []


def test_a_new_sink_starts_at_the_oldest_event_still_in_the_outbox(store: Store) -> None:
    docs = [event_doc(n) for n in range(2)]
    store.commit(JobState(job_id=SEED_ID), docs, NOW)
    assert [b for _, b in store.pending("webhook")] == docs
    assert store.outbox_size("webhook") == 2


def test_next_batch_reads_the_batch_and_the_sinks_whole_backlog_together(store: Store) -> None:
    """The dispatcher's one read per batch: the events, and the count it reports before the
    attempt (the batch included, and whatever waits behind it)."""
    docs = [event_doc(n) for n in range(5)]
    store.commit(JobState(job_id=SEED_ID), docs, NOW)
    full = store.next_batch("log", limit=2)
    assert ([b for _, b in full.events], full.backlog) == (docs[:2], 5)
    whole = store.next_batch("log", limit=10)
    assert ([b for _, b in whole.events], whole.backlog) == (docs, 5)
    exact = store.next_batch("log", limit=5)
    assert (len(exact.events), exact.backlog) == (5, 5)

    store.ack("log", full.events[-1][0], ["log", "file"])
    after = store.next_batch("log", limit=2)
    assert ([b for _, b in after.events], after.backlog) == (docs[2:4], 3)
    assert store.next_batch("file", limit=100).backlog == 5  # file has taken none
    store.ack("log", whole.events[-1][0], ["log", "file"])
    assert store.next_batch("log", limit=2) == Batch([], 0)


def test_each_sinks_backlog_is_exact_wherever_its_position_lies_among_the_others(
    store: Store, db_path: Path
) -> None:
    """The backlog is counted from the shorter side of a sink's position; either way it is
    the rows past it, also with gaps in the seqs (a duplicate insert uses one up)."""
    sinks = ["lead", "lag", "new"]
    docs = [event_doc(n) for n in range(12)]
    for chunk in (docs[:4], [docs[0], *docs[4:8]], [docs[2], *docs[8:]]):  # duplicates: gaps
        store.commit(JobState(job_id=SEED_ID), chunk, NOW)
    seqs = [seq for seq, _ in store.pending("lead", limit=100)]
    assert seqs != list(range(seqs[0], seqs[0] + len(seqs))), "the seqs should have gaps"

    def real(sink: str) -> int:
        with sqlite3.connect(db_path) as db:
            return int(
                db.execute(
                    "SELECT COUNT(*) FROM outbox WHERE seq > "
                    "COALESCE((SELECT seq FROM sink_positions WHERE sink = ?), 0)",
                    (sink,),
                ).fetchone()[0]
            )

    for lead, lag in [(1, 0), (9, 0), (10, 2), (11, 8), (11, 11)]:
        store.ack("lead", seqs[lead], sinks)
        store.ack("lag", seqs[lag], sinks)
        for sink in sinks:
            assert store.outbox_size(sink) == real(sink), (sink, lead, lag)
        assert store.outbox_size("lead") == 11 - lead
        assert store.next_batch("lag", limit=2).backlog == 11 - lag
    assert store.outbox_size("new") == 12  # a sink without a position holds every row back


def test_ack_returns_the_backlog_left_counting_events_committed_after_the_batch_was_read(
    store: Store,
) -> None:
    """What the dispatcher shows once a batch is taken: the events that arrived while the
    batch was out are counted in the ack's own transaction, not worked out from the read."""
    docs = [event_doc(n) for n in range(6)]
    store.commit(JobState(job_id=SEED_ID), docs[:3], NOW)
    batch = store.next_batch("hook", limit=2)
    store.commit(JobState(job_id=SEED_ID), docs[3:], NOW + 1)  # arrives during the delivery

    left = store.ack("hook", batch.events[-1][0], ["hook"], [(docs[0]["id"], "HTTP 400")], NOW)
    assert left == 4 == store.outbox_size("hook")
    assert store.outbox_size() == 4  # the only sink passed them: the two rows are gone
    (letters,) = store.dead_letters()
    assert [d.event_id for d in letters.newest] == [docs[0]["id"]]
    assert store.ack("hook", batch.events[0][0], ["hook"]) == 4  # never moves back
    last = store.pending("hook")[-1][0]
    assert store.ack("hook", last, ["hook"]) == 0


def test_a_seq_is_never_used_again_once_the_outbox_was_emptied_and_the_file_reopened(
    db_path: Path,
) -> None:
    """A sink's position is the last seq it took. Were seqs reused after the outbox emptied,
    new events would sit at or below every position and never be delivered."""
    first = Store(db_path)
    try:
        first.commit(JobState(job_id=SEED_ID), [event_doc(n) for n in range(3)], NOW)
        position = first.pending("log")[-1][0]
        assert first.ack("log", position, ["log"]) == 0
        assert first.outbox_size() == 0
    finally:
        first.close()

    again = Store(db_path)
    try:
        later = [event_doc(n) for n in range(3, 5)]
        again.commit(JobState(job_id=SEED_ID), later, NOW + 1)
        batch = again.next_batch("log")
    finally:
        again.close()
    assert [b for _, b in batch.events] == later
    assert all(seq > position for seq, _ in batch.events)
    assert batch.backlog == 2


def test_the_schema_version_is_recorded_in_the_file(store: Store, db_path: Path) -> None:
    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_reopening_a_current_database_keeps_its_contents(db_path: Path) -> None:
    first = Store(db_path)
    first.commit(JobState(job_id=SEED_ID), [event_doc(1)], NOW)
    first.close()
    again = Store(db_path)
    try:
        assert again.outbox_size() == 1
        assert list(again.load_states()) == [SEED_ID]
    finally:
        again.close()


def test_a_database_from_a_newer_monitor_is_refused(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db = sqlite3.connect(db_path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StateError, match="newer"):
        Store(db_path)


def test_a_file_that_is_not_a_database_gives_a_state_error(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not an SQLite database\x00\xff" * 200)
    with pytest.raises(StateError) as info:
        Store(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)


def test_a_directory_as_the_database_path_gives_a_state_error(tmp_path: Path) -> None:
    with pytest.raises(StateError, match=str(tmp_path)):
        Store(tmp_path)


def test_a_read_only_directory_gives_a_state_error(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("this user (root?) can write to a read-only directory")
        with pytest.raises(StateError):
            Store(ro / "state.db")
    finally:
        ro.chmod(stat.S_IRWXU)


def test_a_database_under_a_file_gives_a_state_error(tmp_path: Path) -> None:
    """The parent 'directory' is a regular file: mkdir fails, reported as a StateError."""
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    with pytest.raises(StateError, match="blocker"):
        Store(blocker / "state.db")


async def test_call_runs_store_methods_on_the_database_thread(store: Store) -> None:
    loop_thread = threading.current_thread()
    db_thread = await store.call(threading.current_thread)
    assert db_thread is not loop_thread
    assert db_thread.name.startswith("state-db")
    await store.call(store.commit, JobState(job_id=SEED_ID), [event_doc(1)], NOW)
    assert await store.call(store.outbox_size) == 1


# -- dead letters -----------------------------------------------------------------------------


def test_dead_letters_are_stored_with_the_ack_and_outlive_the_outbox_row(db_path: Path) -> None:
    sinks = ["hook", "file"]
    docs = [event_doc(n) for n in range(4)]
    store = Store(db_path)
    try:
        store.commit(JobState(job_id=SEED_ID), docs, NOW)
        seqs = [seq for seq, _ in store.pending("hook")]
        store.ack("hook", seqs[1], sinks, [(docs[0]["id"], "HTTP 400: no")], NOW + 1)
        store.ack("hook", seqs[3], sinks, [(docs[3]["id"], "HTTP 422: bad")], NOW + 2)
        store.ack("file", seqs[3], sinks)  # every sink passed: the outbox rows are deleted
        assert store.outbox_size() == 0
    finally:
        store.close()

    again = Store(db_path)
    try:
        (letters,) = again.dead_letters(newest=5)
    finally:
        again.close()
    assert (letters.sink, letters.count) == ("hook", 2)
    assert [(d.event_id, d.reason, d.at) for d in letters.newest] == [
        (docs[3]["id"], "HTTP 422: bad", NOW + 2),
        (docs[0]["id"], "HTTP 400: no", NOW + 1),
    ]
    with sqlite3.connect(db_path) as db:
        bodies = [b for (b,) in db.execute("SELECT body FROM dead_letters ORDER BY seq")]
    assert [json.loads(b) for b in bodies] == [docs[0], docs[3]]


def test_dead_letters_list_each_sink_by_name_with_its_count_and_newest_few(store: Store) -> None:
    docs = [event_doc(n) for n in range(5)]
    store.commit(JobState(job_id=SEED_ID), docs, NOW)
    last = store.pending("b")[-1][0]
    store.ack("b", last, ["a", "b"], [(d["id"], f"no {n}") for n, d in enumerate(docs)], NOW)
    store.ack("a", last, ["a", "b"], [(docs[2]["id"], "refused")], NOW)

    a, b = store.dead_letters(newest=2)
    assert (a.sink, a.count, [d.event_id for d in a.newest]) == ("a", 1, [docs[2]["id"]])
    assert (b.sink, b.count) == ("b", 5)
    assert [d.reason for d in b.newest] == ["no 4", "no 3"]


def test_an_event_dead_lettered_again_after_a_replay_stays_one_dead_letter(store: Store) -> None:
    doc = event_doc(1)
    store.commit(JobState(job_id=SEED_ID), [doc], NOW)
    ((seq, _),) = store.pending("hook")
    # Two sinks, so the row stays in the outbox after the first ack (as after a crash).
    store.ack("hook", seq, ["hook", "file"], [(doc["id"], "HTTP 400: no")], NOW)
    store.ack("hook", seq, ["hook", "file"], [(doc["id"], "HTTP 400: no")], NOW + 5)
    (letters,) = store.dead_letters()
    assert letters.count == 1
    assert letters.newest[0].at == NOW


def test_a_reason_quoting_a_lone_surrogate_is_stored_escaped_not_failing_the_ack(
    store: Store,
) -> None:
    doc = event_doc(1)
    store.commit(JobState(job_id=SEED_ID), [doc], NOW)
    ((seq, _),) = store.pending("hook")
    store.ack("hook", seq, ["hook"], [(doc["id"], "cannot encode '\udce9'")], NOW)
    (letters,) = store.dead_letters()
    assert letters.newest[0].reason == "cannot encode '\\udce9'"
    assert store.pending("hook") == []


def test_no_dead_letters_is_an_empty_list(store: Store) -> None:
    assert store.dead_letters() == []


def test_each_job_and_discovered_job_is_kept_under_its_target(store: Store) -> None:
    """``status`` reads which target each job belongs to; each target's discovery restores
    only the jobs it found."""
    store.commit(JobState(job_id=SEED_ID), [], NOW, "east")
    store.commit(JobState(job_id="job-west"), [], NOW, "west")
    store.commit(JobState(job_id="job-west"), [], NOW + 1, "west")
    store.add_discovered({"found-east": {"team": "a"}}, NOW, "east")
    store.add_discovered({"found-west": {}}, NOW, "west")

    assert store.load_targets() == {SEED_ID: "east", "job-west": "west"}
    assert store.load_discovered("east") == {"found-east": {"team": "a"}}
    assert store.load_discovered("west") == {"found-west": {}}
    assert store.load_discovered() == {}
