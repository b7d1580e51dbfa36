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
from typing import Literal
from urllib.parse import urlsplit

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

Transport = Literal["aiohttp", "httpx"]

_TIMEOUTS = (aiohttp.ServerTimeoutError, asyncio.TimeoutError)


class _HonestAiohttpTransport(AiohttpTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.TimeoutException as exc:
            cause = exc.__cause__
            if isinstance(cause, aiohttp.ClientConnectorError):
                raise httpx.ConnectError(str(cause)) from cause
            if isinstance(cause, aiohttp.ClientError) and not isinstance(cause, _TIMEOUTS):
                raise httpx.ReadError(str(cause)) from cause
            raise


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
