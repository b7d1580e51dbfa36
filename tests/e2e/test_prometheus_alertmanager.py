"""End to end with the real programs: the simulator, the daemon, a real Prometheus scraping it
every second with the shipped alert rules (``for:`` shortened), and a real Alertmanager. A job
fails; Alertmanager's API must hold the failure alert with the job's ``job_name`` and ``team``
labels, and no alert for the healthy job. Every Grafana panel's PromQL (those in collapsed rows
too) runs against the real Prometheus without error and returns data, in full and in sparse state
sets: the scenarios make some for every panel, per-task usage, a hang, a recovery and an exit code
included, and the new rows' panels show what the scenario did."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.harness import (
    DaemonProc,
    Proc,
    SimulatorProc,
    daemon_config,
    free_port,
    require,
    wait_until,
)

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "modelarts-monitor.json"
DOOMED, HEALTHY = "11111111-2222-3333-4444-555555555555", "66666666-7777-8888-9999-000000000000"
STALLED = "77777777-8888-9999-0000-111111111111"
USAGE = {"enabled": True, "interval": "100ms", "hang_window": "1s"}
"""Usage swept ten times a second, and a hang reported after a second of idle accelerators."""

SCENARIO = {
    "jobs": [
        {
            "id": DOOMED,
            "name": "doomed-run",
            "node_count": 2,
            "tasks": ["worker-0", "worker-1"],
            "timeline": [
                {
                    "at": 0,
                    "phase": "Running",
                    "secondary_phase": "Running",
                    "nodes": 2,
                    "run": {"start_type": "init_or_rescheduled"},
                },
                {
                    "at": 10,
                    "end_run": {
                        "end_reason": "exit 1",
                        "end_related_task": "worker-1",
                        "end_recover": "proc_restart",
                        "recover_records": [
                            {
                                "recover": "proc_restart",
                                "fault_scenario": "job_failed",
                                "related_task": "worker-1",
                                "recover_result": "success",
                            }
                        ],
                    },
                    "run": {"start_type": "restarted"},
                },
                {
                    "at": 20,
                    "phase": "Failed",
                    "secondary_phase": "Failed",
                    "task_statuses": [
                        {"task": "worker-0", "exit_code": 137, "message": "OOMKilled"},
                        {"task": "worker-1", "exit_code": 0},
                    ],
                    "end_run": {"end_reason": "exit with 137", "end_related_task": "worker-0"},
                },
            ],
        },
        {
            "id": HEALTHY,
            "name": "healthy-run",
            "node_count": 2,
            "tasks": ["worker-0", "worker-1"],
            "timeline": [
                {
                    "at": 0,
                    "phase": "Running",
                    "secondary_phase": "Running",
                    "nodes": 2,
                    "run": {"start_type": "init_or_rescheduled"},
                    "usage": {"gpuUtil": 80, "gpuMemUsage": 60, "cpuUsage": 40, "memUsage": 30},
                },
                {"at": 30},
            ],
        },
        {
            # Running on Ascend; from t=10 its NPU idles (a hang), once Prometheus scrapes it.
            "id": STALLED,
            "name": "stalled-run",
            "node_count": 1,
            "tasks": ["worker-0"],
            "timeline": [
                {
                    "at": 0,
                    "phase": "Running",
                    "secondary_phase": "Running",
                    "nodes": 1,
                    "run": {"start_type": "init_or_rescheduled"},
                    "usage": {"npuUtil": 90, "npuMemUsage": 35, "cpuUsage": 5, "memUsage": 20},
                },
                {"at": 10, "usage": {"npuUtil": 0}},
                {"at": 30},
            ],
        },
    ]
}


def shortened_rules(tmp: Path) -> Path:
    """The shipped rules with every ``for:`` cut to 1s, so a test need not wait minutes."""
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    for group in doc["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "1s"
    path = tmp / "alerts.yml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


class Stack:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[Proc] = []

    def alertmanager(self) -> str:
        binary = require("prometheus-alertmanager")
        port = free_port()
        config = self.tmp / "alertmanager.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "route": {
                        "receiver": "null",
                        "group_by": ["alertname", "job_name"],
                        "group_wait": "1s",
                    },
                    "receivers": [{"name": "null"}],
                }
            )
        )
        (self.tmp / "am-data").mkdir()
        args = [f"--storage.path={self.tmp / 'am-data'}", "--cluster.listen-address="]
        return self._run(binary, config, port, args)

    def prometheus(self, monitor_port: int, alertmanager: str) -> str:
        binary = require("prometheus")
        port = free_port()
        config = self.tmp / "prometheus.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(shortened_rules(self.tmp))],
                    "alerting": {
                        "alertmanagers": [
                            {
                                "static_configs": [
                                    {"targets": [alertmanager.removeprefix("http://")]}
                                ]
                            }
                        ]
                    },
                    "scrape_configs": [
                        {
                            "job_name": "modelarts-monitor",
                            "static_configs": [{"targets": [f"127.0.0.1:{monitor_port}"]}],
                        }
                    ],
                }
            )
        )
        args = [f"--storage.tsdb.path={self.tmp / 'prom-data'}", "--rules.alert.resend-delay=1s"]
        return self._run(binary, config, port, args)

    def _run(self, binary: str, config: Path, port: int, args: list[str]) -> str:
        """Start one of the programs on loopback, stopped at the end; its URL once ready."""
        name = Path(binary).name
        cmd = [binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"]
        proc = Proc([*cmd, *args], self.tmp / f"{name}.log")
        self.procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: self._ok(f"{url}/-/ready", proc), 60, f"{name}\n{proc.output()}")
        return url

    @staticmethod
    def _ok(url: str, proc: Proc) -> bool:
        if proc.popen.poll() is not None:
            raise AssertionError(f"exited:\n{proc.output()}")
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path)
    try:
        yield s
    finally:
        s.stop()


def query(prometheus: str, expr: str) -> dict[str, Any]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    return response.json()  # type: ignore[no-any-return]


def alerts(alertmanager: str) -> list[dict[str, Any]]:
    return httpx.get(f"{alertmanager}/api/v2/alerts", timeout=5).json()  # type: ignore[no-any-return]


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    found = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            walk(panel.get("panels", []))
            for target in panel.get("targets", []):
                if target.get("expr"):
                    found.append((panel.get("title", "?"), target["expr"]))

    walk(dashboard["panels"])
    return found


def substitute(expr: str, target: str = ".*") -> str:
    """The query as Grafana sends it, with every variable at All, ``target`` apart."""
    values = {
        "target": target,
        "team": ".*",
        "job_name": ".*",
        "__rate_interval": "1m",
        "__interval": "15s",
        "__range": "5m",
    }
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), m.group(0)), expr)


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def shown(
    prometheus: str, title: str, *labels: str, target: str = ".*"
) -> dict[tuple[str, ...], float]:
    """What the panel called ``title`` shows now: for each series of each of its queries, the
    values of ``labels`` ("" where absent) and the series' value."""
    exprs = [expr for t, expr in panel_queries(dashboard()) if t == title]
    assert exprs, f"no panel {title!r}"
    found: dict[tuple[str, ...], float] = {}
    for expr in exprs:
        result = query(prometheus, substitute(expr, target))
        assert result["status"] == "success", (title, expr, result)
        for series in result["data"]["result"]:
            key = tuple(series["metric"].get(label, "") for label in labels)
            assert key not in found, (title, key)
            found[key] = float(series["value"][1])
    return found


