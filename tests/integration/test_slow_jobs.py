"""Slow and failing jobs must not delay healthy ones (the concurrency cap plus the slow lane)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.harness import DaemonProc, SimulatorProc, daemon_config, free_port, wait_until

pytestmark = pytest.mark.integration


def scenario(tmp: Path) -> Path:
    def job(i: int, name: str, latency: float) -> dict[str, object]:
        return {
            "id": f"00000000-0000-0000-0000-00000000000{i}",
            "name": name,
            "latency": latency,
            "timeline": [{"at": 0, "phase": "Running", "secondary_phase": "Running"}],
        }

    doc = {"jobs": [job(1, "fast", 0), *(job(i, f"hung-{i}", 30) for i in (2, 3, 4))]}
    path = tmp / "slow.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def test_hung_jobs_do_not_delay_a_healthy_one(tmp_path: Path) -> None:
    """Three jobs whose API never answers in time, with only two poll slots: the healthy job is
    still polled at its own interval (10 per second), not at the hung jobs' timeout rate."""
    sim = SimulatorProc(scenario(tmp_path), tmp_path)
    port = free_port()
    ids = [f"00000000-0000-0000-0000-00000000000{i}" for i in (1, 2, 3, 4)]
    config = daemon_config(
        tmp_path,
        sim.url,
        ids,
        port=port,
        api={"endpoint": sim.url, "project_id": "p", "timeout": "500ms"},
        poll={"interval": "100ms", "jitter": "10ms", "concurrency": 2},
    )
    daemon = DaemonProc(config, port, tmp_path / "daemon.log")
    try:
        # The first round fills both slots with hung polls; from then on they share one slot.
        sim.wait_polled(ids[1:], times=1)
        start = sim.state()["requests"].get(ids[0], 0)
        wait_until(
            lambda: sim.state()["requests"].get(ids[0], 0) >= start + 30,
            timeout=8,
            what="30 polls of the healthy job",
        )
        metrics = daemon.metrics()
        assert (
            metrics[
                ("modelarts_monitor_up", (("job_id", ids[0]), ("job_name", "fast"), ("team", "ml")))
            ]
            == 1
        )
        assert metrics[("modelarts_monitor_polls_total", (("result", "timeout"),))] >= 3
    finally:
        daemon.stop()
        sim.stop()
