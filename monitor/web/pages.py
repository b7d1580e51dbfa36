"""The HTML pages: what a person sees without Grafana. Every value from the API is escaped."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

from monitor import __version__
from monitor.core.events import rfc3339


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
        # An empty icon: browsers would otherwise ask for /favicon.ico (a 404) on every view.
        "<link rel='icon' href='data:,'>"
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
