"""IAM tokens over real loopback: issuing, using, expiring and revoking them; the ``iam`` block;
the ``simulate`` flags; and that no secret reaches a log or an error body."""

from __future__ import annotations

import logging
import os
import re
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from monitor.cli.main import build_parser, main
from monitor.modelarts.auth.aksk import AkSkAuth
from monitor.modelarts.parse import parse_job
from monitor.simulator import (
    IamConfig,
    IamUser,
    ScenarioError,
    Simulator,
    builtin_scenario,
    parse_scenario,
)
from tests.conftest import Serve

EPOCH = 1_700_000_000.0  # 2023-11-14T22:13:20Z
BERT = "3faf5c03-aaa1-4cbe-879d-24b05d997347"
PROJECT = "0123456789abcdef"
JOB = f"/v2/{PROJECT}/training-jobs/{BERT}"
USER, PASSWORD, DOMAIN = "alice", "pw-alice-never-logged-5c1d", "acme"
TTL = 3600.0
TOKEN_401 = {
    "error_code": "APIG.0301",
    "error_msg": "Incorrect IAM authentication information: x-auth-token invalid or expired",
}
WRONG_401 = {
    "error": {"code": 401, "message": "The username or password is wrong.", "title": "Unauthorized"}
}


class WallClock:
    def __init__(self) -> None:
        self.t = EPOCH

    def __call__(self) -> float:
        return self.t


def iam_sim(wall: WallClock | None = None, **kw: Any) -> Simulator:
    return Simulator(
        builtin_scenario(),
        manual_clock=True,
        wall_clock=wall or WallClock(),
        iam_users=[(USER, PASSWORD, DOMAIN)],
        token_ttl=TTL,
        **kw,
    )


def auth_body(
    name: str = USER, password: str = PASSWORD, domain: str = DOMAIN, project: str = PROJECT
) -> dict[str, Any]:
    return {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": name, "password": password, "domain": {"name": domain}}
                },
            },
            "scope": {"project": {"id": project}},
        }
    }


async def issue(http: httpx.AsyncClient, **kw: str) -> str:
    response = await http.post("/v3/auth/tokens", json=auth_body(**kw))
    assert response.status_code == 201, response.text
    return response.headers["x-subject-token"]


# --- issuing ------------------------------------------------------------------------------------


async def test_password_auth_issues_a_token_in_x_subject_token(serve: Serve) -> None:
    sim = iam_sim()
    http = await serve(sim)
    response = await http.post("/v3/auth/tokens", json=auth_body())
    assert response.status_code == 201
    token = response.headers["x-subject-token"]
    assert len(token) >= 64
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    body = response.json()["token"]
    assert body["expires_at"] == "2023-11-14T23:13:20.000000Z"  # EPOCH + TTL, UTC with Z
    assert datetime.fromisoformat(body["expires_at"]) == datetime.fromtimestamp(EPOCH + TTL, UTC)
    assert body["issued_at"] == "2023-11-14T22:13:20.000000Z"
    assert body["methods"] == ["password"]
    assert body["project"] == {"id": PROJECT}
    assert body["user"] == {"name": USER, "domain": {"name": DOMAIN}}
    assert token not in response.text
    second = await issue(http)
    assert second != token
    assert (await http.get("/_sim/tokens")).json() == {"tokens": [token, second]}
    assert (await http.get("/_sim/state")).json()["tokens_issued"] == 2


@pytest.mark.parametrize(
    "wrong",
    [{"password": "not-it"}, {"name": "mallory"}, {"domain": "other-account"}],
    ids=["password", "user", "domain"],
)
async def test_wrong_credentials_get_401_with_iam_body(serve: Serve, wrong: dict[str, str]) -> None:
    sim = iam_sim()
    http = await serve(sim)
    response = await http.post("/v3/auth/tokens", json=auth_body(**wrong))
    assert response.status_code == 401
    assert response.json() == WRONG_401
    assert "x-subject-token" not in response.headers
    assert PASSWORD not in response.text
    assert sim.iam is not None
    assert sim.iam.issued() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", None),
        ({"auth": {}}, "auth.identity.methods"),
        ({"auth": {"identity": {"methods": ["token"]}}}, "auth.identity.methods"),
        (
            {"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "a"}}}}},
            "auth.identity.password.user.password",
        ),
        (auth_body(domain=""), "auth.identity.password.user.domain.name"),
        (auth_body(project=""), "auth.scope.project.id"),
        ([1, 2], "auth.identity.methods"),
    ],
)
async def test_malformed_auth_bodies_get_400(serve: Serve, body: Any, field: str | None) -> None:
    http = await serve(iam_sim())
    if isinstance(body, bytes):
        response = await http.post("/v3/auth/tokens", content=body)
    else:
        response = await http.post("/v3/auth/tokens", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["title"]) == (400, "Bad Request")
    if field is not None:
        assert error["message"] == f"Invalid input for field '{field}'."


