"""The API client built from ``Settings``: auth, TLS, throttle and transport, constructed once."""

from __future__ import annotations

import httpx

from monitor.config.settings import Settings
from monitor.modelarts.auth.aksk import AkSkAuth
from monitor.modelarts.auth.iam import TokenAuth
from monitor.modelarts.client import ModelArtsClient, tls_verify
from monitor.modelarts.throttle import Throttle
from monitor.modelarts.transport import build_transport


def build_auth(settings: Settings) -> httpx.Auth | None:
    auth = settings.auth
    if auth.type == "aksk":
        return AkSkAuth(auth.ak, auth.sk.get_secret_value(), project_id=settings.api.project_id)
    if auth.type == "token":
        return TokenAuth(
            settings.iam_endpoint(),
            user=auth.user,
            password=auth.password.get_secret_value(),
            domain=auth.domain,
            project_id=settings.api.project_id,
            refresh_before=auth.refresh_before,
        )
    return None


def build_client(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> ModelArtsClient:
    verify = tls_verify(settings.api.ca_file, settings.api.insecure_skip_verify)
    if transport is None:
        transport = build_transport(
            settings.api.transport, verify=verify, max_connections=settings.poll.concurrency
        )
    return ModelArtsClient(
        settings.api.endpoint,
        settings.api.project_id,
        auth=build_auth(settings),
        timeout=settings.api.timeout,
        max_connections=settings.poll.concurrency,
        verify=verify,
        throttle=Throttle(settings.poll.rate_limit, max_pause=settings.poll.retry.max_backoff),
        transport=transport,
    )
