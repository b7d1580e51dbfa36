"""``TokenAuth``: IAM tokens fetched once, cached, refreshed early and after a 401, never leaked.

One ``httpx.MockTransport`` plays both IAM and the ModelArts API; the clock is injected.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from monitor.errors import (
    ApiError,
    ApiTimeout,
    AuthError,
    InvalidResponse,
    NetworkError,
    RateLimited,
    ServerError,
)
from monitor.modelarts.auth.iam import TokenAuth, _parse_time
from monitor.modelarts.client import ModelArtsClient
from tests.conftest import SEED_ID, job_doc

IAM = "https://iam.cn-north-4.myhuaweicloud.com"
API = "https://modelarts.cn-north-4.myhuaweicloud.com"
PROJECT = "0123456789abcdef0123456789abcdef"
USER = "monitor-bot"
DOMAIN = "acme-account"
PASSWORD = "Sup3r-Secret!pw"
T0 = 1_795_000_000.0  # 2026-11-18, any fixed instant will do
DAY = 86_400.0
JOB_URL = f"{API}/v2/{PROJECT}/training-jobs/{SEED_ID}"


def iso(ts: float) -> str:
    """IAM's timestamp format, e.g. ``2026-11-29T12:00:00.000000Z``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeCloud:
    """IAM issues ``token-1``, ``token-2``, ...; the API answers 401 to tokens in ``revoked``."""

    def __init__(self, clock: Clock, lifetime: float = DAY) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.iam_requests: list[httpx.Request] = []
        self.api_requests: list[httpx.Request] = []
        self.api_tokens: list[str | None] = []  # as received: a retry mutates the same Request
        self.iam_answer: Callable[[httpx.Request], httpx.Response] | None = None
        self.revoked: set[str] = set()
        self.reject_every_token = False
        self.iam_delay = 0.0  # seconds IAM takes to answer

    def iam(self, request: httpx.Request) -> httpx.Response:
        self.iam_requests.append(request)
        if self.iam_answer is not None:
            return self.iam_answer(request)
        now = self.clock()
        body = {"token": {"issued_at": iso(now), "expires_at": iso(now + self.lifetime)}}
        token = f"token-{len(self.iam_requests)}"
        return httpx.Response(201, headers={"X-Subject-Token": token}, json=body)

    def api(self, request: httpx.Request) -> httpx.Response:
        self.api_requests.append(request)
        token = request.headers.get("X-Auth-Token")
        self.api_tokens.append(token)
        if token is None or token in self.revoked or self.reject_every_token:
            return httpx.Response(
                401, json={"error_code": "ModelArts.0203", "error_msg": "token expired"}
            )
        return httpx.Response(200, json=job_doc())

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == httpx.URL(IAM).host:
            time.sleep(self.iam_delay)
            return self.iam(request)
        return self.api(request)

    async def ahandle(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == httpx.URL(IAM).host:
            await asyncio.sleep(self.iam_delay)
            return self.iam(request)
        return self.api(request)

    def tokens_sent(self) -> list[str | None]:
        return list(self.api_tokens)


def make_auth(clock: Clock, **kw: Any) -> TokenAuth:
    return TokenAuth(
        IAM, user=USER, password=PASSWORD, domain=DOMAIN, project_id=PROJECT, clock=clock, **kw
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cloud(clock: Clock) -> FakeCloud:
    return FakeCloud(clock)


def async_client(cloud: FakeCloud, auth: TokenAuth) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(cloud.ahandle), auth=auth)


def iam_error(status: int, message: str = "The username or password is wrong.") -> Any:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"error": {"code": status, "message": message}})

    return answer


async def test_first_request_fetches_a_token_with_the_documented_body_and_sends_it(
    clock: Clock, cloud: FakeCloud
) -> None:
    async with async_client(cloud, make_auth(clock)) as client:
        response = await client.get(JOB_URL, timeout=7.0)

    assert response.status_code == 200
    [iam] = cloud.iam_requests
    assert iam.method == "POST"
    assert iam.url.path == "/v3/auth/tokens"
    assert iam.url.params["nocatalog"] == "true"
    assert iam.headers["Content-Type"] == "application/json;charset=utf8"
    assert json.loads(iam.content) == {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": USER, "password": PASSWORD, "domain": {"name": DOMAIN}}
                },
            },
            "scope": {"project": {"id": PROJECT}},
        }
    }
    assert iam.extensions["timeout"]["read"] == 7.0, "the API request's timeouts bound IAM too"
    assert cloud.tokens_sent() == ["token-1"]


async def test_second_request_reuses_the_cached_token(clock: Clock, cloud: FakeCloud) -> None:
    async with async_client(cloud, make_auth(clock)) as client:
        await client.get(JOB_URL)
        clock.now += 600
        await client.get(JOB_URL)

    assert len(cloud.iam_requests) == 1
    assert cloud.tokens_sent() == ["token-1", "token-1"]


