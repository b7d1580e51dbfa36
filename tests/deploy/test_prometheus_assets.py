"""The shipped Prometheus and Alertmanager assets (``deploy/``) are valid and tested.

The binaries' own checkers validate the files (``promtool check rules|config``, ``amtool
check-config``) and run the rule unit tests (``promtool test rules``); the rest parses the YAML
for the conventions every alert must keep: the contracted names, a severity, a summary and a
description, and at least one promtool case where it fires and one where it does not.

``promtool`` and ``amtool`` come from the Debian packages ``prometheus`` and
``prometheus-alertmanager``. Where they are missing the tests are skipped, except in CI (the
``CI`` environment variable is set), which installs them, so there a missing binary fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
PROMETHEUS_CONFIG = PROMETHEUS / "prometheus.yml"
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"

CONTRACTED_ALERTS = {
    "ModelArtsJobFailed",
    "ModelArtsJobRestarting",
    "ModelArtsJobRescheduled",
    "ModelArtsJobStuckPending",
    "ModelArtsJobNodesMissing",
    "ModelArtsMonitorCannotPollJob",
    "ModelArtsMonitorDown",
    "ModelArtsMonitorAbsent",
    "ModelArtsMonitorOutboxBackingUp",
    "ModelArtsMonitorDeadLetters",
    "ModelArtsJobHangSuspected",
}


def binary(name: str) -> str:
    """The path of a Prometheus tool; skip without it, but fail in CI, which installs it."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian packages prometheus, prometheus-alertmanager)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False, timeout=120)


def output(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n{result.stdout}{result.stderr}"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def alert_rules() -> list[dict[str, Any]]:
    groups = load(ALERTS)["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def seconds(duration: str) -> int:
    """A Prometheus duration made of whole units (``1h``, ``90m``, ``1h30m``) in seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    total, number = 0, ""
    for char in duration:
        if char.isdigit():
            number += char
        else:
            total, number = total + int(number) * units[char], ""
    assert not number, f"duration {duration!r} lacks a unit"
    return total


# --- the binaries' own checks --------------------------------------------------------------


def test_promtool_accepts_the_alert_rules() -> None:
    result = run(binary("promtool"), "check", "rules", "deploy/prometheus/alerts.yml")
    assert result.returncode == 0, output(result)


def test_promtool_rule_unit_tests_pass() -> None:
    assert RULE_TESTS, "no promtool rule tests under deploy/prometheus/tests/"
    files = [str(path.relative_to(ROOT)) for path in RULE_TESTS]
    result = run(binary("promtool"), "test", "rules", *files)
    assert result.returncode == 0, output(result)


def test_promtool_accepts_the_prometheus_config_and_finds_its_rule_file() -> None:
    result = run(binary("promtool"), "check", "config", "prometheus.yml", cwd=PROMETHEUS)
    assert result.returncode == 0, output(result)
    assert "1 rule files found" in result.stdout, output(result)


def test_amtool_accepts_the_alertmanager_config() -> None:
    result = run(binary("amtool"), "check-config", "deploy/alertmanager/alertmanager.yml")
    assert result.returncode == 0, output(result)


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["team=nlp", "severity=critical"], "nlp-oncall"),
        (["team=nlp", "severity=warning"], "nlp-oncall"),
        (["team=vision", "severity=critical"], "vision-oncall"),
        (["team=vision", "severity=warning"], "vision-oncall"),
        (["team=speech", "severity=warning"], "default-oncall"),
        (["alertname=ModelArtsMonitorDown", "severity=critical"], "default-oncall"),
    ],
)
def test_alertmanager_routes_alerts_to_the_team_receiver_or_the_default(
    labels: list[str], receiver: str
) -> None:
    result = run(
        binary("amtool"),
        "config",
        "routes",
        "test",
        "--config.file=deploy/alertmanager/alertmanager.yml",
        *labels,
    )
    assert result.returncode == 0, output(result)
    assert result.stdout.split() == [receiver], output(result)


# --- conventions, read from the YAML -------------------------------------------------------


def test_the_rule_file_holds_one_group_with_exactly_the_contracted_alerts() -> None:
    groups = load(ALERTS)["groups"]
    assert [group["name"] for group in groups] == ["modelarts-monitor"]
    names = [rule["alert"] for rule in alert_rules()]
    assert sorted(names) == sorted(CONTRACTED_ALERTS)


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_has_a_severity_a_summary_and_a_description(rule: dict[str, Any]) -> None:
    assert rule.get("labels", {}).get("severity") in {"critical", "warning"}
    annotations = rule.get("annotations", {})
    assert annotations.get("summary", "").strip(), "summary is missing"
    assert annotations.get("description", "").strip(), "description is missing"


def test_every_alert_has_a_firing_and_a_quiet_promtool_case() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for case in load(path).get("tests", []):
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert not names - firing, f"alerts without a firing case: {sorted(names - firing)}"
    assert not names - quiet, f"alerts without a not-firing case: {sorted(names - quiet)}"


def test_critical_alerts_repeat_sooner_than_the_default() -> None:
    root = load(ALERTMANAGER_CONFIG)["route"]
    default = seconds(root["repeat_interval"])
    critical: list[dict[str, Any]] = []
    pending = list(root.get("routes", []))
    while pending:
        route = pending.pop()
        pending.extend(route.get("routes", []))
        if 'severity="critical"' in route.get("matchers", []):
            critical.append(route)
    assert critical, "no route matches severity=critical"
    for route in critical:
        assert seconds(route.get("repeat_interval", root["repeat_interval"])) < default, route


def test_a_down_monitor_inhibits_its_per_job_poll_alerts() -> None:
    rules = load(ALERTMANAGER_CONFIG)["inhibit_rules"]
    assert any(
        rule["source_matchers"] == ['alertname="ModelArtsMonitorDown"']
        and rule["target_matchers"] == ['alertname="ModelArtsMonitorCannotPollJob"']
        for rule in rules
    )


def test_the_config_knows_which_job_families_each_shipped_alert_reads() -> None:
    """``metrics.allow``/``deny`` warn at start about the alerts they starve; that warning reads
    ``config.exposure.ALERT_FAMILIES``, which must name what the rules really query (their
    expressions and the queries in their annotations), and only families the monitor has."""
    from monitor.config.exposure import ALERT_FAMILIES
    from monitor.exposition.families import FAMILIES

    read: dict[str, tuple[str, ...]] = {}
    for rule in alert_rules():
        text = rule["expr"] + "".join(rule.get("annotations", {}).values())
        names = sorted(set(re.findall(r"modelarts_training_job_\w+", text)))
        if names:
            read[rule["alert"]] = tuple(names)
    assert {k: tuple(sorted(v)) for k, v in ALERT_FAMILIES.items()} == read
    known = {f.name for f in FAMILIES}
    assert {n for names in read.values() for n in names} <= known
