"""What every HTML page shares: the frame (head, style, navigation), escaping and formatting.

The pages are served under a ``Content-Security-Policy`` of ``default-src 'none'`` with only
inline style allowed (``server.SECURITY_HEADERS``), so everything a page needs is in it: one
``<style>`` here, inline SVG in ``svg.py``, no script, font, image or link to anywhere else.
Every value that came from outside (the API, the config, the query) passes ``esc`` on its way
into the HTML, attributes included (quotes escaped), so a job named ``<script>`` is text.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

from monitor import __version__
from monitor.core.events import rfc3339

PHASE_COLOURS: Mapping[str, str] = {
    "Creating": "#8a8f98",
    "Pending": "#c98a00",
    "Running": "#1f6feb",
    "Completed": "#1a7f37",
    "Failed": "#cf222e",
    "Abnormal": "#a40e26",
    "Terminating": "#8250df",
    "Terminated": "#57606a",
}
"""One colour per documented phase (``core.job.PHASES``); anything else is ``OTHER_COLOUR``."""
OTHER_COLOUR = "#6e7781"
HEALTH_COLOURS: Mapping[str, str] = {
    "up": "#1a7f37",
    "down": "#cf222e",
    "gone": "#8250df",
    "retired": "#57606a",
}

STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5em;color:#1f2328}"
    "a{color:#0969da}h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}"
    "table{border-collapse:collapse}td,th{padding:.25em .7em;text-align:left;"
    "vertical-align:top}tr:nth-child(even){background:#f6f8fa}th{border-bottom:1px solid #d0d7de}"
    ".badge{display:inline-block;padding:0 .5em;border-radius:.8em;color:#fff;"
    "font-size:.9em;white-space:nowrap}"
    ".muted{color:#656d76}.chips a,.chips b{margin-right:.8em}"
    ".kv td:first-child{color:#656d76}code{font-size:.95em}"
    ".bar{display:inline-block;height:.7em;background:#1f6feb;vertical-align:middle}"
    "svg text{font-family:system-ui,sans-serif;font-size:11px}"
)


def esc(value: object) -> str:
    """Any value as HTML text, safe in element content and in quoted attributes alike."""
    return html.escape(str(value), quote=True)


def phase_colour(phase: str) -> str:
    return PHASE_COLOURS.get(phase, OTHER_COLOUR)


def badge(text: str, colour: str, title: str = "") -> str:
    """A coloured label; the colour comes from the tables above, never from input."""
    tip = f" title='{esc(title)}'" if title else ""
    return f"<span class='badge' style='background:{colour}'{tip}>{esc(text) or '-'}</span>"


def phase_badge(phase: str) -> str:
    return badge(phase or "unknown", phase_colour(phase))


def when(ts: float | None, never: str = "never") -> str:
    """A Unix time as RFC 3339 UTC, escaped; ``never`` when there is none."""
    return esc(rfc3339(ts)) if ts is not None else esc(never)


def span(seconds: float | None) -> str:
    """A duration as a person reads it: ``2h 05m``, ``3m 20s``, ``45s``."""
    if seconds is None or seconds < 0:
        return "-"
    s = int(seconds)
    if s >= 86_400:
        return f"{s // 86_400}d {s % 86_400 // 3600:02d}h"
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s}s"


def frame(title: str, body: str, *, refresh: int | None = None) -> str:
    """A whole page. ``refresh``: seconds after which the browser reloads it (a ``<meta>``
    refresh: no script needed, and the policy governs fetches, not this navigation)."""
    meta = f"<meta http-equiv='refresh' content='{int(refresh)}'>" if refresh else ""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{esc(title)}</title>{meta}"
        # An empty icon: browsers would otherwise ask for /favicon.ico (a 404) on every view.
        "<link rel='icon' href='data:,'>"
        f"<style>{STYLE}</style></head><body>"
        f"<p class='muted'><a href='/'>modelarts-monitor</a> {esc(__version__)} · "
        "<a href='/metrics'>/metrics</a> · <a href='/healthz'>/healthz</a> · "
        "<a href='/readyz'>/readyz</a></p>"
        f"{body}</body></html>"
    )
