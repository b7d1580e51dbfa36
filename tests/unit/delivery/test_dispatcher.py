"""dispatcher.py with a real Store: positions, refusals, partial deliveries, the outbox limit,
independent sinks, restart semantics and back-off, as seen in metrics, logs and deliveries."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import pytest
from structlog.testing import capture_logs

from monitor.core.state import JobState
from monitor.delivery.dispatcher import Dispatcher
from monitor.delivery.sinks import CloudEvent, DeliveryError, FileSink, Rejected
from monitor.exposition.own import MonitorMetrics
from monitor.store.database import Store
from tests.conftest import SEED_ID, wait_for
from tests.unit.delivery.conftest import NOW, cloud, poisoned

OTHER_ID = "7c0d2f7e-0000-4000-8000-000000000002"
DELIVERIES = "modelarts_monitor_event_deliveries_total"
PENDING = "modelarts_monitor_outbox_pending"
DEAD = "modelarts_monitor_dead_letters_total"


def ids(docs: Sequence[CloudEvent]) -> list[str]:
    return [d["id"] for d in docs]


# -- sinks ------------------------------------------------------------------------------------


class ListSink:
    """Takes everything; remembers each batch it was given."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.batches: list[list[CloudEvent]] = []
        self.received: list[CloudEvent] = []
        self.attempts = 0

    async def deliver(self, batch: Sequence[CloudEvent]) -> list[Rejected]:
        self.attempts += 1
        self.batches.append(list(batch))
        self.received.extend(batch)
        return []

    async def aclose(self) -> None:
        return None


class RefusingSink(ListSink):
    """Refuses for good the events whose ids it is given, takes the others."""

    def __init__(self, name: str, refuse: set[str]) -> None:
        super().__init__(name)
        self.refuse = refuse

    async def deliver(self, batch: Sequence[CloudEvent]) -> list[Rejected]:
        await super().deliver(batch)
        return [Rejected(e["id"], "HTTP 422: bad event") for e in batch if e["id"] in self.refuse]


class PartialSink(ListSink):
    """On its first delivery takes only the first ``taken`` events, then raises."""

    def __init__(self, name: str, taken: int) -> None:
        super().__init__(name)
        self.taken = taken

    async def deliver(self, batch: Sequence[CloudEvent]) -> list[Rejected]:
        if self.attempts == 0:
            self.attempts += 1
            self.batches.append(list(batch))
            self.received.extend(batch[: self.taken])
            raise DeliveryError("HTTP 503: busy", taken=self.taken)
        return await super().deliver(batch)


class DownSink(ListSink):
    """Fails every delivery while ``down``."""

    def __init__(self, name: str, down: bool = True) -> None:
        super().__init__(name)
        self.down = down
        self.failures: list[float] = []

    async def deliver(self, batch: Sequence[CloudEvent]) -> list[Rejected]:
        if self.down:
            self.attempts += 1
            self.failures.append(time.monotonic())
            raise DeliveryError("ConnectError")
        return await super().deliver(batch)


class HangingSink(ListSink):
    """Takes ``before`` events normally; the receiver gets the next batch but never answers
    (the process is then stopped before the dispatcher could record the delivery)."""

    def __init__(self, name: str, before: int) -> None:
        super().__init__(name)
        self.before = before
        self.hanging = False

    async def deliver(self, batch: Sequence[CloudEvent]) -> list[Rejected]:
        if len(self.received) >= self.before:
            self.received.extend(batch)
            self.hanging = True
            await asyncio.Event().wait()
        return await super().deliver(batch)


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(tmp_path / "state.db")
    yield s
    s.close()


@pytest.fixture
def metrics() -> MonitorMetrics:
    return MonitorMetrics()


@pytest.fixture
async def started() -> AsyncIterator[list[Dispatcher]]:
    """Dispatchers a test starts; whatever is still running is stopped afterwards."""
    running: list[Dispatcher] = []
    yield running
    for d in running:
        await asyncio.wait_for(d.stop(0.1), 5)


def start(
    store: Store,
    sinks: Sequence[Any],
    started: list[Dispatcher],
    metrics: MonitorMetrics,
    **kw: Any,
) -> Dispatcher:
    kw.setdefault("max_backoff", 0.05)
    dispatcher = Dispatcher(store, sinks, metrics=metrics, **kw)
    dispatcher.start()
    started.append(dispatcher)
    return dispatcher


async def commit(store: Store, docs: Sequence[dict[str, Any]], job_id: str = SEED_ID) -> None:
    await store.call(store.commit, JobState(job_id=job_id), list(docs), NOW)


