"""The API client built from ``Settings``: endpoints, auth, TLS, throttle and transport, once.

The endpoints of ``api.region`` are looked up here rather than in ``config/``: the region
tables are generated into the API room (``modelarts/regions.py``), which config does not import.
A region the tables do not know is a ``ConfigError``, raised before anything is opened.

One client per target (``config/targets.py``): each has its endpoint, credentials, TLS and its
own ``Throttle``, so a target's rate limit and 429 pauses are its account's alone. Every function
here takes a ``Target`` or a single-project ``Settings`` (its one implicit target).
"""

from __future__ import annotations

import time
from contextvars import ContextVar

import httpx

from monitor.config.settings import Settings
from monitor.config.targets import Target, only_target
from monitor.errors import ConfigError
from monitor.modelarts.auth.aksk import AkSkAuth
from monitor.modelarts.auth.iam import TokenAuth
from monitor.modelarts.auth.metadata import MetadataAuth
from monitor.modelarts.client import ModelArtsClient, tls_verify
from monitor.modelarts.regions import IAM_DEFAULT_ENDPOINT, IAM_ENDPOINTS, MODELARTS_ENDPOINTS
from monitor.modelarts.throttle import Throttle
from monitor.modelarts.transport import build_transport

_REGION_OF_ENDPOINT = {endpoint: region for region, endpoint in MODELARTS_ENDPOINTS.items()}


def api_endpoint(settings: Settings | Target) -> str:
    """``api.endpoint`` when given, else the ModelArts endpoint of ``api.region``."""
    target = only_target(settings)
    if target.api.endpoint:
        return target.api.endpoint
    region = target.api.region or ""
    endpoint = MODELARTS_ENDPOINTS.get(region)
    if endpoint is None:
        raise ConfigError(
            f"{_where(target)}api.region: {region!r} has no ModelArts endpoint in the SDK's "
            f"region table (known: {', '.join(sorted(MODELARTS_ENDPOINTS))}); "
            "set api.endpoint instead"
        )
    return endpoint


def iam_endpoint(settings: Settings | Target) -> str:
    """The IAM that issues tokens for ``auth.type: token``.

    ``auth.iam_endpoint`` when given; else the IAM of ``api.region`` (or of the region whose
    ModelArts endpoint ``api.endpoint`` is) from the SDK's table, and the global IAM for a
    region that table does not list, exactly as the SDK's ``IamHelper.get_iam_endpoint`` does.
    An endpoint of no known region (a proxy, a private deployment) needs ``auth.iam_endpoint``.
    """
    target = only_target(settings)
    if target.auth.iam_endpoint:
        return target.auth.iam_endpoint.rstrip("/")
    region = target.api.region or _REGION_OF_ENDPOINT.get(target.api.endpoint)
    if region is None:
        raise ConfigError(
            f"{_where(target)}auth.iam_endpoint: required when neither api.region is set nor "
            "api.endpoint is a ModelArts endpoint of the SDK's region table"
        )
    return IAM_ENDPOINTS.get(region, IAM_DEFAULT_ENDPOINT)


def build_auth(settings: Settings | Target) -> httpx.Auth | None:
    target = only_target(settings)
    auth = target.auth
    project_id = target.project_id
    if auth.type == "aksk":
        token = auth.security_token.get_secret_value() if auth.security_token else None
        return AkSkAuth(
            auth.ak, auth.sk.get_secret_value(), project_id=project_id, security_token=token
        )
    if auth.type == "metadata":
        return MetadataAuth(auth.metadata_url, project_id=project_id)
    if auth.type == "token":
        return TokenAuth(
            iam_endpoint(target),
            user=auth.user,
            password=auth.password.get_secret_value(),
            domain=auth.domain,
            project_id=project_id,
            refresh_before=auth.refresh_before,
        )
    return None


_ADMITTED: ContextVar[bool] = ContextVar("admitted", default=False)
"""This task's next request already had its turn (``TargetThrottle.admit``)."""


class TargetThrottle(Throttle):
    """A target's throttle whose turns a poll can wait for *before* it takes a shared slot.

    Why: the client waits for a request's turn (the rate limit, a 429 pause) inside the call,
    and a poll holds one of the process's slots while its request runs, so a throttled target
    with many jobs would hold every slot, asleep, while the other targets' polls wait. So the
    poller first waits here (``admit``), outside the slots; the request its task makes next is
    not made to wait again (``acquire``), and a pause that began meanwhile (``pause_left``)
    sends the poll back to wait without its slot (``daemon/targets.admitted``)."""

    def __init__(self, rate: float, *, max_pause: float) -> None:
        super().__init__(rate, max_pause=max_pause, clock=time.monotonic)
        self._until = 0.0

    async def admit(self) -> None:
        """Wait for the next request's turn; that request, made next by this task, goes at
        once."""
        await super().acquire()
        _ADMITTED.set(True)

    async def acquire(self) -> None:
        if _ADMITTED.get():
            _ADMITTED.set(False)
            return
        await super().acquire()

    def throttled(self, retry_after: float | None) -> float:
        pause = super().throttled(retry_after)
        self._until = max(self._until, time.monotonic() + pause)
        return pause

    def pause_left(self) -> float:
        return max(0.0, self._until - time.monotonic())


def build_throttle(settings: Settings | Target) -> TargetThrottle:
    """A target's own rate limit (``poll.rate_limit``) and 429 pause (capped by
    ``poll.retry.max_backoff``)."""
    poll = only_target(settings).poll
    return TargetThrottle(poll.rate_limit, max_pause=poll.retry.max_backoff)


def build_client(
    settings: Settings | Target,
    transport: httpx.AsyncBaseTransport | None = None,
    throttle: Throttle | None = None,
) -> ModelArtsClient:
    """The client of one target, with its own throttle (``build_throttle`` unless given);
    its connection pool is as large as the process's slots."""
    target = only_target(settings)
    endpoint = api_endpoint(target)
    auth = build_auth(target)
    api, poll = target.api, target.poll
    verify = tls_verify(api.ca_file, api.insecure_skip_verify)
    if transport is None:
        transport = build_transport(
            api.transport, verify=verify, max_connections=poll.concurrency, endpoint=endpoint
        )
    return ModelArtsClient(
        endpoint,
        api.project_id,
        auth=auth,
        timeout=api.timeout,
        max_connections=poll.concurrency,
        verify=verify,
        throttle=throttle or build_throttle(target),
        transport=transport,
    )


def _where(target: Target) -> str:
    """How a target's keys are named in errors: ``target beijing: api.region``."""
    return f"target {target.name}: " if target.name else ""
