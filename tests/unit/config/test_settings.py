"""Loading and validating the config: env expansion, durations, errors that name the key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from monitor.config.loading import load_settings, parse_settings
from monitor.config.settings import (
    RESERVED_LABELS,
    FileSinkSettings,
    JobSettings,
    LogSinkSettings,
    Settings,
    TargetSettings,
    WebhookSinkSettings,
    check_labels,
    parse_duration,
)
from monitor.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "example.yaml"
EXAMPLE_TARGETS = EXAMPLE.with_name("example-targets.yaml")
SDK_ENV = {
    "HUAWEICLOUD_SDK_AK": "AKFROMENV",
    "HUAWEICLOUD_SDK_SK": "sk-from-env-0123456789",
    "HUAWEICLOUD_SDK_PROJECT_ID": "project-from-env",
}
SECRET = "s3cr3t-SK-value-that-must-never-leak"


def base(**sections: Any) -> dict[str, Any]:
    """A valid document; keyword arguments replace whole top-level sections."""
    doc: dict[str, Any] = {
        "api": {"endpoint": "https://modelarts.example.com", "project_id": "proj-1"},
        "auth": {"type": "aksk", "ak": "AKEXPLICIT", "sk": "sk-explicit"},
    }
    doc.update(copy.deepcopy(sections))
    return doc


def problems_of(doc: object, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_settings(doc, env={} if env is None else env)
    return info.value.problems


# --- the example config ---------------------------------------------------------------------


def test_example_config_loads_with_sdk_environment_variables() -> None:
    settings = load_settings(EXAMPLE, env=SDK_ENV)

    assert settings.api.project_id == "project-from-env"
    assert settings.auth.ak == "AKFROMENV"
    assert settings.auth.sk.get_secret_value() == "sk-from-env-0123456789"
    assert [s.type for s in settings.events.sinks] == ["log", "console", "file", "webhook"]
    assert any(job.interval is not None for job in settings.jobs)
    assert all(job.labels for job in settings.jobs)


def test_example_config_without_credentials_names_the_key_that_needs_them() -> None:
    env = {k: v for k, v in SDK_ENV.items() if k != "HUAWEICLOUD_SDK_SK"}
    with pytest.raises(ConfigError) as info:
        load_settings(EXAMPLE, env=env)
    assert info.value.problems == ["auth.sk: environment variable HUAWEICLOUD_SDK_SK is not set"]


def _model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        keys.add(path)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys |= _model_keys(annotation, f"{path}.")
    return keys


def _doc_keys(node: object, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    if isinstance(node, dict):
        for k, v in node.items():
            path = f"{prefix}{k}"
            keys.add(path)
            keys |= _doc_keys(v, f"{path}.")
    elif isinstance(node, list):
        for item in node:
            keys |= _doc_keys(item, prefix)
    return keys


def test_example_config_shows_every_key_the_schema_accepts() -> None:
    """A key added to the schema but not to the example would be undiscoverable for users."""
    doc = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    shown = _doc_keys(doc)

    expected = _model_keys(Settings) - {"targets"} | {
        "jobs.id",
        "jobs.labels",
        "jobs.interval",
        "events.sinks.type",
        *(f"events.sinks.{k}" for k in FileSinkSettings.model_fields),
        *(f"events.sinks.{k}" for k in WebhookSinkSettings.model_fields),
    }
    assert expected - shown == set()
    assert {s["type"] for s in doc["events"]["sinks"]} == {"log", "console", "file", "webhook"}


def test_the_targets_example_shows_every_key_a_target_takes_and_loads() -> None:
    """``targets:`` cannot sit beside the top-level ``api`` of ``example.yaml`` (both forms
    are an error), so its keys have an example of their own, which must load."""
    doc = yaml.safe_load(EXAMPLE_TARGETS.read_text(encoding="utf-8"))
    shown = _doc_keys(doc)
    target_keys = {"targets", *(f"targets.{k}" for k in TargetSettings.model_fields)}
    assert target_keys - shown == set()
    env = {
        "BEIJING_PROJECT_ID": "proj-bj",
        "SINGAPORE_PROJECT_ID": "proj-sg",
        "SINGAPORE_AK": "AKSG",
        "SINGAPORE_SK": "sk-sg",
    }
    settings = load_settings(EXAMPLE_TARGETS, env=env)
    assert settings.targets is not None
    assert [t.name for t in settings.targets] == ["beijing", "singapore"]


# --- ${VAR} expansion -----------------------------------------------------------------------


def test_env_references_are_expanded_in_strings_lists_and_job_labels() -> None:
    doc = base(
        api={"endpoint": "https://${HOST}:8443", "project_id": "${PROJECT}"},
        jobs=[
            {"id": "job-a", "labels": {"team": "${TEAM}", "env": "${ENV_NAME:-prod}"}},
            {"id": "${SECOND_JOB}", "interval": "${SLOW:-5m}"},
        ],
        events={"sinks": [{"type": "file", "path": "${LOG_DIR:-/tmp}/events.jsonl"}]},
    )
    env = {"HOST": "ma.example.com", "PROJECT": "p-7", "TEAM": "nlp", "SECOND_JOB": "job-b"}

    s = parse_settings(doc, env=env)

    assert s.api.endpoint == "https://ma.example.com:8443"
    assert s.api.project_id == "p-7"
    assert s.jobs[0].labels == {"team": "nlp", "env": "prod"}
    assert s.jobs[1].id == "job-b"
    assert s.jobs[1].interval == 300.0
    assert s.events.sinks[0] == FileSinkSettings(type="file", path="/tmp/events.jsonl")


def test_a_set_variable_wins_over_its_default_and_an_empty_default_is_allowed() -> None:
    doc = base(jobs=[{"id": "a", "labels": {"team": "${TEAM:-default}", "x": "${NONE:-}"}}])

    s = parse_settings(doc, env={"TEAM": "vision"})

    assert s.jobs[0].labels == {"team": "vision", "x": ""}


def test_values_from_the_environment_are_taken_literally() -> None:
    """A secret with YAML or ``${...}`` syntax in it is neither re-parsed nor re-expanded."""
    tricky = "a: b # ${OTHER} 'quoted'"
    doc = base(auth={"type": "aksk", "ak": "AK", "sk": "${SK}"})

    s = parse_settings(doc, env={"SK": tricky, "OTHER": "oops"})

    assert s.auth.sk.get_secret_value() == tricky


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        (base(auth={"type": "aksk", "ak": "AK", "sk": "${MISSING_SK}"}), "auth.sk"),
        (
            base(jobs=[{"id": "a"}, {"id": "b", "labels": {"team": "${NO_TEAM}"}}]),
            "jobs[1].labels.team",
        ),
        (
            base(events={"sinks": [{"type": "log"}, {"type": "file", "path": "${NO_DIR}/x"}]}),
            "events.sinks[1].path",
        ),
    ],
)
def test_an_unset_variable_without_default_is_an_error_naming_the_key(doc: Any, path: str) -> None:
    problems = problems_of(doc)

    assert len(problems) == 1
    assert problems[0].startswith(f"{path}: environment variable ")
    assert "is not set" in problems[0]


# --- HUAWEICLOUD_SDK_* defaults ------------------------------------------------------------


def test_sdk_environment_variables_fill_absent_project_id_ak_and_sk() -> None:
    doc = {"api": {"endpoint": "https://modelarts.example.com"}}

    s = parse_settings(doc, env=SDK_ENV)

    assert s.api.project_id == "project-from-env"
    assert s.auth.ak == "AKFROMENV"
    assert s.auth.sk.get_secret_value() == "sk-from-env-0123456789"


def test_explicit_values_win_over_sdk_environment_variables() -> None:
    s = parse_settings(base(), env=SDK_ENV)

    assert s.api.project_id == "proj-1"
    assert s.auth.ak == "AKEXPLICIT"
    assert s.auth.sk.get_secret_value() == "sk-explicit"


def test_sdk_credentials_are_not_added_when_auth_type_is_none() -> None:
    s = parse_settings(base(auth={"type": "none"}), env=SDK_ENV)

    assert s.auth.type == "none"
    assert s.auth.ak == ""
    assert s.auth.sk.get_secret_value() == ""


def test_empty_sdk_environment_variables_do_not_count_as_credentials() -> None:
    env = {"HUAWEICLOUD_SDK_AK": "", "HUAWEICLOUD_SDK_SK": "", "HUAWEICLOUD_SDK_PROJECT_ID": ""}
    problems = problems_of({"api": {"endpoint": "https://modelarts.example.com"}}, env)

    assert any(p.startswith("auth: type aksk needs ak and sk") for p in problems)
    assert any(p.startswith("api.project_id: required") for p in problems)


# --- durations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("500ms", 0.5),
        ("15s", 15.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("7d", 604800.0),
        (30, 30.0),
        (2.5, 2.5),
        ("1.5s", 1.5),
        ("45", 45.0),
    ],
)
def test_durations_accept_units_and_plain_seconds(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)
    s = parse_settings(base(poll={"interval": value}, api={**base()["api"], "timeout": value}))
    assert s.poll.interval == pytest.approx(seconds)
    assert s.api.timeout == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    ["0s", "-1", "ten", "5 minutes", True, "", 0, -1, "1w", float("nan"), float("inf")],
)
def test_invalid_durations_are_rejected_naming_the_key(value: object) -> None:
    with pytest.raises(ValueError, match=r"duration|greater than zero"):
        parse_duration(value)

    problems = problems_of(base(poll={"interval": value}))

    assert len(problems) == 1
    assert problems[0].startswith("poll.interval: ")


# --- unknown keys ---------------------------------------------------------------------------


def test_unknown_keys_at_every_depth_are_all_reported_with_their_full_path() -> None:
    doc = base(
        poll={"intervall": "10s"},
        jobs=[{"id": "a", "lables": {"team": "x"}}],
        events={"sinks": [{"type": "log"}, {"type": "file", "path": "/tmp/e", "pathh": "/x"}]},
        log={"levle": "debug"},
        sever={"listen": "127.0.0.1:9888"},
    )

    problems = problems_of(doc)

    assert sorted(problems) == sorted(
        [
            "poll.intervall: unknown key",
            "jobs[0].lables: unknown key",
            "events.sinks[1].pathh: unknown key",
            "log.levle: unknown key",
            "sever: unknown key",
        ]
    )
    assert all("\n" not in p for p in problems)
    assert "; ".join(problems) == str(ConfigError(problems))


def test_a_problem_in_the_log_section_keeps_its_log_prefix() -> None:
    """``log`` is also a sink type; only the sink's union branch is dropped from the path."""
    assert problems_of(base(log={"level": "loud"})) == [
        "log.level: Input should be 'debug', 'info', 'warning' or 'error'"
    ]


