"""The simulator's job search takes the requests ModelArts takes and refuses the others: the
body the monitor sent before issue 12 (a bare-string ``like``, a numeric ``between``, no
``workspace_id``), written out literally, is answered 400 in the real error shape; the same
search built by the official SDK's request models (``JobSearches``, ``Filter``) is answered."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from huaweicloudsdkcore.utils.http_utils import sanitize_for_serialization
from huaweicloudsdkmodelarts.v1 import Filter, JobSearches

from monitor.modelarts.auth.aksk import AkSkAuth
from monitor.simulator import Simulator, parse_scenario, start, stop

EPOCH = 1_700_000_000.0
SEARCH = "/v2/proj/training-job-searches"
CREDENTIALS = {"AKREQ": "sk-requests-secret"}
LOW_MS, HIGH_MS = int((EPOCH + 1) * 1000), int((EPOCH + 3) * 1000)

SCENARIO = parse_scenario(
    {
        "jobs": [
            {"id": f"job-{i}", "name": name, "timeline": [{"at": i, "phase": "Running"}]}
            for i, name in enumerate(["bert-base", "bert-large", "resnet", "bert-tiny", "bert-xl"])
        ]
    }
)
"""Jobs created at scenario times 0..4: ``bert`` and created within [1, 3] are jobs 1 and 3."""

TODAYS_BODY: dict[str, Any] = {
    "offset": 0,
    "limit": 50,
    "sort_by": "create_time",
    "order": "asc",
    "filters": [
        {"key": "name", "operator": "like", "value": "bert"},
        {"key": "create_time", "operator": "between", "value": [LOW_MS, HIGH_MS]},
    ],
}
"""What ``search_body`` sent before: ``like`` a bare string, ``between`` numbers."""


def sdk_body(**kw: Any) -> Any:
    """The same search as the SDK serializes it onto the wire."""
    return sanitize_for_serialization(
        JobSearches(
            workspace_id="0",
            offset=0,
            limit=50,
            sort_by="create_time",
            order="asc",
            filters=[
                Filter(key="name", operator="like", value=["bert"]),
                Filter(key="create_time", operator="between", value=[str(LOW_MS), str(HIGH_MS)]),
            ],
            **kw,
        )
    )


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    sim = Simulator(SCENARIO, manual_clock=True, wall_clock=lambda: EPOCH, credentials=CREDENTIALS)
    sim.set_time(10)
    runner: web.AppRunner
    runner, port = await start(sim, "127.0.0.1", 0)
    auth = AkSkAuth("AKREQ", "sk-requests-secret", project_id="proj")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", auth=auth) as c:
        yield c
    await stop(runner)


async def test_the_body_sent_before_issue_12_is_refused_in_the_real_error_shape(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(SEARCH, json=TODAYS_BODY)
    assert response.status_code == 400
    answer = response.json()
    assert set(answer) == {"error_code", "error_msg"}
    assert answer["error_code"] == "ModelArts.0101"
    assert answer["error_msg"].startswith("filters[0].value: expected an array of strings")


async def test_a_numeric_between_alone_is_refused(client: httpx.AsyncClient) -> None:
    body = {**TODAYS_BODY, "filters": [TODAYS_BODY["filters"][1]]}
    response = await client.post(SEARCH, json=body)
    assert response.status_code == 400
    assert response.json()["error_msg"].startswith("filters[0].value: expected an array of str")


async def test_the_sdks_body_for_the_same_search_is_answered(client: httpx.AsyncClient) -> None:
    response = await client.post(SEARCH, json=sdk_body())
    assert response.status_code == 200, response.text
    answer = response.json()
    assert [i["metadata"]["id"] for i in answer["items"]] == ["job-1", "job-3"]
    assert answer["total"] == 2


async def test_a_field_the_sdk_has_but_the_simulator_does_not_serve_is_refused(
    client: httpx.AsyncClient,
) -> None:
    """``group_by`` exists in ``JobSearches``; the fake does not implement it, so it says so
    rather than ignoring it and answering as if it had."""
    response = await client.post(SEARCH, json=sdk_body(group_by="phase"))
    assert response.status_code == 400
    assert response.json()["error_msg"] == "group_by: not supported by the simulator"
