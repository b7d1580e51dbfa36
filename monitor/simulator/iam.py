"""IAM password tokens as Huawei Cloud's ``POST /v3/auth/tokens`` issues them, for the simulator.

Why: a monitor authenticating with a token must get one, send it as ``X-Auth-Token``, renew it
before ``expires_at`` and once more after a 401 -- and none of that can be tested without an
issuer whose tokens really expire (on an injectable wall clock) and can be revoked on demand.

The request body, as in ``shared/reference/modelarts-api-notes.md``::

    {"auth": {"identity": {"methods": ["password"],
                           "password": {"user": {"name": U, "password": P,
                                                 "domain": {"name": ACCOUNT}}}},
              "scope": {"project": {"id": PROJECT_ID}}}}

answers 201 with the token in the ``X-Subject-Token`` header and ``token.expires_at`` in the
body. Wrong user, password or domain answer 401, a malformed body 400, both with IAM's
``{"error": {"code", "message", "title"}}`` body. Token strings and passwords are never put in
an error message or a ``repr``; only ``/_sim/tokens`` hands tokens out, so tests can scan logs.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from monitor.simulator.checks import Checker

__all__ = [
    "TOKEN_TTL",
    "AuthRequest",
    "IamConfig",
    "IamUser",
    "TokenIssuer",
    "iam_error",
    "parse_auth_request",
    "parse_iam",
]

TOKEN_TTL = 86400.0
"""IAM tokens live 24 hours."""
IAM_KEYS = ("users", "token_ttl")
USER_KEYS = ("name", "password", "domain")
WRONG_CREDENTIALS = "The username or password is wrong."


@dataclass(frozen=True, slots=True)
class IamUser:
    name: str
    password: str = field(repr=False)
    domain: str
    """The account (domain) name the user belongs to."""


@dataclass(frozen=True, slots=True)
class IamConfig:
    """The ``iam`` block of a scenario."""

    users: tuple[IamUser, ...] = ()
    token_ttl: float = TOKEN_TTL


def parse_iam(c: Checker, raw: object, path: str) -> IamConfig | None:
    """Validate an ``iam`` block: ``{users: [{name, password, domain}], token_ttl}``."""
    before = len(c.problems)
    m = c.mapping(raw, path, IAM_KEYS, required=("users",))
    if m is None:
        return None
    ttl = c.get(m, "token_ttl", path, c.number, default=TOKEN_TTL, positive=True)
    users: list[IamUser] = []
    seen: dict[tuple[str, str], int] = {}
    items = c.sequence(m["users"], f"{path}.users") if "users" in m else None
    if items is not None and not items:
        c.fail(f"{path}.users", "expected at least one user")
    for i, item in enumerate(items or []):
        p = f"{path}.users[{i}]"
        u = c.mapping(item, p, USER_KEYS, required=USER_KEYS)
        if u is None:
            continue
        name = c.get(u, "name", p, c.string, default="", non_empty=True)
        password = c.get(u, "password", p, c.string, default="", non_empty=True, secret=True)
        domain = c.get(u, "domain", p, c.string, default="", non_empty=True)
        if name and domain and (name, domain) in seen:
            c.fail(f"{p}.name", f"duplicate of {path}.users[{seen[(name, domain)]}]")
        seen.setdefault((name, domain), i)
        users.append(IamUser(name, password, domain))
    if len(c.problems) > before:
        return None
    return IamConfig(tuple(users), ttl)


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """A decoded password-authentication request."""

    name: str
    password: str = field(repr=False)
    domain: str
    project_id: str


def parse_auth_request(body: object) -> AuthRequest | str:
    """The request, or the key path of the first thing wrong with it (never a value)."""
    auth = _obj(body, "auth")
    identity = _obj(auth, "identity")
    methods = identity.get("methods")
    if not isinstance(methods, list) or "password" not in methods:
        return "auth.identity.methods"
    user = _obj(_obj(identity, "password"), "user")
    fields = {
        "name": user.get("name"),
        "password": user.get("password"),
        "domain.name": _obj(user, "domain").get("name"),
    }
    values: list[str] = []
    for key, value in fields.items():
        if not isinstance(value, str) or not value:
            return f"auth.identity.password.user.{key}"
        values.append(value)
    project_id = _obj(_obj(auth, "scope"), "project").get("id")
    if not isinstance(project_id, str) or not project_id:
        return "auth.scope.project.id"
    return AuthRequest(values[0], values[1], values[2], project_id)


def _obj(parent: object, key: str) -> dict[str, Any]:
    value = parent.get(key) if isinstance(parent, dict) else None
    return value if isinstance(value, dict) else {}


def iam_error(code: int, title: str, message: str) -> dict[str, Any]:
    """IAM's own error body (unlike the gateway's ``error_code``/``error_msg``)."""
    return {"error": {"code": code, "message": message, "title": title}}


@dataclass(slots=True)
class _Issued:
    expires_at: float
    revoked: bool = False


class TokenIssuer:
    """Issues, checks and revokes tokens against the configured users and a wall clock."""

    def __init__(
        self,
        users: Iterable[IamUser],
        token_ttl: float = TOKEN_TTL,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.users = tuple(users)
        self.token_ttl = token_ttl
        self._wall_clock = wall_clock
        self._tokens: dict[str, _Issued] = {}

    def authenticate(self, request: AuthRequest) -> bool:
        """Whether name, password and domain match a configured user (in constant time)."""
        ok = False
        for user in self.users:
            match = hmac.compare_digest(user.password.encode(), request.password.encode())
            ok |= match and user.name == request.name and user.domain == request.domain
        return ok

    def issue(self, request: AuthRequest) -> tuple[str, dict[str, Any]]:
        """A new token for an authenticated ``request`` and the 201 body that goes with it."""
        token = "MII" + secrets.token_urlsafe(96)
        now = self._wall_clock()
        expires_at = now + self.token_ttl
        self._tokens[token] = _Issued(expires_at)
        body = {
            "token": {
                "expires_at": _iso(expires_at),
                "issued_at": _iso(now),
                "methods": ["password"],
                "project": {"id": request.project_id},
                "user": {"name": request.name, "domain": {"name": request.domain}},
            }
        }
        return token, body

    def valid(self, token: str) -> bool:
        """Issued here, not revoked, and not expired by the wall clock."""
        issued = self._tokens.get(token)
        return issued is not None and not issued.revoked and self._wall_clock() < issued.expires_at

    def revoke_all(self) -> int:
        """Revoke every token still valid; returns how many were."""
        live = [t for t in self._tokens if self.valid(t)]
        for token in self._tokens.values():
            token.revoked = True
        return len(live)

    def issued(self) -> list[str]:
        """Every token ever issued, oldest first."""
        return list(self._tokens)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
