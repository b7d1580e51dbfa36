"""Polling per-task resource usage of Running jobs, and raising the hung-job events.

One sweep every ``usage.interval`` (default 60 s, the API's resolution) fetches
``/metrics/{task}`` for each task of each watched job that is Running, through the same client
as the detail polls (so the same throttle, rate limit and 429 pause apply), with its own small
concurrency cap so usage never takes the slots the detail polls need. A job that leaves Running
stops being swept and its usage series go away. The hang rule (``usage.observe_hang``) runs on
each sweep's readings; its events go through ``Poller.record``, the path of every other transition.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace

import structlog

from monitor.config.settings import UsageSettings
from monitor.core.hang import TaskUsage, observe_hang
from monitor.core.state import JobState
from monitor.daemon.poller import Poller
from monitor.errors import ApiError
from monitor.exposition.own import MonitorMetrics
from monitor.exposition.series import SeriesStore
from monitor.logs import get_logger
from monitor.modelarts.client import ModelArtsClient
from monitor.modelarts.parse import parse_task_metrics

log = get_logger("monitor.usage")


class UsagePoller:
    def __init__(
        self,
        *,
        client: ModelArtsClient,
        poller: Poller,
        series: SeriesStore,
        metrics: MonitorMetrics,
        settings: UsageSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._poller = poller
        self._series = series
        self._metrics = metrics
        self._settings = settings
        self._clock = clock
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._errors: dict[str, str] = {}
        self.sweeping: set[str] = set()
        """Jobs whose usage series are exported now."""

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.sweep()
            except Exception:  # a bug in one sweep must not end usage polling for good
                log.exception("usage_sweep_crashed")
            await asyncio.sleep(max(0.0, self._settings.interval - (time.monotonic() - started)))

    async def sweep(self) -> None:
        """One pass over the watched jobs."""
        watched = [j for j in self._poller.labels if j in self._poller.states]
        for gone in self.sweeping - set(watched):
            self._forget(gone)
        await asyncio.gather(*(self._job(job_id) for job_id in watched))

    async def _job(self, job_id: str) -> None:
        state = self._poller.states.get(job_id)
        snap = state.snapshot if state else None
        running = bool(state and snap and not state.gone and snap.phase == "Running")
        with structlog.contextvars.bound_contextvars(job_id=job_id):
            usage: dict[str, TaskUsage] = {}
            if running and snap is not None:
                for task in snap.tasks:
                    reading = await self._fetch(job_id, task)
                    if reading is not None:
                        usage[task] = reading
                self._series.set_usage(job_id, usage)
                self.sweeping.add(job_id)
            elif job_id in self.sweeping:
                self._forget(job_id)
            if state is not None:
                await self._hang(job_id, state, running, usage)

    async def _fetch(self, job_id: str, task: str) -> TaskUsage | None:
        async with self._slots:
            try:
                reading = parse_task_metrics(await self._client.get_task_metrics(job_id, task))
            except ApiError as exc:
                self._metrics.usage_polls.labels(exc.result).inc()
                error = f"{exc.result}: {exc}"
                if self._errors.get(job_id) != error:
                    log.warning("usage_poll_failed", task=task, result=exc.result, error=str(exc))
                    self._errors[job_id] = error
                return None
        self._metrics.usage_polls.labels("ok").inc()
        self._errors.pop(job_id, None)
        return reading

    async def _hang(
        self, job_id: str, state: JobState, running: bool, usage: dict[str, TaskUsage]
    ) -> None:
        if not self._settings.hang_window:
            return
        now = self._clock()
        hang, events = observe_hang(
            state.hang,
            job_id=job_id,
            job_name=state.job_name,
            running=running,
            usage=usage,
            now=now,
            window=self._settings.hang_window,
        )
        if hang == state.hang:
            return
        # The poller may have moved the job on while this sweep was fetching: build on its
        # latest committed state, changing only the hang bookkeeping.
        current = replace(self._poller.states.get(job_id, state), hang=hang)
        await self._poller.record(current, events, now, hang_writer=True)

    def _forget(self, job_id: str) -> None:
        self._series.set_usage(job_id, None)
        self.sweeping.discard(job_id)
