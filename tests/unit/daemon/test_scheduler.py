"""scheduler.py: one timer per job on the running loop; a stuck job never delays the others."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest
import structlog.testing

from monitor.daemon.scheduler import PollScheduler
from tests.conftest import wait_for

INTERVAL = 0.05


class FakePoller:
    """Counts polls and how many of each job run at once; jobs in ``blocked`` wait for release."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.finished: Counter[str] = Counter()
        self.cancelled: Counter[str] = Counter()
        self.active: Counter[str] = Counter()
        self.max_active: Counter[str] = Counter()
        self.blocked: dict[str, asyncio.Event] = {}
        self.duration: dict[str, float] = {}

    async def poll(self, job_id: str) -> None:
        self.calls[job_id] += 1
        self.active[job_id] += 1
        self.max_active[job_id] = max(self.max_active[job_id], self.active[job_id])
        try:
            if job_id in self.blocked:
                await self.blocked[job_id].wait()
            if job_id in self.duration:
                await asyncio.sleep(self.duration[job_id])
            self.finished[job_id] += 1
        except asyncio.CancelledError:
            self.cancelled[job_id] += 1
            raise
        finally:
            self.active[job_id] -= 1

    def block(self, job_id: str) -> asyncio.Event:
        self.blocked[job_id] = asyncio.Event()
        return self.blocked[job_id]


@pytest.fixture
def fake() -> FakePoller:
    return FakePoller()


@pytest.fixture
async def scheduler(fake: FakePoller) -> AsyncIterator[PollScheduler]:
    s = PollScheduler()
    s.start(fake.poll)
    yield s
    for event in fake.blocked.values():
        event.set()
    await asyncio.wait_for(s.stop(1), 5)


async def test_each_added_job_is_polled_repeatedly(
    scheduler: PollScheduler, fake: FakePoller
) -> None:
    scheduler.add("a", INTERVAL, 0, first_within=0)
    scheduler.add("b", INTERVAL, 0.01, first_within=0)
    assert scheduler.jobs() == {"a", "b"}
    await wait_for(lambda: fake.calls["a"] >= 3 and fake.calls["b"] >= 3)


async def test_polls_follow_the_interval_not_a_busy_loop(
    scheduler: PollScheduler, fake: FakePoller
) -> None:
    scheduler.add("fast", INTERVAL, 0, first_within=0)
    scheduler.add("slow", 30, 0, first_within=0)
    await wait_for(lambda: fake.calls["fast"] >= 4)
    assert fake.calls["slow"] == 1  # first poll only; the next is 30 s away


async def test_adding_a_job_again_with_the_same_timing_keeps_one_timer(
    scheduler: PollScheduler, fake: FakePoller
) -> None:
    scheduler.add("a", INTERVAL, 0, first_within=0)
    scheduler.add("a", INTERVAL, 0, first_within=0)
    await wait_for(lambda: fake.calls["a"] >= 3)
    assert scheduler.jobs() == {"a"}
    assert fake.max_active["a"] == 1


async def test_a_job_whose_poll_never_returns_does_not_delay_other_jobs(
    scheduler: PollScheduler, fake: FakePoller
) -> None:
    fake.block("stuck")
    scheduler.add("stuck", INTERVAL, 0, first_within=0)
    scheduler.add("healthy", INTERVAL, 0, first_within=0)
    await wait_for(lambda: fake.calls["stuck"] == 1)
    base = fake.calls["healthy"]
    await wait_for(lambda: fake.calls["healthy"] >= base + 5)
    assert fake.active["stuck"] == 1


async def test_a_blocked_job_is_never_polled_concurrently_with_itself(
    scheduler: PollScheduler, fake: FakePoller
) -> None:
    release = fake.block("slow")
    scheduler.add("slow", INTERVAL, 0, first_within=0)
    scheduler.add("clock", INTERVAL, 0, first_within=0)
    await wait_for(lambda: fake.calls["slow"] == 1)
    # Many of its intervals pass while its first poll is still running ...
    await wait_for(lambda: fake.calls["clock"] >= 8)
    assert fake.calls["slow"] == 1
    assert fake.max_active["slow"] == 1
    # ... and once it returns, it is polled again on schedule, still one at a time.
    release.set()
    await wait_for(lambda: fake.calls["slow"] >= 3)
    assert fake.max_active["slow"] == 1


