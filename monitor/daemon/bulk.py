"""Bulk status polling (``poll.bulk``): a target's job statuses from job-search pages.

Why: a detail poll costs one request per job per interval, so 1,000 jobs at 30 s are 2,000
requests a minute against an account-wide throttle. The job search answers up to 50 jobs a call
in the job-detail shape (``items: list[JobResponse]``), so a round of search pages can refresh
them all for a fiftieth of that. What a refresh *means* is unchanged: each item is parsed by the
same ``parse_job`` and handed to the job book exactly as a detail poll's outcome (``apply``), with
the same digest shortcut (an unchanged item costs no parse and no commit) and the same reasons
fetch; so the same scenario gives the same events, ids and metrics in both modes.

A round (every ``poll.interval``, one ``BulkPolling`` per target):

1. The **covered** jobs: watched, last seen in a phase that is not terminal, not gone, and not
   configured to poll faster than the round. The others keep their detail polls at their
   lifecycle cadence: a job never seen yet (its first answer says where it lives), terminal and
   gone jobs (slower, ``poll.terminal_interval`` / ``not_found_interval``: searching for them
   would page through the account's finished history every round, for jobs that seldom change),
   and a job whose own ``interval`` is shorter than the round's (it asked for more).
2. Per workspace (where each covered job was last seen), the search pages with
   ``phase in [Creating, Pending, Running, Terminating]`` plus any other phase a covered job was
   last seen in (undocumented ones included), 50 a page, oldest first, until the page that
   covers ``total``, a short page, or ``MAX_PAGES`` pages, whatever ``total`` says. Terminal
   phases are left out on purpose: a job that finished between rounds is not in the answer, so
   it gets one detail poll, which sees the transition, and it then leaves the round.
3. Each page is all or nothing: it is read and checked whole before any of its items is applied;
   a page that fails (429, 5xx, timeout, not a search answer) ends that workspace's search for
   the round, and its jobs not refreshed yet **wait for the next round** (logged once per
   distinct error and workspace, the recovery once; every request is counted in
   ``modelarts_monitor_api_requests_total{endpoint="search"}``). A failing search is most often
   the throttle or an outage: a detail burst for every job of the workspace would multiply the
   load exactly when the API asked for less.
4. A covered job whose item is complete for the diff (``search_items.missing_fields``) is
   applied; an incomplete item, one the parser refuses, or a job missing from a search that was
   read to the end gets **one detail poll in the same round** (through ``detail``, the poller's
   path: slots, slow lane, back-off).

The job's own timer stays the safety net: in bulk mode the scheduler calls ``poll`` here, which
detail-polls a job unless it is covered and was refreshed within the last two rounds. So a job the
search keeps failing to refresh (two rounds in a row) is polled through its detail again: bulk
mode degrades to detail mode, never to silence, and ``modelarts_monitor_up`` keeps its meaning.
A detail poll of a job is never started while another one of it is in flight.

Counting: ``modelarts_monitor_polls_total`` and ``poll_duration_seconds`` stay what their help
says, detail polls only (the detail polls of a round included); the searches are counted in
``modelarts_monitor_api_requests_total{endpoint="search"}``, which is what to watch in bulk mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from monitor.config.settings import DiscoverySettings, SearchFilter
from monitor.config.targets import Target
from monitor.core.job import PHASES, TERMINAL_PHASES
from monitor.daemon.discovery import MAX_PAGES, Search, SearchFailures, read_page, search_body
from monitor.daemon.handoff import JobView, Observed, PollOutcome, Unchanged
from monitor.daemon.jobs import JobBook
from monitor.daemon.poller import Poller
from monitor.errors import ApiError, InvalidResponse
from monitor.logs import get_logger
from monitor.modelarts.client import ModelArtsClient
from monitor.modelarts.parse import parse_job
from monitor.modelarts.search_items import item_digest, item_id, missing_fields

__all__ = ["LIVE_PHASES", "BulkPolling", "BulkRounds", "Round"]

log = get_logger("monitor.bulk")

LIVE_PHASES: tuple[str, ...] = tuple(p for p in PHASES if p not in TERMINAL_PHASES)
"""The documented phases a round always searches: every one a job can leave again."""
PAGE_SIZE = 50
"""The API's largest page."""
FRESH_ROUNDS = 2
"""A covered job's own timer skips its detail poll while its last refresh is younger than this
many rounds: one failed round is waited out, two are not."""

View = Callable[[str], JobView | None]
IsUnchanged = Callable[[str, bytes], bool]
"""The book's digest shortcut: the job's state came from content with this digest."""
Apply = Callable[[str, PollOutcome], Awaitable[object]]
"""Hands one job's outcome to the book as a detail poll's would be (the poller's ``apply``)."""
Detail = Callable[[str], Awaitable[None]]
"""One detail poll of a job through the poller (``Poller.poll``)."""


