"""One detail poll of one job: fetch, classify, and hand the outcome to the job book.

The poller owns the request side only: the concurrency slots, the slow lane, the digest
shortcut and the reasons fetch. What a poll *means* for the job (its new state, its events,
its health and its next poll) is decided and applied by the job book (``jobs.py``), the one
writer of every job's state. A poll never raises: whatever happens is counted in
``polls_total{result}`` and handed on as an outcome.

The slow lane: jobs whose last poll timed out or took longer than ``slow_after`` seconds share
a quarter of the slots, so N hanging jobs cannot hold every slot and delay the healthy ones; a
job leaves the lane with its first quick poll.

Targets: each job is fetched with its target's client (its endpoint, credentials, rate limit
and 429 pause), and the slots are shared by all targets (``poll.concurrency`` is the
process's). A poll waits for its target's turn (rate limit, 429 pause) before it takes a slot
(``targets.admitted``), so one account's throttling never holds the slots another's polls need.

A slot is held for the poll's requests only, not while the book applies the outcome: a first
round of new jobs waits for each batch's commit, and with the slots held through it the API
sat idle while the process had the CPU to spare (a first round at 10,000 jobs took a fifth
longer). The reasons fetch, made while the book applies, takes a slot of its own. Polls past
their request are bounded all the same (``_started``: the slots and one full batch of the
group commit, which can wait for its transaction while the slots keep fetching): unbounded, a
first round fetched thousands of bodies ahead of their commits, and the process kept that
peak, 60 MiB at 10,000 jobs, for good; with the slots alone, the round took longer again.

Reasons: when the book finds a failure among a poll's events, it asks ``explain``: the job's
newest Error and Warning events are fetched (both at once, each bounded by the client's
timeout), merged newest first and clipped. A failed fetch costs the reasons (``[]``), never
the transition.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping

import structlog

from monitor.config.settings import ReasonSettings
from monitor.core.job import JobGone
from monitor.core.reasons import REASON_LEVELS, Reason, newest_reasons
from monitor.daemon.group_commit import MAX_BATCH
from monitor.daemon.handoff import Failed, Observed, PollOutcome, Unchanged
from monitor.daemon.jobs import JobBook
from monitor.daemon.targets import Pauses, admitted
from monitor.errors import ApiError, JobNotFound
from monitor.exposition.own import MonitorMetrics
from monitor.logs import get_logger
from monitor.modelarts.client import ModelArtsClient
from monitor.modelarts.parse import parse_job

log = get_logger("monitor.poller")


class Poller:
    def __init__(
        self,
        *,
        client: ModelArtsClient | Mapping[str, ModelArtsClient],
        book: JobBook,
        metrics: MonitorMetrics,
        concurrency: int,
        slow_after: float = 5.0,
        reasons: ReasonSettings | None = None,
        clock: Callable[[], float] = time.time,
        pauses: Pauses | None = None,
    ) -> None:
        """``client``: the single-project config's, or one per target name. ``pauses``: the
        targets' throttles, which admit each poll to a slot."""
        self._pauses = pauses or Pauses()
        self._clients = dict(client) if isinstance(client, Mapping) else {"": client}
        self._book = book
        self._metrics = metrics
        self._slots = asyncio.Semaphore(concurrency)
        self._started = asyncio.Semaphore(concurrency + MAX_BATCH)
        self._slow_lane = asyncio.Semaphore(max(1, concurrency // 4))
        self._slow_after = slow_after
        self._reasons = reasons or ReasonSettings()
        self._clock = clock
        for each in self._clients.values():
            each.keep_prepared(self._watched)

    def configure(self, reasons: ReasonSettings) -> None:
        """New reason settings (a reload), from the next poll on."""
        self._reasons = reasons

    async def poll(self, job_id: str) -> None:
        """Poll one job, unless it is not watched or is backing off after failures.

        The job's view is taken once, here, and what the poll needs of it (its target, its
        lane) handed down: a view is built afresh on every call to the book."""
        view = self._book.view(job_id)
        if view is None or self._clock() < view.health.not_before:
            return
        if view.health.slow:
            async with self._slow_lane:
                await self._poll(job_id, view.target)
        else:
            await self._poll(job_id, view.target)

    def client_of(self, job_id: str) -> ModelArtsClient:
        """The client of the job's target (the first one's for a job no longer watched)."""
        return self._client_for(self._target_of(job_id))

    def _target_of(self, job_id: str) -> str:
        """The job's target name ("" for a job no longer watched)."""
        view = self._book.view(job_id)
        return view.target if view is not None else ""

    def _client_for(self, target: str) -> ModelArtsClient:
        return self._clients.get(target) or next(iter(self._clients.values()))

    def _watched(self, job_id: str) -> bool:
        """Whether a client should keep the job's prepared request (``keep_prepared``)."""
        return self._book.view(job_id) is not None

    async def _poll(self, job_id: str, target: str) -> None:
        context = {"job_id": job_id, "target": target} if target else {"job_id": job_id}
        # bind and reset, not ``bound_contextvars``: that one copies the whole context to save
        # what it overrides, on every poll; a token restores the same.
        tokens = structlog.contextvars.bind_contextvars(**context)
        try:
            async with self._started:
                started = time.perf_counter()
                async with admitted(self._slots, self._pauses, target):
                    outcome = await self._fetch(job_id, self._client_for(target))
                timed_out = isinstance(outcome, Failed) and outcome.result == "timeout"
                slow = timed_out or time.perf_counter() - started > self._slow_after
                result = await self.apply(job_id, outcome, slow=slow)
                self._metrics.poll_duration.observe(time.perf_counter() - started)
                self._metrics.count_poll(target, result)
        finally:
            structlog.contextvars.reset_contextvars(**tokens)

    async def apply(self, job_id: str, outcome: PollOutcome, *, slow: bool | None = None) -> str:
        """Hand one outcome to the book as a detail poll's, reasons fetch included; returns its
        ``polls_total`` result. A bulk round (``bulk.py``) hands its search items here too,
        with ``slow`` None: the job stays in the lane its last detail poll put it in."""
        if slow is None:
            view = self._book.view(job_id)
            slow = view is not None and view.health.slow
        explain = self.explain if self._reasons.enabled else None
        return await self._book.apply_poll(job_id, outcome, slow=slow, explain=explain)

    async def _fetch(self, job_id: str, client: ModelArtsClient) -> PollOutcome:
        try:
            body = await client.get_job_body(job_id)
            digest = hashlib.blake2b(body.content, digest_size=16).digest()
            if self._book.unchanged(job_id, digest):
                return Unchanged()
            return Observed(parse_job(body.json(), job_id), digest)
        except JobNotFound:
            return Observed(JobGone(job_id))
        except ApiError as exc:
            return Failed(exc.result, str(exc))
        except Exception as exc:  # a bug must cost one poll, never the daemon
            log.exception("poll_crashed")
            return Failed("invalid_response", f"{type(exc).__name__}: {exc}")

    async def explain(self, job_id: str) -> list[Reason]:
        """The job's newest Error and Warning events, newest first; ``[]`` if either level
        cannot be fetched (all or nothing: a partial list would hide the missing level)."""
        limit = self._reasons.max
        target = self._target_of(job_id)
        client = self._client_for(target)
        async with admitted(self._slots, self._pauses, target):
            fetched = await asyncio.gather(
                *(
                    client.get_job_events(job_id, level=level, limit=limit)
                    for level in REASON_LEVELS
                ),
                return_exceptions=True,
            )
        for outcome in fetched:
            if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
                raise outcome  # cancelled: the poll is being stopped
        errors = [o for o in fetched if isinstance(o, BaseException)]
        if errors:
            error = errors[0]
            log.warning(
                "reasons_unavailable",
                result=error.result if isinstance(error, ApiError) else "invalid_response",
                error=str(error) or type(error).__name__,
            )
            return []
        return newest_reasons([o for o in fetched if not isinstance(o, BaseException)], limit)
