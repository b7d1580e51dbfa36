"""Targets in the running daemon: one client per target (its endpoint, project, throttle), one
book, shared slots; a reload changes a target's jobs and labels but waits for a restart for
its endpoint or credentials. The API is a mock transport that answers by host."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from structlog.testing import capture_logs

from monitor.config.loading import parse_settings
from monitor.config.targets import targets_of
from monitor.daemon.app import App
from monitor.daemon.targets import Pauses, admitted, restart_reasons, running_targets
from monitor.daemon.wiring import TargetThrottle
from tests.conftest import job_doc, wait_for
from tests.unit.daemon.conftest import Clock, ListSink, sample

EAST_JOB, WEST_JOB, FOUND = "job-east-1", "job-west-1", "job-east-found"
PROJECTS = {"east.test": "proj-east", "west.test": "proj-west"}


class Regions:
    """Two ModelArts endpoints behind one mock transport; east can be told to answer 429."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        """(host, path) of every request, in order."""
        self.throttle_east = False

    def handler(self, request: httpx.Request) -> httpx.Response:
        host, path = request.url.host, request.url.path
        self.requests.append((host, path))
        if path.endswith("/training-job-searches"):
            default = json.loads(request.content)["workspace_id"] == "0"
            items = [job_doc(job_id=FOUND, name="found")] if host == "east.test" and default else []
            return httpx.Response(200, json={"items": items, "total": len(items)})
        if host == "east.test" and self.throttle_east:
            body = {"error_code": "APIG.0308", "error_msg": "throttled"}
            return httpx.Response(429, json=body, headers={"Retry-After": "30"})
        job_id = path.rsplit("/", 1)[-1]
        return httpx.Response(200, json=job_doc(job_id=job_id, name=f"n-{job_id}"))

    def hosts_asked_for(self, job_id: str) -> set[tuple[str, str]]:
        """(host, project) of the detail requests for ``job_id``."""
        return {(h, p.split("/")[2]) for h, p in self.requests if p.endswith(f"/{job_id}")}


def document(tmp_path: Path, **poll: Any) -> dict[str, Any]:
    return {
        "poll": {"interval": "1h", "retry": {"max_backoff": "1m"}, **poll},  # polled by hand
        "targets": [
            {
                "name": "east",
                "api": {"endpoint": "https://east.test", "project_id": "proj-east"},
                "auth": {"type": "none"},
                "labels": {"region": "r-east"},
                "jobs": [{"id": EAST_JOB, "labels": {"team": "nlp"}}],
                "discovery": {"interval": "1h"},
            },
            {
                "name": "west",
                "api": {"endpoint": "https://west.test", "project_id": "proj-west"},
                "auth": {"type": "none"},
                "jobs": [{"id": WEST_JOB}],
            },
        ],
        "state": {"path": str(tmp_path / "state.db")},
        "server": {"listen": "127.0.0.1:0"},
        "usage": {"enabled": False},
    }


def write(tmp_path: Path, doc: dict[str, Any]) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return str(path)


@pytest.fixture
async def two_regions(tmp_path: Path) -> AsyncIterator[tuple[App, Regions, ListSink, Clock]]:
    regions, sink, clock = Regions(), ListSink(), Clock()
    doc = document(tmp_path, concurrency=1)
    app = App(
        parse_settings(doc, env={}),
        sinks=[sink],
        transport=httpx.MockTransport(regions.handler),
        clock=clock,
        config_path=write(tmp_path, doc),
    )
    await app.start()
    try:
        yield app, regions, sink, clock
    finally:
        await app.stop(grace=1.0)


def metrics(app: App) -> str:
    return b"".join(app.render_metrics()).decode()


async def test_each_target_polls_its_own_endpoint_and_project_and_labels_its_jobs(
    two_regions: tuple[App, Regions, ListSink, Clock],
) -> None:
    app, regions, sink, _ = two_regions
    await wait_for(lambda: FOUND in app.book)  # east's discovery found it at start
    for job_id in (EAST_JOB, WEST_JOB, FOUND):
        await app.poller.poll(job_id)

    assert regions.hosts_asked_for(EAST_JOB) == {("east.test", "proj-east")}
    assert regions.hosts_asked_for(FOUND) == {("east.test", "proj-east")}
    assert regions.hosts_asked_for(WEST_JOB) == {("west.test", "proj-west")}
    text = metrics(app)
    east = {"target": "east", "region": "r-east"}
    assert sample(text, "modelarts_monitor_up", job_id=EAST_JOB, team="nlp", **east) == 1
    assert sample(text, "modelarts_monitor_up", job_id=FOUND, **east) == 1
    assert sample(text, "modelarts_monitor_up", job_id=WEST_JOB, target="west") == 1
    info = "modelarts_training_job_info"
    assert sample(text, info, job_id=FOUND, project_id="proj-east", **east) == 1
    assert sample(text, info, job_id=WEST_JOB, project_id="proj-west", target="west") == 1
    # Counted by target (the scheduler's first polls come on top of the test's own).
    assert (sample(text, "modelarts_monitor_polls_total", target="east", result="ok") or 0) >= 2
    assert (sample(text, "modelarts_monitor_polls_total", target="west", result="ok") or 0) >= 1
    assert 'modelarts_monitor_polls_total{result="ok"}' not in text

    await wait_for(lambda: len(sink.received) == 3)
    by_job = {str(e["subject"]): e for e in sink.received}
    assert by_job[EAST_JOB]["source"] == "modelarts-monitor/proj-east"
    assert by_job[FOUND]["source"] == "modelarts-monitor/proj-east"
    assert by_job[WEST_JOB]["source"] == "modelarts-monitor/proj-west"
    data: Any = by_job[EAST_JOB]["data"]
    assert data["labels"] == {"target": "east", "region": "r-east", "team": "nlp"}


async def test_a_poll_of_a_target_in_a_429_pause_waits_without_holding_the_shared_slot(
    two_regions: tuple[App, Regions, ListSink, Clock],
) -> None:
    """One slot (``poll.concurrency: 1``): were east's paused poll to hold it while its
    throttle waits out Retry-After (30 s), west could not poll at all meanwhile."""
    app, regions, _, clock = two_regions
    regions.throttle_east = True
    await app.poller.poll(EAST_JOB)  # 429: east's throttle pauses for 30 s
    clock.now += 3600  # past the job's own back-off: only the throttle's pause is left
    asked = len(regions.requests)
    waiting = asyncio.create_task(app.poller.poll(EAST_JOB))
    try:
        await asyncio.wait_for(app.poller.poll(WEST_JOB), 5)
        since = regions.requests[asked:]
        assert ("west.test", f"/v2/proj-west/training-jobs/{WEST_JOB}") in since
        assert not [r for r in since if r[0] == "east.test"], "east waits out its pause"
        assert not waiting.done()
        text = metrics(app)
        assert sample(text, "modelarts_monitor_polls_total", target="east", result="rate_limited")
        assert not sample(
            text, "modelarts_monitor_polls_total", target="west", result="rate_limited"
        )
    finally:
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)


async def test_a_reload_relabels_a_targets_jobs_at_once_but_its_endpoint_waits_for_a_restart(
    tmp_path: Path, two_regions: tuple[App, Regions, ListSink, Clock]
) -> None:
    app, regions, _, _ = two_regions
    await wait_for(lambda: FOUND in app.book)
    await app.poller.poll(FOUND)
    await app.poller.poll(EAST_JOB)
    doc = document(tmp_path, concurrency=1)
    doc["targets"][0]["labels"] = {"region": "r-east-2"}
    doc["targets"][1]["api"]["endpoint"] = "https://elsewhere.test"
    doc["targets"][1]["jobs"].append({"id": "job-west-2"})
    doc["metrics"] = {"state_sets": "sparse"}  # the series store is built once: a restart
    write(tmp_path, doc)

    with capture_logs() as logs:
        assert await app.reload()

    (warning,) = [e for e in logs if e["event"] == "reload_needs_restart"]
    assert warning["sections"] == ["metrics", "targets.west.api"]
    text = metrics(app)
    assert sample(text, "modelarts_monitor_up", job_id=EAST_JOB, region="r-east-2") == 1
    assert sample(text, "modelarts_monitor_up", job_id=EAST_JOB, region="r-east") is None
    # A discovered job is not re-watched by a reload: its target's new labels reach it too.
    info = "modelarts_training_job_info"
    assert sample(text, info, job_id=FOUND, region="r-east-2", target="east") == 1
    view = app.book.view("job-west-2")
    assert view is not None and view.target == "west"
    await app.poller.poll("job-west-2")
    assert regions.hosts_asked_for("job-west-2") == {("west.test", "proj-west")}


async def test_a_discovered_job_comes_back_after_a_restart_under_the_target_that_found_it(
    tmp_path: Path,
) -> None:
    """The second run's search finds nothing: the job is watched from the store alone."""
    regions, doc = Regions(), document(tmp_path)
    first = App(parse_settings(doc, env={}), transport=httpx.MockTransport(regions.handler))
    await first.start()
    try:
        await wait_for(lambda: FOUND in first.book)
    finally:
        await first.stop(grace=1.0)
    doc["targets"][0]["discovery"] = {"interval": "1h", "workspaces": ["empty"]}
    regions.requests.clear()
    again = App(parse_settings(doc, env={}), transport=httpx.MockTransport(regions.handler))
    await again.start()
    try:
        view = again.book.view(FOUND)
        assert view is not None and view.target == "east"
        assert view.labels == {"target": "east", "region": "r-east"}
        await again.poller.poll(FOUND)
        assert regions.hosts_asked_for(FOUND) == {("east.test", "proj-east")}
    finally:
        await again.stop(grace=1.0)


