"""The ``modelarts-monitor`` commands: exit codes, one line per problem, ``check`` and ``once``.

``main`` runs in-process (it calls ``asyncio.run``, so these tests are synchronous); the
simulator it talks to runs as a real ``modelarts-monitor simulate`` subprocess on loopback.
"""

from __future__ import annotations

import gc
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
from monitor.daemon import gc_thresholds

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


@pytest.fixture
def thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


@pytest.mark.usefixtures("thresholds")
def test_run_collects_young_objects_every_20000_allocations_from_before_the_config(
    tmp_path: Path,
) -> None:
    """A first round keeps nearly all it allocates; at CPython's 700 the collector walked
    the whole heap again and again as it grew (``daemon/gc_thresholds.py``). Set before the
    config is read: even one that fails to load leaves them set."""
    gc.set_threshold(700, 10, 10)
    assert main(["run", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert gc.get_threshold() == (gc_thresholds.YOUNG, 10, 10)


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


def test_once_prints_what_the_daemon_would_export_under_metrics_sparse_and_deny(
    simulator: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, simulator, ["job-a"])
    doc = yaml.safe_load(config.read_text(encoding="utf-8"))
    doc["metrics"] = {"state_sets": "sparse", "deny": ["modelarts_training_job_nodes"]}
    config.write_text(yaml.safe_dump(doc), encoding="utf-8")

    rc = main(["once", "--config", str(config), "--job", "job-a"])

    _, exposition = split_once_output(capsys.readouterr().out)["job-a"]
    assert rc == 0
    families = {f.name: f for f in text_string_to_metric_families(exposition)}
    phases = [s.labels["phase"] for s in families["modelarts_training_job_phase"].samples]
    assert phases == ["Running"], "sparse: only the current phase's series"
    assert "modelarts_training_job_nodes" not in families, "denied"
    assert "modelarts_training_job_requested_nodes" in families


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


# --- check explains what to fix ---------------------------------------------------------------
#
# Each misconfiguration an operator can fix gets one exact line naming the key to change. The
# ModelArts side is the simulator where it can play the part, else a loopback ``FakeCloud``
# that answers every request from a table of (path prefix -> status, headers, body).

Answer = tuple[int, dict[str, str], bytes]
ENDPOINT_FIX = (
    "set api.region to the job's region (e.g. cn-north-4), or api.endpoint to that region's "
    "ModelArts endpoint"
)


def gateway(status: int, code: str, msg: str) -> Answer:
    body = {"error_code": code, "error_msg": msg, "request_id": "0f1e2d3c"}
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


class FakeCloud:
    """A threaded HTTP(S) server on 127.0.0.1 answering by path prefix; records the paths."""

    def __init__(self, routes: dict[str, Answer], ssl_context: Any = None) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.paths: list[str] = []
        cloud = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                cloud.paths.append(self.path)
                prefix = max((p for p in routes if self.path.startswith(p)), key=len)
                status, headers, body = routes[prefix]
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if ssl_context is not None:
            self.server.socket = ssl_context.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if ssl_context is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        import threading

        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def cloud() -> Iterator[Any]:
    """``cloud(routes)`` starts a ``FakeCloud``; all are stopped after the test."""
    started: list[FakeCloud] = []

    def start(routes: dict[str, Answer], ssl_context: Any = None) -> FakeCloud:
        started.append(FakeCloud(routes, ssl_context))
        return started[-1]

    yield start
    for fake in started:
        fake.close()


def edit_config(path: Path, **blocks: dict[str, Any]) -> Path:
    """The config at ``path`` with keys of its top-level blocks replaced."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    for block, keys in blocks.items():
        doc[block] = {**doc.get(block, {}), **keys}
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def check_lines(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    rc = main(["check", "--config", str(config)])
    return rc, capsys.readouterr().out.splitlines()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # released again: nothing listens there


def test_check_on_a_wrong_endpoint_says_once_that_api_endpoint_names_the_wrong_service(
    cloud: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = cloud(
        {
            "/": gateway(
                404,
                "APIG.0101",
                "The API does not exist or has not been published in the environment",
            )
        }
    )
    config = write_config(tmp_path, fake.url, ["job-a", "job-b", "job-c"])

    rc, lines = check_lines(config, capsys)

    assert rc == 1
    assert lines == [
        f"all 3 jobs: invalid_response: no ModelArts API at {fake.url} (HTTP 404 APIG.0101): "
        f"api.endpoint names the wrong service or region; {ENDPOINT_FIX}"
    ]
    assert len(fake.paths) == 1  # the other jobs would only have failed the same way


def test_check_on_an_endpoint_whose_host_does_not_resolve_names_api_endpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = "http://modelarts.no-such-region.invalid"  # .invalid never resolves (RFC 6761)
    config = write_config(tmp_path, endpoint, ["job-a", "job-b"])

    rc, lines = check_lines(config, capsys)

    assert rc == 1
    assert lines == [
        f"all 2 jobs: network_error: cannot reach ModelArts at {endpoint}:80: its host name "
        f"does not resolve (DNS); api.endpoint is wrong: {ENDPOINT_FIX}"
    ]


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_check_on_a_port_where_nothing_listens_says_connection_refused_once(
    transport: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = closed_port()
    config = write_config(tmp_path, f"http://127.0.0.1:{port}", ["job-a", "job-b"])
    edit_config(config, api={"transport": transport})

    rc, lines = check_lines(config, capsys)

    assert rc == 1
    assert lines == [
        f"all 2 jobs: network_error: cannot reach ModelArts at http://127.0.0.1:{port}: "
        f"connection refused, nothing listens there; api.endpoint is wrong: {ENDPOINT_FIX}"
    ]


def test_check_on_a_host_whose_certificate_is_for_another_name_says_so(
    cloud: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import ssl

    import trustme

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("modelarts.elsewhere.example").configure_cert(server_ctx)
    fake = cloud({"/": gateway(200, "unused", "unused")}, server_ctx)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    config = write_config(tmp_path, fake.url, ["job-a"])
    edit_config(config, api={"ca_file": str(bundle)})

    rc, lines = check_lines(config, capsys)

    assert rc == 1
    assert lines == [
        f"job job-a: network_error: cannot reach ModelArts at {fake.url}: its TLS certificate "
        f"is for another host name; api.endpoint is wrong: {ENDPOINT_FIX}"
    ]


def test_check_with_a_project_id_the_credentials_do_not_belong_to_names_api_project_id(
    cloud: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = cloud({"/": gateway(403, "ModelArts.0210", "Project id mismatch.")})
    config = write_config(tmp_path, fake.url, ["job-a", "job-b"])

    rc, lines = check_lines(config, capsys)

    assert rc == 1
    expected = (
        "auth_error: project proj-cli does not match these credentials "
        "(HTTP 403 ModelArts.0210): set api.project_id to the id of the project of the job's "
        "region (console: My Credentials > API Credentials)"
    )
    assert lines == [f"job job-a: {expected}", f"job job-b: {expected}"]


@pytest.mark.parametrize("wrong", ["ak", "sk"])
def test_check_with_a_wrong_access_or_secret_key_names_auth_ak_and_auth_sk(
    wrong: str, simulator: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "definitely-not-the-secret"
    config = write_config(tmp_path, simulator, ["job-a"], sk=secret if wrong == "sk" else SK)
    if wrong == "ak":
        edit_config(config, auth={"ak": "AKNOTKNOWNHERE"})

    rc, lines = check_lines(config, capsys)

    assert rc == 1
    assert lines == [
        "job job-a: auth_error: the AK/SK signature was rejected (HTTP 401 APIG.0301): "
        "auth.ak or auth.sk is wrong (or this host's clock is more than 15 minutes off)"
    ]
    assert secret not in "".join(lines)


def test_check_with_credentials_lacking_permission_says_to_grant_a_policy(
    cloud: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = cloud({"/": gateway(403, "ModelArts.0222", "Policy doesn't allow this action.")})
    config = write_config(tmp_path, fake.url, ["job-a"])

    rc, lines = check_lines(config, capsys)

    assert rc == 1
    assert lines == [
        "job job-a: auth_error: permission denied (HTTP 403 ModelArts.0222): the credentials "
        "are valid but may not read training jobs in project proj-cli; grant their IAM user "
        "or agency a ModelArts policy (e.g. ModelArts CommonOperations) in that project"
    ]


def iam_token(expires_at: str = "2099-01-01T00:00:00.000000Z") -> Answer:
    body = {"token": {"issued_at": "2026-01-01T00:00:00.000000Z", "expires_at": expires_at}}
    headers = {"Content-Type": "application/json", "X-Subject-Token": "tok-from-fake-iam"}
    return 201, headers, json.dumps(body).encode()


def token_config(tmp_path: Path, endpoint: str, iam: str) -> Path:
    config = write_config(tmp_path, endpoint, ["job-a"])
    doc = yaml.safe_load(config.read_text(encoding="utf-8"))
    doc["auth"] = {
        "type": "token",
        "user": "ops",
        "password": "the-iam-password",
        "domain": "acme",
        "iam_endpoint": iam,
    }
    config.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return config


def test_check_with_a_token_modelarts_rejects_as_expired_says_so_and_which_keys_to_check(
    cloud: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = cloud(
        {
            "/v3/auth/tokens": iam_token(),
            "/v2/": gateway(401, "ModelArts.0203", "The token has expired."),
        }
    )
    config = token_config(tmp_path, fake.url, fake.url)

    rc, lines = check_lines(config, capsys)

    assert rc == 1
    assert lines == [
        "job job-a: auth_error: the IAM token was rejected as invalid or expired, also right "
        "after a new one was fetched (HTTP 401 ModelArts.0203): check auth.user and "
        "auth.domain, and that api.project_id is the project the user may act in"
    ]
    assert sum(p.startswith("/v3/auth/tokens") for p in fake.paths) == 2  # fetched, refreshed


def test_check_with_a_wrong_iam_password_names_the_password_keys_not_the_password(
    cloud: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keystone = {
        "error": {
            "code": 401,
            "message": "The username or password is wrong.",
            "title": "Unauthorized",
        }
    }
    fake = cloud({"/": (401, {"Content-Type": "application/json"}, json.dumps(keystone).encode())})
    config = token_config(tmp_path, fake.url, fake.url)

    rc, lines = check_lines(config, capsys)

    assert rc == 1
    assert lines == [
        "job job-a: auth_error: IAM refused the password login (HTTP 401): auth.user, "
        "auth.password or auth.domain is wrong (auth.domain is the account name, not the user's)"
    ]
    assert "the-iam-password" not in "".join(lines)


def test_check_when_the_iam_endpoint_refuses_connections_names_auth_iam_endpoint(
    simulator: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    iam = f"http://127.0.0.1:{closed_port()}"
    config = token_config(tmp_path, simulator, iam)

    rc, lines = check_lines(config, capsys)

    assert rc == 1
    assert lines == [
        f"job job-a: network_error: cannot reach IAM at {iam}: connection refused, nothing "
        "listens there; auth.iam_endpoint is wrong: set it to the IAM endpoint of the job's "
        "region (e.g. https://iam.cn-north-4.myhuaweicloud.com)"
    ]


def test_check_with_an_expired_security_token_says_to_renew_the_temporary_credentials(
    cloud: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = cloud({"/": gateway(401, "APIG.0301", "Incorrect IAM authentication information")})
    config = write_config(tmp_path, fake.url, ["job-a"])
    edit_config(config, auth={"security_token": "temporary-session-token-value"})

    rc, lines = check_lines(config, capsys)

    assert rc == 1
    assert lines == [
        "job job-a: auth_error: the temporary credentials were rejected as invalid or expired "
        "(HTTP 401 APIG.0301): renew auth.ak, auth.sk and auth.security_token together, or "
        "use auth.type metadata"
    ]
    assert "temporary-session-token-value" not in "".join(lines)


def metadata_config(tmp_path: Path, endpoint: str, metadata_url: str) -> Path:
    config = write_config(tmp_path, endpoint, ["job-a", "job-b"])
    doc = yaml.safe_load(config.read_text(encoding="utf-8"))
    doc["auth"] = {"type": "metadata", "metadata_url": metadata_url}
    config.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return config


def test_check_off_cloud_with_auth_type_metadata_says_the_metadata_service_is_unreachable(
    simulator: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    metadata_url = f"http://127.0.0.1:{closed_port()}"
    config = metadata_config(tmp_path, simulator, metadata_url)

    rc, lines = check_lines(config, capsys)

    assert rc == 1
    assert lines == [
        f"all 2 jobs: network_error: cannot reach the metadata service at {metadata_url} "
        "(connection refused, nothing listens there): auth.type metadata works only on an ECS "
        "or CCE host with an agency; elsewhere use auth.type aksk with auth.ak and auth.sk, or "
        "fix auth.metadata_url"
    ]


def test_check_on_a_host_without_an_agency_says_so_once(
    cloud: Any, simulator: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    no_agency = b"Please configure Cloud Service Agency first"
    metadata = cloud({"/": (401, {"Content-Type": "text/plain"}, no_agency)})
    config = metadata_config(tmp_path, simulator, metadata.url)

    rc, lines = check_lines(config, capsys)

    assert rc == 1
    assert lines == [
        f"all 2 jobs: auth_error: the metadata service at {metadata.url} has no credentials: "
        "the host has no agency (give the ECS/CCE host an agency with ModelArts permissions) "
        "(status=401)"
    ]


def test_check_says_a_cause_common_to_every_job_once_for_the_jobs_left_after_one_ok(
    cloud: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = {
        "kind": "job",
        "metadata": {"id": "job-a", "name": "alpha"},
        "status": {"phase": "Running"},
    }
    fake = cloud(
        {
            "/v2/proj-cli/training-jobs/job-a": (200, {}, json.dumps(doc).encode()),
            "/": gateway(404, "APIG.0101", "The API does not exist"),
        }
    )
    config = write_config(tmp_path, fake.url, ["job-a", "job-b", "job-c"])

    rc, lines = check_lines(config, capsys)

    assert rc == 1
    assert lines == [
        "job job-a: ok (alpha, Running)",
        f"job job-b and 1 more: invalid_response: no ModelArts API at {fake.url} (HTTP 404 "
        f"APIG.0101): api.endpoint names the wrong service or region; {ENDPOINT_FIX}",
    ]


# --- targets ----------------------------------------------------------------------------------


def write_targets_config(tmp_path: Path, endpoint: str, west_sk: str = SK) -> Path:
    """Two targets on the one simulator: east with job-a, west (its own SK) with job-b."""
    doc = {
        "targets": [
            {
                "name": name,
                "api": {"endpoint": endpoint, "project_id": f"proj-{name}", "timeout": "5s"},
                "auth": {"type": "aksk", "ak": AK, "sk": sk},
                "labels": {"region": f"r-{name}"},
                "jobs": [{"id": job}],
            }
            for name, sk, job in (("east", SK, "job-a"), ("west", west_sk, "job-b"))
        ],
        "state": {"path": str(tmp_path / "state.db")},
        "log": {"level": "warning", "format": "json"},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def test_check_prints_a_block_per_target_with_the_single_project_lines_inside(
    simulator: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = "definitely-not-the-secret"
    config = write_targets_config(tmp_path, simulator, west_sk=wrong)

    rc = main(["check", "--config", str(config)])

    out = capsys.readouterr().out
    assert rc == 1
    lines = out.splitlines()
    assert lines[:3] == [
        "target east (project proj-east):",
        "  job job-a: ok (alpha, Running)",
        "target west (project proj-west):",
    ]
    assert lines[3].startswith("  job job-b: auth_error: the AK/SK signature was rejected")
    assert len(lines) == 4
    assert wrong not in out


def test_once_polls_every_targets_jobs_with_its_target_and_project_on_the_lines(
    simulator: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_targets_config(tmp_path, simulator)

    rc = main(["once", "--config", str(config)])

    out, err = capsys.readouterr()
    assert rc == 0, err
    sections = split_once_output(out)
    assert list(sections) == ["job-a", "job-b"]
    for job_id, target in (("job-a", "east"), ("job-b", "west")):
        families = {f.name: f for f in text_string_to_metric_families(sections[job_id][1])}
        (info,) = families["modelarts_training_job_info"].samples
        assert info.labels["target"] == target
        assert info.labels["region"] == f"r-{target}"
        assert info.labels["project_id"] == f"proj-{target}"
