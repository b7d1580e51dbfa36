"""Which HTTP transport carries the API calls, and the proxy the environment names for them.

httpx's default transport (httpcore) spends most of a poll's CPU in its connection pool at the
concurrency a large monitor needs (``shared/reference/performance-notes.md``: 1.7 ms a request
at 32 in flight, against 0.38 ms with aiohttp underneath), and this profile was confirmed at
10,000 jobs. ``httpx-aiohttp`` keeps the whole httpx API — ``httpx.Auth`` flows, streaming,
timeouts — over aiohttp's pool, so it is the default; ``api.transport: httpx`` switches back.

Its error mapping calls a refused connection and one the server dropped "connect timeouts";
this module maps them back (to ``ConnectError`` and ``ReadError``), so they are counted as
``network_error``, and only real timeouts as ``timeout``. Its aiohttp session keeps no cookies
(``DummyCookieJar``): the API sets none the monitor needs, and a jar is a lookup on every
request and a parse of every response.

The client hands requests straight to its transport (``client.py``), so the environment's proxy
is chosen here, once per client — a client speaks to one endpoint — by the standard library's
rule (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, minus ``NO_PROXY``), the one aiohttp uses.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.request
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
import httpx
import yarl
from httpx_aiohttp.transport import AiohttpTransport, map_aiohttp_exceptions

Transport = Literal["aiohttp", "httpx"]

_TIMEOUTS = (aiohttp.ServerTimeoutError, asyncio.TimeoutError)


WIRE_URL = "modelarts_monitor.wire_url"
"""A request extension: the request's URL as aiohttp takes it, made once (``wire_url``) for a
request sent again and again (a job's detail GET). Given the URL's text, aiohttp parses it
afresh on every request (its cache holds far fewer than 10,000 jobs' URLs): 12-16 us a poll."""


def wire_url(url: httpx.URL) -> tuple[object, yarl.URL]:
    """``url`` for ``WIRE_URL``: tied to the parsed URL it was made from, so a request whose
    URL was replaced since (an auth flow may) is sent to its own, never to this one."""
    return url._uri_reference, yarl.URL(str(url))  # what aiohttp would make of the text


def _target(request: httpx.Request) -> yarl.URL | str:
    wire = request.extensions.get(WIRE_URL)
    if wire is not None and wire[0] is request.url._uri_reference:
        return wire[1]  # type: ignore[no-any-return]
    return str(request.url)


_UNBOUNDED = aiohttp.ClientTimeout(total=None, connect=None, sock_read=None, sock_connect=None)
"""aiohttp's own timers, none: ``ModelArtsClient`` bounds each exchange, first byte to last,
with one deadline (``api.timeout``, a total per-request timeout). httpx-aiohttp would set
``sock_read``, one timer rescheduled per chunk read, and ``connect``, another per request: as
each is the same ``api.timeout`` and starts later than the client's deadline, neither ever
fired first, and both cost every request their timer handles."""


class _HonestAiohttpTransport(AiohttpTransport):
    """httpx-aiohttp's transport, with its errors made honest and its per-request work cut.

    Its ``handle_async_request`` is replaced, reusing its error map: the request's headers go
    to aiohttp as plain strings decoded once (httpx's ``Headers.items()`` first works out the
    encoding of a new ``Headers``, which every signed request is, and decodes them again), no
    aiohttp timer is set (``_UNBOUNDED``), the proxy's arguments are worked out once, and the
    body is read as aiohttp buffers it (``_Body``)."""

    def __init__(self, *, proxy: httpx.Proxy | None = None, **kwargs: Any) -> None:
        super().__init__(proxy=proxy, **kwargs)
        self._proxy_url = str(proxy.url) if proxy is not None else None
        self._proxy_auth = aiohttp.BasicAuth(*proxy.auth) if proxy and proxy.auth else None
        self._proxy_headers = proxy.headers if proxy is not None else None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._send(request)
        except httpx.TimeoutException as exc:
            cause = exc.__cause__
            if isinstance(cause, aiohttp.ClientConnectorError):
                raise httpx.ConnectError(str(cause)) from cause
            if isinstance(cause, aiohttp.ClientError) and not isinstance(cause, _TIMEOUTS):
                raise httpx.ReadError(str(cause)) from cause
            raise

    async def _send(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(self.client, aiohttp.ClientSession):
            self.client = self.get_client()
        data: bytes | httpx.AsyncByteStream | None
        try:
            data = request.content or None
        except httpx.RequestNotRead:
            data = request.stream  # type: ignore[assignment]
            request.headers.pop("transfer-encoding", None)  # aiohttp frames the body itself
        with map_aiohttp_exceptions():
            response = await self.client.request(
                request.method,
                _target(request),
                headers=aiohttp_headers(request.headers),
                data=data,
                allow_redirects=False,
                auto_decompress=False,
                compress=False,
                timeout=_UNBOUNDED,
                server_hostname=request.extensions.get("sni_hostname"),
                proxy=self._proxy_url,
                proxy_auth=self._proxy_auth,
                proxy_headers=self._proxy_headers,
            ).__aenter__()
        extensions = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode()
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_Body(response),
            request=request,
            extensions=extensions,
        )


class _Body(httpx.AsyncByteStream):
    """A response's body as aiohttp receives it: each chunk as it is buffered, not re-cut to
    16 KiB reads each inside a context manager (httpx-aiohttp's stream); aiohttp's errors are
    mapped as that stream maps them, on the error path only."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        try:
            while chunk := await content.readany():
                yield chunk
        except Exception:
            with map_aiohttp_exceptions():
                raise

    async def aclose(self) -> None:
        with map_aiohttp_exceptions():
            await self._response.__aexit__(None, None, None)


def aiohttp_headers(headers: httpx.Headers) -> Mapping[str, str]:
    """The request's headers as aiohttp is to send them: what ``Headers.items()`` gives (names
    lower-cased, a repeated name's values joined), decoded once when all are ASCII, as every
    header the monitor sends is; any other set goes through httpx's own decoding."""
    raw = headers.raw
    try:
        decoded = {k.lower().decode("ascii"): v.decode("ascii") for k, v in raw}
    except UnicodeDecodeError:
        return dict(headers.items())
    return decoded if len(decoded) == len(raw) else dict(headers.items())


def environment_proxy(endpoint: str) -> str | None:
    """The proxy URL the environment names for ``endpoint``, or None to go direct."""
    url = urlsplit(endpoint)
    if url.hostname and urllib.request.proxy_bypass(url.hostname):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(url.scheme) or proxies.get("all") or None


def httpx_transport(
    endpoint: str, *, verify: ssl.SSLContext | bool, max_connections: int
) -> httpx.AsyncBaseTransport:
    """httpx's own transport (httpcore), through the environment's proxy for ``endpoint``."""
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    proxy = environment_proxy(endpoint)
    return httpx.AsyncHTTPTransport(verify=verify, limits=limits, trust_env=True, proxy=proxy)


def build_transport(
    kind: Transport,
    *,
    verify: ssl.SSLContext | bool,
    max_connections: int,
    endpoint: str | None = None,
) -> httpx.AsyncBaseTransport | None:
    """The transport for ``endpoint``'s calls, through the environment's proxy for it.

    Without ``endpoint``, httpx's kind is None (the client builds it, knowing its endpoint)
    and aiohttp's goes direct."""
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    if kind == "httpx":
        if endpoint is None:
            return None
        return httpx_transport(endpoint, verify=verify, max_connections=max_connections)
    proxy = environment_proxy(endpoint) if endpoint else None
    transport = _HonestAiohttpTransport(
        verify=verify,
        limits=limits,
        trust_env=True,
        proxy=httpx.Proxy(proxy) if proxy else None,
    )

    def session() -> aiohttp.ClientSession:
        # As httpx-aiohttp builds it, but without a cookie jar. Called at the first request,
        # so inside the running loop.
        connector = aiohttp.TCPConnector(
            keepalive_timeout=limits.keepalive_expiry,
            ssl=transport.ssl_context,
            limit=max_connections,
        )
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

    transport.client = session
    return transport
