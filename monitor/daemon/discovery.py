"""Job discovery: watch the jobs a ModelArts job search finds, besides the configured ones.

A round pages through ``POST /v2/{project_id}/training-job-searches`` with the configured
filters, once for each of ``discovery.workspaces`` (the API searches one workspace a request,
the default one unless the body names another; ``offset`` is a page index; a workspace's series
stops at a short page, at ``total``, or after ``MAX_PAGES`` pages whatever the server says). The
body is built as the SDK's ``JobSearches`` builds it (``search_body``). A round reads each
item's ``metadata.id`` and ``metadata.name``, gives it the labels of every matching label
rule, keeps the jobs this shard owns, and hands the new ones to ``watch`` (the poller's),
exactly like configured jobs. Rounds run at start and every ``discovery.interval``.

Membership only grows from the search: a job that no longer matches it (it finished, its phase
left the filter) is *not* dropped, it keeps being polled until its lifecycle retires it
(``terminal_retention``). The members are kept in the store, so a restart watches them again
even when the search no longer finds them; a member ``watch`` refuses (retired) is forgotten.
So is a member the API has said is gone for longer than ``not_found_retention`` (``expired``):
a configured job is polled for ever in case it comes back, but nobody asked for a discovered
one, and should it come back the search finds it again. A configured job is never touched by
discovery: its configured labels and interval win.

Failures are never fatal: an API error or a malformed answer costs that workspace's series of
the round (the other workspaces are searched all the same), a store error the round's
bookkeeping; each is logged once per distinct error and workspace (and the recovery once), and
the next round tries again. An
item of the wrong shape is skipped and logged once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Set
from dataclasses import dataclass, field
from typing import Any

from monitor.config.settings import JOB_ID, DiscoverySettings
from monitor.core.job import NAME_LIMIT
from monitor.core.text import label_text
from monitor.errors import ApiError, InvalidResponse, StateError
from monitor.logs import get_logger
from monitor.store.database import Store

__all__ = ["MAX_PAGES", "Discovery", "SearchResult", "search_all", "search_body"]

log = get_logger("monitor.discovery")

MAX_PAGES = 1000
"""At most this many pages a round (50,000 jobs): a server that always answers full pages
must not keep a round going forever."""
MAX_LOGGED_SKIPS = 1000
"""Distinct skipped-item problems remembered (so each is logged once) before starting over."""

Search = Callable[[dict[str, Any]], Awaitable[Any]]
"""One search request: the body in, the decoded answer out, ``ApiError`` on failure."""
Watch = Callable[[str, Mapping[str, str]], bool]
"""``watch(job_id, labels)``: start or keep polling; False for a retired job."""


@dataclass(slots=True)
class SearchResult:
    jobs: dict[str, str] = field(default_factory=dict)
    """Every job found, id to name, in the order of the search (workspace by workspace)."""
    skipped: list[str] = field(default_factory=list)
    """Why items were skipped, one line each."""
    pages: int = 0
    """Pages read, over all workspaces."""
    errors: dict[str, ApiError] = field(default_factory=dict)
    """Workspace to why its search stopped early; the jobs of the pages read before, and of
    the other workspaces, are still good."""
    truncated: list[str] = field(default_factory=list)
    """The workspaces whose search the page limit stopped."""


def search_body(settings: DiscoverySettings, workspace: str, page: int) -> dict[str, Any]:
    """The request for page ``page`` of ``workspace``, as the SDK's ``JobSearches`` builds it
    (every filter value an array of strings; ``tags`` only when there are some): oldest first,
    so jobs created meanwhile go to the end."""
    body: dict[str, Any] = {
        "workspace_id": workspace,
        "offset": page,
        "limit": settings.page_size,
        "sort_by": "create_time",
        "order": "asc",
        "filters": [f.body() for f in settings.filters],
    }
    if settings.tags:
        body["tags"] = [t.body() for t in settings.tags]
    return body


async def search_all(
    search: Search, settings: DiscoverySettings, *, max_pages: int = MAX_PAGES
) -> SearchResult:
    """Page through the search of every workspace, one after the other (``max_pages`` each).
    Never raises ``ApiError``: it ends that workspace's series instead."""
    result = SearchResult()
    for workspace in settings.workspaces:
        await _search_workspace(search, settings, workspace, max_pages, result)
    return result


