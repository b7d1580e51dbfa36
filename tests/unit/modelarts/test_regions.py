"""The generated region tables equal the official SDK's, and endpoints are taken from them:
``api.region`` gives the ModelArts and IAM endpoints, ``api.endpoint`` wins, and
``auth.iam_endpoint`` still overrides."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from huaweicloudsdkcore.auth.internal import IamHelper
from huaweicloudsdkmodelarts.v1.region.modelarts_region import ModelArtsRegion

from monitor.config.loading import parse_settings
from monitor.config.settings import Settings
from monitor.daemon.wiring import api_endpoint, build_client, iam_endpoint
from monitor.errors import ConfigError, JobNotFound
from monitor.modelarts.regions import IAM_DEFAULT_ENDPOINT, IAM_ENDPOINTS, MODELARTS_ENDPOINTS

ROOT = Path(__file__).resolve().parents[3]


def settings(api: dict[str, Any], **auth: Any) -> Settings:
    auth = auth or {"type": "none"}
    return parse_settings({"api": {"project_id": "p", **api}, "auth": auth}, env={})


TOKEN = {"type": "token", "user": "u", "password": "pw", "domain": "d"}


def test_the_modelarts_table_equals_the_sdks() -> None:
    sdk = {r: region.endpoints for r, region in ModelArtsRegion.static_fields.items()}
    assert sdk == {r: [endpoint] for r, endpoint in MODELARTS_ENDPOINTS.items()}


@pytest.mark.parametrize("region", sorted(ModelArtsRegion.static_fields))
def test_each_regions_iam_is_where_the_sdk_would_ask(
    region: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """For every ModelArts region, the IAM endpoint equals the SDK's ``get_iam_endpoint``
    (its regional table, else the global IAM), with no environment override in play."""
    monkeypatch.delenv("HUAWEICLOUD_SDK_IAM_ENDPOINT", raising=False)
    expected = IamHelper.get_iam_endpoint(region)
    assert IAM_ENDPOINTS.get(region, IAM_DEFAULT_ENDPOINT) == expected
    assert iam_endpoint(settings({"region": region}, **TOKEN)) == expected


def test_the_generated_file_is_what_the_generator_writes_today() -> None:
    """``scripts/generate_regions.py --check``: the committed copy is not stale."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "generate_regions.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_a_region_gives_its_endpoint_even_one_not_on_myhuaweicloud_com() -> None:
    assert api_endpoint(settings({"region": "cn-north-4"})) == (
        "https://modelarts.cn-north-4.myhuaweicloud.com"
    )
    assert api_endpoint(settings({"region": "ap-southeast-1"})) == (
        "https://modelarts.ap-southeast-1.myhuaweicloud.cn"
    )


async def test_the_client_sends_its_calls_to_the_regions_endpoint() -> None:
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(400, json={"error_code": "ModelArts.2775", "error_msg": "gone"})

    transport = httpx.MockTransport(record)
    async with build_client(settings({"region": "ap-southeast-1"}), transport) as client:
        with pytest.raises(JobNotFound):
            await client.get_job("job-1")
    assert sent[0].url.host == "modelarts.ap-southeast-1.myhuaweicloud.cn"


def test_an_explicit_endpoint_wins_over_the_region() -> None:
    s = settings({"region": "cn-north-4", "endpoint": "https://proxy.example.com:8443"})
    assert api_endpoint(s) == "https://proxy.example.com:8443"


def test_a_region_with_no_regional_iam_uses_the_global_iam() -> None:
    """cn-north-11 runs ModelArts but has no IAM in the SDK's table: global IAM, as the SDK."""
    assert "cn-north-11" not in IAM_ENDPOINTS
    assert iam_endpoint(settings({"region": "cn-north-11"}, **TOKEN)) == (
        "https://iam.myhuaweicloud.com"
    )


def test_the_iam_of_a_known_endpoint_is_found_without_a_region() -> None:
    """ap-southeast-1's endpoint ends in .cn, which the old regex guess could not read."""
    s = settings({"endpoint": "https://modelarts.ap-southeast-1.myhuaweicloud.cn"}, **TOKEN)
    assert iam_endpoint(s) == "https://iam.ap-southeast-1.myhuaweicloud.com"


def test_auth_iam_endpoint_still_overrides_the_table() -> None:
    s = settings({"region": "cn-north-4"}, **TOKEN, iam_endpoint="https://iam.example.com/")
    assert iam_endpoint(s) == "https://iam.example.com"


def test_an_unknown_region_is_one_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        build_client(settings({"region": "xx-nowhere-1"}))
    assert info.value.problems[0].startswith("api.region: 'xx-nowhere-1' has no ModelArts")
    assert "set api.endpoint" in info.value.problems[0]


def test_a_token_user_on_an_unknown_endpoint_must_name_the_iam() -> None:
    with pytest.raises(ConfigError, match=r"auth\.iam_endpoint: required"):
        build_client(settings({"endpoint": "https://proxy.example.com"}, **TOKEN))