def delivered(metrics: MonitorMetrics, sink: str, result: str) -> float | None:
    return metrics.registry.get_sample_value(DELIVERIES, {"sink": sink, "result": result})


def pending_gauge(metrics: MonitorMetrics, sink: str) -> float | None:
    return metrics.registry.get_sample_value(PENDING, {"sink": sink})


def outbox_empty(store: Store, sink: str) -> Callable[[], Awaitable[bool]]:
    """Condition: ``sink`` has taken (or refused) everything in the outbox."""

    async def check() -> bool:
        return await store.call(store.outbox_size, sink) == 0

    return check


# -- dead letters -----------------------------------------------------------------------------


def dead_count(metrics: MonitorMetrics, sink: str) -> float | None:
    return metrics.registry.get_sample_value(DEAD, {"sink": sink})


async def test_refused_events_become_dead_letters_and_later_events_are_still_delivered(
    store: Store, metrics: MonitorMetrics, started: list[Dispatcher]
) -> None:
    docs = [cloud(n) for n in range(5)]
    refused = {docs[1]["id"], docs[3]["id"]}
    sink = RefusingSink("hook", refused)
    with capture_logs() as logs:
        dispatcher = start(store, [sink], started, metrics, clock=lambda: NOW + 99)
        await commit(store, docs)
        dispatcher.notify()
        await wait_for(lambda: len(sink.received) == 5)
        await wait_for(outbox_empty(store, "hook"))

        later = [cloud(n) for n in range(5, 7)]
        await commit(store, later)
        dispatcher.notify()
        await wait_for(lambda: len(sink.received) == 7)
        await wait_for(outbox_empty(store, "hook"))

    # The position moved past the refused events: they are never offered again.
    assert ids(sink.received) == ids(docs + later)
    assert await store.call(store.pending, "hook") == []
    (letters,) = await store.call(store.dead_letters)
    assert (letters.sink, letters.count) == ("hook", 2)
    assert [d.event_id for d in letters.newest] == [docs[3]["id"], docs[1]["id"]]  # newest first
    assert all(d.reason == "HTTP 422: bad event" and d.at == NOW + 99 for d in letters.newest)
    # Counted in both families, which move together: every rejected delivery is a dead letter.
    assert dead_count(metrics, "hook") == 2
    assert delivered(metrics, "hook", "rejected") == 2
    assert delivered(metrics, "hook", "ok") == 5
    assert delivered(metrics, "hook", "retry") == 0
    lines = [e for e in logs if e["event"] == "event_dead_lettered"]
    assert sorted(e["event_id"] for e in lines) == sorted(refused), "each logged exactly once"
    assert all(e["log_level"] == "error" and e["sink"] == "hook" for e in lines)
    assert all(e["reason"] == "HTTP 422: bad event" for e in lines)
    assert all(e["job_id"] == SEED_ID and e["type"] == docs[1]["type"] for e in lines)


async def test_a_file_sink_given_good_poisoned_good_delivers_both_good_ones_and_goes_on(
    tmp_path: Path, store: Store, metrics: MonitorMetrics, started: list[Dispatcher]
) -> None:
    """The poisoned event (a lone surrogate no UTF-8 file can hold) used to freeze the sink
    for good: the same batch retried forever, every later event waiting behind it."""
    path = tmp_path / "events.jsonl"
    sink = FileSink(str(path))
    good, bad, after = cloud(0), poisoned(1), cloud(2)
    with capture_logs() as logs:
        dispatcher = start(store, [sink], started, metrics)
        await commit(store, [good, bad, after])
        dispatcher.notify()
        await wait_for(outbox_empty(store, sink.name))
        later = [cloud(n) for n in range(3, 6)]
        await commit(store, later)
        dispatcher.notify()
        await wait_for(outbox_empty(store, sink.name))

    written = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert ids(written) == ids([good, after, *later])
    (letters,) = await store.call(store.dead_letters)
    assert letters.sink == sink.name
    assert [d.event_id for d in letters.newest] == [bad["id"]]
    assert letters.newest[0].reason.startswith("cannot serialize for this sink:")
    assert dead_count(metrics, sink.name) == 1
    assert delivered(metrics, sink.name, "ok") == 5
    assert delivered(metrics, sink.name, "rejected") == 1
    (line,) = [e for e in logs if e["event"] == "event_dead_lettered"]
    assert (line["event_id"], line["sink"]) == (bad["id"], sink.name)
    assert "surrogates not allowed" in line["reason"]
    assert not [e for e in logs if e["event"] in ("sink_crashed", "sink_delivery_failed")]
    # The event is kept exactly as the outbox held it, for whoever repairs it.
    db = sqlite3.connect(store.path)
    try:
        (body,) = db.execute("SELECT body FROM dead_letters").fetchone()
    finally:
        db.close()
    assert json.loads(body) == bad