def assert_every_panel_shows_data(prometheus: str, target: str = ".*") -> None:
    """Every query of the dashboard, collapsed rows' included, runs and returns data."""
    queries = panel_queries(dashboard())
    assert len(queries) >= 30
    empty = []
    for title, expr in queries:
        result = query(prometheus, substitute(expr, target))
        assert result["status"] == "success", (title, expr, result)
        if not result["data"]["result"]:
            empty.append((title, expr))
    assert empty == [], f"panels without data for a scenario that makes it: {empty}"


def test_failed_job_alerts_and_the_dashboard_shows_usage_hangs_recoveries_and_exit_codes(
    tmp_path: Path, stack: Stack
) -> None:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump(SCENARIO), encoding="utf-8")
    sim = SimulatorProc(scenario, tmp_path)
    stack.procs.append(sim)
    port = free_port()
    config = daemon_config(tmp_path, sim.url, [DOOMED, HEALTHY, STALLED], port=port, usage=USAGE)
    doc = yaml.safe_load(config.read_text())
    doc["jobs"] = [
        {"id": DOOMED, "labels": {"team": "nlp"}},
        {"id": HEALTHY, "labels": {"team": "vision"}},
        {"id": STALLED, "labels": {"team": "speech"}},
    ]
    config.write_text(yaml.safe_dump(doc))
    daemon = DaemonProc(config, port, tmp_path / "daemon.log")
    stack.procs.append(daemon)
    alertmanager = stack.alertmanager()
    prometheus = stack.prometheus(port, alertmanager)

    def scraped() -> bool:
        result = query(prometheus, 'modelarts_monitor_up{job="modelarts-monitor"}')
        return len(result["data"]["result"]) == 3

    wait_until(scraped, 60, "Prometheus to scrape the three jobs")
    for t in (10, 20):
        sim.set_time(t)
        sim.wait_polled([DOOMED, HEALTHY, STALLED])

    def failure_alert() -> dict[str, Any] | None:
        for alert in alerts(alertmanager):
            labels = alert["labels"]
            if (
                labels["alertname"] == "ModelArtsJobFailed"
                and labels.get("job_name") == "doomed-run"
            ):
                return alert
        return None

    alert = wait_until(failure_alert, 90, "ModelArtsJobFailed in Alertmanager")
    assert alert["labels"]["team"] == "nlp"
    assert alert["labels"]["severity"] == "critical"
    assert "doomed-run" in alert["annotations"]["summary"]
    assert alert["status"]["state"] == "active"

    # A few more evaluations: nothing about the healthy job fires meanwhile.
    sim.wait_polled([DOOMED, HEALTHY], times=5)
    for a in alerts(alertmanager):
        assert a["labels"].get("job_name") != "healthy-run", a
        assert a["labels"].get("team") != "vision", a
    firing = {(a["labels"]["alertname"], a["labels"].get("job_name")) for a in alerts(alertmanager)}
    assert ("ModelArtsJobFailed", "doomed-run") in firing

    # The dashboard shows what happened: the usage sweeps, the hang, the recovery at t=10 and
    # the exit code at t=20 (usage and the hang event take a few scrapes to arrive).
    busiest = {("healthy-run",): 0.8, ("stalled-run",): 0.0}
    wait_until(
        lambda: shown(prometheus, "Busiest accelerator per Running job", "job_name") == busiest,
        60,
        "usage in Prometheus",
    )
    wait_until(
        lambda: shown(prometheus, "Hang events in range", "type").get(("hang_suspected",), 0) > 0,
        60,
        "hang_suspected counted in Prometheus",
    )
    assert shown(prometheus, "Jobs with every accelerator idle") == {(): 1.0}
    assert shown(prometheus, "Accelerator utilisation per task", "job_name", "task") == {
        ("healthy-run", "worker-0"): 0.8,
        ("healthy-run", "worker-1"): 0.8,
        ("stalled-run", "worker-0"): 0.0,
    }
    assert shown(prometheus, "Accelerator memory per task", "job_name", "task") == {
        ("healthy-run", "worker-0"): 0.6,
        ("healthy-run", "worker-1"): 0.6,
        ("stalled-run", "worker-0"): 0.35,
    }
    recovery = ("proc_restart", "success")
    assert shown(prometheus, "Recoveries by strategy and result", "recover", "recover_result") == {
        recovery: 1.0
    }
    per_job = shown(prometheus, "Recoveries per job", "job_name", "recover", "recover_result")
    assert per_job == {("doomed-run", *recovery): 1.0}
    assert shown(prometheus, "Non-zero task exit codes", "job_name", "task") == {
        ("doomed-run", "worker-0"): 137.0
    }
    in_phase = shown(prometheus, "Longest in their phase", "job_name", "phase")
    assert set(in_phase) == {
        ("doomed-run", "Failed"),
        ("healthy-run", "Running"),
        ("stalled-run", "Running"),
    }
    assert all(seconds > 0 for seconds in in_phase.values()), in_phase

    assert_every_panel_shows_data(prometheus)


