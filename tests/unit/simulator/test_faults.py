"""Fault injection over real loopback: each kind's exact symptom, how the client maps it, the
rate and its determinism, runtime control, the ``ok_requests`` count and validation."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

import httpx
import pytest
from aiohttp import web

from monitor.errors import (
    ApiError,
    ApiTimeout,
    InvalidResponse,
    JobNotFound,
    NetworkError,
    RateLimited,
    ServerError,
)
from monitor.modelarts.client import ModelArtsClient
from monitor.modelarts.parse import parse_job
from monitor.simulator import (
    FAULT_KINDS,
    FaultConfig,
    ScenarioError,
    Simulator,
    builtin_scenario,
    parse_scenario,
    start,
    stop,
)

EPOCH = 1_700_000_000.0
BERT = "3faf5c03-aaa1-4cbe-879d-24b05d997347"
UNKNOWN = "00000000-0000-0000-0000-000000000000"
PROJECT = "0123456789abcdef"
PATH = f"/v2/{PROJECT}/training-jobs/{{}}"
FAST_KINDS = ["server_error", "rate_limited", "gateway_html", "truncated", "wrong_types"]


def fault_sim(*kinds: str, rate: float = 1.0, seed: int | None = 7, **faults: Any) -> Simulator:
    """The demo scenario at t=10 (bert-pretrain is running) with the given faults."""
    config = {"rate": rate, "kinds": list(kinds or FAULT_KINDS), "seed": seed, **faults}
    sim = Simulator(builtin_scenario(), manual_clock=True, wall_clock=lambda: EPOCH, faults=config)
    sim.set_time(10)
    return sim


class Serve(Protocol):
    async def __call__(self, sim: Simulator) -> tuple[httpx.AsyncClient, str]: ...


@pytest.fixture(autouse=True)
def no_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ModelArtsClient`` trusts the environment; loopback must not go through a proxy."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start a simulator on 127.0.0.1:0; yields a coroutine returning (httpx client, base url)."""
    runners: list[web.AppRunner] = []
    clients: list[httpx.AsyncClient] = []

    async def _serve(sim: Simulator) -> tuple[httpx.AsyncClient, str]:
        runner, port = await start(sim, "127.0.0.1", 0)
        runners.append(runner)
        url = f"http://127.0.0.1:{port}"
        client = httpx.AsyncClient(base_url=url, trust_env=False)
        clients.append(client)
        return client, url

    yield _serve
    for client in clients:
        await client.aclose()
    for runner in runners:
        await stop(runner)


async def get_job(url: str, job_id: str = BERT, timeout: float = 5.0) -> Any:
    async with ModelArtsClient(url, PROJECT, timeout=timeout) as client:
        return await client.get_job(job_id)


# --- each kind's symptom, and what the client makes of it ---------------------------------------


async def test_server_error_is_a_5xx_with_a_modelarts_json_body(serve: Serve) -> None:
    sim = fault_sim("server_error")
    http, url = await serve(sim)
    statuses = set()
    for _ in range(12):
        response = await http.get(PATH.format(BERT))
        statuses.add(response.status_code)
        assert response.headers["content-type"] == "application/json"
        assert response.headers["x-request-id"]
        body = response.json()
        assert body["error_code"].startswith("ModelArts.")
        assert body["error_msg"]
    assert statuses == {500, 503}
    with pytest.raises(ServerError) as info:
        await get_job(url)
    assert info.value.status in (500, 503)
    assert sim.faults is not None
    assert sim.faults.counts["server_error"] == 13


async def test_rate_limited_is_a_429_apig_0308_with_retry_after(serve: Serve) -> None:
    http, url = await serve(fault_sim("rate_limited"))
    response = await http.get(PATH.format(BERT))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert response.json() == {
        "error_code": "APIG.0308",
        "error_msg": "The throttling threshold has been reached: "
        "policy ip over ratelimit,limit:5,time:1 second",
    }
    with pytest.raises(RateLimited) as info:
        await get_job(url)
    assert info.value.retry_after == 1.0
    assert info.value.error_code == "APIG.0308"


