"""Reasons: a failure transition carries the job's newest Error/Warning messages from ModelArts.

End to end over a mock transport serving the job detail and the job-events endpoint, a real store
and a sink; plus the client call, the merge rule and the persistence of what they add.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from monitor.config.settings import ReasonSettings
from monitor.core.diff import diff, observe
from monitor.core.reasons import newest_reasons, reason_line
from monitor.errors import AuthError, InvalidResponse, RateLimited
from monitor.modelarts.client import ModelArtsClient
from monitor.modelarts.parse import parse_job
from monitor.store.database import Store
from tests.conftest import SEED_ID, job_doc, wait_for
from tests.unit.daemon.conftest import JobPath, job_path

RUN0 = {"start_at": 100, "start_type": "init_or_rescheduled"}
RECOVERED = {
    "recover": "pod_reschedule",
    "recover_result": "success",
    "fault_scenario": "node_fault",
    "reason": "node NotReady",
    "related_task": "worker-1",
    "recover_start_at": 200,
    "recover_end_at": 260,
}
RUN0_FAULT = {
    **RUN0,
    "end_at": 200,
    "end_reason": "node lost",
    "end_recover": "pod_reschedule",
    "recover_records": [RECOVERED],
}
RUN1 = {"start_at": 270, "start_type": "init_or_rescheduled"}


def ev(level: str, time_: str, message: str) -> dict[str, str]:
    return {"time": time_, "level": level, "message": message, "source": "Job"}


@dataclass
class Api:
    """The fake ModelArts: details from a queue, events per level, or a scripted failure."""

    details: deque[httpx.Response] = field(default_factory=deque)
    events: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {"Error": [], "Warning": [], "Info": []}
    )
    events_answer: Callable[[], httpx.Response] | None = None
    events_delay: float = 0.0
    events_requests: list[httpx.Request] = field(default_factory=list)

    async def handler(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/events"):
            assert self.details, f"no scripted detail left for {request.url.path}"
            return self.details.popleft()
        self.events_requests.append(request)
        if self.events_delay:
            await asyncio.sleep(self.events_delay)
        if self.events_answer is not None:
            return self.events_answer()
        params = request.url.params
        matching = self.events[params["level"]][: int(params["limit"])]
        return httpx.Response(
            200,
            json={"total": len(matching), "offset": 0, "order": "desc", "events": matching},
        )

    def levels(self) -> list[str]:
        return sorted(r.url.params["level"] for r in self.events_requests)


@dataclass
class Rig(JobPath):
    api: Api = field(default_factory=Api)

    async def poll(self, **doc: Any) -> None:
        self.api.details.append(httpx.Response(200, json=job_doc(**doc)))
        await self.poller.poll(SEED_ID)
        self.clock.now += 30

    def received(self, type_: str) -> list[dict[str, Any]]:
        return [e["data"] for e in self.sink.received if e["type"] == f"modelarts.job.{type_}"]


@contextlib.asynccontextmanager
async def make_rig(
    tmp_path: Path, reasons: ReasonSettings | None = None, timeout: float = 10.0
) -> AsyncIterator[Rig]:
    api = Api()
    async with job_path(tmp_path, api.handler, reasons=reasons, timeout=timeout) as path:
        yield Rig(**vars(path), api=api)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with make_rig(tmp_path) as r:
        yield r


async def test_the_reasons_fetch_waits_for_a_slot_as_any_request_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reasons are fetched while the book applies a poll, after the poll gave its slot
    back: they take a slot of their own, so ``poll.concurrency`` (4 here) still bounds the
    requests in flight."""
    others = [f"6a1b0000-0000-4000-8000-00000000001{i}" for i in range(4)]
    inside: list[str] = []
    hold, go, applying = asyncio.Event(), asyncio.Event(), asyncio.Event()
    api = Api()
    api.events["Error"] = [ev("Error", "2022-11-26T16:03:41+08:00", "Training job failed.")]

    async def handler(request: httpx.Request) -> httpx.Response:
        job_id = request.url.path.split("/")[4]  # /v2/{project}/training-jobs/{job}[/events]
        if job_id in others:
            inside.append(job_id)
            await hold.wait()
            return httpx.Response(200, json=job_doc(job_id=job_id))
        return await api.handler(request)

    async with job_path(tmp_path, handler) as path:
        for job_id in others:
            path.book.watch(job_id, {})
        api.details.append(httpx.Response(200, json=job_doc(phase="Running")))
        await path.poller.poll(SEED_ID)
        path.clock.now += 30
        apply = path.book.apply_poll

        async def held(job_id: str, *args: Any, **kwargs: Any) -> str:
            if job_id == SEED_ID:
                applying.set()
                await go.wait()
            return await apply(job_id, *args, **kwargs)

        monkeypatch.setattr(path.book, "apply_poll", held)
        api.details.append(
            httpx.Response(200, json=job_doc(phase="Failed", secondary_phase="Failed"))
        )
        failing = asyncio.create_task(path.poller.poll(SEED_ID))
        await wait_for(applying.is_set)
        blockers = [asyncio.create_task(path.poller.poll(j)) for j in others]
        await wait_for(lambda: len(inside) == 4)
        go.set()
        for _ in range(20):  # every chance for the reasons requests to go out
            await asyncio.sleep(0)
        assert api.events_requests == [], "all four slots are taken"
        hold.set()
        await asyncio.wait_for(asyncio.gather(failing, *blockers), 5)
        assert api.levels() == ["Error", "Warning"]