DELETED, QUEUED, MISTYPED = (
    "aaaaaaaa-1111-2222-3333-444444444444",
    "bbbbbbbb-1111-2222-3333-444444444444",
    "cccccccc-1111-2222-3333-444444444444",
)
GONE_SCENARIO = {
    "jobs": [
        {
            "id": DELETED,
            "name": "deleted-run",
            "node_count": 1,
            "tasks": ["worker-0"],
            "timeline": [
                {
                    "at": 0,
                    "phase": "Running",
                    "secondary_phase": "Running",
                    "nodes": 1,
                    "run": {"start_type": "init_or_rescheduled"},
                },
                {
                    "at": 5,
                    "end_run": {
                        "end_reason": "exit 1",
                        "end_related_task": "worker-0",
                        "end_recover": "proc_restart",
                        "recover_records": [
                            {"recover": "proc_restart", "recover_result": "failed"}
                        ],
                    },
                    "run": {"start_type": "restarted"},
                    "task_statuses": [{"task": "worker-0", "exit_code": 1}],
                },
                {"at": 10, "gone": True},
            ],
        },
        {
            "id": QUEUED,
            "name": "queued-run",
            "node_count": 1,
            "tasks": ["worker-0", "worker-1"],
            "timeline": [
                {"at": 0, "phase": "Pending", "secondary_phase": "Queuing"},
                {
                    "at": 10,
                    "phase": "Running",
                    "secondary_phase": "Running",
                    "nodes": 1,
                    "usage": {
                        "worker-0": {"gpuUtil": 70, "gpuMemUsage": 50, "cpuUsage": 20},
                        "worker-1": {"npuUtil": 60, "npuMemUsage": 40, "memUsage": 30},
                    },
                },
            ],
        },
    ]
}
"""MISTYPED is in the monitor's config only: the simulator has never heard of it. The deleted
job's recovery and exit code at t=5, and the queued job's usage once Running, give every
dashboard panel data in sparse mode too (a gone job's series keep their last values)."""


