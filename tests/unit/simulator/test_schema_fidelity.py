"""The simulator cannot drift from the real API schema: every response it serves for the demo
scenario, at many scenario times, goes through the official SDK's own deserializer
(``huaweicloudsdkcore``'s ``Client.deserialize``, as ``ModelArtsClient`` calls it on a real
answer) into the SDK's response models, and every key path of the JSON must land on an SDK
attribute (recursively through ``attribute_map``/``openapi_types``) with its value intact.

A key the SDK does not know, or a value the SDK would convert (a number where it expects a
string, a float where it expects an integer), is a simulator bug.

And the other way: every SDK field the monitor reads (``MONITOR_READS``, checked against what
``parse_job`` really asks the documents for) is served by the demo at least once, so no field
the monitor depends on goes untested because the fake never sends it."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from monitor.modelarts.parse import parse_job
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


MONITOR_READS: frozenset[str] = frozenset(
    {
        ".kind",
        ".metadata.id",
        ".metadata.name",
        ".metadata.workspace_id",
        ".metadata.user_name",
        ".metadata.create_time",
        ".metadata.annotations.fault-tolerance/job-retry-num",
        ".algorithm.engine.engine_name",
        ".algorithm.engine.engine_version",
        ".spec.resource.flavor_id",
        ".spec.resource.flavor_name",
        ".spec.resource.pool_id",
        ".spec.resource.pool_name",
        ".spec.resource.node_count",
        ".spec.resource.flavor_detail.flavor_type",
        ".spec.resource.flavor_detail.flavor_info.gpu.unit_num",
        ".spec.resource.flavor_detail.flavor_info.npu.unit_num",
        ".spec.resource.main_container_allocated_resources.accelerator_type",
        ".spec.resource.main_container_allocated_resources.accelerator_num",
        ".tasks[].role",
        ".tasks[].task_resource.flavor_id",
        ".tasks[].task_resource.flavor_name",
        ".tasks[].task_resource.flavor_type",
        ".tasks[].task_resource.pool_id",
        ".tasks[].task_resource.flavor_info.gpu.unit_num",
        ".tasks[].task_resource.flavor_info.npu.unit_num",
        ".status.phase",
        ".status.secondary_phase",
        ".status.duration",
        ".status.start_time",
        ".status.node_count_metrics",
        ".status.tasks",
        ".status.task_statuses[].task",
        ".status.task_statuses[].exit_code",
        ".status.task_statuses[].message",
        *(
            f".status.running_records[].{key}"
            for key in (
                "start_at",
                "end_at",
                "xpu_start_at",
                "start_type",
                "end_reason",
                "end_related_task",
                "end_recover",
                "end_recover_before_downgrade",
            )
        ),
        *(
            f".status.running_records[].recover_records[].{key}"
            for key in (
                "recover",
                "recover_result",
                "fault_scenario",
                "reason",
                "related_task",
                "recover_start_at",
                "recover_end_at",
            )
        ),
    }
)
"""Every job-detail field the monitor reads, as key paths (list items as ``[]``): the one list."""


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


class Reads(dict[str, Any]):
    """A JSON object that notes every key ``parse_job`` asks it for (it reads with ``get``)."""

    def __init__(self, data: dict[str, Any], path: str, log: set[str]) -> None:
        super().__init__(data)
        self.path, self.log = path, log

    def get(self, key: str, default: Any = None) -> Any:
        self.log.add(f"{self.path}.{key}")
        return super().get(key, default)


def recording(value: Any, log: set[str], path: str = "") -> Any:
    if isinstance(value, dict):
        return Reads({k: recording(v, log, f"{path}.{k}") for k, v in value.items()}, path, log)
    if isinstance(value, list):
        return [recording(v, log, f"{path}[]") for v in value]
    return value


def leaves(paths: set[str]) -> set[str]:  # an object never served leaves its key a leaf
    """The paths no other path goes below: the fields read, not the objects read on the way."""
    return {p for p in paths if not any(q.startswith((f"{p}.", f"{p}[")) for q in paths)}


def sdk_type_of(path: str, sdk_type: str = "ShowTrainingJobDetailsResponse") -> str | None:
    """The SDK's type of the field at ``path``, or None if the SDK has no such field."""
    for key in re.findall(r"\.([^.\[]+(?:/[^.\[]+)?)((?:\[\])*)", path):
        name, lists = key
        if sdk_type.startswith("dict("):
            sdk_type = sdk_type[len("dict(str, ") : -1]
        else:
            klass = getattr(models, sdk_type, None)
            attr = {j: a for a, j in getattr(klass, "attribute_map", {}).items()}.get(name)
            if attr is None:
                return None
            sdk_type = klass.openapi_types[attr]
        for _ in range(len(lists) // 2):
            if not sdk_type.startswith("list["):
                return None
            sdk_type = sdk_type[len("list[") : -1]
    return sdk_type


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


def test_every_field_the_monitor_reads_is_an_sdk_field() -> None:
    assert {p for p in MONITOR_READS if sdk_type_of(p) is None} == set()
    assert sdk_type_of(".status.running_records[].made_up") is None, "the walk is not vacuous"
    assert sdk_type_of(".spec.resource.flavor_detail.flavor_info.npu.unit_num") == "str"


async def test_every_field_the_monitor_reads_is_served_by_the_demo(
    served: tuple[Simulator, httpx.AsyncClient],
) -> None:
    """The other direction: a field the monitor reads that the simulator never serves would
    leave its parse and everything after it untested against the fake."""
    sim, client = served
    reads: set[str] = set()
    visited: set[str] = set()
    for t in times(sim.scenario):
        sim.set_time(t)
        for job in sim.scenario.jobs:
            response = await client.get(f"/training-jobs/{job.id}")
            if response.status_code == 400:
                continue
            check(response, "ShowTrainingJobDetailsResponse", visited)
            parse_job(recording(response.json(), reads), job.id)
    unlisted = {
        p for p in leaves(reads) if not any(m == p or m.startswith(p + ".") for m in MONITOR_READS)
    }
    assert unlisted == set(), "parse_job reads these; list them in MONITOR_READS"
    assert sorted(MONITOR_READS - visited) == [], "fields the monitor reads, never served"


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
