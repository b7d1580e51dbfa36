"""End to end with the real programs: the simulator, the daemon, a real Prometheus scraping it
every second with the shipped alert rules (``for:`` shortened), and a real Alertmanager. A job
fails; Alertmanager's API must hold the failure alert with the job's ``job_name`` and ``team``
labels, and no alert for the healthy job. Every Grafana panel's PromQL runs against the real
Prometheus without error, and returns data where the scenario makes some."""

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
                    },
                    "run": {"start_type": "restarted"},
                },
                {
                    "at": 20,
                    "phase": "Failed",
                    "secondary_phase": "Failed",
                    "task_statuses": [
                        {"task": "worker-0", "exit_code": 137, "message": "OOMKilled"}
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
                },
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


def substitute(expr: str) -> str:
    values = {
        "team": ".*",
        "job_name": ".*",
        "__rate_interval": "1m",
        "__interval": "15s",
        "__range": "5m",
    }
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), m.group(0)), expr)


def test_failed_job_alerts_through_alertmanager_and_every_panel_queries(
    tmp_path: Path, stack: Stack
) -> None:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump(SCENARIO), encoding="utf-8")
    sim = SimulatorProc(scenario, tmp_path)
    stack.procs.append(sim)
    port = free_port()
    config = daemon_config(tmp_path, sim.url, [DOOMED, HEALTHY], port=port)
    doc = yaml.safe_load(config.read_text())
    doc["jobs"] = [
        {"id": DOOMED, "labels": {"team": "nlp"}},
        {"id": HEALTHY, "labels": {"team": "vision"}},
    ]
    config.write_text(yaml.safe_dump(doc))
    daemon = DaemonProc(config, port, tmp_path / "daemon.log")
    stack.procs.append(daemon)
    alertmanager = stack.alertmanager()
    prometheus = stack.prometheus(port, alertmanager)

    def scraped() -> bool:
        result = query(prometheus, 'modelarts_monitor_up{job="modelarts-monitor"}')
        return len(result["data"]["result"]) == 2

    wait_until(scraped, 60, "Prometheus to scrape both jobs")
    for t in (10, 20):
        sim.set_time(t)
        sim.wait_polled([DOOMED, HEALTHY])

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

    # Every dashboard panel's query runs, and returns data where this scenario makes some.
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = panel_queries(dashboard)
    assert len(queries) >= 7
    empty = []
    for title, expr in queries:
        result = query(prometheus, substitute(expr))
        assert result["status"] == "success", (title, expr, result)
        if not result["data"]["result"]:
            empty.append((title, expr))
    assert empty == [], f"panels without data for a scenario that makes it: {empty}"


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
                {"at": 0, "phase": "Running", "secondary_phase": "Running", "nodes": 1},
                {"at": 10, "gone": True},
            ],
        },
        {
            "id": QUEUED,
            "name": "queued-run",
            "node_count": 1,
            "tasks": ["worker-0"],
            "timeline": [
                {"at": 0, "phase": "Pending", "secondary_phase": "Queuing"},
                {"at": 10, "phase": "Running", "secondary_phase": "Running", "nodes": 1},
            ],
        },
    ]
}
"""MISTYPED is in the monitor's config only: the simulator has never heard of it."""


def test_sparse_monitor_a_deleted_job_is_gone_not_down_and_raises_no_poll_alert(
    tmp_path: Path, stack: Stack
) -> None:
    """Issue 13 as measured: a deleted job showed up 0 and raised ModelArtsMonitorCannotPollJob
    for an hour. With sparse state sets, it shows gone 1 and raises nothing, while a job id the
    monitor never saw still raises the alert (so the rule does run); each job shows one phase
    series; and every dashboard panel still queries."""
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump(GONE_SCENARIO), encoding="utf-8")
    sim = SimulatorProc(scenario, tmp_path)
    stack.procs.append(sim)
    port = free_port()
    config = daemon_config(
        tmp_path, sim.url, [DELETED, QUEUED, MISTYPED], port=port, metrics={"state_sets": "sparse"}
    )
    stack.procs.append(DaemonProc(config, port, tmp_path / "daemon.log"))
    alertmanager = stack.alertmanager()
    prometheus = stack.prometheus(port, alertmanager)

    def vector(expr: str) -> dict[str, float]:
        result = query(prometheus, expr)["data"]["result"]
        return {r["metric"].get("job_id", ""): float(r["value"][1]) for r in result}

    wait_until(lambda: len(vector("modelarts_monitor_up")) == 3, 60, "all three jobs scraped")
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

    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for title, expr in panel_queries(dashboard):
        result = query(prometheus, substitute(expr))
        assert result["status"] == "success", (title, expr, result)
        assert result["data"]["result"], (title, expr)


def _rfc3339(stamp: str) -> float:
    """Prometheus' lastEvaluation (RFC 3339, nanoseconds) as Unix seconds."""
    match = re.fullmatch(r"([^.]+?)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", stamp)
    assert match, stamp
    whole, fraction, zone = match.groups()
    moment = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    return moment.timestamp() + float(f"0.{fraction or 0}")
