"""One daemon, two targets: two simulated projects in two "regions" (two simulators, each
with its own AK/SK), jobs configured and discovered in each. Every series and event names its
target and its project; and a 429 storm on one target pauses only that target: the other's
jobs keep their pace, although the poll slots are shared and fewer than the throttled
target's jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import (
    DaemonProc,
    Proc,
    SimulatorProc,
    command,
    free_port,
    read_events,
    wait_until,
)

pytestmark = pytest.mark.integration

SLOTS = 2
"""poll.concurrency: fewer than the throttled target's jobs, so holding slots would show."""
TARGETS: dict[str, dict[str, Any]] = {
    "east": {
        "project": "proj-east-0001",
        "ak": "EASTAK0123456789",
        "sk": "east-secret-key-never-logged-11",
        "configured": [f"e0000000-0000-4000-8000-00000000000{i}" for i in range(5)],
        "found": "e0000000-0000-4000-8000-0000000000f0",
        "region": "r-east",
    },
    "west": {
        "project": "proj-west-0002",
        "ak": "WESTAK0123456789",
        "sk": "west-secret-key-never-logged-22",
        "configured": ["f0000000-0000-4000-8000-000000000001"],
        "found": "f0000000-0000-4000-8000-0000000000f0",
        "region": "r-west",
    },
}


class RegionSimulator(SimulatorProc):
    """A simulator that accepts only its own region's AK/SK."""

    def __init__(self, scenario: Path, tmp: Path, ak: str, sk: str) -> None:
        self.port = free_port()
        args = command(
            "simulate",
            "--scenario",
            str(scenario),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--manual-clock",
            "--ak",
            ak,
        )
        Proc.__init__(self, args, tmp / f"simulator-{self.port}.log", {"SIMULATOR_SK": sk})
        self.url = f"http://127.0.0.1:{self.port}"
        wait_until(self._up, what=f"simulator on {self.url}\n{self.output()}")


def scenario(path: Path, target: dict[str, Any]) -> Path:
    ids = [*target["configured"], target["found"]]
    jobs = [
        {
            "id": job_id,
            "name": f"train-{i}",
            "timeline": [{"at": 0, "phase": "Running", "secondary_phase": "Running"}],
        }
        for i, job_id in enumerate(ids)
    ]
    path.write_text(yaml.safe_dump({"jobs": jobs}), encoding="utf-8")
    return path


def config(tmp: Path, sims: dict[str, RegionSimulator], port: int) -> Path:
    doc = {
        "poll": {
            "interval": "100ms",
            "jitter": "10ms",
            "concurrency": SLOTS,
            "retry": {"max_backoff": "2s"},
        },
        "targets": [
            {
                "name": name,
                "api": {"endpoint": sims[name].url, "project_id": t["project"], "timeout": "5s"},
                "auth": {"type": "aksk", "ak": t["ak"], "sk": t["sk"]},
                "labels": {"region": t["region"]},
                "jobs": [{"id": j, "labels": {"team": "ml"}} for j in t["configured"]],
                "discovery": {"interval": "200ms"},
            }
            for name, t in TARGETS.items()
        ],
        "state": {"path": str(tmp / "state.db")},
        "events": {"sinks": [{"type": "file", "path": str(tmp / "events.jsonl")}]},
        "server": {"listen": f"127.0.0.1:{port}"},
        "log": {"level": "info", "format": "json"},
        "usage": {"enabled": False},
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def up_by_job(metrics: dict[Any, float]) -> dict[str, dict[str, str]]:
    """job id -> the labels of its ``modelarts_monitor_up`` series, for the jobs that are up."""
    return {
        dict(labels)["job_id"]: dict(labels)
        for (name, labels), value in metrics.items()
        if name == "modelarts_monitor_up" and value == 1
    }


def polls(metrics: dict[Any, float], target: str, result: str) -> float:
    key = ("modelarts_monitor_polls_total", (("result", result), ("target", target)))
    return metrics.get(key, 0.0)


@pytest.fixture
def region_sims(tmp_path: Path) -> Any:
    sims = {
        name: RegionSimulator(scenario(tmp_path / f"{name}.yaml", t), tmp_path, t["ak"], t["sk"])
        for name, t in TARGETS.items()
    }
    try:
        yield sims
    finally:
        for sim in sims.values():
            sim.stop()


def test_two_targets_poll_and_discover_their_own_projects_and_a_429_storm_stays_in_its_target(
    tmp_path: Path, region_sims: dict[str, RegionSimulator]
) -> None:
    port = free_port()
    daemon = DaemonProc(config(tmp_path, region_sims, port), port, tmp_path / "daemon.log")
    try:
        every = {j: n for n, t in TARGETS.items() for j in [*t["configured"], t["found"]]}
        wait_until(
            lambda: set(up_by_job(daemon.metrics())) >= set(every),
            20,
            f"every job of both targets up\n{daemon.output()}",
        )
        for job_id, labels in up_by_job(daemon.metrics()).items():
            name = every[job_id]
            assert labels["target"] == name, labels
            assert labels["region"] == TARGETS[name]["region"], labels
            # Configured jobs carry their own labels after the target's; discovered ones none.
            assert ("team" in labels) == (job_id != TARGETS[name]["found"]), labels

        def announced() -> list[dict[str, Any]]:
            events = read_events(tmp_path / "events.jsonl")
            found = {e["subject"] for e in events if e["type"] == "modelarts.job.discovered"}
            return events if found >= set(every) else []

        events = wait_until(announced, 20, "a discovered event for every job")
        for event in events:
            name = every[event["subject"]]
            assert event["source"] == f"modelarts-monitor/{TARGETS[name]['project']}", event
            assert event["data"]["labels"]["target"] == name, event

        # The storm: every job-detail request of east is answered 429 with Retry-After 2.
        east, west = region_sims["east"], region_sims["west"]
        east.faults(rate=1.0, kinds=["rate_limited"], retry_after=2)
        wait_until(lambda: east.state().get("faults", {}).get("rate_limited", 0) >= 3, 20)
        west_jobs = [*TARGETS["west"]["configured"], TARGETS["west"]["found"]]
        # West's normal pace is a poll every 100 ms a job (10 take about 1 s). Were east's
        # paused polls holding the two shared slots, west would get one only between pauses.
        west.wait_polled(west_jobs, times=10, timeout=8)

        metrics = daemon.metrics()
        assert polls(metrics, "east", "rate_limited") > 0
        assert polls(metrics, "west", "rate_limited") == 0
        assert polls(metrics, "west", "ok") > 0
    finally:
        daemon.stop()
