"""What ``check`` tells an operator about a failed fetch: one plain line that names the config key
to change.

Why a module of its own: the client's errors say what happened on the wire (``authentication
rejected``, ``cannot reach ModelArts``), which is right for the daemon's log but leaves an
operator guessing which of a dozen keys is wrong. These rules read the typed error (its class,
HTTP status, ModelArts or gateway error code, and the standard-library cause at the bottom of a
network failure) together with the settings, and say which key to fix. They only word things;
what a status or body means is decided once, in ``modelarts.responses``.

A cause that would fail every job the same way (the endpoint, the network, the metadata
service) is ``everywhere``: ``check`` says it once instead of once per job. Credentials are never
printed: the lines name keys, the project id, hosts and error codes, nothing else.
"""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from monitor.config.settings import Settings
from monitor.config.targets import Target, only_target
from monitor.daemon.wiring import api_endpoint
from monitor.errors import ApiError, AuthError, EndpointNotFound, NetworkError

SIGNATURE_REJECTED = frozenset({"APIG.0301", "APIGW.0301", "ModelArts.0206"})
"""The gateway's or ModelArts' "this AK/SK signature is not valid" (wrong AK or SK)."""
PROJECT_MISMATCH = "ModelArts.0210"
TOKEN_REJECTED = frozenset(f"ModelArts.{n:04d}" for n in range(201, 213)) - {
    "ModelArts.0206",
    PROJECT_MISMATCH,
}
"""ModelArts' "token invalid or expired" codes, ``ModelArts.0201`` to ``0212``, less the two
that the API notes give to a wrong AK/SK and to a project mismatch."""
IAM_REJECTED = "IAM rejected"
"""How ``modelarts.auth.iam`` begins the error for an IAM 401/403 to the password login."""
METADATA_ERROR = "the metadata service"
"""How ``modelarts.auth.metadata`` begins every error about what the metadata service answered
(no agency, refused, failed): those already say what to do, and fail every job alike."""
_PROJECT_WORDS = re.compile(r"project\S*\s.*\b(mismatch|not match|does not belong)", re.I)


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """``text`` is the line after ``job ID: result:``; ``everywhere``: every job fails alike."""

    text: str
    everywhere: bool = False


def diagnose(exc: ApiError, where: Settings | Target) -> Diagnosis:
    """The plain explanation of ``exc`` for ``check``; the error's own text when no rule fits.
    ``where``: the target whose request failed (with ``targets:``, ``check`` prints a block per
    target, so the lines name the keys within it), or a single-project config."""
    settings = only_target(where)
    if isinstance(exc, NetworkError):
        return _network(exc, settings)
    if settings.auth.type == "metadata" and str(exc).startswith(METADATA_ERROR):
        return Diagnosis(str(exc), everywhere=True)  # the metadata flow's errors say the fix
    if isinstance(exc, EndpointNotFound):
        return Diagnosis(
            f"no ModelArts API at {api_endpoint(settings)} (HTTP 404{_code(exc)}): "
            f"{_endpoint_key(settings)} names the wrong service or region; {_ENDPOINT_FIX}",
            everywhere=True,
        )
    if isinstance(exc, AuthError):
        return Diagnosis(_auth(exc, settings))
    return Diagnosis(str(exc))


# --- network ----------------------------------------------------------------------------------


def _network(exc: NetworkError, settings: Target) -> Diagnosis:
    url = _failed_url(exc)
    cause = _root_os_error(exc)
    kind = _kind(cause)
    auth = settings.auth
    if url is not None and auth.type == "metadata" and _origin(url) == _origin(auth.metadata_url):
        timed_out = isinstance(cause, TimeoutError)
        why = _WHY[kind] if kind else "no answer in time" if timed_out else "no usable answer"
        return _metadata_unreachable(settings, why)
    if kind is None:
        return Diagnosis(str(exc))
    if url is not None and urlsplit(url).path.startswith(IAM_PATH):
        prefix = f"cannot reach IAM at {_origin(url)}: {_WHY[kind]}"
        if settings.auth.iam_endpoint:
            fix = f"auth.iam_endpoint is wrong: set it to {_IAM}"
            return Diagnosis(f"{prefix}; {fix}", everywhere=True)
        return Diagnosis(f"{prefix}; set auth.iam_endpoint to {_IAM}", everywhere=True)
    where = _origin(url) if url is not None else api_endpoint(settings)
    prefix = f"cannot reach ModelArts at {where}: {_WHY[kind]}"
    if kind == "untrusted":
        return Diagnosis(
            f"{prefix}; behind a TLS-inspecting proxy, set api.ca_file to the proxy's CA bundle",
            everywhere=True,
        )
    fix = f"{_endpoint_key(settings)} is wrong: {_ENDPOINT_FIX}"
    return Diagnosis(f"{prefix}; {fix}", everywhere=True)