async def test_a_removed_job_is_no_longer_polled(
    scheduler: PollScheduler, fake: FakePoller
) -> None:
    scheduler.add("gone", INTERVAL, 0, first_within=0)
    scheduler.add("kept", INTERVAL, 0, first_within=0)
    await wait_for(lambda: fake.calls["gone"] >= 2)
    scheduler.remove("gone")
    assert scheduler.jobs() == {"kept"}
    after_remove = fake.calls["gone"]
    base = fake.calls["kept"]
    await wait_for(lambda: fake.calls["kept"] >= base + 5)
    assert fake.calls["gone"] == after_remove
    scheduler.remove("never-added")  # harmless


async def test_stop_lets_an_in_flight_poll_finish_within_the_grace_period(
    fake: FakePoller,
) -> None:
    scheduler = PollScheduler()
    scheduler.start(fake.poll)
    fake.duration["a"] = 0.2
    scheduler.add("a", 30, 0, first_within=0)
    await wait_for(lambda: fake.active["a"] == 1)

    await asyncio.wait_for(scheduler.stop(5), 5)
    assert fake.finished["a"] == 1
    assert fake.cancelled["a"] == 0


async def test_stop_cancels_polls_that_exceed_the_grace_period_and_does_not_hang(
    fake: FakePoller,
) -> None:
    scheduler = PollScheduler()
    scheduler.start(fake.poll)
    fake.block("stuck")
    fake.duration["quick"] = 0.05
    scheduler.add("stuck", 30, 0, first_within=0)
    scheduler.add("quick", 30, 0, first_within=0)
    await wait_for(lambda: fake.active["stuck"] == 1 and fake.active["quick"] == 1)

    started = time.monotonic()
    await asyncio.wait_for(scheduler.stop(0.3), 5)
    assert time.monotonic() - started < 2
    assert fake.cancelled["stuck"] == 1
    assert fake.finished["quick"] == 1 and fake.cancelled["quick"] == 0
    assert fake.active["stuck"] == 0


async def test_no_polls_start_after_stop(fake: FakePoller) -> None:
    scheduler = PollScheduler()
    scheduler.start(fake.poll)
    scheduler.add("a", INTERVAL, 0, first_within=0)
    await wait_for(lambda: fake.calls["a"] >= 2)
    await asyncio.wait_for(scheduler.stop(1), 5)
    stopped_at = fake.calls["a"]
    # Give the (stopped) timers several intervals in which they would have fired.
    probe = PollScheduler()
    probe.start(fake.poll)
    probe.add("probe", INTERVAL, 0, first_within=0)
    await wait_for(lambda: fake.calls["probe"] >= 5)
    await asyncio.wait_for(probe.stop(1), 5)
    assert fake.calls["a"] == stopped_at


async def test_stop_without_polls_in_flight_returns_at_once(fake: FakePoller) -> None:
    scheduler = PollScheduler()
    scheduler.start(fake.poll)
    scheduler.add("a", 30, 0, first_within=30)
    started = time.monotonic()
    await asyncio.wait_for(scheduler.stop(5), 5)
    assert time.monotonic() - started < 1
    assert fake.calls["a"] == 0


class Fixed(random.Random):
    """The scheduler's random source, always the same fraction of each range it is asked for."""

    def __init__(self, fraction: float) -> None:
        super().__init__(0)
        self.fraction = fraction

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.fraction