async def test_without_iam_users_no_token_is_issued(serve: Serve) -> None:
    http = await serve(Simulator(builtin_scenario(), manual_clock=True))
    response = await http.post("/v3/auth/tokens", json=auth_body())
    assert response.status_code == 401
    assert response.json() == WRONG_401
    assert "tokens_issued" not in (await http.get("/_sim/state")).json()


# --- using --------------------------------------------------------------------------------------


async def test_a_valid_token_authenticates_job_requests(serve: Serve) -> None:
    sim = iam_sim()
    http = await serve(sim)
    token = await issue(http)
    response = await http.get(JOB, headers={"X-Auth-Token": token})
    assert response.status_code == 200
    assert parse_job(response.json(), BERT).name == "bert-pretrain"
    assert sim.requests == {BERT: 1}


@pytest.mark.parametrize("headers", [{}, {"X-Auth-Token": "MIIforged"}, {"X-Auth-Token": ""}])
async def test_missing_or_unknown_token_gets_401_apig_0301(
    serve: Serve, headers: dict[str, str]
) -> None:
    sim = iam_sim()
    http = await serve(sim)
    await issue(http)
    response = await http.get(JOB, headers=headers)
    assert response.status_code == 401
    body = response.json()
    assert {k: body[k] for k in TOKEN_401} == TOKEN_401
    assert body["request_id"] == response.headers["x-request-id"]
    assert sim.requests == {}


async def test_a_token_expires_by_the_wall_clock(serve: Serve) -> None:
    wall = WallClock()
    http = await serve(iam_sim(wall))
    token = await issue(http)
    wall.t += TTL - 1
    assert (await http.get(JOB, headers={"X-Auth-Token": token})).status_code == 200
    wall.t += 1
    response = await http.get(JOB, headers={"X-Auth-Token": token})
    assert response.status_code == 401
    assert response.json()["error_code"] == "APIG.0301"
    fresh = await issue(http)
    assert (await http.get(JOB, headers={"X-Auth-Token": fresh})).status_code == 200


async def test_revoke_invalidates_every_issued_token(serve: Serve) -> None:
    http = await serve(iam_sim())
    tokens = [await issue(http), await issue(http)]
    revoked = await http.post("/_sim/revoke")
    assert revoked.json() == {"revoked": 2}
    for token in tokens:
        response = await http.get(JOB, headers={"X-Auth-Token": token})
        assert response.status_code == 401
        assert response.json()["error_code"] == "APIG.0301"
    fresh = await issue(http)
    assert (await http.get(JOB, headers={"X-Auth-Token": fresh})).status_code == 200
    assert (await http.get("/_sim/tokens")).json()["tokens"] == [*tokens, fresh]


async def test_aksk_stays_accepted_next_to_tokens(serve: Serve) -> None:
    sim = iam_sim(credentials={"AKSIM": "sk-sim-secret-never-logged"})
    http = await serve(sim)
    token = await issue(http)
    assert (await http.get(JOB, headers={"X-Auth-Token": token})).status_code == 200
    signed = await serve(sim, auth=AkSkAuth("AKSIM", "sk-sim-secret-never-logged"))
    assert (await signed.get(JOB)).status_code == 200
    unsigned = await http.get(JOB)
    assert unsigned.status_code == 401
    assert "sk-sim-secret" not in unsigned.text