async def test_rate_limited_without_retry_after_omits_the_header(serve: Serve) -> None:
    http, url = await serve(fault_sim("rate_limited", retry_after=None))
    response = await http.get(PATH.format(BERT))
    assert response.status_code == 429
    assert "retry-after" not in response.headers
    with pytest.raises(RateLimited) as info:
        await get_job(url)
    assert info.value.retry_after is None


async def test_gateway_html_is_a_502_nginx_page_the_client_reports_on_one_line(
    serve: Serve,
) -> None:
    http, url = await serve(fault_sim("gateway_html"))
    response = await http.get(PATH.format(BERT))
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert "<h1>502 Bad Gateway</h1>" in response.text
    assert "nginx" in response.text
    with pytest.raises(ServerError) as info:
        await get_job(url)
    message = str(info.value)
    assert "\n" not in message
    assert "502 Bad Gateway" in message
    assert info.value.status == 502


async def test_truncated_is_a_200_with_a_cut_document_and_a_matching_length(serve: Serve) -> None:
    sim = fault_sim("truncated")
    http, url = await serve(sim)
    full = json.dumps(sim.document(BERT)).encode()
    lengths = set()
    for _ in range(5):
        response = await http.get(PATH.format(BERT))
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert int(response.headers["content-length"]) == len(response.content)
        assert 0 < len(response.content) < len(full)
        assert full.startswith(response.content)
        with pytest.raises(ValueError):  # noqa: PT011 -- json's own error
            json.loads(response.content)
        lengths.add(len(response.content))
    assert len(lengths) > 1  # cut at a random point each time
    with pytest.raises(InvalidResponse, match="not JSON"):
        await get_job(url)


async def test_wrong_types_is_the_real_document_with_one_mistyped_field(serve: Serve) -> None:
    sim = fault_sim("wrong_types")
    http, url = await serve(sim)
    real = sim.document(BERT)
    assert real is not None
    fields = set()
    for _ in range(25):
        response = await http.get(PATH.format(BERT))
        assert response.status_code == 200
        doc = response.json()
        assert doc.keys() == real.keys()
        assert doc["metadata"]["id"] == BERT
        with pytest.raises(InvalidResponse) as info:
            parse_job(doc, BERT)
        fields.add(str(info.value).split(":")[0])
    assert {"status.phase", "status.running_records", "metadata.create_time"} <= fields
    assert any(f.startswith("status.node_count_metrics") for f in fields)
    # The client hands the JSON over; it is the schema that refuses it.
    with pytest.raises(InvalidResponse):
        parse_job(await get_job(url), BERT)


async def test_reset_drops_the_connection_without_a_response(serve: Serve) -> None:
    sim = fault_sim("reset")
    http, url = await serve(sim)
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        await http.get(PATH.format(BERT))
    with pytest.raises(NetworkError):
        await get_job(url)
    assert sim.requests == {BERT: 2}
    assert sim.state()["faults"]["reset"] == 2


async def test_slow_answers_correctly_after_slow_seconds(serve: Serve) -> None:
    sim = fault_sim("slow", slow_seconds=0.3)
    http, _ = await serve(sim)
    began = time.monotonic()
    response = await http.get(PATH.format(BERT))
    assert time.monotonic() - began >= 0.28  # asyncio timers may fire a tick early
    assert response.status_code == 200
    assert response.json() == sim.document(BERT)
    assert sim.ok_requests == {}  # late is not fault-free


async def test_slow_becomes_a_timeout_for_a_client_with_a_shorter_one(serve: Serve) -> None:
    _, url = await serve(fault_sim("slow", slow_seconds=0.5))
    with pytest.raises(ApiTimeout):
        await get_job(url, timeout=0.1)


async def test_a_fault_can_hit_an_unknown_job_too(serve: Serve) -> None:
    _, url = await serve(fault_sim("server_error"))
    with pytest.raises(ServerError):
        await get_job(url, UNKNOWN)


@pytest.mark.parametrize("kind", ["truncated", "wrong_types"])
async def test_a_mangled_not_found_is_never_mistaken_for_a_gone_job(
    serve: Serve, kind: str
) -> None:
    http, url = await serve(fault_sim(kind))
    response = await http.get(PATH.format(UNKNOWN))
    assert response.status_code == 400
    with pytest.raises(ApiError) as info:
        await get_job(url, UNKNOWN)
    assert not isinstance(info.value, JobNotFound)


