"""The daemon as a user runs it (``modelarts-monitor run``) against the simulator over loopback,
with AK/SK signing on, driven through the whole demo scenario one step at a time."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import (
    DaemonProc,
    SimulatorProc,
    daemon_config,
    free_port,
    read_events,
)
from tests.integration.conftest import (
    DEMO,
    check_events,
    check_final_metrics,
    job_ids,
    play,
    step_times,
)

pytestmark = pytest.mark.integration


def test_demo_scenario_events_exactly_once_and_final_metrics(tmp_path: Path) -> None:
    ids = job_ids()
    sim = SimulatorProc(DEMO, tmp_path)
    port = free_port()
    daemon = None
    try:
        daemon = DaemonProc(
            daemon_config(tmp_path, sim.url, list(ids.values()), port=port),
            port,
            tmp_path / "daemon.log",
        )
        play(sim, list(ids.values()), step_times())
        metrics = daemon.metrics()
        events = read_events(tmp_path / "events.jsonl")
    finally:
        if daemon:
            assert daemon.stop() == 0, daemon.output()
        sim.stop()
    check_events(events, ids)
    check_final_metrics(metrics, ids)
    assert metrics[("modelarts_monitor_polls_total", (("result", "ok"),))] > 4 * len(step_times())
    for result in ("auth_error", "server_error", "timeout", "invalid_response", "network_error"):
        assert metrics[("modelarts_monitor_polls_total", (("result", result),))] == 0, result
