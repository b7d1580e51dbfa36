"""The ModelArts HTTP calls, and the one place where HTTP outcomes become typed exceptions.

One ``ModelArtsClient`` (one httpx transport, one keep-alive pool) is built per target.
Authentication is an ``httpx.Auth`` handed in at construction, so call sites never sign anything.
``get_job`` returns the decoded JSON body; turning it into a snapshot is ``parse``'s job.

Requests are ``httpx.Request`` objects sent through the auth's flow straight to an httpx
transport (``_exchange``), not through ``httpx.AsyncClient``: its per-request work (merging the
URL with ``base_url``, default headers, cookies in and out, timeouts, redirects, hooks) was half
the CPU of a poll at 10,000 jobs, for nothing the monitor uses. A job's detail GET, the request
sent most, is prepared once per job (``_detail_request``); only the date and the signature are
new on each send. ``benchmarks/poll_path.py`` measures each step.

Statuses become exceptions in ``responses.raise_for_status``; here timeouts and connection
failures become ``ApiTimeout`` and ``NetworkError``.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
from collections.abc import AsyncIterable, Callable
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
from monitor.modelarts.auth.aksk import SIGNING_CACHE, SigningCache
from monitor.modelarts.parse import parse_job_events
from monitor.modelarts.responses import excerpt, raise_for_status, request_id, retry_after
from monitor.modelarts.throttle import Throttle
from monitor.modelarts.transport import WIRE_URL, httpx_transport, wire_url

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
        """``transport`` None: httpx's own, through the environment's proxy for ``endpoint``
        (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``); ``SSL_CERT_FILE`` is honoured too."""
        self.project_id = project_id
        self._deadline = timeout
        self._throttle = throttle or Throttle()
        self._count: RequestCounter = _not_counted
        self._auth = auth
        self._base = endpoint.rstrip("/")
        self._base_url = httpx.URL(self._base)
        self._transport = transport or httpx_transport(
            endpoint, verify=verify, max_connections=max_connections
        )
        self._headers = httpx.Headers(
            [
                (b"Host", httpx.URL(endpoint).netloc),
                (b"Accept", b"application/json"),
                (b"Accept-Encoding", b"gzip, deflate"),
                (b"Connection", b"keep-alive"),
                (b"User-Agent", b"modelarts-monitor"),
            ]
        )
        self._timeouts = httpx.Timeout(timeout).as_dict()
        self._details: dict[str, _Detail] = {}
        self._watched: Callable[[str], bool] = _nothing_watched
        self._sweep_at = _MIN_SWEEP

    async def __aenter__(self) -> ModelArtsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()

    def count_requests(self, count: RequestCounter) -> None:
        """Report every request from now on to ``count`` (the API's cost by endpoint, which is
        what ``poll.bulk`` trades: ``modelarts_monitor_api_requests_total``)."""
        self._count = count

    def keep_prepared(self, watched: Callable[[str], bool]) -> None:
        """Keep each job's prepared detail request only while ``watched(job_id)`` is true.

        Checked whenever the cache has doubled since its last check, so a job that leaves frees
        its entry at an amortised constant cost per request; without this, the cache is simply
        dropped each time it reaches that size (bounded either way)."""
        self._watched = watched

    def prepared_jobs(self) -> frozenset[str]:
        """The jobs whose detail request is prepared now."""
        return frozenset(self._details)

    async def get_job(self, job_id: str) -> Any:
        """The job-detail document, decoded; raises an ``ApiError`` subclass on any failure."""
        return (await self.get_job_body(job_id)).json()

    async def get_job_body(self, job_id: str) -> Body:
        """The job-detail body, undecoded, so a caller can tell an unchanged one at no cost."""
        return await self._request(self._detail_request(job_id), "detail")

    async def get_task_metrics(self, job_id: str, task: str) -> Any:
        """One task's resource usage, decoded (``GET .../metrics/{task}``); see
        ``parse.parse_task_metrics``."""
        path = f"/v2/{self.project_id}/training-jobs/{job_id}/metrics/{quote(task, safe='')}"
        return (await self._request(self._build("GET", path), "metrics")).json()

    async def get_job_events(self, job_id: str, *, level: str, limit: int) -> list[dict[str, str]]:
        """The job's newest events of one ``level`` (``Info | Warning | Error``), newest first,
        as ``{time, level, message, source}`` dicts (``GET .../events``). Raises an ``ApiError``
        subclass on any failure, like ``get_job``; the client's timeout bounds the throttle wait
        and the request together, so a caller is never held longer than that."""
        query = urlencode(
            {"offset": 0, "limit": max(1, min(limit, 100)), "order": "desc", "level": level}
        )
        path = f"/v2/{self.project_id}/training-jobs/{job_id}/events?{query}"
        try:
            async with asyncio.timeout(self._deadline):
                body = await self._request(self._build("GET", path), "events")
        except TimeoutError as exc:
            raise ApiTimeout("no answer from ModelArts in time: TimeoutError") from exc
        return parse_job_events(body.json())

    async def search_jobs(self, body: dict[str, Any]) -> Any:
        """One page of the job search (``POST .../training-job-searches``; ``offset`` is a page
        index), decoded; raises an ``ApiError`` subclass on any failure, like ``get_job``."""
        path = f"/v2/{self.project_id}/training-job-searches"
        return (await self._request(self._build("POST", path, json=body), "search")).json()

    # -- building requests ---------------------------------------------------------------------

    def _build(self, method: str, path: str, json: Any = None) -> httpx.Request:
        return httpx.Request(
            method,
            self._base + path,
            headers=self._headers,
            json=json,
            extensions={"timeout": self._timeouts},
        )

    def _detail_request(self, job_id: str) -> httpx.Request:
        """A job's detail GET from what was worked out at its first: the URL parsed once, the
        headers copied from the client's set, the signer's parts in the ``SigningCache``."""
        detail = self._details.get(job_id)
        if detail is None:
            if len(self._details) >= self._sweep_at:
                self._details = {j: d for j, d in self._details.items() if self._watched(j)}
                self._sweep_at = max(_MIN_SWEEP, 2 * len(self._details))
            url = appended(
                self._base, self._base_url, f"/v2/{self.project_id}/training-jobs/{job_id}"
            )
            cache = SigningCache() if self._auth is not None else None
            detail = self._details[job_id] = _Detail(url, cache)
        extensions: dict[str, Any] = {"timeout": self._timeouts, WIRE_URL: detail.wire}
        if detail.cache is not None:
            extensions[SIGNING_CACHE] = detail.cache
        request = httpx.Request(
            "GET", detail.url, headers=self._headers, stream=_NO_BODY, extensions=extensions
        )
        request.read()  # no body, and now known to have none (the signer asks)
        return request

    # -- sending -------------------------------------------------------------------------------

    async def _request(self, request: httpx.Request, endpoint: str) -> Body:
        """The one way a call is made: throttled, capped, deadlined, errors typed, counted."""
        await self._throttle.acquire()
        try:
            body = await self._send(request)
        except ApiError as exc:
            self._count(endpoint, exc.result)
            raise
        self._count(endpoint, "ok")
        return body

    async def _send(self, request: httpx.Request) -> Body:
        try:
            # httpx's timeout bounds each read; the deadline bounds a server that trickles.
            async with asyncio.timeout(self._deadline):
                response = await self._exchange(request)
                try:
                    content = await _read_capped(response)
                finally:
                    await response.aclose()
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise ApiTimeout(f"no answer from ModelArts in time: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            raise NetworkError(f"cannot reach ModelArts: {type(exc).__name__}: {exc}") from exc
        except httpx.DecodingError as exc:  # e.g. a proxy's broken gzip: not a body we can use
            raise InvalidResponse(f"body cannot be decoded: {exc}") from exc
        status = response.status_code
        if status == 429:
            self._throttle.throttled(retry_after(response))
        elif status < 300:
            self._throttle.succeeded()
        if not 200 <= status < 300:
            raise_for_status(_decoded(response, content))
        return Body(content, request_id(response), status)

    async def _exchange(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the auth flow, straight to the transport, as
        ``httpx.AsyncClient.send`` would but for what the monitor never uses: no cookie jar,
        redirects, event hooks or per-request timeout objects. The response is still open."""
        if self._auth is None:
            return await self._transport_send(request)
        flow = self._auth.async_auth_flow(request)
        try:
            request = await flow.__anext__()
            while True:
                response = await self._transport_send(request)
                try:
                    request = await flow.asend(response)
                except StopAsyncIteration:
                    return response
                except BaseException:
                    await response.aclose()
                    raise
                await response.aread()  # the flow asks again (a renewed token): this one is done
                await response.aclose()
        finally:
            await flow.aclose()

    async def _transport_send(self, request: httpx.Request) -> httpx.Response:
        """One request to the transport. A transport error gets the request it failed on, as
        ``AsyncClient`` attaches it: ``check`` reads it to tell an unreachable IAM or metadata
        service from an unreachable ModelArts."""
        try:
            response = await self._transport.handle_async_request(request)
        except httpx.TransportError as exc:
            exc.request = request
            raise
        response.request = request
        return response