@pytest.mark.parametrize("refresh_before", [3600.0, 600.0])
async def test_token_is_refreshed_refresh_before_seconds_before_expires_at(
    clock: Clock, cloud: FakeCloud, refresh_before: float
) -> None:
    async with async_client(cloud, make_auth(clock, refresh_before=refresh_before)) as client:
        await client.get(JOB_URL)
        clock.now = T0 + DAY - refresh_before - 1
        await client.get(JOB_URL)
        assert len(cloud.iam_requests) == 1, "refreshed too early"
        clock.now = T0 + DAY - refresh_before
        await client.get(JOB_URL)

    assert len(cloud.iam_requests) == 2, "not refreshed at expires_at - refresh_before"
    assert cloud.tokens_sent() == ["token-1", "token-1", "token-2"]


async def test_a_token_shorter_lived_than_refresh_before_is_used_for_half_its_life(
    clock: Clock,
) -> None:
    """Otherwise a 30-minute token with a 1-hour margin would be fetched for every request."""
    cloud = FakeCloud(clock, lifetime=1800)
    async with async_client(cloud, make_auth(clock, refresh_before=3600)) as client:
        await client.get(JOB_URL)
        clock.now = T0 + 899
        await client.get(JOB_URL)
        assert len(cloud.iam_requests) == 1
        clock.now = T0 + 900
        await client.get(JOB_URL)

    assert len(cloud.iam_requests) == 2


async def test_expiry_is_measured_by_iams_clock_so_local_clock_skew_does_not_matter(
    clock: Clock, cloud: FakeCloud
) -> None:
    """IAM's clock is 30 h behind ours: its expires_at is in our past, the token still lasts 24 h."""
    cloud.clock = Clock(T0 - 30 * 3600)
    async with async_client(cloud, make_auth(clock)) as client:
        await client.get(JOB_URL)
        clock.now += DAY - 3600 - 1
        await client.get(JOB_URL)
        assert len(cloud.iam_requests) == 1
        clock.now += 1
        await client.get(JOB_URL)

    assert len(cloud.iam_requests) == 2


async def test_a_401_from_the_api_refreshes_the_token_once_and_retries_once(
    clock: Clock, cloud: FakeCloud
) -> None:
    cloud.revoked.add("token-1")  # revoked early, long before expires_at
    async with async_client(cloud, make_auth(clock)) as client:
        response = await client.get(JOB_URL)

    assert response.status_code == 200
    assert len(cloud.iam_requests) == 2
    assert cloud.tokens_sent() == ["token-1", "token-2"]


async def test_a_second_401_is_returned_as_is_without_looping(
    clock: Clock, cloud: FakeCloud
) -> None:
    cloud.reject_every_token = True
    async with async_client(cloud, make_auth(clock)) as client:
        response = await client.get(JOB_URL)

    assert response.status_code == 401
    assert len(cloud.iam_requests) == 2
    assert cloud.tokens_sent() == ["token-1", "token-2"]


async def test_twenty_concurrent_requests_without_a_token_cause_one_iam_request(
    clock: Clock, cloud: FakeCloud
) -> None:
    cloud.iam_delay = 0.05  # everybody arrives while the first fetch is in flight
    async with async_client(cloud, make_auth(clock)) as client:
        responses = await asyncio.gather(*(client.get(JOB_URL) for _ in range(20)))

    assert [r.status_code for r in responses] == [200] * 20
    assert len(cloud.iam_requests) == 1
    assert cloud.tokens_sent() == ["token-1"] * 20


async def test_twenty_concurrent_401s_for_one_revoked_token_cause_one_refresh(
    clock: Clock, cloud: FakeCloud
) -> None:
    async with async_client(cloud, make_auth(clock)) as client:
        await client.get(JOB_URL)
        cloud.revoked.add("token-1")
        cloud.iam_delay = 0.05
        responses = await asyncio.gather(*(client.get(JOB_URL) for _ in range(20)))

    assert [r.status_code for r in responses] == [200] * 20
    assert len(cloud.iam_requests) == 2
    assert cloud.tokens_sent().count("token-2") == 20


async def test_iam_401_raises_auth_error_naming_user_and_domain_but_not_the_password(
    clock: Clock, cloud: FakeCloud
) -> None:
    # Even an IAM that echoes the password back does not get it into the message.
    cloud.iam_answer = iam_error(401, f"The username or password is wrong: {PASSWORD}")
    async with async_client(cloud, make_auth(clock)) as client:
        with pytest.raises(AuthError) as caught:
            await client.get(JOB_URL)

    message = str(caught.value)
    assert f"IAM rejected user {USER} in domain {DOMAIN}" in message
    assert "The username or password is wrong" in message
    assert PASSWORD not in message
    assert PASSWORD not in repr(caught.value.args)
    assert caught.value.status == 401
    assert cloud.api_requests == [], "no API request without a token"