def expected_id(before: dict[str, Any], after: dict[str, Any], type_: str) -> str:
    """The id ``diff`` gives this transition on its own, with no reasons anywhere."""
    events = diff(parse_job(job_doc(**before)), parse_job(job_doc(**after)), 0.0)
    return next(e.id for e in events if e.type == type_)


# -- the poller -------------------------------------------------------------------------------


async def test_a_failed_phase_carries_the_newest_reasons_across_levels_bounded_and_clipped(
    rig: Rig,
) -> None:
    rig.api.events["Error"] = [
        ev("Error", "2022-11-26T16:03:41+08:00", "Training job failed."),
        ev("Error", "2022-11-26T16:03:30+08:00", "x" * 1000),
        ev("Error", "2022-11-26T15:00:00+08:00", "too old to make the cut"),
    ]
    rig.api.events["Warning"] = [
        ev("Warning", "2022-11-26T08:03:35Z", "worker-0 OOMKilled"),  # 16:03:35 +08:00
        ev("Warning", "2022-11-26T16:01:00+08:00", "image pull slow"),
        ev("Warning", "2022-11-26T16:00:00+08:00", "node pressure"),
    ]
    await rig.poll(phase="Running")
    await rig.poll(phase="Failed", secondary_phase="Failed")
    await wait_for(lambda: len(rig.sink.received) == 3)

    (changed,) = rig.received("phase_changed")
    assert [(r["level"], r["message"][:20]) for r in changed["reasons"]] == [
        ("Error", "Training job failed."),
        ("Warning", "worker-0 OOMKilled"),
        ("Error", "x" * 20),
        ("Warning", "image pull slow"),
        ("Warning", "node pressure"),
    ], "newest first across both levels, at most reasons.max (5)"
    assert changed["reasons"][0] == {
        "level": "Error",
        "time": "2022-11-26T16:03:41+08:00",
        "message": "Training job failed.",
    }
    assert len(changed["reasons"][2]["message"]) == 300
    (secondary,) = rig.received("secondary_phase_changed")
    assert "reasons" not in secondary, "only failure transitions carry reasons"
    assert rig.sink.received[1]["id"] == expected_id(
        {"phase": "Running"}, {"phase": "Failed", "secondary_phase": "Failed"}, "phase_changed"
    )

    assert rig.api.levels() == ["Error", "Warning"]
    for request in rig.api.events_requests:
        assert request.url.path == f"/v2/proj/training-jobs/{SEED_ID}/events"
        params = request.url.params
        assert (params["offset"], params["limit"], params["order"]) == ("0", "5", "desc")

    assert reason_line(rig.state()) == ("Error 2022-11-26T16:03:41+08:00: Training job failed.")
    stored = await rig.store.call(rig.store.load_states)
    assert stored[SEED_ID].last_reason == changed["reasons"][0]