class _Detail:
    """A job's prepared detail GET: its URL (httpx's, and as aiohttp takes it), and the
    signer's cache when there is a signer."""

    __slots__ = ("cache", "url", "wire")

    def __init__(self, url: httpx.URL, cache: SigningCache | None) -> None:
        self.url = url
        self.wire = wire_url(url)
        self.cache = cache


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


_PLAIN_PATH = re.compile(r"(?:/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)+")
"""A path httpx would keep exactly as written: unreserved characters only, so nothing to
quote, and no segment of dots, so nothing to resolve."""


def appended(base: str, parsed: httpx.URL, path: str) -> httpx.URL:
    """``httpx.URL(base + path)``, from ``parsed`` (``httpx.URL(base)``, an endpoint) without
    parsing the whole string again. A first round parses 10,000 detail URLs, and parsing and
    validating each whole (host, port, every component) cost about a tenth of a first poll's
    request, while the base was checked once already. A path that would need quoting or
    resolving (never a configured job's) is parsed whole."""
    reference = parsed._uri_reference
    plain = reference.query is None and reference.fragment is None
    if not plain or not _PLAIN_PATH.fullmatch(path):
        return httpx.URL(base + path)
    url = httpx.URL.__new__(httpx.URL)
    url._uri_reference = reference._replace(path=reference.path + path)
    return url


