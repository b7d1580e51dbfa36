"""The daemon's job path as the tests build it: a real store, series, dispatcher and sink, the
job book and the poller, over an httpx mock transport standing in for ModelArts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from monitor.config.settings import PollSettings, ReasonSettings
from monitor.core.state import JobState
from monitor.daemon.handoff import Health
from monitor.daemon.jobs import JobBook
from monitor.daemon.poller import Poller
from monitor.daemon.reports import readiness
from monitor.delivery.dispatcher import Dispatcher
from monitor.delivery.sinks import CloudEvent
from monitor.exposition.own import MonitorMetrics
from monitor.exposition.series import SeriesStore
from monitor.modelarts.client import ModelArtsClient
from monitor.store import Store
from tests.conftest import SEED_ID

NOW = 1_800_000_000.0
LABELS = {"team": "nlp"}
Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the one sample ``name`` whose labels include ``labels``, or None."""
    found = [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    ]
    assert len(found) <= 1, f"{name} {labels} matches {len(found)} samples"
    return found[0] if found else None


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class ListSink:
    name = "list"

    def __init__(self) -> None:
        self.received: list[CloudEvent] = []

    async def deliver(self, batch: Sequence[CloudEvent]) -> None:
        self.received.extend(batch)

    async def aclose(self) -> None:
        return None

    def types(self) -> list[str]:
        return [str(e["type"]).removeprefix("modelarts.job.") for e in self.received]


@dataclass
class JobPath:
    book: JobBook
    poller: Poller
    store: Store
    series: SeriesStore
    metrics: MonitorMetrics
    dispatcher: Dispatcher
    client: ModelArtsClient
    sink: ListSink
    clock: Clock
    scheduled: list[tuple[str, float | None, bool]] = field(default_factory=list)

    def state(self, job_id: str = SEED_ID) -> JobState | None:
        view = self.book.view(job_id)
        return view.state if view else None

    def health(self, job_id: str = SEED_ID) -> Health:
        view = self.book.view(job_id)
        assert view is not None, f"{job_id} is not watched"
        return view.health

    def ready(self) -> tuple[bool, str]:
        return readiness(self.book, self.dispatcher)


@contextlib.asynccontextmanager
async def job_path(
    tmp_path: Path,
    handler: Handler,
    *,
    poll: PollSettings | None = None,
    reasons: ReasonSettings | None = None,
    timeout: float = 10.0,
    store: Store | None = None,
    watch: bool = True,
) -> AsyncIterator[JobPath]:
    """Everything wired as ``App`` wires it, but for the scheduler (its requests are recorded in
    ``scheduled``) and the network; SEED_ID is watched with LABELS unless ``watch`` is False."""
    client = ModelArtsClient(
        "https://modelarts.test", "proj", transport=httpx.MockTransport(handler), timeout=timeout
    )
    store = store or Store(tmp_path / "state.db")
    sink = ListSink()
    dispatcher = Dispatcher(store, [sink], max_backoff=0.05)
    series, metrics, clock = SeriesStore(), MonitorMetrics(), Clock()
    scheduled: list[tuple[str, float | None, bool]] = []
    book = JobBook(
        store=store,
        series=series,
        metrics=metrics,
        dispatcher=dispatcher,
        project_id="proj",
        poll=poll or PollSettings(),
        schedule=lambda job, interval, initial: scheduled.append((job, interval, initial)),
        clock=clock,
    )
    poller = Poller(
        client=client, book=book, metrics=metrics, concurrency=4, reasons=reasons, clock=clock
    )
    dispatcher.start()
    if watch:
        book.watch(SEED_ID, LABELS, poll.interval if poll else None)
    try:
        yield JobPath(
            book, poller, store, series, metrics, dispatcher, client, sink, clock, scheduled
        )
    finally:
        await asyncio.wait_for(dispatcher.stop(1), 5)
        await client.aclose()
        store.close()