def _metadata_unreachable(settings: Target, why: str) -> Diagnosis:
    return Diagnosis(
        f"cannot reach the metadata service at {settings.auth.metadata_url} ({why}): "
        "auth.type metadata works only on an ECS or CCE host with an agency; elsewhere use "
        "auth.type aksk with auth.ak and auth.sk, or fix auth.metadata_url",
        everywhere=True,
    )


_WHY = {
    "dns": "its host name does not resolve (DNS)",
    "refused": "connection refused, nothing listens there",
    "name": "its TLS certificate is for another host name",
    "untrusted": "its TLS certificate is not trusted",
}
_ENDPOINT_FIX = (
    "set api.region to the job's region (e.g. cn-north-4), or api.endpoint to that region's "
    "ModelArts endpoint"
)
_IAM = "the IAM endpoint of the job's region (e.g. https://iam.cn-north-4.myhuaweicloud.com)"
IAM_PATH = "/v3/auth/"
"""Where IAM tokens are asked for: a failed request there was IAM's, not ModelArts'."""


def _kind(cause: OSError | None) -> str | None:
    """Which config-fixable cause (a key of ``_WHY``) ``cause`` is, or ``None``."""
    if isinstance(cause, socket.gaierror):
        return "dns"
    if isinstance(cause, ConnectionRefusedError):
        return "refused"
    if isinstance(cause, ssl.SSLCertVerificationError):
        return "name" if "mismatch" in str(cause).lower() else "untrusted"
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and its causes, outermost first (each at most once)."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def _root_os_error(exc: BaseException) -> OSError | None:
    """The innermost standard-library ``OSError`` under a network failure: whichever transport
    carried the call (aiohttp's or httpx's), the resolver's, the socket's or TLS's own error is
    at the bottom of the chain, and it is what says why."""
    found = None
    for link in _chain(exc):
        if isinstance(link, OSError):
            found = link
    return found


def _failed_url(exc: BaseException) -> str | None:
    """The URL of the request that failed, as the HTTP library recorded it on its error (the
    client chains it as the cause), or ``None``: tells the metadata service and IAM apart from
    ModelArts."""
    for link in _chain(exc):
        try:
            request = getattr(link, "request", None)
        except RuntimeError:  # httpx: an error raised before any request was attached
            continue
        url = getattr(request, "url", None)
        if url is not None:
            return str(url)
    return None


def _origin(url: str) -> str:
    """``scheme://host:port`` of ``url``, the port always spelled out, for comparing."""
    parts = urlsplit(url)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        port = None
    return f"{parts.scheme}://{parts.hostname}:{port}"


def _endpoint_key(settings: Target) -> str:
    return "api.endpoint" if settings.api.endpoint else "api.region"


# --- credentials ------------------------------------------------------------------------------


def _auth(exc: AuthError, settings: Target) -> str:
    code = exc.error_code
    auth = settings.auth
    status = f"HTTP {exc.status}{_code(exc)}"
    if str(exc).startswith(IAM_REJECTED):
        return (
            f"IAM refused the password login ({status}): auth.user, auth.password or "
            "auth.domain is wrong (auth.domain is the account name, not the user's)"
        )
    if code == PROJECT_MISMATCH or _PROJECT_WORDS.search(str(exc)):
        return (
            f"project {settings.api.project_id} does not match these credentials ({status}): "
            "set api.project_id to the id of the project of the job's region "
            "(console: My Credentials > API Credentials)"
        )
    token = auth.security_token
    temporary = bool(token and token.get_secret_value()) or auth.type == "metadata"
    token_code = exc.status == 401 and (
        code in TOKEN_REJECTED or (code in SIGNATURE_REJECTED and auth.type == "token")
    )
    if token_code and auth.type == "token":
        return (
            f"the IAM token was rejected as invalid or expired, also right after a new one was "
            f"fetched ({status}): check auth.user and auth.domain, and that api.project_id "
            "is the project the user may act in"
        )
    if (token_code or code in SIGNATURE_REJECTED) and temporary:
        return _temporary(status, auth.type)
    if code in SIGNATURE_REJECTED:
        return (
            f"the AK/SK signature was rejected ({status}): auth.ak or auth.sk is wrong "
            "(or this host's clock is more than 15 minutes off)"
        )
    if exc.status == 403:
        return (
            f"permission denied ({status}): the credentials are valid but may not read training "
            f"jobs in project {settings.api.project_id}; grant their IAM user or agency a "
            "ModelArts policy (e.g. ModelArts CommonOperations) in that project"
        )
    return f"credentials rejected ({status}): check the auth block ({exc})"


def _temporary(status: str, auth_type: str) -> str:
    if auth_type == "metadata":
        return (
            f"the host's temporary credentials from the metadata service were rejected "
            f"({status}): check the agency of this ECS or CCE host and its ModelArts permissions"
        )
    return (
        f"the temporary credentials were rejected as invalid or expired ({status}): renew "
        "auth.ak, auth.sk and auth.security_token together, or use auth.type metadata"
    )


def _code(exc: ApiError) -> str:
    """`` CODE`` after the status; IAM's code is often the status again, said once."""
    code = exc.error_code
    return f" {code}" if code and code != str(exc.status) else ""
