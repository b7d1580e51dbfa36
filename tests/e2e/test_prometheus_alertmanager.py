"""End to end with the real programs: the simulator, the daemon, a real Prometheus scraping it
every second with the shipped alert rules (``for:`` shortened), and a real Alertmanager. A job
fails; Alertmanager's API must hold the failure alert with the job's ``job_name`` and ``team``
labels, and no alert for the healthy job. Every Grafana panel's PromQL runs against the real
Prometheus without error, and returns data where the scenario makes some."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
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