async def test_a_failing_events_call_commits_the_transition_with_no_reasons_and_the_same_id(
    rig: Rig,
) -> None:
    rig.api.events_answer = lambda: httpx.Response(
        500, json={"error_code": "ModelArts.0001", "error_msg": "internal"}
    )
    await rig.poll(phase="Running")
    with capture_logs() as logs:
        await rig.poll(phase="Abnormal", secondary_phase="Running")
    await wait_for(lambda: len(rig.sink.received) == 2)

    (changed,) = rig.received("phase_changed")
    assert changed["reasons"] == []
    assert rig.sink.received[1]["id"] == expected_id(
        {"phase": "Running"}, {"phase": "Abnormal"}, "phase_changed"
    )
    failures = [e for e in logs if e["event"] == "reasons_unavailable"]
    assert len(failures) == 1, "two failed calls, one line"
    assert failures[0]["result"] == "server_error"
    assert rig.health().up
    assert reason_line(rig.state()) == ""


async def test_an_events_body_of_the_wrong_shape_costs_only_the_reasons(rig: Rig) -> None:
    rig.api.events_answer = lambda: httpx.Response(200, json={"events": "none"})
    await rig.poll(phase="Running")
    with capture_logs() as logs:
        await rig.poll(phase="Failed")
    await wait_for(lambda: len(rig.sink.received) == 2)
    assert rig.received("phase_changed")[0]["reasons"] == []
    assert [e["result"] for e in logs if e["event"] == "reasons_unavailable"] == [
        "invalid_response"
    ]


async def test_a_hanging_events_endpoint_delays_the_transition_by_at_most_the_timeout(
    tmp_path: Path,
) -> None:
    async with make_rig(tmp_path, timeout=0.3) as rig:
        await rig.poll(phase="Running")
        rig.api.events_delay = 30.0
        started = time.monotonic()
        with capture_logs() as logs:
            await rig.poll(phase="Failed")
        assert time.monotonic() - started < 2.0
        await wait_for(lambda: len(rig.sink.received) == 2)
        assert rig.received("phase_changed")[0]["reasons"] == []
        assert [e["result"] for e in logs if e["event"] == "reasons_unavailable"] == ["timeout"]


async def test_an_unchanged_body_makes_no_events_call(rig: Rig) -> None:
    await rig.poll(phase="Running")
    await rig.poll(phase="Failed")
    assert len(rig.api.events_requests) == 2
    for _ in range(3):
        await rig.poll(phase="Failed")
    assert len(rig.api.events_requests) == 2


async def test_a_job_first_seen_failed_or_completing_normally_makes_no_events_call(
    rig: Rig,
) -> None:
    await rig.poll(phase="Running", records=[RUN0])
    await rig.poll(
        phase="Completed",
        secondary_phase="Completed",
        records=[{**RUN0, "end_at": 500, "end_reason": "job completed"}],
    )
    await wait_for(lambda: len(rig.sink.received) == 4)
    assert rig.api.events_requests == []
    assert all("reasons" not in e["data"] for e in rig.sink.received)
    (ended,) = rig.received("run_ended")
    assert ended["recover_records"] == []


async def test_a_run_ended_with_a_recovery_carries_reasons_and_its_recover_records(
    rig: Rig,
) -> None:
    rig.api.events["Warning"] = [ev("Warning", "2022-11-26T16:00:00+08:00", "node NotReady")]
    await rig.poll(records=[RUN0])
    await rig.poll(records=[RUN0_FAULT, RUN1])
    await wait_for(lambda: len(rig.sink.received) == 3)
    (ended,) = rig.received("run_ended")
    assert ended["reasons"] == [
        {"level": "Warning", "time": "2022-11-26T16:00:00+08:00", "message": "node NotReady"}
    ]
    assert ended["recover_records"] == [RECOVERED]
    (started,) = rig.received("run_started")
    assert "reasons" not in started
    assert rig.state().recoveries == {"pod_reschedule": {"success": 1}}


async def test_reasons_disabled_make_no_call_and_add_no_key(tmp_path: Path) -> None:
    async with make_rig(tmp_path, ReasonSettings(enabled=False)) as rig:
        await rig.poll(phase="Running")
        await rig.poll(phase="Failed")
        await wait_for(lambda: len(rig.sink.received) == 2)
        assert rig.api.events_requests == []
        assert "reasons" not in rig.received("phase_changed")[0]


