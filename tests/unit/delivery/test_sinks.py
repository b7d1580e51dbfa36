"""sinks.py: each sink's output, each event serialized on its own (one that cannot be is
rejected, the others still go out), and the dispatcher's at-least-once, in-order delivery."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from monitor.core.events import new_event, to_cloudevent
from monitor.core.state import JobState
from monitor.delivery.dispatcher import Dispatcher
from monitor.delivery.sinks import (
    CloudEvent,
    ConsoleSink,
    DeliveryError,
    FileSink,
    LogSink,
    Rejected,
    describe,
)
from monitor.store.database import Store
from tests.conftest import SEED_ID, wait_for

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
CLOCK = "08:00:00"


def cloud(
    type_: str = "phase_changed",
    *,
    n: int = 0,
    data: dict[str, Any] | None = None,
    job_name: str = "bert-pretrain",
) -> dict[str, Any]:
    event = new_event(
        type_,
        job_id=SEED_ID,
        job_name=job_name,
        key=(n,),
        data=data if data is not None else {"from": "Pending", "to": "Running"},
        time=NOW,
    )
    return to_cloudevent(event, "proj")


def ids(events: Sequence[CloudEvent]) -> list[str]:
    return [e["id"] for e in events]


def poisoned(n: int = 99) -> dict[str, Any]:
    """A task failure whose message holds a lone surrogate: valid in a Python str (and in the
    outbox, JSON-escaped), but no UTF-8 writer can encode it."""
    return cloud(
        "task_failed", n=n, data={"task": "worker-0", "exit_code": 1, "message": "bad \udce9 byte"}
    )


def assert_unserializable(refusal: Rejected, event: CloudEvent) -> None:
    assert refusal.event_id == event["id"]
    assert refusal.reason.startswith("cannot serialize for this sink: UnicodeEncodeError")
    assert "surrogates not allowed" in refusal.reason


# -- FileSink ---------------------------------------------------------------------------------


async def test_file_sink_writes_one_cloudevent_json_object_per_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    events = [cloud(n=1), cloud(n=2)]
    await FileSink(str(path)).deliver(events)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == events


async def test_file_sink_appends_across_deliveries_and_instances(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    await FileSink(str(path)).deliver([cloud(n=1)])
    await FileSink(str(path)).deliver([cloud(n=2), cloud(n=3)])
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["id"] for line in lines] == ids([cloud(n=1), cloud(n=2), cloud(n=3)])


async def test_file_sink_creates_missing_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "var" / "log" / "monitor" / "events.jsonl"
    await FileSink(str(path)).deliver([cloud()])
    assert json.loads(path.read_text(encoding="utf-8"))["id"] == cloud()["id"]


async def test_file_sink_keeps_non_ascii_job_names_readable(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    await FileSink(str(path)).deliver([cloud(job_name="训练任务")])
    assert "训练任务" in path.read_text(encoding="utf-8")


async def test_file_sink_writes_the_good_events_around_one_it_cannot_serialize(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.jsonl"
    good, bad, after = cloud(n=1), poisoned(), cloud(n=2)

    (refusal,) = await FileSink(str(path)).deliver([good, bad, after])

    assert_unserializable(refusal, bad)
    text = path.read_bytes().decode("utf-8")  # strict: the file stays valid UTF-8
    assert [json.loads(line) for line in text.splitlines()] == [good, after]


async def test_file_sink_that_fails_after_a_rejected_event_counts_it_as_done(
    tmp_path: Path,
) -> None:
    """A full disk (``/dev/full``) after the rejected first event: it is not offered again."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    bad = poisoned()
    with pytest.raises(DeliveryError) as info:
        await FileSink("/dev/full").deliver([bad, cloud(n=1)])
    assert info.value.taken == 1
    (refusal,) = info.value.rejected
    assert_unserializable(refusal, bad)
    assert "No space left" in str(info.value)


def test_file_sink_name_identifies_its_path() -> None:
    assert FileSink("/tmp/a.jsonl").name != FileSink("/tmp/b.jsonl").name


# -- describe / ConsoleSink -------------------------------------------------------------------

