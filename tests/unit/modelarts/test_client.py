"""``ModelArtsClient``: every HTTP outcome becomes the decoded body or one typed ``ApiError``."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import httpx
import pytest
import yarl
from hypothesis import given
from hypothesis import strategies as st

from monitor.errors import (
    POLL_RESULTS,
    ApiError,
    ApiTimeout,
    AuthError,
    InvalidResponse,
    JobNotFound,
    NetworkError,
    RateLimited,
    ServerError,
    TransientError,
)
from monitor.modelarts import client as client_module
from monitor.modelarts.auth.aksk import SIGNING_CACHE, AkSkAuth, verify
from monitor.modelarts.client import MAX_BODY_BYTES, ModelArtsClient, appended
from monitor.modelarts.transport import Transport, build_transport, wire_url
from monitor.simulator import Simulator, parse_scenario, start, stop
from tests.conftest import SEED_ID, job_doc

ENDPOINT = "https://modelarts.example.com"
PROJECT = "0123456789abcdef"
Handler = (
    Callable[[httpx.Request], httpx.Response]
    | Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]
)


async def fetch(handler: Handler, job_id: str = SEED_ID, **kw: Any) -> Any:
    """``get_job`` through a client whose transport answers with ``handler``."""
    transport = httpx.MockTransport(handler)
    async with ModelArtsClient(ENDPOINT, PROJECT, transport=transport, **kw) as client:
        return await client.get_job(job_id)


def answer(status: int, body: Any = None, **kw: Any) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if body is None:
            return httpx.Response(status, **kw)
        if isinstance(body, bytes | str):
            return httpx.Response(status, content=body, **kw)
        return httpx.Response(status, json=body, **kw)

    return handler


def error_body(code: str, msg: str = "something went wrong", **extra: Any) -> dict[str, Any]:
    return {"error_code": code, "error_msg": msg, **extra}


async def raised(handler: Handler, **kw: Any) -> ApiError:
    with pytest.raises(ApiError) as info:
        await fetch(handler, **kw)
    assert info.value.result in POLL_RESULTS
    return info.value


# --- success --------------------------------------------------------------------------------


async def test_a_200_job_document_is_returned_decoded() -> None:
    doc = job_doc(phase="Pending", secondary_phase="Queuing")

    assert await fetch(answer(200, doc)) == doc


async def test_get_job_requests_the_job_detail_path_of_the_project() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=job_doc())

    await fetch(handler, job_id="job-42")

    (request,) = seen
    assert request.method == "GET"
    assert request.url.path == f"/v2/{PROJECT}/training-jobs/job-42"
    assert request.url.host == "modelarts.example.com"
    assert request.headers["Accept"] == "application/json"


# --- error mapping --------------------------------------------------------------------------


async def test_400_with_modelarts_2775_means_the_job_is_gone() -> None:
    exc = await raised(answer(400, error_body("ModelArts.2775", "Training job not found")))

    assert type(exc) is JobNotFound
    assert exc.result == "not_found"
    assert (exc.status, exc.error_code) == (400, "ModelArts.2775")
    assert "Training job not found" in str(exc)


async def test_400_with_another_error_code_is_a_plain_api_error_not_job_not_found() -> None:
    exc = await raised(answer(400, error_body("ModelArts.0103", "invalid parameter")))

    assert type(exc) is ApiError
    assert not isinstance(exc, JobNotFound)
    assert exc.error_code == "ModelArts.0103"
    assert exc.result == "invalid_response"


@pytest.mark.parametrize("status", [401, 403])
async def test_401_and_403_are_auth_errors(status: int) -> None:
    exc = await raised(answer(status, error_body("APIG.0301", "Incorrect IAM authentication")))

    assert type(exc) is AuthError
    assert exc.result == "auth_error"
    assert exc.status == status
    assert "Incorrect IAM authentication" in str(exc)


async def test_429_with_retry_after_says_how_long_to_wait() -> None:
    exc = await raised(answer(429, error_body("APIG.0308"), headers={"Retry-After": "3"}))

    assert isinstance(exc, RateLimited)
    assert exc.retry_after == 3.0
    assert exc.result == "rate_limited"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"},
        {"Retry-After": "-1"},
        {"Retry-After": "inf"},
        {"Retry-After": "nan"},
    ],
)
async def test_429_without_a_usable_retry_after_leaves_it_unknown(headers: dict[str, str]) -> None:
    exc = await raised(answer(429, error_body("APIG.0308"), headers=headers))

    assert isinstance(exc, RateLimited)
    assert exc.retry_after is None


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_are_transient_server_errors(status: int) -> None:
    exc = await raised(answer(status, error_body("ModelArts.0001", "internal error")))

    assert type(exc) is ServerError
    assert isinstance(exc, TransientError)
    assert exc.result == "server_error"
    assert exc.status == status


async def test_an_html_gateway_page_on_502_gives_a_bounded_one_line_message() -> None:
    page = (
        "<html>\n<head><title>502 Bad Gateway</title></head>\n<body>\n"
        + "<center><h1>502 Bad Gateway</h1></center>\n" * 40
        + "</body>\n</html>\n"
    )

    exc = await raised(answer(502, page, headers={"Content-Type": "text/html"}))

    assert isinstance(exc, ServerError)
    message = str(exc)
    assert "\n" not in message
    assert "502 Bad Gateway" in message
    assert len(message) < 300


async def test_a_multi_line_error_message_is_flattened() -> None:
    exc = await raised(answer(500, error_body("X.1", "first line\n  second line\n")))

    assert "\n" not in str(exc)
    assert "first line second line" in str(exc)


async def test_an_unexpected_status_is_a_plain_api_error() -> None:
    exc = await raised(answer(302, None, headers={"Location": "https://elsewhere.example.com/"}))

    assert type(exc) is ApiError
    assert exc.status == 302


@pytest.mark.parametrize(
    "body",
    [b"<html><body>maintenance</body></html>", b'{"kind": "job", "metadata": {"id": "abc"', b""],
    ids=["html", "truncated-json", "empty"],
)
async def test_a_200_whose_body_is_not_json_is_an_invalid_response(body: bytes) -> None:
    exc = await raised(answer(200, body))

    assert type(exc) is InvalidResponse
    assert exc.status == 200
    assert exc.result == "invalid_response"
    assert isinstance(exc.__cause__, ValueError)


async def test_a_body_larger_than_the_limit_is_an_invalid_response() -> None:
    huge = b'{"kind": "' + b"x" * MAX_BODY_BYTES + b'"}'

    exc = await raised(answer(200, huge))

    assert type(exc) is InvalidResponse
    assert "exceeds" in str(exc)
    assert len(str(exc)) < 200


async def test_a_body_that_cannot_be_decompressed_is_an_invalid_response() -> None:
    exc = await raised(answer(200, b"not gzip at all", headers={"Content-Encoding": "gzip"}))

    assert type(exc) is InvalidResponse
    assert isinstance(exc.__cause__, httpx.DecodingError)


async def test_a_gzip_encoded_document_is_decoded() -> None:
    doc = job_doc()
    body = gzip.compress(json.dumps(doc).encode())

    assert await fetch(answer(200, body, headers={"Content-Encoding": "gzip"})) == doc


# --- transport failures ---------------------------------------------------------------------


async def test_a_refused_connection_is_a_network_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    exc = await raised(handler)

    assert type(exc) is NetworkError
    assert isinstance(exc, TransientError)
    assert exc.result == "network_error"
    assert isinstance(exc.__cause__, httpx.ConnectError)
    assert "Connection refused" in str(exc)


async def test_a_read_timeout_is_an_api_timeout() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    exc = await raised(handler)

    assert type(exc) is ApiTimeout
    assert exc.result == "timeout"
    assert isinstance(exc.__cause__, httpx.ReadTimeout)


async def test_a_server_that_never_answers_hits_the_overall_deadline() -> None:
    never = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        await never.wait()
        raise AssertionError("unreachable")

    with pytest.raises(ApiTimeout) as info:
        await fetch(handler, timeout=0.05)

    assert info.value.result == "timeout"


# --- request ids ----------------------------------------------------------------------------


async def test_request_id_is_taken_from_the_x_request_id_header() -> None:
    exc = await raised(
        answer(
            500, error_body("X.1", request_id="from-body"), headers={"X-Request-Id": "from-header"}
        )
    )

    assert exc.request_id == "from-header"
    assert "request_id=from-header" in str(exc)


async def test_request_id_falls_back_to_the_bodys_request_id() -> None:
    exc = await raised(answer(400, error_body("ModelArts.2775", request_id="abc123")))

    assert exc.request_id == "abc123"


async def test_request_id_is_bounded_and_absent_when_the_server_sends_none() -> None:
    long = await raised(answer(503, None, headers={"X-Request-Id": "r" * 500}))
    none = await raised(answer(503, None))

    assert long.request_id == "r" * 64
    assert none.request_id is None


async def test_an_invalid_200_body_keeps_the_request_id() -> None:
    exc = await raised(answer(200, b"nope", headers={"X-Request-Id": "rid-7"}))

    assert exc.request_id == "rid-7"


# --- results are polls_total labels ---------------------------------------------------------


def _subclasses(cls: type[ApiError]) -> list[type[ApiError]]:
    out = [cls]
    for sub in cls.__subclasses__():
        out.extend(_subclasses(sub))
    return out


@pytest.mark.parametrize("cls", _subclasses(ApiError), ids=lambda c: c.__name__)
def test_every_api_error_class_has_a_polls_total_result_label(cls: type[ApiError]) -> None:
    assert cls.result in POLL_RESULTS
    assert cls.result != "ok"


@pytest.mark.parametrize(
    ("handler", "result"),
    [
        (answer(400, error_body("ModelArts.2775")), "not_found"),
        (answer(401, error_body("APIG.0301")), "auth_error"),
        (answer(429, None), "rate_limited"),
        (answer(500, None), "server_error"),
        (answer(200, b"{"), "invalid_response"),
        (answer(418, None), "invalid_response"),
    ],
)
async def test_each_failure_maps_to_its_documented_result(handler: Handler, result: str) -> None:
    exc = await raised(handler)

    assert exc.result == result


# --- against the simulator over loopback ----------------------------------------------------

AK, SK = "AKSIMULATOR0001", "simulator-secret-key-value"
SCENARIO = {
    "jobs": [
        {
            "id": "job-loop-1",
            "name": "loopback",
            "timeline": [{"at": 0, "phase": "Running", "secondary_phase": "Running", "nodes": 1}],
        }
    ]
}


@pytest.fixture
async def sim_endpoint() -> AsyncIterator[str]:
    sim = Simulator(parse_scenario(SCENARIO), manual_clock=True, credentials={AK: SK})
    runner, port = await start(sim, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await stop(runner)


async def test_a_signed_get_job_against_the_simulator_returns_the_document(
    sim_endpoint: str,
) -> None:
    auth = AkSkAuth(AK, SK, project_id=PROJECT)
    async with ModelArtsClient(sim_endpoint, PROJECT, auth=auth, timeout=5.0) as client:
        doc = await client.get_job("job-loop-1")
        with pytest.raises(JobNotFound) as gone:
            await client.get_job("job-not-in-scenario")

    assert doc["metadata"]["id"] == "job-loop-1"
    assert doc["status"]["phase"] == "Running"
    assert gone.value.request_id  # the simulator sends X-Request-Id


async def test_a_wrong_secret_key_is_rejected_by_the_simulator_as_auth_error(
    sim_endpoint: str,
) -> None:
    auth = AkSkAuth(AK, "not-the-right-secret", project_id=PROJECT)
    async with ModelArtsClient(sim_endpoint, PROJECT, auth=auth, timeout=5.0) as client:
        with pytest.raises(AuthError) as info:
            await client.get_job("job-loop-1")

    assert info.value.status == 401
    assert info.value.error_code == "APIG.0301"
    assert info.value.request_id
    assert "not-the-right-secret" not in str(info.value)


async def test_a_closed_port_is_a_network_error() -> None:
    """Nothing listens on a port we just released: connection refused, not a crash."""
    sim = Simulator(parse_scenario(SCENARIO), manual_clock=True)
    runner, port = await start(sim, "127.0.0.1", 0)
    await stop(runner)

    async with ModelArtsClient(f"http://127.0.0.1:{port}", PROJECT, timeout=5.0) as client:
        with pytest.raises(NetworkError):
            await client.get_job("job-loop-1")


async def test_the_aiohttp_transport_keeps_errors_honest() -> None:
    """A refused connection and a dropped one are network errors, not timeouts."""
    import socket

    from monitor.errors import NetworkError
    from monitor.modelarts.transport import build_transport

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    transport = build_transport("aiohttp", verify=True, max_connections=4)
    async with ModelArtsClient(f"http://127.0.0.1:{port}", "p", transport=transport) as client:
        with pytest.raises(NetworkError):
            await client.get_job("job-1")


async def test_a_200_nested_deeper_than_any_answer_is_an_invalid_response_not_a_crash() -> None:
    """Valid JSON can nest deeper than the decoder recurses: that is a bad answer like any
    other, not a bug to catch with a traceback (found by the pipeline property test)."""
    exc = await raised(answer(200, b"[" * 100_000))

    assert type(exc) is InvalidResponse
    assert "nested too deeply" in str(exc)


# --- the poll path: prepared once per job, nothing kept between requests ----------------------


ENDPOINTS = [
    "https://modelarts.cn-north-4.myhuaweicloud.com",
    "http://127.0.0.1:9888/",
    "https://[::1]:8443",
    "HTTPS://ModelArts.Example.COM:443/gateway/v1/",
    "http://gw.example.com/a%20b/",
    "http://user:pa%40ss@gw.example.com:80",
]
SEGMENT = st.one_of(
    st.from_regex(r"[A-Za-z0-9_-]{1,16}", fullmatch=True),  # what the config lets through
    st.text(st.sampled_from("Az09_-.~%/ é?#"), min_size=1, max_size=12),
)


@given(st.sampled_from(ENDPOINTS), SEGMENT, SEGMENT)
def test_a_detail_url_is_the_one_its_whole_string_parses_to(
    endpoint: str, project: str, job: str
) -> None:
    """Prepared without parsing the whole string again, a job's detail URL is still exactly
    the one httpx makes of it: same text, same path on the wire, same host and port; a path
    that needs quoting or resolving (dots, spaces, unicode, ``?``) is parsed whole."""
    base = endpoint.rstrip("/")
    path = f"/v2/{project}/training-jobs/{job}"
    fast, parsed = appended(base, httpx.URL(base), path), httpx.URL(base + path)
    assert str(fast) == str(parsed)
    assert (fast.raw_path, fast.host, fast.port, fast.netloc) == (
        parsed.raw_path,
        parsed.host,
        parsed.port,
        parsed.netloc,
    )
    assert fast == parsed
    assert wire_url(fast)[1] == yarl.URL(str(parsed))  # as aiohttp makes it of the text


async def test_each_detail_get_of_a_job_is_signed_afresh_from_what_was_prepared_once() -> None:
    """Three polls of a job go out to the same URL with the same headers, each with its own
    date and a signature the gateway accepts; the signing parts are the job's, kept."""
    now = iter([1_700_000_000.0, 1_700_000_001.0, 1_700_000_002.0])
    received: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(200, json=job_doc())

    auth = AkSkAuth(AK, SK, project_id=PROJECT, clock=lambda: next(now))
    transport = httpx.MockTransport(handler)
    async with ModelArtsClient(ENDPOINT, PROJECT, auth=auth, transport=transport) as client:
        for _ in range(3):
            await client.get_job(SEED_ID)

    assert {str(r.url) for r in received} == {f"{ENDPOINT}/v2/{PROJECT}/training-jobs/{SEED_ID}"}
    assert len({r.headers["X-Sdk-Date"] for r in received}) == 3
    for request, at in zip(received, (1_700_000_000, 1_700_000_001, 1_700_000_002), strict=True):
        target = request.url.raw_path.decode()
        assert verify("GET", target, request.headers, b"", {AK: SK}.get, now=at) is None
    assert received[0].extensions[SIGNING_CACHE] is received[2].extensions[SIGNING_CACHE]


