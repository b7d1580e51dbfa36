"""Job events (the scenario's ``events`` key and ``GET .../events`` over loopback) and the
``end_run.recover_records`` of running records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from monitor.modelarts.auth.aksk import AkSkAuth
from monitor.modelarts.parse import parse_job
from monitor.simulator import Simulator, builtin_scenario, parse_scenario
from monitor.simulator.events import event_time
from monitor.simulator.loader import ScenarioError
from monitor.simulator.scenario import Scenario
from tests.conftest import Serve

EPOCH = 1_700_000_000.0  # 2023-11-15T06:13:20+08:00
BERT = "3faf5c03-aaa1-4cbe-879d-24b05d997347"
RESNET = "8d2e61b7-4c3a-4f9e-a0b5-6f1c92d7e438"
SWEEP = "5b90e3c2-7a14-4e6d-8f2b-d3a6c1e09b58"
EVENTS = "/v2/proj/training-jobs/{}/events"
CREDENTIALS = {"AKSIMULATOR": "sk-simulator-secret"}


def sec(at: float) -> int:
    return int(EPOCH + at)


def problems_of(data: object) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data)
    return info.value.problems


def one_job(timeline: list[dict[str, Any]]) -> Scenario:
    return parse_scenario({"jobs": [{"id": "job-1", "name": "one", "timeline": timeline}]})


# Six events over three steps, to page and filter through.
TIMELINE: list[dict[str, Any]] = [
    {
        "at": 0,
        "phase": "Creating",
        "events": [{"level": "Info", "message": "Job created."}],
    },
    {
        "at": 10,
        "phase": "Running",
        "events": [
            {"level": "Info", "message": "Image pulled.", "source": "K8S"},
            {"level": "Warning", "message": "Memory usage above 95% on worker-0"},
        ],
    },
    {
        "at": 20,
        "phase": "Failed",
        "events": [
            {"level": "Error", "message": "Process exited with code 137: OOMKilled"},
            {"level": "Error", "message": "Training job failed.", "source": "Task"},
            {"level": "Info", "message": "Resources released."},
        ],
    },
]


# --- the scenario key ---------------------------------------------------------------------------


def test_event_source_defaults_to_job() -> None:
    spec = one_job(TIMELINE).jobs[0]
    assert spec.timeline[0].events[0].source == "Job"
    assert spec.timeline[1].events[0].source == "K8S"


@pytest.mark.parametrize(
    ("events", "problem"),
    [
        ([{"level": "Fatal", "message": "x"}], "events[0].level: expected one of Info, Warning"),
        ([{"level": "Info"}], "events[0].message: required"),
        ([{"message": "x"}], "events[0].level: required"),
        ([{"level": "Info", "message": ""}], "events[0].message: expected a non-empty string"),
        ([{"level": "Info", "message": "x", "when": 1}], "events[0].when: unknown key"),
        ([{"level": "Info", "message": "x", "source": 3}], "events[0].source: expected a string"),
        ({"level": "Info"}, "events: expected a list"),
    ],
)
def test_invalid_events_are_reported_with_their_key_path(events: object, problem: str) -> None:
    data = {
        "jobs": [{"id": "j", "name": "n", "timeline": [{"at": 0, "phase": "C", "events": events}]}]
    }
    problems = problems_of(data)
    assert any(p.startswith(f"jobs[0].timeline[0].{problem}") for p in problems), problems


def test_event_time_is_iso_8601_at_plus_eight_in_whole_seconds() -> None:
    assert event_time(EPOCH + 0.9) == "2023-11-15T06:13:20+08:00"
    assert event_time(1669449821) == "2022-11-26T16:03:41+08:00"  # the API reference's example


# --- recover_records ----------------------------------------------------------------------------


def test_recover_records_carry_the_closing_steps_time_in_seconds() -> None:
    scenario = one_job(
        [
            {"at": 0, "phase": "Running", "run": {}},
            {
                "at": 7.5,
                "end_run": {
                    "end_recover": "proc_restart",
                    "recover_records": [
                        {"recover": "proc_restart", "recover_result": "downgrade"},
                        {
                            "recover": "pod_reschedule",
                            "fault_scenario": "node_fault",
                            "reason": "node NotReady",
                            "related_task": "worker-0",
                            "recover_result": "success",
                        },
                    ],
                },
                "run": {"start_type": "init_or_rescheduled"},
            },
        ]
    )
    doc = scenario.jobs[0].document(8, EPOCH)
    assert doc is not None
    closed, running = doc["status"]["running_records"]
    assert closed["end_at"] == sec(7.5)
    assert closed["recover_records"] == [
        {
            "recover_start_at": sec(7.5),
            "recover_end_at": sec(7.5),
            "recover": "proc_restart",
            "recover_result": "downgrade",
        },
        {
            "recover_start_at": sec(7.5),
            "recover_end_at": sec(7.5),
            "recover": "pod_reschedule",
            "fault_scenario": "node_fault",
            "reason": "node NotReady",
            "related_task": "worker-0",
            "recover_result": "success",
        },
    ]
    assert "recover_records" not in running
    parse_job(doc, "job-1")  # the monitor's parser ignores the extra field


@pytest.mark.parametrize(
    ("records", "problem"),
    [
        ([{"recover": 5}], "recover_records[0].recover: expected a string"),
        ([{"recover_at": 5}], "recover_records[0].recover_at: unknown key"),
        ({"recover": "x"}, "recover_records: expected a list"),
    ],
)
def test_invalid_recover_records_are_reported_with_their_key_path(
    records: object, problem: str
) -> None:
    timeline = [
        {"at": 0, "phase": "Running", "run": {}},
        {"at": 1, "end_run": {"recover_records": records}},
    ]
    problems = problems_of({"jobs": [{"id": "j", "name": "n", "timeline": timeline}]})
    assert any(p.startswith(f"jobs[0].timeline[1].end_run.{problem}") for p in problems), problems


def test_demo_bert_pod_reschedule_has_a_successful_recover_record() -> None:
    spec = builtin_scenario().job(BERT)
    assert spec is not None
    doc = spec.document(30, EPOCH)
    assert doc is not None
    records = doc["status"]["running_records"]
    assert records[1]["recover_records"] == [
        {
            "recover_start_at": sec(24),
            "recover_end_at": sec(24),
            "recover": "pod_reschedule",
            "fault_scenario": "node_fault",
            "reason": "pod evicted: node NotReady",
            "related_task": "worker-0",
            "recover_result": "success",
        }
    ]
    assert all("recover_records" not in r for i, r in enumerate(records) if i != 1)


# --- HTTP ---------------------------------------------------------------------------------------


def sim_at(t: float, scenario: Scenario | None = None, **kw: Any) -> Simulator:
    sim = Simulator(
        scenario or one_job(TIMELINE), manual_clock=True, wall_clock=lambda: EPOCH, **kw
    )
    sim.set_time(t)
    return sim


def messages(body: dict[str, Any]) -> list[str]:
    return [e["message"] for e in body["events"]]


async def get(client: httpx.AsyncClient, job_id: str = "job-1", **params: Any) -> httpx.Response:
    return await client.get(EVENTS.format(job_id), params=params)


async def test_events_up_to_now_newest_first_by_default_in_the_documented_shape(
    serve: Serve,
) -> None:
    client = await serve(sim_at(15))
    response = await get(client)
    assert response.status_code == 200
    assert response.json() == {
        "total": 3,
        "limit": 50,
        "offset": 0,
        "order": "desc",
        "start_time": None,
        "end_time": None,
        "events": [
            {
                "time": "2023-11-15T06:13:30+08:00",
                "level": "Warning",
                "message": "Memory usage above 95% on worker-0",
                "source": "Job",
            },
            {
                "time": "2023-11-15T06:13:30+08:00",
                "level": "Info",
                "message": "Image pulled.",
                "source": "K8S",
            },
            {
                "time": "2023-11-15T06:13:20+08:00",
                "level": "Info",
                "message": "Job created.",
                "source": "Job",
            },
        ],
    }


async def test_order_asc_lists_oldest_first_in_scenario_order(serve: Serve) -> None:
    client = await serve(sim_at(20))
    body = (await get(client, order="asc")).json()
    assert messages(body) == [
        "Job created.",
        "Image pulled.",
        "Memory usage above 95% on worker-0",
        "Process exited with code 137: OOMKilled",
        "Training job failed.",
        "Resources released.",
    ]
    assert body["order"] == "asc"


async def test_level_filters_on_the_exact_level_and_total_counts_matches(serve: Serve) -> None:
    client = await serve(sim_at(20))
    body = (await get(client, level="Error")).json()
    assert messages(body) == ["Training job failed.", "Process exited with code 137: OOMKilled"]
    assert body["total"] == 2
    assert (await get(client, level="Info")).json()["total"] == 3


async def test_offset_is_a_row_offset_and_limit_a_page_size(serve: Serve) -> None:
    client = await serve(sim_at(20))
    body = (await get(client, order="asc", offset=2, limit=3)).json()
    assert messages(body) == [
        "Memory usage above 95% on worker-0",
        "Process exited with code 137: OOMKilled",
        "Training job failed.",
    ]
    assert (body["total"], body["offset"], body["limit"]) == (6, 2, 3)
    past = (await get(client, offset=6)).json()
    assert (past["events"], past["total"]) == ([], 6)


async def test_pattern_source_and_time_range_filter(serve: Serve) -> None:
    client = await serve(sim_at(20))
    assert messages((await get(client, pattern="137")).json()) == [
        "Process exited with code 137: OOMKilled"
    ]
    assert messages((await get(client, source="K8S")).json()) == ["Image pulled."]
    window = await get(
        client,
        order="asc",
        start_time="2023-11-15T06:13:25+08:00",
        end_time="2023-11-15T06:13:30+08:00",
    )
    assert messages(window.json()) == ["Image pulled.", "Memory usage above 95% on worker-0"]
    assert window.json()["start_time"] == "2023-11-15T06:13:25+08:00"
    utc = await get(client, start_time="2023-11-14T22:13:40Z", end_time="2023-11-14T22:13:40Z")
    assert utc.json()["total"] == 3


async def test_an_unencoded_plus_in_a_time_still_means_plus(serve: Serve) -> None:
    client = await serve(sim_at(20))
    url = EVENTS.format("job-1")
    query = "start_time=2023-11-15T06:13:40+08:00&end_time=2023-11-15T06:13:40+08:00"
    response = await client.get(f"{url}?{query}")
    assert response.status_code == 200
    assert response.json()["total"] == 3
    assert datetime.fromisoformat(response.json()["end_time"]).utcoffset() is not None


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"limit": "ten"},
        {"offset": -1},
        {"order": "newest"},
        {"level": "error"},
        {"pattern": "x" * 257},
        {"start_time": "2023-11-15T06:13:25+08:00"},
        {"end_time": "2023-11-15T06:13:25+08:00"},
        {"start_time": "yesterday", "end_time": "today"},
        {"start_time": "2023-11-15T07:00:00+08:00", "end_time": "2023-11-15T06:00:00+08:00"},
    ],
)
async def test_invalid_parameters_answer_400_with_a_parameter_error(
    serve: Serve, params: dict[str, Any]
) -> None:
    client = await serve(sim_at(20))
    response = await get(client, **params)
    assert response.status_code == 400
    assert response.json()["error_code"] == "ModelArts.0104"


async def test_limits_at_the_bounds_are_accepted(serve: Serve) -> None:
    client = await serve(sim_at(20))
    assert len((await get(client, limit=1)).json()["events"]) == 1
    assert (await get(client, limit=100)).status_code == 200
    assert (await get(client, pattern="x" * 256)).json()["total"] == 0


async def test_unknown_not_yet_created_and_gone_jobs_answer_400_modelarts_2775(
    serve: Serve,
) -> None:
    sim = sim_at(28, builtin_scenario())
    client = await serve(sim)
    for job_id in ("no-such-job", SWEEP):
        response = await get(client, job_id)
        assert response.status_code == 400
        assert response.json()["error_code"] == "ModelArts.2775"
    late = one_job([{"at": 5, "phase": "Creating"}])
    early = await serve(sim_at(4, late))
    assert (await get(early)).json()["error_code"] == "ModelArts.2775"


async def test_demo_resnet_failure_events_appear_at_20(serve: Serve) -> None:
    sim = sim_at(19.9, builtin_scenario())
    client = await serve(sim)
    assert (await get(client, RESNET)).json()["total"] == 0
    sim.set_time(20)
    body = (await get(client, RESNET)).json()
    assert [(e["level"], e["message"]) for e in body["events"]] == [
        ("Error", "Process exited with code 137: OOMKilled"),
        ("Warning", "Memory usage above 95% on worker-0"),
    ]
    assert {e["time"] for e in body["events"]} == {event_time(EPOCH + 20)}
    assert (await get(client, BERT)).json()["total"] == 0


async def test_events_requests_are_counted_per_job_and_need_a_signature(serve: Serve) -> None:
    sim = sim_at(20, credentials=CREDENTIALS)
    unsigned = await serve(sim)
    assert (await get(unsigned)).status_code == 401
    assert "events_requests" not in sim.state()
    signed = await serve(sim, auth=AkSkAuth("AKSIMULATOR", "sk-simulator-secret"))
    assert (await get(signed, level="Error", limit=5)).status_code == 200
    assert (await get(signed, limit=0)).status_code == 400
    assert (await get(signed, "other")).status_code == 400
    state = (await signed.get("/_sim/state")).json()
    assert state["events_requests"] == {"job-1": 2, "other": 1}


async def test_faults_are_never_applied_to_the_events_endpoint(serve: Serve) -> None:
    sim = sim_at(20, faults={"rate": 1.0, "seed": 3})
    client = await serve(sim)
    for _ in range(5):
        assert (await get(client)).json()["total"] == 6
    assert sim.faults is not None
    assert sum(sim.faults.counts.values()) == 0