async def test_every_sink_has_a_dead_letter_count_from_the_start(
    store: Store, metrics: MonitorMetrics
) -> None:
    """Pre-created at 0, so ``increase()`` sees the first dead letter of a fresh process."""
    Dispatcher(store, [ListSink("file"), ListSink("hook")], metrics=metrics)
    assert dead_count(metrics, "file") == 0
    assert dead_count(metrics, "hook") == 0


async def test_dead_letters_survive_a_restart_and_their_events_are_not_offered_again(
    tmp_path: Path, metrics: MonitorMetrics, started: list[Dispatcher]
) -> None:
    path = tmp_path / "state.db"
    first_store = Store(path)
    docs = [cloud(n) for n in range(3)]
    first = RefusingSink("hook", {docs[0]["id"]})
    dispatcher = start(first_store, [first], started, metrics)
    await commit(first_store, docs)
    dispatcher.notify()
    await wait_for(outbox_empty(first_store, "hook"))
    await asyncio.wait_for(dispatcher.stop(1), 5)
    started.remove(dispatcher)
    first_store.close()

    again = Store(path)
    try:
        second = ListSink("hook")
        restarted = start(again, [second], started, MonitorMetrics())
        await commit(again, [cloud(3)])
        restarted.notify()
        await wait_for(lambda: len(second.received) == 1)
        (letters,) = await again.call(again.dead_letters)
    finally:
        await asyncio.wait_for(restarted.stop(1), 5)
        started.remove(restarted)
        again.close()
    assert ids(second.received) == [cloud(3)["id"]]
    assert (letters.count, [d.event_id for d in letters.newest]) == (1, [docs[0]["id"]])


# -- partial deliveries -----------------------------------------------------------------------


async def test_after_a_partial_delivery_only_the_rest_is_retried_and_each_event_arrives_once(
    store: Store, metrics: MonitorMetrics, started: list[Dispatcher]
) -> None:
    docs = [cloud(n) for n in range(5)]
    await commit(store, docs)
    sink = PartialSink("hook", taken=2)

    start(store, [sink], started, metrics)
    await wait_for(lambda: len(sink.received) == 5)
    await wait_for(outbox_empty(store, "hook"))

    assert ids(sink.received) == ids(docs)  # exactly once each, in order
    assert [ids(b) for b in sink.batches] == [ids(docs), ids(docs[2:])]
    assert delivered(metrics, "hook", "ok") == 5
    assert delivered(metrics, "hook", "retry") == 1
    assert delivered(metrics, "hook", "rejected") == 0


# -- the outbox limit -------------------------------------------------------------------------


async def test_a_backlog_over_the_limit_is_reported_once_and_cleared_when_the_sink_drains(
    store: Store, metrics: MonitorMetrics, started: list[Dispatcher]
) -> None:
    sink = DownSink("hook")
    with capture_logs() as logs:
        dispatcher = start(store, [sink], started, metrics, limit=3)
        await commit(store, [cloud(n) for n in range(3)])
        dispatcher.notify()
        await wait_for(lambda: sink.attempts >= 1)
        await dispatcher.refresh_pending()
        assert dispatcher.over_limit() == []  # at the limit is not over it
        assert pending_gauge(metrics, "hook") == 3

        await commit(store, [cloud(n) for n in range(3, 5)])
        dispatcher.notify()
        await dispatcher.refresh_pending()
        assert dispatcher.over_limit() == ["hook"]
        assert pending_gauge(metrics, "hook") == 5
        await dispatcher.refresh_pending()  # still over: not logged a second time
        assert dispatcher.over_limit() == ["hook"]

        sink.down = False
        await wait_for(lambda: len(sink.received) == 5)
        await wait_for(lambda: dispatcher.over_limit() == [])
    assert pending_gauge(metrics, "hook") == 0

    over = [e for e in logs if e["event"] == "outbox_over_limit"]
    assert len(over) == 1
    assert over[0]["log_level"] == "error"
    assert (over[0]["sink"], over[0]["pending"], over[0]["limit"]) == ("hook", 5, 3)
    back = [e for e in logs if e["event"] == "outbox_back_under_limit"]
    assert len(back) == 1
    assert (back[0]["sink"], back[0]["pending"]) == ("hook", 0)


# -- independent sinks ------------------------------------------------------------------------


