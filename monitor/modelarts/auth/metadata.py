"""Temporary AK/SK of the host's agency, from the ECS/CCE metadata service, as an ``httpx.Auth``.

Why this module exists and looks the way it does:

* Teams run the monitor on ECS or CCE hosts that carry an *agency*: no permanent key is written
  anywhere, the host's metadata service hands out a temporary AK/SK with a security token that
  expires. The SDK's ``MetadataCredentials`` (``huaweicloudsdkcore/auth/internal.py``,
  ``MetadataAccessor``) speak this protocol; :class:`MetadataAuth` speaks the same one:

  1. optionally ``PUT /meta-data/latest/api/token`` with ``X-Metadata-Token-Ttl-Seconds`` for a
     session token; 404 or 405 means the host does not use session tokens;
  2. ``GET /openstack/latest/securitykey`` (with ``X-Metadata-Token`` when there is one), which
     answers ``{"credential": {"access", "secret", "securitytoken", "expires_at"}}``;
  3. a 401 there that is not "configure an agency first" means the session token lapsed: get a
     new one and ask again, once.

* The credentials are renewed ``renew_before`` ahead of ``expires_at`` (40 minutes, the SDK's
  threshold), or at half their life when they live shorter than twice that, and once when the
  API answers 401 (revoked early, or a clock that drifted). An ``asyncio.Lock`` makes twenty
  polls that find the credentials stale cause one fetch, and a burst of 401s for one key one
  renewal.
* The metadata calls go through a short-lived client of their own rather than the API client:
  the metadata service is plain HTTP on a link-local address that must never be sent through a
  proxy from the environment (``trust_env=False``), and its failures must read as what they
  are, "cannot reach the metadata service", not as an unreachable ModelArts.
* Only an async flow exists: the monitor's client is an ``httpx.AsyncClient``; a sync client is
  refused with a plain error instead of blocking the thread on a lock.
* The secret and the security token are only inside a :class:`~.aksk.SigningKey` (no ``repr``,
  no ``vars()``); no error raised here quotes a successful answer, which carries them.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncGenerator, Callable, Generator
from datetime import UTC, datetime
from typing import Any

import httpx

from monitor.errors import ApiError, AuthError, InvalidResponse, NetworkError, ServerError
from monitor.modelarts.auth.aksk import SigningKey
from monitor.modelarts.responses import excerpt

__all__ = [
    "DEFAULT_METADATA_URL",
    "NO_AGENCY",
    "RENEW_BEFORE",
    "SECURITY_KEY_PATH",
    "SESSION_TOKEN_PATH",
    "MetadataAuth",
]

DEFAULT_METADATA_URL = "http://169.254.169.254"
SESSION_TOKEN_PATH = "/meta-data/latest/api/token"  # noqa: S105 -- a path
SECURITY_KEY_PATH = "/openstack/latest/securitykey"
NO_AGENCY = "Please configure Cloud Service Agency first"
"""Text of the metadata service's 401 when the host has no agency (the SDK tests for it)."""
RENEW_BEFORE = 40 * 60.0
"""The SDK's ``_DEFAULT_EXPIRATION_THRESHOLD_SECONDS``: renew this long before expiry."""
SESSION_TOKEN_TTL = 6 * 3600
"""Lifetime asked for a session token (the SDK's ``_DEFAULT_TOKEN_TTL_SECONDS``)."""
_RECHECK_SESSION_TOKENS = 24 * 3600.0
"""A host that answered 404/405 to the session-token PUT is asked again after this long."""


class _KeyCell:
    """The current ``(signing key, local time to renew it)``; slotted and unprintable."""

    __slots__ = ("entry",)

    def __init__(self) -> None:
        self.entry: tuple[SigningKey, float] | None = None  # replaced whole, so reads are atomic

    def __repr__(self) -> str:
        return "<credentials hidden>"


