"""The monitor stays truthful through a faulty API: with about 30% of responses broken in
every way the simulator knows, the demo scenario yields the same events, each exactly once,
and the same final metrics as a clean run."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.simulator import FAULT_KINDS
from tests.harness import DaemonProc, SimulatorProc, daemon_config, free_port, read_events
from tests.integration.conftest import (
    DEMO,
    check_events,
    check_final_metrics,
    job_ids,
    step_times,
)

pytestmark = pytest.mark.integration


def test_thirty_percent_faults_same_events_same_final_metrics(tmp_path: Path) -> None:
    ids = job_ids()
    sim = SimulatorProc(DEMO, tmp_path)
    # retry_after is short so the account-wide pauses after each 429 keep the test quick;
    # slow answers take longer than the monitor's timeout (2 s).
    sim.faults(rate=0.3, kinds=list(FAULT_KINDS), retry_after=0.2, slow_seconds=3, seed=11)
    port = free_port()
    daemon = DaemonProc(
        daemon_config(tmp_path, sim.url, list(ids.values()), port=port),
        port,
        tmp_path / "daemon.log",
    )
    try:
        for t in step_times():
            sim.set_time(t)
            sim.wait_polled(list(ids.values()), counter="ok_requests", timeout=60)
        faults = sim.state()["faults"]
        # Health (`up`) follows the last poll; compare once the API behaves again.
        sim.faults(rate=0.0)
        sim.wait_polled(list(ids.values()), counter="ok_requests", timeout=60)
        metrics = daemon.metrics()
        events = read_events(tmp_path / "events.jsonl")
    finally:
        assert daemon.stop() == 0, daemon.output()
        sim.stop()

    assert set(FAULT_KINDS) <= {k for k, n in faults.items() if n > 0}, faults
    check_events(events, ids)
    check_final_metrics(metrics, ids)
    polls = {
        dict(k)["result"]: v
        for (n, k), v in metrics.items()
        if n == "modelarts_monitor_polls_total"
    }
    for result in ("server_error", "rate_limited", "invalid_response", "network_error", "timeout"):
        assert polls[result] > 0, (result, polls)
    # Every bad answer was logged with its kind, and none became a transition.
    log = daemon.output()
    assert '"poll_failed"' in log
    assert "Traceback" not in log
