"""The wording rules of ``check``: which config key each failure points at.

``test_main.py`` runs ``check`` against the simulator and loopback fakes for the common
misconfigurations; here are the rules those cannot reach cheaply (a region instead of an
endpoint, an untrusted certificate, an IAM host that does not resolve, a metadata service that
never answers), on errors made by the real client over a transport that fails on cue.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from monitor.cli.diagnose import Diagnosis, diagnose
from monitor.config.settings import Settings
from monitor.errors import ApiError, AuthError, EndpointNotFound, NetworkError
from monitor.modelarts.auth.iam import TokenAuth
from monitor.modelarts.client import ModelArtsClient

SECRET = "the-secret-key-never-printed"
ENDPOINT_FIX = (
    "set api.region to the job's region (e.g. cn-north-4), or api.endpoint to that region's "
    "ModelArts endpoint"
)


def settings(api: dict[str, Any] | None = None, auth: dict[str, Any] | None = None) -> Settings:
    return Settings.model_validate(
        {
            "api": api or {"endpoint": "https://modelarts.example.com", "project_id": "proj-1"},
            "auth": auth or {"type": "aksk", "ak": "AKDIAG", "sk": SECRET},
            "jobs": [{"id": "job-a"}],
        }
    )


async def failure(
    endpoint: str, raise_: Callable[[httpx.Request], None], auth: httpx.Auth | None = None
) -> ApiError:
    """What the client (with ``auth``) raises when its transport fails as ``raise_`` does."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise_(request)
        return httpx.Response(200)

    transport = httpx.MockTransport(handler)
    async with ModelArtsClient(endpoint, "proj-1", transport=transport, auth=auth) as client:
        with pytest.raises(ApiError) as info:
            await client.get_job("job-a")
    return info.value


def connect_error(cause: OSError) -> Callable[[httpx.Request], None]:
    def raise_(request: httpx.Request) -> None:
        raise httpx.ConnectError(str(cause), request=request) from cause

    return raise_


async def test_a_wrong_region_points_at_api_region_and_names_the_endpoint_it_gave() -> None:
    config = settings(api={"region": "cn-north-4", "project_id": "proj-1"})
    exc = EndpointNotFound("no such API at this endpoint: x", status=404, error_code="APIG.0101")

    found = diagnose(exc, config)

    assert found == Diagnosis(
        "no ModelArts API at https://modelarts.cn-north-4.myhuaweicloud.com (HTTP 404 "
        f"APIG.0101): api.region names the wrong service or region; {ENDPOINT_FIX}",
        everywhere=True,
    )


async def test_an_untrusted_certificate_says_to_set_api_ca_file() -> None:
    cause = ssl.SSLCertVerificationError(1, "certificate verify failed: self-signed certificate")
    exc = await failure("https://modelarts.example.com", connect_error(cause))

    found = diagnose(exc, settings())

    assert found == Diagnosis(
        "cannot reach ModelArts at https://modelarts.example.com:443: its TLS certificate is "
        "not trusted; behind a TLS-inspecting proxy, set api.ca_file to the proxy's CA bundle",
        everywhere=True,
    )


async def test_an_iam_host_that_does_not_resolve_points_at_the_region_it_came_from() -> None:
    config = settings(
        api={"region": "cn-north-4", "project_id": "proj-1"},
        auth={"type": "token", "user": "ops", "password": SECRET, "domain": "acme"},
    )
    cause = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    iam = TokenAuth(
        "https://iam.cn-north-4.myhuaweicloud.com",
        user="ops",
        password=SECRET,
        domain="acme",
        project_id="proj-1",
    )

    exc = await failure("https://modelarts.cn-north-4.myhuaweicloud.com", connect_error(cause), iam)

    assert diagnose(exc, config).text == (
        "cannot reach IAM at https://iam.cn-north-4.myhuaweicloud.com:443: its host name does "
        "not resolve (DNS); set auth.iam_endpoint to the IAM endpoint of the job's region "
        "(e.g. https://iam.cn-north-4.myhuaweicloud.com)"
    )


async def test_a_metadata_service_that_never_answers_says_no_answer_in_time() -> None:
    config = settings(auth={"type": "metadata", "metadata_url": "http://169.254.169.254"})
    metadata = httpx.Request("GET", "http://169.254.169.254/openstack/latest/securitykey")
    try:
        try:
            raise TimeoutError("timed out")
        except TimeoutError as cause:
            raise httpx.ConnectTimeout("timed out", request=metadata) from cause
    except httpx.ConnectTimeout as exc:
        error = NetworkError("cannot reach the metadata service at http://169.254.169.254")
        error.__cause__ = exc

    assert diagnose(error, config) == Diagnosis(
        "cannot reach the metadata service at http://169.254.169.254 (no answer in time): "
        "auth.type metadata works only on an ECS or CCE host with an agency; elsewhere use "
        "auth.type aksk with auth.ak and auth.sk, or fix auth.metadata_url",
        everywhere=True,
    )


async def test_a_network_failure_with_no_cause_an_operator_can_fix_keeps_the_clients_words() -> (
    None
):
    def raise_(request: httpx.Request) -> None:
        raise httpx.ReadError("connection reset mid-answer", request=request)

    exc = await failure("https://modelarts.example.com", raise_)

    assert diagnose(exc, settings()) == Diagnosis(str(exc))


TOKEN_AUTH = {"type": "token", "user": "ops", "password": SECRET, "domain": "acme"}


@pytest.mark.parametrize(
    ("auth", "status", "code", "start"),
    [
        (TOKEN_AUTH, 401, "ModelArts.0203", "the IAM token was rejected as invalid or expired"),
        (TOKEN_AUTH, 403, "ModelArts.0203", "permission denied (HTTP 403 ModelArts.0203): "),
        (None, 401, "ModelArts.0203", "credentials rejected (HTTP 401 ModelArts.0203): "),
        (None, 401, "APIGW.0301", "the AK/SK signature was rejected (HTTP 401 APIGW.0301): "),
        (None, 403, "ModelArts.0206", "the AK/SK signature was rejected (HTTP 403 ModelArts.0206)"),
    ],
    ids=["token-401", "token-403", "aksk-401", "aksk-gateway", "aksk-modelarts"],
)
def test_token_codes_mean_an_expired_token_only_on_a_401_to_a_client_that_sends_tokens(
    auth: dict[str, Any] | None, status: int, code: str, start: str
) -> None:
    config = settings(
        api={"endpoint": "https://modelarts.cn-north-4.myhuaweicloud.com", "project_id": "p"},
        auth=auth,
    )
    exc = AuthError("authentication rejected: no", status=status, error_code=code)

    line = diagnose(exc, config).text

    assert line.startswith(start)
    assert SECRET not in line


def test_a_403_saying_the_project_does_not_match_names_api_project_id_whatever_its_code() -> None:
    exc = AuthError(
        "authentication rejected: The project id does not match the token's project",
        status=403,
        error_code="ModelArts.0204",
    )

    assert diagnose(exc, settings()).text == (
        "project proj-1 does not match these credentials (HTTP 403 ModelArts.0204): set "
        "api.project_id to the id of the project of the job's region (console: My Credentials "
        "> API Credentials)"
    )