DESCRIBE_CASES = [
    ("discovered", {"phase": "Pending", "secondary_phase": "Queuing"}, "phase Pending (Queuing)"),
    ("phase_changed", {"from": "Pending", "to": "Running"}, "Pending -> Running"),
    ("secondary_phase_changed", {"from": "Queuing", "to": "Running"}, "Queuing -> Running"),
    (
        "run_started",
        {"index": 1, "start_at": 210, "start_type": "restarted"},
        "run #1 started (restarted)",
    ),
    (
        "run_ended",
        {
            "index": 0,
            "end_at": 200,
            "end_reason": "exit 1",
            "end_related_task": "worker-1",
            "end_recover": "proc_restart",
            "end_recover_before_downgrade": "proc_restart",
        },
        "run #0 ended: exit 1; recovery proc_restart (task worker-1)",
    ),
    (
        "run_ended",
        {
            "index": 2,
            "end_at": 300,
            "end_reason": "",
            "end_related_task": "",
            "end_recover": "",
            "end_recover_before_downgrade": "",
        },
        "run #2 ended: no reason given",
    ),
    ("nodes_changed", {"from": 2, "to": 1}, "2 -> 1"),
    (
        "task_failed",
        {"task": "worker-0", "exit_code": 137, "message": "OOMKilled"},
        "task worker-0 exited with 137: OOMKilled",
    ),
    ("not_found", {"last_phase": "Running"}, "the API says the job no longer exists"),
]


@pytest.mark.parametrize(("type_", "data", "expected"), DESCRIBE_CASES)
def test_describe_renders_each_event_type_as_one_readable_line(
    type_: str, data: dict[str, Any], expected: str
) -> None:
    line = describe(cloud(type_, data=data))
    assert "\n" not in line
    assert expected in line
    assert type_ in line
    assert "bert-pretrain" in line
    assert line.startswith(CLOCK)


def test_describe_shows_the_job_id_when_the_job_has_no_name() -> None:
    line = describe(cloud("not_found", data={"last_phase": None}, job_name=""))
    assert SEED_ID in line


async def test_console_sink_writes_one_line_per_event() -> None:
    stream = io.StringIO()
    events = [
        cloud("discovered", data={"phase": "Pending", "secondary_phase": "Queuing"}),
        cloud(n=1),
    ]
    await ConsoleSink(stream).deliver(events)
    lines = stream.getvalue().splitlines()
    assert lines == [describe(e) for e in events]
    assert "Pending -> Running" in lines[1]


async def test_console_sink_rejects_a_line_its_stream_cannot_encode_and_writes_the_rest() -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", write_through=True)
    good, bad, after = cloud(n=1), poisoned(), cloud(n=2)

    (refusal,) = await ConsoleSink(stream).deliver([good, bad, after])

    assert_unserializable(refusal, bad)
    assert raw.getvalue().decode("utf-8").splitlines() == [describe(good), describe(after)]


# -- LogSink ----------------------------------------------------------------------------------


async def test_log_sink_logs_each_event_with_its_type_id_and_job_id() -> None:
    events = [cloud(n=1), cloud("task_failed", data={"task": "w", "exit_code": 1, "message": ""})]
    with capture_logs() as logs:
        await LogSink().deliver(events)
    assert [entry["event"] for entry in logs] == [e["type"] for e in events]
    assert [entry["event_id"] for entry in logs] == ids(events)
    assert all(entry["job_id"] == SEED_ID for entry in logs)
    assert all(entry["log_level"] == "info" for entry in logs)
    assert logs[1]["exit_code"] == 1


async def test_log_sink_rejects_an_event_without_data_and_logs_the_others() -> None:
    broken = {k: v for k, v in cloud(n=5).items() if k != "data"}
    with capture_logs() as logs:
        rejected = await LogSink().deliver([cloud(n=1), broken, cloud(n=2)])
    assert [entry["event_id"] for entry in logs] == ids([cloud(n=1), cloud(n=2)])
    (refusal,) = rejected
    assert refusal.event_id == broken["id"]
    assert refusal.reason == "cannot serialize for this sink: KeyError: 'data'"


# -- Dispatcher -------------------------------------------------------------------------------


