"""Polling per-task resource usage of Running jobs, for the job book to apply.

One sweep every ``usage.interval`` (default 60 s, the API's resolution) fetches
``/metrics/{task}`` for each task of each watched job that is Running, through the client of
the job's target that its detail polls use (so the same throttle, rate limit and 429 pause
apply), with its own small concurrency cap so usage never takes the slots the detail polls
need. The readings go to the job book (``JobBook.apply_usage``), which renders them and runs
the hang rule on the job's *current* state, in turn with the job's detail polls; a job that
left Running meanwhile has its usage series dropped there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from monitor.config.settings import UsageSettings
from monitor.core.hang import TaskUsage
from monitor.daemon.jobs import JobBook
from monitor.daemon.targets import Pauses, admitted
from monitor.errors import ApiError
from monitor.exposition.own import MonitorMetrics
from monitor.logs import get_logger
from monitor.modelarts.client import ModelArtsClient
from monitor.modelarts.parse import parse_task_metrics

log = get_logger("monitor.usage")


class UsagePoller:
    def __init__(
        self,
        *,
        client: ModelArtsClient | Callable[[str], ModelArtsClient],
        book: JobBook,
        metrics: MonitorMetrics,
        settings: UsageSettings,
        pauses: Pauses | None = None,
    ) -> None:
        """``client``: the one client, or the client of a job id (``Poller.client_of``).
        ``pauses``: the targets' throttles, which admit each request to a usage slot (as the
        poller's), so a throttled target's requests do not hold every slot."""
        self._pauses = pauses or Pauses()
        self._client_of = client if callable(client) else lambda job_id: client
        self._book = book
        self._metrics = metrics
        self._settings = settings
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._errors: dict[str, str] = {}

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
        await asyncio.gather(*(self._job(job_id) for job_id in self._book.watched()))

    async def _job(self, job_id: str) -> None:
        view = self._book.view(job_id)
        if view is None or view.state is None:
            return
        context = {"job_id": job_id, **({"target": view.target} if view.target else {})}
        with structlog.contextvars.bound_contextvars(**context):
            usage: dict[str, TaskUsage] = {}
            if view.running and view.state.snapshot is not None:
                for task in view.state.snapshot.tasks:
                    reading = await self._fetch(job_id, view.target, task)
                    if reading is not None:
                        usage[task] = reading
            await self._book.apply_usage(job_id, usage, hang_window=self._settings.hang_window)

    async def _fetch(self, job_id: str, target: str, task: str) -> TaskUsage | None:
        client = self._client_of(job_id)
        async with admitted(self._slots, self._pauses, target):
            try:
                reading = parse_task_metrics(await client.get_task_metrics(job_id, task))
            except ApiError as exc:
                self._metrics.count_usage(target, exc.result)
                error = f"{exc.result}: {exc}"
                if self._errors.get(job_id) != error:
                    log.warning("usage_poll_failed", task=task, result=exc.result, error=str(exc))
                    self._errors[job_id] = error
                return None
        self._metrics.count_usage(target, "ok")
        self._errors.pop(job_id, None)
        return reading
