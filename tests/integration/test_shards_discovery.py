"""Two daemons sharing the jobs (``shard: {index: 0|1, total: 2}``) that none of them is told
about: each discovers them through the simulator's job search, keeps the ones it owns, and
together they watch every job exactly once; jobs that leave the search stay watched, also
across a restart."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.daemon.sharding import shard_of
from tests.harness import DaemonProc, SimulatorProc, daemon_config, free_port, wait_until

pytestmark = pytest.mark.integration

LATE = {9, 10, 11}
"""Jobs created at scenario time 5: found by a later discovery round."""
COMPLETES = {0, 4}
"""Jobs that complete at scenario time 10 and so leave the search (phase filter)."""


def job_id(i: int) -> str:
    return f"7e1c{i:04d}-5a2b-4c3d-8e9f-{i:012d}"


def name(i: int) -> str:
    return f"llm-train-{i}" if i % 3 == 0 else f"cv-train-{i}"


def write_scenario(path: Path) -> list[str]:
    jobs: list[dict[str, Any]] = []
    for i in range(12):
        start = 5 if i in LATE else 0
        timeline: list[dict[str, Any]] = [
            {"at": start, "phase": "Pending", "secondary_phase": "Queuing"},
            {"at": start + 1, "phase": "Running", "secondary_phase": "Running"},
        ]
        if i in COMPLETES:
            timeline.append({"at": 10, "phase": "Completed", "secondary_phase": "Completed"})
        timeline.append({"at": 12})
        jobs.append({"id": job_id(i), "name": name(i), "timeline": timeline})
    path.write_text(yaml.safe_dump({"jobs": jobs}), encoding="utf-8")
    return [j["id"] for j in jobs]


def exported(metrics: dict[Any, float], family: str) -> set[str]:
    return {dict(labels)["job_id"] for (n, labels), _ in metrics.items() if n == family}


def up_jobs(metrics: dict[Any, float]) -> set[str]:
    return {
        dict(labels)["job_id"]
        for (n, labels), v in metrics.items()
        if n == "modelarts_monitor_up" and v == 1
    }


def phase_of(metrics: dict[Any, float], job: str) -> str | None:
    for (n, labels), v in metrics.items():
        d = dict(labels)
        if n == "modelarts_training_job_phase" and d["job_id"] == job and v == 1:
            return d["phase"]
    return None


def start_daemon(tmp: Path, sim_url: str, index: int) -> DaemonProc:
    folder = tmp / f"shard-{index}"
    folder.mkdir(exist_ok=True)
    port = free_port()
    config = daemon_config(
        folder,
        sim_url,
        [],
        port=port,
        shard={"index": index, "total": 2},
        discovery={
            "interval": "500ms",
            "page_size": 5,  # 12 jobs: several pages per round
            "labels": [{"name_regex": "^llm-", "labels": {"team": "llm"}}],
        },
    )
    return DaemonProc(config, port, folder / f"daemon-{port}.log")


def test_two_shards_discover_and_watch_every_job_exactly_once(tmp_path: Path) -> None:
    ids = write_scenario(tmp_path / "scenario.yaml")
    owner = {j: shard_of(j, 2) for j in ids}
    assert set(owner.values()) == {0, 1}, "the scenario must give each shard some jobs"
    early = [job_id(i) for i in range(12) if i not in LATE]

    sim = SimulatorProc(tmp_path / "scenario.yaml", tmp_path)
    daemons: list[DaemonProc] = []
    try:
        daemons = [start_daemon(tmp_path, sim.url, i) for i in (0, 1)]

        def union_up() -> set[str]:
            return up_jobs(daemons[0].metrics()) | up_jobs(daemons[1].metrics())

        wait_until(lambda: set(early) <= union_up(), what="the early jobs discovered and polled")
        assert not {job_id(i) for i in LATE} & union_up()  # not created yet
        sim.set_time(6)
        wait_until(lambda: set(ids) <= union_up(), what="the late jobs discovered and polled")
        sim.set_time(11)  # two jobs complete: they leave the search, not the monitor
        sim.wait_polled([job_id(i) for i in COMPLETES])
        sim.wait_polled([job_id(i) for i in COMPLETES])
        metrics = [d.metrics() for d in daemons]

        # Restart shard 0: it watches its completed jobs again though no search finds them.
        assert daemons[0].stop() == 0, daemons[0].output()
        daemons[0] = start_daemon(tmp_path, sim.url, 0)
        mine_completed = {job_id(i) for i in COMPLETES if owner[job_id(i)] == 0}
        wait_until(
            lambda: mine_completed <= up_jobs(daemons[0].metrics()),
            what="shard 0's completed jobs watched again after its restart",
        )
        restarted = daemons[0].metrics()
        searches = sim.state()["search_requests"]
    finally:
        for d in daemons:
            assert d.stop() == 0, d.output()
        sim.stop()

    for family in ("modelarts_monitor_up", "modelarts_training_job_info"):
        per_shard = [exported(m, family) for m in metrics]
        assert per_shard[0] | per_shard[1] == set(ids), family
        assert not per_shard[0] & per_shard[1], family
        for index, jobs in enumerate(per_shard):
            assert all(owner[j] == index for j in jobs), (family, index)
    assert exported(restarted, "modelarts_monitor_up") == {j for j in ids if owner[j] == 0}

    for index, m in enumerate(metrics):
        assert m[("modelarts_monitor_shard_ordinal", ())] == index
        assert m[("modelarts_monitor_total_shards", ())] == 2
        assert m[("modelarts_monitor_jobs", ())] == sum(1 for j in ids if owner[j] == index)

    both = {**metrics[0], **metrics[1]}
    for i in range(12):
        info = [
            dict(labels)
            for (n, labels), _ in both.items()
            if n == "modelarts_training_job_info" and dict(labels)["job_id"] == job_id(i)
        ]
        assert len(info) == 1
        assert info[0].get("team") == ("llm" if name(i).startswith("llm-") else None), i
        expected_phase = "Completed" if i in COMPLETES else "Running"
        assert phase_of(both, job_id(i)) == expected_phase, i
    assert searches >= 4  # at least two rounds per shard


def test_configured_jobs_are_sharded_at_start_and_on_reload(tmp_path: Path) -> None:
    """A shard watches only the configured jobs it owns, also after SIGHUP; a changed `shard`
    block needs a restart (logged) and is not applied."""
    ids = write_scenario(tmp_path / "scenario.yaml")
    mine = {j for j in ids if shard_of(j, 2) == 1}
    sim = SimulatorProc(tmp_path / "scenario.yaml", tmp_path)
    port = free_port()
    config = daemon_config(tmp_path, sim.url, ids[:6], port=port, shard={"index": 1, "total": 2})
    daemon = DaemonProc(config, port, tmp_path / "daemon.log")
    try:
        wait_until(lambda: mine & set(ids[:6]) <= up_jobs(daemon.metrics()), what="first polls")
        assert exported(daemon.metrics(), "modelarts_monitor_up") == mine & set(ids[:6])

        doc = yaml.safe_load(config.read_text(encoding="utf-8"))
        doc["jobs"] = [{"id": j, "labels": {"team": "ml"}} for j in ids[3:9]]
        doc["shard"] = {"index": 0, "total": 2}
        config.write_text(yaml.safe_dump(doc), encoding="utf-8")
        daemon.signal(signal.SIGHUP)
        wait_until(
            lambda: exported(daemon.metrics(), "modelarts_monitor_up") == mine & set(ids[3:9]),
            what="the reloaded, still sharded job set",
        )
        assert "reload_needs_restart" in daemon.output()
        assert daemon.metrics()[("modelarts_monitor_shard_ordinal", ())] == 1
        assert sim.state().get("search_requests", 0) == 0  # no discovery block: no search
    finally:
        assert daemon.stop() == 0, daemon.output()
        sim.stop()


WORKSPACE_B = "8f4e2c1a9b7d4e6f8a0b1c2d3e4f5a6b"
"""A second workspace, 32 characters as the API's workspace ids are."""
LATE_AT = 100_000
"""Scenario time of the jobs created ~28 hours after the others: outside the ``between``."""
WORKSPACE_JOBS = {
    # id suffix: (workspace, name, created at)
    1: ("0", "bert-pretrain", 0),
    2: ("0", "resnet-50", 0),
    3: ("0", "bert-late", LATE_AT),
    4: (WORKSPACE_B, "finetune-bert-zh", 0),
    5: (WORKSPACE_B, "vit-large", 0),
    6: (WORKSPACE_B, "bert-late-b", LATE_AT),
    7: ("3c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f", "bert-elsewhere", 0),
}
"""Only 1 and 4 match both filters in a searched workspace; 7 matches, in one not searched."""


