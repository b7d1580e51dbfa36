"""exposure.py: the ``metrics:`` block as a config file gives it, and its mistakes as the one
line per problem that ``check`` and a failed start print."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from monitor.config.exposure import MetricsSettings
from monitor.config.loading import parse_settings
from monitor.config.settings import Settings
from monitor.errors import ConfigError


def settings(metrics: object) -> Settings:
    doc: dict[str, Any] = {
        "api": {"endpoint": "https://modelarts.example.com", "project_id": "proj-1"},
        "auth": {"type": "none"},
        "metrics": metrics,
    }
    return parse_settings(doc, env={})


def problems(metrics: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        settings(metrics)
    return info.value.problems


def test_by_default_every_family_and_every_state_is_exported() -> None:
    metrics = parse_settings(
        {"api": {"endpoint": "https://m.example.com", "project_id": "p"}, "auth": {"type": "none"}},
        env={},
    ).metrics
    assert metrics.state_sets == "full" and not metrics.sparse
    assert metrics.exports("modelarts_training_job_phase")
    assert metrics.starved_alerts() == {}


def test_the_block_as_written_in_yaml() -> None:
    metrics = settings(
        yaml.safe_load(
            """
            state_sets: sparse
            allow: ['modelarts_training_job_.*']
            deny:
              - modelarts_training_job_task_.*_ratio
            """
        )
    ).metrics
    assert metrics.sparse
    assert metrics.exports("modelarts_training_job_phase")
    assert not metrics.exports("modelarts_training_job_task_cpu_usage_ratio")


def test_a_bad_regex_is_one_problem_naming_its_key() -> None:
    (problem,) = problems({"deny": ["modelarts_training_job_phase", "modelarts_(training"]})
    assert problem.startswith("metrics.deny[1]: 'modelarts_(training' is not a valid regular")
    assert "missing )" in problem


def test_a_pattern_that_matches_no_family_is_refused_as_the_typo_it_is() -> None:
    (problem,) = problems({"allow": ["modelarts_training_job_phse"]})
    assert problem.startswith("metrics.allow[0]: 'modelarts_training_job_phse' matches no")


def test_patterns_match_whole_names_only() -> None:
    """``phase`` alone would match inside a name with ``re.search``; here it names nothing."""
    assert problems({"deny": ["phase"]})[0].startswith("metrics.deny[0]:")
    metrics = MetricsSettings(deny=["modelarts_training_job_phase"])
    assert not metrics.exports("modelarts_training_job_phase")
    assert metrics.exports("modelarts_training_job_phase_last_change_timestamp_seconds")


@pytest.mark.parametrize(
    "pattern", ["modelarts_monitor_up", "modelarts_monitor_.*", "modelarts_.*", ".*"]
)
def test_the_monitors_own_families_cannot_be_denied(pattern: str) -> None:
    metrics = settings({"deny": [pattern]}).metrics
    for name in (
        "modelarts_monitor_up",
        "modelarts_monitor_last_poll_success_timestamp_seconds",
        "modelarts_monitor_polls_total",
    ):
        assert metrics.exports(name), name


def test_a_pattern_aimed_at_an_own_family_is_accepted_though_it_changes_nothing() -> None:
    metrics = settings({"deny": ["modelarts_monitor_polls_total"]}).metrics
    assert metrics.exports("modelarts_monitor_polls_total")


def test_allow_exports_only_what_it_names_and_deny_applies_after_it() -> None:
    metrics = MetricsSettings(
        allow=["modelarts_training_job_(phase|nodes)"], deny=["modelarts_training_job_nodes"]
    )
    assert metrics.exports("modelarts_training_job_phase")
    assert not metrics.exports("modelarts_training_job_nodes")
    assert not metrics.exports("modelarts_training_job_info")


@pytest.mark.parametrize(
    ("metrics", "problem"),
    [
        ({"state_sets": "minimal"}, "metrics.state_sets: Input should be 'full' or 'sparse'"),
        ({"deny": "modelarts_.*"}, "metrics.deny: must be a list of regular expressions"),
        ({"deny": [7]}, "metrics.deny[0]: must be a regular expression (a string)"),
        ({"alow": []}, "metrics.alow: unknown key"),
    ],
)
def test_other_mistakes_name_their_key(metrics: object, problem: str) -> None:
    assert problems(metrics) == [problem]


def test_an_empty_list_in_yaml_is_no_filter() -> None:
    metrics = settings(yaml.safe_load("deny:\nallow:\n")).metrics
    assert metrics.allow == () and metrics.deny == ()


def test_the_alerts_a_filter_starves_are_named_with_the_families_it_drops() -> None:
    metrics = MetricsSettings(deny=["modelarts_training_job_gone", "modelarts_training_job_nodes"])
    assert metrics.starved_alerts() == {
        "ModelArtsMonitorCannotPollJob": ["modelarts_training_job_gone"],
        "ModelArtsJobNodesMissing": ["modelarts_training_job_nodes"],
    }


def test_two_reads_of_the_same_block_are_equal_so_a_reload_sees_no_change() -> None:
    block = {"state_sets": "sparse", "deny": ["modelarts_training_job_info"]}
    assert settings(block).metrics == settings(dict(block)).metrics
    assert settings(block).metrics != settings({"state_sets": "sparse"}).metrics