async def test_a_healthy_sink_gets_everything_promptly_while_another_keeps_failing(
    store: Store, metrics: MonitorMetrics, started: list[Dispatcher]
) -> None:
    failing, healthy = DownSink("hook"), ListSink("file")
    dispatcher = start(store, [failing, healthy], started, metrics, limit=3)
    docs = [cloud(n) for n in range(5)]

    began = time.monotonic()
    await commit(store, docs)
    dispatcher.notify()
    await wait_for(lambda: len(healthy.received) == 5, timeout=1.0)
    assert time.monotonic() - began < 1.0
    await wait_for(lambda: failing.attempts >= 3)
    await dispatcher.refresh_pending()

    assert ids(healthy.received) == ids(docs)
    assert failing.received == []
    assert dispatcher.over_limit() == ["hook"]
    assert pending_gauge(metrics, "file") == 0
    assert pending_gauge(metrics, "hook") == 5
    assert delivered(metrics, "file", "ok") == 5
    assert delivered(metrics, "file", "retry") == 0
    assert delivered(metrics, "hook", "ok") == 0
    assert (delivered(metrics, "hook", "retry") or 0) >= 3
    # Nothing is dropped for the failing sink while the healthy one moved on.
    assert await store.call(store.outbox_size) == 5


# -- order and restarts -----------------------------------------------------------------------


async def test_events_are_delivered_in_commit_order_across_commits_and_jobs(
    store: Store, metrics: MonitorMetrics, started: list[Dispatcher]
) -> None:
    sink = ListSink("hook")
    dispatcher = start(store, [sink], started, metrics, batch_size=2)
    committed: list[dict[str, Any]] = []
    for n in range(0, 9, 3):
        chunk = [cloud(n, SEED_ID), cloud(n + 1, OTHER_ID), cloud(n + 2, SEED_ID)]
        for doc in chunk:
            await commit(store, [doc], doc["subject"])
        committed.extend(chunk)
        dispatcher.notify()
    await wait_for(lambda: len(sink.received) == 9)

    assert ids(sink.received) == ids(committed)
    assert all(len(b) <= 2 for b in sink.batches)


async def test_after_a_restart_the_rest_is_delivered_and_acked_events_are_not_sent_again(
    store: Store, metrics: MonitorMetrics, started: list[Dispatcher]
) -> None:
    docs = [cloud(n) for n in range(6)]
    first = HangingSink("hook", before=2)
    dispatcher = start(store, [first], started, metrics, batch_size=2)
    for pair in (docs[0:2], docs[2:4], docs[4:6]):
        await commit(store, pair)
        dispatcher.notify()
    await wait_for(lambda: first.hanging)
    assert await asyncio.wait_for(dispatcher.stop(0.1), 5) is False  # stopped mid-way

    second = ListSink("hook")
    start(store, [second], started, MonitorMetrics(), batch_size=2)
    await wait_for(lambda: len(second.received) == 4)
    await wait_for(outbox_empty(store, "hook"))

    # Acked before the stop: never again. Sent but unacked: again (at least once), in order.
    assert ids(first.received) == ids(docs[:4])
    assert ids(second.received) == ids(docs[2:])
    assert await store.call(store.outbox_size) == 0


# -- database calls per batch -----------------------------------------------------------------

P = ParamSpec("P")
T = TypeVar("T")


