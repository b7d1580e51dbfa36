"""The simulator's job search (``simulator/search.py``): paging by page index, filters, sort,
only jobs that exist now, validation; served signed over loopback and counted in /_sim/state;
and ``ModelArtsClient.search_jobs`` against it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from monitor.errors import ApiError
from monitor.modelarts.auth.aksk import AkSkAuth
from monitor.modelarts.client import ModelArtsClient
from monitor.simulator import Scenario, Simulator, parse_scenario, start, stop
from monitor.simulator.search import SearchError, search

EPOCH = 1_700_000_000.0
SEARCH = "/v2/proj/training-job-searches"
CREDENTIALS = {"AKSEARCH": "sk-search-secret"}


def job(i: int, **kw: Any) -> dict[str, Any]:
    """Job ``i`` is created at scenario time ``i`` (so create_time orders them by ``i``)."""
    return {
        "id": f"job-{i:03d}",
        "name": kw.pop("name", f"train-{i:03d}"),
        "timeline": kw.pop("timeline", [{"at": i, "phase": "Running"}]),
        **kw,
    }


def scenario(jobs: list[dict[str, Any]]) -> Scenario:
    return parse_scenario({"jobs": jobs})


MIXED = scenario(
    [
        job(0, name="llm-pretrain", workspace_id="ws-a"),
        job(1, name="llm-sft", timeline=[{"at": 1, "phase": "Pending"}]),
        job(2, name="resnet", timeline=[{"at": 2, "phase": "Completed"}]),
        job(3, name="vit-llm-eval", workspace_id="ws-a"),
        job(4, name="gone", timeline=[{"at": 4, "phase": "Running"}, {"at": 6, "gone": True}]),
        job(50, name="later"),
    ]
)


def ids(answer: dict[str, Any]) -> list[str]:
    return [item["metadata"]["id"] for item in answer["items"]]


def run(body: dict[str, Any], t: float = 5.0, sc: Scenario = MIXED) -> dict[str, Any]:
    return search(sc.jobs, body, t, EPOCH)


# --- paging and order -------------------------------------------------------------------------


def test_offset_is_a_page_index_and_the_answer_echoes_the_request() -> None:
    many = scenario([job(i) for i in range(120)])
    pages = [run({"offset": p, "limit": 50, "order": "asc"}, 200, many) for p in range(4)]
    assert [p["count"] for p in pages] == [50, 50, 20, 0]
    assert all(p["total"] == 120 for p in pages)
    assert [(p["offset"], p["limit"], p["sort_by"], p["order"]) for p in pages[:2]] == [
        (0, 50, "create_time", "asc"),
        (1, 50, "create_time", "asc"),
    ]
    assert [i for p in pages for i in ids(p)] == [f"job-{i:03d}" for i in range(120)]


def test_default_order_is_newest_first_and_asc_is_oldest_first() -> None:
    assert ids(run({})) == ["job-004", "job-002", "job-001"]
    assert ids(run({"order": "asc"})) == ["job-001", "job-002", "job-004"]


def test_a_search_finds_the_jobs_of_one_workspace_the_default_one_unless_named() -> None:
    assert ids(run({"order": "asc", "workspace_id": "ws-a"})) == ["job-000", "job-003"]
    assert ids(run({"order": "asc", "workspace_id": "0"})) == ids(run({"order": "asc"}))
    assert run({"workspace_id": "ws-nobody"})["total"] == 0


def test_equal_create_times_are_ordered_by_id_so_paging_is_stable() -> None:
    same = scenario([{**job(0), "id": f"same-{c}"} for c in "cab"])
    assert ids(run({"order": "asc"}, 1, same)) == ["same-a", "same-b", "same-c"]
    assert ids(run({"order": "desc"}, 1, same)) == ["same-c", "same-b", "same-a"]


def test_only_jobs_that_exist_now_are_found() -> None:
    assert ids(run({"order": "asc", "workspace_id": "ws-a"}, t=0)) == ["job-000"]
    assert ids(run({"order": "asc"}, t=1)) == ["job-001"]
    assert "job-004" in ids(run({}, t=5))
    assert "job-004" not in ids(run({}, t=6))  # deleted
    assert "job-050" in ids(run({}, t=50))


def test_items_are_the_job_detail_documents() -> None:
    sim = Simulator(MIXED, manual_clock=True, wall_clock=lambda: EPOCH)
    sim.set_time(5)
    answer = sim.search({"order": "asc"})
    assert answer["count"] == 3
    assert answer["items"] == [sim.document(i) for i in ids(answer)]


# --- filters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"key": "phase", "operator": "in", "value": ["Running", "Pending"]}, [0, 1, 3, 4]),
        ({"key": "phase", "operator": "in", "value": ["Completed"]}, [2]),
        ({"key": "phase", "operator": "not", "value": ["Running"]}, [1, 2]),
        ({"key": "name", "operator": "like", "value": ["llm"]}, [0, 1, 3]),
        ({"key": "name", "operator": "like", "value": ["LLM"]}, []),
        ({"key": "workspace_id", "operator": "in", "value": ["ws-a"]}, [0, 3]),
        ({"key": "kind", "operator": "in", "value": ["job"]}, [0, 1, 2, 3, 4]),
        (
            {
                "key": "create_time",
                "operator": "between",
                "value": [str(int((EPOCH + 1) * 1000)), str(int((EPOCH + 3) * 1000))],
            },
            [1, 2, 3],
        ),
    ],
)
def test_filters(flt: dict[str, Any], expected: list[int]) -> None:
    """Over both workspaces of the scenario: each search sees its own workspace's jobs."""
    answers = [run({"order": "asc", "workspace_id": w, "filters": [flt]}) for w in ("0", "ws-a")]
    assert sorted(i for a in answers for i in ids(a)) == [f"job-{i:03d}" for i in expected]
    assert sum(a["total"] for a in answers) == len(expected)