@dataclass(slots=True)
class Round:
    """What one round did, for its log line, the tests and the benchmark."""

    pages: int = 0
    applied: list[str] = field(default_factory=list)
    """Jobs refreshed from their search item."""
    incomplete: list[str] = field(default_factory=list)
    """Jobs whose item lacked what the diff reads (or did not parse): detail-polled."""
    missing: list[str] = field(default_factory=list)
    """Jobs a search read to the end did not return: detail-polled."""
    waiting: list[str] = field(default_factory=list)
    """Jobs of a workspace whose search failed: left for the next round."""
    errors: dict[str, ApiError] = field(default_factory=dict)
    """Workspace to why its search stopped early."""
    truncated: list[str] = field(default_factory=list)
    """Workspaces whose search ``MAX_PAGES`` stopped (their unseen jobs count as missing)."""


class BulkPolling:
    """One target's bulk rounds, and the gate its jobs' own timers go through."""

    def __init__(
        self,
        *,
        search: Search,
        jobs: Callable[[], Iterable[str]],
        view: View,
        unchanged: IsUnchanged,
        apply: Apply,
        detail: Detail,
        interval: float,
        target: str = "",
        clock: Callable[[], float] = time.time,
        max_pages: int = MAX_PAGES,
    ) -> None:
        """``jobs()`` are the watched jobs (this shard's), of which rounds cover the target's;
        ``view`` and ``unchanged`` are the book's; ``interval`` the target's ``poll.interval``."""
        self.target = target
        self._search = search
        self._jobs = jobs
        self._view = view
        self._unchanged = unchanged
        self._apply = apply
        self._detail = detail
        self.interval = interval
        self._clock = clock
        self._max_pages = max_pages
        self._started = clock()
        """Rounds run from here on: a covered job's timer waits for them, even at start."""
        self._inflight: set[str] = set()
        self._failures = SearchFailures(log, "bulk_search_failed", "bulk_search_recovered")
        self._unusable: dict[str, str] = {}
        """The last unusable-item problem logged per job."""
        self.rounds = 0

    def configure(self, interval: float) -> None:
        """A new ``poll.interval`` (a reload), from the next round on."""
        self.interval = interval

    # -- the gate of each job's own timer ----------------------------------------------------

    def covered(self, view: JobView) -> bool:
        """Whether rounds refresh this job (the rules in the module docstring, step 1)."""
        state = view.state
        if state is None or state.gone or state.snapshot is None or state.snapshot.terminal:
            return False
        if view.target != self.target:
            return False
        return view.interval >= self.interval

    async def poll(self, job_id: str) -> None:
        """What the scheduler calls in bulk mode: a detail poll, unless the rounds keep this
        job fresh (covered, refreshed within ``FRESH_ROUNDS`` rounds)."""
        view = self._view(job_id)
        if view is None:
            return
        last = max(view.health.last_success or 0.0, self._started)
        if self._clock() - last < FRESH_ROUNDS * self.interval and self.covered(view):
            return
        await self._detail_once(job_id)

    async def _detail_once(self, job_id: str) -> None:
        if job_id in self._inflight:
            return
        self._inflight.add(job_id)
        try:
            await self._detail(job_id)
        finally:
            self._inflight.discard(job_id)

    # -- rounds --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Rounds every ``interval``, on a fixed beat (a slow round does not push the next
        ones later), until cancelled; a crash costs one round."""
        loop = asyncio.get_running_loop()
        beat = loop.time()
        while True:
            try:
                await self.run_once()
            except Exception:  # a bug must cost one round, never bulk polling
                log.exception("bulk_round_crashed")
            beat = max(beat + self.interval, loop.time())
            await asyncio.sleep(beat - loop.time())

    async def run_once(self) -> Round:
        """One round over the covered jobs: search, apply, detail-poll what the search lacked."""
        report = Round()
        by_workspace: dict[str, dict[str, str]] = {}
        for job_id in self._jobs():
            view = self._view(job_id)
            if view is None or not self.covered(view):
                continue
            snapshot = view.state.snapshot if view.state else None
            assert snapshot is not None  # covered
            by_workspace.setdefault(snapshot.workspace_id or "0", {})[job_id] = snapshot.phase
        details: list[str] = []
        for workspace, jobs in by_workspace.items():
            details += await self._workspace(workspace, jobs, report)
        self.rounds += 1
        self._log_errors(by_workspace, report)
        await asyncio.gather(*(self._detail_once(j) for j in details))
        log.debug(
            "bulk_round",
            pages=report.pages,
            applied=len(report.applied),
            incomplete=len(report.incomplete),
            missing=len(report.missing),
            waiting=len(report.waiting),
        )
        return report

    async def _workspace(self, workspace: str, jobs: dict[str, str], report: Round) -> list[str]:
        """Page through one workspace's search, applying each page as it comes; returns the
        jobs that need a detail poll this round."""
        phases = sorted({*LIVE_PHASES, *(p for p in jobs.values() if p)})
        settings = DiscoverySettings(
            workspaces=[workspace],
            filters=[SearchFilter(key="phase", operator="in", value=phases)],
            page_size=PAGE_SIZE,
        )
        unseen = dict(jobs)
        details: list[str] = []
        for page in range(self._max_pages):
            try:
                items, total = read_page(await self._search(search_body(settings, workspace, page)))
            except ApiError as exc:
                report.errors[workspace] = exc
                report.waiting += list(unseen)
                return details
            report.pages += 1
            mine = self._watched_items(items, unseen)
            outcomes = [self._outcome(job_id, item) for job_id, item in mine.items()]
            applied = [(j, o) for j, o in zip(mine, outcomes, strict=True) if o is not None]
            details += [j for j, o in zip(mine, outcomes, strict=True) if o is None]
            report.incomplete += [j for j, o in zip(mine, outcomes, strict=True) if o is None]
            report.applied += [j for j, _ in applied]
            await asyncio.gather(*(self._apply(j, o) for j, o in applied))
            covered_all = total is not None and (page + 1) * PAGE_SIZE >= total
            if not unseen or len(items) < PAGE_SIZE or covered_all:
                break
        else:
            report.truncated.append(workspace)
        report.missing += list(unseen)
        return details + list(unseen)

    @staticmethod
    def _watched_items(items: list[Any], unseen: dict[str, str]) -> dict[str, Any]:
        """The items of jobs still to be refreshed this round (each job's first item only),
        taken out of ``unseen``."""
        mine: dict[str, Any] = {}
        for item in items:
            job_id = item_id(item)
            if job_id is not None and unseen.pop(job_id, None) is not None:
                mine[job_id] = item
        return mine

    def _outcome(self, job_id: str, item: Any) -> PollOutcome | None:
        """What the item says of the job, as a detail poll would; None: fetch the detail."""
        missing = missing_fields(item)
        if missing:
            self._log_unusable(job_id, f"search item lacks status.{', status.'.join(missing)}")
            return None
        digest = item_digest(item)
        if self._unchanged(job_id, digest):
            return Unchanged()
        try:
            return Observed(parse_job(item, job_id), digest)
        except InvalidResponse as exc:
            self._log_unusable(job_id, f"search item refused: {exc}")
            return None

    def _log_unusable(self, job_id: str, problem: str) -> None:
        """Once per job and distinct problem: the detail fetch that follows is not an error."""
        if self._unusable.get(job_id) != problem:
            if len(self._unusable) > 100_000:
                self._unusable.clear()
            self._unusable[job_id] = problem
            log.info("bulk_item_unusable", job_id=job_id, problem=problem, fallback="detail")

    def _log_errors(self, workspaces: dict[str, dict[str, str]], report: Round) -> None:
        """Each workspace's search failure logged once per distinct error, its recovery once."""
        waiting = set(report.waiting)
        for workspace, jobs in workspaces.items():
            self._failures.report(
                workspace,
                report.errors.get(workspace),
                jobs_waiting=len(waiting.intersection(jobs)),
                note="they wait for the next round",
            )
        for workspace in report.truncated:
            log.warning("bulk_search_truncated", workspace=workspace, pages=self._max_pages)


class BulkRounds:
    """The bulk rounds of every target with ``poll.bulk`` (a task each), and ``poll``: what the
    scheduler calls for every job, routed to its target's gate or straight to the poller."""

    def __init__(
        self,
        *,
        book: JobBook,
        poller: Poller,
        clients: Mapping[str, ModelArtsClient],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._book = book
        self._poller = poller
        self._clients = clients
        self._clock = clock
        self._running: dict[str, tuple[BulkPolling, asyncio.Task[None]]] = {}

    def __getitem__(self, target: str) -> BulkPolling:
        return self._running[target][0]

    async def configure(self, targets: Iterable[Target]) -> None:
        """Start the rounds of the targets that turned ``poll.bulk`` on, stop those that turned
        it off, and give the others their (new) interval. At start and at each reload."""
        wanted = {t.name: t for t in targets if t.poll.bulk}
        for name in list(self._running.keys() - wanted.keys()):
            await self._stop(name)
        for name, target in wanted.items():
            if name in self._running:
                self._running[name][0].configure(target.poll.interval)
                continue
            polling = BulkPolling(
                search=self._clients[name].search_jobs,
                jobs=self._book.watched,
                view=self._book.view,
                unchanged=self._book.unchanged,
                apply=self._poller.apply,
                detail=self._poller.poll,
                interval=target.poll.interval,
                target=name,
                clock=self._clock,
            )
            # The task copies this context: its log lines name the target.
            with structlog.contextvars.bound_contextvars(**({"target": name} if name else {})):
                task = asyncio.create_task(polling.run(), name=f"bulk {name}".strip())
            self._running[name] = (polling, task)
            log.info("bulk_polling_started", interval=target.poll.interval, **_named(name))

    async def poll(self, job_id: str) -> None:
        """A job's own timer: through its target's gate in bulk mode, else a detail poll."""
        view = self._book.view(job_id)
        running = self._running.get(view.target) if view is not None else None
        if running is not None:
            await running[0].poll(job_id)
        else:
            await self._poller.poll(job_id)

    async def stop(self) -> None:
        for name in list(self._running):
            await self._stop(name)

    async def _stop(self, name: str) -> None:
        _, task = self._running.pop(name)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _named(target: str) -> dict[str, str]:
    return {"target": target} if target else {}
