"""store.py: an old database is migrated on open and keeps its contents; read-only opening (for
``status``) refuses what it cannot read and never writes; ``record_success`` edge cases."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from monitor.core.events import new_event, to_cloudevent
from monitor.core.job import JobSnapshot, RunningRecord, TaskStatus
from monitor.core.state import STATE_FORMAT, JobState
from monitor.errors import StateError
from monitor.store.database import Store
from monitor.store.migrations import MIGRATIONS, SCHEMA_VERSION
from tests.conftest import SEED_ID, format1_row

NOW = 1_800_000_000.0
OTHER_ID = "7c0d2f7e-0000-4000-8000-000000000002"

V1_SCHEMA = """
CREATE TABLE jobs (
    job_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    job_id TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE sink_positions (
    sink TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
);
"""
"""The schema released as version 1, frozen here: databases of that shape exist in the field."""


def a_state() -> JobState:
    snapshot = JobSnapshot(
        job_id=SEED_ID,
        name="bert-pretrain",
        phase="Running",
        secondary_phase="Running",
        nodes=2,
        requested_nodes=2,
        tasks=("worker-0", "worker-1"),
        task_statuses=(TaskStatus("worker-1", 137, "OOMKilled"),),
        running_records=(
            RunningRecord(start_at=100, end_at=200, end_recover="proc_restart"),
            RunningRecord(start_at=210, start_type="restarted"),
        ),
    )
    return JobState(
        job_id=SEED_ID, snapshot=snapshot, phase_since=NOW - 60, restarts={"proc_restart": 1}
    )


def event_doc(n: int) -> dict[str, Any]:
    event = new_event(
        "phase_changed",
        job_id=SEED_ID,
        job_name="bert-pretrain",
        key=("Pending", "Running", n),
        data={"from": "Pending", "to": "Running"},
        time=NOW + n,
    )
    return to_cloudevent(event, "proj")


def user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def make_v1_database(path: Path, state: JobState, events: list[dict[str, Any]]) -> None:
    """A database as a version-1 monitor left it: one job, undelivered events, a sink position."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    try:
        db.executescript(V1_SCHEMA)
        db.execute("PRAGMA user_version = 1")
        db.execute(
            "INSERT INTO jobs(job_id, state, updated_at) VALUES (?, ?, ?)",
            (state.job_id, json.dumps(format1_row(state)), NOW),
        )
        db.executemany(
            "INSERT INTO outbox(id, job_id, body) VALUES (?, ?, ?)",
            [(e["id"], e["subject"], json.dumps(e)) for e in events],
        )
        db.execute("INSERT INTO sink_positions(sink, seq) VALUES ('log', 1)")
        db.commit()
    finally:
        db.close()


def make_current_database(path: Path) -> None:
    store = Store(path)
    try:
        store.commit(a_state(), [event_doc(1)], NOW)
        store.commit(JobState(job_id=OTHER_ID), [], NOW)
        store.record_success({SEED_ID: NOW + 5})
    finally:
        store.close()


def normalized(sql: str) -> str:
    return re.sub(r"\s+", " ", sql).strip()


# -- migration --------------------------------------------------------------------------------


def test_the_released_version_1_schema_is_never_edited() -> None:
    """Old databases were created by this exact script; later changes need a new migration."""
    assert normalized(MIGRATIONS[1]) == normalized(V1_SCHEMA)


def test_a_version_1_database_is_migrated_on_open_and_keeps_its_job_and_outbox(
    db_path: Path,
) -> None:
    state = a_state()
    docs = [event_doc(1), event_doc(2)]
    make_v1_database(db_path, state, docs)

    store = Store(db_path)
    try:
        assert user_version(db_path) == SCHEMA_VERSION
        assert store.load_states() == {SEED_ID: state}
        assert store.load_last_success() == {}
        # The outbox and the sink position survive: 'log' had taken the first event only.
        assert [body for _, body in store.pending("log")] == docs[1:]
        assert [body for _, body in store.pending("file")] == docs
        assert store.dead_letters() == []

        store.record_success({SEED_ID: NOW + 30})
        assert store.load_last_success() == {SEED_ID: NOW + 30}
    finally:
        store.close()

    again = Store(db_path)
    try:
        assert again.load_last_success() == {SEED_ID: NOW + 30}
        assert again.load_states() == {SEED_ID: state}
    finally:
        again.close()


def test_opening_a_current_database_again_does_not_migrate_it_twice(db_path: Path) -> None:
    make_current_database(db_path)
    store = Store(db_path)
    try:
        assert user_version(db_path) == SCHEMA_VERSION
        assert store.load_last_success() == {SEED_ID: NOW + 5}
    finally:
        store.close()


# -- read-only (status) -----------------------------------------------------------------------


def test_read_only_open_of_a_missing_file_says_there_is_no_database_and_creates_none(
    tmp_path: Path,
) -> None:
    path = tmp_path / "nowhere" / "state.db"
    with pytest.raises(StateError, match="no state database") as info:
        Store(path, readonly=True)
    assert str(path) in str(info.value)
    assert not path.exists()
    assert not path.parent.exists()


def test_read_only_open_of_a_version_1_file_asks_to_start_the_daemon_once(db_path: Path) -> None:
    make_v1_database(db_path, a_state(), [])
    with pytest.raises(StateError, match=r"older.*start the daemon once"):
        Store(db_path, readonly=True)
    assert user_version(db_path) == 1  # not migrated behind the daemon's back


def test_read_only_open_of_a_newer_file_is_refused(db_path: Path) -> None:
    make_current_database(db_path)
    db = sqlite3.connect(db_path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StateError, match="newer"):
        Store(db_path, readonly=True)


def test_read_only_open_reads_states_and_last_success_and_never_writes(db_path: Path) -> None:
    make_current_database(db_path)
    before = db_path.stat()

    ro = Store(db_path, readonly=True)
    try:
        assert ro.load_states() == {SEED_ID: a_state(), OTHER_ID: JobState(job_id=OTHER_ID)}
        assert ro.load_last_success() == {SEED_ID: NOW + 5}
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            ro._db.execute("UPDATE jobs SET last_success = 0")
        with pytest.raises(StateError):
            ro.record_success({SEED_ID: NOW + 99})
        with pytest.raises(StateError):
            ro.commit(JobState(job_id=SEED_ID), [event_doc(9)], NOW)
    finally:
        ro.close()

    after = db_path.stat()
    assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)
    check = Store(db_path)
    try:
        assert check.load_last_success() == {SEED_ID: NOW + 5}
        assert check.outbox_size() == 1
    finally:
        check.close()


