"""One event the file sink can never write does not hold it back: the real daemon dead-letters
it and delivers every other event of the demo scenario, and ``status`` shows the dead letter.

The poisoned event is what an older monitor's outbox could hold: a task message with a lone
UTF-16 surrogate, JSON-escaped in the database (``\\udce9``) but impossible to write as UTF-8.
The API edge now cleans such text, so the test puts it straight into the outbox before the
daemon starts, as the first event every sink is offered.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from monitor.core.events import new_event, to_cloudevent
from monitor.store.database import Store
from tests.harness import (
    TEST_SK,
    DaemonProc,
    SimulatorProc,
    command,
    daemon_config,
    free_port,
    read_events,
    wait_until,
)
from tests.integration.conftest import DEMO, EXPECTED, job_ids, play, step_times, summary

pytestmark = pytest.mark.integration

OLD_JOB = "0d1e2f30-4a5b-4c6d-8e7f-9a0b1c2d3e4f"


def poisoned_event() -> dict[str, Any]:
    event = new_event(
        "task_failed",
        job_id=OLD_JOB,
        job_name="old-job",
        key=("worker-0", 1, 0),
        data={"task": "worker-0", "exit_code": 1, "message": "invalid byte \udce9 in input"},
        time=1_764_000_000.0,
    )
    return to_cloudevent(event, "test-project")


def seed_outbox(db: Path, event: dict[str, Any]) -> None:
    """A current database whose outbox holds ``event`` first, as an older monitor left it."""
    Store(db).close()
    conn = sqlite3.connect(db)
    try:
        conn.execute(
            "INSERT INTO outbox(id, job_id, body) VALUES (?, ?, ?)",
            (event["id"], event["subject"], json.dumps(event)),
        )
        conn.commit()
    finally:
        conn.close()


def test_a_file_sink_dead_letters_the_event_it_cannot_write_and_delivers_every_other(
    tmp_path: Path,
) -> None:
    ids = list(job_ids().values())
    db, events_file = tmp_path / "state.db", tmp_path / "events.jsonl"
    sink = f"file:{events_file}"
    bad = poisoned_event()
    seed_outbox(db, bad)
    sim = SimulatorProc(DEMO, tmp_path)
    port = free_port()
    config = daemon_config(tmp_path, sim.url, ids, port=port)
    daemon = DaemonProc(config, port, tmp_path / "daemon.log")
    try:
        play(sim, ids, step_times())
        wait_until(
            lambda: Counter(summary(e) for e in read_events(events_file)) == EXPECTED,
            20,
            "every event of the scenario in the file",
        )
        metrics = daemon.metrics()
    finally:
        daemon.stop()
        sim.stop()

    written = read_events(events_file)
    assert bad["id"] not in {e["id"] for e in written}
    events_file.read_bytes().decode("utf-8")  # strict: the file stays valid UTF-8
    dead = "modelarts_monitor_dead_letters_total"
    assert metrics[(dead, (("sink", sink),))] == 1
    assert metrics[(dead, (("sink", "log"),))] == 0, "the log sink could take it"
    rejected = (
        "modelarts_monitor_event_deliveries_total",
        (("result", "rejected"), ("sink", sink)),
    )
    assert metrics[rejected] == 1

    lines = [json.loads(line) for line in daemon.output().splitlines() if line.startswith("{")]
    (logged,) = [e for e in lines if e.get("event") == "event_dead_lettered"]
    assert (logged["sink"], logged["event_id"], logged["job_id"]) == (sink, bad["id"], OLD_JOB)
    assert "surrogates not allowed" in logged["reason"]
    assert not [e for e in lines if e.get("event") in ("sink_crashed", "sink_delivery_failed")]
    assert stat.S_IMODE(events_file.stat().st_mode) == 0o600

    # The dead letter outlives the daemon, and status shows it after the job table.
    status = subprocess.run(
        command("status", "--config", str(config)),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "TEST_SK": TEST_SK},
    )
    assert status.returncode == 0, status.stderr
    _, _, letters = status.stdout.partition("\n\n")
    header, entry = letters.splitlines()
    assert header == f"dead letters of sink {sink}: 1, newest first"
    assert bad["id"] in entry and "cannot serialize for this sink" in entry