def test_discovery_over_two_workspaces_finds_exactly_the_matching_jobs_of_both(
    tmp_path: Path,
) -> None:
    jobs = [
        {
            "id": job_id(i),
            "name": name,
            "workspace_id": workspace,
            "timeline": [{"at": at, "phase": "Running", "secondary_phase": "Running"}],
        }
        for i, (workspace, name, at) in WORKSPACE_JOBS.items()
    ]
    (tmp_path / "scenario.yaml").write_text(yaml.safe_dump({"jobs": jobs}), encoding="utf-8")
    before = time.time()
    sim = SimulatorProc(tmp_path / "scenario.yaml", tmp_path)
    after = time.time()
    # Scenario time 0 is the simulator's start, somewhere in [before, after]: this window holds
    # every job created at 0 and none created at LATE_AT.
    window = [int(before * 1000) - 1000, int(after * 1000) + LATE_AT * 1000 // 2]
    expected = {job_id(1), job_id(4)}
    daemon: DaemonProc | None = None
    try:
        sim.set_time(LATE_AT + 1)  # every job exists
        port = free_port()
        config = daemon_config(
            tmp_path,
            sim.url,
            [],
            port=port,
            discovery={
                "interval": "200ms",
                "workspaces": ["0", WORKSPACE_B],
                "filters": [
                    {"key": "name", "operator": "like", "value": "bert"},  # a lone string
                    {"key": "create_time", "operator": "between", "value": window},  # numbers
                ],
            },
        )
        daemon = DaemonProc(config, port, tmp_path / "daemon.log")
        wait_until(lambda: expected <= up_jobs(daemon.metrics()), what="both workspaces' jobs")
        searches = sim.state()["search_requests"]
        wait_until(
            lambda: sim.state()["search_requests"] >= searches + 4,
            what="two more rounds over both workspaces",
        )
        metrics = daemon.metrics()
        output = daemon.output()
    finally:
        if daemon is not None:
            assert daemon.stop() == 0, daemon.output()
        sim.stop()

    assert exported(metrics, "modelarts_monitor_up") == expected
    workspaces = {
        dict(labels)["job_id"]: dict(labels)["workspace_id"]
        for (n, labels), _ in metrics.items()
        if n == "modelarts_training_job_info"
    }
    assert workspaces == {job_id(1): "0", job_id(4): WORKSPACE_B}
    assert "discovery_failed" not in output  # the simulator took every body
