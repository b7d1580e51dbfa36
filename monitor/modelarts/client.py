"""The ModelArts HTTP calls, and the one place where HTTP outcomes become typed exceptions.

One ``ModelArtsClient`` (one ``httpx.AsyncClient``, one keep-alive pool) is built per process.
Authentication is an ``httpx.Auth`` handed in at construction, so call sites never sign anything.
``get_job`` returns the decoded JSON body; turning it into a snapshot is ``schema``'s job.

Statuses become exceptions in ``responses.raise_for_status``; here timeouts and connection
failures become ``ApiTimeout`` and ``NetworkError``.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from monitor.errors import (
    ApiError,
    ApiTimeout,
    ConfigError,
    InvalidResponse,
    NetworkError,
)
from monitor.modelarts.parse import parse_job_events
from monitor.modelarts.responses import excerpt, raise_for_status, request_id, retry_after
from monitor.modelarts.throttle import Throttle

MAX_BODY_BYTES = 8 * 1024 * 1024
"""A job document is a few KiB; anything this large is not one, and must not exhaust memory."""

RequestCounter = Callable[[str, str], None]
"""``count(endpoint, result)``: hears of every request sent, once it has its outcome
(``endpoint`` one of ``detail, search, events, metrics``; ``result`` a ``polls_total`` result)."""


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
        throttle: Throttle | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.project_id = project_id
        self._deadline = timeout
        self._throttle = throttle or Throttle()
        self._count: RequestCounter = _not_counted
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

    def count_requests(self, count: RequestCounter) -> None:
        """Report every request from now on to ``count`` (the API's cost by endpoint, which is
        what ``poll.bulk`` trades: ``modelarts_monitor_api_requests_total``)."""
        self._count = count

    async def get_job(self, job_id: str) -> Any:
        """The job-detail document, decoded; raises an ``ApiError`` subclass on any failure."""
        return (await self.get_job_body(job_id)).json()

    async def get_job_body(self, job_id: str) -> Body:
        """The job-detail body, undecoded, so a caller can tell an unchanged one at no cost."""
        return await self._get(f"/v2/{self.project_id}/training-jobs/{job_id}", "detail")

    async def get_task_metrics(self, job_id: str, task: str) -> Any:
        """One task's resource usage, decoded (``GET .../metrics/{task}``); see
        ``parse.parse_task_metrics``."""
        path = f"/v2/{self.project_id}/training-jobs/{job_id}/metrics/{quote(task, safe='')}"
        return (await self._get(path, "metrics")).json()

    async def get_job_events(self, job_id: str, *, level: str, limit: int) -> list[dict[str, str]]:
        """The job's newest events of one ``level`` (``Info | Warning | Error``), newest first,
        as ``{time, level, message, source}`` dicts (``GET .../events``). Raises an ``ApiError``
        subclass on any failure, like ``get_job``; the client's timeout bounds the throttle wait
        and the request together, so a caller is never held longer than that."""
        query = urlencode(
            {"offset": 0, "limit": max(1, min(limit, 100)), "order": "desc", "level": level}
        )
        try:
            async with asyncio.timeout(self._deadline):
                body = await self._get(
                    f"/v2/{self.project_id}/training-jobs/{job_id}/events?{query}", "events"
                )
        except TimeoutError as exc:
            raise ApiTimeout("no answer from ModelArts in time: TimeoutError") from exc
        return parse_job_events(body.json())

    async def _get(self, path: str, endpoint: str) -> Body:
        return await self._request("GET", path, endpoint)

    async def _request(self, method: str, path: str, endpoint: str, json: Any = None) -> Body:
        """The one way a call is made: throttled, capped, deadlined, errors typed, counted."""
        await self._throttle.acquire()
        try:
            body = await self._send(method, path, json)
        except ApiError as exc:
            self._count(endpoint, exc.result)
            raise
        self._count(endpoint, "ok")
        return body

    async def _send(self, method: str, path: str, json: Any) -> Body:
        try:
            # httpx's timeout bounds each read; the deadline bounds a server that trickles.
            async with (
                asyncio.timeout(self._deadline),
                self._http.stream(method, path, json=json) as streamed,
            ):
                response = await _read_capped(streamed)
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise ApiTimeout(f"no answer from ModelArts in time: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            raise NetworkError(f"cannot reach ModelArts: {type(exc).__name__}: {exc}") from exc
        except httpx.DecodingError as exc:  # e.g. a proxy's broken gzip: not a body we can use
            raise InvalidResponse(f"body cannot be decoded: {exc}") from exc
        if response.status_code == 429:
            self._throttle.throttled(retry_after(response))
        elif response.status_code < 300:
            self._throttle.succeeded()
        raise_for_status(response)
        return Body(response.content, request_id(response), response.status_code)

    async def search_jobs(self, body: dict[str, Any]) -> Any:
        """One page of the job search (``POST .../training-job-searches``; ``offset`` is a page
        index), decoded; raises an ``ApiError`` subclass on any failure, like ``get_job``."""
        path = f"/v2/{self.project_id}/training-job-searches"
        return (await self._request("POST", path, "search", json=body)).json()


@dataclass(frozen=True, slots=True)
class Body:
    """A successful response's bytes, with what an error about them must mention."""

    content: bytes
    request_id: str | None = None
    status: int = 200

    def json(self) -> Any:
        try:
            return json.loads(self.content)
        except RecursionError as exc:  # valid JSON, but nested deeper than any answer is
            raise InvalidResponse(
                "body is nested too deeply to be a ModelArts answer",
                status=self.status,
                request_id=self.request_id,
            ) from exc
        except ValueError as exc:
            text = self.content[:400].decode("utf-8", "replace")
            raise InvalidResponse(
                f"body is not JSON: {excerpt(text)}", status=self.status, request_id=self.request_id
            ) from exc


_DECODED = ("content-encoding", "content-length")
"""Headers that describe the bytes on the wire, not the decoded body we keep."""


async def _read_capped(streamed: httpx.Response) -> httpx.Response:
    """Read at most ``MAX_BODY_BYTES`` (after decompression, so a gzip bomb stops early too)."""
    body = bytearray()
    async for chunk in streamed.aiter_bytes():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise InvalidResponse(
                f"body exceeds {MAX_BODY_BYTES} bytes",
                status=streamed.status_code,
                request_id=request_id(streamed, {}),
            )
    headers = httpx.Headers(
        [(k, v) for k, v in streamed.headers.multi_items() if k.lower() not in _DECODED]
    )
    return httpx.Response(
        streamed.status_code, headers=headers, content=bytes(body), request=streamed.request
    )


def _not_counted(endpoint: str, result: str) -> None:
    """The default ``RequestCounter``: a client nobody asked to count."""


def tls_verify(ca_file: str | None, insecure: bool) -> ssl.SSLContext | bool:
    """What httpx's ``verify`` should be: the system's CAs, a given bundle, or (lab only) off."""
    if insecure:
        return False
    if ca_file:
        try:
            return ssl.create_default_context(cafile=ca_file)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise ConfigError(f"api.ca_file: cannot load {ca_file} as PEM CAs: {reason}") from exc
    return True
