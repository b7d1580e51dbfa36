"""The ModelArts HTTP calls, and the one place where HTTP outcomes become typed exceptions.

One ``ModelArtsClient`` (one ``httpx.AsyncClient``, one keep-alive pool) is built per process.
Authentication is an ``httpx.Auth`` handed in at construction, so call sites never sign anything.
``get_job`` returns the decoded JSON body; turning it into a snapshot is ``schema``'s job.

Status mapping (``shared/reference/modelarts-api-notes.md``): 400 with ``ModelArts.2775`` is a
deleted or unknown job, not a client bug; 401/403 are credentials; 429 is throttling (with
``Retry-After`` when the server sends one); 5xx, timeouts and connection failures are transient.
"""

from __future__ import annotations

import asyncio
import json
import math
import ssl
from typing import Any

import httpx

from monitor.errors import (
    ApiError,
    ApiTimeout,
    AuthError,
    InvalidResponse,
    JobNotFound,
    NetworkError,
    RateLimited,
    ServerError,
)

JOB_NOT_FOUND = "ModelArts.2775"
MAX_BODY_BYTES = 8 * 1024 * 1024
"""A job document is a few KiB; anything this large is not one, and must not exhaust memory."""


class ModelArtsClient:
    def __init__(
        self,
        endpoint: str,
        project_id: str,
        *,
        auth: httpx.Auth | None = None,
        timeout: float = 10.0,
        max_connections: int = 32,
        verify: ssl.SSLContext | bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.project_id = project_id
        self._deadline = timeout
        self._http = httpx.AsyncClient(
            base_url=endpoint,
            auth=auth,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            headers={"Accept": "application/json", "User-Agent": "modelarts-monitor"},
            verify=verify,
            # HTTPS_PROXY / HTTP_PROXY / NO_PROXY and SSL_CERT_FILE are honoured, as users expect.
            trust_env=True,
            transport=transport,
        )

    async def __aenter__(self) -> ModelArtsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def get_job(self, job_id: str) -> Any:
        """The job-detail document, decoded; raises an ``ApiError`` subclass on any failure."""
        return await self._get_json(f"/v2/{self.project_id}/training-jobs/{job_id}")

    async def _get_json(self, path: str) -> Any:
        try:
            # httpx's timeout bounds each read; the deadline bounds a server that trickles.
            async with asyncio.timeout(self._deadline):
                response = await self._http.get(path)
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise ApiTimeout(f"no answer from ModelArts in time: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            raise NetworkError(f"cannot reach ModelArts: {type(exc).__name__}: {exc}") from exc
        except httpx.DecodingError as exc:  # e.g. a proxy's broken gzip: not a body we can use
            raise InvalidResponse(f"body cannot be decoded: {exc}") from exc
        raise_for_status(response)
        if len(response.content) > MAX_BODY_BYTES:
            raise InvalidResponse(
                f"body of {len(response.content)} bytes exceeds {MAX_BODY_BYTES}",
                status=response.status_code,
                request_id=_request_id(response, {}),
            )
        try:
            return json.loads(response.content)
        except ValueError as exc:
            raise InvalidResponse(
                f"body is not JSON: {_excerpt(response.text)}",
                status=response.status_code,
                request_id=_request_id(response, {}),
            ) from exc


def tls_verify(ca_file: str | None, insecure: bool) -> ssl.SSLContext | bool:
    """What httpx's ``verify`` should be: the system's CAs, a given bundle, or (lab only) off."""
    if insecure:
        return False
    if ca_file:
        return ssl.create_default_context(cafile=ca_file)
    return True


def raise_for_status(response: httpx.Response) -> None:
    """Translate a non-2xx response into the exception tree of ``monitor.errors``."""
    status = response.status_code
    if 200 <= status < 300:
        return
    body = _error_body(response)
    code = body.get("error_code") if isinstance(body.get("error_code"), str) else None
    message = body.get("error_msg") if isinstance(body.get("error_msg"), str) else response.text
    kw: dict[str, Any] = {
        "status": status,
        "error_code": code,
        "request_id": _request_id(response, body),
    }
    text = _excerpt(str(message))
    if status == 400 and code == JOB_NOT_FOUND:
        raise JobNotFound(f"job not found: {text}", **kw)
    if status in (401, 403):
        raise AuthError(f"authentication rejected: {text}", **kw)
    if status == 429:
        raise RateLimited(f"throttled: {text}", retry_after=_retry_after(response), **kw)
    if status >= 500:
        raise ServerError(f"server error: {text}", **kw)
    raise ApiError(f"unexpected HTTP {status}: {text}", **kw)


def _error_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = json.loads(response.content)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _request_id(response: httpx.Response, body: dict[str, Any]) -> str | None:
    rid = response.headers.get("X-Request-Id") or body.get("request_id")
    return str(rid)[:64] if rid else None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _excerpt(text: str, limit: int = 200) -> str:
    """Server text for a log line: one line, bounded, so an HTML error page stays readable."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