class StepClock:
    """The scheduler's clock, moved by the test: the loop still runs the timers, but which
    grid times have passed is the test's to say."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_grid_times_that_pass_while_a_poll_runs_are_skipped_as_overrun() -> None:
    release = asyncio.Event()
    skipped: list[tuple[str, int]] = []
    calls: list[float] = []
    clock = StepClock()

    async def stuck(job_id: str) -> None:
        calls.append(clock.now)
        await release.wait()

    scheduler = PollScheduler(on_skip=lambda reason, n: skipped.append((reason, n)), clock=clock)
    scheduler.start(stuck)
    scheduler.add("job", 1.0, 0, first_within=0)
    try:
        await wait_for(lambda: len(calls) == 1)
        clock.now += 3.5  # the grid times +1, +2 and +3 pass while the poll runs
        release.set()
        await wait_for(lambda: "job" not in scheduler.in_flight())
        assert skipped == [("overrun", 3)]
        assert len(calls) == 1  # never a second poll at the same time, never a catch-up burst
    finally:
        await scheduler.stop(1)


async def test_grid_times_the_busy_loop_could_not_start_are_skipped_as_missed() -> None:
    skipped: list[tuple[str, int]] = []
    calls: list[float] = []
    clock = StepClock()

    async def poll(job_id: str) -> None:
        calls.append(clock.now)

    scheduler = PollScheduler(on_skip=lambda reason, n: skipped.append((reason, n)), clock=clock)
    scheduler.add("job", 1.0, 0, first_within=0)
    clock.now += 2.5  # the loop is busy for two and a half intervals before it starts polling
    scheduler.start(poll)
    try:
        await wait_for(lambda: len(calls) == 1)
        assert skipped == [("missed", 2)]  # one poll stands for the three due
    finally:
        await scheduler.stop(1)


async def test_a_poll_fired_in_the_same_turn_as_stop_gets_its_grace(fake: FakePoller) -> None:
    scheduler = PollScheduler()
    fake.duration["a"] = 0.05
    scheduler.add("a", 30, 0, first_within=0)
    scheduler.start(fake.poll)
    # Fired, but its task has not run a step yet: the moment a shutdown used to cancel it.
    for _ in range(1000):  # a loop turn at a time, until the timer has fired
        if scheduler.in_flight():
            break
        await asyncio.sleep(0)
    assert scheduler.in_flight() == {"a"}
    assert fake.calls["a"] == 0
    await asyncio.wait_for(scheduler.stop(5), 5)
    assert fake.finished["a"] == 1
    assert fake.cancelled["a"] == 0


async def test_polls_keep_to_the_jobs_grid_however_long_each_takes() -> None:
    clock = StepClock()
    anchor = clock.now
    calls: list[float] = []

    async def poll(job_id: str) -> None:
        calls.append(clock.now)
        clock.now += 0.3 * INTERVAL  # each poll takes 0.3 of an interval

    scheduler = PollScheduler(clock=clock, rng=Fixed(0.0))
    scheduler.add("job", INTERVAL, 0, first_within=0)
    scheduler.start(poll)
    try:
        for k in range(1, 4):
            await wait_for(lambda k=k: len(calls) == k)  # type: ignore[misc]
            clock.now = anchor + k * INTERVAL  # the next grid time comes
        await wait_for(lambda: len(calls) == 4)
        assert [round((t - anchor) / INTERVAL, 6) for t in calls] == [0, 1, 2, 3]  # no drift
    finally:
        await scheduler.stop(1)


async def test_jobs_added_together_are_polled_at_once_then_spread_over_the_interval() -> None:
    clock = StepClock()
    added = clock.now
    calls: list[tuple[str, float]] = []

    async def poll(job_id: str) -> None:
        calls.append((job_id, clock.now))

    # The random source puts every job's later polls at 0.5 of the span it may use.
    scheduler = PollScheduler(clock=clock, rng=Fixed(0.5))
    scheduler.add("job", 0.1, 0, first_within=0.02)  # the test's loop waits are the clock's
    scheduler.start(poll)
    try:
        clock.now = added + 0.01  # the first poll: soon, within first_within
        await wait_for(lambda: len(calls) == 1)
        clock.now = added + 0.01 + 0.075  # 0.5 of the way from half an interval to an interval
        await wait_for(lambda: len(calls) == 2)
        assert [round(t - added, 6) for _, t in calls] == [0.01, 0.085]
    finally:
        await scheduler.stop(1)


async def test_a_poll_that_raises_is_logged_once_and_the_job_keeps_its_timer() -> None:
    calls: list[str] = []

    async def poll(job_id: str) -> None:
        calls.append(job_id)
        if len(calls) == 1:
            raise RuntimeError("a bug in one poll")

    scheduler = PollScheduler()
    with structlog.testing.capture_logs() as logs:
        scheduler.add("job", INTERVAL, 0, first_within=0)
        scheduler.start(poll)
        try:
            await wait_for(lambda: len(calls) >= 3)
        finally:
            await scheduler.stop(1)
    crashed = [e for e in logs if e["event"] == "scheduled_poll_crashed"]
    assert [(e["job_id"], e["log_level"]) for e in crashed] == [("job", "error")]


@pytest.mark.parametrize(
    ("interval", "initial", "expected"),
    [
        (30.0, True, ("add", 30.0, 3.0, 1.0)),  # a first poll comes within a second
        (0.5, True, ("add", 0.5, 0.05, 0.5)),  # ... or within its interval if shorter
        (300.0, False, ("add", 300.0, 30.0, 300.0)),  # a changed interval starts from now
        (None, False, ("remove",)),  # retired
    ],
)
def test_plan_turns_the_books_requests_into_timers(
    interval: float | None, initial: bool, expected: tuple[object, ...]
) -> None:
    calls: list[tuple[object, ...]] = []
    scheduler = PollScheduler(jitter=lambda i: i / 10)
    scheduler.add = lambda job_id, i, j, *, first_within: calls.append(  # type: ignore[method-assign]
        ("add", i, j, first_within)
    )
    scheduler.remove = lambda job_id: calls.append(("remove",))  # type: ignore[method-assign]
    scheduler.plan("job", interval, initial)
    assert calls == [expected]
