"""Per-task usage: the scenario's ``usage`` key, its replay into one-a-minute series, the
``GET .../metrics/{task_id}`` endpoint over loopback, and the demo's hang."""

from __future__ import annotations

from typing import Any

import pytest

from monitor.modelarts.auth.aksk import AkSkAuth
from monitor.simulator import Simulator, builtin_scenario, parse_scenario
from monitor.simulator.loader import ScenarioError
from monitor.simulator.scenario import JobSpec, Scenario
from monitor.simulator.usage import METRICS, POINTS, task_metrics, usage_at
from tests.conftest import Serve

EPOCH = 1_700_000_000.0
BERT = "3faf5c03-aaa1-4cbe-879d-24b05d997347"
RESNET = "8d2e61b7-4c3a-4f9e-a0b5-6f1c92d7e438"
LLAMA = "c47a9f10-2b6e-4d83-9e5f-1a08b3d6c2f7"
SWEEP = "5b90e3c2-7a14-4e6d-8f2b-d3a6c1e09b58"
METRICS_PATH = "/v2/proj/training-jobs/{}/metrics/{}"
CREDENTIALS = {"AKSIMULATOR": "sk-simulator-secret"}
N = -1.0  # no data


def scenario(timeline: list[dict[str, Any]], tasks: list[str] | None = None) -> Scenario:
    job: dict[str, Any] = {"id": "job-1", "name": "one", "timeline": timeline}
    if tasks is not None:
        job["tasks"] = tasks
    return parse_scenario({"jobs": [job]})


def only_job(s: Scenario) -> JobSpec:
    return s.jobs[0]


def problems_of(data: object) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data)
    return info.value.problems


def series(answer: dict[str, Any]) -> dict[str, list[float]]:
    return {m["metric"]: m["value"] for m in answer["metrics"]}


# --- the scenario key ---------------------------------------------------------------------------


def test_usage_for_every_task_applies_to_each_task_and_unnamed_metrics_keep_their_value() -> None:
    job = only_job(
        scenario(
            [
                {"at": 0, "phase": "Running", "usage": {"gpuUtil": 85, "cpuUsage": 40}},
                {"at": 10, "usage": {"gpuUtil": 5}},
            ],
            tasks=["worker-0", "worker-1"],
        )
    )
    for task in ("worker-0", "worker-1"):
        assert usage_at(job, 0)[task]["gpuUtil"] == 85
        assert usage_at(job, 10)[task] == {
            "cpuUsage": 40,
            "memUsage": N,
            "gpuUtil": 5,
            "gpuMemUsage": N,
            "npuUtil": N,
            "npuMemUsage": N,
        }


def test_usage_per_task_changes_only_the_named_tasks() -> None:
    job = only_job(
        scenario(
            [
                {"at": 0, "phase": "Running", "usage": {"npuUtil": 60, "npuMemUsage": 50}},
                {"at": 5, "usage": {"worker-1": {"npuUtil": 0}}},
            ],
            tasks=["worker-0", "worker-1"],
        )
    )
    now = usage_at(job, 5)
    assert (now["worker-0"]["npuUtil"], now["worker-1"]["npuUtil"]) == (60, 0)
    assert now["worker-1"]["npuMemUsage"] == 50


def test_every_metric_is_minus_one_before_any_usage_step() -> None:
    job = only_job(scenario([{"at": 0, "phase": "Running"}, {"at": 9, "usage": {"gpuUtil": 1}}]))
    assert usage_at(job, 8.9)["worker-0"] == dict.fromkeys(METRICS, N)