# --- rate, determinism, runtime control, counts -------------------------------------------------


async def symptoms(http: httpx.AsyncClient, n: int) -> list[tuple[int, bytes]]:
    return [((r := await http.get(PATH.format(BERT))).status_code, r.content) for _ in range(n)]


async def test_rate_is_roughly_respected_and_a_seed_makes_it_deterministic(
    serve: Serve,
) -> None:
    first, second, other = (fault_sim(*FAST_KINDS, rate=0.3, seed=s) for s in (7, 7, 8))
    runs = [await symptoms((await serve(sim))[0], 200) for sim in (first, second, other)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert first.faults is not None
    faulty = sum(first.faults.counts.values())
    assert 30 <= faulty <= 95  # 60 expected; the bounds are > 4 standard deviations wide
    assert first.ok_requests == {BERT: 200 - faulty}
    assert sum(1 for status, _ in runs[0] if status != 200) <= faulty  # truncated etc. are 200s
    assert {k for k, n in first.faults.counts.items() if n} <= set(FAST_KINDS)


def test_without_a_seed_faults_are_still_drawn_at_the_rate() -> None:
    sim = fault_sim("server_error", rate=0.5, seed=None)
    assert sim.faults is not None
    drawn = [sim.faults.draw() for _ in range(400)]
    assert 120 <= drawn.count("server_error") <= 280
    assert set(drawn) == {None, "server_error"}


async def test_sim_faults_changes_the_faults_at_runtime(serve: Serve) -> None:
    sim = Simulator(builtin_scenario(), manual_clock=True)
    http, _ = await serve(sim)
    state = (await http.get("/_sim/state")).json()
    assert "faults" not in state  # nothing configured: the state is as before
    assert (await http.get("/_sim/faults")).json()["rate"] == 0.0

    on = await http.post("/_sim/faults", json={"rate": 1.0, "kinds": ["gateway_html"]})
    assert on.status_code == 200
    assert on.json() == {
        "rate": 1.0,
        "kinds": ["gateway_html"],
        "retry_after": 1.0,
        "slow_seconds": 5.0,
        "seed": None,
    }
    assert (await http.get(PATH.format(BERT))).status_code == 502

    off = await http.post("/_sim/faults", json={"rate": 0})
    assert off.json()["kinds"] == ["gateway_html"]  # keys left out keep their values
    assert (await http.get(PATH.format(BERT))).status_code == 200
    state = (await http.get("/_sim/state")).json()
    assert state["faults"]["gateway_html"] == 1
    assert state["ok_requests"] == {BERT: 1}
    assert state["requests"] == {BERT: 2}


async def test_sim_faults_with_a_seed_restarts_the_sequence(serve: Serve) -> None:
    http, _ = await serve(fault_sim(*FAST_KINDS, rate=0.5))
    first = await symptoms(http, 30)
    await http.post("/_sim/faults", json={"seed": 7})
    assert await symptoms(http, 30) == first


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"rate": 2}, "rate: expected a probability from 0 to 1"),
        ({"kinds": ["boom"]}, "kinds[0]: unknown fault kind 'boom'"),
        ({"kinds": []}, "kinds: expected at least one"),
        ({"slow_seconds": "5"}, "slow_seconds: expected a number"),
        ({"speed": 1}, "speed: unknown key"),
        ([1], "expected a JSON object"),
    ],
)
async def test_sim_faults_rejects_invalid_changes_naming_the_key(
    serve: Serve, body: object, problem: str
) -> None:
    sim = fault_sim("server_error", rate=0.5)
    http, _ = await serve(sim)
    response = await http.post("/_sim/faults", json=body)
    assert response.status_code == 400
    assert problem in response.json()["error"]
    assert sim.faults is not None
    assert sim.faults.config.rate == 0.5


