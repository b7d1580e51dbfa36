"""IAM token authentication (``X-Auth-Token``) for the ModelArts API.

Why this module exists and looks the way it does:

* Password-scoped IAM tokens live 24 h and can be revoked early, so something has to fetch them,
  cache them, refresh them before ``expires_at`` and once more when the API answers 401.
  :class:`TokenAuth` is an ``httpx.Auth``, so all of that happens inside the client's send and no
  call site ever sees a token or a refresh.
* The logic is one sans-I/O generator (:meth:`TokenAuth._flow`): it yields the IAM request and
  the API request and receives their responses; httpx does the I/O, from a sync or an async
  client. Besides requests, the generator yields two markers around every token check and fetch:
  the sync driver takes a ``threading.Lock`` there and the async driver an ``asyncio.Lock``, so
  twenty polls that start without a token cause one IAM request, not twenty, and a burst of 401s
  for one revoked token causes one refresh.
* Neither the password nor the token is ever in a ``repr``, a log line or an exception message
  raised here; the password lives only in a closure and the token in an unprintable slotted cell,
  so an accidental ``vars(auth)`` dump shows neither (the same approach as ``auth.AkSkAuth``).

Failures while fetching a token surface like the client's own: IAM 401/403 raise ``AuthError``,
429 ``RateLimited``, 5xx ``ServerError``, a reply without a usable token ``InvalidResponse``;
transport errors are plain httpx exceptions that leave the client's ``send`` like any other, and
``ModelArtsClient`` translates them into ``ApiTimeout`` / ``NetworkError``.
"""

from __future__ import annotations

import asyncio
import enum
import json
import math
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator
from datetime import UTC, datetime
from typing import Any

import httpx

from monitor.errors import ApiError, AuthError, InvalidResponse, RateLimited, ServerError
from monitor.modelarts.responses import error_fields, excerpt, request_id, retry_after

__all__ = ["TokenAuth"]


class _Lock(enum.Enum):
    """What the flow yields, besides requests, to bracket reading and replacing the token."""

    ACQUIRE = "acquire"
    RELEASE = "release"


_Step = httpx.Request | _Lock
_Flow = Generator[_Step, httpx.Response | None, None]


class _TokenCell:
    """The cached ``(token, refresh at)``; slotted (no ``vars()``) and unprintable."""

    __slots__ = ("entry",)

    def __init__(self) -> None:
        self.entry: tuple[str, float] | None = None  # replaced whole, so reads are atomic

    def __repr__(self) -> str:
        return "<token hidden>"


def _credentials(
    user: str, password: str, domain: str, project_id: str
) -> tuple[Callable[[], bytes], Callable[[str], str]]:
    """``(token request body, redact)``: the password lives only in these two closures."""
    body = json.dumps(
        {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {"name": user, "password": password, "domain": {"name": domain}}
                    },
                },
                "scope": {"project": {"id": project_id}},
            }
        }
    ).encode("utf-8")

    def token_request_body() -> bytes:
        return body

    def redact(text: str) -> str:
        return text.replace(password, "***")

    return token_request_body, redact


