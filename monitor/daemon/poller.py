"""One poll of one job, the daemon's unit of work: fetch, parse, diff, commit, render, notify.

The order matters for the guarantees in DESIGN.md. The new state and its events are committed to
the store *before* the in-memory state moves on and before the sinks are woken, so a crash at any
point either loses nothing or re-detects the same transitions (same ids) on the next poll. A
failed poll touches only the job's health (``up`` 0, ``polls_total{result}``): the exported job
state stays what the last successful poll said, and no transition is ever invented from an error.

Errors are logged once per job per distinct error, and again when the job recovers, so a job that
fails every 30 s for a day writes two lines, not 2,880.

Reasons: when a poll's events include a failure (``phase_changed`` to Failed or Abnormal, or a
``run_ended`` with an ``end_recover``), the job's newest Error and Warning events are fetched
(both at once, each bounded by the client's timeout) and the newest few are attached to those
events as ``data["reasons"]`` before the commit. Event ids do not depend on ``data``, so a
transition keeps its id with or without reasons; a failed fetch costs the reasons (``[]``),
never the transition.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import structlog

from monitor.config.settings import PollSettings, ReasonSettings
from monitor.core.backoff import backoff_delay
from monitor.core.diff import observe
from monitor.core.events import Event, to_cloudevent
from monitor.core.job import JobGone, Observation
from monitor.core.lifecycle import plan
from monitor.core.reasons import REASON_LEVELS, newest_reasons, wants_reasons
from monitor.core.state import JobState
from monitor.delivery.dispatcher import Dispatcher
from monitor.errors import ApiError, JobNotFound, StateError
from monitor.exposition.own import MonitorMetrics
from monitor.exposition.series import SeriesStore
from monitor.logs import get_logger
from monitor.modelarts.client import ModelArtsClient
from monitor.modelarts.parse import parse_job
from monitor.store.database import Store

log = get_logger("monitor.daemon.poller")
Schedule = Callable[[str, float | None, bool], None]
"""``schedule(job_id, interval or None to stop, initial)``: how the poller asks for a job's
polls to be (re)scheduled; ``initial`` means the first poll should come soon."""


@dataclass(slots=True)
class JobHealth:
    polled: bool = False
    up: bool = False
    last_success: float | None = None
    last_error: str | None = None
    failures: int = 0
    """Consecutive failed polls; each one doubles the wait before the next (capped)."""
    not_before: float = 0.0


class Poller:
    def __init__(
        self,
        *,
        client: ModelArtsClient,
        store: Store,
        series: SeriesStore,
        metrics: MonitorMetrics,
        dispatcher: Dispatcher,
        project_id: str,
        concurrency: int,
        slow_after: float = 5.0,
        poll_settings: PollSettings | None = None,
        schedule: Schedule | None = None,
        clock: Callable[[], float] = time.time,
        reasons: ReasonSettings | None = None,
    ) -> None:
        self._client = client
        self._store = store
        self._series = series
        self._metrics = metrics
        self._dispatcher = dispatcher
        self._project_id = project_id
        self._slots = asyncio.Semaphore(concurrency)
        # The slow lane: jobs whose last poll timed out or took longer than ``slow_after``
        # seconds share a quarter of the slots, so N hanging jobs cannot hold every slot and
        # delay the healthy ones; a job leaves the lane with its first quick poll.
        self._slow_lane = asyncio.Semaphore(max(1, concurrency // 4))
        self._slow_after = slow_after
        self.slow: set[str] = set()
        self._clock = clock
        self.states: dict[str, JobState] = {}
        self.health: dict[str, JobHealth] = {}
        self.labels: dict[str, Mapping[str, str]] = {}
        self.store_error: str | None = None
        self._succeeded: dict[str, float] = {}
        self._digests: dict[str, bytes] = {}
        self._poll_settings = poll_settings or PollSettings()
        self._reasons = reasons or ReasonSettings()
        self._schedule = schedule or (lambda job_id, interval, initial: None)
        self.intervals: dict[str, float] = {}
        self._planned: dict[str, float | None] = {}

    # -- which jobs ------------------------------------------------------------------------

    def restore(
        self, states: Mapping[str, JobState], last_success: Mapping[str, float] | None = None
    ) -> None:
        """Adopt what the store kept: the last known series show at once, with ``up`` 0 until
        each job's first poll of this run, and the first poll diffs against the stored state."""
        self.states.update(states)
        for job_id, ts in (last_success or {}).items():
            self.health.setdefault(job_id, JobHealth()).last_success = ts

    def configure(self, poll_settings: PollSettings, reasons: ReasonSettings | None = None) -> None:
        """New intervals, retention and back-off rules (a reload); applied at each job's next
        poll, or at once by ``watch``. ``reasons``, if given, applies from the next poll."""
        self._poll_settings = poll_settings
        if reasons is not None:
            self._reasons = reasons

    def last_reason(self, job_id: str) -> str:
        """The newest reason fetched for a failure of this job, as one line (or "")."""
        state = self.states.get(job_id)
        reason = state.last_reason if state else {}
        if not reason.get("message"):
            return ""
        return (
            " ".join(part for part in (reason.get("level"), reason.get("time")) if part)
            + f": {reason['message']}"
        )

    def take_successes(self) -> dict[str, float]:
        """Successful polls since the last call, for the store's batched write."""
        taken, self._succeeded = self._succeeded, {}
        return taken

    def watch(self, job_id: str, labels: Mapping[str, str], interval: float | None = None) -> bool:
        """Start (or keep) watching a job, with these labels and this base interval. Returns
        False for a job retired long ago (terminal past its retention): nothing to do."""
        interval = interval or self._poll_settings.interval
        state = self.states.get(job_id)
        decision = plan(state, self._clock(), interval, self._poll_settings)
        if decision.interval is None:
            self.unwatch(job_id)
            return False
        self.labels[job_id] = dict(labels)
        self.intervals[job_id] = interval
        health = self.health.setdefault(job_id, JobHealth())
        if decision.export:
            # Even a job never seen yet gets series: its up=0 tells someone the id is wrong.
            self._series.update(state or JobState(job_id=job_id), self.labels[job_id])
            self._series.set_health(job_id, health.up, health.last_success)
        self._metrics.jobs.set(len(self.labels))
        self._planned[job_id] = decision.interval
        self._schedule(job_id, decision.interval, True)
        return True

    def unwatch(self, job_id: str) -> None:
        """Forget a job's series and health (its stored state stays, for ``status``)."""
        self.labels.pop(job_id, None)
        self.health.pop(job_id, None)
        self.intervals.pop(job_id, None)
        self._planned.pop(job_id, None)
        self.slow.discard(job_id)
        self._series.remove(job_id)
        self._metrics.jobs.set(len(self.labels))

    def _replan(self, job_id: str) -> None:
        """After a poll: slow down, stop exporting or retire the job as its lifecycle says."""
        if job_id not in self.labels:
            return
        decision = plan(
            self.states.get(job_id), self._clock(), self.intervals[job_id], self._poll_settings
        )
        if decision.interval is None:
            log.info("job_retired", reason="terminal_retention")
            self.unwatch(job_id)
            self._schedule(job_id, None, False)
            return
        if not decision.export and job_id in self._series:
            log.info("job_series_dropped", reason="not_found_retention")
            self._series.remove(job_id)
        if decision.interval != self._planned.get(job_id):
            self._planned[job_id] = decision.interval
            self._schedule(job_id, decision.interval, False)

    def ready(self) -> tuple[bool, str]:
        waiting = [j for j in self.labels if not self.health[j].polled]
        if waiting:
            return False, f"{len(waiting)} of {len(self.labels)} jobs not polled yet"
        if self.store_error:
            return False, f"state database: {self.store_error}"
        return True, "ok"

    # -- the poll --------------------------------------------------------------------------

    async def poll(self, job_id: str) -> None:
        """Poll one job. Never raises: whatever happens is logged and counted."""
        health = self.health.get(job_id)
        if health is None or self._clock() < health.not_before:
            return  # not watched, or backing off after failures
        if job_id in self.slow:
            async with self._slow_lane:
                await self._poll_in_slot(job_id)
        else:
            await self._poll_in_slot(job_id)

    async def _poll_in_slot(self, job_id: str) -> None:
        async with self._slots:
            with structlog.contextvars.bound_contextvars(job_id=job_id):
                started = time.perf_counter()
                result = await self._poll(job_id)
                elapsed = time.perf_counter() - started
                self._metrics.poll_duration.observe(elapsed)
                self._metrics.polls.labels(result).inc()
        if result == "timeout" or elapsed > self._slow_after:
            self.slow.add(job_id)
        else:
            self.slow.discard(job_id)
        self._replan(job_id)

    async def _poll(self, job_id: str) -> str:
        health = self.health[job_id]
        observation: Observation
        digest = b""
        try:
            body = await self._client.get_job_body(job_id)
            digest = hashlib.blake2b(body.content, digest_size=16).digest()
            prev = self.states.get(job_id)
            if digest == self._digests.get(job_id) and prev is not None and not prev.gone:
                # The same bytes as last time: nothing to parse, diff, store or render.
                self._set_health(job_id, health, True, self._clock())
                self._recovered(health)
                return "ok"
            observation = parse_job(body.json(), job_id)
            result = "ok"
        except JobNotFound:
            observation, result = JobGone(job_id), JobNotFound.result
        except ApiError as exc:
            self._failed(job_id, health, exc.result, str(exc))
            return exc.result
        except Exception as exc:  # a bug must cost one poll, never the daemon
            log.exception("poll_crashed")
            self._failed(job_id, health, "invalid_response", f"{type(exc).__name__}: {exc}")
            return "invalid_response"

        if job_id not in self.labels:
            return result  # unwatched (reload) while the request was in flight
        now = self._clock()
        prev = self.states.get(job_id)
        state, events = observe(prev, observation, now)
        if self._reasons.enabled and any(wants_reasons(e) for e in events):
            state, events = await self._explain(job_id, state, events)
            if job_id not in self.labels:
                return result  # unwatched while the reasons were fetched
        labels = self.labels[job_id]
        if state != prev or events:
            # /metrics tells what the API said even while the database cannot keep it.
            self._series.update(state, labels)
            if await self.record(state, events, now):
                self._remember(job_id, observation, digest)
            # else: the old state stays, so the next poll re-detects these transitions (same ids)
        else:
            self._remember(job_id, observation, digest)
        self._set_health(job_id, health, result == "ok", now)
        if result == "ok":
            self._recovered(health)
        return result

    async def _explain(
        self, job_id: str, state: JobState, events: list[Event]
    ) -> tuple[JobState, list[Event]]:
        """Attach the job's newest Error/Warning messages to its failure transitions."""
        limit = self._reasons.max
        fetched = await asyncio.gather(
            *(
                self._client.get_job_events(job_id, level=level, limit=limit)
                for level in REASON_LEVELS
            ),
            return_exceptions=True,
        )
        batches: list[list[dict[str, str]]] = []
        for outcome in fetched:
            if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
                raise outcome  # cancelled: the poll is being stopped
        errors = [o for o in fetched if isinstance(o, BaseException)]
        if errors:
            # All or nothing: a partial list would hide that the other level is missing.
            error = errors[0]
            log.warning(
                "reasons_unavailable",
                result=error.result if isinstance(error, ApiError) else "invalid_response",
                error=str(error) or type(error).__name__,
            )
        else:
            batches = [o for o in fetched if not isinstance(o, BaseException)]
        reasons = newest_reasons(batches, limit)
        if reasons:
            state = replace(state, last_reason=reasons[0])
        return state, [
            replace(e, data={**e.data, "reasons": reasons}) if wants_reasons(e) else e
            for e in events
        ]

    def _remember(self, job_id: str, observation: Observation, digest: bytes) -> None:
        """The body behind the stored state, so the same bytes next time cost nothing."""
        if isinstance(observation, JobGone):
            self._digests.pop(job_id, None)
        else:
            self._digests[job_id] = digest

    def _recovered(self, health: JobHealth) -> None:
        if health.last_error is not None:
            log.info("poll_recovered", after=health.last_error)
            health.last_error = None

    async def record(
        self, state: JobState, events: list[Event], now: float, *, hang_writer: bool = False
    ) -> bool:
        """The one path every transition takes: label the events, commit them with the job's
        new state, count them, wake the sinks. False if the database refused; the in-memory
        state then stays as it was.

        The hang bookkeeping belongs to usage polling (``hang_writer``); any other caller keeps
        the latest value, which usage polling may have moved while this commit was awaited.
        """
        labels = self.labels.get(state.job_id, {})
        events = [replace(e, labels=labels) for e in events]
        if not await self._commit(state, events, now):
            return False
        latest = self.states.get(state.job_id)
        if not hang_writer and latest is not None and latest.hang != state.hang:
            state = replace(state, hang=latest.hang)
        self.states[state.job_id] = state
        for event in events:
            self._metrics.events.labels(event.type).inc()
            log.debug("transition", type=event.type, event_id=event.id)
        if events:
            self._dispatcher.notify()
        return True

    async def _commit(self, state: JobState, events: list[Event], now: float) -> bool:
        documents = [to_cloudevent(e, self._project_id) for e in events]
        try:
            await self._store.call(self._store.commit, state, documents, now)
        except StateError as exc:
            if self.store_error != str(exc):
                log.error("state_commit_failed", error=str(exc), events_held=len(events))
            self.store_error = str(exc)
            return False
        if self.store_error is not None:
            log.info("state_commit_recovered")
            self.store_error = None
        return True

    def _set_health(self, job_id: str, health: JobHealth, up: bool, now: float) -> None:
        health.polled = True
        health.up = up
        if up:
            health.last_success = now
            health.failures, health.not_before = 0, 0.0
            self._succeeded[job_id] = now
        self._series.set_health(job_id, up, health.last_success)

    def _failed(self, job_id: str, health: JobHealth, result: str, message: str) -> None:
        now = self._clock()
        health.failures += 1
        delay = backoff_delay(
            health.failures,
            base=self.intervals.get(job_id, self._poll_settings.interval),
            cap=self._poll_settings.retry.max_backoff,
        )
        health.not_before = now + delay
        error = f"{result}: {message}"
        if health.last_error != error:
            log.warning("poll_failed", result=result, error=message, next_poll_in=round(delay, 1))
            health.last_error = error
        self._set_health(job_id, health, False, now)
