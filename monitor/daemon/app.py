"""Building the daemon from ``Settings``, and its lifecycle: start, run until signalled, drain.

Start order makes ``/metrics`` truthful from the first scrape: stored states are loaded and
rendered (with ``up`` 0) before the server listens, and the first poll of each job diffs against
the stored state, so a restart neither re-announces jobs nor misses what changed while down.

Stop order is the reverse of the data flow (arq's worker shutdown is the model): stop
scheduling, let in-flight polls finish within a grace period, let the sinks drain the outbox
within the same budget, then close the server, the HTTP client and the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

import httpx
from aiohttp import web

from monitor.config.loading import load_settings
from monitor.config.settings import DiscoverySettings, JobSettings, Settings, split_listen
from monitor.daemon.discovery import Discovery
from monitor.daemon.jobs import JobBook
from monitor.daemon.poller import Poller
from monitor.daemon.reports import job_row, readiness
from monitor.daemon.scheduler import PollScheduler
from monitor.daemon.sharding import owns
from monitor.daemon.usage import UsagePoller
from monitor.daemon.wiring import build_client
from monitor.delivery.dispatcher import Dispatcher
from monitor.delivery.sinks import Sink, build_sinks
from monitor.errors import ConfigError, ListenError, StateError
from monitor.exposition.own import MonitorMetrics
from monitor.exposition.series import SeriesStore
from monitor.logs import get_logger
from monitor.store.database import Store
from monitor.web.pages import JobRow
from monitor.web.server import create_app

log = get_logger("monitor.app")
RESTART_SECTIONS = ("api", "auth", "state", "events", "server", "log", "shard", "usage", "metrics")
"""Config sections a reload cannot change in a running process (connections, files, ports)."""
HOUSEKEEPING_SECONDS = 5.0
"""How often poll times are written to the store and sink backlogs recounted."""


class App:
    def __init__(
        self,
        settings: Settings,
        *,
        sinks: Sequence[Sink] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        config_path: str | None = None,
    ) -> None:
        self.settings = settings
        self._config_path = config_path
        self._reloads: set[asyncio.Task[bool]] = set()
        self._sinks = list(sinks) if sinks is not None else None
        self._transport = transport
        self._clock = clock
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self._stopped = asyncio.Event()
        self.discovery: Discovery | None = None
        self._discovery_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Raises ``StateError`` if the database is unusable; nothing is left running then."""
        s = self.settings
        # The client first: a bad CA bundle is a ConfigError before anything is opened.
        self.client = build_client(s, self._transport)
        try:
            self.store = Store(s.state.path)
        except Exception:
            await self.client.aclose()
            raise
        try:
            states = await self.store.call(self.store.load_states)
            last_success = await self.store.call(self.store.load_last_success)
            discovered = await self.store.call(self.store.load_discovered) if s.discovery else {}
        except Exception:
            self.store.close()
            await self.client.aclose()
            raise
        for job_id, why in self.store.unreadable.items():
            log.error("stored_state_unreadable", job_id=job_id, error=why, note="starts afresh")
        self.series = SeriesStore(project_id=s.api.project_id, exposure=s.metrics)
        self.metrics = MonitorMetrics()
        self.metrics.shard_ordinal.set(s.shard.index)
        self.metrics.total_shards.set(s.shard.total)
        sinks = self._sinks if self._sinks is not None else build_sinks(s.events.sinks)
        self.dispatcher = Dispatcher(
            self.store,
            sinks,
            metrics=self.metrics,
            max_backoff=s.events.max_backoff,
            limit=s.events.outbox_limit,
        )
        self.scheduler = PollScheduler(
            jitter=s.jitter_for_interval,
            on_skip=lambda reason: self.metrics.polls_skipped.labels(reason).inc(),
        )
        self.book = JobBook(
            store=self.store,
            series=self.series,
            metrics=self.metrics,
            dispatcher=self.dispatcher,
            project_id=s.api.project_id,
            poll=s.poll,
            schedule=self.scheduler.plan,
            clock=self._clock,
        )
        self.poller = Poller(
            client=self.client,
            book=self.book,
            metrics=self.metrics,
            concurrency=s.poll.concurrency,
            slow_after=s.api.timeout / 2,
            reasons=s.reasons,
            clock=self._clock,
        )
        self.book.restore(states, last_success)
        owned = self._owned(s.jobs)
        for job in owned.values():
            self.book.watch(job.id, job.labels, s.interval_for(job))
        if s.discovery is not None:
            self.discovery = self._build_discovery(s.discovery)
            await self.discovery.restore(discovered)

        host, port = split_listen(s.server.listen)
        app = create_app(metrics=self.render_metrics, ready=self.ready, overview=self.overview)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await self._close_resources()
            raise ListenError(s.server.listen, exc.strerror or str(exc)) from exc
        self.port = self._runner.addresses[0][1]
        self.dispatcher.start()
        self.scheduler.start(self.poller.poll)
        self._housekeeping = asyncio.create_task(self._housekeep(), name="housekeeping")
        self._start_discovery()
        self._usage_task: asyncio.Task[None] | None = None
        if s.usage.enabled:
            self.usage = UsagePoller(
                client=self.client, book=self.book, metrics=self.metrics, settings=s.usage
            )
            self._usage_task = asyncio.create_task(self.usage.run(), name="usage")
        log.info(
            "started",
            jobs=len(owned),
            shard=f"{s.shard.index}/{s.shard.total}",
            discovery=self.discovery is not None,
            restored=len(states),
            listen=f"{host}:{self.port}",
            state=s.state.path,
        )

    # -- sharding and discovery ------------------------------------------------------------

    def _owns(self, job_id: str) -> bool:
        return owns(job_id, self.settings.shard.index, self.settings.shard.total)

    def _owned(self, jobs: Sequence[JobSettings]) -> dict[str, JobSettings]:
        """The configured jobs this shard watches."""
        return {j.id: j for j in jobs if self._owns(j.id)}

    def _build_discovery(self, settings: DiscoverySettings) -> Discovery:
        return Discovery(
            settings,
            search=self.client.search_jobs,
            store=self.store,
            watch=self._watch_discovered,
            watching=self.book.__contains__,
            owns=self._owns,
            configured=lambda: {j.id for j in self.settings.jobs},
            expired=self._gone_too_long,
            unwatch=self.book.unwatch,
            clock=self._clock,
        )

    def _watch_discovered(self, job_id: str, labels: Mapping[str, str]) -> bool:
        return self.book.watch(job_id, labels, self.settings.poll.interval)

    def _gone_too_long(self, job_id: str) -> bool:
        gone = self.book.gone_for(job_id)
        return gone is not None and gone >= self.settings.poll.not_found_retention

    def _start_discovery(self) -> None:
        if self.discovery is not None and self._discovery_task is None:
            self._discovery_task = asyncio.create_task(self.discovery.run(), name="discovery")

    async def _stop_discovery(self) -> None:
        task, self._discovery_task = self._discovery_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _reload_discovery(self, new: DiscoverySettings | None) -> None:
        """Discovery turned on, off or changed by a reload. Turned off, the jobs it found
        stay watched until their lifecycle retires them (or the next restart)."""
        if new is None:
            await self._stop_discovery()
            self.discovery = None
        elif self.discovery is None:
            try:
                stored = await self.store.call(self.store.load_discovered)
            except StateError as exc:
                log.error("discovery_store_failed", error=str(exc))
                stored = {}
            self.discovery = self._build_discovery(new)
            await self.discovery.restore(stored)
            self._start_discovery()
        elif new != self.discovery.settings:
            self.discovery.configure(new)

    def ready(self) -> tuple[bool, str]:
        """``/readyz``: the database, the first round and every sink's backlog, one line
        each; ready only if all three are."""
        return readiness(self.book, self.dispatcher)

    async def _housekeep(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_SECONDS)
            await self._flush()

    async def _flush(self) -> None:
        successes = self.book.take_successes()
        try:
            await self.store.call(self.store.record_success, successes)
            await self.dispatcher.refresh_pending()
        except StateError as exc:
            log.error("housekeeping_failed", error=str(exc))
        except Exception:  # housekeeping must outlive a bug in itself
            log.exception("housekeeping_crashed")

    def render_metrics(self) -> Iterator[bytes]:
        yield from self.series.sections()
        yield self.metrics.render()

    def overview(self) -> list[JobRow]:
        return [job_row(view) for view in self.book.views()]

    def request_stop(self) -> None:
        self._stopped.set()

    async def run(self, grace: float = 10.0) -> None:
        """Start, serve until SIGTERM/SIGINT (or ``request_stop``), then drain and stop."""
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self._reload_soon)
        try:
            await self._stopped.wait()
            log.info("stopping", grace_seconds=grace)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            await self.stop(grace)

    def _reload_soon(self) -> None:
        task = asyncio.create_task(self.reload(), name="reload")
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def reload(self) -> bool:
        """Re-read the config file (SIGHUP). Jobs, their labels and intervals, and the poll
        rules apply at once; an invalid file is logged and the running config stays."""
        if self._config_path is None:
            log.warning("reload_ignored", reason="no config file")
            return False
        try:
            new = await asyncio.to_thread(load_settings, self._config_path)
        except ConfigError as exc:
            log.error("reload_failed", problems=exc.problems, note="the running config stays")
            return False
        old = self.settings
        static = [k for k in RESTART_SECTIONS if getattr(new, k) != getattr(old, k)]
        if static:
            log.warning("reload_needs_restart", sections=static, note="not applied until restart")
        self.settings = old.model_copy(
            update={
                "jobs": new.jobs,
                "poll": new.poll,
                "discovery": new.discovery,
                "reasons": new.reasons,
            }
        )
        self.book.configure(new.poll)
        self.poller.configure(new.reasons)
        before = self._owned(old.jobs)
        after = self._owned(new.jobs)
        for job_id in before.keys() - after.keys():
            self.book.unwatch(job_id)
        for job in after.values():
            self.book.watch(job.id, job.labels, self.settings.interval_for(job))
        await self._reload_discovery(new.discovery)
        if self.discovery is not None:
            # A job dropped from the config that discovery found stays, with its found labels.
            await self.discovery.reconcile()
        log.info(
            "reloaded",
            added=sorted(after.keys() - before.keys()),
            removed=sorted(before.keys() - after.keys()),
            changed=sorted(j for j in after.keys() & before.keys() if after[j] != before[j]),
        )
        return True

    async def stop(self, grace: float = 10.0) -> None:
        deadline = time.monotonic() + grace
        self._housekeeping.cancel()
        if self._usage_task is not None:
            self._usage_task.cancel()
            await asyncio.gather(self._usage_task, return_exceptions=True)
        await self._stop_discovery()
        await self.scheduler.stop(grace)
        drained = await self.dispatcher.stop(max(0.1, deadline - time.monotonic()))
        if not drained:
            log.warning("stopped_with_undelivered_events", note="they are delivered on restart")
        await self._flush()
        await self._close_resources()
        log.info("stopped")

    async def _close_resources(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await self.client.aclose()
        self.store.close()
