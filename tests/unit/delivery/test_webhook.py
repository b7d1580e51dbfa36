"""WebhookSink against a real aiohttp receiver on 127.0.0.1: what goes over the wire, which
answers are taken, refused for good or retried, and that the URL (it may carry a token) never
leaks into names, reprs or error text."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from monitor.config.settings import WebhookSinkSettings
from monitor.core.state import JobState
from monitor.delivery.dispatcher import Dispatcher
from monitor.delivery.sinks import DeliveryError, Rejected, WebhookSink, build_sinks
from monitor.exposition.own import MonitorMetrics
from monitor.store.database import Store
from tests.conftest import SEED_ID
from tests.unit.delivery.conftest import NOW, cloud, poisoned

PATH_TOKEN = "PATHTOKEN-5f1d2c"
QUERY_TOKEN = "QUERYTOKEN-9a8b7c"
SECRETS = (PATH_TOKEN, QUERY_TOKEN)
SINGLE = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"


def events(count: int) -> list[dict[str, Any]]:
    return [cloud(n) for n in range(count)]


def ids(docs: Sequence[Any]) -> list[str]:
    return [d["id"] for d in docs]


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` every 10 ms; fail if it is not true within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.01)


# -- the receiver -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    """Answer only when the test ends (longer than any sink timeout used here)."""


@dataclass(frozen=True)
class Request:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """Records every request and answers the next scripted ``Reply`` (then 200)."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.script: list[Reply] = []
        self.release = asyncio.Event()
        self.url = ""

    def answer(self, *replies: Reply | int) -> None:
        self.script.extend(r if isinstance(r, Reply) else Reply(r) for r in replies)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(
            Request(
                path=request.path,
                query=dict(request.query),
                headers=dict(request.headers),
                body=await request.read(),
            )
        )
        reply = self.script.pop(0) if self.script else Reply()
        if reply.hang:
            await asyncio.wait_for(self.release.wait(), 10)
        return web.Response(status=reply.status, text=reply.body or None, headers=reply.headers)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    recv = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recv.handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    recv.url = f"http://127.0.0.1:{port}/hooks/{PATH_TOKEN}/events?token={QUERY_TOKEN}"
    try:
        yield recv
    finally:
        recv.release.set()
        await runner.cleanup()


@pytest.fixture
async def make_sink() -> AsyncIterator[Callable[..., WebhookSink]]:
    """WebhookSinks a test builds; all closed afterwards."""
    made: list[WebhookSink] = []

    def make(url: str, **kw: Any) -> WebhookSink:
        sink = WebhookSink(url, **kw)
        made.append(sink)
        return sink

    yield make
    for sink in made:
        await sink.aclose()


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text
    assert "127.0.0.1" not in text


# -- per-event mode ---------------------------------------------------------------------------


async def test_each_event_is_posted_once_as_a_structured_cloudevent_and_2xx_takes_it(
    receiver: Receiver, make_sink: Callable[..., WebhookSink]
) -> None:
    sink = make_sink(receiver.url, headers={"Authorization": "Bearer s3cret", "X-Team": "nlp"})
    batch = events(3)
    receiver.answer(200, 201, 204)

    assert await sink.deliver(batch) == []

    assert [r.json() for r in receiver.requests] == batch
    for request in receiver.requests:
        assert request.content_type == SINGLE
        assert request.headers["Authorization"] == "Bearer s3cret"
        assert request.headers["X-Team"] == "nlp"
        assert request.headers["User-Agent"] == "modelarts-monitor"
        assert request.path == f"/hooks/{PATH_TOKEN}/events"
        assert request.query == {"token": QUERY_TOKEN}


async def test_an_empty_batch_posts_nothing(
    receiver: Receiver, make_sink: Callable[..., WebhookSink]
) -> None:
    assert await make_sink(receiver.url).deliver([]) == []
    assert receiver.requests == []


async def test_headers_from_the_config_are_sent_by_the_built_sink(receiver: Receiver) -> None:
    settings = WebhookSinkSettings.model_validate(
        {
            "type": "webhook",
            "url": receiver.url,
            "headers": {"Authorization": "Bearer from-config"},
            "timeout": "2s",
        }
    )
    (sink,) = build_sinks([settings])
    try:
        assert await sink.deliver(events(1)) == []
    finally:
        await sink.aclose()
    (request,) = receiver.requests
    assert request.headers["Authorization"] == "Bearer from-config"
    assert request.json() == cloud(0)
    assert sink.name == "webhook"
    assert_no_secret(repr(sink))


