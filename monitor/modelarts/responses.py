"""Reading ModelArts and IAM HTTP responses: the one place that maps a status to an exception
and turns server text into something fit for one log line.

Status mapping (``shared/reference/modelarts-api-notes.md``): 400 with ``ModelArts.2775`` is a
deleted or unknown job, not a client bug; 401/403 are credentials; 429 is throttling (with
``Retry-After`` when the server sends one); 5xx are the server's.
"""

from __future__ import annotations

import json
import math
from typing import Any

import httpx

from monitor.errors import (
    ApiError,
    AuthError,
    JobNotFound,
    RateLimited,
    ServerError,
)

JOB_NOT_FOUND = "ModelArts.2775"


def raise_for_status(response: httpx.Response) -> None:
    """Translate a non-2xx response into the exception tree of ``monitor.errors``."""
    status = response.status_code
    if 200 <= status < 300:
        return
    body = error_body(response)
    code = body.get("error_code") if isinstance(body.get("error_code"), str) else None
    message = body.get("error_msg") if isinstance(body.get("error_msg"), str) else response.text
    kw: dict[str, Any] = {
        "status": status,
        "error_code": code,
        "request_id": request_id(response, body),
    }
    text = excerpt(str(message))
    if status == 400 and code == JOB_NOT_FOUND:
        raise JobNotFound(f"job not found: {text}", **kw)
    if status in (401, 403):
        raise AuthError(f"authentication rejected: {text}", **kw)
    if status == 429:
        raise RateLimited(f"throttled: {text}", retry_after=retry_after(response), **kw)
    if status >= 500:
        raise ServerError(f"server error: {text}", **kw)
    raise ApiError(f"unexpected HTTP {status}: {text}", **kw)


def error_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = json.loads(response.content)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def request_id(response: httpx.Response, body: dict[str, Any] | None = None) -> str | None:
    rid = response.headers.get("X-Request-Id") or (body or {}).get("request_id")
    return str(rid)[:64] if rid else None


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def excerpt(text: str, limit: int = 200) -> str:
    """Server text for a log line: one line, bounded, so an HTML error page stays readable."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
