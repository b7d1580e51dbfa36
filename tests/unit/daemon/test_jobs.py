"""jobs.py: the job book applies every writer's results one job at a time, in order.

The interleavings are driven by a controlled fake: a store whose first commit stops at a chosen
point (before or after the database write) until the test lets it go, and a reasons fetch that
stops likewise; the second writer is started while the first is held there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.config.settings import PollSettings
from monitor.core.reasons import Reason
from monitor.daemon.group_commit import MAX_BATCH
from monitor.daemon.handoff import Failed, Observed
from monitor.daemon.jobs import JobBook
from monitor.delivery.dispatcher import Dispatcher
from monitor.errors import StateError
from monitor.exposition.own import MonitorMetrics
from monitor.exposition.series import SeriesStore
from monitor.modelarts.parse import parse_job
from monitor.store import Store
from tests.conftest import SEED_ID, job_doc
from tests.unit.daemon.conftest import LABELS, Clock, ListSink, sample

P = ParamSpec("P")
T = TypeVar("T")
WINDOW = 600.0
IDLE = {"worker-0": {"gpuUtil": 0.0}, "worker-1": {"gpuUtil": 0.0}}


class Hold:
    """Stops the first arrival at one point until ``release``; later arrivals pass."""

    def __init__(self, point: str | None = None) -> None:
        self.point = point
        self.reached = asyncio.Event()
        self.released = asyncio.Event()
        self._used = False

    async def at(self, point: str) -> None:
        if point == self.point and not self._used:
            self._used = True
            self.reached.set()
            await self.released.wait()


class HeldStore:
    """The book's store: a real SQLite store whose ``call`` passes through ``hold``, and
    which records how many jobs each transaction wrote."""

    def __init__(self, store: Store, hold: Hold) -> None:
        self.real, self.hold = store, hold
        self.commit, self.commit_many = store.commit, store.commit_many
        self.transactions: list[int] = []

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        self.transactions.append(len(args[0]) if fn == self.commit_many else 1)  # type: ignore[arg-type]
        await self.hold.at("before_commit")
        result = await self.real.call(fn, *args, **kwargs)
        await self.hold.at("after_commit")
        return result


@dataclass
class Book:
    book: JobBook
    store: Store
    held: HeldStore
    series: SeriesStore
    metrics: MonitorMetrics
    clock: Clock
    hold: Hold

    async def poll(self, **doc: Any) -> None:
        observation = parse_job(job_doc(**doc), SEED_ID)
        await self.book.apply_poll(
            SEED_ID, Observed(observation, repr(doc).encode()), slow=False, explain=self.explain
        )

    async def sweep(self, usage: Any = IDLE) -> None:
        await self.book.apply_usage(SEED_ID, usage, hang_window=WINDOW)

    async def explain(self, job_id: str) -> list[Reason]:
        await self.hold.at("explain")
        return [{"level": "Error", "time": "2026-12-01T00:00:00Z", "message": "OOM"}]

    def counted(self) -> dict[str, float]:
        text = self.metrics.render().decode()
        return {
            t: sample(text, "modelarts_monitor_events_total", type=t) or 0.0
            for t in ("discovered", "phase_changed", "secondary_phase_changed", "hang_suspected")
        }


@contextlib.asynccontextmanager
async def make_book(tmp_path: Path, hold: Hold | None = None) -> AsyncIterator[Book]:
    store = Store(tmp_path / "state.db")
    hold = hold or Hold()
    dispatcher = Dispatcher(store, [ListSink()])  # not started: the outbox keeps every event
    series, metrics, clock = SeriesStore(), MonitorMetrics(), Clock()
    held = HeldStore(store, hold)
    book = JobBook(
        store=held,  # type: ignore[arg-type]
        series=series,
        metrics=metrics,
        dispatcher=dispatcher,
        project_id="proj",
        poll=PollSettings(),
        schedule=lambda *a: None,
        clock=clock,
    )
    book.watch(SEED_ID, LABELS)
    try:
        yield Book(book, store, held, series, metrics, clock, hold)
    finally:
        store.close()


WRITERS = {"poll": lambda b: b.poll(phase="Failed", secondary_phase="Failed"), "sweep": Book.sweep}


@pytest.mark.parametrize(
    ("first", "point"),
    [
        ("poll", "explain"),
        ("poll", "before_commit"),
        ("poll", "after_commit"),
        ("sweep", "before_commit"),
        ("sweep", "after_commit"),
    ],
)
async def test_a_usage_sweep_and_a_detail_poll_interleaved_at_any_await_leave_one_truth(
    tmp_path: Path, first: str, point: str
) -> None:
    """While one writer of a job is held at an await point of its apply, the other arrives;
    whatever the order, memory, the database and /metrics end on the same state, every event
    is committed once, and the state holds the bookkeeping of every event emitted."""
    async with make_book(tmp_path) as b:
        await b.poll(phase="Running")  # discovered
        await b.sweep()  # the accelerators go idle
        b.clock.now += WINDOW  # the next idle sweep would report a hang
        b.hold.point = point
        second = "sweep" if first == "poll" else "poll"

        held = asyncio.create_task(WRITERS[first](b))
        await asyncio.wait_for(b.hold.reached.wait(), 5)
        arriving = asyncio.create_task(WRITERS[second](b))
        for _ in range(20):  # give the second writer every chance to run ahead
            await asyncio.sleep(0)
        b.hold.released.set()
        await asyncio.wait_for(asyncio.gather(held, arriving), 5)

        view = b.book.view(SEED_ID)
        assert view is not None and view.state is not None and view.state.snapshot is not None
        stored = (await b.store.call(b.store.load_states))[SEED_ID]
        assert stored == view.state, "memory and the database disagree"
        assert view.state.snapshot.phase == "Failed"
        text = b.series.render().decode()
        assert sample(text, "modelarts_training_job_phase", phase="Failed") == 1
        assert sample(text, "modelarts_training_job_phase", phase="Running") == 0

        counted = b.counted()
        assert counted["discovered"] == counted["phase_changed"] == 1
        assert counted["secondary_phase_changed"] == 1
        outbox = await b.store.call(b.store.pending, "list", 1000)
        assert len({doc["id"] for _, doc in outbox}) == len(outbox) == sum(counted.values()), (
            "an event was committed twice (the outbox's de-duplication hid it)"
        )
        # The sweep after the poll sees a Failed job: no hang. Before it, one hang episode,
        # and the final state remembers it (or the next sweep would report it again).
        assert counted["hang_suspected"] == (1 if first == "sweep" else 0)
        assert view.state.hang.episode == counted["hang_suspected"]


async def test_applies_of_one_job_run_in_the_order_they_arrived(tmp_path: Path) -> None:
    async with make_book(tmp_path, Hold("before_commit")) as b:
        phases = ["Pending", "Running", "Completed"]
        tasks = [asyncio.create_task(b.poll(phase=p, secondary_phase=p)) for p in phases]
        await asyncio.wait_for(b.hold.reached.wait(), 5)
        b.hold.released.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        outbox = await b.store.call(b.store.pending, "list", 1000)
        changes = [
            (doc["data"]["from"], doc["data"]["to"])
            for _, doc in outbox
            if doc["type"] == "modelarts.job.phase_changed"
        ]
        assert changes == [("Pending", "Running"), ("Running", "Completed")]


async def test_a_job_unwatched_while_its_commit_is_awaited_gets_no_series_back(
    tmp_path: Path,
) -> None:
    async with make_book(tmp_path, Hold("after_commit")) as b:
        task = asyncio.create_task(b.poll(phase="Running"))
        await asyncio.wait_for(b.hold.reached.wait(), 5)
        b.book.unwatch(SEED_ID)
        b.hold.released.set()
        await asyncio.wait_for(task, 5)
        assert SEED_ID not in b.book
        assert SEED_ID.encode() not in b.series.render()


async def test_the_first_round_count_stays_true_as_jobs_come_and_go_mid_poll(
    tmp_path: Path,
) -> None:
    """What ``/readyz`` reports: a job unwatched while its first poll's commit is awaited,
    then watched again, is not counted as polled until a poll of it lands afresh."""
    async with make_book(tmp_path, Hold("after_commit")) as b:
        task = asyncio.create_task(b.poll(phase="Running"))
        await asyncio.wait_for(b.hold.reached.wait(), 5)
        b.book.unwatch(SEED_ID)
        b.book.watch(SEED_ID, LABELS)
        b.hold.released.set()
        await asyncio.wait_for(task, 5)
        assert b.book.first_round() == (0, 1)
        await b.poll(phase="Running")
        await b.book.apply_poll(SEED_ID, Failed("server_error", "503"), slow=False)
        b.book.watch("other-job", LABELS)
        assert b.book.first_round() == (1, 2)
        b.book.unwatch(SEED_ID)
        assert b.book.first_round() == (0, 1)


async def test_a_failed_poll_keeps_the_state_and_backs_off(tmp_path: Path) -> None:
    async with make_book(tmp_path) as b:
        await b.poll(phase="Running")
        before = b.book.view(SEED_ID)
        await b.book.apply_poll(SEED_ID, Failed("server_error", "503"), slow=True)
        after = b.book.view(SEED_ID)
        assert before is not None and after is not None
        assert after.state == before.state
        assert not after.health.up and after.health.failures == 1 and after.health.slow
        assert after.health.not_before > b.clock.now


async def test_readings_of_a_job_no_longer_running_are_dropped(tmp_path: Path) -> None:
    async with make_book(tmp_path) as b:
        await b.poll(phase="Running")
        await b.sweep({"worker-0": {"cpuUsage": 0.5}})
        assert b"modelarts_training_job_task_cpu_usage_ratio{" in b.series.render()
        await b.poll(phase="Completed", secondary_phase="Completed")
        await b.sweep({"worker-0": {"cpuUsage": 0.5}})  # fetched while it still ran
        assert b"modelarts_training_job_task_cpu_usage_ratio{" not in b.series.render()


def running(b: Book) -> set[str]:
    """The jobs /metrics shows in phase Running."""
    return {
        s.labels["job_id"]
        for family in text_string_to_metric_families(b.series.render().decode())
        for s in family.samples
        if s.name == "modelarts_training_job_phase" and s.labels["phase"] == "Running" and s.value
    }


async def first_polls(b: Book, job_ids: list[str]) -> list[str]:
    """The first poll of each job: the first one's commit held while every other one arrives
    and waits for its own; returns each poll's result."""
    for job_id in job_ids:
        b.book.watch(job_id, LABELS)
    observed = {j: Observed(parse_job(job_doc(job_id=j), j), j.encode()) for j in job_ids}
    b.hold.point = "before_commit"
    first = asyncio.create_task(b.book.apply_poll(job_ids[0], observed[job_ids[0]], slow=False))
    await asyncio.wait_for(b.hold.reached.wait(), 5)
    rest = [asyncio.create_task(b.book.apply_poll(j, observed[j], slow=False)) for j in job_ids[1:]]
    for _ in range(10):  # every other poll reaches its commit and waits there
        await asyncio.sleep(0)
    b.hold.released.set()
    return await asyncio.wait_for(asyncio.gather(first, *rest), 10)


