"""``MetadataAuth``: the host agency's temporary AK/SK, fetched as the SDK does, renewed early
and after a 401, one fetch shared by concurrent requests, failures in plain words.

A ``FakeHost`` (``httpx.MockTransport``) plays the metadata service and the API gateway, which
checks each signature with ``verify`` and the security token that goes with the AK; the clock
is injected.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from monitor.errors import AuthError, InvalidResponse, NetworkError, ServerError
from monitor.modelarts.auth.aksk import verify
from monitor.modelarts.auth.metadata import (
    NO_AGENCY,
    RENEW_BEFORE,
    SECURITY_KEY_PATH,
    SESSION_TOKEN_PATH,
    MetadataAuth,
)

META = "http://169.254.169.254"
API = "https://modelarts.cn-north-4.myhuaweicloud.com"
JOB_URL = f"{API}/v2/PROJ/training-jobs/JOB"
T0 = 1_795_000_000.0
HOUR = 3600.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeHost:
    """Metadata service issuing ``AK1``/``SK1``/``ST1``, ``AK2``..., valid ``lifetime`` seconds;
    the API accepts a request signed with an issued, unexpired key and its own token."""

    def __init__(self, clock: Clock, lifetime: float = 2 * HOUR, session: int = 200) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.session = session  # the PUT's answer: 200 (a token), 404 or 405 (none)
        self.keys: dict[str, tuple[str, str, float]] = {}
        self.revoked: set[str] = set()
        self.refuse_all = False
        self.puts: list[httpx.Request] = []
        self.gets: list[httpx.Request] = []
        self.api: list[httpx.Request] = []
        self.gate: asyncio.Event | None = None  # holds the GET until set
        self.key_answer: httpx.Response | None = None  # replaces the GET's answer once

    async def metadata(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == SESSION_TOKEN_PATH and request.method == "PUT":
            self.puts.append(request)
            if self.session != 200:
                return httpx.Response(self.session)
            return httpx.Response(200, text=f"session-{len(self.puts)}")
        assert request.url.path == SECURITY_KEY_PATH and request.method == "GET"
        self.gets.append(request)
        if self.gate is not None:
            await self.gate.wait()
        if self.key_answer is not None:
            answer, self.key_answer = self.key_answer, None
            return answer
        n = len(self.keys) + 1
        expires = self.clock() + self.lifetime
        self.keys[f"AK{n}"] = (f"SK{n}", f"ST{n}", expires)
        credential = {"access": f"AK{n}", "secret": f"SK{n}", "securitytoken": f"ST{n}"}
        return httpx.Response(200, json={"credential": {**credential, "expires_at": iso(expires)}})

    def gateway(self, request: httpx.Request) -> httpx.Response:
        self.api.append(request)
        ak = request.headers["Authorization"].split("Access=")[1].split(",")[0]
        sk, token, expires = self.keys.get(ak, ("", "", 0.0))
        secret = {ak: sk}.get if sk else {}.get
        reason = verify(
            "GET", request.url.raw_path.decode(), request.headers, b"", secret, self.clock()
        )
        if reason or request.headers.get("X-Security-Token") != token:
            return httpx.Response(401, json={"error_code": "APIG.0301", "error_msg": "bad"})
        if self.refuse_all or ak in self.revoked or self.clock() >= expires:
            return httpx.Response(401, json={"error_code": "APIG.0301", "error_msg": "expired"})
        return httpx.Response(200, json={"ak": ak})

    def client(self, auth: MetadataAuth) -> httpx.AsyncClient:
        return httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(self.gateway))


def make_auth(host: FakeHost, **kw: Any) -> MetadataAuth:
    return MetadataAuth(
        META,
        project_id="PROJ",
        clock=host.clock,
        transport=httpx.MockTransport(host.metadata),
        **kw,
    )


async def get(host: FakeHost, auth: MetadataAuth) -> httpx.Response:
    async with host.client(auth) as client:
        return await client.get(JOB_URL)


# --- the protocol -------------------------------------------------------------------------------


async def test_signs_with_the_temporary_key_and_sends_its_security_token() -> None:
    """A session token is asked for, sent to the securitykey call, and the API request is
    signed with the temporary SK and carries the matching X-Security-Token and project id."""
    host = FakeHost(Clock())
    response = await get(host, make_auth(host))

    assert response.status_code == 200
    assert response.json() == {"ak": "AK1"}
    assert host.puts[0].headers["X-Metadata-Token-Ttl-Seconds"] == "21600"
    assert host.gets[0].headers["X-Metadata-Token"] == "session-1"
    sent = host.api[0]
    assert sent.headers["X-Security-Token"] == "ST1"
    assert sent.headers["X-Project-Id"] == "PROJ"
    assert "x-security-token" in sent.headers["Authorization"]


@pytest.mark.parametrize("status", [404, 405])
async def test_a_host_without_session_tokens_is_asked_without_one(status: int) -> None:
    """404 or 405 to the PUT means the host uses no session token: the GET goes without it."""
    host = FakeHost(Clock(), session=status)
    response = await get(host, make_auth(host))

    assert response.status_code == 200
    assert "X-Metadata-Token" not in host.gets[0].headers


async def test_a_lapsed_session_token_is_replaced_and_the_key_asked_again_once() -> None:
    """A 401 from securitykey that is not "no agency" means a new session token, one retry."""
    host = FakeHost(Clock())
    host.key_answer = httpx.Response(401, text="token expired")
    response = await get(host, make_auth(host))

    assert response.status_code == 200
    assert [r.headers["X-Metadata-Token"] for r in host.gets] == ["session-1", "session-2"]


# --- renewal ------------------------------------------------------------------------------------


async def test_credentials_are_renewed_the_documented_margin_before_they_expire() -> None:
    """Used until ``expires_at - 40 min`` (the SDK's threshold), then fetched again."""
    clock = Clock()
    host = FakeHost(clock, lifetime=2 * HOUR)
    auth = make_auth(host)
    async with host.client(auth) as client:
        await client.get(JOB_URL)
        clock.now = T0 + 2 * HOUR - RENEW_BEFORE - 1
        await client.get(JOB_URL)
        assert auth.fetches == 1
        clock.now = T0 + 2 * HOUR - RENEW_BEFORE
        response = await client.get(JOB_URL)
    assert auth.fetches == 2
    assert response.json() == {"ak": "AK2"}
    assert len(host.puts) == 1, "the session token is kept while it is valid"


async def test_short_lived_credentials_are_used_for_half_their_life() -> None:
    """Credentials living less than twice the margin are renewed at half life, not each call."""
    clock = Clock()
    host = FakeHost(clock, lifetime=60.0)
    auth = make_auth(host)
    async with host.client(auth) as client:
        await client.get(JOB_URL)
        clock.now = T0 + 29
        await client.get(JOB_URL)
        assert auth.fetches == 1
        clock.now = T0 + 30
        await client.get(JOB_URL)
    assert auth.fetches == 2


async def test_a_401_renews_once_and_retries_and_a_second_401_is_returned() -> None:
    """Revoked early: one renewal and one retry succeed; a still-refused retry does not loop."""
    host = FakeHost(Clock())
    auth = make_auth(host)
    async with host.client(auth) as client:
        await client.get(JOB_URL)
        host.revoked.add("AK1")
        assert (await client.get(JOB_URL)).json() == {"ak": "AK2"}
        host.refuse_all = True  # e.g. the agency lost its ModelArts permission
        response = await client.get(JOB_URL)
    assert response.status_code == 401
    assert auth.fetches == 3
    assert len(host.api) == 5  # 1 + (refused, retried) + (refused, retried): no loop


async def test_concurrent_requests_share_one_fetch() -> None:
    """Twenty requests that start without credentials cause one metadata fetch."""
    host = FakeHost(Clock())
    host.gate = asyncio.Event()
    auth = make_auth(host)
    async with host.client(auth) as client:
        tasks = [asyncio.create_task(client.get(JOB_URL)) for _ in range(20)]
        for _ in range(100):  # bounded: until one fetch waits at the gate
            if host.gets:
                break
            await asyncio.sleep(0)
        host.gate.set()
        responses = await asyncio.gather(*tasks)
    assert {r.status_code for r in responses} == {200}
    assert len(host.gets) == 1
    assert auth.fetches == 1


# --- failures -----------------------------------------------------------------------------------


async def test_an_unreachable_metadata_service_is_a_network_error_that_says_so() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    host = FakeHost(Clock())
    auth = MetadataAuth(META, transport=httpx.MockTransport(refuse), clock=host.clock)
    with pytest.raises(NetworkError, match="cannot reach the metadata service at http://169"):
        await get(host, auth)
    assert host.api == [], "no unsigned request is sent"


async def test_a_host_without_an_agency_is_an_auth_error_that_says_so() -> None:
    host = FakeHost(Clock())
    host.key_answer = httpx.Response(401, text=f'{{"message": "{NO_AGENCY}"}}')
    with pytest.raises(AuthError, match="the host has no agency"):
        await get(host, make_auth(host))
    assert len(host.gets) == 1, "no session-token retry: the host needs an agency, not a token"


async def test_a_metadata_server_error_is_a_server_error() -> None:
    host = FakeHost(Clock())
    host.key_answer = httpx.Response(503, text="busy")
    with pytest.raises(ServerError, match="metadata service"):
        await get(host, make_auth(host))


async def test_an_answer_without_credentials_is_invalid_and_never_quoted() -> None:
    """A 200 lacking a field is refused; the message does not echo the body (secrets)."""
    host = FakeHost(Clock())
    host.key_answer = httpx.Response(
        200, json={"credential": {"access": "AKX", "secret": "LEAKY-SECRET", "expires_at": "x"}}
    )
    with pytest.raises(InvalidResponse) as info:
        await get(host, make_auth(host))
    assert "LEAKY-SECRET" not in str(info.value)


async def test_credentials_are_in_no_repr_or_attribute_dump() -> None:
    host = FakeHost(Clock())
    auth = make_auth(host)
    await get(host, auth)
    for text in (repr(auth), str(vars(auth)), repr(vars(auth))):
        assert "SK1" not in text
        assert "ST1" not in text


def test_a_sync_client_is_refused_in_plain_words() -> None:
    host = FakeHost(Clock())
    with (
        httpx.Client(auth=make_auth(host), transport=httpx.MockTransport(host.gateway)) as c,
        pytest.raises(RuntimeError, match="AsyncClient"),
    ):
        c.get(JOB_URL)
