"""transport.py's aiohttp transport on the wire, against loopback servers: the requests it
sends are byte for byte those of httpx-aiohttp's own transport, and a request is bounded by the
client's one deadline (``api.timeout``, a total per-request timeout), with no aiohttp timer
armed per chunk read."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import yarl
from aiohttp import web
from httpx_aiohttp import AiohttpTransport

from monitor.errors import ApiTimeout, InvalidResponse, NetworkError
from monitor.modelarts import client as client_module
from monitor.modelarts.client import ModelArtsClient
from monitor.modelarts.transport import WIRE_URL, build_transport
from tests.conftest import job_doc

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def loopback(serve: Serve) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


def monitor_transport() -> httpx.AsyncBaseTransport:
    transport = build_transport("aiohttp", verify=True, max_connections=4)
    assert transport is not None
    return transport


@pytest.mark.parametrize("stall", ["before_the_headers", "mid_body"])
async def test_a_server_that_stalls_is_a_timeout_at_api_timeout(stall: str) -> None:
    """No aiohttp timer is set (each read used to arm one): the client's deadline alone must
    end a request whose server stops sending, before its headers or halfway through its body."""
    hold = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if stall == "mid_body":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4000\r\n\r\n" + b'{"kind": "job"')
            await writer.drain()
        await hold.wait()
        writer.close()

    server, url = await loopback(serve)
    try:
        async with ModelArtsClient(url, "p", timeout=0.3, transport=monitor_transport()) as c:
            started = time.monotonic()
            with pytest.raises(ApiTimeout):
                await asyncio.wait_for(c.get_job("job-1"), 10)
            elapsed = time.monotonic() - started
    finally:
        hold.set()
        server.close()
    assert 0.3 <= elapsed < 5


async def test_a_body_read_in_many_chunks_arms_one_timer_not_one_per_chunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """httpx-aiohttp's ``sock_read`` rescheduled a timer for every chunk received, and its
    ``connect`` armed another per request; the client's deadline is the one left."""
    body = json.dumps(job_doc()).encode()
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d" % len(body)
    server, url = await loopback(one_answer(head, body, pieces=32))
    loop = asyncio.get_running_loop()
    armed: list[object] = []
    call_at = loop.call_at

    def counted(when: float, callback: Callable[..., object], *args: Any, **kw: Any) -> Any:
        armed.append(callback)
        return call_at(when, callback, *args, **kw)

    try:
        async with ModelArtsClient(url, "p", transport=monitor_transport()) as client:
            await client.get_job_body("job-1")  # the connection is opened and pooled
            monkeypatch.setattr(loop, "call_at", counted)
            got = await client.get_job_body("job-1")
            monkeypatch.undo()
    finally:
        server.close()
    assert got.content == body
    assert len(body) > 10 * 32  # many chunks
    assert len(armed) == 1, armed


