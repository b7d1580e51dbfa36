"""The HTTP endpoints: ``/metrics``, ``/healthz``, ``/readyz``, the overview at ``/``, and
each job's page at ``/jobs/{job_id}`` with its lines of ``/metrics`` at ``/jobs/{job_id}/metrics``.

The server is handed plain callables (celery-exporter's ``create_app(registry, ...)`` pattern), so
it knows nothing of how snapshots are made and tests can serve any body they like. Every
response, a 404 included, carries ``SECURITY_HEADERS``.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

from aiohttp import web

from monitor.core.text import LABEL_LIMIT
from monitor.web.job_page import JobPage, job_page, not_watched
from monitor.web.pages import JobRow, landing_page, parse_query

Section = bytes | memoryview
"""A piece of the ``/metrics`` body as its maker keeps it (a family's cached lines are a view
of pages of their own); written as it is."""
CONTENT_TYPE_TEXT = "text/plain; version=0.0.4; charset=utf-8"
CONTENT_TYPE_OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
OPENMETRICS_VERSIONS = (None, "1.0.0", "0.0.1")
"""The ``version`` parameters of ``application/openmetrics-text`` the monitor's body is (0.0.1
was the draft of 1.0.0; Prometheus parses both alike)."""
GZIP_LEVEL = 1
"""Exposition text is so repetitive that level 1 already shrinks it ~15x, at a fraction of
level 6's CPU."""
WRITE_SLICE = 256 * 1024
"""A cached family body is handed to the socket this much at a time (a memoryview, no copy),
each waiting for the last to drain, so the transport's buffer never holds a copy of MBs."""
OFF_LOOP = 64 * 1024
"""Sections larger than this are compressed on a thread (zlib releases the GIL)."""
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


class Pages(Protocol):
    """What the pages read (``daemon/page_data.PageData`` is one)."""

    def rows(self) -> Sequence[JobRow]:
        """Every watched job's overview row."""
        ...

    async def job(self, job_id: str) -> JobPage | None:
        """A watched job's page, or None."""
        ...

    def job_metrics(self, job_id: str) -> bytes:
        """A job's lines of ``/metrics`` (``SeriesStore.job_lines``), b"" if it has none."""
        ...


def wants_openmetrics(header: str) -> bool:
    """``Accept`` (RFC 9110) prefers OpenMetrics to the text format: the quality of the most
    specific range matching ``application/openmetrics-text`` (of a version the monitor writes)
    is above zero and above the text format's. Prometheus sends
    ``application/openmetrics-text;version=1.0.0,...;version=0.0.1;q=0.75,
    text/plain;version=0.0.4;q=0.5,*/*;q=0.1``; no header, ``*/*`` or a tie get text."""
    best = {"openmetrics": (-1, 0.0), "text": (-1, 0.0)}  # (specificity, quality)
    for item in header.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        args = {k.strip().lower(): v.strip() for k, _, v in (p.partition("=") for p in params)}
        try:
            q = float(args.get("q", "1"))
        except ValueError:
            continue  # a malformed range says nothing
        for kind, specificity in _specificity(media.lower(), args.get("version")).items():
            best[kind] = max(best[kind], (specificity, q))
    return best["openmetrics"][1] > 0 and best["openmetrics"][1] > best["text"][1]


def _specificity(media: str, version: str | None) -> dict[str, int]:
    """How specifically a media range names each format (2 exactly, 1 by its type's
    wildcard, 0 by ``*/*``); a format it does not match is left out."""
    exact = {"openmetrics": "application/openmetrics-text", "text": "text/plain"}
    out: dict[str, int] = {}
    for kind, name in exact.items():
        if media == name and (kind == "text" or version in OPENMETRICS_VERSIONS):
            out[kind] = 2
        elif media == name.split("/")[0] + "/*":
            out[kind] = 1
        elif media == "*/*":
            out[kind] = 0
    return out


def create_app(
    *,
    metrics: Callable[[], bytes | Iterable[Section]],
    openmetrics: Callable[[], bytes | Iterable[Section]] | None = None,
    ready: Callable[[], tuple[bool, str]],
    pages: Pages,
) -> web.Application:

    async def get_metrics(request: web.Request) -> web.StreamResponse:
        """The body as the callables keep it (each family's cached lines, its header apart),
        written piece by piece without joining it: at 10,000 jobs it is tens of MB. In
        OpenMetrics when the client prefers it and ``openmetrics`` is given."""
        as_openmetrics = openmetrics is not None and wants_openmetrics(
            request.headers.get("Accept", "")
        )
        body = openmetrics() if openmetrics is not None and as_openmetrics else metrics()
        sections = [body] if isinstance(body, bytes) else list(body)
        compress = accepts_gzip(request.headers.get("Accept-Encoding", ""))
        content_type = CONTENT_TYPE_OPENMETRICS if as_openmetrics else CONTENT_TYPE_TEXT
        response = web.StreamResponse(
            headers={"Content-Type": content_type, "Vary": "Accept, Accept-Encoding"}
        )
        if compress:
            response.headers["Content-Encoding"] = "gzip"
        else:  # a known length: no chunked framing, which would copy every piece once more
            response.content_length = sum(map(len, sections))
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        await (_write_gzip if compress else _write)(response, sections)
        await response.write_eof()
        return response

    async def get_healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def get_readyz(request: web.Request) -> web.Response:
        ok, reason = ready()
        return web.Response(text=reason + "\n", status=200 if ok else 503)

    async def get_index(request: web.Request) -> web.Response:
        query = parse_query(request.query.items())
        return web.Response(text=landing_page(pages.rows(), query), content_type="text/html")

    async def get_job(request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        page = await pages.job(job_id) if len(job_id) <= LABEL_LIMIT else None
        if page is None:
            return web.Response(text=not_watched(job_id), status=404, content_type="text/html")
        return web.Response(text=job_page(page), content_type="text/html")

    async def get_job_metrics(request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        body = pages.job_metrics(job_id) if len(job_id) <= LABEL_LIMIT else b""
        if not body:
            return web.Response(text="no series of this job\n", status=404)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_TEXT})

    app = web.Application()
    # A signal, not a middleware: it runs for every response just before its headers are sent,
    # so the streamed /metrics (prepared inside its handler) and the router's 404 get them too.
    app.on_response_prepare.append(_secure)
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/healthz", get_healthz)
    app.router.add_get("/readyz", get_readyz)
    app.router.add_get("/", get_index)
    app.router.add_get("/jobs/{job_id}", get_job)
    app.router.add_get("/jobs/{job_id}/metrics", get_job_metrics)
    return app


async def _write(response: web.StreamResponse, sections: Iterable[Section]) -> None:
    for section in sections:
        view = memoryview(section)
        for start in range(0, len(view), WRITE_SLICE):
            await response.write(view[start : start + WRITE_SLICE])


async def _write_gzip(response: web.StreamResponse, sections: Iterable[Section]) -> None:
    gz = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip framing
    for section in sections:
        if len(section) > OFF_LOOP:
            packed = await asyncio.to_thread(gz.compress, section)
        else:
            packed = gz.compress(section)
        if packed:
            await response.write(packed)
    await response.write(gz.flush())


async def _secure(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)