def test_read_only_open_works_beside_a_live_writer(db_path: Path) -> None:
    """``status`` next to the running daemon sees what the daemon has committed."""
    writer = Store(db_path)
    try:
        writer.commit(a_state(), [], NOW)
        writer.record_success({SEED_ID: NOW + 1})
        ro = Store(db_path, readonly=True)
        try:
            assert list(ro.load_states()) == [SEED_ID]
            assert ro.load_last_success() == {SEED_ID: NOW + 1}
            writer.record_success({SEED_ID: NOW + 2})  # the daemon is not blocked by it
            assert ro.load_last_success() == {SEED_ID: NOW + 2}
        finally:
            ro.close()
    finally:
        writer.close()


@pytest.mark.parametrize("directory", ["with#hash", "with?query", "with%20percent", "with space"])
def test_read_only_open_reads_a_path_with_uri_special_characters_and_creates_no_other_file(
    tmp_path: Path, directory: str
) -> None:
    """Regression: the path went into a ``file:`` URI unescaped, so ``#`` or ``?`` cut it short
    and dropped ``mode=ro``: status opened (and created) a different, empty database."""
    path = tmp_path / directory / "state.db"
    make_current_database(path)
    listing = sorted(p.name for p in tmp_path.iterdir())

    ro = Store(path, readonly=True)
    try:
        assert set(ro.load_states()) == {SEED_ID, OTHER_ID}
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            ro._db.execute("UPDATE jobs SET last_success = 0")
    finally:
        ro.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == listing


# -- record_success ---------------------------------------------------------------------------


def test_record_success_ignores_jobs_the_database_does_not_hold(store: Store) -> None:
    store.commit(a_state(), [], NOW)
    store.record_success({SEED_ID: NOW + 1, OTHER_ID: NOW + 2})
    assert store.load_last_success() == {SEED_ID: NOW + 1}
    assert list(store.load_states()) == [SEED_ID]  # no row invented for the unknown job


def test_record_success_keeps_the_latest_time_written(store: Store) -> None:
    store.commit(a_state(), [], NOW)
    store.record_success({SEED_ID: NOW + 1})
    store.record_success({SEED_ID: NOW + 2})
    assert store.load_last_success() == {SEED_ID: NOW + 2}