# --- bad values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            base(api={"endpoint": "ftp://x.example.com", "project_id": "p"}),
            "api.endpoint: must be an http:// or https:// URL",
        ),
        (
            base(api={"endpoint": "modelarts.example.com", "project_id": "p"}),
            "api.endpoint: must be an http",
        ),
        (base(server={"listen": "9888"}), "server.listen: '9888' is not host:port"),
        (base(server={"listen": "localhost"}), "server.listen: 'localhost' is not host:port"),
        (base(server={"listen": "127.0.0.1:http"}), "server.listen: "),
        (base(server={"listen": "127.0.0.1:70000"}), "server.listen: "),
        (base(jobs=[{"id": "a"}, {"id": "b"}, {"id": "a"}]), "jobs[2].id: 'a' is listed twice"),
        (base(jobs=[{"id": "has/slash"}]), "jobs[0].id: must be 1-64 letters"),
        (
            base(jobs=[{"id": "a", "labels": {"team-name": "x"}}]),
            "jobs[0].labels: 'team-name' is not a valid Prometheus label name",
        ),
        (base(jobs=[{"id": "a", "labels": {"1st": "x"}}]), "jobs[0].labels: '1st' is not a valid"),
        (
            base(jobs=[{"id": "a", "labels": {"__meta": "x"}}]),
            "jobs[0].labels: '__meta' is not a valid",
        ),
        (base(jobs=[{"id": "a", "labels": {"team": 7}}]), "jobs[0].labels.team: "),
        (base(auth={"type": "aksk"}), "auth: type aksk needs ak and sk"),
        (base(auth={"type": "aksk", "ak": "AK"}), "auth: type aksk needs ak and sk"),
        (base(auth={"type": "kerberos"}), "auth.type: "),
        (base(api={"endpoint": "https://modelarts.example.com"}), "api.project_id: required"),
        (
            base(poll={"concurrency": 0}),
            "poll.concurrency: Input should be greater than or equal to 1",
        ),
        (
            base(events={"sinks": [{"type": "pager", "url": "https://x"}]}),
            "events.sinks[0]: Input tag 'pager'",
        ),
        (base(events={"sinks": [{"path": "/tmp/x"}]}), "events.sinks[0]: Unable to extract tag"),
        (
            base(events={"sinks": [{"type": "file"}]}),
            "events.sinks[0].path: required key is missing",
        ),
        ({"auth": {"type": "none"}}, "api: required key is missing"),
    ],
)
def test_bad_values_are_reported_with_the_key_path(doc: dict[str, Any], expected: str) -> None:
    problems = problems_of(doc)

    assert len(problems) == 1, problems
    assert problems[0].startswith(expected)