async def streamed(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@contextlib.asynccontextmanager
async def recording(
    record: Callable[[web.Request], Awaitable[web.Response]],
) -> AsyncIterator[str]:
    """A loopback aiohttp server handing every request to ``record``; yields its base URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def exchange(transport: httpx.AsyncBaseTransport, request: httpx.Request) -> None:
    """Send ``request`` straight through ``transport`` and read its answer whole."""
    response = await transport.handle_async_request(request)
    await response.aread()
    await response.aclose()


REQUESTS: dict[str, Callable[[str], httpx.Request]] = {
    "a signed detail GET": lambda url: httpx.Request(
        "GET",
        f"{url}/v2/p/training-jobs/job-1",
        headers=[
            (b"Host", b"modelarts.example.com"),
            (b"Accept", b"application/json"),
            (b"Accept-Encoding", b"gzip, deflate"),
            (b"Connection", b"keep-alive"),
            (b"User-Agent", b"modelarts-monitor"),
            (b"X-Sdk-Date", b"20261201T000000Z"),
            (b"Authorization", b"SDK-HMAC-SHA256 Access=AK, SignedHeaders=host, Signature=ab"),
        ],
    ),
    "a search POST with a JSON body": lambda url: httpx.Request(
        "POST", f"{url}/v2/p/training-job-searches", json={"offset": 0, "limit": 50}
    ),
    "a UTF-8 header value": lambda url: httpx.Request(
        "GET", f"{url}/x", headers=[(b"X-Note", "grüße".encode())]
    ),
    "a repeated header": lambda url: httpx.Request(
        "GET", f"{url}/x", headers=[(b"X-Tag", b"a"), (b"x-tag", b"b")]
    ),
    "a streamed body": lambda url: httpx.Request(
        "POST", f"{url}/x", content=streamed([b'{"a"', b": 1}"])
    ),
}


@pytest.mark.parametrize("name", list(REQUESTS))
async def test_a_request_goes_out_exactly_as_httpx_aiohttps_own_transport_sends_it(
    name: str,
) -> None:
    """Headers decoded once, by hand, for aiohttp: the same names (lower-cased, as httpx hands
    them over), values, body and framing on the wire as before."""
    received: list[tuple[str, str, list[tuple[bytes, bytes]], bytes]] = []

    async def record(request: web.Request) -> web.Response:
        body = await request.read()
        received.append((request.method, request.path_qs, list(request.raw_headers), body))
        return web.json_response({})

    reference = AiohttpTransport()
    ours = monitor_transport()
    async with recording(record) as url:
        try:
            for transport in (reference, ours):
                await exchange(transport, REQUESTS[name](url))
        finally:
            await reference.aclose()
            await ours.aclose()
    assert len(received) == 2
    assert received[1] == received[0]


async def test_a_prepared_wire_url_is_sent_unless_the_request_was_given_another_since() -> None:
    """``WIRE_URL`` spares aiohttp parsing a job's URL on every poll; it is bound to the URL
    it was made from, so a request whose URL was replaced (as an auth flow may) goes to its
    own."""
    paths: list[str] = []

    async def record(request: web.Request) -> web.Response:
        paths.append(request.path_qs)
        return web.json_response({})

    transport = monitor_transport()
    async with recording(record) as url:

        def request() -> httpx.Request:
            own = httpx.URL(f"{url}/own")
            wire = (own._uri_reference, yarl.URL(f"{url}/prepared"))
            return httpx.Request("GET", own, extensions={WIRE_URL: wire})

        replaced = request()
        replaced.url = replaced.url.copy_with(path="/replaced")
        try:
            for each in (request(), replaced):
                await exchange(transport, each)
        finally:
            await transport.aclose()
    assert paths == ["/prepared", "/replaced"]


def one_answer(head: bytes, body: bytes, *, close: bool = False, pieces: int = 0) -> Serve:
    """A server answering every request with ``head`` and ``body`` (then hanging up if
    ``close``), the body sent ``pieces`` bytes at a time if given."""
    size = pieces or max(1, len(body))
    parts = [body[i : i + size] for i in range(0, len(body), size)]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            writer.write(head + b"\r\n\r\n")
            for part in parts:
                writer.write(part)
                await writer.drain()
            if close:
                break
        writer.close()

    return serve


async def test_a_connection_dropped_mid_body_is_a_network_error_naming_the_request() -> None:
    """``check`` names the URL a network failure happened on (the metadata service, IAM or
    ModelArts), read from the HTTP library's error: it is there for a failure mid-body too."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 4000"
    server, url = await loopback(one_answer(head, b'{"kind": "job"', close=True))
    try:
        async with ModelArtsClient(url, "p", transport=monitor_transport()) as client:
            with pytest.raises(NetworkError) as info:
                await client.get_job("job-1")
    finally:
        server.close()
    cause = info.value.__cause__
    assert isinstance(cause, httpx.TransportError)
    assert str(cause.request.url) == f"{url}/v2/p/training-jobs/job-1"


async def test_a_gzip_body_is_decoded_and_an_oversized_one_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    doc = job_doc()
    packed = gzip.compress(json.dumps(doc).encode())
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d" % len(packed)
    server, url = await loopback(one_answer(head, packed))
    try:
        async with ModelArtsClient(url, "p", transport=monitor_transport()) as client:
            assert await client.get_job("job-1") == doc
            monkeypatch.setattr(client_module, "MAX_BODY_BYTES", 100)
            with pytest.raises(InvalidResponse, match="exceeds 100 bytes"):
                await client.get_job("job-1")
    finally:
        server.close()


async def test_a_plain_body_larger_than_the_limit_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = json.dumps(job_doc()).encode()
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d" % len(body)
    server, url = await loopback(one_answer(head, body))
    monkeypatch.setattr(client_module, "MAX_BODY_BYTES", 100)
    try:
        async with ModelArtsClient(url, "p", transport=monitor_transport()) as client:
            with pytest.raises(InvalidResponse, match="exceeds 100 bytes"):
                await client.get_job("job-1")
    finally:
        server.close()
