"""Where events go: log, console, file and webhook sinks.

A sink takes a batch of CloudEvents dictionaries (exactly as written to the outbox) and either
takes them all, reports some it can never take (``Rejected``: the receiver refused the event
itself, or the event cannot be serialized for this sink, so retrying cannot help), or raises
``DeliveryError`` saying how many at the head of the batch are done with; the dispatcher retries
the rest and moves the rejected ones to the sink's dead letters. Each event is serialized on its
own (``render``), so one event that cannot be never costs the others of its batch. Sinks know
nothing of the outbox or of retries.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, TextIO, TypeVar

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
from monitor.store.files import make_private_dirs, open_private, report_loose

CloudEvent = Mapping[str, Any]
R = TypeVar("R")
log = get_logger("monitor.sinks")
REASON_LIMIT = 200
"""Characters of a refusal's reason kept: enough to say why, never a whole reply."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """This sink can never take this event; it becomes one of the sink's dead letters."""

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
        """Take every event of ``batch`` (returning those it can never take) or raise."""

    async def aclose(self) -> None: ...


def to_json(doc: object) -> bytes:
    """A CloudEvent (or a batch of them) as JSON in strict UTF-8, as the JSON sinks send it.

    Non-ASCII text stays readable; a lone surrogate (text no UTF-8 reader can take) raises
    ``UnicodeEncodeError`` instead of being written."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def render(event: CloudEvent, fn: Callable[[CloudEvent], R]) -> R | Rejected:
    """``fn(event)``: the event as this sink writes it, or why it never can be."""
    try:
        return fn(event)
    except (LookupError, TypeError, ValueError, RecursionError) as exc:
        # The event's own content is at fault (UnicodeEncodeError is a ValueError), and it
        # will be exactly as wrong on every retry.
        reason = f"cannot serialize for this sink: {type(exc).__name__}: {exc}"
        return Rejected(str(event.get("id", "")), reason[:REASON_LIMIT])


class LogSink:
    name = "log"

    async def deliver(self, batch: Sequence[CloudEvent]) -> list[Rejected]:
        rejected: list[Rejected] = []
        for event in batch:
            line = render(event, _log_line)
            if isinstance(line, Rejected):
                rejected.append(line)
                continue
            kind, fields = line
            log.info(kind, **fields)
        return rejected

    async def aclose(self) -> None:
        return None


def _log_line(event: CloudEvent) -> tuple[str, dict[str, Any]]:
    fields = {"event_id": event["id"], "event_time": event["time"], **dict(event["data"])}
    return str(event["type"]), fields


class ConsoleSink:
    """One readable line per event, for people watching a terminal (``demo``)."""

    name = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout
        self._encoding = getattr(self._stream, "encoding", None) or "utf-8"
        self._errors = getattr(self._stream, "errors", None) or "strict"

    def _line(self, event: CloudEvent) -> str:
        line = describe(event) + "\n"
        line.encode(self._encoding, self._errors)  # what the stream would fail on, found first
        return line

    async def deliver(self, batch: Sequence[CloudEvent]) -> list[Rejected]:
        rejected: list[Rejected] = []
        for event in batch:
            line = render(event, self._line)
            if isinstance(line, Rejected):
                rejected.append(line)
            else:
                self._stream.write(line)
        self._stream.flush()
        return rejected

    async def aclose(self) -> None:
        return None


class FileSink:
    """JSON lines, one CloudEvent per line, flushed per event so ``tail -f`` sees it at once.

    The file, and any directory the sink creates for it, is owner-only (``store/files.py``).
    It is opened for each batch, so a file moved away by log rotation comes back private.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.name = f"file:{self.path}"
        self._loose_reported = False

    def _open(self) -> IO[bytes]:
        make_private_dirs(self.path.parent)
        fd, mode = open_private(self.path, os.O_WRONLY | os.O_APPEND)
        if mode is None:
            self._loose_reported = False
        elif not self._loose_reported:
            report_loose(self.path, mode)
            self._loose_reported = True
        return os.fdopen(fd, "ab")

    def _write(self, batch: Sequence[CloudEvent]) -> list[Rejected]:
        rejected: list[Rejected] = []
        taken = 0
        try:
            with self._open() as fh:
                for event in batch:
                    line = render(event, to_json)
                    if isinstance(line, Rejected):
                        rejected.append(line)
                    else:
                        fh.write(line + b"\n")
                        fh.flush()
                    taken += 1
        except OSError as exc:  # disk full, permissions: the receiver's trouble, retried
            raise DeliveryError(
                f"cannot write {self.path}: {exc.strerror or exc}", taken=taken, rejected=rejected
            ) from exc
        return rejected

    async def deliver(self, batch: Sequence[CloudEvent]) -> list[Rejected]:
        return await asyncio.to_thread(self._write, batch)

    async def aclose(self) -> None:
        return None


class WebhookSink:
    """HTTP POST of CloudEvents: one per request (``application/cloudevents+json``), or a batch
    per request (``application/cloudevents-batch+json``).

    2xx is taken. 408, 429, 5xx, redirects and network errors are worth retrying. Any other
    4xx means the receiver refuses the event itself; retrying forever would only block every
    later event, so it is reported as rejected, with the status and a bounded excerpt of the
    reply. An event that cannot be serialized is never sent: rejected on its own, the rest of
    the batch goes out. The URL may carry a token, so it never appears in names, labels or
    log lines.
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
            return await self._deliver_batch(batch)
        rejected: list[Rejected] = []
        for taken, event in enumerate(batch):
            body = render(event, to_json)
            if isinstance(body, Rejected):
                rejected.append(body)
                continue
            try:
                refusal = await self._post(body, "application/cloudevents+json", taken)
            except DeliveryError as exc:
                exc.rejected = rejected
                raise
            if refusal:
                rejected.append(Rejected(event["id"], refusal))
        return rejected

    async def _deliver_batch(self, batch: Sequence[CloudEvent]) -> list[Rejected]:
        """One JSON array of the events that serialize; a refusal rejects all of those."""
        rejected: list[Rejected] = []
        sent: list[tuple[CloudEvent, bytes]] = []
        for event in batch:
            body = render(event, to_json)
            if isinstance(body, Rejected):
                rejected.append(body)
            else:
                sent.append((event, body))
        if not sent:
            return rejected
        array = b"[" + b",".join(body for _, body in sent) + b"]"
        refusal = await self._post(array, "application/cloudevents-batch+json", 0)
        if refusal:
            rejected += [Rejected(event["id"], refusal) for event, _ in sent]
        return rejected

    async def _post(self, body: bytes, content_type: str, taken: int) -> str | None:
        """None when taken, the refusal when rejected for good; raises when worth retrying."""
        try:
            response = await self._http.post(
                self._url, content=body, headers={"Content-Type": content_type}
            )
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}", taken=taken) from exc
        status = response.status_code
        if 200 <= status < 300:
            return None
        reply = " ".join(response.text.split())[:REASON_LIMIT]
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