class CountingStore(Store):
    """A real Store that names every call made to its database thread, and can hold one
    (the ``n``-th call of a method) until the test lets it run, to look between two calls."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.calls: list[str] = []
        self.hold: tuple[str, int] | None = None
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        name = getattr(fn, "__name__", repr(fn))
        self.calls.append(name)
        if self.hold == (name, self.calls.count(name)):
            self.holding.set()
            await self.release.wait()
        return await super().call(fn, *args, **kwargs)


@pytest.fixture
async def counting(tmp_path: Path) -> AsyncIterator[CountingStore]:
    s = CountingStore(tmp_path / "state.db")
    yield s
    s.close()


class ArrivingSink(ListSink):
    """Takes everything; while its first batch is out, three more events are committed (a
    poll round going on). Notes the backlog gauge as each attempt begins."""

    def __init__(self, name: str, store: Store, metrics: MonitorMetrics) -> None:
        super().__init__(name)
        self.store = store
        self.metrics = metrics
        self.gauge_at_attempt: list[float | None] = []

    async def deliver(self, batch: Sequence[CloudEvent]) -> list[Rejected]:
        self.gauge_at_attempt.append(pending_gauge(self.metrics, self.name))
        if self.attempts == 0:
            await commit(self.store, [cloud(n) for n in range(100, 103)])
        return await super().deliver(batch)


async def test_a_batch_costs_two_database_calls_the_read_and_the_ack(
    counting: CountingStore, metrics: MonitorMetrics, started: list[Dispatcher]
) -> None:
    """Each call to the database thread costs CPU on both threads; at 10,000 jobs a first
    round delivers 100 batches per sink while it polls."""
    docs = [cloud(n) for n in range(250)]
    counting.commit(JobState(job_id=SEED_ID), docs, NOW)
    sink = ListSink("hook")

    start(counting, [sink], started, metrics, batch_size=100)
    await wait_for(lambda: len(sink.received) == 250)
    await wait_for(lambda: counting.calls.count("next_batch") == 4)  # the last one finds none

    assert ids(sink.received) == ids(docs)
    assert counting.calls == ["next_batch", "ack"] * 3 + ["next_batch"]
    assert pending_gauge(metrics, "hook") == 0


async def test_the_backlog_shown_after_a_batch_counts_the_events_that_arrived_meanwhile(
    counting: CountingStore, metrics: MonitorMetrics, started: list[Dispatcher]
) -> None:
    """``outbox_pending`` before each attempt is the sink's whole backlog (the batch
    included); once the batch is taken it is the real count left, events committed while
    the batch was out included, not the earlier count less the batch."""
    await commit(counting, [cloud(n) for n in range(5)])
    sink = ArrivingSink("hook", counting, metrics)
    counting.hold = ("next_batch", 2)  # the read after the first ack waits for the test

    start(counting, [sink], started, metrics, batch_size=10)
    await wait_for(counting.holding.is_set)
    assert len(sink.received) == 5
    assert pending_gauge(metrics, "hook") == 3 == await counting.call(counting.outbox_size, "hook")

    counting.release.set()
    await wait_for(lambda: len(sink.received) == 8)
    await wait_for(outbox_empty(counting, "hook"))
    assert sink.gauge_at_attempt == [5, 3]
    await wait_for(lambda: pending_gauge(metrics, "hook") == 0)


# -- back-off ---------------------------------------------------------------------------------


async def test_a_failing_sink_is_retried_several_times_a_second_with_a_small_max_backoff(
    store: Store, metrics: MonitorMetrics, started: list[Dispatcher]
) -> None:
    sink = DownSink("hook")
    with capture_logs() as logs:
        dispatcher = start(store, [sink], started, metrics, max_backoff=0.05)
        await commit(store, [cloud(0)])
        dispatcher.notify()
        await wait_for(lambda: sink.attempts >= 6, timeout=1.0)

    assert sink.failures[5] - sink.failures[0] < 1.0
    gaps = [b - a for a, b in zip(sink.failures, sink.failures[1:], strict=False)][:5]
    assert max(gaps) < 0.5
    retries = [e for e in logs if e["event"] == "sink_delivery_failed"]
    assert len(retries) >= 5
    assert all(0 < e["retry_in_seconds"] <= 0.05 for e in retries)
    assert all(e["sink"] == "hook" and "ConnectError" in e["error"] for e in retries)
    assert (delivered(metrics, "hook", "retry") or 0) >= 6


class BuggySink(ListSink):
    """A sink with a bug: it raises something no receiver would, a few times."""

    def __init__(self, name: str, bugs: int) -> None:
        super().__init__(name)
        self.bugs = bugs

    async def deliver(self, batch: Sequence[CloudEvent]) -> list[Rejected]:
        if self.bugs:
            self.bugs -= 1
            raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")
        return await super().deliver(batch)


async def test_a_bug_in_a_sink_is_logged_with_its_traceback_once_not_as_a_flaky_receiver(
    store: Store, metrics: MonitorMetrics, started: list[Dispatcher]
) -> None:
    sink = BuggySink("buggy", bugs=4)
    with capture_logs() as logs:
        dispatcher = start(store, [sink], started, metrics, max_backoff=0.01)
        await commit(store, [cloud(0)])
        dispatcher.notify()
        await wait_for(lambda: len(sink.received) == 1, timeout=5.0)

    crashed = [e for e in logs if e["event"] == "sink_crashed"]
    assert len(crashed) == 1, "the same bug is logged once, not on every retry"
    assert crashed[0]["log_level"] == "error" and crashed[0]["exc_info"] is True
    assert crashed[0]["sink"] == "buggy" and "TypeError" in crashed[0]["error"]
    assert not [e for e in logs if e["event"] == "sink_delivery_failed"]
    assert ids(sink.received) == [cloud(0)["id"]], "the event waited in the outbox, not lost"