class ListSink:
    def __init__(self, name: str) -> None:
        self.name = name
        self.received: list[CloudEvent] = []
        self.closed = False

    async def deliver(self, batch: Sequence[CloudEvent]) -> None:
        self.received.extend(batch)

    async def aclose(self) -> None:
        self.closed = True


class FlakySink(ListSink):
    """Raises on its first ``failures`` deliveries, then while ``down`` is set."""

    def __init__(self, name: str, failures: int = 0, down: bool = False) -> None:
        super().__init__(name)
        self.failures = failures
        self.down = down
        self.attempts = 0

    async def deliver(self, batch: Sequence[CloudEvent]) -> None:
        self.attempts += 1
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("webhook unreachable")
        if self.down:
            raise ConnectionError("webhook unreachable")
        await super().deliver(batch)


class StuckSink(ListSink):
    """Its deliver never returns (a webhook that accepts the connection and goes silent)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.entered = False

    async def deliver(self, batch: Sequence[CloudEvent]) -> None:
        self.entered = True
        await asyncio.Event().wait()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(tmp_path / "state.db")
    yield s
    s.close()


@pytest.fixture
async def dispatchers() -> AsyncIterator[list[Dispatcher]]:
    """Dispatchers a test starts; whatever the test left running is stopped afterwards."""
    started: list[Dispatcher] = []
    yield started
    for d in started:
        await asyncio.wait_for(d.stop(0.1), 5)


def make_dispatcher(
    store: Store, sinks: Sequence[Any], started: list[Dispatcher], **kw: Any
) -> Dispatcher:
    dispatcher = Dispatcher(store, sinks, max_backoff=0.05, **kw)
    dispatcher.start()
    started.append(dispatcher)
    return dispatcher


async def commit(store: Store, events: Sequence[dict[str, Any]]) -> None:
    await store.call(store.commit, JobState(job_id=SEED_ID), list(events), NOW)


async def test_committed_events_reach_every_sink_in_order(
    store: Store, dispatchers: list[Dispatcher]
) -> None:
    a, b = ListSink("a"), ListSink("b")
    dispatcher = make_dispatcher(store, [a, b], dispatchers)
    first, second = [cloud(n=n) for n in range(3)], [cloud(n=n) for n in range(3, 5)]
    await commit(store, first)
    dispatcher.notify()
    await commit(store, second)
    dispatcher.notify()
    await wait_for(lambda: len(a.received) == 5 and len(b.received) == 5)
    assert ids(a.received) == ids(first + second)
    assert ids(b.received) == ids(first + second)


async def test_events_already_in_the_outbox_are_delivered_on_start(
    store: Store, dispatchers: list[Dispatcher]
) -> None:
    """After a restart, events committed but not delivered before the crash still go out."""
    events = [cloud(n=n) for n in range(3)]
    await commit(store, events)
    sink = ListSink("a")
    make_dispatcher(store, [sink], dispatchers)
    await wait_for(lambda: len(sink.received) == 3)
    assert ids(sink.received) == ids(events)


async def test_events_acked_by_every_sink_are_removed_from_the_outbox(
    store: Store, dispatchers: list[Dispatcher]
) -> None:
    a, b = ListSink("a"), ListSink("b")
    dispatcher = make_dispatcher(store, [a, b], dispatchers)
    await commit(store, [cloud(n=n) for n in range(4)])
    dispatcher.notify()
    await wait_for(lambda: len(a.received) == 4 and len(b.received) == 4)
    assert await asyncio.wait_for(dispatcher.stop(2), 5) is True
    assert await store.call(store.outbox_size) == 0


async def test_a_failing_sink_is_retried_and_gets_every_event_exactly_once_in_order(
    store: Store, dispatchers: list[Dispatcher]
) -> None:
    flaky = FlakySink("webhook", failures=3)
    dispatcher = make_dispatcher(store, [flaky], dispatchers)
    events = [cloud(n=n) for n in range(3)]
    with capture_logs() as logs:
        await commit(store, events)
        dispatcher.notify()
        await wait_for(lambda: len(flaky.received) >= 3)
        # Events committed while it was failing join the same ordered stream.
        later = [cloud(n=n) for n in range(3, 6)]
        await commit(store, later)
        dispatcher.notify()
        await wait_for(lambda: len(flaky.received) >= 6)
    assert flaky.attempts >= 4
    assert ids(flaky.received) == ids(events + later)
    failures = [e for e in logs if e["event"] == "sink_delivery_failed"]
    assert len(failures) == 3
    assert all(e["sink"] == "webhook" and "ConnectionError" in e["error"] for e in failures)
    assert all(0 < e["retry_in_seconds"] <= 0.05 for e in failures)


async def test_a_failing_sink_does_not_hold_back_a_healthy_one(
    store: Store, dispatchers: list[Dispatcher]
) -> None:
    failing, healthy = FlakySink("webhook", down=True), ListSink("file")
    dispatcher = make_dispatcher(store, [failing, healthy], dispatchers)
    events = [cloud(n=n) for n in range(4)]
    await commit(store, events)
    dispatcher.notify()

    await wait_for(lambda: len(healthy.received) == 4 and failing.attempts >= 2)
    assert failing.received == []  # still down, yet the healthy sink already has everything
    # The failing sink's position holds the events in the outbox until it takes them.
    assert await store.call(store.outbox_size) == 4

    failing.down = False
    await wait_for(lambda: len(failing.received) == 4)
    assert ids(failing.received) == ids(events)
    assert ids(healthy.received) == ids(events)
    await wait_for_outbox_empty(store)


async def wait_for_outbox_empty(store: Store, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while await store.call(store.outbox_size) != 0:
        if time.monotonic() > deadline:
            raise AssertionError("outbox not emptied")
        await asyncio.sleep(0.01)


async def test_stop_returns_true_once_everything_pending_was_delivered(
    store: Store, dispatchers: list[Dispatcher]
) -> None:
    sink = ListSink("a")
    dispatcher = make_dispatcher(store, [sink], dispatchers)
    events = [cloud(n=n) for n in range(3)]
    await commit(store, events)  # no notify: stop itself must drain what is pending
    assert await asyncio.wait_for(dispatcher.stop(2), 5) is True
    assert ids(sink.received) == ids(events)
    assert sink.closed


async def test_stop_returns_false_within_grace_when_a_sink_is_stuck(
    store: Store, dispatchers: list[Dispatcher]
) -> None:
    stuck, healthy = StuckSink("webhook"), ListSink("file")
    dispatcher = make_dispatcher(store, [stuck, healthy], dispatchers)
    await commit(store, [cloud(n=1)])
    dispatcher.notify()
    await wait_for(lambda: stuck.entered and len(healthy.received) == 1)

    started = time.monotonic()
    assert await asyncio.wait_for(dispatcher.stop(0.2), 5) is False
    assert time.monotonic() - started < 2
    assert stuck.closed and healthy.closed
    # Undelivered for the stuck sink: kept in the outbox for the next start.
    assert await store.call(store.outbox_size, "webhook") == 1


async def test_stop_returns_false_when_a_sink_keeps_failing(
    store: Store, dispatchers: list[Dispatcher]
) -> None:
    """A sink that fails throughout the grace period has not drained, so stop says so."""
    failing = FlakySink("webhook", down=True)
    dispatcher = make_dispatcher(store, [failing], dispatchers)
    await commit(store, [cloud(n=1)])
    dispatcher.notify()
    await wait_for(lambda: failing.attempts >= 1)
    assert await asyncio.wait_for(dispatcher.stop(0.3), 5) is False
    assert await store.call(store.outbox_size, "webhook") == 1


async def test_a_sink_that_recovers_during_the_grace_period_is_drained(
    store: Store, dispatchers: list[Dispatcher]
) -> None:
    failing = FlakySink("webhook", failures=2)
    dispatcher = make_dispatcher(store, [failing], dispatchers)
    await commit(store, [cloud(n=1)])
    assert await asyncio.wait_for(dispatcher.stop(3), 5) is True
    assert ids(failing.received) == ids([cloud(n=1)])


def test_two_sinks_with_the_same_name_are_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    try:
        with pytest.raises(ValueError, match="share a name"):
            Dispatcher(store, [ListSink("a"), ListSink("a")])
    finally:
        store.close()
