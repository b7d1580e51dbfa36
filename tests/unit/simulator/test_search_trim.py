"""The simulator's search as a bulk-polling client meets it: items trimmed on request (so a
client's fallback to the detail can be driven), the jobs each answer listed, and pages of one
search at one scenario time answered from one set of matches, while a later time sees the jobs
as they are then."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from monitor.simulator import Simulator, parse_scenario, start, stop
from monitor.simulator.search import SearchError, Searches, trim_config

EPOCH = 1_700_000_000.0
SEARCH = "/v2/proj/training-job-searches"
RUN = {"start_type": "init_or_rescheduled"}
SCENARIO = parse_scenario(
    {
        "jobs": [
            {
                "id": f"job-{i}",
                "name": f"train-{i}",
                "timeline": [
                    {"at": 0, "phase": "Running", "secondary_phase": "Running", "run": RUN},
                    {"at": 10, "phase": "Completed", "secondary_phase": "Completed"},
                ],
            }
            for i in range(3)
        ]
    }
)
RUNNING = {"filters": [{"key": "phase", "operator": "in", "value": ["Running"]}], "order": "asc"}


@pytest.fixture
async def sim_url() -> AsyncIterator[tuple[Simulator, str]]:
    sim = Simulator(SCENARIO, manual_clock=True, wall_clock=lambda: EPOCH)
    sim.set_time(5)
    runner: web.AppRunner
    runner, port = await start(sim, "127.0.0.1", 0)
    yield sim, f"http://127.0.0.1:{port}"
    await stop(runner)


async def test_a_trim_leaves_the_named_status_fields_out_of_the_listed_jobs_items_only(
    sim_url: tuple[Simulator, str],
) -> None:
    _, url = sim_url
    async with httpx.AsyncClient(base_url=url) as client:
        trim = {"omit": ["running_records", "task_statuses"], "jobs": ["job-1"]}
        assert (await client.post("/_sim/search", json=trim)).json() == trim
        items = (await client.post(SEARCH, json=RUNNING)).json()["items"]
        detail = (await client.get("/v2/proj/training-jobs/job-1")).json()

        status = {i["metadata"]["id"]: i["status"] for i in items}
        assert "running_records" not in status["job-1"] and "task_statuses" not in status["job-1"]
        assert status["job-0"]["running_records"] and status["job-2"]["running_records"]
        assert detail["status"]["running_records"]  # the detail is never trimmed
        assert {k: v for k, v in detail["status"].items() if k in status["job-1"]} == status[
            "job-1"
        ]

        await client.post("/_sim/search", json={"omit": []})
        items = (await client.post(SEARCH, json=RUNNING)).json()["items"]
        assert all("running_records" in i["status"] for i in items)
        assert (await client.get("/_sim/search")).json() == {"omit": [], "jobs": None}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"omit": ["status"]}, "omit: 'status' is not one of"),
        ({"omit": "running_records"}, "omit: expected an array of strings"),
        ({"jobs": ["job-1"]}, "expected"),
        ({"omit": [], "jobs": "job-1"}, "jobs: expected an array of job ids"),
        ({"omit": [], "also": 1}, "expected"),
        (None, "expected"),
    ],
)
def test_an_invalid_trim_is_refused_naming_the_key(body: Any, message: str) -> None:
    with pytest.raises(SearchError, match=message):
        trim_config(body)


async def test_an_invalid_trim_is_answered_400_and_changes_nothing(
    sim_url: tuple[Simulator, str],
) -> None:
    sim, url = sim_url
    async with httpx.AsyncClient(base_url=url) as client:
        await client.post("/_sim/search", json={"omit": ["running_records"]})
        response = await client.post("/_sim/search", json={"omit": ["metadata"]})
    assert response.status_code == 400 and "omit" in response.json()["error"]
    assert sim.searches.trim.omit == ("running_records",)


async def test_the_state_counts_how_often_each_job_was_listed(
    sim_url: tuple[Simulator, str],
) -> None:
    _, url = sim_url
    async with httpx.AsyncClient(base_url=url) as client:
        await client.post(SEARCH, json={**RUNNING, "limit": 2})
        await client.post(SEARCH, json={**RUNNING, "limit": 2, "offset": 1})
        await client.post(SEARCH, json={**RUNNING, "limit": 2})
        state = (await client.get("/_sim/state")).json()
    assert state["search_requests"] == 3
    assert state["searched"] == {"job-0": 2, "job-1": 2, "job-2": 1}


def test_pages_of_one_search_at_one_time_agree_and_a_later_time_sees_the_jobs_anew() -> None:
    searches = Searches()
    pages = [
        searches.answer(SCENARIO.jobs, {**RUNNING, "limit": 2, "offset": p}, 5, EPOCH)
        for p in (0, 1)
    ]
    assert [i["metadata"]["id"] for p in pages for i in p["items"]] == ["job-0", "job-1", "job-2"]
    assert all(p["total"] == 3 for p in pages)

    later = searches.answer(SCENARIO.jobs, {**RUNNING, "limit": 2}, 12, EPOCH)
    assert later["total"] == 0 and later["items"] == []  # all Completed at 12
    other_filter = {"filters": [{"key": "phase", "operator": "in", "value": ["Completed"]}]}
    assert searches.answer(SCENARIO.jobs, other_filter, 12, EPOCH)["total"] == 3