@pytest.mark.parametrize(
    ("usage", "problem"),
    [
        ({"gpuUtil": 101}, "timeline[0].usage.gpuUtil: expected a percentage 0..100 or -1"),
        ({"gpuUtil": -2}, "timeline[0].usage.gpuUtil: expected a percentage 0..100 or -1"),
        ({"gpuUtil": True}, "timeline[0].usage.gpuUtil: expected a percentage"),
        ({"gpuUtil": "high"}, "timeline[0].usage.gpuUtil: expected a percentage"),
        ({"worker-0": {"gpuUtl": 5}}, "timeline[0].usage.worker-0.gpuUtl: unknown metric"),
        ({"worker-0": 5}, "timeline[0].usage.worker-0: expected a mapping of metrics"),
        ({"worker-7": {"gpuUtil": 5}}, "timeline[0].usage.worker-7: not a task of this job"),
        ({"gpuUtil": 5, "worker-0": {"gpuUtil": 5}}, "timeline[0].usage: expected either metrics"),
        ({}, "timeline[0].usage: expected a mapping of metrics or of tasks"),
        ([50], "timeline[0].usage: expected a mapping of metrics or of tasks"),
    ],
)
def test_invalid_usage_is_reported_with_its_key_path(usage: object, problem: str) -> None:
    data = {
        "jobs": [{"id": "j", "name": "n", "timeline": [{"at": 0, "phase": "C", "usage": usage}]}]
    }
    assert any(p.startswith(f"jobs[0].{problem}") for p in problems_of(data)), problems_of(data)


def test_minus_one_is_a_valid_value_meaning_no_data() -> None:
    job = only_job(
        scenario(
            [
                {"at": 0, "phase": "Running", "usage": {"gpuUtil": 50}},
                {"at": 1, "usage": {"gpuUtil": -1}},
            ]
        )
    )
    assert usage_at(job, 1)["worker-0"]["gpuUtil"] == N


# --- the series ---------------------------------------------------------------------------------


def test_series_has_one_point_a_scenario_minute_oldest_first_ending_now() -> None:
    """Samples at t-14min .. t: the usage in force then, -1 when the job was not running."""
    job = only_job(
        scenario(
            [
                {"at": 0, "phase": "Creating"},
                {"at": 60, "phase": "Running", "usage": {"gpuUtil": 10}},
                {"at": 180, "usage": {"gpuUtil": 30}},
                {"at": 300, "usage": {"worker-1": {"gpuUtil": -1}}},
                {"at": 600, "phase": "Completed"},
            ],
            tasks=["worker-0", "worker-1"],
        )
    )
    # samples at -180, -120, -60, 0, 60, 120, 180, 240, 300, 360, 420, 480, 540, 600, 660
    w0 = series(task_metrics(job, "worker-0", 660))
    assert [m for m in w0] == list(METRICS)
    assert all(len(v) == POINTS for v in w0.values())
    assert w0["gpuUtil"] == [N, N, N, N, 10, 10, 30, 30, 30, 30, 30, 30, 30, N, N]
    assert w0["cpuUsage"] == [N] * POINTS
    w1 = series(task_metrics(job, "worker-1", 660))
    assert w1["gpuUtil"] == [N, N, N, N, 10, 10, 30, 30, N, N, N, N, N, N, N]


def test_the_newest_point_is_the_usage_at_the_current_time() -> None:
    job = only_job(
        scenario(
            [
                {"at": 0, "phase": "Running", "usage": {"gpuUtil": 10}},
                {"at": 7, "usage": {"gpuUtil": 0}},
            ]
        )
    )
    assert series(task_metrics(job, "worker-0", 6.9))["gpuUtil"][-1] == 10
    assert series(task_metrics(job, "worker-0", 7))["gpuUtil"][-1] == 0


# --- the demo -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo() -> Scenario:
    return builtin_scenario("demo")


def now_value(demo: Scenario, job_id: str, task: str, metric: str, t: float) -> float:
    spec = demo.job(job_id)
    assert spec is not None
    return series(task_metrics(spec, task, t))[metric][-1]


def test_demo_llama_hangs_from_24_to_32_on_every_task_while_running(demo: Scenario) -> None:
    spec = demo.job(LLAMA)
    assert spec is not None
    for task in spec.tasks:
        assert now_value(demo, LLAMA, task, "gpuUtil", 23.9) == 75
        for t in (24, 28, 31.9):
            assert now_value(demo, LLAMA, task, "gpuUtil", t) == 0
            doc = spec.document(t, EPOCH)
            assert doc is not None and doc["status"]["phase"] == "Running"
        assert now_value(demo, LLAMA, task, "gpuUtil", 32) == 70