async def test_new_jobs_arriving_together_are_committed_in_one_transaction(
    tmp_path: Path,
) -> None:
    """A first round of many new jobs costs a transaction per batch, not one per job: the
    jobs whose commits arrive while one is being written go in the next, together."""
    async with make_book(tmp_path) as b:
        job_ids = [f"job-{i:03d}" for i in range(50)]
        assert await first_polls(b, job_ids) == ["ok"] * 50
        assert b.held.transactions == [1, 49]
        stored = await b.store.call(b.store.load_states)
        for job_id in job_ids:
            view = b.book.view(job_id)
            assert view is not None and view.health.up
            assert view.state is not None and stored[job_id] == view.state
        assert b.counted()["discovered"] == 50
        outbox = await b.store.call(b.store.pending, "list", 1000)
        assert sorted(doc["subject"] for _, doc in outbox) == job_ids
        assert running(b) == set(job_ids)


async def test_a_batch_is_at_most_max_batch_jobs(tmp_path: Path) -> None:
    async with make_book(tmp_path) as b:
        job_ids = [f"job-{i:03d}" for i in range(MAX_BATCH + 51)]
        assert set(await first_polls(b, job_ids)) == {"ok"}
        assert b.held.transactions == [1, MAX_BATCH, 50]


async def test_a_refused_batch_leaves_every_job_of_it_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All or nothing per batch: the database refused, so no job of the batch has a state,
    series or events of that poll, each poll counts as state_error, and each job's next poll
    commits the same transitions, with the same ids."""
    async with make_book(tmp_path) as b:
        job_ids = [f"job-{i:03d}" for i in range(20)]

        def refuse(commits: object) -> None:
            raise StateError(f"state database {b.store.path}: cannot commit: disk I/O error")

        monkeypatch.setattr(b.held, "commit_many", refuse)
        results = await first_polls(b, job_ids)
        assert results == ["ok"] + ["state_error"] * 19
        assert b.held.transactions == [1, 19]
        assert b.book.store_error is not None and "disk I/O error" in b.book.store_error
        for job_id in job_ids[1:]:
            view = b.book.view(job_id)
            assert view is not None and view.state is None and not view.health.up
        assert running(b) == {job_ids[0]}
        assert b.counted()["discovered"] == 1
        outbox = await b.store.call(b.store.pending, "list", 1000)
        assert [doc["subject"] for _, doc in outbox] == job_ids[:1]
        refused = {j: (await b.store.call(b.store.load_states)).get(j) for j in job_ids[1:]}
        assert set(refused.values()) == {None}

        monkeypatch.undo()
        for job_id in job_ids[1:]:
            observation = parse_job(job_doc(job_id=job_id), job_id)
            await b.book.apply_poll(job_id, Observed(observation, b"x"), slow=False)
        assert b.book.store_error is None
        outbox = await b.store.call(b.store.pending, "list", 1000)
        assert sorted(doc["subject"] for _, doc in outbox) == job_ids
        assert b.counted()["discovered"] == 20
