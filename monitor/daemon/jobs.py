"""The job book: the one owner of every watched job's labels, state, health, digest and plan.

Detail polls, usage sweeps, discovery and reloads all change jobs; none of them assigns a job's
state. They hand their results here (``apply_poll``, ``apply_usage``, ``watch``, ``unwatch``)
and the book applies them **one job at a time, in order**: each job has a lock that an apply
holds from reading the job's current state until the new state is committed to the store and
rendered, so a usage sweep can never write back a state a detail poll has moved past while its
commit was awaited (the door to transitions that never happened). Commit, render and notify
happen here, once, in this order:

1. ``core`` folds the result into the job's current state (pure);
2. the new state and its events are committed to the store in one transaction, *before* the
   in-memory state moves on and before the sinks are woken, so a crash at any point either
   loses nothing or re-detects the same transitions (same ids) on the next poll;
3. the job's series are re-rendered and the dispatcher is woken.

A failed poll touches only the job's health (``up`` 0, back-off): the exported state stays what
the last successful poll said, and no transition is ever invented from an error. Errors are
logged once per job per distinct error, and again when the job recovers.

Other rooms read a job through ``view`` (an immutable picture); nothing outside this module
holds or mutates the book's records. Each record carries its job's target name; the target's
project, poll rules and labels are its ``Scope`` (``targets.py``), looked up at each use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from monitor.config.settings import PollSettings
from monitor.core.backoff import backoff_delay
from monitor.core.diff import observe
from monitor.core.events import Event, to_cloudevent
from monitor.core.hang import TaskUsage, observe_hang
from monitor.core.job import JobGone
from monitor.core.lifecycle import plan
from monitor.core.reasons import attach_reasons, wants_reasons
from monitor.core.state import JobState
from monitor.daemon.group_commit import GroupCommit
from monitor.daemon.handoff import (
    Explain,
    Failed,
    Health,
    JobView,
    Observed,
    PollOutcome,
    Schedule,
    Unchanged,
    poll_result,
)
from monitor.daemon.keyed_lock import KeyedLock
from monitor.daemon.targets import Scope, Scopes
from monitor.delivery.dispatcher import Dispatcher
from monitor.errors import STATE_ERROR, StateError
from monitor.exposition.own import MonitorMetrics
from monitor.exposition.series import SeriesStore
from monitor.logs import get_logger
from monitor.store import Store

log = get_logger("monitor.jobs")


@dataclass(slots=True)
class _Job:
    """The book's record of one watched job. Only ``JobBook`` touches it."""

    labels: Mapping[str, str]
    """The job's own labels (configured or discovered), without its target's."""
    interval: float
    health: Health
    target: str = ""
    planned: float | None = None
    digest: bytes = b""
    usage: Mapping[str, TaskUsage] | None = None
    """The readings its usage series show now (None: it has none)."""