async def _search_workspace(
    search: Search,
    settings: DiscoverySettings,
    workspace: str,
    max_pages: int,
    result: SearchResult,
) -> None:
    limit = settings.page_size
    for page in range(max_pages):
        try:
            items, total = read_page(await search(search_body(settings, workspace, page)))
        except ApiError as exc:
            result.errors[workspace] = exc
            return
        result.pages += 1
        for item in items:
            found = _item(item)
            if isinstance(found, str):
                result.skipped.append(found)
            else:
                result.jobs.setdefault(*found)
        if len(items) < limit or (total is not None and (page + 1) * limit >= total):
            return
    result.truncated.append(workspace)


def read_page(answer: object) -> tuple[list[Any], int | None]:
    """A search answer's items and its ``total``, if that can be trusted: the one reading of a
    job-search page, for discovery and bulk rounds alike."""
    if not isinstance(answer, dict) or not isinstance(answer.get("items"), list):
        raise InvalidResponse("job search answer has no items list")
    total = answer.get("total")
    if isinstance(total, bool) or not isinstance(total, int):
        total = None  # not trusted: paging then ends at the first short page
    return answer["items"], total


def _item(item: object) -> tuple[str, str] | str:
    """``(job_id, name)`` of one search item, or why it is skipped."""
    metadata = item.get("metadata") if isinstance(item, dict) else None
    if not isinstance(metadata, dict):
        return "item without a metadata object"
    job_id, name = metadata.get("id"), metadata.get("name")
    if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):  # the rule of jobs[].id
        return f"item with metadata.id {str(job_id)[:80]!r}: not a job id"
    if not isinstance(name, str):
        return f"job {job_id}: metadata.name is not a string"
    # Bounded like every name from the API (the label rules' regexes run over it).
    return job_id, label_text(name, NAME_LIMIT)


