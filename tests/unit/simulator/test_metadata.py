"""The simulator's metadata service over real loopback: session tokens, temporary credentials
that expire on its wall clock, and ModelArts requests judged by their security token."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import httpx
import pytest
from aiohttp import web

from monitor.modelarts.auth.aksk import AkSkAuth
from monitor.modelarts.auth.metadata import MetadataAuth
from monitor.modelarts.client import ModelArtsClient
from monitor.simulator import Simulator, builtin_scenario, start, stop

BERT = "3faf5c03-aaa1-4cbe-879d-24b05d997347"
PROJECT = "0123456789abcdef"
JOB = f"/v2/{PROJECT}/training-jobs/{BERT}"
TOKEN_PATH = "/meta-data/latest/api/token"
KEY_PATH = "/openstack/latest/securitykey"


class WallClock:
    """Real time plus an offset the test moves: signatures stay fresh, credentials expire."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


Serve = Callable[[Simulator], Awaitable[tuple[httpx.AsyncClient, str]]]


@pytest.fixture(autouse=True)
def no_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    runners: list[web.AppRunner] = []
    clients: list[httpx.AsyncClient] = []

    async def _serve(sim: Simulator) -> tuple[httpx.AsyncClient, str]:
        runner, port = await start(sim, "127.0.0.1", 0)
        runners.append(runner)
        url = f"http://127.0.0.1:{port}"
        clients.append(httpx.AsyncClient(base_url=url, trust_env=False))
        return clients[-1], url

    yield _serve
    for client in clients:
        await client.aclose()
    for runner in runners:
        await stop(runner)


def make_sim(clock: WallClock, ttl: float = 60.0, **kw: object) -> Simulator:
    sim = Simulator(
        builtin_scenario(), manual_clock=True, wall_clock=clock, credential_ttl=ttl, **kw
    )
    sim.set_time(10)
    return sim


async def credential(http: httpx.AsyncClient) -> dict[str, str]:
    token = (await http.put(TOKEN_PATH, headers={"X-Metadata-Token-Ttl-Seconds": "60"})).text
    response = await http.get(KEY_PATH, headers={"X-Metadata-Token": token})
    assert response.status_code == 200
    doc: dict[str, str] = response.json()["credential"]
    return doc


async def test_securitykey_answers_the_documented_shape_with_the_configured_lifetime(
    serve: Serve,
) -> None:
    clock = WallClock()
    http, _ = await serve(make_sim(clock, ttl=120.0))
    doc = await credential(http)

    assert set(doc) == {"access", "secret", "securitytoken", "expires_at"}
    expires = datetime.strptime(doc["expires_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs(expires.timestamp() - (time.time() + 120.0)) < 5


@pytest.mark.parametrize("ttl", [None, "0", "21601", "six hours"])
async def test_a_session_token_needs_a_ttl_of_1_to_21600_seconds(
    serve: Serve, ttl: str | None
) -> None:
    http, _ = await serve(make_sim(WallClock()))
    headers = {} if ttl is None else {"X-Metadata-Token-Ttl-Seconds": ttl}
    assert (await http.put(TOKEN_PATH, headers=headers)).status_code == 400


async def test_a_session_token_not_issued_or_expired_is_refused(serve: Serve) -> None:
    clock = WallClock()
    http, _ = await serve(make_sim(clock))
    forged = await http.get(KEY_PATH, headers={"X-Metadata-Token": "made-up"})
    assert forged.status_code == 401
    token = (await http.put(TOKEN_PATH, headers={"X-Metadata-Token-Ttl-Seconds": "30"})).text
    clock.offset = 31
    late = await http.get(KEY_PATH, headers={"X-Metadata-Token": token})
    assert late.status_code == 401


async def test_a_request_signed_with_a_temporary_key_and_its_token_is_served(
    serve: Serve,
) -> None:
    clock = WallClock()
    sim = make_sim(clock, credentials={"PERMANENT": "permanent-sk"})
    http, url = await serve(sim)
    doc = await credential(http)
    auth = AkSkAuth(doc["access"], doc["secret"], security_token=doc["securitytoken"])
    async with ModelArtsClient(url, PROJECT, auth=auth) as client:
        job = await client.get_job(BERT)
    assert job["metadata"]["id"] == BERT
    assert sim.state()["credentials_issued"] == 1


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("expired", "security token expired"),
        ("other token", "security token invalid or not issued with this access key"),
        ("no token", "unknown access key"),
    ],
)
async def test_temporary_credentials_are_refused_like_the_gateway_does(
    serve: Serve, change: str, reason: str
) -> None:
    """Expired, mismatched or missing security token: 401 with the gateway's error shape."""
    clock = WallClock()
    http, _ = await serve(make_sim(clock, ttl=60.0, credentials={"PERMANENT": "sk"}))
    doc = await credential(http)
    other = await credential(http)
    token: str | None = doc["securitytoken"]
    if change == "expired":
        clock.offset = 61
    elif change == "other token":
        token = other["securitytoken"]
    else:
        token = None
    auth = AkSkAuth(doc["access"], doc["secret"], security_token=token)
    response = await http.get(JOB, auth=auth)
    assert response.status_code == 401
    body = response.json()
    assert body["error_code"] == "APIG.0301"
    assert body["error_msg"] == f"Incorrect IAM authentication information: {reason}"
    assert doc["secret"] not in response.text and doc["securitytoken"] not in response.text


async def test_the_monitors_metadata_auth_renews_before_the_simulators_credentials_expire(
    serve: Serve,
) -> None:
    """MetadataAuth against the simulator: a new key before the old one expires, no 401."""
    clock = WallClock()
    sim = make_sim(clock, ttl=60.0)
    _, url = await serve(sim)
    auth = MetadataAuth(url, project_id=PROJECT, clock=clock, renew_before=10.0)
    async with ModelArtsClient(url, PROJECT, auth=auth) as client:
        await client.get_job(BERT)
        clock.offset = 51  # within 10 s of expiry: renewed, not yet expired
        await client.get_job(BERT)
        clock.offset = 70  # the first key has expired by now; the second is still used
        await client.get_job(BERT)
    assert auth.fetches == 2
    assert sim.state()["credentials_issued"] == 2
