"""Where events go: log, console, file and webhook sinks.

A sink takes a batch of CloudEvents dictionaries (exactly as written to the outbox) and either
takes them all, refuses some for good (``Rejected``: the receiver said the event itself is bad,
so retrying cannot help), or raises ``DeliveryError`` saying how many at the head of the batch
went out; the dispatcher retries the rest. Sinks know nothing of the outbox or of retries.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

import httpx

from monitor.config.settings import (
    ConsoleSinkSettings,
    FileSinkSettings,
    LogSinkSettings,
    SinkSettings,
    WebhookSinkSettings,
)
from monitor.core.events import TYPE_PREFIX
from monitor.logs import get_logger

CloudEvent = Mapping[str, Any]
log = get_logger("monitor.sinks")


@dataclass(frozen=True, slots=True)
class Rejected:
    """The receiver refused this event for good; it is counted and logged, never retried."""

    event_id: str
    reason: str


class DeliveryError(Exception):
    """The sink could not take the batch; the first ``taken`` events are done with (sent, or
    in ``rejected``), the rest must be retried."""

    def __init__(self, message: str, *, taken: int = 0, rejected: Sequence[Rejected] = ()) -> None:
        super().__init__(message)
        self.taken = taken
        self.rejected = list(rejected)


class Sink(Protocol):
    name: str
    """Stable identity of the sink's outbox position and its ``sink`` label; never a secret."""

    async def deliver(self, batch: Sequence[CloudEvent]) -> list[Rejected]:
        """Take every event of ``batch`` (returning those refused for good) or raise."""

    async def aclose(self) -> None: ...


class LogSink:
    name = "log"

    async def deliver(self, batch: Sequence[CloudEvent]) -> list[Rejected]:
        for event in batch:
            data = dict(event["data"])
            log.info(
                event["type"],
                event_id=event["id"],
                event_time=event["time"],
                **data,
            )
        return []

    async def aclose(self) -> None:
        return None


class ConsoleSink:
    """One readable line per event, for people watching a terminal (``demo``)."""

    name = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout

    async def deliver(self, batch: Sequence[CloudEvent]) -> list[Rejected]:
        for event in batch:
            self._stream.write(describe(event) + "\n")
        self._stream.flush()
        return []

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

    async def deliver(self, batch: Sequence[CloudEvent]) -> list[Rejected]:
        try:
            await asyncio.to_thread(self._write, batch)
        except OSError as exc:  # disk full, permissions: the receiver's trouble, retried
            raise DeliveryError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        return []

    async def aclose(self) -> None:
        return None


class WebhookSink:
    """HTTP POST of CloudEvents: one per request (``application/cloudevents+json``), or a batch
    per request (``application/cloudevents-batch+json``).

    2xx is taken. 408, 429, 5xx, redirects and network errors are worth retrying. Any other
    4xx means the receiver refuses the event itself; retrying forever would only block every
    later event, so it is reported as rejected, with the status and a bounded excerpt of the
    reply. The URL may carry a token, so it never appears in names, labels or log lines.
    """

    def __init__(
        self,
        url: str,
        *,
        name: str = "webhook",
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        batch: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self._url = url
        self._batch = batch
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            headers={"User-Agent": "modelarts-monitor", **(headers or {})},
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"WebhookSink(name={self.name!r})"

    async def deliver(self, batch: Sequence[CloudEvent]) -> list[Rejected]:
        if self._batch:
            refusal = await self._post(list(batch), "application/cloudevents-batch+json", 0)
            return [Rejected(e["id"], refusal) for e in batch] if refusal else []
        rejected: list[Rejected] = []
        for taken, event in enumerate(batch):
            try:
                refusal = await self._post(event, "application/cloudevents+json", taken)
            except DeliveryError as exc:
                exc.rejected = rejected
                raise
            if refusal:
                rejected.append(Rejected(event["id"], refusal))
        return rejected

    async def _post(self, body: object, content_type: str, taken: int) -> str | None:
        """None when taken, the refusal when rejected for good; raises when worth retrying."""
        try:
            response = await self._http.post(
                self._url,
                content=json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(),
                headers={"Content-Type": content_type},
            )
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}", taken=taken) from exc
        status = response.status_code
        if 200 <= status < 300:
            return None
        reply = " ".join(response.text.split())[:200]
        if status in (408, 429) or status >= 500 or status < 400:
            raise DeliveryError(f"HTTP {status}: {reply}", taken=taken)
        return f"HTTP {status}: {reply}"

    async def aclose(self) -> None:
        await self._http.aclose()


def build_sinks(settings: Sequence[SinkSettings]) -> list[Sink]:
    """Sinks from config, each with a stable, unique name (its ``name`` key, or its type)."""
    sinks: list[Sink] = []
    counts: dict[str, int] = {}
    for item in settings:
        base = item.name or (
            f"file:{item.path}" if isinstance(item, FileSinkSettings) else item.type
        )
        counts[base] = counts.get(base, 0) + 1
        name = base if counts[base] == 1 else f"{base}-{counts[base]}"
        sinks.append(_build(item, name))
    return sinks


def _build(item: SinkSettings, name: str) -> Sink:
    sink: Sink
    if isinstance(item, LogSinkSettings):
        sink = LogSink()
    elif isinstance(item, ConsoleSinkSettings):
        sink = ConsoleSink()
    elif isinstance(item, FileSinkSettings):
        sink = FileSink(item.path)
    elif isinstance(item, WebhookSinkSettings):
        return WebhookSink(
            item.url.get_secret_value(),
            name=name,
            headers={k: v.get_secret_value() for k, v in item.headers.items()},
            timeout=item.timeout,
            batch=item.batch,
        )
    else:
        raise AssertionError(f"unhandled sink settings {type(item).__name__}")
    sink.name = name
    return sink


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
    elif kind == "hang_suspected":
        detail = f"every accelerator idle for {data['window_seconds']:g} s while Running"
    elif kind == "hang_cleared":
        detail = f"accelerators busy again after {data['idle_seconds']:.0f} s idle"
    else:
        detail = json.dumps(data, ensure_ascii=False)
    clock = str(event["time"])[11:19]
    return f"{clock}  {data['job_name'] or data['job_id']:<20}  {kind:<24}  {detail}"
