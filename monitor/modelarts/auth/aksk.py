"""AK/SK request signing (``SDK-HMAC-SHA256``) for the ModelArts API gateway.

Why this module exists and looks the way it does:

* The official signer lives in ``huaweicloudsdkcore``, whose dependency tree is far too heavy for
  the daemon, so the monitor signs requests itself. The API gateway recomputes the signature with
  the official algorithm, so ours must match ``huaweicloudsdkcore.signer.signer.Signer`` byte for
  byte, quirks included (the SDK is the test oracle in ``tests/unit/test_auth.py``).
* The algorithm is written as pure, sans-I/O functions (:func:`canonical_request`, :func:`sign`,
  :func:`verify`) so the client and the fake gateway in the simulator share one implementation;
  :class:`AkSkAuth` is a thin ``httpx.Auth`` that feeds them the exact URL and body bytes httpx is
  about to send.
* The secret key and the security token of temporary credentials never appear in a ``repr``, a
  log line or an exception message raised here; :class:`SigningKey` keeps the secret only inside
  a closure and the token in a slot, so an accidental ``vars(auth)`` dump prints neither.
* :class:`SigningKey` is the one place a request is signed: :class:`AkSkAuth` holds one for
  permanent (or configured temporary) credentials, ``metadata.py`` swaps in a new one whenever
  the host's agency credentials are renewed.
* A request the client sends again and again (a job's detail GET) carries a
  :class:`SigningCache` in its extensions: its canonical parts are worked out once, by the same
  code as any request's, and each send only formats the date and computes the two hashes.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
import sys
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx

from monitor.modelarts.auth.canonical import _lower_headers, canonical_query, canonical_request

__all__ = [
    "ALGORITHM",
    "DATE_FORMAT",
    "SIGNING_CACHE",
    "UNSIGNED_HEADERS",
    "AkSkAuth",
    "SigningCache",
    "SigningKey",
    "canonical_query",
    "canonical_request",
    "sign",
    "verify",
]

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
"""Format of the ``X-Sdk-Date`` header (UTC)."""

UNSIGNED_HEADERS = frozenset(
    {
        "authorization",
        # The official SDK never signs these either (``requests`` adds them after signing), and a
        # transport or proxy may legitimately rewrite them; the body hash already covers the body.
        "content-length",
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
"""Headers :class:`AkSkAuth` leaves out of the signature (lower-case names)."""


Mac = Callable[[str], str]
"""Hex HMAC-SHA256 of a string to sign under a secret key the caller cannot see."""


def _mac_for(sk: str) -> Mac:
    key = sk.encode("utf-8")

    def mac(message: str) -> str:
        return hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()

    return mac


def _split_target(url: str) -> tuple[str, str]:
    """``(path, raw query)`` of an absolute URL or an origin-form request target."""
    if url.startswith("/"):
        path, _, rest = url.partition("?")
        return path, rest.partition("#")[0]
    parts = urlsplit(url)
    return parts.path or "/", parts.query


def _sdk_date(headers: Mapping[str, str]) -> str:
    """The ``X-Sdk-Date`` to put in the string to sign, re-formatted as the SDK does."""
    value = _lower_headers(headers).get("x-sdk-date")
    if value is None:
        raise ValueError("headers must include X-Sdk-Date")
    try:
        return datetime.strptime(value, DATE_FORMAT).strftime(DATE_FORMAT)
    except ValueError:
        raise ValueError(f"malformed X-Sdk-Date {value!r}, expected {DATE_FORMAT}") from None


@functools.lru_cache(maxsize=4)
def _date_of_second(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).strftime(DATE_FORMAT)


def _sdk_date_of(now: float) -> str:
    """``X-Sdk-Date`` for Unix time ``now``: whole seconds, so formatted once a second."""
    return _date_of_second(math.floor(now))


def _authorization(
    method: str,
    path: str,
    query: str | Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
    ak: str,
    mac: Mac,
) -> str:
    if "host" not in _lower_headers(headers):
        raise ValueError("headers must include Host")
    date = _sdk_date(headers)
    text, signed_headers = canonical_request(method, path, query, headers, body)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    signature = mac(f"{ALGORITHM}\n{date}\n{digest}")
    return f"{ALGORITHM} Access={ak}, SignedHeaders={signed_headers}, Signature={signature}"


def sign(method: str, url: str, headers: Mapping[str, str], body: bytes, ak: str, sk: str) -> str:
    """Return the ``Authorization`` header value for a request.

    ``headers`` must already contain ``X-Sdk-Date`` and ``Host`` (``ValueError`` otherwise); all
    of them whose name has no ``_`` are signed. ``url`` is absolute or an origin-form target
    (``/path?query``); only its path and query are signed, the host comes from ``Host``.
    """
    path, query = _split_target(url)
    return _authorization(method, path, query, headers, body, ak, _mac_for(sk))


def _parse_authorization(value: str) -> tuple[str, list[str], str] | None:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        return None
    fields: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, field = item.strip().partition("=")
        if not sep:
            return None
        fields[key] = field
    try:
        ak, names, signature = fields["Access"], fields["SignedHeaders"], fields["Signature"]
    except KeyError:
        return None
    signed = names.split(";")
    if not ak or not signature or not all(signed):
        return None
    return ak, signed, signature


def verify(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    secret_for: Callable[[str], str | None],
    now: float,
    max_skew: float = 900.0,
) -> str | None:
    """Check a signed request the way the gateway does; for fake servers and tests.

    ``url`` is the request target as received (absolute, or ``/path?query`` such as aiohttp's
    ``request.raw_path``), ``secret_for`` maps an access key to its secret key (``None`` when
    unknown) and ``now`` is the server's Unix time. Only the headers named in ``SignedHeaders``
    are used. Returns ``None`` when the request is valid, else a short reason.
    """
    lower = _lower_headers(headers)
    authorization = lower.get("authorization")
    if authorization is None:
        return "missing Authorization"
    parsed = _parse_authorization(authorization)
    if parsed is None:
        return "malformed Authorization"
    ak, signed, signature = parsed
    if "host" not in signed or "x-sdk-date" not in signed:
        return "malformed SignedHeaders: host and x-sdk-date must be signed"
    for name in signed:
        if name not in lower:
            return f"missing signed header {name}"
    try:
        signed_at = datetime.strptime(lower["x-sdk-date"], DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return "malformed X-Sdk-Date"
    if abs(now - signed_at.timestamp()) > max_skew:
        return "X-Sdk-Date too far from now"
    sk = secret_for(ak)
    if sk is None:
        return "unknown access key"
    path, query = _split_target(url)
    subset = {name: lower[name] for name in signed}
    expected = _authorization(method, path, query, subset, body, ak, _mac_for(sk))
    given = f"{ALGORITHM} Access={ak}, SignedHeaders={';'.join(signed)}, Signature={signature}"
    if not hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8", "replace")):
        return "signature mismatch"
    return None


class SigningKey:
    """An access key, its secret and, for temporary credentials, their security token.

    Slotted and unprintable beyond the AK: the secret lives only in the HMAC closure and the
    token in a slot, so neither ``repr`` nor an accidental ``vars()`` dump shows them. One object
    so that temporary credentials (``metadata.py``) are replaced whole, never half-updated
    between two requests.
    """

    __slots__ = ("_mac", "_shared", "ak", "security_token")

    def __init__(self, ak: str, sk: str, security_token: str | None = None) -> None:
        if not ak or not sk:
            raise ValueError("ak is required" if not ak else "sk is required")
        if security_token is not None and not security_token.strip():
            raise ValueError("security_token must not be blank")
        self.ak = ak
        self.security_token = security_token
        self._mac = _mac_for(sk)
        self._shared: dict[tuple[tuple[bytes, bytes], ...], tuple[tuple[bytes, bytes], ...]] = {}

    def __repr__(self) -> str:
        token = ", security_token=***" if self.security_token is not None else ""
        return f"SigningKey(ak={self.ak!r}, sk=***{token})"

    def sign_request(self, request: httpx.Request, *, now: float, project_id: str | None) -> None:
        """Sign ``request`` in place on the exact bytes httpx sends, as the SDK does.

        Like the SDK's ``Credentials.sign_request``, ``X-Security-Token`` is added *before*
        signing, so the gateway sees it covered by the signature. A bodiless request with a
        :class:`SigningCache` is signed from the parts cached there (worked out here first)."""
        cache = request.extensions.get(SIGNING_CACHE)
        if isinstance(cache, SigningCache) and not request.content:
            self._sign_cached(request, cache, now, project_id)
            return
        path, query, to_sign = self._prepare(request, _sdk_date_of(now), project_id)
        request.headers["Authorization"] = _authorization(
            request.method, path, query, to_sign, request.content, self.ak, self._mac
        )

    def _prepare(
        self, request: httpx.Request, date: str, project_id: str | None
    ) -> tuple[str, str, dict[str, str]]:
        """Signing but the signature: the headers set, the query made canonical."""
        headers = request.headers
        headers["X-Sdk-Date"] = date
        if "host" not in headers:
            headers["Host"] = request.url.netloc.decode("ascii")
        if project_id is not None:
            headers["X-Project-Id"] = project_id
        if self.security_token is not None:
            headers["X-Security-Token"] = self.security_token
        headers.pop("Authorization", None)
        if request.url.query:
            query = canonical_query(request.url.query.decode("ascii"))
            request.url = request.url.copy_with(query=query.encode("ascii") or None)
        # raw_path is the request target httpx sends: still percent-encoded, query included.
        path, _, query = request.url.raw_path.decode("ascii").partition("?")
        to_sign = {k: v for k, v in headers.items() if k.lower() not in UNSIGNED_HEADERS}
        return path, query, to_sign

    def _sign_cached(
        self, request: httpx.Request, cache: SigningCache, now: float, project_id: str | None
    ) -> None:
        parts = cache.parts
        if parts is None or parts.key is not self or parts.project_id != project_id:
            parts = cache.parts = self._parts(request, project_id)
        date = _sdk_date_of(now)
        text = f"{parts.target}{parts.before}{date}{parts.after}"
        signature = self._mac(f"{ALGORITHM}\n{date}\n{hashlib.sha256(text.encode()).hexdigest()}")
        request.url = parts.url
        request.headers = httpx.Headers(
            [
                *parts.headers,
                (b"X-Sdk-Date", date.encode()),
                (b"Authorization", f"{parts.authorization}{signature}".encode()),
            ]
        )

    def _parts(self, request: httpx.Request, project_id: str | None) -> _Parts:
        """What every signing of ``request`` shares: a copy prepared (its date a mark, no
        signature: that doubled a first poll's cost), its canonical request cut at the date."""
        probe = httpx.Request(request.method, request.url, headers=request.headers)
        path, query, to_sign = self._prepare(probe, _DATE_MARK, project_id)
        text, signed_headers = canonical_request(probe.method, path, query, to_sign, b"")
        before, mark, after = text.partition(f"\nx-sdk-date:{_DATE_MARK}\n")
        if not mark:  # cannot happen: the date is a signed header like any other
            raise ValueError("X-Sdk-Date is not in the canonical request")
        # Only the first lines (method, URI, query) differ from job to job; the rest is shared
        # (interned), so 10,000 jobs keep one copy of the headers and of the text around the
        # date. Host is signed and sorts before the date, so a header line always comes first.
        method, uri, query, shared = before.split("\n", 3)
        dropped = (b"x-sdk-date", b"authorization")
        headers = tuple((k, v) for k, v in probe.headers.raw if k.lower() not in dropped)
        if len(self._shared) < _SHARED_HEADER_SETS:
            headers = self._shared.setdefault(headers, headers)
        return _Parts(
            key=self,
            project_id=project_id,
            url=probe.url,
            headers=headers,
            target=f"{method}\n{uri}\n{query}\n",
            before=sys.intern(f"{shared}\nx-sdk-date:"),
            after=sys.intern(f"\n{after}"),
            authorization=sys.intern(
                f"{ALGORITHM} Access={self.ak}, SignedHeaders={signed_headers}, Signature="
            ),
        )


SIGNING_CACHE = "modelarts_monitor.signing_cache"
"""The request extension that carries a :class:`SigningCache`."""

_SHARED_HEADER_SETS = 16  # header sets a key shares among its cached requests (one a client)

_DATE_MARK = "\x00"  # the date while the cached parts are cut; no header value can hold it


@dataclass(frozen=True, slots=True)
class _Parts:
    """Out of ``repr``: the headers and the canonical request carry the security token."""

    key: SigningKey
    project_id: str | None
    url: httpx.URL
    headers: tuple[tuple[bytes, bytes], ...] = field(repr=False)  # all but date and signature
    target: str = field(repr=False)  # the canonical request's method, URI and query lines,
    before: str = field(repr=False)  # the rest of it up to the date's value ...
    after: str = field(repr=False)  # ... and after it
    authorization: str = field(repr=False)  # the Authorization value up to the signature


class SigningCache:
    """Where a request that is sent again and again keeps its signing parts (``SIGNING_CACHE``).

    The sender promises to build the request the same way every time (method, URL, headers, no
    body); a new key (renewed temporary credentials) or project id works the parts out anew.
    Empty until the first signing, and it holds no secret: the key in it is a ``SigningKey``.
    """

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: _Parts | None = None

    def __repr__(self) -> str:
        return f"SigningCache(filled={self.parts is not None})"


class AkSkAuth(httpx.Auth):
    """Signs every request with AK/SK, as the official SDK does, on the exact bytes httpx sends.

    Adds ``X-Sdk-Date`` (from ``clock``), ``Host`` if absent, ``X-Project-Id`` when
    ``project_id`` is given and ``X-Security-Token`` when ``security_token`` is (temporary
    AK/SK), then ``Authorization``. The query string is rewritten into its canonical form
    (sorted, ``%20`` for a space) before signing, as the SDK sends it, so the gateway never has
    to guess whether ``+`` means a space. Headers in :data:`UNSIGNED_HEADERS` are sent but not
    signed.
    """

    requires_request_body = True

    def __init__(
        self,
        ak: str,
        sk: str,
        *,
        project_id: str | None = None,
        security_token: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = SigningKey(ak, sk, security_token)  # the secrets live only in there
        self.ak = ak
        self.project_id = project_id
        self._clock = clock

    def __repr__(self) -> str:
        token = ", security_token=***" if self._key.security_token is not None else ""
        return f"AkSkAuth(ak={self.ak!r}, sk=***{token}, project_id={self.project_id!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self._key.sign_request(request, now=self._clock(), project_id=self.project_id)
        yield request
