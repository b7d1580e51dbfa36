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
import signal
import time
from collections.abc import Callable, Sequence

import httpx
from aiohttp import web

from monitor.config import Settings, load_settings, split_listen
from monitor.dispatcher import Dispatcher
from monitor.errors import ConfigError, StateError
from monitor.logs import get_logger
from monitor.metrics import MonitorMetrics, SeriesStore
from monitor.modelarts.auth import AkSkAuth
from monitor.modelarts.client import ModelArtsClient, tls_verify
from monitor.modelarts.iam import TokenAuth
from monitor.modelarts.throttle import Throttle
from monitor.poller import Poller
from monitor.scheduler import PollScheduler
from monitor.server import JobRow, create_app
from monitor.sinks import Sink, build_sinks
from monitor.store import Store

log = get_logger("monitor.app")
RESTART_SECTIONS = ("api", "auth", "state", "events", "server", "log")
"""Config sections a reload cannot change in a running process (connections, files, ports)."""
HOUSEKEEPING_SECONDS = 5.0
"""How often poll times are written to the store and sink backlogs recounted."""


def build_auth(settings: Settings) -> httpx.Auth | None:
    auth = settings.auth
    if auth.type == "aksk":
        return AkSkAuth(auth.ak, auth.sk.get_secret_value(), project_id=settings.api.project_id)
    if auth.type == "token":
        return TokenAuth(
            settings.iam_endpoint(),
            user=auth.user,
            password=auth.password.get_secret_value(),
            domain=auth.domain,
            project_id=settings.api.project_id,
            refresh_before=auth.refresh_before,
        )
    return None


def build_client(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> ModelArtsClient:
    return ModelArtsClient(
        settings.api.endpoint,
        settings.api.project_id,
        auth=build_auth(settings),
        timeout=settings.api.timeout,
        max_connections=settings.poll.concurrency,
        verify=tls_verify(settings.api.ca_file, settings.api.insecure_skip_verify),
        throttle=Throttle(settings.poll.rate_limit, max_pause=settings.poll.retry.max_backoff),
        transport=transport,
    )


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

    async def start(self) -> None:
        """Raises ``StateError`` if the database is unusable; nothing is left running then."""
        s = self.settings
        self.store = Store(s.state.path)
        try:
            states = await self.store.call(self.store.load_states)
            last_success = await self.store.call(self.store.load_last_success)
        except Exception:
            self.store.close()
            raise
        self.client = build_client(s, self._transport)
        self.series = SeriesStore()
        self.metrics = MonitorMetrics()
        sinks = self._sinks if self._sinks is not None else build_sinks(s.events.sinks)
        self.dispatcher = Dispatcher(
            self.store,
            sinks,
            metrics=self.metrics,
            max_backoff=s.events.max_backoff,
            limit=s.events.outbox_limit,
        )
        self.scheduler = PollScheduler(
            self.poller_poll, on_skip=lambda reason: self.metrics.polls_skipped.labels(reason).inc()
        )
        self.poller = Poller(
            client=self.client,
            store=self.store,
            series=self.series,
            metrics=self.metrics,
            dispatcher=self.dispatcher,
            project_id=s.api.project_id,
            concurrency=s.poll.concurrency,
            slow_after=s.api.timeout / 2,
            poll_settings=s.poll,
            schedule=self._schedule,
            clock=self._clock,
        )
        self.poller.restore(states, last_success)
        for job in s.jobs:
            self.poller.watch(job.id, job.labels, s.interval_for(job))

        host, port = split_listen(s.server.listen)
        app = create_app(
            metrics=self.render_metrics, ready=self.poller.ready, overview=self.overview
        )
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except OSError:
            await self._close_resources()
            raise
        self.port = self._runner.addresses[0][1]
        self.dispatcher.start()
        self.scheduler.start()
        self._housekeeping = asyncio.create_task(self._housekeep(), name="housekeeping")
        log.info(
            "started",
            jobs=len(s.jobs),
            restored=len(states),
            listen=f"{host}:{self.port}",
            state=s.state.path,
        )

    async def poller_poll(self, job_id: str) -> None:
        await self.poller.poll(job_id)

    def _schedule(self, job_id: str, interval: float | None, initial: bool) -> None:
        if interval is None:
            self.scheduler.remove(job_id)
            return
        jitter = self.settings.jitter_for_interval(interval)
        # A first poll comes soon; a changed interval (terminal, gone) starts from now.
        self.scheduler.add(
            job_id, interval, jitter, first_within=min(1.0, interval) if initial else interval
        )

    def ready(self) -> tuple[bool, str]:
        ok, reason = self.poller.ready()
        if not ok:
            return ok, reason
        if over := self.dispatcher.over_limit():
            return False, f"event outbox over its limit for sinks: {', '.join(over)}"
        return True, "ok"

    async def _housekeep(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_SECONDS)
            await self._flush()

    async def _flush(self) -> None:
        successes = self.poller.take_successes()
        try:
            await self.store.call(self.store.record_success, successes)
            await self.dispatcher.refresh_pending()
        except StateError as exc:
            log.error("housekeeping_failed", error=str(exc))
        except Exception:  # housekeeping must outlive a bug in itself
            log.exception("housekeeping_crashed")

    def render_metrics(self) -> bytes:
        return self.series.render() + self.metrics.render()

    def overview(self) -> list[JobRow]:
        rows = []
        for job_id in self.poller.labels:
            state = self.poller.states.get(job_id)
            health = self.poller.health[job_id]
            snap = state.snapshot if state else None
            rows.append(
                JobRow(
                    job_id=job_id,
                    name=snap.name if snap else "",
                    phase=snap.phase if snap else "",
                    secondary_phase=snap.secondary_phase if snap else "",
                    up=health.up,
                    last_success=health.last_success,
                    restarts=sum(state.restarts.values()) if state else 0,
                )
            )
        return rows

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
        self.settings = old.model_copy(update={"jobs": new.jobs, "poll": new.poll})
        self.poller.configure(new.poll)
        before = {j.id: j for j in old.jobs}
        after = {j.id: j for j in new.jobs}
        for job_id in before.keys() - after.keys():
            self.scheduler.remove(job_id)
            self.poller.unwatch(job_id)
        for job in new.jobs:
            self.poller.watch(job.id, job.labels, self.settings.interval_for(job))
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
