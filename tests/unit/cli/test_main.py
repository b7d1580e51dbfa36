"""The ``modelarts-monitor`` commands: exit codes, one line per problem, ``check`` and ``once``.

``main`` runs in-process (it calls ``asyncio.run``, so these tests are synchronous); the
simulator it talks to runs as a real ``modelarts-monitor simulate`` subprocess on loopback.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from monitor import __version__
from monitor.cli.main import main

pytestmark = pytest.mark.usefixtures("isolated_cli")

AK, SK = "AKCLITEST0001", "cli-simulator-secret"
SCENARIO = {
    "jobs": [
        {
            "id": "job-a",
            "name": "alpha",
            "node_count": 2,
            "tasks": ["worker-0", "worker-1"],
            "timeline": [
                {
                    "at": 0,
                    "phase": "Running",
                    "secondary_phase": "Running",
                    "nodes": 2,
                    "run": {"start_type": "init_or_rescheduled"},
                }
            ],
        },
        {
            "id": "job-b",
            "name": "beta",
            "timeline": [{"at": 0, "phase": "Pending", "secondary_phase": "Queuing"}],
        },
    ]
}
START_TIMEOUT = 10.0


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without Huawei SDK or simulator credentials that could change a result."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("HUAWEICLOUD_SDK_", "SIMULATOR_"))
    }
    env.update(extra)
    return env


def stop_process(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    if proc.stdout is not None:
        proc.stdout.close()


def wait_for_port(proc: subprocess.Popen[str], log: Path) -> int:
    """The port the simulator announces on stdout, waiting at most ``START_TIMEOUT`` seconds."""
    assert proc.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"simulator exited with {proc.returncode}: {log.read_text()}")
            if sel.select(timeout=0.2):
                line = proc.stdout.readline()
                if m := re.search(r"listening on http://127\.0\.0\.1:(\d+)", line):
                    return int(m.group(1))
    pytest.fail(f"simulator did not start within {START_TIMEOUT:g}s: {log.read_text()}")


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A signing ``modelarts-monitor simulate`` subprocess on 127.0.0.1; yields its endpoint."""
    tmp = tmp_path_factory.mktemp("sim")
    scenario = tmp / "scenario.yaml"
    scenario.write_text(yaml.safe_dump(SCENARIO), encoding="utf-8")
    log = tmp / "simulator.log"
    argv = [sys.executable, "-m", "monitor", "simulate", "--scenario", str(scenario)]
    argv += ["--listen", "127.0.0.1:0", "--manual-clock", "--ak", AK]
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=clean_env(SIMULATOR_SK=SK),
            cwd=tmp,
        )
    try:
        port = wait_for_port(proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


def write_config(tmp_path: Path, endpoint: str, jobs: list[str], sk: str = SK) -> Path:
    doc = {
        "api": {"endpoint": endpoint, "project_id": "proj-cli", "timeout": "5s"},
        "auth": {"type": "aksk", "ak": AK, "sk": sk},
        "jobs": [{"id": j, "labels": {"team": "nlp"}} for j in jobs],
        "state": {"path": str(tmp_path / "state.db")},
        "log": {"level": "warning", "format": "json"},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


BAD_CONFIG = """\
api:
  endpoint: ftp://modelarts.example.com
  project_id: p
auth: {type: none}
poll:
  intervall: 10s
jobs:
  - id: a
    lables: {team: nlp}
sever:
  listen: 127.0.0.1:9888
"""
BAD_CONFIG_LINES = {
    "config error: api.endpoint: must be an http:// or https:// URL",
    "config error: poll.intervall: unknown key",
    "config error: jobs[0].lables: unknown key",
    "config error: sever: unknown key",
}


# --- bad config, bad arguments: exit 2 ------------------------------------------------------


def test_a_bad_config_exits_2_with_one_config_error_line_per_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD_CONFIG, encoding="utf-8")

    rc = main(["check", "--config", str(path)])

    out, err = capsys.readouterr()
    assert rc == 2
    assert set(err.splitlines()) == BAD_CONFIG_LINES
    assert len(err.splitlines()) == len(BAD_CONFIG_LINES)
    assert out == ""


def test_a_bad_config_in_a_real_process_exits_2_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD_CONFIG, encoding="utf-8")

    proc = subprocess.run(
        [sys.executable, "-m", "monitor", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        env=clean_env(),
        cwd=tmp_path,
        check=False,
    )

    assert proc.returncode == 2
    assert set(proc.stderr.splitlines()) == BAD_CONFIG_LINES
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("command", ["run", "check", "once"])
def test_a_ca_file_that_is_not_pem_exits_2_naming_the_key_not_a_listen_error(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, "https://127.0.0.1:1", ["a"])
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    bundle = tmp_path / "ca.pem"
    bundle.write_text("this is not a certificate\n", encoding="utf-8")
    doc["api"]["ca_file"] = str(bundle)
    doc["server"] = {"listen": "127.0.0.1:0"}
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")

    assert main([command, "--config", str(path)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"config error: api.ca_file: cannot load {bundle} as PEM CAs: ")
    assert "listen" not in line


def test_run_on_an_address_in_use_says_cannot_listen_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = write_config(tmp_path, "https://127.0.0.1:1", ["a"])
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        doc["server"] = {"listen": f"127.0.0.1:{port}"}
        path.write_text(yaml.safe_dump(doc), encoding="utf-8")
        assert main(["run", "--config", str(path)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"cannot listen on 127.0.0.1:{port}: ")


@pytest.mark.parametrize("command", ["run", "check", "once"])
def test_a_missing_config_file_exits_2_naming_the_file(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.yaml"

    rc = main([command, "--config", str(missing)])

    err = capsys.readouterr().err
    assert rc == 2
    assert err.splitlines() == [
        f"config error: {missing}: cannot read config: No such file or directory"
    ]


def test_a_yaml_syntax_error_exits_2_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("api:\n  endpoint: [oops\n", encoding="utf-8")

    rc = main(["once", "--config", str(path)])

    (line,) = capsys.readouterr().err.splitlines()
    assert rc == 2
    assert line.startswith(f"config error: {path}: ")
    assert re.search(r"line \d+", line)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["check"],
        ["once", "--config"],
        ["run", "--config", "x.yaml", "--bogus"],
        ["demo", "--speed", "0"],
        ["demo", "--speed", "fast"],
        ["demo", "--listen", "nowhere"],
        ["simulate", "--scenario", "s.yaml", "--listen", "127.0.0.1:99999"],
    ],
)
def test_unknown_commands_and_bad_arguments_exit_2_with_usage(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)

    assert info.value.code == 2
    assert "usage: modelarts-monitor" in capsys.readouterr().err


def test_demo_speed_above_10_exits_2_saying_the_limit(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--speed", "11"])

    assert info.value.code == 2
    assert "at most 10" in capsys.readouterr().err


def test_version_prints_the_version_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])

    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"modelarts-monitor {__version__}"


def test_simulate_with_an_access_key_but_no_secret_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump(SCENARIO), encoding="utf-8")

    rc = main(["simulate", "--scenario", str(scenario), "--listen", "127.0.0.1:0", "--ak", AK])

    assert rc == 2
    assert capsys.readouterr().err.splitlines() == [
        "config error: --ak needs the secret key in the environment variable SIMULATOR_SK"
    ]