def test_sparse_monitor_a_deleted_job_is_gone_not_down_and_raises_no_poll_alert(
    tmp_path: Path, stack: Stack
) -> None:
    """Issue 13 as measured: a deleted job showed up 0 and raised ModelArtsMonitorCannotPollJob
    for an hour. With sparse state sets, it shows gone 1 and raises nothing, while a job id the
    monitor never saw still raises the alert (so the rule does run); each job shows one phase
    series; and every dashboard panel still queries and shows data, with the dashboard's
    `target` variable set to the one target configured (named, so every series carries it)."""
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump(GONE_SCENARIO), encoding="utf-8")
    sim = SimulatorProc(scenario, tmp_path)
    stack.procs.append(sim)
    port = free_port()
    config = daemon_config(
        tmp_path,
        sim.url,
        [DELETED, QUEUED, MISTYPED],
        port=port,
        metrics={"state_sets": "sparse"},
        usage=USAGE,
    )
    doc = yaml.safe_load(config.read_text())
    target = {"name": "main", **{key: doc.pop(key) for key in ("api", "auth", "jobs")}}
    config.write_text(yaml.safe_dump({**doc, "targets": [target]}))
    stack.procs.append(DaemonProc(config, port, tmp_path / "daemon.log"))
    alertmanager = stack.alertmanager()
    prometheus = stack.prometheus(port, alertmanager)

    def vector(expr: str) -> dict[str, float]:
        result = query(prometheus, expr)["data"]["result"]
        return {r["metric"].get("job_id", ""): float(r["value"][1]) for r in result}

    wait_until(
        lambda: len(vector('modelarts_monitor_up{target="main"}')) == 3,
        60,
        "all three jobs scraped",
    )
    sim.set_time(5)
    sim.wait_polled([DELETED, QUEUED])
    sim.set_time(10)
    sim.wait_polled([DELETED, QUEUED])
    wait_until(
        lambda: vector("modelarts_training_job_gone == 1") == {DELETED: 1.0},
        60,
        "gone in Prometheus",
    )
    gone_seen = time.time()
    assert vector("modelarts_monitor_up == 0") == {DELETED: 0.0, MISTYPED: 0.0}

    def evaluated_since(t: float) -> bool:
        groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
        return all(_rfc3339(g["lastEvaluation"]) > t for g in groups)

    # Past `for:` (1s here) twice over since the gone series arrived, and the alert for the
    # mistyped id has reached Alertmanager: the rule has had every chance to fire.
    wait_until(lambda: evaluated_since(gone_seen + 3), 60, "three more rule evaluations")

    def poll_alerts() -> set[str]:
        return {
            a["labels"].get("job_id", "")
            for a in alerts(alertmanager)
            if a["labels"]["alertname"] == "ModelArtsMonitorCannotPollJob"
        }

    wait_until(lambda: MISTYPED in poll_alerts(), 60, "CannotPollJob for the mistyped id")
    assert poll_alerts() == {MISTYPED}
    pending = vector('ALERTS{alertname="ModelArtsMonitorCannotPollJob"}')
    assert DELETED not in pending, pending

    # Sparse: one phase series per job the monitor has seen, the current one.
    phases = query(prometheus, "modelarts_training_job_phase")["data"]["result"]
    assert {(r["metric"]["job_id"], r["metric"]["phase"]) for r in phases} == {
        (DELETED, "Running"),
        (QUEUED, "Running"),
    }

    wait_until(
        lambda: (
            shown(prometheus, "Busiest accelerator per Running job", "job_name", target="main")
            == {("queued-run",): 0.7}
        ),
        60,
        "the queued job's usage in Prometheus",
    )
    assert_every_panel_shows_data(prometheus, target="main")


def _rfc3339(stamp: str) -> float:
    """Prometheus' lastEvaluation (RFC 3339, nanoseconds) as Unix seconds."""
    match = re.fullmatch(r"([^.]+?)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", stamp)
    assert match, stamp
    whole, fraction, zone = match.groups()
    moment = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    return moment.timestamp() + float(f"0.{fraction or 0}")
