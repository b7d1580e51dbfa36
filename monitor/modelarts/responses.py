"""Reading ModelArts and IAM HTTP responses: the one place that maps a status to an exception
and turns server text into something fit for one log line.

Status mapping (``shared/reference/modelarts-api-notes.md``): 400 with ``ModelArts.2775`` is a
deleted or unknown job, not a client bug; 401/403 are credentials; 404 is the gateway saying no
such API lives at this endpoint (``APIG.0101``: a wrong endpoint or region, never a gone job);
429 is throttling (with ``Retry-After`` when the server sends one); 5xx are the server's.

Error bodies come in several shapes, and each must keep its code and text, so that ``check`` can
tell an operator what to fix: ModelArts' and the gateway's ``{"error_code", "error_msg"}`` (the
gateway adds ``request_id``), IAM's ``{"error": {"code", "message"}}``, and plain text or an HTML
page from a proxy in front of the API (its tags dropped, so the excerpt is the page's words).
"""

from __future__ import annotations

import html
import json
import math
import re
from typing import Any

import httpx

from monitor.errors import (
    ApiError,
    AuthError,
    EndpointNotFound,
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
    code, message = error_fields(response, body)
    kw: dict[str, Any] = {
        "status": status,
        "error_code": code,
        "request_id": request_id(response, body),
    }
    text = excerpt(message)
    if status == 400 and code == JOB_NOT_FOUND:
        raise JobNotFound(f"job not found: {text}", **kw)
    if status in (401, 403):
        raise AuthError(f"authentication rejected: {text}", **kw)
    if status == 404:
        raise EndpointNotFound(f"no such API at this endpoint: {text}", **kw)
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


def error_fields(
    response: httpx.Response, body: dict[str, Any] | None = None
) -> tuple[str | None, str]:
    """``(error code, message)`` of an error answer, whatever its shape.

    ModelArts and the gateway put a string code in ``error_code``; IAM puts its code (often the
    HTTP status, a number) in ``error.code``. A ModelArts-shaped body whose ``error_code`` is not
    a string has no code: a number there is not a code we can trust (``2775`` is not
    ``ModelArts.2775``, and must not make a job look deleted). Without a usable message the
    response text stands in, tags dropped when it is HTML.
    """
    body = error_body(response) if body is None else body
    raw_code = body.get("error_code")
    code = raw_code if isinstance(raw_code, str) and raw_code else None
    message = body.get("error_msg")
    nested = body.get("error")
    if isinstance(nested, dict) and "error_code" not in body:
        nested_code = nested.get("code")
        if isinstance(nested_code, str | int) and not isinstance(nested_code, bool):
            code = str(nested_code) or None
        message = nested.get("message")
    if isinstance(message, str) and message.strip():
        return code, message
    return code, _page_text(response)


_PAGE_CHARS = 65536
"""Enough of a page for a 200-character excerpt, and a bound on the tag stripping's work."""
_SKIPPED = re.compile(r"<(script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")


def _page_text(response: httpx.Response) -> str:
    """The response text; for an HTML page only its words, so an excerpt shows what it says."""
    text = response.text[:_PAGE_CHARS]
    if "html" in response.headers.get("Content-Type", "").lower() or text.lstrip()[:1] == "<":
        text = html.unescape(_TAG.sub(" ", _SKIPPED.sub(" ", text)))
    return text


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