def test_filters_combine_with_and() -> None:
    answer = run(
        {
            "order": "asc",
            "workspace_id": "ws-a",
            "filters": [
                {"key": "name", "operator": "like", "value": ["llm"]},
                {"key": "phase", "operator": "in", "value": ["Running"]},
            ],
        }
    )
    assert ids(answer) == ["job-000", "job-003"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "JSON object"),
        ({"offset": -1}, "offset"),
        ({"offset": "1"}, "offset"),
        ({"limit": 0}, "limit"),
        ({"limit": 51}, "limit"),
        ({"limit": True}, "limit"),
        ({"order": "up"}, "order"),
        ({"sort_by": "name"}, "sort_by"),
        ({"page": 1}, "unknown field"),
        ({"workspace_id": 0}, "workspace_id"),
        ({"workspace_id": ""}, "workspace_id"),
        ({"tags": [{"key": "team", "values": ["a"]}]}, "tags: not supported"),
        ({"host_ips": ["10.0.0.1"]}, "host_ips: not supported"),
        ({"filters": {}}, "filters"),
        ({"filters": [{"key": "phase", "operator": "in"}]}, "filters[0]"),
        ({"filters": [{"key": "colour", "operator": "in", "value": ["x"]}]}, "filters[0].key"),
        ({"filters": [{"key": "tags", "operator": "in", "value": ["x"]}]}, "not supported"),
        ({"filters": [{"key": "phase", "operator": "eq", "value": ["x"]}]}, "filters[0].operator"),
        ({"filters": [{"key": "phase", "operator": "in", "value": []}]}, "at least one"),
        ({"filters": [{"key": "phase", "operator": "in", "value": "Running"}]}, "array of str"),
        ({"filters": [{"key": "name", "operator": "like", "value": "llm"}]}, "array of strings"),
        ({"filters": [{"key": "name", "operator": "like", "value": [3]}]}, "array of strings"),
        ({"filters": [{"key": "name", "operator": "like", "value": ["a", "b"]}]}, "exactly one"),
        ({"filters": [{"key": "name", "operator": "between", "value": ["1", "2"]}]}, "create_time"),
        (
            {"filters": [{"key": "create_time", "operator": "between", "value": [1, 2]}]},
            "array of strings",
        ),
        (
            {"filters": [{"key": "create_time", "operator": "between", "value": ["2", "1"]}]},
            "low <= high",
        ),
        (
            {"filters": [{"key": "create_time", "operator": "between", "value": ["1"]}]},
            "two numbers as strings",
        ),
        (
            {"filters": [{"key": "create_time", "operator": "between", "value": ["x", "2"]}]},
            "two numbers as strings",
        ),
    ],
)
def test_invalid_bodies_are_refused_naming_the_field(body: Any, message: str) -> None:
    with pytest.raises(SearchError, match=message.replace("[", r"\[").replace("]", r"\]")):
        run(body)


# --- over HTTP --------------------------------------------------------------------------------


@pytest.fixture
async def sim_url() -> AsyncIterator[tuple[Simulator, str]]:
    sim = Simulator(MIXED, manual_clock=True, wall_clock=lambda: EPOCH, credentials=CREDENTIALS)
    sim.set_time(5)
    runner: web.AppRunner
    runner, port = await start(sim, "127.0.0.1", 0)
    yield sim, f"http://127.0.0.1:{port}"
    await stop(runner)


async def test_a_signed_search_is_answered_and_counted(sim_url: tuple[Simulator, str]) -> None:
    sim, url = sim_url
    auth = AkSkAuth("AKSEARCH", "sk-search-secret", project_id="proj")
    async with httpx.AsyncClient(base_url=url, auth=auth) as client:
        assert "search_requests" not in (await client.get("/_sim/state")).json()
        response = await client.post(SEARCH, json={"limit": 2, "offset": 1, "order": "asc"})
        assert response.status_code == 200
        assert response.headers["x-request-id"]
        assert ids(response.json()) == ["job-004"]  # page 1 of jobs 1, 2, 4 (workspace "0")
        bad = await client.post(SEARCH, json={"limit": 99})
        assert bad.status_code == 400
        assert bad.json()["error_code"] == "ModelArts.0101"
        assert "limit" in bad.json()["error_msg"]
        not_json = await client.post(SEARCH, content=b"{", headers={"Content-Type": "x/y"})
        assert not_json.status_code == 400
        assert (await client.get("/_sim/state")).json()["search_requests"] == 3
    assert sim.requests == {}  # job-detail counters are untouched


async def test_an_unsigned_search_is_rejected(sim_url: tuple[Simulator, str]) -> None:
    sim, url = sim_url
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.post(SEARCH, json={})
    assert response.status_code == 401
    assert response.json()["error_code"] == "APIG.0301"
    assert sim.search_requests == 0


async def test_the_client_searches_signed_and_maps_errors(sim_url: tuple[Simulator, str]) -> None:
    _, url = sim_url
    auth = AkSkAuth("AKSEARCH", "sk-search-secret", project_id="proj")
    async with ModelArtsClient(url, "proj", auth=auth) as client:
        answer = await client.search_jobs({"offset": 0, "limit": 50, "order": "asc"})
        assert answer["total"] == 3
        with pytest.raises(ApiError) as info:
            await client.search_jobs({"limit": 0})
        assert info.value.status == 400
        assert info.value.error_code == "ModelArts.0101"