def test_demo_gpu_jobs_report_gpu_and_the_cpu_job_reports_none(demo: Scenario) -> None:
    assert now_value(demo, BERT, "worker-1", "gpuUtil", 10) == 80
    assert now_value(demo, RESNET, "worker-0", "memUsage", 15) == 97
    assert now_value(demo, SWEEP, "worker-0", "cpuUsage", 10) == 55
    assert now_value(demo, SWEEP, "worker-0", "gpuUtil", 10) == N
    assert now_value(demo, BERT, "worker-0", "gpuUtil", 34) == N  # Completed: no pods


# --- HTTP ---------------------------------------------------------------------------------------


def demo_sim(**kw: Any) -> Simulator:
    return Simulator(builtin_scenario(), manual_clock=True, wall_clock=lambda: EPOCH, **kw)


async def test_metrics_endpoint_serves_the_six_series_at_the_current_time(serve: Serve) -> None:
    sim = demo_sim()
    sim.set_time(25)
    client = await serve(sim)
    response = await client.get(METRICS_PATH.format(LLAMA, "worker-2"))
    assert response.status_code == 200
    assert response.headers["x-request-id"]
    body = response.json()
    assert set(body) == {"metrics"}
    values = series(body)
    assert list(values) == list(METRICS)
    assert values["gpuUtil"] == [N] * (POINTS - 1) + [0]
    assert values["gpuMemUsage"][-1] == 81
    sim.set_time(33)
    later = series((await client.get(METRICS_PATH.format(LLAMA, "worker-2"))).json())
    assert later["gpuUtil"][-1] == 70


@pytest.mark.parametrize(("job_id", "t"), [("no-such-job", 5), (SWEEP, 28), (SWEEP, 100)])
async def test_unknown_or_gone_job_answers_400_modelarts_2775(
    serve: Serve, job_id: str, t: float
) -> None:
    sim = demo_sim()
    sim.set_time(t)
    client = await serve(sim)
    response = await client.get(METRICS_PATH.format(job_id, "worker-0"))
    assert response.status_code == 400
    assert response.json()["error_code"] == "ModelArts.2775"


async def test_unknown_task_answers_400_with_a_parameter_error(serve: Serve) -> None:
    sim = demo_sim()
    client = await serve(sim)
    response = await client.get(METRICS_PATH.format(BERT, "worker-9"))
    assert response.status_code == 400
    body = response.json()
    assert body["error_code"] == "ModelArts.0104"
    assert "worker-9" in body["error_msg"]


async def test_metrics_requests_are_counted_per_job_in_sim_state(serve: Serve) -> None:
    sim = demo_sim()
    client = await serve(sim)
    assert "metrics_requests" not in (await client.get("/_sim/state")).json()
    await client.get(METRICS_PATH.format(BERT, "worker-0"))
    await client.get(METRICS_PATH.format(BERT, "worker-9"))
    await client.get(METRICS_PATH.format("nope", "worker-0"))
    state = (await client.get("/_sim/state")).json()
    assert state["metrics_requests"] == {BERT: 2, "nope": 1}
    assert state["requests"] == {}  # job-detail requests are counted apart


async def test_metrics_endpoint_needs_a_signature_like_the_job_detail(serve: Serve) -> None:
    sim = demo_sim(credentials=CREDENTIALS)
    unsigned = await serve(sim)
    response = await unsigned.get(METRICS_PATH.format(BERT, "worker-0"))
    assert response.status_code == 401
    assert response.json()["error_code"] == "APIG.0301"
    assert sim.metrics_requests == {}
    signed = await serve(sim, auth=AkSkAuth("AKSIMULATOR", "sk-simulator-secret"))
    assert (await signed.get(METRICS_PATH.format(BERT, "worker-0"))).status_code == 200


async def test_faults_are_never_applied_to_the_metrics_endpoint(serve: Serve) -> None:
    sim = demo_sim(faults={"rate": 1.0, "seed": 1})
    sim.set_time(10)
    client = await serve(sim)
    for _ in range(5):
        response = await client.get(METRICS_PATH.format(BERT, "worker-0"))
        assert response.status_code == 200
        assert series(response.json())["gpuUtil"][-1] == 80
    assert sim.faults is not None
    assert sum(sim.faults.counts.values()) == 0