async def test_no_token_password_or_sk_reaches_the_simulators_logs(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiohttp")
    caplog.set_level(logging.DEBUG, logger="monitor")
    sim = iam_sim(credentials={"AKSIM": "sk-sim-secret-never-logged"})
    http = await serve(sim, access_log=True)
    token = await issue(http)
    await http.post("/v3/auth/tokens", json=auth_body(password=PASSWORD + "-wrong"))
    await http.get(JOB, headers={"X-Auth-Token": token})
    await http.post("/_sim/revoke")
    await http.get(JOB, headers={"X-Auth-Token": token})
    # The simulator's own records only: the httpx client here logs response headers itself.
    text = "\n".join(
        r.getMessage() for r in caplog.records if r.name.startswith(("aiohttp", "monitor"))
    )
    assert "/v3/auth/tokens" in text  # the access log did record the requests
    for secret in (token, PASSWORD, "sk-sim-secret-never-logged"):
        assert secret not in text


# --- the iam block ------------------------------------------------------------------------------

JOBS = [{"id": "j", "name": "n", "timeline": [{"at": 0, "phase": "Running"}]}]


def test_iam_block_users_join_the_argument_users() -> None:
    scenario = parse_scenario(
        {"jobs": JOBS, "iam": {"users": [{"name": "bob", "password": "pw", "domain": "d"}]}}
    )
    assert scenario.iam == IamConfig(users=(IamUser("bob", "pw", "d"),), token_ttl=86400.0)
    assert "pw" not in repr(scenario.iam)
    sim = Simulator(scenario, iam_users=[(USER, PASSWORD, DOMAIN)], token_ttl=60)
    assert sim.iam is not None
    assert [u.name for u in sim.iam.users] == ["bob", USER]
    assert sim.iam.token_ttl == 60


def test_iam_block_problems_name_their_key_paths_without_echoing_passwords() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(
            {
                "jobs": JOBS,
                "iam": {
                    "users": [
                        {"name": "bob", "password": 271828, "domain": "d"},
                        {"name": "", "password": "pw"},
                        {"name": "bob", "password": "x", "domain": "d", "role": "admin"},
                    ],
                    "token_ttl": 0,
                },
            }
        )
    assert info.value.problems == [
        "iam.token_ttl: expected a finite number > 0, got 0",
        "iam.users[0].password: expected a string, got int (quote it in YAML)",
        "iam.users[1].domain: required",
        "iam.users[1].name: expected a non-empty string",
        "iam.users[2].role: unknown key (allowed: name, password, domain)",
        "iam.users[2].name: duplicate of iam.users[0]",
    ]
    assert "271828" not in str(info.value)


@pytest.mark.parametrize(
    ("iam", "problem"),
    [
        ({}, "iam.users: required"),
        ({"users": []}, "iam.users: expected at least one user"),
        ({"users": "alice"}, "iam.users: expected a list, got 'alice'"),
    ],
)
def test_iam_block_shape_problems(iam: object, problem: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario({"jobs": JOBS, "iam": iam})
    assert info.value.problems == [problem]


# --- the simulate command -----------------------------------------------------------------------


def test_simulate_parses_the_iam_and_tls_flags() -> None:
    args = build_parser().parse_args(
        [
            "simulate",
            "--scenario",
            "s.yaml",
            "--iam-user",
            USER,
            "--iam-domain",
            DOMAIN,
            "--token-ttl",
            "90",
            "--tls-cert",
            "cert.pem",
            "--tls-key",
            "key.pem",
        ]
    )
    assert (args.iam_user, args.iam_domain, args.token_ttl) == (USER, DOMAIN, 90.0)
    assert (args.tls_cert, args.tls_key) == ("cert.pem", "key.pem")
    defaults = build_parser().parse_args(["simulate", "--scenario", "s.yaml"])
    assert (defaults.iam_user, defaults.iam_domain, defaults.token_ttl) == (None, None, None)
    assert (defaults.tls_cert, defaults.tls_key) == (None, None)


@pytest.mark.parametrize(
    "argv",
    [["--token-ttl", "0"], ["--token-ttl", "soon"], ["--iam-password", PASSWORD]],
    ids=["ttl-zero", "ttl-text", "no-password-flag"],
)
def test_simulate_rejects_bad_flags_and_takes_no_password_from_argv(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["simulate", "--scenario", "s.yaml", *argv])
    assert info.value.code == 2
    capsys.readouterr()


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"jobs": JOBS}), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--iam-user", USER, "--iam-domain", DOMAIN],
            "--iam-user needs the password in the environment variable SIMULATOR_IAM_PASSWORD",
        ),
        (["--iam-user", USER], "--iam-user and --iam-domain go together"),
        (["--tls-cert", "cert.pem"], "--tls-cert and --tls-key go together"),
    ],
)
def test_simulate_flag_combinations_that_cannot_work_exit_2(
    scenario_file: Path,
    argv: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("SIMULATOR_IAM_PASSWORD", raising=False)
    rc = main(["simulate", "--scenario", str(scenario_file), "--listen", "127.0.0.1:0", *argv])
    assert rc == 2
    assert capsys.readouterr().err.splitlines() == [f"config error: {message}"]


@pytest.fixture
def iam_simulator(scenario_file: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``modelarts-monitor simulate --iam-user`` as a subprocess; yields its URL and its log."""
    log = tmp_path / "simulator.log"
    argv = [sys.executable, "-m", "monitor", "simulate", "--scenario", str(scenario_file)]
    argv += ["--listen", "127.0.0.1:0", "--iam-user", USER, "--iam-domain", DOMAIN]
    env = {**os.environ, "SIMULATOR_IAM_PASSWORD": PASSWORD}
    with log.open("w") as stderr:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    assert proc.stdout is not None
    try:
        deadline = time.monotonic() + 20
        url = None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while url is None and time.monotonic() < deadline and proc.poll() is None:
                if sel.select(timeout=0.2):
                    line = proc.stdout.readline()
                    if m := re.search(r"listening on (http://127\.0\.0\.1:\d+)", line):
                        url = m.group(1)
        assert url is not None, f"simulator did not start: {log.read_text()}"
        yield url, log
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
        proc.stdout.close()


def test_simulate_with_iam_user_issues_tokens_for_the_env_password(
    iam_simulator: tuple[str, Path],
) -> None:
    url, log = iam_simulator
    with httpx.Client(base_url=url, trust_env=False, timeout=5) as http:
        response = http.post("/v3/auth/tokens", json=auth_body())
        assert response.status_code == 201
        token = response.headers["x-subject-token"]
        assert http.get("/v2/p/training-jobs/j", headers={"X-Auth-Token": token}).is_success
        assert http.get("/v2/p/training-jobs/j").status_code == 401
    text = log.read_text()
    assert token not in text
    assert PASSWORD not in text