@pytest.mark.parametrize("name", sorted(RESERVED_LABELS))
def test_label_names_the_monitor_sets_itself_are_rejected(name: str) -> None:
    problems = problems_of(base(jobs=[{"id": "a", "labels": {name: "x"}}]))

    assert problems == [
        f"jobs[0].labels: {name!r} is set by the monitor itself; choose another name"
    ]


def test_cross_checks_report_every_problem_at_once() -> None:
    doc = {
        "api": {"endpoint": "https://modelarts.example.com"},
        "jobs": [{"id": "a"}, {"id": "a"}],
    }

    problems = problems_of(doc)

    assert [p.split(":")[0] for p in problems] == ["jobs[1].id", "auth", "api.project_id"]


def test_a_config_that_is_not_a_mapping_is_an_error() -> None:
    assert problems_of(["api"]) == ["$: the config must be a mapping, got list"]


# --- files ----------------------------------------------------------------------------------


def test_yaml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "api:\n  endpoint: https://x.example.com\n  project_id: [p\nauth:\n  type: none\n",
        encoding="utf-8",
    )

    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})

    (problem,) = info.value.problems
    assert problem.startswith(f"{path}: ")
    assert "line 4" in problem


def test_unreadable_config_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"

    with pytest.raises(ConfigError, match="cannot read config"):
        load_settings(missing, env={})
    with pytest.raises(ConfigError, match="cannot read config"):
        load_settings(tmp_path, env={})  # a directory