class JobBook:
    def __init__(
        self,
        *,
        store: Store,
        series: SeriesStore,
        metrics: MonitorMetrics,
        dispatcher: Dispatcher,
        schedule: Schedule,
        clock: Callable[[], float],
        project_id: str = "",
        poll: PollSettings | None = None,
        scopes: Iterable[Scope] = (),
    ) -> None:
        """``scopes``: one per target; else ``project_id`` and ``poll`` make the one."""
        self._commits = GroupCommit(store)
        self._series = series
        self._metrics = metrics
        self._dispatcher = dispatcher
        self._scopes = Scopes(list(scopes) or [Scope("", project_id, poll or PollSettings())])
        self._schedule = schedule
        self._clock = clock
        self._jobs: dict[str, _Job] = {}
        self._states: dict[str, JobState] = {}
        """Every state known, watched or not (a retired job's stays, for a restart's plan)."""
        self._last_success: dict[str, float] = {}
        self._turn = KeyedLock()
        self._succeeded: dict[str, float] = {}
        self._store_error: str | None = None
        self._polled = 0  # kept as health changes: ``/readyz`` asks on every probe

    # -- reading ---------------------------------------------------------------------------

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs

    def __len__(self) -> int:
        return len(self._jobs)

    def watched(self) -> list[str]:
        return list(self._jobs)

    def view(self, job_id: str) -> JobView | None:
        job = self._jobs.get(job_id)
        if job is None:
            return None
        state = self._states.get(job_id)
        labels, usage = self._labels(job), job.usage or {}
        return JobView(job_id, labels, job.interval, state, job.health, job.target, usage)

    def views(self) -> list[JobView]:
        return [v for v in map(self.view, self._jobs) if v is not None]

    def unchanged(self, job_id: str, digest: bytes) -> bool:
        """The body behind the job's state had this digest: the same bytes cost nothing."""
        job, state = self._jobs.get(job_id), self._states.get(job_id)
        return bool(job and job.digest == digest and state is not None and not state.gone)

    def gone_for(self, job_id: str) -> float | None:
        """Seconds since the API first said the job does not exist, or None."""
        state = self._states.get(job_id)
        if state is None or not state.gone or state.gone_since is None:
            return None
        return self._clock() - state.gone_since

    def first_round(self) -> tuple[int, int]:
        """(jobs polled at least once in this run, jobs watched)."""
        return self._polled, len(self._jobs)

    @property
    def store_error(self) -> str | None:
        """Why the last commit failed, until one succeeds again."""
        return self._store_error

    def take_successes(self) -> dict[str, float]:
        """Successful polls since the last call, for the store's batched write."""
        taken, self._succeeded = self._succeeded, {}
        return taken

    # -- membership ------------------------------------------------------------------------

    def restore(
        self, states: Mapping[str, JobState], last_success: Mapping[str, float] | None = None
    ) -> None:
        """Adopt what the store kept, before any job is watched: the last known series show
        at once, with ``up`` 0 until each job's first poll of this run, and the first poll
        diffs against the stored state."""
        self._states.update(states)
        self._last_success.update(last_success or {})

    def configure(self, scopes: Iterable[Scope]) -> None:
        """New poll rules and target labels (a reload): the rules apply at each job's next
        poll (or at once by ``watch``), the labels at once to each job of that target."""
        changed = self._scopes.replace(scopes)
        for job_id, job in self._jobs.items():
            if job.target in changed and job_id in self._series:
                state = self._states.get(job_id) or JobState(job_id=job_id)
                self._series.update(state, self._labels(job), self._scope(job).context)

    def watch(
        self,
        job_id: str,
        labels: Mapping[str, str],
        interval: float | None = None,
        target: str = "",
    ) -> bool:
        """Start (or keep) watching a job of ``target``, with these labels and this base
        interval. Returns False for a job retired long ago (terminal past its retention):
        nothing to do."""
        scope = self._scopes[target]
        interval = interval or scope.poll.interval
        state = self._states.get(job_id)
        decision = plan(state, self._clock(), interval, scope.poll)
        if decision.interval is None:
            self.unwatch(job_id)
            return False
        job = self._jobs.get(job_id)
        if job is None:
            health = Health(last_success=self._last_success.pop(job_id, None))
            job = self._jobs[job_id] = _Job(
                labels=dict(labels), interval=interval, health=health, target=target
            )
        else:
            job.labels, job.interval, job.target = dict(labels), interval, target
        if decision.export:
            # Even a job never seen yet gets series: its up=0 tells someone the id is wrong.
            self._series.update(state or JobState(job_id=job_id), self._labels(job), scope.context)
            self._series.set_health(job_id, job.health.up, job.health.last_success)
        self._metrics.jobs.set(len(self._jobs))
        job.planned = decision.interval
        self._schedule(job_id, decision.interval, True)
        return True

    def unwatch(self, job_id: str) -> None:
        """Stop polling a job and forget its series and health (its stored state stays, for
        ``status``). An apply in flight for it finds it gone and changes nothing more."""
        job = self._jobs.pop(job_id, None)
        if job is not None:
            self._polled -= job.health.polled
            self._schedule(job_id, None, False)
        self._series.remove(job_id)
        self._metrics.jobs.set(len(self._jobs))

    # -- applying results ------------------------------------------------------------------

    async def apply_poll(
        self, job_id: str, outcome: PollOutcome, *, slow: bool, explain: Explain | None = None
    ) -> str:
        """Apply one detail poll's outcome; returns the poll's ``polls_total`` result.

        All or nothing: whatever fails after the request (observing, the reasons, rendering,
        the commit) is that poll's failure, the job's state and series stay exactly as the last
        good poll left them, and nothing escapes into the scheduler. ``slow``: the poll timed
        out or took long. ``explain`` is asked for reasons when the events include a failure.
        """
        async with self._turn(job_id):
            job = self._jobs.get(job_id)
            if job is None:
                return poll_result(outcome)  # unwatched (reload, retirement) while in flight
            try:
                if isinstance(outcome, Failed):
                    self._failed(job_id, job, outcome, slow)
                elif isinstance(outcome, Unchanged):
                    self._succeed(job_id, job, slow)
                else:
                    outcome = await self._observed(job_id, job, outcome, slow, explain)
            except Exception as exc:  # a bug, or a value the edge let through
                failure = Failed("invalid_response", f"{type(exc).__name__}: {exc}")
                if job.health.last_error != f"{failure.result}: {failure.message}":
                    log.exception("poll_apply_failed", error=failure.message)
                self._failed(job_id, job, failure, slow)
                outcome = failure
            self._replan(job_id)
            return poll_result(outcome)

    async def apply_usage(
        self, job_id: str, usage: Mapping[str, TaskUsage], *, hang_window: float | None
    ) -> None:
        """Apply one usage sweep's readings of a job (task -> metric -> ratio). The job's
        *current* state decides: readings of a job that left Running meanwhile are dropped,
        and the hang rule runs on the current state's bookkeeping."""
        async with self._turn(job_id):
            try:
                await self._usage(job_id, usage, hang_window)
            except Exception as exc:  # a bug must cost this sweep of this job, nothing more
                log.exception("usage_apply_failed", error=f"{type(exc).__name__}: {exc}")

    async def _usage(
        self, job_id: str, usage: Mapping[str, TaskUsage], hang_window: float | None
    ) -> None:
        job = self._jobs.get(job_id)
        state = self._states.get(job_id)
        if job is None or state is None:
            return
        running = state.running
        if running:
            self._series.set_usage(job_id, usage)
            job.usage = dict(usage)
        elif job.usage is not None:
            self._series.set_usage(job_id, None)
            job.usage = None
        if not hang_window:
            return
        now = self._clock()
        hang, events = observe_hang(
            state.hang, job_id=job_id, job_name=state.job_name, running=running,
            usage=usage if running else {}, now=now, window=hang_window,
        )  # fmt: skip
        if hang != state.hang:
            await self._commit(job_id, job, replace(state, hang=hang), events, now)

    async def _observed(
        self, job_id: str, job: _Job, outcome: Observed, slow: bool, explain: Explain | None
    ) -> PollOutcome:
        """Fold the observation into the job's state, render it, commit it, then show it.
        Returns what the poll came to: the outcome itself, or a ``Failed`` if the database
        refused (the transitions are re-detected, with the same ids, by a later poll)."""
        now = self._clock()
        prev = self._states.get(job_id)
        state, events = observe(prev, outcome.observation, now)
        if explain is not None and any(wants_reasons(e) for e in events):
            reasons = await explain(job_id)
            if job_id not in self._jobs:
                return outcome  # unwatched while the reasons were fetched
            state, events = attach_reasons(state, events, reasons)
        if state != prev or events:
            rendered = self._series.prepare(state, self._labels(job), self._scope(job).context)
            if not await self._commit(job_id, job, state, events, now):
                failure = Failed(STATE_ERROR, self._store_error or "commit refused")
                self._failed(job_id, job, failure, slow, backoff=False)
                return failure
            if job_id in self._jobs:
                self._series.install(rendered)
        job.digest = b"" if isinstance(outcome.observation, JobGone) else outcome.digest
        if isinstance(outcome.observation, JobGone):
            self._set_health(job_id, job, replace(job.health, polled=True, up=False, slow=slow))
        else:
            self._succeed(job_id, job, slow, now)
        return outcome

    async def _commit(
        self, job_id: str, job: _Job, state: JobState, events: list[Event], now: float
    ) -> bool:
        """Label the events, commit them with the job's new state, then (only then) move the
        in-memory state on, count the events and wake the sinks. False if the database
        refused; the old state then stays."""
        scope = self._scope(job)
        labels = self._labels(job)
        documents = [to_cloudevent(e, scope.project_id, labels) for e in events]
        try:
            await self._commits.commit(state, documents, now, scope.name)
        except StateError as exc:
            if self._store_error != str(exc):
                log.error("state_commit_failed", error=str(exc), events_held=len(events))
            self._store_error = str(exc)
            return False
        if self._store_error is not None:
            log.info("state_commit_recovered")
            self._store_error = None
        self._states[job_id] = state
        for event in events:
            self._metrics.events.labels(event.type).inc()
            log.debug("transition", type=event.type, event_id=event.id)
        if events:
            self._dispatcher.notify()
        return True

    def _succeed(self, job_id: str, job: _Job, slow: bool, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        if job.health.last_error is not None:
            log.info("poll_recovered", after=job.health.last_error)
        self._succeeded[job_id] = now
        self._set_health(job_id, job, Health(polled=True, up=True, last_success=now, slow=slow))

    def _failed(
        self, job_id: str, job: _Job, outcome: Failed, slow: bool, *, backoff: bool = True
    ) -> None:
        """A failed poll: ``up`` 0 and, unless the failure is the monitor's own (``backoff``
        False: the database, logged once for all jobs by ``_commit``), a longer wait before
        the job's next poll and one log line per distinct error."""
        error = f"{outcome.result}: {outcome.message}"
        not_before = None
        if backoff:
            cap = self._scope(job).poll.retry.max_backoff
            delay = backoff_delay(job.health.failures + 1, base=job.interval, cap=cap)
            not_before = self._clock() + delay
            if job.health.last_error != error:
                log.warning("poll_failed", result=outcome.result, error=outcome.message,
                            next_poll_in=round(delay, 1))  # fmt: skip
        self._set_health(job_id, job, job.health.failed(error, slow, not_before))

    def _set_health(self, job_id: str, job: _Job, health: Health) -> None:
        if self._jobs.get(job_id) is job:  # not a record unwatched while its poll was applied
            self._polled += health.polled - job.health.polled
        job.health = health
        self._series.set_health(job_id, health.up, health.last_success)

    def _replan(self, job_id: str) -> None:
        """Slow down, stop exporting or retire the job as its lifecycle says."""
        job = self._jobs.get(job_id)
        if job is None:
            return
        poll = self._scope(job).poll
        decision = plan(self._states.get(job_id), self._clock(), job.interval, poll)
        if decision.interval is None:
            log.info("job_retired", job_id=job_id, reason="terminal_retention")
            self.unwatch(job_id)
            return
        if not decision.export and job_id in self._series:
            log.info("job_series_dropped", job_id=job_id, reason="not_found_retention")
            self._series.remove(job_id)
        if decision.interval != job.planned:
            job.planned = decision.interval
            self._schedule(job_id, decision.interval, False)

    def _scope(self, job: _Job) -> Scope:
        return self._scopes[job.target]

    def _labels(self, job: _Job) -> dict[str, str]:
        return self._scope(job).labels_of(job.labels)
