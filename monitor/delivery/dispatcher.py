"""Draining the outbox into the sinks: at least once, in order, never blocking the polls.

Each sink gets its own worker task and its own position in the outbox (``Store.next_batch`` /
``Store.ack``), so a slow or failing sink holds back neither the polls nor another sink. A
position moves only past events the sink has taken (or can never take); if the process dies in
between, those events are delivered again on restart, and consumers de-duplicate on the
CloudEvents ``id``. A failing sink is retried with exponential back-off and full jitter.

An event a sink can never take (``Rejected``: refused for good by the receiver, or impossible to
serialize for that sink) becomes one of that sink's dead letters: stored with its reason in the
same transaction that moves the sink past it, counted (``dead_letters_total``, and ``rejected``
in ``event_deliveries_total``: the two always move together), logged once
(``event_dead_lettered``), shown by ``status``; the sink goes on with the next event.

The outbox never drops an event. If a sink falls behind by more than ``limit`` events the
dispatcher says so loudly instead: an error log line, ``modelarts_monitor_outbox_pending``, and a
failing ``/readyz``.

A batch costs two calls to the database thread, each also answering with the sink's backlog:
the read (``next_batch``: the events and the count before the attempt) and the acknowledgement
(``ack``: the count after it, from the same transaction, so events committed while the batch
was out are in it). Each call costs both threads CPU, and in a first round at 10,000 jobs the
polls compete with the delivery of every job's ``discovered`` event for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from monitor.core.backoff import backoff_delay
from monitor.delivery.sinks import DeliveryError, Rejected, Sink
from monitor.errors import StateError
from monitor.exposition.own import MonitorMetrics
from monitor.logs import get_logger
from monitor.store.database import Store

log = get_logger("monitor.dispatcher")


class Dispatcher:
    def __init__(
        self,
        store: Store,
        sinks: Sequence[Sink],
        *,
        metrics: MonitorMetrics | None = None,
        batch_size: int = 100,
        max_backoff: float = 60.0,
        limit: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._sinks = list(sinks)
        self._names = [s.name for s in self._sinks]
        if len(set(self._names)) != len(self._names):
            raise ValueError(f"two sinks share a name: {self._names}")
        self._metrics = metrics or MonitorMetrics()
        self._batch = batch_size
        self._max_backoff = max_backoff
        self._limit = limit
        self._clock = clock
        self._wake = {s.name: asyncio.Event() for s in self._sinks}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._pending: dict[str, int] = dict.fromkeys(self._names, 0)
        self._over: set[str] = set()
        for name in self._names:
            self._metrics.add_sink(name)

    def start(self) -> None:
        for sink in self._sinks:
            self._tasks.append(asyncio.create_task(self._run(sink), name=f"sink:{sink.name}"))
        self.notify()

    def notify(self) -> None:
        """New events are in the outbox."""
        for wake in self._wake.values():
            wake.set()

    @property
    def limit(self) -> int:
        """The backlog above which a sink is reported (``events.outbox_limit``)."""
        return self._limit

    def backlog(self) -> dict[str, int]:
        """Each sink's events not taken yet, as last counted."""
        return dict(self._pending)

    def over_limit(self) -> list[str]:
        """Sinks whose backlog is above the configured limit."""
        return sorted(self._over)

    async def refresh_pending(self) -> None:
        """Recount each sink's backlog (also while a sink is stuck in back-off)."""
        for name in self._names:
            self._set_pending(name, await self._store.call(self._store.outbox_size, name))

    async def stop(self, grace: float) -> bool:
        """Deliver what is pending within ``grace`` seconds; True if everything went out."""
        self._stopping = True
        self.notify()
        pending: set[asyncio.Task[None]] = set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for sink in self._sinks:
            await sink.aclose()
        return not pending

    async def _run(self, sink: Sink) -> None:
        failures = 0
        crashed: str | None = None
        wake = self._wake[sink.name]
        while True:
            wake.clear()
            try:
                taken = await self._store.call(self._store.next_batch, sink.name, self._batch)
                batch = taken.events
                # Counted before each attempt: a failing sink is when the backlog matters.
                self._set_pending(sink.name, taken.backlog)
                if batch:
                    await self._deliver(sink, batch)
                    failures = 0
            except (DeliveryError, StateError, OSError) as exc:
                failures += 1
                delay = self._backoff(failures)
                log.warning(
                    "sink_delivery_failed",
                    sink=sink.name,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in_seconds=round(delay, 2),
                )
                # Even while stopping: keep retrying until ``stop`` cancels at the end of the
                # grace period, so a sink that gives up is reported as not drained.
                await asyncio.sleep(delay)
                continue
            except Exception as exc:
                # Not a receiver's failure but a bug in the sink (an event it cannot
                # serialize is a dead letter, not this): logged with its traceback once per
                # distinct error, then retried at the back-off cap so the events wait in the
                # outbox for the fix.
                crash = f"{type(exc).__name__}: {exc}"
                if crash != crashed:
                    log.exception("sink_crashed", sink=sink.name, error=crash)
                    crashed = crash
                self._metrics.deliveries.labels(sink.name, "retry").inc()
                await asyncio.sleep(self._max_backoff)
                continue
            crashed = None
            if not batch:
                if self._stopping:
                    return
                await wake.wait()

    async def _deliver(self, sink: Sink, batch: list[tuple[int, dict[str, object]]]) -> None:
        try:
            rejected = await sink.deliver([body for _, body in batch]) or []
        except DeliveryError as exc:
            if exc.taken:
                await self._done(sink.name, batch[: exc.taken], exc.rejected)
            self._metrics.deliveries.labels(sink.name, "retry").inc()
            raise
        await self._done(sink.name, batch, rejected)

    async def _done(
        self, sink: str, done: list[tuple[int, dict[str, object]]], rejected: Sequence[Rejected]
    ) -> None:
        """Move the sink past the events ``done``; those ``rejected`` become dead letters."""
        dead = [(r.event_id, r.reason) for r in rejected]
        left = await self._store.call(
            self._store.ack, sink, done[-1][0], self._names, dead, self._clock()
        )
        # Logged and counted once stored: a crash before that offers the event again.
        bodies = {body.get("id"): body for _, body in done}
        for refusal in rejected:
            body = bodies.get(refusal.event_id, {})
            log.error(
                "event_dead_lettered",
                sink=sink,
                event_id=refusal.event_id,
                type=body.get("type"),
                job_id=body.get("subject"),
                reason=refusal.reason,
            )
        self._metrics.dead_letters.labels(sink).inc(len(rejected))
        self._metrics.deliveries.labels(sink, "rejected").inc(len(rejected))
        self._metrics.deliveries.labels(sink, "ok").inc(len(done) - len(rejected))
        self._set_pending(sink, left)

    def _set_pending(self, name: str, count: int) -> None:
        self._pending[name] = count
        self._metrics.outbox_pending.labels(name).set(count)
        if count > self._limit and name not in self._over:
            self._over.add(name)
            log.error("outbox_over_limit", sink=name, pending=count, limit=self._limit)
        elif count <= self._limit and name in self._over:
            self._over.discard(name)
            log.info("outbox_back_under_limit", sink=name, pending=count, limit=self._limit)

    def _backoff(self, failures: int) -> float:
        return backoff_delay(failures, base=1.0, cap=self._max_backoff)