@pytest.mark.parametrize(
    ("status", "error"),
    [(403, AuthError), (429, RateLimited), (500, ServerError), (503, ServerError), (400, ApiError)],
)
async def test_iam_error_statuses_map_to_the_client_exception_tree(
    clock: Clock, cloud: FakeCloud, status: int, error: type[ApiError]
) -> None:
    cloud.iam_answer = iam_error(status, "nope")
    async with async_client(cloud, make_auth(clock)) as client:
        with pytest.raises(error) as caught:
            await client.get(JOB_URL)
    assert type(caught.value) is error
    assert caught.value.status == status


async def test_iam_429_carries_retry_after(clock: Clock, cloud: FakeCloud) -> None:
    cloud.iam_answer = lambda r: httpx.Response(429, headers={"Retry-After": "3"}, text="slow")
    async with async_client(cloud, make_auth(clock)) as client:
        with pytest.raises(RateLimited) as caught:
            await client.get(JOB_URL)
    assert caught.value.retry_after == 3.0


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(
            lambda r: httpx.Response(201, json={"token": {"expires_at": iso(T0 + DAY)}}),
            id="no X-Subject-Token",
        ),
        pytest.param(
            lambda r: httpx.Response(201, headers={"X-Subject-Token": "t"}, text="<html>"),
            id="body not JSON",
        ),
        pytest.param(
            lambda r: httpx.Response(
                201, headers={"X-Subject-Token": "t"}, json={"token": {"expires_at": "soon"}}
            ),
            id="expires_at unparsable",
        ),
        pytest.param(
            lambda r: httpx.Response(
                201, headers={"X-Subject-Token": "t"}, json={"token": {"expires_at": iso(T0 - 1)}}
            ),
            id="already expired",
        ),
    ],
)
async def test_an_unusable_token_answer_raises_invalid_response(
    clock: Clock, cloud: FakeCloud, answer: Callable[[httpx.Request], httpx.Response]
) -> None:
    cloud.iam_answer = answer
    async with async_client(cloud, make_auth(clock)) as client:
        with pytest.raises(InvalidResponse):
            await client.get(JOB_URL)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-29T12:00:00.000000Z",
        "2026-11-29T12:00:00Z",
        "2026-11-29T12:00:00.000z",
        "2026-11-29T12:00:00",  # naive: UTC
        "2026-11-29T20:00:00+08:00",
        "2026-11-29T12:00:00.000000000Z",  # nanoseconds
        " 2026-11-29T12:00:00.000000Z ",
    ],
)
def test_expires_at_is_parsed_in_every_iso_8601_spelling_iam_might_use(text: str) -> None:
    assert _parse_time(text) == datetime(2026, 11, 29, 12, tzinfo=UTC).timestamp()


@pytest.mark.parametrize("value", [None, 0, "", "tomorrow", "2026-13-01T00:00:00Z"])
def test_an_unreadable_expires_at_parses_to_none(value: object) -> None:
    assert _parse_time(value) is None


def test_a_sync_client_fetches_caches_and_retries_after_401(clock: Clock, cloud: FakeCloud) -> None:
    with httpx.Client(transport=httpx.MockTransport(cloud.handle), auth=make_auth(clock)) as client:
        assert client.get(JOB_URL).status_code == 200
        assert client.get(JOB_URL).status_code == 200
        cloud.revoked.add("token-1")
        assert client.get(JOB_URL).status_code == 200

    assert len(cloud.iam_requests) == 2
    assert cloud.tokens_sent() == ["token-1", "token-1", "token-1", "token-2"]


def test_ten_threads_sharing_a_sync_client_cause_one_iam_request(
    clock: Clock, cloud: FakeCloud
) -> None:
    cloud.iam_delay = 0.05
    with (
        httpx.Client(transport=httpx.MockTransport(cloud.handle), auth=make_auth(clock)) as client,
        ThreadPoolExecutor(max_workers=10) as pool,
    ):
        statuses = list(pool.map(lambda _: client.get(JOB_URL).status_code, range(10)))

    assert statuses == [200] * 10
    assert len(cloud.iam_requests) == 1


async def test_invalidate_drops_the_cached_token(clock: Clock, cloud: FakeCloud) -> None:
    auth = make_auth(clock)
    async with async_client(cloud, auth) as client:
        await client.get(JOB_URL)
        auth.invalidate()
        await client.get(JOB_URL)

    assert cloud.tokens_sent() == ["token-1", "token-2"]