def test_empty_config_file_asks_for_the_api_section(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n", encoding="utf-8")

    with pytest.raises(ConfigError) as info:
        load_settings(path, env=SDK_ENV)

    assert info.value.problems == ["api: required key is missing"]


def test_load_settings_reads_a_file_written_by_the_user(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(base(jobs=[{"id": "a", "interval": "1m"}])), encoding="utf-8")

    s = load_settings(path, env={})

    assert s.jobs[0].interval == 60.0


# --- secrets --------------------------------------------------------------------------------


def test_the_secret_key_never_appears_in_repr_or_str_of_settings() -> None:
    s = parse_settings(base(auth={"type": "aksk", "ak": "AK", "sk": SECRET}))

    assert s.auth.sk.get_secret_value() == SECRET
    for text in (repr(s), str(s), repr(s.auth), str(s.auth), s.model_dump_json()):
        assert SECRET not in text


def test_the_secret_key_never_appears_in_config_errors() -> None:
    doc = base(
        api={"endpoint": "not-a-url", "project_id": "p"},
        auth={"type": "aksk", "ak": "AK", "sk": SECRET, "skk": SECRET},
    )

    with pytest.raises(ConfigError) as info:
        parse_settings(doc, env={})

    assert SECRET not in str(info.value)
    assert all(SECRET not in p for p in info.value.problems)


# --- interval_for / jitter_for --------------------------------------------------------------


def test_a_job_interval_overrides_the_poll_interval() -> None:
    s = parse_settings(
        base(poll={"interval": "30s"}, jobs=[{"id": "a"}, {"id": "b", "interval": "5m"}])
    )

    assert s.interval_for(s.jobs[0]) == 30.0
    assert s.interval_for(s.jobs[1]) == 300.0


def test_jitter_defaults_to_a_tenth_of_each_jobs_interval() -> None:
    s = parse_settings(
        base(poll={"interval": "30s"}, jobs=[{"id": "a"}, {"id": "b", "interval": "5m"}])
    )

    assert s.jitter_for_interval(s.interval_for(s.jobs[0])) == pytest.approx(3.0)
    assert s.jitter_for_interval(s.interval_for(s.jobs[1])) == pytest.approx(30.0)


def test_explicit_jitter_is_used_but_capped_at_half_the_interval() -> None:
    s = parse_settings(
        base(
            poll={"interval": "30s", "jitter": "20s"},
            jobs=[{"id": "a"}, {"id": "b", "interval": "2m"}, {"id": "c", "interval": "500ms"}],
        )
    )

    assert s.jitter_for_interval(s.interval_for(s.jobs[0])) == 15.0
    assert s.jitter_for_interval(s.interval_for(s.jobs[1])) == 20.0
    assert s.jitter_for_interval(s.interval_for(s.jobs[2])) == 0.25


def test_defaults_when_sections_are_left_out() -> None:
    s = parse_settings(base())

    assert s.poll.interval == 30.0
    assert s.poll.jitter is None
    assert s.poll.concurrency == 16
    assert s.api.timeout == 10.0
    assert [sink.type for sink in s.events.sinks] == ["log"]
    assert s.server.listen == "0.0.0.0:9888"
    assert (s.log.level, s.log.format) == ("info", "auto")
    assert s.jobs == []


def _label_names_set_by_families() -> list[str]:
    from monitor.exposition.families import FAMILIES, SHARED_LABELS

    return sorted({*SHARED_LABELS, *(name for f in FAMILIES for name in f.labels)})


@pytest.mark.parametrize("name", _label_names_set_by_families())
def test_every_label_name_a_job_family_sets_is_refused_as_a_job_label(name: str) -> None:
    """Read from the family table, not from the reserved set: a family that gains a label
    (as recoveries_total gained recover and recover_result) reserves it with no second list."""
    for doc, where in (
        (base(jobs=[{"id": "a", "labels": {name: "x"}}]), "jobs[0].labels"),
        (
            base(discovery={"labels": [{"name_regex": ".*", "labels": {name: "x"}}]}),
            "discovery.labels[0].labels",
        ),
    ):
        assert problems_of(doc) == [
            f"{where}: {name!r} is set by the monitor itself; choose another name"
        ]


# --- values matched whole; odd numbers and names refused in one line -------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        pytest.param(lambda: JobSettings(id="abc\n"), "must be 1-64 letters", id="job-id"),
        pytest.param(
            lambda: check_labels({"team\n": "x"}), "is not a valid Prometheus", id="label-name"
        ),
        pytest.param(
            lambda: LogSinkSettings(type="log", name="log\n"), "1-100 letters", id="sink-name"
        ),
    ],
)
def test_a_value_valid_but_for_a_trailing_newline_is_refused(build: Any, message: str) -> None:
    """``re.match`` with ``$`` matches before a final newline; the rules match the whole value
    (the loader refuses control characters too, but these models are built in code as well)."""
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        pytest.param(
            base(server={"listen": "0.0.0.0:\u0669\u0668\u0668\u0668"}),
            "server.listen: '0.0.0.0:\u0669\u0668\u0668\u0668' is not host:port",
            id="arabic-indic-digits-port",
        ),
        pytest.param(
            base(server={"listen": "0.0.0.0:\u00b2"}),
            "server.listen: '0.0.0.0:\u00b2' is not host:port",
            id="superscript-port",
        ),
        pytest.param(
            base(
                api={"endpoint": "https://m.example.com", "project_id": "p", "ca_file": "a" * 5000}
            ),
            f"api.ca_file: {'a' * 200!r} is not a readable file: File name too long",
            id="ca-file-name-too-long",
        ),
        pytest.param(
            base(poll={"jitter": 10**400}),
            "poll.jitter: must be a finite duration",
            id="duration-beyond-float-range",
        ),
        pytest.param(
            base(
                discovery={
                    "filters": [
                        {"key": "create_time", "operator": "between", "value": [0, 10**400]}
                    ]
                }
            ),
            "discovery.filters[0].value: between needs two numbers [low, high] with low <= high",
            id="between-beyond-float-range",
        ),
    ],
)
def test_odd_values_that_used_to_raise_a_traceback_are_one_line(
    doc: dict[str, Any], expected: str
) -> None:
    assert problems_of(doc) == [expected]


