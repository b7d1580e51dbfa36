"""poller.py with the job book: one poll of one job, end to end over a mock transport, a real
store and sinks."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from structlog.testing import capture_logs

from monitor.config.settings import PollSettings, RetrySettings
from monitor.core.state import JobState
from monitor.daemon.group_commit import MAX_BATCH
from monitor.daemon.handoff import Failed
from monitor.errors import StateError
from monitor.modelarts import client as client_module
from tests.conftest import SEED_ID, job_doc, wait_for
from tests.unit.daemon.conftest import LABELS, NOW, JobPath, job_path, sample

OTHER_ID = "7c0d2f7e-0000-4000-8000-000000000002"


class Script:
    """The fake API: each request takes the next scripted response for its job."""

    def __init__(self) -> None:
        self.responses: dict[str, deque[httpx.Response]] = {}
        self.requests: list[httpx.Request] = []

    def push(self, job_id: str, *responses: httpx.Response) -> None:
        self.responses.setdefault(job_id, deque()).extend(responses)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        job_id = request.url.path.rsplit("/", 1)[-1]
        queue = self.responses.get(job_id)
        assert queue, f"no scripted response left for {request.url.path}"
        return queue.popleft()


def ok(**kw: Any) -> httpx.Response:
    return httpx.Response(200, json=job_doc(**kw))


def not_found() -> httpx.Response:
    return httpx.Response(
        400, json={"error_code": "ModelArts.2775", "error_msg": "The training job does not exist."}
    )


@dataclass
class Rig(JobPath):
    script: Script = field(default_factory=lambda: Script())

    async def poll(self, job_id: str = SEED_ID, *responses: httpx.Response) -> None:
        """One poll that happens: the clock is moved past any back-off first."""
        view = self.book.view(job_id)
        if view is not None:
            self.clock.now = max(self.clock.now, view.health.not_before)
        self.script.push(job_id, *responses)
        await self.poller.poll(job_id)
        self.clock.now += 30

    async def drained(self, timeout: float = 5.0) -> None:
        """Wait (bounded) until the sink has taken and acknowledged everything committed."""
        deadline = time.monotonic() + timeout
        while await self.store.call(self.store.outbox_size) != 0:
            if time.monotonic() > deadline:
                raise AssertionError("the outbox was not drained")
            await asyncio.sleep(0.01)

    def sample(self, name: str, **labels: str) -> float | None:
        return sample(self.scrape(), name, **labels)

    def scrape(self) -> str:
        return (self.series.render() + self.metrics.render()).decode()

    def job_lines(self, job_id: str = SEED_ID) -> list[str]:
        return [
            line
            for line in self.series.render().decode().splitlines()
            if line.startswith("modelarts_training_job_") and f'job_id="{job_id}"' in line
        ]


@contextlib.asynccontextmanager
async def make_rig(tmp_path: Path, poll: PollSettings | None = None) -> AsyncIterator[Rig]:
    script = Script()
    async with job_path(tmp_path, script.handler, poll=poll) as path:
        yield Rig(**vars(path), script=script)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with make_rig(tmp_path) as r:
        yield r


def events_named(logs: Iterable[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    return [e for e in logs if e["event"] == name]


async def test_first_poll_emits_discovered_exports_up_and_persists_the_state(rig: Rig) -> None:
    await rig.poll(SEED_ID, ok(phase="Pending", secondary_phase="Queuing"))

    await wait_for(lambda: len(rig.sink.received) == 1)
    event = rig.sink.received[0]
    assert event["type"] == "modelarts.job.discovered"
    assert event["data"]["phase"] == "Pending" and event["data"]["secondary_phase"] == "Queuing"
    assert event["data"]["labels"] == LABELS

    assert rig.sample("modelarts_monitor_up", job_id=SEED_ID, team="nlp") == 1
    assert rig.sample("modelarts_monitor_last_poll_success_timestamp_seconds") == NOW
    assert rig.sample("modelarts_training_job_phase", job_id=SEED_ID, phase="Pending") == 1
    assert rig.sample("modelarts_monitor_polls_total", result="ok") == 1
    assert rig.sample("modelarts_monitor_events_total", type="discovered") == 1
    assert rig.sample("modelarts_monitor_jobs") == 1

    stored = await rig.store.call(rig.store.load_states)
    assert stored == {SEED_ID: rig.state()}
    assert stored[SEED_ID].snapshot is not None
    assert stored[SEED_ID].snapshot.phase == "Pending"
    assert rig.ready()[0]


async def test_a_phase_change_emits_phase_changed_with_the_configured_labels(rig: Rig) -> None:
    await rig.poll(SEED_ID, ok(phase="Pending", secondary_phase="Queuing"))
    await rig.poll(SEED_ID, ok(phase="Running", secondary_phase="Queuing"))

    await wait_for(lambda: len(rig.sink.received) == 2)
    assert rig.sink.types() == ["discovered", "phase_changed"]
    changed = rig.sink.received[1]
    assert changed["data"]["from"] == "Pending" and changed["data"]["to"] == "Running"
    assert changed["data"]["labels"] == LABELS
    assert changed["subject"] == SEED_ID
    assert changed["source"] == "modelarts-monitor/proj"
    assert rig.sample("modelarts_training_job_phase", phase="Running") == 1
    assert rig.sample("modelarts_training_job_phase", phase="Pending") == 0


async def test_an_unchanged_job_emits_nothing_more(rig: Rig) -> None:
    for _ in range(3):
        await rig.poll(SEED_ID, ok(phase="Running"))
    await wait_for(lambda: len(rig.sink.received) == 1)
    await rig.drained()  # nothing else is queued
    assert rig.sink.types() == ["discovered"]
    assert rig.sample("modelarts_monitor_polls_total", result="ok") == 3


async def test_failed_polls_keep_the_job_series_and_only_mark_the_job_down(rig: Rig) -> None:
    await rig.poll(SEED_ID, ok(phase="Running"))
    await wait_for(lambda: len(rig.sink.received) == 1)
    before = rig.job_lines()
    assert before

    failures = [
        (httpx.Response(500, text="internal error"), "server_error"),
        (httpx.Response(200, content=b"<html>not json"), "invalid_response"),
        (httpx.Response(200, json=job_doc(phase=5)), "invalid_response"),  # wrong type
        (httpx.Response(200, json=job_doc(records={"not": "a list"})), "invalid_response"),
    ]
    for response, result in failures:
        counted = rig.sample("modelarts_monitor_polls_total", result=result)
        assert counted is not None
        await rig.poll(SEED_ID, response)
        assert rig.job_lines() == before, f"{result} changed the job series"
        assert rig.sample("modelarts_monitor_up", job_id=SEED_ID) == 0
        assert rig.sample("modelarts_monitor_polls_total", result=result) == counted + 1
        # The last success stays the first poll's time.
        assert rig.sample("modelarts_monitor_last_poll_success_timestamp_seconds") == NOW

    assert rig.sample("modelarts_monitor_polls_total", result="server_error") == 1
    assert rig.sample("modelarts_monitor_polls_total", result="invalid_response") == 3
    assert rig.sink.types() == ["discovered"]
    await rig.drained()  # nothing new was queued
    assert rig.state().snapshot is not None
    assert rig.state().snapshot.phase == "Running"


async def test_each_distinct_poll_error_is_logged_once_and_recovery_once(rig: Rig) -> None:
    await rig.poll(SEED_ID, ok())
    with capture_logs() as logs:
        await rig.poll(SEED_ID, httpx.Response(500, text="internal error"))
        await rig.poll(SEED_ID, httpx.Response(500, text="internal error"))
        await rig.poll(SEED_ID, httpx.Response(200, content=b"not json"))
        await rig.poll(SEED_ID, httpx.Response(200, content=b"not json"))
        await rig.poll(SEED_ID, ok())
        await rig.poll(SEED_ID, ok())

    failed = events_named(logs, "poll_failed")
    assert [e["result"] for e in failed] == ["server_error", "invalid_response"]
    assert "internal error" in failed[0]["error"]
    assert all(e["log_level"] == "warning" for e in failed)
    assert len(events_named(logs, "poll_recovered")) == 1
    assert rig.sample("modelarts_monitor_up", job_id=SEED_ID) == 1
    assert rig.sample("modelarts_monitor_polls_total", result="server_error") == 2


async def test_a_job_reported_gone_emits_not_found_once_and_is_down(rig: Rig) -> None:
    await rig.poll(SEED_ID, ok(phase="Running"))
    for _ in range(3):
        await rig.poll(SEED_ID, not_found())

    await wait_for(lambda: len(rig.sink.received) == 2)
    await rig.drained()  # nothing else is queued
    assert rig.sink.types() == ["discovered", "not_found"]
    assert rig.sink.received[1]["data"]["last_phase"] == "Running"
    assert rig.sample("modelarts_monitor_up", job_id=SEED_ID) == 0
    assert rig.sample("modelarts_monitor_polls_total", result="not_found") == 3
    assert rig.sample("modelarts_monitor_events_total", type="not_found") == 1
    assert rig.state().gone
    stored = await rig.store.call(rig.store.load_states)
    assert stored[SEED_ID].gone


async def test_a_poll_whose_commit_fails_did_not_happen_and_the_next_commit_sends_the_same_events(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All or nothing: the database refused, so memory, /metrics and the sinks stay at the last
    good poll; the poll counts as state_error, readiness says why, and once the database works
    the same transitions are committed with the same ids."""
    await rig.poll(SEED_ID, ok(phase="Pending"))
    await wait_for(lambda: len(rig.sink.received) == 1)
    attempted: list[Mapping[str, Any]] = []

    def broken_commit(
        state: JobState, events: Iterable[Mapping[str, Any]], now: float, target: str = ""
    ) -> None:
        attempted.extend(events)
        raise StateError(f"state database {rig.store.path}: cannot commit: disk I/O error")

    monkeypatch.setattr(rig.store, "commit", broken_commit)
    with capture_logs() as logs:
        await rig.poll(SEED_ID, ok(phase="Running"))
        await rig.poll(SEED_ID, ok(phase="Running"))

    assert [str(e["type"]) for e in attempted] == ["modelarts.job.phase_changed"] * 2
    assert attempted[0]["id"] == attempted[1]["id"]
    ready, reason = rig.ready()
    assert not ready
    assert "state database" in reason and "disk I/O error" in reason
    assert len(events_named(logs, "state_commit_failed")) == 1  # same error: logged once
    assert events_named(logs, "poll_failed") == [], "the database's failure is logged once"
    state = rig.state()
    assert state is not None and state.snapshot is not None
    assert state.snapshot.phase == "Pending"
    assert rig.sample("modelarts_training_job_phase", phase="Pending") == 1
    assert rig.sample("modelarts_training_job_phase", phase="Running") == 0
    assert rig.sample("modelarts_monitor_up", job_id=SEED_ID) == 0
    assert rig.sample("modelarts_monitor_polls_total", result="state_error") == 2
    assert rig.health().failures == 0, "the monitor's own failure does not back the job off"
    await rig.drained()  # no event was queued
    assert rig.sink.types() == ["discovered"]

    monkeypatch.undo()
    with capture_logs() as logs:
        await rig.poll(SEED_ID, ok(phase="Running"))
    await wait_for(lambda: len(rig.sink.received) == 2)
    assert rig.sink.received[1]["id"] == attempted[0]["id"]
    assert rig.ready()[0]
    assert len(events_named(logs, "state_commit_recovered")) == 1
    assert rig.sample("modelarts_training_job_phase", phase="Running") == 1
    assert rig.sample("modelarts_monitor_up", job_id=SEED_ID) == 1
    stored = await rig.store.call(rig.store.load_states)
    assert stored[SEED_ID].snapshot is not None
    assert stored[SEED_ID].snapshot.phase == "Running"