async def test_repr_str_and_vars_never_show_the_password_or_the_token(
    clock: Clock, cloud: FakeCloud
) -> None:
    auth = make_auth(clock)
    async with async_client(cloud, auth) as client:
        await client.get(JOB_URL)  # a token is cached now

    for text in (repr(auth), str(auth)):
        assert USER in text and DOMAIN in text and IAM in text
        assert PASSWORD not in text and "token-1" not in text
    dump = repr(vars(auth))
    assert PASSWORD not in dump
    assert "token-1" not in dump


def test_constructor_rejects_missing_credentials(clock: Clock) -> None:
    with pytest.raises(ValueError, match="password is required"):
        TokenAuth(IAM, user=USER, password="", domain=DOMAIN, project_id=PROJECT)
    with pytest.raises(ValueError, match="refresh_before"):
        make_auth(clock, refresh_before=-1.0)


# -- through ModelArtsClient: how failures inside the auth flow reach the poller ----------------


def modelarts(cloud: FakeCloud, auth: TokenAuth, timeout: float = 10.0) -> ModelArtsClient:
    return ModelArtsClient(
        API, PROJECT, auth=auth, timeout=timeout, transport=httpx.MockTransport(cloud.ahandle)
    )


async def test_get_job_works_end_to_end_with_token_auth(clock: Clock, cloud: FakeCloud) -> None:
    async with modelarts(cloud, make_auth(clock)) as client:
        doc = await client.get_job(SEED_ID)
        await client.get_job(SEED_ID)

    assert doc["metadata"]["id"] == SEED_ID
    assert len(cloud.iam_requests) == 1
    assert cloud.iam_requests[0].headers["User-Agent"] == "modelarts-monitor"
    assert cloud.iam_requests[0].extensions["timeout"]["read"] == 10.0
    assert cloud.tokens_sent() == ["token-1", "token-1"]


async def test_iam_401_surfaces_as_auth_error_from_get_job(clock: Clock, cloud: FakeCloud) -> None:
    cloud.iam_answer = iam_error(401)
    async with modelarts(cloud, make_auth(clock)) as client:
        with pytest.raises(AuthError, match=f"user {USER} in domain {DOMAIN}") as caught:
            await client.get_job(SEED_ID)
    assert PASSWORD not in str(caught.value)


async def test_api_401_after_a_refresh_surfaces_as_auth_error_from_get_job(
    clock: Clock, cloud: FakeCloud
) -> None:
    cloud.reject_every_token = True
    async with modelarts(cloud, make_auth(clock)) as client:
        with pytest.raises(AuthError, match="authentication rejected"):
            await client.get_job(SEED_ID)
    assert len(cloud.iam_requests) == 2


@pytest.mark.parametrize(
    ("exc", "error"),
    [(httpx.ConnectError, NetworkError), (httpx.ReadTimeout, ApiTimeout)],
)
async def test_transport_errors_while_fetching_a_token_are_mapped_by_the_client_and_release_the_lock(
    clock: Clock, cloud: FakeCloud, exc: type[httpx.TransportError], error: type[ApiError]
) -> None:
    """The httpx error leaves the client's send, get_job translates it; the next poll recovers."""

    def fail(request: httpx.Request) -> httpx.Response:
        raise exc("IAM unreachable", request=request)

    cloud.iam_answer = fail
    async with modelarts(cloud, make_auth(clock)) as client:
        with pytest.raises(error):
            await client.get_job(SEED_ID)
        cloud.iam_answer = None
        doc = await asyncio.wait_for(client.get_job(SEED_ID), timeout=5)

    assert doc["metadata"]["id"] == SEED_ID
    assert cloud.tokens_sent() == ["token-2"]


async def test_a_poll_cancelled_during_the_token_fetch_releases_the_lock(
    clock: Clock, cloud: FakeCloud
) -> None:
    """get_job's deadline cancels a hung IAM call; httpx closes the flow and the lock is freed."""
    cloud.iam_delay = 30.0
    async with modelarts(cloud, make_auth(clock), timeout=0.05) as client:
        with pytest.raises(ApiTimeout):
            await client.get_job(SEED_ID)
        cloud.iam_delay = 0.0
        doc = await asyncio.wait_for(client.get_job(SEED_ID), timeout=5)

    assert doc["metadata"]["id"] == SEED_ID


def test_sync_lock_is_released_when_the_token_fetch_fails(clock: Clock, cloud: FakeCloud) -> None:
    cloud.iam_answer = iam_error(500)
    auth = make_auth(clock)
    with httpx.Client(transport=httpx.MockTransport(cloud.handle), auth=auth) as client:
        with pytest.raises(ServerError):
            client.get(JOB_URL)
        cloud.iam_answer = None
        done = threading.Event()

        def poll() -> None:
            client.get(JOB_URL)
            done.set()

        threading.Thread(target=poll, daemon=True).start()
        assert done.wait(5), "the lock was left held"