# --- temporary credentials, the metadata service and regions ---------------------------------

TEMP_TOKEN = "temporary-security-token-that-must-never-leak"


def test_the_security_token_comes_from_the_sdk_variable_like_ak_and_sk() -> None:
    env = {**SDK_ENV, "HUAWEICLOUD_SDK_SECURITY_TOKEN": TEMP_TOKEN}
    s = parse_settings({"api": {"endpoint": "https://modelarts.example.com"}}, env=env)
    assert s.auth.security_token is not None
    assert s.auth.security_token.get_secret_value() == TEMP_TOKEN
    explicit = base(auth={"type": "aksk", "ak": "A", "sk": "S", "security_token": "mine"})
    written = parse_settings(explicit, env=env).auth.security_token
    assert written is not None and written.get_secret_value() == "mine"


def test_no_security_token_by_default_and_an_empty_one_is_none() -> None:
    assert parse_settings(base(), env={}).auth.security_token is None
    doc = base(auth={"type": "aksk", "ak": "A", "sk": "S", "security_token": ""})
    assert parse_settings(doc, env={}).auth.security_token is None


def test_the_security_token_never_appears_in_repr_str_or_errors() -> None:
    doc = base(auth={"type": "aksk", "ak": "A", "sk": "S", "security_token": TEMP_TOKEN})
    s = parse_settings(doc, env={})
    assert TEMP_TOKEN not in repr(s) and TEMP_TOKEN not in str(s)
    doc["api"]["endpoint"] = "not-a-url"
    assert all(TEMP_TOKEN not in p for p in problems_of(doc))