class MetadataAuth(httpx.Auth):
    """Signs every request with the host agency's temporary AK/SK and ``X-Security-Token``.

    ``metadata_url`` is the metadata service (``http://169.254.169.254`` on ECS/CCE); a test
    points it at the simulator. ``transport`` carries the metadata calls (default: httpx's own,
    no proxy); ``timeout`` bounds each of them. Use one instance per event loop.
    """

    requires_request_body = True  # the retry after a 401 sends the body again

    def __init__(
        self,
        metadata_url: str = DEFAULT_METADATA_URL,
        *,
        project_id: str | None = None,
        renew_before: float = RENEW_BEFORE,
        timeout: float = 3.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not metadata_url:
            raise ValueError("metadata_url is required")
        if not (math.isfinite(renew_before) and renew_before >= 0):
            raise ValueError("renew_before must be a finite number of seconds >= 0")
        self.metadata_url = metadata_url.rstrip("/")
        self.project_id = project_id
        self.renew_before = renew_before
        self._timeout = timeout
        self._transport = transport
        self._clock = clock
        self._cell = _KeyCell()
        self._session: tuple[str | None, float] | None = None  # (token or None, valid until)
        self._lock = asyncio.Lock()
        self.fetches = 0
        """Credentials fetched so far (one per renewal); for tests and ``check``."""

    def __repr__(self) -> str:
        return f"MetadataAuth(metadata_url={self.metadata_url!r}, project_id={self.project_id!r})"

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("MetadataAuth needs an httpx.AsyncClient")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        await request.aread()
        key = await self._current(rejected=None)
        key.sign_request(request, now=self._clock(), project_id=self.project_id)
        response = yield request
        if response.status_code != 401:
            return
        renewed = await self._current(rejected=key)
        renewed.sign_request(request, now=self._clock(), project_id=self.project_id)
        yield request  # a second 401 goes back to the caller as is

    # -- the credentials ------------------------------------------------------------------------

    def _fresh(self) -> SigningKey | None:
        entry = self._cell.entry
        if entry is None or self._clock() >= entry[1]:
            return None
        return entry[0]

    async def _current(self, rejected: SigningKey | None) -> SigningKey:
        """A usable key: the cached one unless stale or ``rejected``; else one fetch, shared."""
        key = self._fresh()
        if key is not None and key is not rejected:
            return key
        async with self._lock:
            # Checked again under the lock: another request may have renewed it meanwhile.
            key = self._fresh()
            if key is not None and key is not rejected:
                return key
            self._cell.entry = None
            key, renew_at = await self._fetch()
            self._cell.entry = (key, renew_at)
            self.fetches += 1
            return key

    async def _fetch(self) -> tuple[SigningKey, float]:
        async with httpx.AsyncClient(
            transport=self._transport, timeout=self._timeout, trust_env=False
        ) as client:
            token = await self._session_token(client, renew=False)
            response = await self._get_security_key(client, token)
            if response.status_code == 401 and NO_AGENCY not in response.text:
                token = await self._session_token(client, renew=True)
                response = await self._get_security_key(client, token)
        if response.status_code != 200:
            raise self._error(response, "temporary credentials")
        return self._read_credentials(response)

    async def _session_token(self, client: httpx.AsyncClient, *, renew: bool) -> str | None:
        now = self._clock()
        if not renew and self._session is not None and now < self._session[1]:
            return self._session[0]
        headers = {"X-Metadata-Token-Ttl-Seconds": str(SESSION_TOKEN_TTL)}
        response = await self._call(client, "PUT", SESSION_TOKEN_PATH, headers)
        if response.status_code in (404, 405):
            self._session = (None, now + _RECHECK_SESSION_TOKENS)
            return None
        token = response.text.strip()
        if response.status_code != 200 or not token:
            raise self._error(response, "a session token")
        self._session = (token, now + SESSION_TOKEN_TTL / 2)
        return token

    async def _get_security_key(
        self, client: httpx.AsyncClient, token: str | None
    ) -> httpx.Response:
        headers = {"X-Metadata-Token": token} if token else {}
        return await self._call(client, "GET", SECURITY_KEY_PATH, headers)

    async def _call(
        self, client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]
    ) -> httpx.Response:
        url = self.metadata_url + path
        try:
            return await client.request(method, url, headers=headers)
        except httpx.TimeoutException as exc:
            raise NetworkError(
                f"the metadata service at {self.metadata_url} did not answer in time "
                f"({type(exc).__name__}); is this an ECS/CCE host?"
            ) from exc
        except httpx.TransportError as exc:
            raise NetworkError(
                f"cannot reach the metadata service at {self.metadata_url}: "
                f"{type(exc).__name__}; is this an ECS/CCE host?"
            ) from exc

    def _read_credentials(self, response: httpx.Response) -> tuple[SigningKey, float]:
        """``(key, local time to renew it)`` from a 200; never quotes the body (it is secret)."""
        doc: Any
        try:
            doc = json.loads(response.content)
        except ValueError:
            doc = None
        credential = doc.get("credential") if isinstance(doc, dict) else None
        credential = credential if isinstance(credential, dict) else {}
        fields = [credential.get(k) for k in ("access", "secret", "securitytoken")]
        expires_at = _parse_time(credential.get("expires_at"))
        where = f"the metadata service at {self.metadata_url}"
        if not all(isinstance(v, str) and v.strip() for v in fields) or expires_at is None:
            raise InvalidResponse(
                f"{where} answered without access, secret, securitytoken and expires_at",
                status=response.status_code,
            )
        access, secret, token = (str(v).strip() for v in fields)
        lifetime = expires_at - self._clock()
        if lifetime <= 0:
            raise InvalidResponse(f"{where} handed out credentials that have already expired")
        # Credentials shorter-lived than 2 * renew_before are still used for half their life.
        renew_at = expires_at - min(self.renew_before, lifetime / 2)
        return SigningKey(access, secret, token), renew_at

    def _error(self, response: httpx.Response, what: str) -> ApiError:
        status = response.status_code
        text = excerpt(response.text)
        where = f"the metadata service at {self.metadata_url}"
        if status == 401 and NO_AGENCY in response.text:
            return AuthError(
                f"{where} has no credentials: the host has no agency (give the ECS/CCE host an "
                f"agency with ModelArts permissions)",
                status=status,
            )
        if status in (401, 403):
            return AuthError(f"{where} refused {what}: {text}", status=status)
        if status >= 500:
            return ServerError(f"{where} failed to give {what}: {text}", status=status)
        return ApiError(
            f"{where} answered HTTP {status} when asked for {what}: {text}", status=status
        )


def _parse_time(value: object) -> float | None:
    """Unix time of the service's ``expires_at`` (``2026-12-01T10:00:00.000000Z``; naive = UTC)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