@pytest.mark.parametrize("stage", ["observe", "render", "commit"])
async def test_a_failure_after_the_request_is_that_polls_failure_and_changes_nothing(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    """A bug (or a value the edge let through) at any stage after the request costs that
    poll: counted as invalid_response, the job down, its series and state as the last good
    poll left them, nothing committed, and the next good poll goes on as if it never was."""
    import monitor.daemon.jobs as jobs_module

    await rig.poll(SEED_ID, ok(phase="Pending"))
    before = rig.job_lines()

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise OverflowError("integer too large to convert to float")

    target = {"observe": (jobs_module, "observe"), "render": (rig.series, "prepare")}
    if stage == "commit":
        monkeypatch.setattr(rig.store, "commit", boom)
    else:
        monkeypatch.setattr(*target[stage], boom)
    with capture_logs() as logs:
        await rig.poll(SEED_ID, ok(phase="Running"))  # must not raise
        await rig.poll(SEED_ID, ok(phase="Running"))
    assert rig.job_lines() == before
    state = rig.state()
    assert state is not None and state.snapshot is not None and state.snapshot.phase == "Pending"
    assert rig.sample("modelarts_monitor_polls_total", result="invalid_response") == 2
    assert rig.sample("modelarts_monitor_up", job_id=SEED_ID) == 0
    failed = events_named(logs, "poll_apply_failed")
    assert len(failed) == 1 and failed[0]["exc_info"], "logged once, with its traceback"
    assert "OverflowError" in failed[0]["error"]
    stored = await rig.store.call(rig.store.load_states)
    assert stored[SEED_ID].snapshot is not None and stored[SEED_ID].snapshot.phase == "Pending"

    monkeypatch.undo()
    await rig.poll(SEED_ID, ok(phase="Running"))
    await wait_for(lambda: rig.sink.types() == ["discovered", "phase_changed"])
    assert rig.sample("modelarts_training_job_phase", phase="Running") == 1


async def test_a_watched_job_never_polled_is_exported_down_and_blocks_readiness(
    rig: Rig,
) -> None:
    rig.book.watch(OTHER_ID, {"team": "cv"})
    assert rig.sample("modelarts_monitor_up", job_id=OTHER_ID, team="cv") == 0
    assert rig.sample("modelarts_monitor_up", job_id=SEED_ID) == 0
    assert rig.job_lines(OTHER_ID) == []  # nothing known: no job series, not zeros
    assert rig.sample("modelarts_monitor_jobs") == 2
    assert not rig.ready()[0]
    assert "first round: 2 of 2 jobs not polled yet" in rig.ready()[1]

    await rig.poll(SEED_ID, ok())
    assert "first round: 1 of 2 jobs not polled yet" in rig.ready()[1]
    await rig.poll(OTHER_ID, httpx.Response(503, text="busy"))
    assert rig.ready()[0]  # polled, even if that poll failed

    rig.book.unwatch(OTHER_ID)
    assert OTHER_ID not in rig.scrape()
    assert rig.sample("modelarts_monitor_jobs") == 1
    assert rig.sample("modelarts_monitor_up", job_id=SEED_ID) == 1


async def test_an_unwatched_job_is_not_polled(rig: Rig) -> None:
    rig.book.unwatch(SEED_ID)
    await rig.poller.poll(SEED_ID)
    assert rig.script.requests == []


async def test_an_unexpected_exception_in_a_poll_is_counted_logged_and_contained(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def crash(job_id: str) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(rig.client, "get_job_body", crash)
    with capture_logs() as logs:
        await rig.poller.poll(SEED_ID)  # must not raise

    assert rig.sample("modelarts_monitor_polls_total", result="invalid_response") == 1
    assert rig.sample("modelarts_monitor_up", job_id=SEED_ID) == 0
    crashed = events_named(logs, "poll_crashed")
    assert len(crashed) == 1 and crashed[0]["log_level"] == "error"
    failed = events_named(logs, "poll_failed")
    assert len(failed) == 1 and "RuntimeError: boom" in failed[0]["error"]
    assert rig.ready()[0]


# -- back-off and lifecycle ---------------------------------------------------------------------


@pytest.fixture
async def life(tmp_path: Path) -> AsyncIterator[tuple[Rig, list[tuple[str, float | None, bool]]]]:
    """A rig with explicit lifecycle settings and a record of every (re)scheduling request."""
    settings = PollSettings(
        interval=30,
        terminal_interval=300,
        terminal_retention=3600,
        not_found_interval=120,
        not_found_retention=600,
        retry=RetrySettings(max_backoff=240),
    )
    async with make_rig(tmp_path, settings) as rig:
        yield rig, rig.scheduled


async def test_consecutive_failures_space_out_the_polls_up_to_the_cap(life: Any) -> None:
    rig, _ = life
    waits = []
    for _ in range(6):
        rig.script.push(SEED_ID, httpx.Response(503, text="busy"))
        await rig.poller.poll(SEED_ID)
        waits.append(rig.health().not_before - rig.clock.now)
        # A poll before the back-off has passed sends nothing.
        requests = len(rig.script.requests)
        rig.clock.now = rig.health().not_before - 1
        await rig.poller.poll(SEED_ID)
        assert len(rig.script.requests) == requests
        rig.clock.now += 1
    assert waits[1] > 30, "after the second failure the job waits longer than its interval"
    assert all(w <= 240 for w in waits), "never longer than poll.retry.max_backoff"
    assert max(waits[3:]) >= 120, "the wait keeps growing towards the cap"
    rig.script.push(SEED_ID, ok())
    await rig.poller.poll(SEED_ID)
    assert rig.health().failures == 0
    assert rig.health().not_before == 0


async def test_a_terminal_job_is_polled_slower_then_retired_with_its_series(life: Any) -> None:
    rig, scheduled = life
    await rig.poll(SEED_ID, ok(phase="Running"))
    await rig.poll(SEED_ID, ok(phase="Completed", secondary_phase="Completed"))
    assert scheduled[-1] == (SEED_ID, 300, False)
    assert rig.job_lines(), "still exported while within terminal_retention"
    rig.clock.now += 3600
    await rig.poll(SEED_ID, ok(phase="Completed", secondary_phase="Completed"))
    assert scheduled[-1] == (SEED_ID, None, False)
    assert rig.job_lines() == []
    assert rig.sample("modelarts_monitor_up", job_id=SEED_ID) is None
    assert rig.sample("modelarts_monitor_jobs") == 0
    assert rig.ready()[0], "a retired job does not hold readiness"


async def test_a_retired_job_stays_retired_after_a_restart(life: Any) -> None:
    rig, _ = life
    await rig.poll(SEED_ID, ok(phase="Failed", secondary_phase="Failed"))
    rig.clock.now += 7200
    assert rig.book.watch(SEED_ID, LABELS, 30) is False
    assert rig.job_lines() == []


async def test_a_gone_job_is_polled_slower_dropped_after_retention_and_resumes(life: Any) -> None:
    rig, scheduled = life
    await rig.poll(SEED_ID, ok(phase="Running"))
    await rig.poll(SEED_ID, not_found())
    assert scheduled[-1] == (SEED_ID, 120, False)
    assert rig.job_lines(), "the last known state stays exported within not_found_retention"
    assert rig.sample("modelarts_monitor_up", job_id=SEED_ID) == 0
    rig.clock.now += 600
    await rig.poll(SEED_ID, not_found())
    assert rig.job_lines() == []
    assert rig.sample("modelarts_monitor_up", job_id=SEED_ID) is None
    await rig.poll(SEED_ID, ok(phase="Running"))
    assert scheduled[-1] == (SEED_ID, 30, False)
    assert rig.job_lines()
    assert rig.sample("modelarts_monitor_up", job_id=SEED_ID) == 1
    await wait_for(
        lambda: [e["type"] for e in rig.sink.received].count("modelarts.job.not_found") == 1
    )


async def test_an_unchanged_body_is_not_parsed_diffed_stored_or_rendered(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = ok(phase="Running").content
    await rig.poll(SEED_ID, httpx.Response(200, content=body))
    rendered = rig.series.render()
    calls: list[str] = []
    import monitor.daemon.jobs as jobs_module
    import monitor.daemon.poller as poller_module

    monkeypatch.setattr(poller_module, "parse_job", lambda *a: calls.append("parse"))
    monkeypatch.setattr(jobs_module, "observe", lambda *a: calls.append("observe"))
    monkeypatch.setattr(rig.series, "update", lambda *a: calls.append("render"))
    monkeypatch.setattr(rig.store, "commit", lambda *a: calls.append("commit"))
    await rig.poll(SEED_ID, httpx.Response(200, content=body))
    await rig.poll(SEED_ID, httpx.Response(200, content=body))
    assert calls == []
    assert rig.sample("modelarts_monitor_polls_total", result="ok") == 3
    assert rig.sample("modelarts_monitor_up", job_id=SEED_ID) == 1
    assert rig.series.render() != rendered, "only the last-success time moved"


async def test_a_changed_body_after_unchanged_ones_is_processed(rig: Rig) -> None:
    body = ok(phase="Running").content
    await rig.poll(SEED_ID, httpx.Response(200, content=body))
    await rig.poll(SEED_ID, httpx.Response(200, content=body))
    await rig.poll(SEED_ID, ok(phase="Completed", secondary_phase="Completed"))
    await wait_for(lambda: "modelarts.job.phase_changed" in [e["type"] for e in rig.sink.received])


async def test_slow_jobs_share_a_quarter_of_the_slots_and_healthy_jobs_keep_theirs(
    tmp_path: Path,
) -> None:
    """Concurrency 4: the three jobs whose last poll timed out get one slot between them, so
    the healthy job's poll is not queued behind them."""
    release = asyncio.Event()
    inside: list[str] = []
    slow = [f"5104a1e0-0000-4000-8000-00000000000{i}" for i in range(3)]
    healthy = "4ea1f7e0-0000-4000-8000-000000000009"

    async def handler(request: httpx.Request) -> httpx.Response:
        job_id = request.url.path.rsplit("/", 1)[-1]
        inside.append(job_id)
        await release.wait()
        return httpx.Response(200, json=job_doc(job_id=job_id))

    async with job_path(tmp_path, handler, watch=False) as path:
        for job_id in [*slow, healthy]:
            path.book.watch(job_id, {})
        for job_id in slow:
            await path.book.apply_poll(job_id, Failed("timeout", "timed out"), slow=True)
        path.clock.now += 3600  # past every back-off
        polls = [asyncio.create_task(path.poller.poll(j)) for j in [*slow, healthy]]
        await wait_for(lambda: healthy in inside and len(inside) >= 2)
        for _ in range(20):  # every chance for another slow job to get in
            await asyncio.sleep(0)
        assert len([j for j in inside if j in slow]) == 1
        release.set()
        await asyncio.wait_for(asyncio.gather(*polls), 5)
        assert sorted(inside) == sorted([*slow, healthy])
        assert not any(path.health(j).slow for j in slow), "a quick poll leaves the lane"


def answering(requested: list[str]) -> Callable[[httpx.Request], httpx.Response]:
    """The fake API for many jobs: each detail GET answered with its job's document, and its
    job noted in ``requested``."""

    def handler(request: httpx.Request) -> httpx.Response:
        job_id = request.url.path.rsplit("/", 1)[-1]
        requested.append(job_id)
        return httpx.Response(200, json=job_doc(job_id=job_id))

    return handler


def held_applies(
    path: JobPath, jobs: list[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[asyncio.Event, list[str]]:
    """Watch ``jobs`` and hold every apply until the returned event is set (a first round's
    polls waiting for their batch's commit); the list notes each job as its apply begins."""
    release, applying = asyncio.Event(), list[str]()
    for job_id in jobs:
        path.book.watch(job_id, {})
    apply = path.book.apply_poll

    async def held(job_id: str, *args: Any, **kwargs: Any) -> str:
        applying.append(job_id)
        await release.wait()
        return await apply(job_id, *args, **kwargs)

    monkeypatch.setattr(path.book, "apply_poll", held)
    return release, applying


async def test_a_poll_gives_its_slot_back_before_its_outcome_is_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concurrency 4: four polls whose outcomes wait to be applied (a first round's polls
    waiting for their batch's commit) leave the slots to the next poll's request, so the API
    is not left idle while they wait."""
    jobs = [f"6a1b0000-0000-4000-8000-00000000000{i}" for i in range(5)]
    requested: list[str] = []
    async with job_path(tmp_path, answering(requested), watch=False) as path:
        release, applying = held_applies(path, jobs, monkeypatch)
        polls = [asyncio.create_task(path.poller.poll(j)) for j in jobs[:4]]
        await wait_for(lambda: len(applying) == 4)
        polls.append(asyncio.create_task(path.poller.poll(jobs[4])))
        await wait_for(lambda: jobs[4] in requested)
        release.set()
        await asyncio.wait_for(asyncio.gather(*polls), 5)
        assert all(path.health(j).up for j in jobs)


async def test_polls_past_their_request_are_bounded_by_the_slots_and_one_commit_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concurrency 4: with every outcome waiting to be applied, at most 4 + ``MAX_BATCH`` polls
    have fetched their body; the rest wait before their request, so a first round cannot
    hold thousands of bodies ahead of their commits."""
    bound = 4 + MAX_BATCH
    jobs = [f"6a1b0000-0000-4000-8000-{i:012d}" for i in range(bound + 3)]
    requested: list[str] = []
    async with job_path(tmp_path, answering(requested), watch=False) as path:
        release, _ = held_applies(path, jobs, monkeypatch)
        polls = [asyncio.create_task(path.poller.poll(j)) for j in jobs]
        await wait_for(lambda: len(requested) == bound)
        for _ in range(20):  # every chance for another request to go out
            await asyncio.sleep(0)
        assert len(requested) == bound
        release.set()
        await asyncio.wait_for(asyncio.gather(*polls), 10)
        assert sorted(requested) == sorted(jobs)


async def test_a_job_the_book_no_longer_watches_frees_its_prepared_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each client keeps a job's prepared detail GET only while the book watches the job: when
    the cache is next checked, an unwatched job's entry goes and the watched jobs' stay."""
    monkeypatch.setattr(client_module, "_MIN_SWEEP", 2)
    third = "7c0d2f7e-0000-4000-8000-000000000003"
    async with make_rig(tmp_path) as rig:
        for job in (OTHER_ID, third):
            rig.book.watch(job, LABELS)
        await rig.poll(SEED_ID, ok(job_id=SEED_ID))
        await rig.poll(OTHER_ID, ok(job_id=OTHER_ID))
        rig.book.unwatch(SEED_ID)
        await rig.poll(third, ok(job_id=third))  # finds the cache full: checked

        assert rig.client.prepared_jobs() == {OTHER_ID, third}


async def test_a_steady_state_poll_asks_the_book_for_the_jobs_view_once(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A view is built afresh on each call (the job's labels merged with its target's), and a
    large monitor polls every job every interval: the poll takes it once and passes it down."""
    body = ok(phase="Running").content
    await rig.poll(SEED_ID, httpx.Response(200, content=body))
    views: list[str] = []
    view = rig.book.view
    monkeypatch.setattr(rig.book, "view", lambda job_id: views.append(job_id) or view(job_id))
    rig.script.push(SEED_ID, httpx.Response(200, content=body))
    await rig.poller.poll(SEED_ID)
    assert views == [SEED_ID]
    assert rig.sample("modelarts_monitor_polls_total", result="ok") == 2


async def test_a_polls_log_lines_name_its_job_and_nothing_stays_bound_after_it(
    rig: Rig,
) -> None:
    """What the caller had bound is back after the poll, and the poll's own job id is gone."""
    structlog.contextvars.bind_contextvars(job_id="the-callers", round="r1")
    try:
        with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
            await rig.poll(SEED_ID, httpx.Response(500, text="internal error"))
        assert [(e["event"], e["job_id"]) for e in logs] == [("poll_failed", SEED_ID)]
        assert structlog.contextvars.get_contextvars() == {"job_id": "the-callers", "round": "r1"}
    finally:
        structlog.contextvars.clear_contextvars()