def test_a_security_token_with_another_auth_type_is_refused() -> None:
    doc = base(auth={"type": "metadata", "security_token": TEMP_TOKEN})
    assert problems_of(doc) == [
        "auth.security_token: only used with type aksk (a temporary AK/SK), not with type metadata"
    ]


def test_auth_type_metadata_needs_no_keys_and_defaults_to_the_link_local_service() -> None:
    s = parse_settings(base(auth={"type": "metadata"}), env=SDK_ENV)
    assert s.auth.type == "metadata"
    assert s.auth.metadata_url == "http://169.254.169.254"
    assert s.auth.ak == "", "the SDK variables fill ak/sk only for type aksk"
    pointed = base(auth={"type": "metadata", "metadata_url": "http://127.0.0.1:8080/"})
    assert parse_settings(pointed, env={}).auth.metadata_url == "http://127.0.0.1:8080"


def test_a_metadata_url_with_a_path_is_refused() -> None:
    doc = base(auth={"type": "metadata", "metadata_url": "http://169.254.169.254/openstack"})
    assert problems_of(doc) == [
        "auth.metadata_url: must be an http:// or https:// URL without a path"
    ]


def test_a_region_alone_is_enough_for_the_api_section() -> None:
    s = parse_settings(base(api={"region": "ap-southeast-1", "project_id": "p"}), env={})
    assert s.api.region == "ap-southeast-1"
    assert s.api.endpoint == "", "looked up in the region table when the client is built"


def test_neither_endpoint_nor_region_is_one_problem_naming_both() -> None:
    assert problems_of(base(api={"project_id": "p"})) == ["api: endpoint or region is required"]


def test_a_region_that_is_not_a_region_id_is_refused() -> None:
    doc = base(api={"region": "https://modelarts.cn-north-4.myhuaweicloud.com", "project_id": "p"})
    [problem] = problems_of(doc)
    assert problem.startswith("api.region: ")
    assert "is not a region id such as cn-north-4" in problem
