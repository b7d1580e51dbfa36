"""Never lose or repeat an event: a SIGKILL in the middle of a scenario, a webhook that is down
for a while, a state database that breaks, and a clean SIGTERM."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import (
    TEST_SK,
    DaemonProc,
    SimulatorProc,
    WebhookReceiver,
    command,
    daemon_config,
    free_port,
    read_events,
    wait_until,
)
from tests.integration.conftest import (
    DEMO,
    EXPECTED,
    job_ids,
    play,
    step_times,
    summary,
)

pytestmark = pytest.mark.integration


def sinks(tmp: Path, hook: WebhookReceiver) -> dict[str, Any]:
    return {
        "sinks": [
            {"type": "file", "path": str(tmp / "events.jsonl")},
            {"type": "webhook", "url": hook.url, "timeout": "2s"},
        ],
        "max_backoff": "500ms",
    }


def by_id(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["id"]: e for e in events}


def test_sigkill_mid_scenario_then_restart_delivers_every_event_once_by_id(tmp_path: Path) -> None:
    ids = list(job_ids().values())
    times = step_times()
    before, after = [t for t in times if t <= 20], [t for t in times if t > 22]
    hook = WebhookReceiver()
    sim = SimulatorProc(DEMO, tmp_path)
    port = free_port()
    config = daemon_config(tmp_path, sim.url, ids, port=port, events=sinks(tmp_path, hook))
    daemon = DaemonProc(config, port, tmp_path / "daemon-1.log")
    try:
        play(sim, ids, before)
        daemon.signal(signal.SIGKILL)
        assert daemon.wait() == -signal.SIGKILL
        daemon.stop()
        # While it is down: a node is lost (22) and bert's pod is rescheduled (24).
        sim.set_time(24)
        daemon = DaemonProc(config, port, tmp_path / "daemon-2.log")
        # At start, /metrics shows the stored state at once, with up 0 until the first poll.
        sim.wait_polled(ids)
        play(sim, ids, after)
        wait_until(
            lambda: len(by_id(hook.received())) >= sum(EXPECTED.values()),
            20,
            "every event at the webhook",
        )
    finally:
        daemon.stop()
        sim.stop()
        hook.close()

    for holder, events in (
        ("file", read_events(tmp_path / "events.jsonl")),
        ("webhook", hook.received()),
    ):
        unique = by_id(events)
        assert Counter(summary(e) for e in unique.values()) == EXPECTED, holder
        assert [summary(e)[1] for e in unique.values()].count("discovered") == 4, holder


def test_stored_state_is_served_at_once_after_restart_with_up_zero(tmp_path: Path) -> None:
    ids = list(job_ids().values())
    sim = SimulatorProc(DEMO, tmp_path)
    port = free_port()
    config = daemon_config(tmp_path, sim.url, ids, port=port)
    daemon = DaemonProc(config, port, tmp_path / "daemon-1.log")
    try:
        play(sim, ids, [0, 8])
        assert daemon.stop() == 0
        sim.stop()  # the API is unreachable now: only the stored state can answer
        daemon = DaemonProc(config, port, tmp_path / "daemon-2.log")
        metrics = daemon.metrics()
    finally:
        daemon.stop()
        sim.stop()
    bert = ids[0]
    phase = {
        dict(k).get("phase"): v
        for (n, k), v in metrics.items()
        if n == "modelarts_training_job_phase" and dict(k)["job_id"] == bert
    }
    assert phase["Running"] == 1
    ups = {dict(k)["job_id"]: v for (n, k), v in metrics.items() if n == "modelarts_monitor_up"}
    assert ups == dict.fromkeys(ids, 0.0)
    last = [
        v
        for (n, k), v in metrics.items()
        if n == "modelarts_monitor_last_poll_success_timestamp_seconds"
    ]
    assert len(last) == 4, "the last successful poll of the previous run is remembered"


def test_webhook_down_for_a_while_gets_every_event_in_order_and_polling_goes_on(
    tmp_path: Path,
) -> None:
    ids = list(job_ids().values())
    hook = WebhookReceiver()
    hook.status = 503
    sim = SimulatorProc(DEMO, tmp_path)
    port = free_port()
    config = daemon_config(tmp_path, sim.url, ids, port=port, events=sinks(tmp_path, hook))
    daemon = DaemonProc(config, port, tmp_path / "daemon.log")
    try:
        times = step_times()
        play(sim, ids, times[:8])
        # Polling and the file sink went on while the webhook refused everything.
        assert hook.received() == []
        assert hook.refused >= 2
        assert len(read_events(tmp_path / "events.jsonl")) >= 20
        pending = daemon.metrics()[("modelarts_monitor_outbox_pending", (("sink", "webhook"),))]
        assert pending >= 20
        hook.status = 200
        play(sim, ids, times[8:])
        expected = read_events(tmp_path / "events.jsonl")
        wait_until(lambda: len(hook.received()) >= len(expected), 20, "the webhook to catch up")
        metrics = daemon.metrics()
    finally:
        daemon.stop()
        sim.stop()
        hook.close()
    received = hook.received()
    assert [e["id"] for e in received] == [e["id"] for e in expected], "same events, same order"
    assert Counter(summary(e) for e in received) == EXPECTED
    assert (
        metrics[
            ("modelarts_monitor_event_deliveries_total", (("result", "retry"), ("sink", "webhook")))
        ]
        >= 2
    )


def test_corrupt_state_file_is_a_clear_error_at_start(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    state.write_bytes(b"this is not a database" * 100)
    config = daemon_config(tmp_path, "http://127.0.0.1:9", ["job-1"], port=free_port())
    result = subprocess.run(
        command("run", "--config", str(config)),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "TEST_SK": TEST_SK},
    )
    assert result.returncode == 2
    assert "state error" in result.stderr
    assert str(state) in result.stderr
    assert "Traceback" not in result.stderr


def test_database_locked_while_running_fails_readyz_and_holds_the_exported_state_until_it_works(
    tmp_path: Path,
) -> None:
    """A poll is all or nothing: while the database refuses commits, the polls count as
    state_error and /metrics keeps what the last committed poll said; once the database works
    again the held transitions are committed, each once, and shown."""
    ids = list(job_ids().values())
    sim = SimulatorProc(DEMO, tmp_path)
    port = free_port()
    config = daemon_config(tmp_path, sim.url, ids, port=port)
    daemon = DaemonProc(config, port, tmp_path / "daemon.log")
    lock = None
    running = (
        "modelarts_training_job_phase",
        (("job_id", ids[0]), ("job_name", "bert-pretrain"), ("phase", "Running"), ("team", "ml")),
    )
    state_errors = ("modelarts_monitor_polls_total", (("result", "state_error"),))
    try:
        play(sim, ids, [0])
        wait_until(lambda: httpx.get(f"{daemon.url}/readyz").status_code == 200, 10, "ready")
        # Another process takes the database's write lock and keeps it.
        lock = sqlite3.connect(tmp_path / "state.db", isolation_level=None, timeout=10)
        lock.execute("BEGIN EXCLUSIVE")
        sim.set_time(8)  # every job changes: each poll now needs a commit that cannot happen
        wait_until(
            lambda: httpx.get(f"{daemon.url}/readyz").status_code == 503, 30, "readyz to fail"
        )
        assert "state database" in httpx.get(f"{daemon.url}/readyz").text
        wait_until(lambda: daemon.metrics().get(state_errors, 0) >= 2, 30, "state_error polls")
        # /metrics still answers, with the last committed state: the refused polls did not
        # happen.
        assert daemon.metrics().get(running) == 0
        lock.execute("ROLLBACK")
        lock.close()
        lock = None
        wait_until(
            lambda: httpx.get(f"{daemon.url}/readyz").status_code == 200, 30, "readyz to recover"
        )
        sim.wait_polled(ids)
        wait_until(lambda: daemon.metrics().get(running) == 1, 10, "metrics to show Running")
    finally:
        if lock is not None:
            lock.close()
        daemon.stop()
        sim.stop()
    # The held transitions were committed after recovery, each once.
    events = read_events(tmp_path / "events.jsonl")
    seen = Counter(summary(e) for e in events)
    assert seen[("bert-pretrain", "phase_changed", "Creating->Running")] == 1
    assert seen[("bert-pretrain", "run_started", "#0 init_or_rescheduled")] == 1
    assert len({e["id"] for e in events}) == len(events)
    assert "state_commit_failed" in daemon.output()


def test_sigterm_finishes_polls_drains_sinks_and_exits_zero(tmp_path: Path) -> None:
    ids = list(job_ids().values())
    hook = WebhookReceiver()
    sim = SimulatorProc(DEMO, tmp_path)
    port = free_port()
    config = daemon_config(tmp_path, sim.url, ids, port=port, events=sinks(tmp_path, hook))
    daemon = DaemonProc(config, port, tmp_path / "daemon.log")
    try:
        play(sim, ids, [0, 3, 4])
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0, daemon.output()
    finally:
        daemon.stop()
        sim.stop()
        hook.close()
    assert len(by_id(hook.received())) == len(read_events(tmp_path / "events.jsonl")) > 0
    assert '"stopped"' in daemon.output()
    state = sqlite3.connect(tmp_path / "state.db")
    assert state.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0
    assert (
        state.execute("SELECT COUNT(*) FROM jobs WHERE last_success IS NOT NULL").fetchone()[0] == 4
    )
