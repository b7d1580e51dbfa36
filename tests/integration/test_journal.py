"""The event journal across daemon restarts: every delivered event is still there for
``events`` after a restart (read beside the running daemon), and a retention the events have
outlived prunes them at the next daemon's start, logged once with the count."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

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
from tests.integration.conftest import DEMO, EXPECTED, RESNET, job_ids, play, step_times, summary

pytestmark = pytest.mark.integration


def events(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command("events", "--config", str(config), *args),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "TEST_SK": TEST_SK},
    )


def journal(config: Path) -> list[dict[str, Any]]:
    result = events(config, "--json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def sinks(tmp: Path, **journal_settings: Any) -> dict[str, Any]:
    return {"sinks": [{"type": "file", "path": str(tmp / "events.jsonl")}], **journal_settings}


def test_a_restart_keeps_the_journal_and_a_retention_they_outlived_prunes_it(
    tmp_path: Path,
) -> None:
    ids = list(job_ids().values())
    total = sum(EXPECTED.values())
    sim = SimulatorProc(DEMO, tmp_path)
    port = free_port()
    config = daemon_config(tmp_path, sim.url, ids, port=port, events=sinks(tmp_path))
    daemon = DaemonProc(config, port, tmp_path / "daemon-1.log")
    try:
        play(sim, ids, step_times())
        wait_until(
            lambda: len(read_events(tmp_path / "events.jsonl")) >= total, 20, "every event filed"
        )
        assert daemon.stop() == 0

        daemon = DaemonProc(config, port, tmp_path / "daemon-2.log")
        sim.wait_polled(ids)  # the restarted daemon is running and committing
        kept = journal(config)
        resnet = events(config, "--job", RESNET)
        assert daemon.stop() == 0

        outlived = daemon_config(
            tmp_path, sim.url, ids, port=port, events=sinks(tmp_path, journal={"retention": "1ms"})
        )
        daemon = DaemonProc(outlived, port, tmp_path / "daemon-3.log")
        wait_until(lambda: "journal_pruned" in daemon.output(), 20, "a pruning round")
        pruned = journal(outlived)
    finally:
        daemon.stop()
        sim.stop()

    delivered = read_events(tmp_path / "events.jsonl")
    assert Counter(summary(e) for e in kept) == EXPECTED
    assert sorted(kept, key=lambda e: e["id"]) == sorted(delivered, key=lambda e: e["id"])
    assert resnet.returncode == 0, resnet.stderr
    assert len(resnet.stdout.splitlines()) == sum(
        n for (job, _, _), n in EXPECTED.items() if job == RESNET
    )
    assert pruned == []
    (line,) = [json.loads(x) for x in daemon.output().splitlines() if '"journal_pruned"' in x]
    assert (line["expired"], line["over_limit"]) == (total, 0)