def test_a_reload_needs_a_restart_for_a_new_or_removed_target_or_its_api_or_auth() -> None:
    def targets(*names: str, **api: str) -> Any:
        doc = {
            "targets": [
                {
                    "name": n,
                    "api": {"endpoint": api.get(n, f"https://{n}.test"), "project_id": "p"},
                    "auth": {"type": "none"},
                    "labels": {"changed": "no"},
                }
                for n in names
            ]
        }
        return targets_of(parse_settings(doc, env={}))

    single = targets_of(
        parse_settings({"api": {"region": "cn-north-4", "project_id": "p"}}, env=SDK_ENV)
    )
    assert restart_reasons(targets("a", "b"), targets("a", "b")) == []
    assert restart_reasons(targets("a", "b"), targets("a", "c")) == [
        "targets.b (removed)",
        "targets.c (added)",
    ]
    assert restart_reasons(targets("a"), targets("a", a="https://new.test")) == ["targets.a.api"]
    assert restart_reasons(single, targets("a")) == ["targets"]

    running = running_targets(targets("a", "b"), targets("a", "c", a="https://new.test"))
    assert [t.name for t in running] == ["a", "b"], "c waits for a restart; b runs on"
    assert running[0].api.endpoint == "https://a.test", "the client's endpoint stays"


