"""Which HTTP transport carries the API calls.

httpx's default transport (httpcore) spends most of a poll's CPU in its connection pool at the
concurrency a large monitor needs (``shared/reference/performance-notes.md``: 1.7 ms a request
at 32 in flight, against 0.38 ms with aiohttp underneath), and this profile was confirmed at
10,000 jobs. ``httpx-aiohttp`` keeps the whole httpx API — ``httpx.Auth`` flows, streaming,
timeouts — over aiohttp's pool, so it is the default; ``api.transport: httpx`` switches back.

Its error mapping calls a refused connection and one the server dropped "connect timeouts";
this module maps them back (to ``ConnectError`` and ``ReadError``), so they are counted as
``network_error``, and only real timeouts as ``timeout``.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Literal

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


def build_transport(
    kind: Transport, *, verify: ssl.SSLContext | bool, max_connections: int
) -> httpx.AsyncBaseTransport | None:
    """None means httpx's own default transport."""
    if kind == "httpx":
        return None
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    return _HonestAiohttpTransport(verify=verify, limits=limits, trust_env=True)
