"""files.py through its users: the state database (with SQLite's -wal and -shm) and the events
file, and the directories made for them, are owner-only whatever the umask; an existing looser
file is left as it is and reported once.

Tests run as root here; modes are still set and read as for any user.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from monitor.core.events import new_event, to_cloudevent
from monitor.core.state import JobState
from monitor.delivery.sinks import FileSink
from monitor.store.database import Store
from tests.conftest import SEED_ID

NOW = 1_800_000_000.0


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def event_doc(n: int) -> dict[str, Any]:
    event = new_event(
        "phase_changed",
        job_id=SEED_ID,
        job_name="train-a",
        key=("Pending", "Running", n),
        data={"from": "Pending", "to": "Running"},
        time=NOW + n,
    )
    return to_cloudevent(event, "proj")


@pytest.fixture(params=[0o022, 0o002, 0o000, 0o277], ids=lambda m: f"umask {m:03o}")
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """The process umask for one test (the usual 022, permissive ones, and one that would even
    take the owner's write bit away), restored afterwards."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


@pytest.fixture
def usual_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def loose_lines(logs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["path"], e["mode"]) for e in logs if e["event"] == "file_mode_loose"]


# -- created by the monitor -------------------------------------------------------------------


def test_a_fresh_database_its_wal_and_shm_and_its_new_directories_are_owner_only(
    tmp_path: Path, umask: int
) -> None:
    before = mode(tmp_path)
    path = tmp_path / "var" / "lib" / "state.db"
    with capture_logs() as logs:
        store = Store(path)
    try:
        store.commit(JobState(job_id=SEED_ID), [event_doc(1)], NOW)  # the WAL is in use
        files = {p.name: mode(p) for p in path.parent.iterdir()}
    finally:
        store.close()
    assert files == {"state.db": 0o600, "state.db-wal": 0o600, "state.db-shm": 0o600}
    assert mode(tmp_path / "var") == 0o700
    assert mode(tmp_path / "var" / "lib") == 0o700
    assert mode(tmp_path) == before, "an existing directory is not the monitor's to change"
    assert loose_lines(logs) == []


async def test_a_fresh_events_file_and_its_new_directories_are_owner_only(
    tmp_path: Path, umask: int
) -> None:
    before = mode(tmp_path)
    path = tmp_path / "log" / "monitor" / "events.jsonl"
    with capture_logs() as logs:
        assert await FileSink(str(path)).deliver([event_doc(1)]) == []
    assert mode(path) == 0o600
    assert mode(tmp_path / "log") == 0o700
    assert mode(tmp_path / "log" / "monitor") == 0o700
    assert mode(tmp_path) == before
    assert loose_lines(logs) == []


async def test_an_events_file_moved_away_by_log_rotation_comes_back_owner_only(
    tmp_path: Path, usual_umask: None
) -> None:
    path = tmp_path / "events.jsonl"
    sink = FileSink(str(path))
    await sink.deliver([event_doc(1)])
    path.rename(tmp_path / "events.jsonl.1")
    await sink.deliver([event_doc(2)])
    assert mode(path) == 0o600
    assert len(path.read_text(encoding="utf-8").splitlines()) == 1


# -- existing files ---------------------------------------------------------------------------


def test_an_existing_loose_database_is_left_as_it_is_and_reported_once(
    tmp_path: Path, usual_umask: None
) -> None:
    path = tmp_path / "state.db"
    sqlite3.connect(path).close()
    path.chmod(0o644)
    with capture_logs() as logs:
        store = Store(path)
        try:
            store.commit(JobState(job_id=SEED_ID), [event_doc(1)], NOW)
        finally:
            store.close()
    assert mode(path) == 0o644
    assert loose_lines(logs) == [(str(path), "0644")]
    (line,) = [e for e in logs if e["event"] == "file_mode_loose"]
    assert line["log_level"] == "warning"


def test_a_loose_wal_left_beside_a_private_database_is_reported(
    tmp_path: Path, usual_umask: None
) -> None:
    path = tmp_path / "state.db"
    Store(path).close()
    wal = tmp_path / "state.db-wal"
    wal.touch()
    wal.chmod(0o664)
    with capture_logs() as logs:
        Store(path).close()
    assert loose_lines(logs) == [(str(wal), "0664")]


async def test_an_existing_loose_events_file_is_left_as_it_is_and_reported_once(
    tmp_path: Path, usual_umask: None
) -> None:
    path = tmp_path / "events.jsonl"
    path.touch()
    path.chmod(0o644)
    sink = FileSink(str(path))
    with capture_logs() as logs:
        await sink.deliver([event_doc(1)])
        await sink.deliver([event_doc(2)])
    assert mode(path) == 0o644
    assert loose_lines(logs) == [(str(path), "0644")]
    assert len(path.read_text(encoding="utf-8").splitlines()) == 2


async def test_a_private_existing_events_file_is_not_reported(
    tmp_path: Path, usual_umask: None
) -> None:
    path = tmp_path / "events.jsonl"
    path.touch()
    path.chmod(0o600)
    with capture_logs() as logs:
        await FileSink(str(path)).deliver([event_doc(1)])
    assert loose_lines(logs) == []