class Discovery:
    """The discovered jobs of this instance: search rounds, the stored list, and ``watch``."""

    def __init__(
        self,
        settings: DiscoverySettings,
        *,
        search: Search,
        store: Store,
        watch: Watch,
        watching: Callable[[str], bool],
        owns: Callable[[str], bool],
        configured: Callable[[], Set[str]],
        expired: Callable[[str], bool] = lambda job_id: False,
        unwatch: Callable[[str], None] = lambda job_id: None,
        clock: Callable[[], float] = time.time,
        max_pages: int = MAX_PAGES,
        target: str = "",
    ) -> None:
        """``target``: the name of the target whose project is searched; its members are
        stored under it, so a restart watches each again as a job of its own target."""
        self.settings = settings
        self.target = target
        self._search = search
        self._store = store
        self._watch = watch
        self._watching = watching
        self._owns = owns
        self._configured = configured
        self._expired = expired
        self._unwatch = unwatch
        self._clock = clock
        self._max_pages = max_pages
        self.members: dict[str, dict[str, str]] = {}
        """Discovered jobs (stored), with the labels they were watched with."""
        self.rounds = 0
        self._failures = SearchFailures(log, "discovery_failed", "discovery_recovered")
        self._skips_logged: set[str] = set()
        self._wake = asyncio.Event()

    def configure(self, settings: DiscoverySettings) -> None:
        """New filters, rules or interval (a reload): a round runs at once with them."""
        self.settings = settings
        self._wake.set()

    async def restore(self, stored: Mapping[str, Mapping[str, str]]) -> None:
        """Watch the stored members (``Store.load_discovered``) again at start; forget those
        retired, and those another shard owns now (``shard.total`` changed)."""
        others = [job_id for job_id in stored if not self._owns(job_id)]
        self.members = {j: dict(labels) for j, labels in stored.items() if self._owns(j)}
        await self._forget(others)
        await self.reconcile()
        log.info("discovery_restored", jobs=len(self.members), other_shards=len(others))

    async def reconcile(self, found: Set[str] = frozenset()) -> None:
        """Watch every member that is not watched now (after a restart or a reload that
        dropped it from the config), and forget those ``watch`` refuses (retired) and those
        gone from the API for too long (unwatched first) unless the search just ``found``
        them again (back, but not polled since)."""
        configured = self._configured()
        retired = []
        for job_id, labels in self.members.items():
            if job_id in configured:
                continue
            if job_id not in found and self._expired(job_id):
                log.info("job_retired", job_id=job_id, reason="not_found_retention")
                self._unwatch(job_id)
                retired.append(job_id)
            elif not self._watching(job_id) and not self._watch(job_id, labels):
                retired.append(job_id)
        await self._forget(retired)

    async def run(self) -> None:
        """Rounds at once and every ``interval`` until cancelled; nothing here is fatal."""
        while True:
            self._wake.clear()
            try:
                await self.run_once()
            except Exception:  # a bug must cost one round, never discovery
                log.exception("discovery_crashed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.interval):
                    await self._wake.wait()

    async def run_once(self) -> SearchResult:
        """One round: search, watch the new jobs this shard owns, store them."""
        result = await search_all(self._search, self.settings, max_pages=self._max_pages)
        self.rounds += 1
        self._log_outcome(result)
        configured = self._configured()
        added: dict[str, dict[str, str]] = {}
        retired: list[str] = []
        for job_id, name in result.jobs.items():
            if job_id in configured or not self._owns(job_id):
                continue
            labels = self.settings.labels_for(name)
            if self.members.get(job_id) == labels and self._watching(job_id):
                continue
            if self._watch(job_id, labels):
                added[job_id] = labels
            elif job_id in self.members:
                retired.append(job_id)
        if added:
            try:
                await self._store.call(
                    self._store.add_discovered, added, self._clock(), self.target
                )
            except StateError as exc:  # watched anyway; stored at the next round
                log.error("discovery_store_failed", error=str(exc))
            else:
                new = sorted(added.keys() - self.members.keys())
                self.members.update(added)
                if new:
                    log.info("jobs_discovered", jobs=new)
        await self._forget(retired)
        await self.reconcile(result.jobs.keys())
        return result

    async def _forget(self, job_ids: list[str]) -> None:
        if not job_ids:
            return
        try:
            await self._store.call(self._store.forget_discovered, job_ids)
        except StateError as exc:  # forgotten at the next start instead
            log.error("discovery_store_failed", error=str(exc))
        for job_id in job_ids:
            self.members.pop(job_id, None)

    def _log_outcome(self, result: SearchResult) -> None:
        for problem in result.skipped:
            if problem not in self._skips_logged:
                if len(self._skips_logged) >= MAX_LOGGED_SKIPS:
                    self._skips_logged.clear()
                self._skips_logged.add(problem)
                log.warning("discovery_item_skipped", problem=problem)
        for workspace in result.truncated:
            log.warning(
                "discovery_truncated",
                workspace=workspace,
                pages=self._max_pages,
                note="narrow discovery.filters",
            )
        self._failures.keep(self.settings.workspaces)  # a reload may drop workspaces
        for workspace in self.settings.workspaces:
            self._failures.report(workspace, result.errors.get(workspace))


class SearchFailures:
    """Each workspace's search failure logged once per distinct error, and its recovery once:
    a search failing every round must not flood the log. For discovery and bulk rounds alike."""

    def __init__(self, logger: Any, failed: str, recovered: str) -> None:
        self._log, self._failed, self._recovered = logger, failed, recovered
        self._errors: dict[str, tuple[object, ...]] = {}
        """The last error logged per workspace (logged again only when it changes)."""

    def keep(self, workspaces: Iterable[str]) -> None:
        """Forget the workspaces no longer searched."""
        for workspace in self._errors.keys() - set(workspaces):
            del self._errors[workspace]

    def report(self, workspace: str, exc: ApiError | None, **context: object) -> None:
        """A workspace's search came to ``exc`` (None: it worked); ``context`` goes with a
        failure's line."""
        if exc is None:
            if self._errors.pop(workspace, None) is not None:
                self._log.info(self._recovered, workspace=workspace)
            return
        key = (type(exc).__name__, exc.status, exc.error_code)
        if key != self._errors.get(workspace):
            self._log.warning(
                self._failed, workspace=workspace, result=exc.result, error=str(exc), **context
            )
            self._errors[workspace] = key