async def test_reasons_max_bounds_each_call_and_the_attached_list(tmp_path: Path) -> None:
    async with make_rig(tmp_path, ReasonSettings(max=2)) as rig:
        rig.api.events["Error"] = [
            ev("Error", f"2022-11-26T16:0{i}:00+08:00", f"e{i}") for i in range(9, 0, -1)
        ]
        await rig.poll(phase="Running")
        await rig.poll(phase="Failed")
        await wait_for(lambda: len(rig.sink.received) == 2)
        assert {r.url.params["limit"] for r in rig.api.events_requests} == {"2"}
        assert [r["message"] for r in rig.received("phase_changed")[0]["reasons"]] == ["e9", "e8"]


# -- the merge rule ---------------------------------------------------------------------------


def test_newest_reasons_sorts_by_time_across_offsets_and_puts_unreadable_times_last() -> None:
    errors = [ev("Error", "garbled", "?"), ev("Error", "2022-11-26T16:00:00+08:00", "a")]
    warnings = [ev("Warning", "2022-11-26T08:00:00Z", "b"), ev("Warning", "", "c")]
    assert [r["message"] for r in newest_reasons([errors, warnings], 10)] == ["a", "b", "?", "c"]
    assert newest_reasons([errors, warnings], 1) == [
        {"level": "Error", "time": "2022-11-26T16:00:00+08:00", "message": "a"}
    ]
    assert newest_reasons([], 5) == []


# -- the client call --------------------------------------------------------------------------


async def events_call(answer: httpx.Response, **kw: Any) -> list[dict[str, str]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer

    transport = httpx.MockTransport(handler)
    async with ModelArtsClient("https://ma.test", "p1", transport=transport) as client:
        result = await client.get_job_events("job-1", level="Error", **kw)
    (request,) = seen
    assert request.method == "GET" and request.url.path == "/v2/p1/training-jobs/job-1/events"
    return result


async def test_get_job_events_asks_for_the_newest_of_one_level_and_returns_them() -> None:
    body = {"total": 1, "events": [ev("Error", "2022-11-26T16:03:41+08:00", "failed.")]}
    assert await events_call(httpx.Response(200, json=body), limit=3) == body["events"]


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.Response(429, json={"error_code": "APIG.0308", "error_msg": "slow"}), RateLimited),
        (httpx.Response(401, json={"error_code": "APIG.0301", "error_msg": "no"}), AuthError),
        (httpx.Response(200, content=b"<html>"), InvalidResponse),
        (httpx.Response(200, json=[1]), InvalidResponse),
        (httpx.Response(200, json={"events": [{"message": 1}]}), InvalidResponse),
    ],
    ids=["throttled", "auth", "not-json", "not-an-object", "wrong-field-type"],
)
async def test_get_job_events_maps_failures_like_get_job(
    answer: httpx.Response, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await events_call(answer, limit=5)


async def test_get_job_events_clamps_the_limit_to_what_the_api_accepts() -> None:
    limits: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        limits.append(request.url.params["limit"])
        return httpx.Response(200, json={"events": []})

    async with ModelArtsClient(
        "https://ma.test", "p1", transport=httpx.MockTransport(handler)
    ) as c:
        for limit in (0, 7, 500):
            await c.get_job_events("job-1", level="Warning", limit=limit)
    assert limits == ["1", "7", "100"]


# -- persistence -------------------------------------------------------------------------------


def test_recoveries_last_reason_and_recover_records_survive_the_store(tmp_path: Path) -> None:
    state, _ = observe(None, parse_job(job_doc(records=[RUN0_FAULT, RUN1])), 1.0)
    reason = {"level": "Error", "time": "2022-11-26T16:03:41+08:00", "message": "OOM"}
    state = dataclasses.replace(state, last_reason=reason)
    store = Store(tmp_path / "state.db")
    try:
        store.commit(state, [], 1.0)
        loaded = store.load_states()[SEED_ID]
    finally:
        store.close()
    assert loaded == state
    assert loaded.recoveries == {"pod_reschedule": {"success": 1}}
    assert loaded.snapshot is not None
    assert loaded.snapshot.running_records[0].recover_records[0].reason == "node NotReady"
