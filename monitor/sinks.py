"""Delivering outbox events to sinks, at least once, in order.

Each sink gets its own worker task and its own position in the outbox (``Store.pending`` /
``Store.ack``), so a slow or failing sink never holds back another one, nor the polls. A batch is
acknowledged only after the sink has taken all of it; if the process dies in between, the batch
is delivered again on restart, and consumers de-duplicate on the CloudEvents ``id``.

Events travel as CloudEvents dictionaries, exactly as they were written to the outbox.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TextIO

from monitor.config import ConsoleSinkSettings, FileSinkSettings, LogSinkSettings, SinkSettings
from monitor.events import TYPE_PREFIX
from monitor.logs import get_logger
from monitor.store import Store

CloudEvent = Mapping[str, Any]
log = get_logger("monitor.sinks")


class Sink(Protocol):
    name: str
    """Stable identity of the sink's outbox position; survives restarts and reordering."""

    async def deliver(self, batch: Sequence[CloudEvent]) -> None:
        """Take every event of ``batch`` or raise; partial success is retried whole."""

    async def aclose(self) -> None: ...


class LogSink:
    name = "log"

    async def deliver(self, batch: Sequence[CloudEvent]) -> None:
        for event in batch:
            data = dict(event["data"])
            log.info(
                event["type"],
                event_id=event["id"],
                event_time=event["time"],
                **data,
            )

    async def aclose(self) -> None:
        return None


class ConsoleSink:
    """One readable line per event, for people watching a terminal (``demo``)."""

    name = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout

    async def deliver(self, batch: Sequence[CloudEvent]) -> None:
        for event in batch:
            self._stream.write(describe(event) + "\n")
        self._stream.flush()

    async def aclose(self) -> None:
        return None


class FileSink:
    """JSON lines, one CloudEvent per line, flushed per event so ``tail -f`` sees it at once."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.name = f"file:{self.path}"

    def _write(self, batch: Sequence[CloudEvent]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            for event in batch:
                fh.write(json.dumps(event, separators=(",", ":"), ensure_ascii=False) + "\n")
                fh.flush()

    async def deliver(self, batch: Sequence[CloudEvent]) -> None:
        await asyncio.to_thread(self._write, batch)

    async def aclose(self) -> None:
        return None


def build_sink(settings: SinkSettings) -> Sink:
    if isinstance(settings, LogSinkSettings):
        return LogSink()
    if isinstance(settings, ConsoleSinkSettings):
        return ConsoleSink()
    if isinstance(settings, FileSinkSettings):
        return FileSink(settings.path)
    raise AssertionError(f"unhandled sink settings {settings!r}")


def describe(event: CloudEvent) -> str:
    """``12:00:01  bert-pretrain  phase_changed  Pending -> Running``."""
    data = event["data"]
    kind = str(event["type"]).removeprefix(TYPE_PREFIX)
    if kind in ("phase_changed", "secondary_phase_changed", "nodes_changed"):
        detail = f"{data['from']} -> {data['to']}"
    elif kind == "discovered":
        detail = f"phase {data['phase']} ({data['secondary_phase']})"
    elif kind == "run_started":
        detail = f"run #{data['index']} started ({data['start_type']})"
    elif kind == "run_ended":
        detail = f"run #{data['index']} ended: {data['end_reason'] or 'no reason given'}"
        if data.get("end_recover"):
            detail += f"; recovery {data['end_recover']}"
        if data.get("end_related_task"):
            detail += f" (task {data['end_related_task']})"
    elif kind == "task_failed":
        detail = f"task {data['task']} exited with {data['exit_code']}: {data['message']}"
    elif kind == "not_found":
        detail = "the API says the job no longer exists"
    else:
        detail = json.dumps(data, ensure_ascii=False)
    clock = str(event["time"])[11:19]
    return f"{clock}  {data['job_name'] or data['job_id']:<20}  {kind:<24}  {detail}"


class Dispatcher:
    """One worker per sink, draining the outbox in order, retrying with back-off."""

    def __init__(
        self,
        store: Store,
        sinks: Sequence[Sink],
        *,
        batch_size: int = 100,
        max_backoff: float = 60.0,
    ) -> None:
        self._store = store
        self._sinks = list(sinks)
        self._names = [s.name for s in self._sinks]
        if len(set(self._names)) != len(self._names):
            raise ValueError(f"two sinks share a name: {self._names}")
        self._batch = batch_size
        self._max_backoff = max_backoff
        self._wake = {s.name: asyncio.Event() for s in self._sinks}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def start(self) -> None:
        for sink in self._sinks:
            self._tasks.append(asyncio.create_task(self._run(sink), name=f"sink:{sink.name}"))
        self.notify()

    def notify(self) -> None:
        """New events are in the outbox."""
        for wake in self._wake.values():
            wake.set()

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
        wake = self._wake[sink.name]
        while True:
            wake.clear()
            try:
                batch = await self._store.call(self._store.pending, sink.name, self._batch)
                if batch:
                    await sink.deliver([body for _, body in batch])
                    await self._store.call(self._store.ack, sink.name, batch[-1][0], self._names)
            except Exception as exc:
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
            failures = 0
            if not batch:
                if self._stopping:
                    return
                await wake.wait()

    def _backoff(self, failures: int) -> float:
        """Exponential with full jitter, so many monitors do not retry in lock-step."""
        ceiling = min(self._max_backoff, 0.5 * 2 ** min(failures, 16))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography
