"""The running loop's side of the poll schedule: one timer per job, on one heap.

Each job has a fixed grid of poll times (``core/schedule.py``: anchored at its first poll,
jittered per poll, coalesced when a poll runs late or long). All of them sit on one heap
ordered by fire time, behind a single loop timer armed for the earliest: at 10,000 jobs a
poll costs a heap pop, a push and a task, where APScheduler's job store (which this replaced)
spent about a third of a saturated daemon's CPU re-sorting its jobs, building events and
raising ``MaxInstancesReachedError`` for every job still waiting for a slot.

Every job's first poll comes soon (within a second when it is added), so the first round ends
soon; its later polls are spread over the interval (``anchor_for``), so the API sees a steady
rate instead of a herd of every job at once, every interval.

A job has at most one poll in flight and, while it has one, no timer: the next grid time is
chosen when the poll ends (``following``), so a job is never polled twice at once and a
saturated process polls every job in the order its polls fell due, instead of piling up runs.

Polls in flight are tracked from the moment their task is created, so ``stop`` gives every one
of them its grace, including a poll fired in the same loop turn as the stop.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import time
from collections.abc import Awaitable, Callable

from monitor.core.schedule import anchor_for, coalesce, fire_time, following, spread
from monitor.logs import get_logger

PollFn = Callable[[str], Awaitable[None]]

log = get_logger("monitor.scheduler")


class _Timer:
    """One job's grid: the next index to poll for; replaced whole when the timing changes.
    Index 0 fires at ``first``, within the first interval of the grid."""

    __slots__ = ("anchor", "first", "index", "interval", "jitter", "token")

    def __init__(
        self, interval: float, jitter: float, first: float, phase: float, token: int
    ) -> None:
        self.interval = interval
        self.jitter = jitter
        self.first = first
        self.anchor = anchor_for(first, interval, phase)
        self.index = 0
        self.token = token


class PollScheduler:
    def __init__(
        self,
        *,
        jitter: Callable[[float], float] = lambda interval: 0.0,
        on_skip: Callable[[str, int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        """``jitter(interval)`` is the random spread of a job's polls for its interval.

        ``on_skip(reason, count)`` hears of scheduled polls that did not happen: ``overrun``
        (the job's previous poll was still going) or ``missed`` (the process was too busy to
        start it before the next one was due). ``clock`` must be the loop's (monotonic)."""
        self._jitter = jitter
        self._on_skip = on_skip
        self._clock = clock
        self._random = rng or random.Random()  # noqa: S311 (spreading load, not secrets)
        self._timers: dict[str, _Timer] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._tokens = itertools.count()
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._poll: PollFn | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._armed_for = float("inf")

    def start(self, poll: PollFn) -> None:
        """Start calling ``poll(job_id)`` on each job's timer; jobs added before start keep
        their times. Must run inside the event loop."""
        self._poll = poll
        self._loop = asyncio.get_running_loop()
        self._arm()

    def jobs(self) -> set[str]:
        return set(self._timers)

    def in_flight(self) -> set[str]:
        """Jobs whose poll has been fired and has not ended."""
        return set(self._inflight)

    def add(
        self, job_id: str, interval: float, jitter: float, *, first_within: float = 1.0
    ) -> None:
        """Poll ``job_id`` every ``interval`` s; the first poll comes within ``first_within`` s.
        The same timing again changes nothing; a new one starts a new grid (after the poll in
        flight, if there is one)."""
        timer = self._timers.get(job_id)
        if timer is not None and (timer.interval, timer.jitter) == (interval, jitter):
            return
        first = self._clock() + self._random.uniform(0, first_within)
        timer = _Timer(interval, jitter, first, self._random.uniform(0, 1), next(self._tokens))
        self._timers[job_id] = timer
        if job_id not in self._inflight:
            self._push(job_id, timer)

    def plan(self, job_id: str, interval: float | None, initial: bool) -> None:
        """The job book's request: poll every ``interval`` s (None: stop). A first poll
        (``initial``) comes within a second; a changed interval (terminal, gone) starts from
        now."""
        if interval is None:
            self.remove(job_id)
            return
        first_within = min(1.0, interval) if initial else interval
        self.add(job_id, interval, self._jitter(interval), first_within=first_within)

    def remove(self, job_id: str) -> None:
        """No more polls of the job (its heap entry is dropped when it comes up)."""
        self._timers.pop(job_id, None)

    async def stop(self, grace: float) -> None:
        """Stop scheduling, give in-flight polls ``grace`` seconds, then cancel the rest."""
        self._poll = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        inflight = set(self._inflight.values())
        if inflight:
            _, pending = await asyncio.wait(inflight, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    # -- the loop side -----------------------------------------------------------------------

    def _push(self, job_id: str, timer: _Timer) -> None:
        if timer.index == 0:
            at = timer.first
        else:
            offset = self._random.uniform(0, spread(timer.jitter, timer.interval))
            at = fire_time(timer.anchor, timer.interval, timer.index, offset)
        heapq.heappush(self._heap, (at, timer.token, job_id))
        if at < self._armed_for:
            self._arm()

    def _live(self, entry: tuple[float, int, str]) -> _Timer | None:
        timer = self._timers.get(entry[2])
        return timer if timer is not None and timer.token == entry[1] else None

    def _arm(self) -> None:
        """Set the one loop timer for the earliest live entry (dropping stale ones on top)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._armed_for = float("inf")
        heap = self._heap
        while heap and self._live(heap[0]) is None:
            heapq.heappop(heap)
        if not heap or self._loop is None or self._poll is None:
            return
        self._armed_for = heap[0][0]
        self._handle = self._loop.call_later(max(0.0, heap[0][0] - self._clock()), self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._armed_for = float("inf")
        now, heap = self._clock(), self._heap
        while heap and heap[0][0] <= now and self._loop is not None and self._poll is not None:
            entry = heapq.heappop(heap)
            timer = self._live(entry)
            if timer is None:
                continue
            timer.index, missed = coalesce(timer.anchor, timer.interval, timer.index, now)
            if missed:
                self._skipped("missed", missed)
            job_id = entry[2]
            self._inflight[job_id] = self._loop.create_task(self._run(job_id, timer))
        self._arm()

    async def _run(self, job_id: str, timer: _Timer) -> None:
        try:
            if self._poll is not None:
                await self._poll(job_id)
        except Exception:  # a bug costs this poll, never the job's schedule
            log.exception("scheduled_poll_crashed", job_id=job_id)
        finally:
            del self._inflight[job_id]
            self._next(job_id, timer)

    def _next(self, job_id: str, ran: _Timer) -> None:
        """After a poll: the first grid time after now, or the new grid a re-plan started."""
        timer = self._timers.get(job_id)
        if timer is None or self._poll is None:
            return
        if timer is ran:
            timer.index, overrun = following(timer.anchor, timer.interval, ran.index, self._clock())
            if overrun:
                self._skipped("overrun", overrun)
        self._push(job_id, timer)

    def _skipped(self, reason: str, count: int) -> None:
        if self._on_skip is not None:
            self._on_skip(reason, count)
