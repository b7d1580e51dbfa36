"""The HTTP endpoints: ``/metrics``, ``/healthz``, ``/readyz`` and a landing page at ``/``.

The server is handed plain callables (celery-exporter's ``create_app(registry, ...)`` pattern), so
it knows nothing of how snapshots are made and tests can serve any body they like.
"""

from __future__ import annotations

import asyncio
import html
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from aiohttp import web

from monitor import __version__
from monitor.core.events import rfc3339

CONTENT_TYPE_TEXT = "text/plain; version=0.0.4; charset=utf-8"
GZIP_LEVEL = 1
"""Exposition text is so repetitive that level 1 already shrinks it ~15x, at a fraction of
level 6's CPU."""


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


@dataclass(frozen=True, slots=True)
class JobRow:
    job_id: str
    name: str
    phase: str
    secondary_phase: str
    up: bool
    last_success: float | None
    restarts: int
    last_reason: str = ""
    """The newest ModelArts event message fetched for a failure of this job, as one line."""


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
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/healthz", get_healthz)
    app.router.add_get("/readyz", get_readyz)
    app.router.add_get("/", get_index)
    return app


def landing_page(rows: Sequence[JobRow]) -> str:
    """A page a person can read without Grafana; every value from the API is escaped."""
    e = html.escape
    body = "".join(
        "<tr>"
        f"<td>{e(r.name) or '<i>unknown</i>'}</td><td><code>{e(r.job_id)}</code></td>"
        f"<td>{e(r.phase) or '-'}</td><td>{e(r.secondary_phase) or '-'}</td>"
        f"<td>{'up' if r.up else '<b>down</b>'}</td>"
        f"<td>{e(rfc3339(r.last_success)) if r.last_success else 'never'}</td>"
        f"<td>{r.restarts}</td>"
        f"<td>{e(r.last_reason) or '-'}</td>"
        "</tr>"
        for r in rows
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>modelarts-monitor</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:.2em .8em;"
        "text-align:left}tr:nth-child(even){background:#f3f3f3}</style></head><body>"
        f"<h1>modelarts-monitor {e(__version__)}</h1>"
        "<p><a href='/metrics'>/metrics</a> · <a href='/healthz'>/healthz</a> · "
        "<a href='/readyz'>/readyz</a></p>"
        f"<table><tr><th>job</th><th>id</th><th>phase</th><th>secondary phase</th>"
        "<th>poll</th><th>last successful poll</th><th>restarts</th><th>last reason</th></tr>"
        f"{body}</table>"
        "</body></html>"
    )
