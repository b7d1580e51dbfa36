"""The simulator over real loopback: documents, errors, admin endpoints, latency, AK/SK."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from monitor.modelarts.auth.aksk import AkSkAuth
from monitor.modelarts.parse import parse_job
from monitor.simulator import Simulator, builtin_scenario, parse_scenario, start, stop
from tests.conftest import Serve

EPOCH = 1_700_000_000.0
BERT = "3faf5c03-aaa1-4cbe-879d-24b05d997347"
SWEEP = "5b90e3c2-7a14-4e6d-8f2b-d3a6c1e09b58"
PATH = "/v2/0123456789abcdef/training-jobs/{}"


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def manual_sim(**kw: Any) -> Simulator:
    return Simulator(builtin_scenario(), manual_clock=True, wall_clock=lambda: EPOCH, **kw)


# --- the pure Simulator -------------------------------------------------------------------------


def test_manual_clock_moves_only_when_told() -> None:
    sim = manual_sim()
    assert sim.now() == 0.0
    sim.advance(5)
    sim.advance(2.5)
    assert sim.now() == 7.5
    sim.set_time(3)
    assert sim.now() == 3.0
    assert not sim.finished()
    sim.set_time(sim.end_time())
    assert sim.finished()
    with pytest.raises(ValueError, match="seconds"):
        sim.advance(-1)


def test_real_clock_runs_at_speed_and_accepts_jumps() -> None:
    clock = FakeClock()
    sim = Simulator(builtin_scenario(), speed=4.0, clock=clock, wall_clock=lambda: EPOCH)
    assert sim.now() == 0.0
    clock.t += 2
    assert sim.now() == 8.0
    sim.advance(10)
    assert sim.now() == 18.0
    sim.set_time(30)
    clock.t += 1
    assert sim.now() == 34.0


def test_speed_defaults_to_the_scenarios() -> None:
    scenario = parse_scenario(
        {"speed": 3, "jobs": [{"id": "j", "name": "n", "timeline": [{"at": 0, "phase": "C"}]}]}
    )
    clock = FakeClock()
    sim = Simulator(scenario, clock=clock)
    clock.t += 1
    assert sim.now() == 3.0


def test_document_follows_scenario_time_and_epoch() -> None:
    sim = manual_sim()
    sim.set_time(10)
    doc = sim.document(BERT)
    assert doc is not None
    assert doc["status"]["start_time"] == int((EPOCH + 8) * 1000)
    assert sim.document("no-such-job") is None


# --- HTTP ---------------------------------------------------------------------------------------


async def test_job_detail_is_a_json_document_the_monitor_parses(serve: Serve) -> None:
    sim = manual_sim()
    sim.set_time(10)
    client = await serve(sim)
    response = await client.get(PATH.format(BERT))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
    snap = parse_job(response.json(), BERT)
    assert (snap.name, snap.phase, snap.nodes) == ("bert-pretrain", "Running", 2)
    other = await client.get(PATH.format(BERT))
    assert other.headers["x-request-id"] != response.headers["x-request-id"]


async def test_any_project_id_is_accepted(serve: Serve) -> None:
    client = await serve(manual_sim())
    response = await client.get(f"/v2/another-project/training-jobs/{BERT}")
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("job_id", "t"),
    [("00000000-0000-0000-0000-000000000000", 0.0), (SWEEP, 28.0)],
    ids=["unknown", "gone"],
)
async def test_unknown_and_gone_jobs_answer_400_modelarts_2775(
    serve: Serve, job_id: str, t: float
) -> None:
    sim = manual_sim()
    sim.set_time(t)
    client = await serve(sim)
    response = await client.get(PATH.format(job_id))
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"]
    body = response.json()
    assert body["error_code"] == "ModelArts.2775"
    assert body["error_msg"].startswith("Training job not found")


async def test_a_job_is_not_found_before_its_first_step(serve: Serve) -> None:
    scenario = parse_scenario(
        {"jobs": [{"id": "late", "name": "late", "timeline": [{"at": 5, "phase": "Creating"}]}]}
    )
    sim = Simulator(scenario, manual_clock=True)
    client = await serve(sim)
    assert (await client.get(PATH.format("late"))).status_code == 400
    sim.advance(5)
    assert (await client.get(PATH.format("late"))).status_code == 200


async def test_requests_are_counted_per_job_including_400s(serve: Serve) -> None:
    sim = manual_sim()
    client = await serve(sim)
    for _ in range(3):
        await client.get(PATH.format(BERT))
    await client.get(PATH.format("unknown"))
    assert sim.requests == {BERT: 3, "unknown": 1}
    state = (await client.get("/_sim/state")).json()
    assert state["requests"] == {BERT: 3, "unknown": 1}


async def test_sim_state_and_advance_move_scenario_time(serve: Serve) -> None:
    sim = manual_sim()
    client = await serve(sim)
    state = (await client.get("/_sim/state")).json()
    assert state == {"time": 0.0, "end_time": 36.0, "finished": False, "requests": {}}

    moved = await client.post("/_sim/advance", json={"seconds": 20})
    assert moved.status_code == 200
    assert moved.json()["time"] == 20.0
    assert sim.now() == 20.0
    snap = parse_job((await client.get(PATH.format(BERT))).json(), BERT)
    assert len(snap.running_records) == 2

    jumped = (await client.post("/_sim/advance", json={"to": 36})).json()
    assert (jumped["time"], jumped["finished"]) == (36.0, True)


async def test_advance_works_on_a_real_clock_too(serve: Serve) -> None:
    clock = FakeClock()
    sim = Simulator(builtin_scenario(), clock=clock)
    client = await serve(sim)
    assert (await client.post("/_sim/advance", json={"to": 30})).json()["time"] == 30.0
    clock.t += 1
    assert (await client.get("/_sim/state")).json()["time"] == 31.0


@pytest.mark.parametrize(
    "body",
    [{}, {"seconds": 1, "to": 2}, {"secs": 1}, {"seconds": "1"}, {"seconds": -1}, {"to": True}],
)
async def test_advance_rejects_malformed_bodies_with_400(serve: Serve, body: object) -> None:
    sim = manual_sim()
    client = await serve(sim)
    response = await client.post("/_sim/advance", json=body)
    assert response.status_code == 400
    assert "error" in response.json()
    assert sim.now() == 0.0


async def test_advance_rejects_a_non_json_body(serve: Serve) -> None:
    client = await serve(manual_sim())
    response = await client.post("/_sim/advance", content=b"five")
    assert response.status_code == 400


async def test_per_job_latency_delays_the_answer(serve: Serve) -> None:
    scenario = parse_scenario(
        {
            "jobs": [
                {
                    "id": "slow",
                    "name": "slow",
                    "latency": 0.2,
                    "timeline": [{"at": 0, "phase": "C"}],
                },
                {"id": "fast", "name": "fast", "timeline": [{"at": 0, "phase": "C"}]},
            ]
        }
    )
    client = await serve(Simulator(scenario, manual_clock=True))
    began = time.monotonic()
    response = await client.get(PATH.format("slow"))
    assert response.status_code == 200
    assert time.monotonic() - began >= 0.2
    assert (await client.get(PATH.format("fast"))).status_code == 200


async def test_start_on_port_zero_picks_distinct_free_ports() -> None:
    first, port1 = await start(manual_sim())
    second, port2 = await start(manual_sim())
    try:
        assert port1 > 0
        assert port2 > 0
        assert port1 != port2
    finally:
        await stop(first)
        await stop(second)


# --- AK/SK --------------------------------------------------------------------------------------

CREDENTIALS = {"AKSIMULATOR": "sk-simulator-secret"}


async def test_unsigned_request_is_rejected_with_401_apig_0301(serve: Serve) -> None:
    client = await serve(manual_sim(credentials=CREDENTIALS))
    response = await client.get(PATH.format(BERT))
    assert response.status_code == 401
    assert response.headers["x-request-id"]
    body = response.json()
    assert body["error_code"] == "APIG.0301"
    assert body["error_msg"].startswith("Incorrect IAM authentication information: ")
    assert body["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize(
    ("ak", "sk"),
    [("AKSIMULATOR", "wrong-secret"), ("AKUNKNOWN", "sk-simulator-secret")],
    ids=["wrong-secret", "unknown-ak"],
)
async def test_wrongly_signed_request_is_rejected_with_401(serve: Serve, ak: str, sk: str) -> None:
    sim = manual_sim(credentials=CREDENTIALS)
    client = await serve(sim, auth=AkSkAuth(ak, sk))
    response = await client.get(PATH.format(BERT))
    assert response.status_code == 401
    assert response.json()["error_code"] == "APIG.0301"
    assert sim.requests == {}


async def test_correctly_signed_requests_are_served(serve: Serve) -> None:
    sim = manual_sim(credentials=CREDENTIALS)
    client = await serve(sim, auth=AkSkAuth("AKSIMULATOR", "sk-simulator-secret", project_id="p"))
    response = await client.get(PATH.format(BERT), params={"b": "x y", "a": "1"})
    assert response.status_code == 200
    assert parse_job(response.json(), BERT).name == "bert-pretrain"
    assert (await client.get(PATH.format("unknown"))).status_code == 400
    assert sim.requests == {BERT: 1, "unknown": 1}


async def test_percent_encoded_job_ids_verify_against_what_the_client_signed(serve: Serve) -> None:
    scenario = parse_scenario(
        {
            "jobs": [
                {"id": "job with space", "name": "spaced", "timeline": [{"at": 0, "phase": "C"}]}
            ]
        }
    )
    sim = Simulator(scenario, manual_clock=True, credentials=CREDENTIALS)
    client = await serve(sim, auth=AkSkAuth("AKSIMULATOR", "sk-simulator-secret"))
    response = await client.get("/v2/p/training-jobs/job%20with%20space")
    assert response.status_code == 200
    assert response.json()["metadata"]["id"] == "job with space"


async def test_admin_endpoints_need_no_signature(serve: Serve) -> None:
    client = await serve(manual_sim(credentials=CREDENTIALS))
    assert (await client.get("/_sim/state")).status_code == 200
    assert (await client.post("/_sim/advance", json={"seconds": 1})).status_code == 200


async def test_signature_too_old_is_rejected(serve: Serve) -> None:
    old = AkSkAuth("AKSIMULATOR", "sk-simulator-secret", clock=lambda: time.time() - 3600)
    client = await serve(manual_sim(credentials=CREDENTIALS), auth=old)
    response = await client.get(PATH.format(BERT))
    assert response.status_code == 401
    assert "X-Sdk-Date" in response.json()["error_msg"]
