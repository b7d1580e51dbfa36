"""app.py: the daemon wired from Settings, served on loopback, the API a mock transport."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from monitor.config.loading import parse_settings
from monitor.daemon.app import App
from monitor.delivery.sinks import CloudEvent, DeliveryError
from tests.conftest import SEED_ID, job_doc, wait_for


class FlakySink:
    """A receiver that is down until the test brings it up."""

    name = "webhook-down"

    def __init__(self) -> None:
        self.up = False
        self.received: list[CloudEvent] = []

    async def deliver(self, batch: Sequence[CloudEvent]) -> None:
        if not self.up:
            raise DeliveryError("connection refused")
        self.received.extend(batch)

    async def aclose(self) -> None:
        return None


class Api:
    def __init__(self) -> None:
        self.phase = "Pending"

    def handler(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=job_doc(phase=self.phase, secondary_phase=self.phase))


def settings(tmp_path: Path, **overrides: Any) -> Any:
    doc: dict[str, Any] = {
        "api": {"endpoint": "https://modelarts.test", "project_id": "proj"},
        "auth": {"type": "none"},
        "poll": {"interval": "1h"},  # the test polls by hand
        "jobs": [{"id": SEED_ID, "labels": {"team": "nlp"}}],
        "state": {"path": str(tmp_path / "state.db")},
        "events": {"outbox_limit": 1, "max_backoff": "100ms"},
        "server": {"listen": "127.0.0.1:0"},
        "usage": {"enabled": False},
        **overrides,
    }
    return parse_settings(doc, env={})


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[App, FlakySink, Api, httpx.AsyncClient]]:
    sink, api = FlakySink(), Api()
    app = App(settings(tmp_path), sinks=[sink], transport=httpx.MockTransport(api.handler))
    await app.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.port}") as http:
            yield app, sink, api, http
    finally:
        await app.stop(grace=1.0)


async def test_a_sink_over_the_outbox_limit_makes_readyz_503_naming_it_until_it_drains(
    running: tuple[App, FlakySink, Api, httpx.AsyncClient],
) -> None:
    app, sink, api, http = running
    await app.poller.poll(SEED_ID)  # discovered
    api.phase = "Running"
    await app.poller.poll(SEED_ID)  # phase_changed, secondary_phase_changed: 3 > 1 pending

    async def readyz(status: int) -> bool:
        return (await http.get("/readyz")).status_code == status

    await wait_for(lambda: readyz(503), timeout=10)
    body = (await http.get("/readyz")).text
    assert body.startswith("not ready\n")
    assert "sink webhook-down: 3 events pending (limit 1): event outbox over its limit" in body
    assert "state database: ok" in body and "first round: all 1 jobs polled" in body

    sink.up = True
    await wait_for(lambda: readyz(200), timeout=10)
    assert [e["type"] for e in sink.received] == [
        "modelarts.job.discovered",
        "modelarts.job.phase_changed",
        "modelarts.job.secondary_phase_changed",
    ]
    assert "sink webhook-down: 0 events pending (limit 1)" in (await http.get("/readyz")).text


async def test_readyz_waits_for_the_first_round(
    running: tuple[App, FlakySink, Api, httpx.AsyncClient],
) -> None:
    _, _, _, http = running
    r = await http.get("/readyz")
    assert r.status_code == 503
    assert "first round: 1 of 1 jobs not polled yet" in r.text


async def test_an_unreadable_stored_state_is_logged_once_and_costs_only_that_job(
    tmp_path: Path,
) -> None:
    import sqlite3

    from structlog.testing import capture_logs

    from monitor.store import Store

    Store(tmp_path / "state.db").close()  # a current database
    db = sqlite3.connect(tmp_path / "state.db")
    db.execute(
        "INSERT INTO jobs(job_id, state, updated_at) VALUES (?, ?, 0)",
        (SEED_ID, '{"format": 99, "job_id": "x"}'),
    )
    db.commit()
    db.close()
    sink, api = FlakySink(), Api()
    sink.up = True
    app = App(settings(tmp_path), sinks=[sink], transport=httpx.MockTransport(api.handler))
    with capture_logs() as logs:
        await app.start()
    try:
        unreadable = [e for e in logs if e["event"] == "stored_state_unreadable"]
        assert len(unreadable) == 1 and unreadable[0]["job_id"] == SEED_ID
        assert "format 99" in unreadable[0]["error"]
        await app.poller.poll(SEED_ID)
        await wait_for(lambda: len(sink.received) == 1)
        assert sink.received[0]["type"] == "modelarts.job.discovered", "it starts afresh"
    finally:
        await app.stop(grace=1.0)