async def test_ok_requests_counts_only_clean_answers_including_the_2775(serve: Serve) -> None:
    sim = fault_sim("server_error", rate=0.0)
    http, _ = await serve(sim)
    assert (await http.get(PATH.format(BERT))).status_code == 200
    assert (await http.get(PATH.format(UNKNOWN))).status_code == 400
    await http.post("/_sim/faults", json={"rate": 1.0})
    assert (await http.get(PATH.format(BERT))).status_code >= 500
    state = (await http.get("/_sim/state")).json()
    assert state["requests"] == {BERT: 2, UNKNOWN: 1}
    assert state["ok_requests"] == {BERT: 1, UNKNOWN: 1}
    assert state["faults"] == {**dict.fromkeys(FAULT_KINDS, 0), "server_error": 1}


async def test_faults_never_touch_admin_or_iam_endpoints(serve: Serve) -> None:
    sim = Simulator(
        builtin_scenario(),
        manual_clock=True,
        faults={"rate": 1.0, "kinds": ["reset"]},
        iam_users=[("alice", "pw-alice", "acme")],
    )
    http, _ = await serve(sim)
    for _ in range(5):
        assert (await http.get("/_sim/state")).status_code == 200
        assert (await http.post("/_sim/advance", json={"seconds": 1})).status_code == 200
    auth = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": "alice", "password": "pw-alice", "domain": {"name": "acme"}}
                },
            },
            "scope": {"project": {"id": PROJECT}},
        }
    }
    assert (await http.post("/v3/auth/tokens", json=auth)).status_code == 201
    assert sim.faults is not None
    assert sum(sim.faults.counts.values()) == 0


# --- configuration and validation ---------------------------------------------------------------

JOBS = [{"id": "j", "name": "n", "timeline": [{"at": 0, "phase": "Running"}]}]


def test_a_scenario_faults_block_is_used_and_explicit_arguments_replace_it() -> None:
    scenario = parse_scenario(
        {"jobs": JOBS, "faults": {"rate": 0.25, "kinds": ["reset"], "retry_after": None}}
    )
    assert scenario.faults == FaultConfig(rate=0.25, kinds=("reset",), retry_after=None)
    sim = Simulator(scenario)
    assert sim.faults is not None
    assert sim.faults.config == scenario.faults
    replaced = Simulator(scenario, faults=FaultConfig(rate=1.0))
    assert replaced.faults is not None
    assert replaced.faults.config.kinds == FAULT_KINDS


def test_faults_block_problems_name_their_key_paths() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(
            {
                "jobs": JOBS,
                "faults": {
                    "rate": 1.5,
                    "kinds": ["reset", "boom", 3, "reset"],
                    "retry_after": "1",
                    "slow_seconds": -1,
                    "seed": 1.5,
                    "extra": True,
                },
            }
        )
    problems = info.value.problems
    assert problems[0] == (
        "faults.extra: unknown key (allowed: rate, kinds, retry_after, slow_seconds, seed)"
    )
    expected = [
        "faults.rate: expected a probability from 0 to 1, got 1.5",
        "faults.kinds[1]: unknown fault kind 'boom'",
        "faults.kinds[2]: expected a string, got 3",
        "faults.kinds[3]: 'reset' is listed twice",
        "faults.retry_after: expected a number, got '1'",
        "faults.slow_seconds: expected a finite number >= 0, got -1",
        "faults.seed: expected an integer, got 1.5",
    ]
    for line in expected:
        assert any(p.startswith(line) for p in problems), (line, problems)
    assert len(problems) == len(expected) + 1


@pytest.mark.parametrize(
    ("faults", "problem"),
    [
        ({"kinds": ["reset"]}, "faults.rate: required"),
        ("often", "faults: expected a mapping, got 'often'"),
        ({"rate": 0.1, "kinds": "reset"}, "faults.kinds: expected a list, got 'reset'"),
    ],
)
def test_faults_block_shape_problems(faults: object, problem: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario({"jobs": JOBS, "faults": faults})
    assert info.value.problems == [problem]


def test_simulator_faults_argument_is_validated_like_the_block() -> None:
    with pytest.raises(ScenarioError, match=r"rate: expected a number, got 'x'"):
        Simulator(builtin_scenario(), faults={"rate": "x"})