@pytest.mark.parametrize("command", ["simulate", "demo"])
def test_an_invalid_scenario_file_exits_2_with_one_line_per_problem(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text("speed: fast\njobs: []\n", encoding="utf-8")

    rc = main([command, "--scenario", str(scenario), "--listen", "127.0.0.1:0"])

    err = capsys.readouterr().err
    assert rc == 2
    assert err.splitlines() == [
        f"scenario error: {scenario}: speed: expected a number, got 'fast'",
        f"scenario error: {scenario}: jobs: expected at least one job",
    ]
    assert "Traceback" not in err


# --- check against the simulator ------------------------------------------------------------


def test_check_prints_one_ok_line_per_job_and_exits_0(
    simulator: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, simulator, ["job-a", "job-b"])

    rc = main(["check", "--config", str(config)])

    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out.splitlines() == [
        "job job-a: ok (alpha, Running)",
        "job job-b: ok (beta, Pending)",
    ]


def test_check_exits_1_with_a_clear_line_for_a_job_the_api_does_not_know(
    simulator: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, simulator, ["job-a", "job-missing"])

    rc = main(["check", "--config", str(config)])

    lines = capsys.readouterr().out.splitlines()
    assert rc == 1
    assert lines[0] == "job job-a: ok (alpha, Running)"
    assert lines[1].startswith("job job-missing: not_found: job not found: ")
    assert "ModelArts.2775" in lines[1]
    assert len(lines) == 2


def test_check_with_a_wrong_secret_key_reports_an_auth_error_per_job(
    simulator: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = "definitely-not-the-secret"
    config = write_config(tmp_path, simulator, ["job-a", "job-b"], sk=wrong)

    rc = main(["check", "--config", str(config)])

    out = capsys.readouterr().out
    assert rc == 1
    assert [line.split(":")[0:2] for line in out.splitlines()] == [
        ["job job-a", " auth_error"],
        ["job job-b", " auth_error"],
    ]
    assert wrong not in out


def test_check_with_no_jobs_validates_the_config_and_exits_0(
    simulator: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, simulator, [])

    rc = main(["check", "--config", str(config)])

    assert rc == 0
    assert capsys.readouterr().out.splitlines() == ["config ok; no jobs configured"]


def test_check_against_a_closed_port_exits_1_with_a_network_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # released again: nothing listens there
    config = write_config(tmp_path, f"http://127.0.0.1:{port}", ["job-a"])

    rc = main(["check", "--config", str(config)])

    (line,) = capsys.readouterr().out.splitlines()
    assert rc == 1
    assert line.startswith("job job-a: network_error: cannot reach ModelArts")


# --- once -----------------------------------------------------------------------------------


def split_once_output(out: str) -> dict[str, tuple[dict[str, Any], str]]:
    """``# job ID`` sections of ``once``: each job's snapshot JSON and its exposition text."""
    sections: dict[str, tuple[dict[str, Any], str]] = {}
    for chunk in re.split(r"^# job ", out, flags=re.MULTILINE)[1:]:
        job_id, _, rest = chunk.partition("\n")
        snapshot, end = json.JSONDecoder().raw_decode(rest)
        sections[job_id] = (snapshot, rest[end:].lstrip("\n"))
    return sections


def test_once_prints_the_snapshot_and_parseable_metric_lines(
    simulator: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, simulator, ["job-a", "job-b"])

    rc = main(["once", "--config", str(config), "--job", "job-a"])

    out, err = capsys.readouterr()
    assert rc == 0, err
    sections = split_once_output(out)
    assert list(sections) == ["job-a"]
    snapshot, exposition = sections["job-a"]
    assert snapshot["job_id"] == "job-a"
    assert snapshot["name"] == "alpha"
    assert snapshot["phase"] == "Running"
    assert snapshot["nodes"] == 2

    families = {f.name: f for f in text_string_to_metric_families(exposition)}
    phase = {s.labels["phase"]: s.value for s in families["modelarts_training_job_phase"].samples}
    assert phase["Running"] == 1.0
    assert sum(phase.values()) == 1.0
    (nodes,) = families["modelarts_training_job_nodes"].samples
    assert nodes.value == 2.0
    assert nodes.labels == {"job_id": "job-a", "job_name": "alpha", "team": "nlp"}
    assert all(
        s.labels["job_id"] == "job-a" and s.labels["team"] == "nlp"
        for f in families.values()
        for s in f.samples
    )


def test_once_without_job_polls_every_configured_job(
    simulator: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, simulator, ["job-a", "job-b"])

    rc = main(["once", "--config", str(config)])

    sections = split_once_output(capsys.readouterr().out)
    assert rc == 0
    assert list(sections) == ["job-a", "job-b"]
    assert sections["job-b"][0]["phase"] == "Pending"
    for _, exposition in sections.values():
        assert list(text_string_to_metric_families(exposition))


def test_once_with_a_job_id_not_in_the_config_exits_2(
    simulator: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, simulator, ["job-a"])

    rc = main(["once", "--config", str(config), "--job", "unknown-id-not-in-config"])

    out, err = capsys.readouterr()
    assert rc == 2
    assert err.splitlines() == [
        "config error: --job: 'unknown-id-not-in-config' is not one of the configured jobs"
    ]
    assert out == ""


def test_once_exits_1_when_the_api_does_not_know_the_job(
    simulator: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, simulator, ["job-missing"])

    rc = main(["once", "--config", str(config)])

    (line,) = capsys.readouterr().out.splitlines()
    assert rc == 1
    assert line.startswith("# job job-missing: not_found: ")