def test_record_success_with_nothing_to_record_does_not_touch_the_database(
    store: Store, db_path: Path
) -> None:
    """No transaction at all: it returns at once even while another writer holds the lock."""
    store.commit(a_state(), [], NOW)
    store.record_success({SEED_ID: NOW + 1})
    other = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        store.record_success({})
        assert time.monotonic() - started < 1.0
        other.execute("ROLLBACK")
    finally:
        other.close()
    assert store.load_last_success() == {SEED_ID: NOW + 1}


def test_record_success_with_nothing_to_record_is_fine_on_a_read_only_store(
    db_path: Path,
) -> None:
    make_current_database(db_path)
    ro = Store(db_path, readonly=True)
    try:
        ro.record_success({})
    finally:
        ro.close()


def test_migration_4_rewrites_todays_rows_in_the_versioned_form(db_path: Path) -> None:
    """A database the monitor left before the stored form had a version (schema 3, format-1
    rows, one of them damaged): every readable row comes back in today's format, same state."""
    state = a_state()
    make_v1_database(db_path, state, [])
    db = sqlite3.connect(db_path)
    try:
        for target in (2, 3):
            db.executescript(f"{MIGRATIONS[target]};PRAGMA user_version = {target};")
        db.execute(
            "INSERT INTO jobs(job_id, state, updated_at) VALUES (?, ?, ?)",
            (OTHER_ID, '{"job_id": "7c0d", "snapshot": {"phase": 1', NOW),
        )
        db.commit()
    finally:
        db.close()

    store = Store(db_path)
    try:
        assert user_version(db_path) == SCHEMA_VERSION
        assert store.load_states() == {SEED_ID: state}
        assert list(store.unreadable) == [OTHER_ID], "the damaged row costs only its job"
    finally:
        store.close()
    db = sqlite3.connect(db_path)
    try:
        (text,) = db.execute("SELECT state FROM jobs WHERE job_id = ?", (SEED_ID,)).fetchone()
    finally:
        db.close()
    assert json.loads(text)["format"] == STATE_FORMAT


def test_migration_5_gives_a_version_4_database_dead_letters_and_keeps_its_outbox(
    db_path: Path,
) -> None:
    docs = [event_doc(1), event_doc(2)]
    make_v1_database(db_path, a_state(), docs)
    db = sqlite3.connect(db_path)
    try:
        for target in (2, 3):
            db.executescript(f"{MIGRATIONS[target]};PRAGMA user_version = {target};")
        db.execute("PRAGMA user_version = 4")  # 4 rewrites job rows only: none to rewrite here
        db.commit()
    finally:
        db.close()

    store = Store(db_path)
    try:
        assert user_version(db_path) == SCHEMA_VERSION
        assert [body for _, body in store.pending("log")] == docs[1:]
        ((seq, _),) = store.pending("log")
        store.ack("log", seq, ["log"], [(docs[1]["id"], "HTTP 400: no")], NOW)
        (letters,) = store.dead_letters()
    finally:
        store.close()
    assert [d.event_id for d in letters.newest] == [docs[1]["id"]]


def test_migration_6_files_every_job_and_discovered_job_of_a_version_5_database_under_no_target(
    db_path: Path,
) -> None:
    """A single-project database upgraded for ``targets:``: its rows belong to the implicit
    target "", so ``status`` shows no TARGET column and discovery restores its members."""
    docs = [event_doc(1), event_doc(2)]
    make_v1_database(db_path, a_state(), docs)
    db = sqlite3.connect(db_path)
    try:
        for target in (2, 3, 5):
            db.executescript(f"{MIGRATIONS[target]};PRAGMA user_version = {target};")
        db.execute(
            "INSERT INTO discovered(job_id, labels, found_at) VALUES (?, ?, ?)",
            (OTHER_ID, json.dumps({"team": "cv"}), NOW),
        )
        db.commit()
    finally:
        db.close()

    store = Store(db_path)
    try:
        assert user_version(db_path) == SCHEMA_VERSION == 7
        assert store.load_targets() == {SEED_ID: ""}
        assert store.load_discovered() == {OTHER_ID: {"team": "cv"}}
        assert store.load_discovered("east") == {}
        assert [body for _, body in store.pending("log")] == docs[1:], "the outbox is kept"
    finally:
        store.close()
