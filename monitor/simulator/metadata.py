"""The ECS/CCE metadata service's temporary credentials, for the simulator.

Why: a monitor on ``auth.type: metadata`` must fetch the host agency's temporary AK/SK and
security token, sign with them, send ``X-Security-Token`` and renew them before they expire;
none of that can be tested without an issuer whose credentials really expire (on the
simulator's wall clock). Served on the simulator's own address, as the metadata service's
paths (the monitor's ``auth.metadata_url`` points at the simulator):

* ``PUT /meta-data/latest/api/token`` with ``X-Metadata-Token-Ttl-Seconds`` (1..21600): 200
  with a session token as plain text; a missing or bad TTL answers 400.
* ``GET /openstack/latest/securitykey``: 200 ``{"credential": {"access", "secret",
  "securitytoken", "expires_at"}}``, ``expires_at`` as ``2026-12-01T10:00:00.000000Z``, valid
  for ``ttl`` seconds (the simulator's ``credential_ttl``; ``--credential-ttl`` on
  ``simulate``). An ``X-Metadata-Token`` it did not issue, or one past its TTL, answers 401.

A ModelArts request carrying ``X-Security-Token`` is judged by :meth:`CredentialIssuer.problem`
after its signature (made with the temporary SK) checks out: the token must be the one issued
with that AK, and not expired, else the gateway's 401. Secrets and tokens are never put in an
error message or a ``repr``; only ``/_sim/tokens`` lists them, so tests can scan logs.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

__all__ = ["CREDENTIAL_TTL", "CredentialIssuer", "metadata_routes"]

CREDENTIAL_TTL = 3600.0
"""How long the simulator's temporary credentials live unless told otherwise."""
MAX_SESSION_TTL = 21600
_ACCESS = re.compile(r"Access=([^,\s]+)")


@dataclass(frozen=True, slots=True)
class _Issued:
    secret: str = field(repr=False)
    token: str = field(repr=False)
    expires_at: float


class CredentialIssuer:
    """Temporary AK/SK + security tokens, and session tokens, expiring on ``wall_clock``."""

    def __init__(self, ttl: float, wall_clock: Callable[[], float]) -> None:
        self.ttl = ttl
        self._clock = wall_clock
        self._credentials: dict[str, _Issued] = {}
        self._sessions: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"CredentialIssuer(ttl={self.ttl}, issued={len(self._credentials)})"

    def issue(self) -> dict[str, Any]:
        """A new credential, as the ``securitykey`` body."""
        access = "TMP" + secrets.token_hex(8).upper()
        issued = _Issued(
            secrets.token_urlsafe(24), secrets.token_urlsafe(48), self._clock() + self.ttl
        )
        self._credentials[access] = issued
        expires = datetime.fromtimestamp(issued.expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return {
            "credential": {
                "access": access,
                "secret": issued.secret,
                "securitytoken": issued.token,
                "expires_at": expires,
            }
        }

    def count(self) -> int:
        return len(self._credentials)

    def secret_for(self, access: str) -> str | None:
        """The SK of an issued AK (expired ones too: expiry is judged after the signature)."""
        issued = self._credentials.get(access)
        return issued.secret if issued is not None else None

    def problem(self, authorization: str, token: str) -> str | None:
        """Why a request signed with an issued AK and carrying ``token`` is refused, or None."""
        match = _ACCESS.search(authorization)
        issued = self._credentials.get(match.group(1)) if match else None
        if issued is None or not hmac.compare_digest(issued.token, token):
            return "security token invalid or not issued with this access key"
        if self._clock() >= issued.expires_at:
            return "security token expired"
        return None

    def session_token(self, ttl: int) -> str:
        token = secrets.token_urlsafe(32)
        self._sessions[token] = self._clock() + ttl
        return token

    def session_valid(self, token: str) -> bool:
        until = self._sessions.get(token)
        return until is not None and self._clock() < until

    def issued(self) -> list[str]:
        """Every secret, security token and session token handed out (for leak checks)."""
        out = [s for c in self._credentials.values() for s in (c.secret, c.token)]
        return out + list(self._sessions)


def metadata_routes(issuer: CredentialIssuer) -> list[web.RouteDef]:
    """The metadata service's two paths, served by ``issuer``."""

    async def session_token(request: web.Request) -> web.Response:
        raw = request.headers.get("X-Metadata-Token-Ttl-Seconds", "")
        if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_SESSION_TTL):
            return web.Response(
                status=400, text=f"X-Metadata-Token-Ttl-Seconds must be 1 to {MAX_SESSION_TTL}"
            )
        return web.Response(text=issuer.session_token(int(raw)))

    async def security_key(request: web.Request) -> web.Response:
        token = request.headers.get("X-Metadata-Token")
        if token is not None and not issuer.session_valid(token):
            return web.Response(status=401, text="metadata token invalid or expired")
        return web.json_response(issuer.issue())

    return [
        web.put("/meta-data/latest/api/token", session_token),
        web.get("/openstack/latest/securitykey", security_key),
    ]
