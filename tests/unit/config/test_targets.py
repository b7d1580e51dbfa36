"""``targets:``: several projects and regions in one config, and the single-project form as
the one implicit target. Every problem is one line naming the key to fix."""

from __future__ import annotations

from typing import Any

import pytest

from monitor.config.loading import parse_settings
from monitor.config.settings import Settings
from monitor.config.targets import targets_of
from monitor.errors import ConfigError

SDK_ENV = {"HUAWEICLOUD_SDK_AK": "AKFROMENV", "HUAWEICLOUD_SDK_SK": "sk-from-env-0123456789"}


def target(name: str, project: str = "", **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": name,
        "api": {"region": "cn-north-4", "project_id": project or f"proj-{name}"},
        "auth": {"type": "aksk", "ak": f"AK-{name}", "sk": f"sk-{name}"},
    }
    doc.update(extra)
    return doc


def load(doc: dict[str, Any], env: dict[str, str] | None = None) -> Settings:
    return parse_settings(doc, env=env or {})


def problems(doc: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load(doc, env)
    return exc.value.problems


def test_a_single_project_config_is_one_unnamed_target_without_a_target_label() -> None:
    s = load(
        {
            "api": {"endpoint": "https://ma.example.com", "project_id": "p1"},
            "auth": {"type": "none"},
            "poll": {"interval": "15s"},
            "jobs": [{"id": "job-1", "labels": {"team": "nlp", "target": "prod"}}],
            "discovery": {},
        }
    )
    (only,) = targets_of(s)
    assert only.name == ""
    assert only.project_id == "p1"
    assert only.poll.interval == 15.0
    assert [j.id for j in only.jobs] == ["job-1"]
    assert only.discovery is not None
    # No target label is added, and a job may still call one of its own labels "target".
    assert only.job_labels(only.jobs[0].labels) == {"team": "nlp", "target": "prod"}


def test_each_target_has_its_own_project_credentials_jobs_and_labels() -> None:
    s = load(
        {
            "targets": [
                target(
                    "beijing",
                    labels={"region": "bj4", "team": "infra"},
                    jobs=[{"id": "job-1", "labels": {"team": "nlp"}}],
                    discovery={"workspaces": ["ws-1"]},
                ),
                target("shanghai", api={"endpoint": "https://sh.example.com", "project_id": "p2"}),
            ]
        }
    )
    bj, sh = targets_of(s)
    assert (bj.name, bj.project_id, bj.auth.ak) == ("beijing", "proj-beijing", "AK-beijing")
    assert (sh.name, sh.project_id, sh.api.endpoint) == ("shanghai", "p2", "https://sh.example.com")
    assert bj.discovery is not None and bj.discovery.workspaces == ["ws-1"]
    assert sh.discovery is None and sh.jobs == ()
    # The target's name and labels first, the job's own last: they win over the target's.
    assert bj.job_labels(bj.jobs[0].labels) == {"target": "beijing", "region": "bj4", "team": "nlp"}
    assert sh.job_labels({}) == {"target": "shanghai"}


def test_a_targets_poll_overrides_only_the_keys_it_names() -> None:
    s = load(
        {
            "poll": {"interval": "10s", "rate_limit": 5, "concurrency": 8},
            "targets": [
                target("slow", poll={"rate_limit": 1, "retry": {"max_backoff": "1m"}}),
                target("plain"),
            ],
        }
    )
    slow, plain = targets_of(s)
    assert (slow.poll.interval, slow.poll.rate_limit, slow.poll.retry.max_backoff) == (
        10.0,
        1.0,
        60.0,
    )
    assert slow.poll.concurrency == 8
    assert plain.poll == s.poll


@pytest.mark.parametrize(("key", "value"), [("concurrency", 4), ("jitter", "1s")])
def test_a_target_may_not_set_what_the_process_shares(key: str, value: object) -> None:
    assert problems({"targets": [target("a", poll={key: value})]}) == [
        f"targets[0].poll.{key}: is the process's, shared by every target; "
        "set it in the top-level poll"
    ]


def test_top_level_api_auth_jobs_or_discovery_beside_targets_is_one_error_naming_them() -> None:
    doc = {
        "api": {"region": "cn-north-4", "project_id": "p"},
        "jobs": [{"id": "job-1"}],
        "discovery": {},
        "targets": [target("a")],
    }
    assert problems(doc) == [
        "api, jobs, discovery: not allowed beside targets; move them into a target "
        "(targets[].api, .auth, .jobs, .discovery)"
    ]


def test_sdk_environment_variables_do_not_fill_a_targets_credentials() -> None:
    doc = {"targets": [target("a", auth={"type": "aksk"})]}
    assert problems(doc, SDK_ENV) == ["targets[0].auth: type aksk needs ak and sk"]


@pytest.mark.parametrize("name", ["Beijing", "", "a" * 64, "bei jing", "bj.4"])
def test_a_target_name_outside_1_to_63_of_a_z_0_9_underscore_dash_is_refused(name: str) -> None:
    (problem,) = problems({"targets": [target(name)]})
    assert problem.startswith("targets[0].name: ")
    assert problem.endswith("is not 1-63 of a-z, 0-9, '_' or '-'")


def test_two_targets_with_one_name_is_an_error() -> None:
    assert problems({"targets": [target("a"), target("a", "p2")]}) == [
        "targets[1].name: 'a' is also targets[0]'s name"
    ]


def test_a_job_listed_in_two_targets_is_an_error_naming_both() -> None:
    doc = {
        "targets": [
            target("east", jobs=[{"id": "job-1"}]),
            target("west", jobs=[{"id": "job-2"}, {"id": "job-1"}, {"id": "job-2"}]),
        ]
    }
    assert problems(doc) == [
        "targets[1].jobs[1].id: 'job-1' is listed in targets east and west",
        "targets[1].jobs[2].id: 'job-2' is listed twice",
    ]


def test_a_job_or_rule_label_named_target_is_refused_in_a_target() -> None:
    doc = {
        "targets": [
            target(
                "a",
                jobs=[{"id": "job-1", "labels": {"target": "x"}}],
                discovery={"labels": [{"name_regex": ".", "labels": {"target": "y"}}]},
            )
        ]
    }
    assert problems(doc) == [
        "targets[0].jobs[0].labels.target: set by the monitor itself (the target's name)",
        "targets[0].discovery.labels[0].labels.target: set by the monitor itself "
        "(the target's name)",
    ]


def test_a_target_label_named_target_or_a_reserved_name_is_refused() -> None:
    assert problems({"targets": [target("b", labels={"target": "z"})]}) == [
        "targets[0].labels: 'target' is set by the monitor itself (the target's name)"
    ]
    (problem,) = problems({"targets": [target("b", labels={"job_id": "z"})]})
    assert problem.startswith("targets[0].labels: 'job_id' is set by the monitor itself")


def test_each_targets_credentials_and_project_are_checked_under_its_own_path() -> None:
    doc = {
        "targets": [
            target("a", auth={"type": "token", "user": "u"}),
            target("b", api={"region": "cn-north-4"}, auth={"type": "none"}),
        ]
    }
    assert problems(doc) == [
        "targets[0].auth: type token needs password, domain",
        "targets[1].api.project_id: required",
    ]


def test_an_empty_targets_list_is_an_error() -> None:
    assert problems({"targets": []}) == ["targets: needs at least one target (or leave it out)"]


def test_without_targets_the_api_section_is_still_required() -> None:
    assert problems({}) == ["api: required key is missing"]
