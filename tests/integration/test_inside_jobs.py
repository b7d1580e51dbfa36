"""Inside running jobs: per-task usage gauges, a hang detected and cleared once each, and the
reasons behind a failure attached to its transition event."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.harness import (
    DaemonProc,
    SimulatorProc,
    daemon_config,
    free_port,
    read_events,
    wait_until,
)
from tests.integration.conftest import DEMO, job_ids, step_times, summary

pytestmark = pytest.mark.integration

USAGE = {"enabled": True, "interval": "100ms", "hang_window": "1s"}


def usage_of(metrics: dict[Any, float], job_id: str, name: str) -> dict[str, float]:
    return {
        dict(labels)["task"]: value
        for (metric, labels), value in metrics.items()
        if metric == f"modelarts_training_job_task_{name}_ratio"
        and dict(labels)["job_id"] == job_id
    }


def kinds(events: list[dict[str, Any]], job: str) -> Counter[str]:
    return Counter(kind for name, kind, _ in map(summary, events) if name == job)


def test_a_hang_is_reported_and_cleared_once_and_usage_follows_the_scenario(tmp_path: Path) -> None:
    ids = job_ids()
    llama, bert, sweep = ids["llama-sft"], ids["bert-pretrain"], ids["data-sweep"]
    sim = SimulatorProc(DEMO, tmp_path)
    port = free_port()
    config = daemon_config(tmp_path, sim.url, list(ids.values()), port=port, usage=USAGE)
    daemon = DaemonProc(config, port, tmp_path / "daemon.log")
    events_file = tmp_path / "events.jsonl"
    try:
        for t in [t for t in step_times() if t <= 16]:
            sim.set_time(t)
            sim.wait_polled(list(ids.values()))
        wait_until(lambda: usage_of(daemon.metrics(), sweep, "cpu_usage"), 10, "usage")
        metrics = daemon.metrics()
        assert usage_of(metrics, sweep, "cpu_usage") == {"worker-0": 0.55}
        assert usage_of(metrics, sweep, "gpu_utilization") == {}, "-1 means no series, not 0"
        assert usage_of(metrics, bert, "gpu_utilization") == {"worker-0": 0.8, "worker-1": 0.8}
        assert usage_of(metrics, llama, "gpu_utilization") == {
            f"worker-{i}": 0.75 for i in range(4)
        }
        for t in [t for t in step_times() if 16 < t <= 22]:
            sim.set_time(t)
            sim.wait_polled(list(ids.values()))
        assert kinds(read_events(events_file), "llama-sft")["hang_suspected"] == 0

        sim.set_time(24)  # every accelerator of llama-sft falls to 0; it stays Running
        wait_until(
            lambda: kinds(read_events(events_file), "llama-sft")["hang_suspected"],
            20,
            "hang_suspected",
        )
        assert set(usage_of(daemon.metrics(), llama, "gpu_utilization").values()) == {0.0}
        sim.set_time(32)  # it works again
        wait_until(
            lambda: kinds(read_events(events_file), "llama-sft")["hang_cleared"], 20, "hang_cleared"
        )
        # The sweep that cleared it may have read some tasks just before the change (one
        # working task is enough to clear); the next sweep reads them all working.
        wait_until(
            lambda: set(usage_of(daemon.metrics(), llama, "gpu_utilization").values()) == {0.7},
            20,
            "every task's usage at 0.7",
        )
        for t in [t for t in step_times() if t > 32]:
            sim.set_time(t)
            sim.wait_polled(list(ids.values()))
        sim.wait_polled(list(ids.values()), times=5)
        metrics = daemon.metrics()
        events = read_events(events_file)
    finally:
        assert daemon.stop() == 0, daemon.output()
        sim.stop()

    for job in ids:
        expected = 1 if job == "llama-sft" else 0
        assert kinds(events, job)["hang_suspected"] == expected, job
        assert kinds(events, job)["hang_cleared"] == expected, job
    assert usage_of(metrics, bert, "gpu_utilization") == {}, "a Completed job has no usage series"
    assert metrics[("modelarts_monitor_usage_polls_total", (("result", "ok"),))] > 0


def test_a_failure_event_carries_the_reasons_modelarts_recorded(tmp_path: Path) -> None:
    ids = job_ids()
    sim = SimulatorProc(DEMO, tmp_path)
    port = free_port()
    daemon = DaemonProc(
        daemon_config(tmp_path, sim.url, list(ids.values()), port=port),
        port,
        tmp_path / "daemon.log",
    )
    try:
        for t in [t for t in step_times() if t <= 20]:
            sim.set_time(t)
            sim.wait_polled(list(ids.values()))
        import httpx

        page = httpx.get(f"{daemon.url}/", timeout=5).text
    finally:
        assert daemon.stop() == 0, daemon.output()
        sim.stop()
    events = read_events(tmp_path / "events.jsonl")
    (failed,) = [
        e for e in events if summary(e) == ("resnet-finetune", "phase_changed", "Running->Failed")
    ]
    messages = [r["message"] for r in failed["data"]["reasons"]]
    assert "Process exited with code 137: OOMKilled" in messages
    assert "Memory usage above 95% on worker-0" in messages
    assert {r["level"] for r in failed["data"]["reasons"]} == {"Error", "Warning"}
    others = [
        e
        for e in events
        if e["data"]["job_name"] != "resnet-finetune" and e["type"] == "modelarts.job.phase_changed"
    ]
    assert all("reasons" not in e["data"] for e in others), "only failures fetch reasons"
    assert "OOMKilled" in page, "the landing page shows the last reason"
