"""The simulator cannot drift from the real API schema: every response it serves for the demo
scenario, at many scenario times, goes through the official SDK's own deserializer
(``huaweicloudsdkcore``'s ``Client.deserialize``, as ``ModelArtsClient`` calls it on a real
answer) into the SDK's response models, and every key path of the JSON must land on an SDK
attribute (recursively through ``attribute_map``/``openapi_types``) with its value intact.

A key the SDK does not know, or a value the SDK would convert (a number where it expects a
string, a float where it expects an integer), is a simulator bug."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from monitor.simulator import Simulator, builtin_scenario, start, stop
from monitor.simulator.scenario import Scenario

sdk = pytest.importorskip(
    "huaweicloudsdkmodelarts.v1", reason="huaweicloudsdkmodelarts: test extra"
)
models = pytest.importorskip("huaweicloudsdkmodelarts.v1.model")

EPOCH = 1_700_000_000.0
PROJECT = "0123456789abcdef"
PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
}


# --- the check ----------------------------------------------------------------------------------


def lost_fields(
    data: Any, model: Any, sdk_type: str, visited: set[str], path: str = ""
) -> Iterator[str]:
    """Every key path of ``data`` that the SDK object ``model`` (of ``sdk_type``) lost or changed.

    Adds each path it checks to ``visited`` (list indexes as ``[]``)."""
    visited.add(re.sub(r"\[\d+\]", "[]", path))
    if data is None:
        return
    if sdk_type.startswith("list["):
        inner = sdk_type[len("list[") : -1]
        if not isinstance(data, list) or not isinstance(model, list) or len(model) != len(data):
            yield f"{path}: expected a list as {sdk_type}, SDK made {model!r}"
            return
        for i, (item, sdk_item) in enumerate(zip(data, model, strict=True)):
            yield from lost_fields(item, sdk_item, inner, visited, f"{path}[{i}]")
        return
    if sdk_type.startswith("dict("):
        match = re.fullmatch(r"dict\(([^,]*), (.*)\)", sdk_type)
        assert match is not None
        if not isinstance(data, dict) or not isinstance(model, dict):
            yield f"{path}: expected a mapping as {sdk_type}"
            return
        for key, value in data.items():
            yield from lost_fields(value, model.get(key), match.group(2), visited, f"{path}.{key}")
        return
    if sdk_type in PRIMITIVES:
        allowed = PRIMITIVES[sdk_type]
        if (isinstance(data, bool) and sdk_type != "bool") or not isinstance(data, allowed):
            yield f"{path}: {data!r} is not a {sdk_type} for the SDK"
        elif model != data:
            yield f"{path}: {data!r} became {model!r} in the SDK"
        return
    if sdk_type == "object":
        return
    klass = getattr(models, sdk_type)
    if not isinstance(data, dict):
        yield f"{path}: expected an object ({sdk_type}), got {data!r}"
        return
    if not isinstance(model, klass):
        yield f"{path}: the SDK did not build a {sdk_type}"
        return
    attribute_of = {json_key: attr for attr, json_key in klass.attribute_map.items()}
    for key, value in data.items():
        attr = attribute_of.get(key)
        if attr is None:
            yield f"{path}.{key}: no such field in the SDK's {sdk_type}"
            continue
        sub_type = klass.openapi_types[attr]
        yield from lost_fields(value, getattr(model, attr), sub_type, visited, f"{path}.{key}")


def check(response: httpx.Response, response_type: str, visited: set[str]) -> list[str]:
    """Deserialize ``response`` as the SDK does and list what was lost."""
    assert response.status_code == 200, response.text
    client = sdk.ModelArtsClient()
    model = client.deserialize(response, response_type, None)
    return list(lost_fields(response.json(), model, response_type, visited))


# --- the demo over loopback ---------------------------------------------------------------------


def times(scenario: Scenario) -> list[float]:
    """Every step time of every job, half a second later, and well after the end."""
    steps = {s.at for job in scenario.jobs for s in job.timeline}
    return sorted(steps | {t + 0.5 for t in steps} | {scenario.end_time + 60})


@pytest.fixture
async def served() -> AsyncIterator[tuple[Simulator, httpx.AsyncClient]]:
    sim = Simulator(builtin_scenario(), manual_clock=True, wall_clock=lambda: EPOCH)
    runner, port = await start(sim, "127.0.0.1", 0)
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/v2/{PROJECT}")
    yield sim, client
    await client.aclose()
    await stop(runner)


async def test_job_detail_responses_lose_no_field(
    served: tuple[Simulator, httpx.AsyncClient],
) -> None:
    sim, client = served
    problems: list[str] = []
    visited: set[str] = set()
    checked = 0
    for t in times(sim.scenario):
        sim.set_time(t)
        for job in sim.scenario.jobs:
            response = await client.get(f"/training-jobs/{job.id}")
            if response.status_code == 400:  # not created yet, or gone
                continue
            problems += check(response, "ShowTrainingJobDetailsResponse", visited)
            checked += 1
    assert problems == []
    assert checked > 50
    assert {
        ".status.running_records[].recover_records[].recover_result",
        ".status.running_records[].end_recover_before_downgrade",
        ".status.task_statuses[].exit_code",
        ".status.node_count_metrics[][]",
        ".spec.resource.pool_id",
        ".spec.resource.flavor_detail.flavor_type",
        ".algorithm.engine.engine_version",
    } <= visited


async def test_job_search_responses_lose_no_field(
    served: tuple[Simulator, httpx.AsyncClient],
) -> None:
    sim, client = served
    problems: list[str] = []
    visited: set[str] = set()
    bodies: list[dict[str, Any]] = [
        {},
        {"offset": 1, "limit": 2, "order": "asc"},
        {"filters": [{"key": "phase", "operator": "in", "value": ["Running"]}]},
    ]
    for t in times(sim.scenario):
        sim.set_time(t)
        for body in bodies:
            problems += check(
                await client.post("/training-job-searches", json=body),
                "ListTrainingJobsResponse",
                visited,
            )
    assert problems == []
    assert ".items[].status.running_records[].recover_records[].recover_start_at" in visited


async def test_task_metrics_responses_lose_no_field(
    served: tuple[Simulator, httpx.AsyncClient],
) -> None:
    sim, client = served
    problems: list[str] = []
    visited: set[str] = set()
    checked = 0
    for t in times(sim.scenario):
        sim.set_time(t)
        for job in sim.scenario.jobs:
            for task in job.tasks:
                response = await client.get(f"/training-jobs/{job.id}/metrics/{task}")
                if response.status_code == 400:
                    continue
                problems += check(response, "ShowTrainingJobMetricsResponse", visited)
                checked += 1
    assert problems == []
    assert checked > 100
    assert ".metrics[].value[]" in visited


async def test_job_event_responses_lose_no_field(
    served: tuple[Simulator, httpx.AsyncClient],
) -> None:
    sim, client = served
    problems: list[str] = []
    visited: set[str] = set()
    queries: list[dict[str, Any]] = [
        {},
        {"offset": 0, "limit": 10, "order": "desc", "level": "Error"},
        {
            "order": "asc",
            "start_time": "2023-11-15T06:13:20+08:00",
            "end_time": "2023-11-15T07:13:20+08:00",
        },
    ]
    for t in times(sim.scenario):
        sim.set_time(t)
        for job in sim.scenario.jobs:
            for query in queries:
                response = await client.get(f"/training-jobs/{job.id}/events", params=query)
                if response.status_code == 400:
                    continue
                problems += check(response, "ListTrainingJobEventsResponse", visited)
    assert problems == []
    assert {".events[].time", ".events[].source", ".start_time", ".total"} <= visited


def test_the_check_reports_unknown_fields_and_values_the_sdk_would_convert() -> None:
    """Guard against a vacuous check: drift of each kind is caught."""

    class FakeResponse:
        def __init__(self, text: str) -> None:
            self.headers = {"Content-Type": "application/json"}
            self.text = text

    drifted = (
        '{"kind": "job", "metadata": {"id": 7, "made_up": "x"},'
        ' "status": {"duration": 1.5, "tasks": ["worker-0"],'
        ' "running_records": [{"start_at": 1, "recover_records": [{"recovery": "x"}]}]}}'
    )
    client = sdk.ModelArtsClient()
    model = client.deserialize(FakeResponse(drifted), "ShowTrainingJobDetailsResponse", None)
    data = json.loads(drifted)
    problems = list(lost_fields(data, model, "ShowTrainingJobDetailsResponse", set()))
    assert problems == [
        ".metadata.id: 7 is not a str for the SDK",
        ".metadata.made_up: no such field in the SDK's JobMetadataResponse",
        ".status.duration: 1.5 is not a int for the SDK",
        ".status.running_records[0].recover_records[0].recovery: "
        "no such field in the SDK's RecoverRecord",
    ]
