"""The HTTP endpoints: ``/metrics``, ``/healthz``, ``/readyz`` and a landing page at ``/``.

The server is handed plain callables (celery-exporter's ``create_app(registry, ...)`` pattern), so
it knows nothing of how snapshots are made and tests can serve any body they like. Every
response, a 404 included, carries ``SECURITY_HEADERS``.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence

from aiohttp import web

from monitor.web.pages import JobRow, landing_page

CONTENT_TYPE_TEXT = "text/plain; version=0.0.4; charset=utf-8"
GZIP_LEVEL = 1
"""Exposition text is so repetitive that level 1 already shrinks it ~15x, at a fraction of
level 6's CPU."""
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
"""The pages are rendered on the server and need nothing from anywhere: no script, font,
frame or fetch, so ``default-src 'none'`` forbids them all, and an injected ``<script>`` or
``<img src=//evil>`` would do nothing even if escaping ever failed. Allowed are only what they
use: their inline ``<style>`` and ``style=`` attributes (``'unsafe-inline'``: a hash would break
on every change of the CSS, and with no fetch allowed injected CSS could reach nowhere), and
``data:`` images (the empty favicon, so browsers do not ask for ``/favicon.ico``). Inline SVG
is part of the document and needs no source. ``base-uri``, ``form-action`` and
``frame-ancestors`` do not fall back to ``default-src``, so they are set: no ``<base>``, forms
(the filters) only to this server, and no framing (``X-Frame-Options`` for browsers that predate
``frame-ancestors``). ``nosniff``: a body is only ever what its ``Content-Type`` says;
``no-referrer``: the monitor's URLs (host, job ids, filters) are not sent on with a link."""


def accepts_gzip(header: str) -> bool:
    """``Accept-Encoding`` names gzip with a non-zero quality (RFC 9110)."""
    for item in header.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() in ("gzip", "x-gzip"):
            q = params.strip().removeprefix("q=")
            try:
                return not params or float(q) > 0
            except ValueError:
                return False
    return False


def create_app(
    *,
    metrics: Callable[[], bytes | Iterable[bytes]],
    ready: Callable[[], tuple[bool, str]],
    overview: Callable[[], Sequence[JobRow]],
) -> web.Application:
    async def get_metrics(request: web.Request) -> web.StreamResponse:
        """Streamed a family section at a time: at 10,000 jobs the body is tens of MB, and
        sending one section while the next is joined halves a scrape's latency."""
        body = metrics()
        sections = [body] if isinstance(body, bytes) else body
        compress = accepts_gzip(request.headers.get("Accept-Encoding", ""))
        response = web.StreamResponse(
            headers={"Content-Type": CONTENT_TYPE_TEXT, "Vary": "Accept-Encoding"}
        )
        if compress:
            response.headers["Content-Encoding"] = "gzip"
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        gz = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip framing
        for section in sections:
            if compress:
                # zlib releases the GIL: MBs compress off the event loop.
                section = await asyncio.to_thread(gz.compress, section)
            if section:
                await response.write(section)
        if compress:
            await response.write(gz.flush())
        await response.write_eof()
        return response

    async def get_healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def get_readyz(request: web.Request) -> web.Response:
        ok, reason = ready()
        return web.Response(text=reason + "\n", status=200 if ok else 503)

    async def get_index(request: web.Request) -> web.Response:
        return web.Response(text=landing_page(overview()), content_type="text/html")

    app = web.Application()
    # A signal, not a middleware: it runs for every response just before its headers are sent,
    # so the streamed /metrics (prepared inside its handler) and the router's 404 get them too.
    app.on_response_prepare.append(_secure)
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/healthz", get_healthz)
    app.router.add_get("/readyz", get_readyz)
    app.router.add_get("/", get_index)
    return app


async def _secure(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)
