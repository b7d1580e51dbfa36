"""Building the daemon from ``Settings``, and its lifecycle: start, run until signalled, drain.

Start order makes ``/metrics`` truthful from the first scrape: stored states are loaded and
rendered (with ``up`` 0) before the server listens, and the first poll of each job diffs against
the stored state, so a restart neither re-announces jobs nor misses what changed while down.

Stop order is the reverse of the data flow (arq's worker shutdown is the model): stop
scheduling, let in-flight polls finish within a grace period, let the sinks drain the outbox
within the same budget, then close the server, the HTTP clients and the database.

Targets (``config/targets.py``): one client and one discovery per target, one book, one poller
(shared slots), one scheduler and one sharding rule for all of them. A single-project config
is one implicit target named "".
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

import httpx
import structlog
from aiohttp import web

from monitor.config.loading import load_settings
from monitor.config.settings import DiscoverySettings, JobSettings, Settings, split_listen
from monitor.config.targets import Target, targets_of
from monitor.daemon.bulk import BulkRounds
from monitor.daemon.discovery import Discovery
from monitor.daemon.jobs import JobBook
from monitor.daemon.page_data import PageData
from monitor.daemon.poller import Poller
from monitor.daemon.pruning import start_pruning
from monitor.daemon.reports import readiness
from monitor.daemon.scheduler import PollScheduler
from monitor.daemon.sharding import owns
from monitor.daemon.targets import Pauses, Scope, job_changed, restart_reasons, running_targets
from monitor.daemon.usage import UsagePoller
from monitor.daemon.wiring import build_client, build_throttle
from monitor.delivery.dispatcher import Dispatcher
from monitor.delivery.sinks import Sink, build_sinks
from monitor.errors import ConfigError, ListenError, StateError
from monitor.exposition.own import MonitorMetrics
from monitor.exposition.series import SeriesStore
from monitor.logs import get_logger
from monitor.modelarts.client import ModelArtsClient
from monitor.store.database import Store
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
        self.targets: tuple[Target, ...] = targets_of(settings)
        """The running targets (a reload changes their jobs, labels, poll and discovery)."""
        self.discoveries: dict[str, Discovery] = {}
        self._discovery_tasks: dict[str, asyncio.Task[None]] = {}
        self.clients: dict[str, ModelArtsClient] = {}
        self.pauses = Pauses()

    async def start(self) -> None:
        """Raises ``StateError`` if the database is unusable; nothing is left running then."""
        s = self.settings
        # The clients first: a bad CA bundle is a ConfigError before anything is opened.
        try:
            for target in self.targets:
                throttle = self.pauses.add(target.name, build_throttle(target))
                self.clients[target.name] = build_client(target, self._transport, throttle)
            self.store = Store(s.state.path)
        except Exception:
            await self._close_clients()
            raise
        try:
            states = await self.store.call(self.store.load_states)
            last_success = await self.store.call(self.store.load_last_success)
            discovered = {
                t.name: await self.store.call(self.store.load_discovered, t.name)
                for t in self.targets
                if t.discovery is not None
            }
        except Exception:
            self.store.close()
            await self._close_clients()
            raise
        for job_id, why in self.store.unreadable.items():
            log.error("stored_state_unreadable", job_id=job_id, error=why, note="starts afresh")
        self.series = SeriesStore(project_id=self.targets[0].project_id, exposure=s.metrics)
        self.metrics = MonitorMetrics([t.name for t in self.targets if t.name])
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
            on_skip=lambda reason, count: self.metrics.polls_skipped.labels(reason).inc(count),
        )
        self.book = JobBook(
            store=self.store,
            series=self.series,
            metrics=self.metrics,
            dispatcher=self.dispatcher,
            scopes=[Scope.of(t) for t in self.targets],
            schedule=self.scheduler.plan,
            clock=self._clock,
        )
        self.poller = Poller(
            client=self.clients,
            book=self.book,
            metrics=self.metrics,
            concurrency=s.poll.concurrency,
            slow_after=min(t.api.timeout for t in self.targets) / 2,
            reasons=s.reasons,
            clock=self._clock,
            pauses=self.pauses,
        )
        for name, client in self.clients.items():
            client.count_requests(functools.partial(self.metrics.count_request, name))
        self.bulk = BulkRounds(
            book=self.book, poller=self.poller, clients=self.clients, clock=self._clock
        )
        self.book.restore(states, last_success)
        owned = self._owned(self.targets)
        for target, job in owned.values():
            self.book.watch(job.id, job.labels, target.interval_for(job), target.name)
        for target in self.targets:
            if target.discovery is not None:
                found = self._build_discovery(target, target.discovery)
                self.discoveries[target.name] = found
                await found.restore(discovered.get(target.name, {}))

        host, port = split_listen(s.server.listen)
        pages = PageData(self.book, self.store, self.series, self._target, self._clock)
        om = functools.partial(self.render_metrics, True)
        app = create_app(metrics=self.render_metrics, openmetrics=om, ready=self.ready, pages=pages)
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
        self.scheduler.start(self.bulk.poll)
        await self.bulk.configure(self.targets)
        self._housekeeping = asyncio.create_task(self._housekeep(), name="housekeeping")
        self._pruning = start_pruning(self.store, s.events.journal, sinks, self._clock)
        self._start_discovery()
        self._usage_task: asyncio.Task[None] | None = None
        if s.usage.enabled:
            self.usage = UsagePoller(
                client=self.poller.client_of,
                book=self.book,
                metrics=self.metrics,
                settings=s.usage,
                pauses=self.pauses,
            )
            self._usage_task = asyncio.create_task(self.usage.run(), name="usage")
        log.info(
            "started",
            jobs=len(owned),
            **({"targets": [t.name for t in self.targets]} if self.targets[0].name else {}),
            shard=f"{s.shard.index}/{s.shard.total}",
            discovery=bool(self.discoveries),
            restored=len(states),
            listen=f"{host}:{self.port}",
            state=s.state.path,
        )

    # -- sharding and discovery ------------------------------------------------------------

    def _owns(self, job_id: str) -> bool:
        return owns(job_id, self.settings.shard.index, self.settings.shard.total)

    def _owned(self, targets: Sequence[Target]) -> dict[str, tuple[Target, JobSettings]]:
        """The configured jobs this shard watches, each with its target."""
        return {j.id: (t, j) for t in targets for j in t.jobs if self._owns(j.id)}

    def _build_discovery(self, target: Target, settings: DiscoverySettings) -> Discovery:
        name = target.name
        return Discovery(
            settings,
            search=self.clients[name].search_jobs,
            store=self.store,
            watch=lambda job_id, labels: self._watch_discovered(name, job_id, labels),
            watching=self.book.__contains__,
            owns=self._owns,
            configured=lambda: {j.id for t in self.targets for j in t.jobs},
            expired=lambda job_id: self._gone_too_long(name, job_id),
            unwatch=self.book.unwatch,
            clock=self._clock,
            target=name,
        )

    def _target(self, name: str) -> Target:
        return next(t for t in self.targets if t.name == name)

    def _watch_discovered(self, target: str, job_id: str, labels: Mapping[str, str]) -> bool:
        view = self.book.view(job_id)
        if view is not None and view.target != target:
            return False  # the same id found in two projects: the first target keeps it
        return self.book.watch(job_id, labels, self._target(target).poll.interval, target)

    def _gone_too_long(self, target: str, job_id: str) -> bool:
        gone = self.book.gone_for(job_id)
        return gone is not None and gone >= self._target(target).poll.not_found_retention

    def _start_discovery(self) -> None:
        for name, discovery in self.discoveries.items():
            if name not in self._discovery_tasks:
                # The task copies this context: its log lines name the target.
                with structlog.contextvars.bound_contextvars(**({"target": name} if name else {})):
                    task = asyncio.create_task(discovery.run(), name=f"discovery {name}".strip())
                self._discovery_tasks[name] = task

    async def _stop_discovery(self, name: str | None = None) -> None:
        """Stop one target's discovery rounds, or every target's."""
        for key in [name] if name is not None else list(self._discovery_tasks):
            task = self._discovery_tasks.pop(key, None)
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _reload_discovery(self, target: Target) -> None:
        """A target's discovery turned on, off or changed by a reload. Turned off, the jobs
        it found stay watched until their lifecycle retires them (or the next restart)."""
        new, running = target.discovery, self.discoveries.get(target.name)
        if new is None:
            await self._stop_discovery(target.name)
            self.discoveries.pop(target.name, None)
        elif running is None:
            try:
                stored = await self.store.call(self.store.load_discovered, target.name)
            except StateError as exc:
                log.error("discovery_store_failed", error=str(exc))
                stored = {}
            self.discoveries[target.name] = self._build_discovery(target, new)
            await self.discoveries[target.name].restore(stored)
            self._start_discovery()
        elif new != running.settings:
            running.configure(new)

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

    def render_metrics(self, openmetrics: bool = False) -> Iterator[bytes | memoryview]:
        yield from self.series.scrape(openmetrics=openmetrics)
        yield self.metrics.render(openmetrics=openmetrics)  # OpenMetrics: ends with # EOF

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
        old, wanted = self.settings, targets_of(new)
        static = [k for k in RESTART_SECTIONS if getattr(new, k) != getattr(old, k)]
        static += restart_reasons(self.targets, wanted)
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
        before = self._owned(self.targets)
        self.targets = running_targets(self.targets, wanted)
        self.book.configure(Scope.of(t) for t in self.targets)
        self.poller.configure(new.reasons)
        await self.bulk.configure(self.targets)
        after = self._owned(self.targets)
        for job_id in before.keys() - after.keys():
            self.book.unwatch(job_id)
        for target, job in after.values():
            self.book.watch(job.id, job.labels, target.interval_for(job), target.name)
        for target in self.targets:
            await self._reload_discovery(target)
        for discovery in self.discoveries.values():
            # A job dropped from the config that discovery found stays, with its found labels.
            await discovery.reconcile()
        log.info(
            "reloaded",
            added=sorted(after.keys() - before.keys()),
            removed=sorted(before.keys() - after.keys()),
            changed=sorted(
                j for j in after.keys() & before.keys() if job_changed(after[j], before[j])
            ),
        )
        return True

    async def stop(self, grace: float = 10.0) -> None:
        deadline = time.monotonic() + grace
        self._housekeeping.cancel()
        self._pruning.cancel()
        if self._usage_task is not None:
            self._usage_task.cancel()
            await asyncio.gather(self._usage_task, return_exceptions=True)
        await self._stop_discovery()
        await self.bulk.stop()
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
        await self._close_clients()
        self.store.close()

    async def _close_clients(self) -> None:
        for client in self.clients.values():
            await client.aclose()
