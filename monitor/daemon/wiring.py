"""The API client built from ``Settings``: endpoints, auth, TLS, throttle and transport, once.

The endpoints of ``api.region`` are looked up here rather than in ``config/``: the region
tables are generated into the API room (``modelarts/regions.py``), which config does not import.
A region the tables do not know is a ``ConfigError``, raised before anything is opened.
"""

from __future__ import annotations

import httpx

from monitor.config.settings import Settings
from monitor.errors import ConfigError
from monitor.modelarts.auth.aksk import AkSkAuth
from monitor.modelarts.auth.iam import TokenAuth
from monitor.modelarts.auth.metadata import MetadataAuth
from monitor.modelarts.client import ModelArtsClient, tls_verify
from monitor.modelarts.regions import IAM_DEFAULT_ENDPOINT, IAM_ENDPOINTS, MODELARTS_ENDPOINTS
from monitor.modelarts.throttle import Throttle
from monitor.modelarts.transport import build_transport

_REGION_OF_ENDPOINT = {endpoint: region for region, endpoint in MODELARTS_ENDPOINTS.items()}


def api_endpoint(settings: Settings) -> str:
    """``api.endpoint`` when given, else the ModelArts endpoint of ``api.region``."""
    if settings.api.endpoint:
        return settings.api.endpoint
    region = settings.api.region or ""
    endpoint = MODELARTS_ENDPOINTS.get(region)
    if endpoint is None:
        raise ConfigError(
            f"api.region: {region!r} has no ModelArts endpoint in the SDK's region table "
            f"(known: {', '.join(sorted(MODELARTS_ENDPOINTS))}); set api.endpoint instead"
        )
    return endpoint


def iam_endpoint(settings: Settings) -> str:
    """The IAM that issues tokens for ``auth.type: token``.

    ``auth.iam_endpoint`` when given; else the IAM of ``api.region`` (or of the region whose
    ModelArts endpoint ``api.endpoint`` is) from the SDK's table, and the global IAM for a
    region that table does not list, exactly as the SDK's ``IamHelper.get_iam_endpoint`` does.
    An endpoint of no known region (a proxy, a private deployment) needs ``auth.iam_endpoint``.
    """
    if settings.auth.iam_endpoint:
        return settings.auth.iam_endpoint.rstrip("/")
    region = settings.api.region or _REGION_OF_ENDPOINT.get(settings.api.endpoint)
    if region is None:
        raise ConfigError(
            "auth.iam_endpoint: required when neither api.region is set nor api.endpoint is "
            "a ModelArts endpoint of the SDK's region table"
        )
    return IAM_ENDPOINTS.get(region, IAM_DEFAULT_ENDPOINT)


def build_auth(settings: Settings) -> httpx.Auth | None:
    auth = settings.auth
    project_id = settings.api.project_id
    if auth.type == "aksk":
        token = auth.security_token.get_secret_value() if auth.security_token else None
        return AkSkAuth(
            auth.ak, auth.sk.get_secret_value(), project_id=project_id, security_token=token
        )
    if auth.type == "metadata":
        return MetadataAuth(auth.metadata_url, project_id=project_id)
    if auth.type == "token":
        return TokenAuth(
            iam_endpoint(settings),
            user=auth.user,
            password=auth.password.get_secret_value(),
            domain=auth.domain,
            project_id=project_id,
            refresh_before=auth.refresh_before,
        )
    return None


def build_client(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> ModelArtsClient:
    endpoint = api_endpoint(settings)
    auth = build_auth(settings)
    verify = tls_verify(settings.api.ca_file, settings.api.insecure_skip_verify)
    if transport is None:
        transport = build_transport(
            settings.api.transport, verify=verify, max_connections=settings.poll.concurrency
        )
    return ModelArtsClient(
        endpoint,
        settings.api.project_id,
        auth=auth,
        timeout=settings.api.timeout,
        max_connections=settings.poll.concurrency,
        verify=verify,
        throttle=Throttle(settings.poll.rate_limit, max_pause=settings.poll.retry.max_backoff),
        transport=transport,
    )