async def test_a_poll_sends_the_headers_the_monitor_always_sent() -> None:
    """Sending straight to the transport changes nothing on the wire: the same header set as
    the ``httpx.AsyncClient`` the client used to be built on (compressed bodies still asked)."""
    received: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(200, json=job_doc())

    async with ModelArtsClient(ENDPOINT, PROJECT, transport=httpx.MockTransport(handler)) as c:
        await c.get_job(SEED_ID)
        await c.get_job_events(SEED_ID, level="Error", limit=5)

    for request in received:
        assert dict(request.headers) == {
            "host": "modelarts.example.com",
            "accept": "application/json",
            "accept-encoding": "gzip, deflate",
            "connection": "keep-alive",
            "user-agent": "modelarts-monitor",
        }


@pytest.mark.parametrize("kind", ["aiohttp", "httpx"])
async def test_a_cookie_the_api_sets_is_never_sent_back(
    kind: Transport, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither transport keeps a ``Set-Cookie``: the monitor needs none, and a jar costs every
    request a lookup and every response a parse."""
    from aiohttp import web

    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    cookies: list[str | None] = []

    async def detail(request: web.Request) -> web.Response:
        cookies.append(request.headers.get("Cookie"))
        response = web.json_response(job_doc())
        response.set_cookie("session", "abc", path="/")
        return response

    app = web.Application()
    app.router.add_get("/{tail:.*}", detail)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    # A host name, not an IP: cookie jars refuse cookies for IP addresses.
    url = f"http://localhost:{runner.addresses[0][1]}"
    transport = build_transport(kind, verify=True, max_connections=2, endpoint=url)
    try:
        async with ModelArtsClient(url, PROJECT, transport=transport) as client:
            for _ in range(3):
                await client.get_job(SEED_ID)
    finally:
        await runner.cleanup()

    assert cookies == [None, None, None]


async def prepare(client: ModelArtsClient, *jobs: str) -> None:
    for job in jobs:
        await client.get_job_body(job)


async def test_a_job_that_leaves_frees_its_prepared_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The per-job cache holds only watched jobs once it has grown: whenever it doubles, the
    entries of jobs no longer watched go, the others stay."""
    monkeypatch.setattr(client_module, "_MIN_SWEEP", 4)
    watched = {"a", "b", "c", "d", "e"}
    transport = httpx.MockTransport(answer(200, job_doc()))
    async with ModelArtsClient(ENDPOINT, PROJECT, transport=transport) as client:
        client.keep_prepared(watched.__contains__)
        await prepare(client, "a", "b", "c", "d", "e")  # the 5th finds 4: all watched, kept
        watched -= {"a", "b"}
        watched |= {"f", "g", "h"}
        await prepare(client, "f", "g", "h")  # the 8th entry's job finds 7: no check yet
        assert client.prepared_jobs() == {"a", "b", "c", "d", "e", "f", "g", "h"}
        watched.add("i")
        await prepare(client, "i")  # finds 8, twice the 4 left at the last check

        assert client.prepared_jobs() == {"c", "d", "e", "f", "g", "h", "i"}


async def test_without_being_told_which_jobs_stay_the_cache_is_still_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client_module, "_MIN_SWEEP", 4)
    transport = httpx.MockTransport(answer(200, job_doc()))
    async with ModelArtsClient(ENDPOINT, PROJECT, transport=transport) as client:
        await prepare(client, *(f"job-{i}" for i in range(50)))

        assert len(client.prepared_jobs()) <= 4
