"""APScheduler 3.x wiring: one interval timer per monitored job.

Per ``shared/reference/library-notes.md``: the scheduler is started inside the running loop;
``coalesce=True`` and ``max_instances=1`` mean a job that overruns is polled once when it can,
never twice at the same time; ``misfire_grace_time`` of one interval keeps a busy loop from
skipping runs with "was missed by" warnings; ``jitter`` spreads thousands of jobs over the
interval. Polls in flight are tracked here: on stop the scheduler is paused, they get a grace
period, and only then is it shut down (APScheduler 3.11's ``AsyncIOExecutor.shutdown()`` cancels
the coroutines it runs, which would cut every in-flight poll short).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

PollFn = Callable[[str], Awaitable[None]]


class PollScheduler:
    def __init__(
        self,
        *,
        jitter: Callable[[float], float] = lambda interval: 0.0,
        on_skip: Callable[[str], None] | None = None,
    ) -> None:
        """``jitter(interval)`` is the random spread of a job's polls for its interval.

        ``on_skip(reason)`` hears of every run that did not happen: ``overrun`` (the job's
        previous poll was still going) or ``missed`` (the loop was too busy to start it in
        time). APScheduler would log a warning for each; at 10,000 jobs that is a flood, so
        they are counted instead (``modelarts_monitor_polls_skipped_total``)."""
        self._poll: PollFn | None = None
        self._jitter = jitter
        self._scheduler = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1},
        )
        if on_skip is not None:
            self._scheduler.add_listener(
                lambda event: on_skip(
                    "overrun" if event.code == EVENT_JOB_MAX_INSTANCES else "missed"
                ),
                EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED,
            )
        self._inflight: set[asyncio.Task[None]] = set()
        self._intervals: dict[str, tuple[float, float]] = {}

    def start(self, poll: PollFn) -> None:
        """Start calling ``poll(job_id)`` on each job's timer. Must run inside the event loop
        (APScheduler 3.11 no longer makes one of its own)."""
        self._poll = poll
        self._scheduler.start()

    def jobs(self) -> set[str]:
        return set(self._intervals)

    def add(
        self, job_id: str, interval: float, jitter: float, *, first_within: float = 1.0
    ) -> None:
        """Poll ``job_id`` every ``interval`` s; the first poll comes within ``first_within`` s."""
        if self._intervals.get(job_id) == (interval, jitter):
            return
        self._intervals[job_id] = (interval, jitter)
        first = datetime.now(UTC) + timedelta(seconds=random.uniform(0, first_within))  # noqa: S311
        self._scheduler.add_job(
            self._run,
            IntervalTrigger(seconds=interval, jitter=jitter or None, timezone=UTC),
            args=[job_id],
            id=job_id,
            replace_existing=True,
            next_run_time=first,
            misfire_grace_time=max(1, int(interval)),
        )

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
        if self._intervals.pop(job_id, None) is not None:
            self._scheduler.remove_job(job_id)

    async def _run(self, job_id: str) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._inflight.add(task)
        try:
            assert self._poll is not None, "jobs are only run once started"
            await self._poll(job_id)
        finally:
            self._inflight.discard(task)

    async def stop(self, grace: float) -> None:
        """Stop scheduling, give in-flight polls ``grace`` seconds, then cancel the rest."""
        # Pause first and shut down last: APScheduler 3.11's AsyncIOExecutor.shutdown() cancels
        # the coroutines it is running, which would leave in-flight polls no grace at all.
        running = self._scheduler.running
        if running:
            self._scheduler.pause()
            # A run the executor submitted just before the pause is a task that has not started
            # yet, so it is not in _inflight: one turn of the loop lets it start and register,
            # and it gets its grace instead of being cancelled by shutdown() mid-request.
            await asyncio.sleep(0)
        inflight = set(self._inflight)
        if inflight:
            _, pending = await asyncio.wait(inflight, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if running:
            self._scheduler.shutdown(wait=False)