_DECODED = ("content-encoding", "content-length")
"""Headers that describe the bytes on the wire, not the decoded body we keep."""

_NO_BODY = httpx.ByteStream(b"")
_MIN_SWEEP = 1024
"""Prepared detail requests held before the first check of which jobs are still watched."""


async def _read_capped(streamed: httpx.Response) -> bytes:
    """Read at most ``MAX_BODY_BYTES`` (after decompression, so a gzip bomb stops early too)."""
    chunks: list[bytes] = []
    size = 0
    # The transport's own stream when nothing is to be decoded: httpx's decoder stack, and even
    # its raw iterator (a chunker and a context manager around every read), cost a poll more
    # than the rest of reading it. (A response built whole, as a mock transport's, has no
    # stream left: its decoded bytes are read.)
    stream = streamed.stream
    whole = streamed.is_stream_consumed or "content-encoding" in streamed.headers
    source: AsyncIterable[bytes] = (
        stream
        if isinstance(stream, httpx.AsyncByteStream) and not whole
        else streamed.aiter_bytes()
    )
    try:
        async for chunk in source:
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise InvalidResponse(
                    f"body exceeds {MAX_BODY_BYTES} bytes",
                    status=streamed.status_code,
                    request_id=request_id(streamed, {}),
                )
    except httpx.RequestError as exc:
        exc.request = streamed.request  # as httpx's iterators attach it: ``check`` reads it
        raise
    return b"".join(chunks)


def _decoded(streamed: httpx.Response, content: bytes) -> httpx.Response:
    """The response as read, for the error path: its decoded body and the headers that fit."""
    headers = httpx.Headers(
        [(k, v) for k, v in streamed.headers.multi_items() if k.lower() not in _DECODED]
    )
    return httpx.Response(
        streamed.status_code, headers=headers, content=content, request=streamed.request
    )


def _not_counted(endpoint: str, result: str) -> None:
    """The default ``RequestCounter``: a client nobody asked to count."""


def _nothing_watched(job_id: str) -> bool:
    """The default of ``keep_prepared``: no job is known to stay, so a full cache is dropped."""
    return False


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