@pytest.mark.parametrize("status", [400, 404, 410, 422])
async def test_a_4xx_refusal_rejects_that_event_only_and_later_events_still_go_out(
    status: int, receiver: Receiver, make_sink: Callable[..., WebhookSink]
) -> None:
    sink = make_sink(receiver.url)
    batch = events(3)
    receiver.answer(200, Reply(status, body='{"error":  "schema\n mismatch"}'), 200)

    rejected = await sink.deliver(batch)

    assert len(receiver.requests) == 3
    assert [r.json() for r in receiver.requests] == batch
    (refusal,) = rejected
    assert isinstance(refusal, Rejected)
    assert refusal.event_id == batch[1]["id"]
    assert str(status) in refusal.reason
    assert '{"error": "schema mismatch"}' in refusal.reason  # whitespace folded to one line
    assert_no_secret(refusal.reason)


async def test_the_refusal_reason_quotes_a_bounded_excerpt_of_a_long_reply(
    receiver: Receiver, make_sink: Callable[..., WebhookSink]
) -> None:
    body = "field data.to is invalid; " + "x" * 5000
    receiver.answer(Reply(422, body=body))

    (refusal,) = await make_sink(receiver.url).deliver(events(1))

    assert "422" in refusal.reason
    assert "field data.to is invalid;" in refusal.reason
    assert len(refusal.reason) <= 220
    assert "x" * 5000 not in refusal.reason


async def test_an_event_that_cannot_be_serialized_is_rejected_unsent_and_the_rest_go_out(
    receiver: Receiver, make_sink: Callable[..., WebhookSink]
) -> None:
    good, bad, after = cloud(0), poisoned(1), cloud(2)

    (refusal,) = await make_sink(receiver.url).deliver([good, bad, after])

    assert [r.json() for r in receiver.requests] == [good, after]
    assert refusal.event_id == bad["id"]
    assert refusal.reason.startswith("cannot serialize for this sink: UnicodeEncodeError")


async def test_batch_mode_leaves_an_unserializable_event_out_of_the_array(
    receiver: Receiver, make_sink: Callable[..., WebhookSink]
) -> None:
    good, bad, after = cloud(0), poisoned(1), cloud(2)

    (refusal,) = await make_sink(receiver.url, batch=True).deliver([good, bad, after])

    (request,) = receiver.requests
    assert request.json() == [good, after]
    assert refusal.event_id == bad["id"]
    assert "surrogates not allowed" in refusal.reason


@pytest.mark.parametrize("status", [408, 429, 500, 503, 302])
@pytest.mark.parametrize("position", [0, 2])
async def test_a_retryable_answer_raises_delivery_error_saying_how_many_went_out(
    status: int, position: int, receiver: Receiver, make_sink: Callable[..., WebhookSink]
) -> None:
    """408, 429, 5xx and redirects are worth retrying; events after the failure are not sent."""
    sink = make_sink(receiver.url)
    headers = {"Location": "/elsewhere", "Retry-After": "1"}
    receiver.answer(*[200] * position, Reply(status, body="try later", headers=headers))

    with pytest.raises(DeliveryError) as info:
        await sink.deliver(events(4))

    assert info.value.taken == position
    assert len(receiver.requests) == position + 1  # not followed, nothing sent after it
    assert str(status) in str(info.value)
    assert_no_secret(str(info.value))


# -- batch mode -------------------------------------------------------------------------------


async def test_batch_mode_posts_one_json_array_in_order(
    receiver: Receiver, make_sink: Callable[..., WebhookSink]
) -> None:
    sink = make_sink(receiver.url, batch=True, headers={"Authorization": "Bearer b"})
    batch = events(5)

    assert await sink.deliver(batch) == []

    (request,) = receiver.requests
    assert request.content_type == BATCH
    assert request.json() == batch
    assert request.headers["Authorization"] == "Bearer b"


async def test_batch_mode_refusal_rejects_every_event_of_the_batch(
    receiver: Receiver, make_sink: Callable[..., WebhookSink]
) -> None:
    batch = events(3)
    receiver.answer(Reply(400, body="bad batch"))

    rejected = await make_sink(receiver.url, batch=True).deliver(batch)

    assert [r.event_id for r in rejected] == ids(batch)
    assert all("400" in r.reason and "bad batch" in r.reason for r in rejected)


async def test_batch_mode_retryable_answer_takes_none_of_the_batch(
    receiver: Receiver, make_sink: Callable[..., WebhookSink]
) -> None:
    receiver.answer(503)
    with pytest.raises(DeliveryError) as info:
        await make_sink(receiver.url, batch=True).deliver(events(3))
    assert info.value.taken == 0
    assert len(receiver.requests) == 1


# -- network failures -------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # released again: nothing listens there