class TokenAuth(httpx.Auth):
    """Sends ``X-Auth-Token``, fetching a project-scoped token from IAM with a password.

    The token is fetched on first use and again once ``clock() >= expires_at - refresh_before``
    (``expires_at`` taken relative to the token's own ``issued_at``, so a skewed local clock does
    not matter). When the API answers 401 the token is refreshed once and the request retried
    once; a second 401 is returned as is. ``iam_endpoint`` is e.g.
    ``https://iam.cn-north-4.myhuaweicloud.com``. Use one instance per event loop, as with the
    ``httpx.AsyncClient`` it belongs to.
    """

    # The token response body carries expires_at; API bodies are read by the client anyway.
    requires_response_body = True
    # The retry after a 401 sends the request again, so a streamed body must be replayable.
    requires_request_body = True

    def __init__(
        self,
        iam_endpoint: str,
        *,
        user: str,
        password: str,
        domain: str,
        project_id: str,
        refresh_before: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        for name, value in (
            ("iam_endpoint", iam_endpoint),
            ("user", user),
            ("password", password),
            ("domain", domain),
            ("project_id", project_id),
        ):
            if not value:
                raise ValueError(f"{name} is required")
        if not (math.isfinite(refresh_before) and refresh_before >= 0):
            raise ValueError("refresh_before must be a finite number of seconds >= 0")
        self.iam_endpoint = iam_endpoint.rstrip("/")
        self.user = user
        self.domain = domain
        self.project_id = project_id
        self.refresh_before = refresh_before
        self._clock = clock
        self._body, self._redact = _credentials(user, password, domain, project_id)
        self._cell = _TokenCell()
        self._sync_lock = threading.Lock()
        self._async_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return (
            f"TokenAuth(iam_endpoint={self.iam_endpoint!r}, user={self.user!r}, "
            f"domain={self.domain!r}, project_id={self.project_id!r}, password=***)"
        )

    def invalidate(self) -> None:
        """Drop the cached token; the next request fetches a new one."""
        self._cell.entry = None

    # -- the flow: one sans-I/O generator ------------------------------------------------------

    def _fresh_token(self) -> str | None:
        entry = self._cell.entry
        if entry is None or self._clock() >= entry[1]:
            return None
        return entry[0]

    def _flow(self, request: httpx.Request) -> _Flow:
        token = self._fresh_token()
        if token is None:
            yield _Lock.ACQUIRE
            # Checked again under the lock: another request may have fetched it meanwhile.
            token = self._fresh_token()
            if token is None:
                token = yield from self._fetch(request)
            yield _Lock.RELEASE
        request.headers["X-Auth-Token"] = token
        response = _sent((yield request))
        if response.status_code != 401:
            return
        yield _Lock.ACQUIRE
        renewed = self._fresh_token()
        if renewed is None or renewed == token:  # nobody has replaced the rejected token yet
            self.invalidate()
            renewed = yield from self._fetch(request)
        yield _Lock.RELEASE
        request.headers["X-Auth-Token"] = renewed
        yield request  # a second 401 goes back to the caller as is

    def _fetch(self, request: httpx.Request) -> Generator[_Step, httpx.Response | None, str]:
        sent_at = self._clock()
        response = _sent((yield self._token_request(request)))
        if response.status_code not in (200, 201):
            raise self._iam_error(response)
        token, refresh_at = self._read_token(response, sent_at)
        self._cell.entry = (token, refresh_at)
        return token

    def _token_request(self, request: httpx.Request) -> httpx.Request:
        headers = {"Content-Type": "application/json;charset=utf8", "Accept": "application/json"}
        if "User-Agent" in request.headers:
            headers["User-Agent"] = request.headers["User-Agent"]
        extensions: dict[str, Any] = {}
        if "timeout" in request.extensions:  # the client's timeouts bound the IAM call too
            extensions["timeout"] = request.extensions["timeout"]
        return httpx.Request(
            "POST",
            f"{self.iam_endpoint}/v3/auth/tokens",
            params={"nocatalog": "true"},  # the service catalog is tens of KiB we do not use
            headers=headers,
            content=self._body(),
            extensions=extensions,
        )

    def _read_token(self, response: httpx.Response, sent_at: float) -> tuple[str, float]:
        """``(token, local time to refresh it)`` from a successful IAM answer."""
        kw: dict[str, Any] = {"status": response.status_code, "request_id": request_id(response)}
        token = response.headers.get("X-Subject-Token", "").strip()
        if not token:
            raise InvalidResponse("IAM answered without an X-Subject-Token header", **kw)
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
        doc = body.get("token") if isinstance(body, dict) else None
        doc = doc if isinstance(doc, dict) else {}
        expires_at = _parse_time(doc.get("expires_at"))
        if expires_at is None:
            text = self._redact(response.text).replace(token, "***")
            raise InvalidResponse(f"IAM token has no readable expires_at: {excerpt(text)}", **kw)
        issued_at = _parse_time(doc.get("issued_at"))
        # Lifetime by IAM's own clock, counted from when we asked: immune to local clock skew.
        if issued_at is not None and issued_at < expires_at:
            expires_local = sent_at + (expires_at - issued_at)
        else:
            expires_local = expires_at
        lifetime = expires_local - sent_at
        if lifetime <= 0:
            raise InvalidResponse("IAM returned a token that has already expired", **kw)
        # A token shorter-lived than 2 * refresh_before is still used for half its life,
        # rather than fetched again for every request.
        return token, expires_local - min(self.refresh_before, lifetime / 2)

    def _iam_error(self, response: httpx.Response) -> ApiError:
        status = response.status_code
        code, message = error_fields(response)
        text = excerpt(self._redact(message))  # redact before truncating
        kw: dict[str, Any] = {"status": status, "error_code": code}
        kw["request_id"] = request_id(response)
        who = f"user {self.user} in domain {self.domain}"
        if status in (401, 403):
            return AuthError(f"IAM rejected {who}: {text}", **kw)
        if status == 429:
            return RateLimited(
                f"IAM throttled token requests for {who}: {text}",
                retry_after=retry_after(response),
                **kw,
            )
        if status >= 500:
            return ServerError(f"IAM server error fetching a token for {who}: {text}", **kw)
        return ApiError(f"IAM token request for {who} failed with HTTP {status}: {text}", **kw)

    # -- drivers: the same flow, with the locks taken where it asks -------------------------

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """The flow for callers that drive it themselves: the same as :meth:`sync_auth_flow`."""
        return self.sync_auth_flow(request)

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        if self.requires_request_body:
            request.read()
        lock = self._sync_lock
        flow = self._flow(request)
        held = False
        try:
            step = _advance(flow, None)
            while step is not None:
                if step is _Lock.ACQUIRE:
                    held = lock.acquire()
                    step = _advance(flow, None)
                elif step is _Lock.RELEASE:
                    held = False
                    lock.release()
                    step = _advance(flow, None)
                else:
                    response = yield step
                    if self.requires_response_body:
                        response.read()
                    step = _advance(flow, response)
        finally:
            # Also on an exception from the client (timeout, connection error) or close().
            flow.close()
            if held:
                lock.release()

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if self.requires_request_body:
            await request.aread()
        lock = self._async_lock
        flow = self._flow(request)
        held = False
        try:
            step = _advance(flow, None)
            while step is not None:
                if step is _Lock.ACQUIRE:
                    held = await lock.acquire()
                    step = _advance(flow, None)
                elif step is _Lock.RELEASE:
                    held = False
                    lock.release()
                    step = _advance(flow, None)
                else:
                    response = yield step
                    if self.requires_response_body:
                        await response.aread()
                    step = _advance(flow, response)
        finally:
            # httpx calls aclose() on this generator when a send fails or is cancelled.
            flow.close()
            if held:
                lock.release()


def _advance(flow: _Flow, value: httpx.Response | None) -> _Step | None:
    """The flow's next step, or ``None`` when it has finished."""
    try:
        return flow.send(value)
    except StopIteration:
        return None


def _sent(response: httpx.Response | None) -> httpx.Response:
    if response is None:  # only a driver bug could send None for a request
        raise RuntimeError("the auth flow was resumed without a response")
    return response


def _parse_time(value: object) -> float | None:
    """Unix time of an ISO 8601 timestamp (``Z`` or an offset; naive means UTC), else ``None``."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().upper())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