SDK_ENV = {"HUAWEICLOUD_SDK_AK": "AKFROMENV", "HUAWEICLOUD_SDK_SK": "sk-from-env"}


async def test_a_poll_waiting_for_its_targets_rate_limit_does_not_hold_the_shared_slot(
    tmp_path: Path,
) -> None:
    """East may send one request every 100 s; its second poll waits for that turn without the
    only slot, so west's poll goes at once."""
    regions, doc = Regions(), document(tmp_path, concurrency=1)
    doc["targets"][0]["poll"] = {"rate_limit": 0.01}
    doc["targets"][0].pop("discovery")
    app = App(parse_settings(doc, env={}), transport=httpx.MockTransport(regions.handler))
    await app.start()
    waiting: asyncio.Task[None] | None = None
    try:
        await app.poller.poll(EAST_JOB)  # the scheduler's first poll or this one takes the turn
        waiting = asyncio.create_task(app.poller.poll(EAST_JOB))
        await asyncio.wait_for(app.poller.poll(WEST_JOB), 5)
        assert regions.hosts_asked_for(WEST_JOB) == {("west.test", "proj-west")}
        assert not waiting.done(), "east's next request waits for its turn"
    finally:
        if waiting is not None:
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)
        await app.stop(grace=1.0)


async def test_a_poll_that_waited_for_a_slot_while_its_target_got_a_429_waits_without_it() -> None:
    """East has no rate limit, so its poll goes straight for the one slot (no throttle turn to
    wait for); a 429 pauses east while that poll waits (another of east's requests, say a usage
    one, was answered 429). Given the slot, the poll hands it back and waits out the pause, so
    west's poll gets the slot at once and east sends nothing into its pause."""
    slots, pauses = asyncio.Semaphore(1), Pauses()
    east = pauses.add("east", TargetThrottle(0.0, max_pause=60.0))
    pauses.add("west", TargetThrottle(0.0, max_pause=60.0))
    holder = admitted(slots, pauses, "west")
    await holder.__aenter__()  # a poll of west holds the only slot
    entered: list[str] = []

    async def poll(target: str) -> None:
        async with admitted(slots, pauses, target):
            entered.append(target)

    waiting = asyncio.create_task(poll("east"))
    try:
        # east's poll is queued for the slot (asyncio's own queue: nothing public shows it)
        await wait_for(lambda: slots._waiters is not None and len(slots._waiters) == 1)
        east.throttled(30.0)  # Retry-After: 30
        await holder.__aexit__(None, None, None)
        await asyncio.wait_for(poll("west"), 5)
        assert entered == ["west"], "east waits out its pause without the slot"
        assert not waiting.done()
    finally:
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)


async def test_a_target_free_to_send_is_admitted_without_a_throttle_turn() -> None:
    """No rate limit, no pause (the steady state of nearly every poll): the poll takes its
    slot without going through its throttle's turn, which costs every poll an await."""
    slots, pauses = asyncio.Semaphore(1), Pauses()
    throttle = pauses.add("", TargetThrottle(0.0, max_pause=60.0))
    turns: list[str] = []

    async def no_turn() -> None:
        turns.append("admit")

    throttle.admit = no_turn  # type: ignore[method-assign]
    async with admitted(slots, pauses, ""):
        assert slots.locked()
    assert turns == []
    assert not slots.locked()