async def test_a_refused_connection_raises_delivery_error_without_the_url(
    make_sink: Callable[..., WebhookSink],
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hooks/{PATH_TOKEN}?token={QUERY_TOKEN}"
    with pytest.raises(DeliveryError) as info:
        await make_sink(url, timeout=2).deliver(events(2))
    assert info.value.taken == 0
    assert_no_secret(str(info.value))


async def test_a_receiver_slower_than_the_timeout_raises_delivery_error_promptly(
    receiver: Receiver, make_sink: Callable[..., WebhookSink]
) -> None:
    sink = make_sink(receiver.url, timeout=0.2)
    receiver.answer(200, Reply(hang=True))

    started = time.monotonic()
    with pytest.raises(DeliveryError) as info:
        await sink.deliver(events(3))

    assert time.monotonic() - started < 2
    assert info.value.taken == 1
    assert len(receiver.requests) == 2
    assert_no_secret(str(info.value))


# -- the URL stays secret ---------------------------------------------------------------------


async def test_the_url_never_appears_in_the_sinks_name_or_repr(
    receiver: Receiver, make_sink: Callable[..., WebhookSink]
) -> None:
    for sink in (make_sink(receiver.url), make_sink(receiver.url, name="alerts", batch=True)):
        assert_no_secret(sink.name)
        assert_no_secret(repr(sink))
        assert_no_secret(str(sink))
    settings = WebhookSinkSettings.model_validate({"type": "webhook", "url": receiver.url})
    assert_no_secret(repr(settings))
    (built,) = build_sinks([settings])
    try:
        assert_no_secret(built.name)
        assert_no_secret(repr(built))
    finally:
        await built.aclose()


# -- under the dispatcher ---------------------------------------------------------------------


async def test_a_refusal_followed_by_a_retryable_failure_is_still_counted_as_rejected(
    receiver: Receiver, make_sink: Callable[..., WebhookSink], tmp_path: Path
) -> None:
    store = Store(tmp_path / "state.db")
    metrics = MonitorMetrics()
    sink = make_sink(receiver.url)
    dispatcher = Dispatcher(store, [sink], metrics=metrics, max_backoff=0.05)
    batch = events(3)
    await store.call(store.commit, JobState(job_id=SEED_ID), batch, NOW)
    receiver.answer(Reply(404, body="unknown job"), 503)  # then 200s
    try:
        with capture_logs() as logs:
            dispatcher.start()
            await eventually(lambda: len(receiver.requests) == 4)
            assert await dispatcher.stop(2) is True
    finally:
        await dispatcher.stop(0.1)
        store.close()

    def count(result: str) -> float | None:
        return metrics.registry.get_sample_value(
            "modelarts_monitor_event_deliveries_total", {"sink": "webhook", "result": result}
        )

    assert [r.json()["id"] for r in receiver.requests] == ids(
        [batch[0], batch[1], batch[1], batch[2]]
    )
    assert count("retry") == 1
    assert [e["event_id"] for e in logs if e["event"] == "event_dead_lettered"] == [batch[0]["id"]]
    assert count("rejected") == 1
    assert count("ok") == 2


async def test_a_400_under_the_dispatcher_is_a_dead_letter_with_the_reply_as_its_reason(
    receiver: Receiver, make_sink: Callable[..., WebhookSink], tmp_path: Path
) -> None:
    store = Store(tmp_path / "state.db")
    metrics = MonitorMetrics()
    sink = make_sink(receiver.url)
    dispatcher = Dispatcher(store, [sink], metrics=metrics, max_backoff=0.05)
    batch = events(3)
    await store.call(store.commit, JobState(job_id=SEED_ID), batch, NOW)
    receiver.answer(200, Reply(400, body='{"error": "unknown field data.to"}'))  # then 200s
    try:
        with capture_logs() as logs:
            dispatcher.start()
            await eventually(lambda: len(receiver.requests) == 3)
            assert await dispatcher.stop(2) is True
        (letters,) = await store.call(store.dead_letters)
    finally:
        await dispatcher.stop(0.1)
        store.close()

    reason = 'HTTP 400: {"error": "unknown field data.to"}'
    assert (letters.sink, letters.count) == ("webhook", 1)
    assert [(d.event_id, d.reason) for d in letters.newest] == [(batch[1]["id"], reason)]
    (line,) = [e for e in logs if e["event"] == "event_dead_lettered"]
    assert (line["event_id"], line["reason"]) == (batch[1]["id"], reason)
    assert_no_secret(line["reason"])
    assert (
        metrics.registry.get_sample_value(
            "modelarts_monitor_dead_letters_total", {"sink": "webhook"}
        )
        == 1
    )
    assert [r.json()["id"] for r in receiver.requests] == ids(batch), "not retried"
