"""server.py's /metrics over loopback: the format negotiated from ``Accept``, the cached
sections written as they are (plain or gzip), in both formats, wired as ``App`` wires them."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from monitor.exposition.own import MonitorMetrics
from monitor.exposition.series import SeriesStore
from monitor.web.job_page import JobPage
from monitor.web.pages import JobRow
from monitor.web.server import WRITE_SLICE, create_app, wants_openmetrics
from tests.conftest import job_doc
from tests.unit.exposition.conftest import NOW, state_of
from tests.unit.web.conftest import serve

PROMETHEUS = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
"""What Prometheus sends (scrape_protocols' default order)."""


class NoPages:
    def rows(self) -> list[JobRow]:
        return []

    async def job(self, job_id: str) -> JobPage | None:
        return None

    def job_metrics(self, job_id: str) -> bytes:
        return b""


@dataclass
class Daemon:
    """The two callables ``App`` hands the server, over a real store and registry."""

    series: SeriesStore = field(default_factory=lambda: SeriesStore(project_id="proj"))
    own: MonitorMetrics = field(default_factory=MonitorMetrics)

    def text(self) -> Iterator[bytes]:
        yield from self.series.scrape()
        yield self.own.render()

    def openmetrics(self) -> Iterator[bytes]:
        yield from self.series.scrape(openmetrics=True)
        yield self.own.render(openmetrics=True)

    def watch(self, count: int) -> None:
        for i in range(count):
            state = state_of(job_doc(job_id=f"job-{i:05d}", name=f"train-{i}"))
            self.series.update(state, {"team": "nlp"})
            self.series.set_health(state.job_id, True, NOW)


@pytest.fixture
def daemon() -> Daemon:
    d = Daemon()
    d.watch(3)
    return d


@pytest.fixture
async def http(daemon: Daemon) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        metrics=daemon.text, openmetrics=daemon.openmetrics, ready=lambda: (True, "ok"),
        pages=NoPages(),
    )  # fmt: skip
    async for client in serve(app):
        yield client


def samples(families: object) -> list[tuple[str, tuple[tuple[str, str], ...], float]]:
    return sorted(
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for f in families  # type: ignore[attr-defined]
        for s in f.samples
    )


async def test_prometheus_gets_openmetrics_ending_in_eof(http: httpx.AsyncClient) -> None:
    r = await http.get("/metrics", headers={"Accept": PROMETHEUS})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/openmetrics-text; version=1.0.0; charset=utf-8"
    assert r.content.endswith(b"\n# EOF\n")
    assert "# TYPE modelarts_training_job_restarts counter" in r.text
    text = (await http.get("/metrics")).text
    assert samples(parse_openmetrics(r.text)) == samples(parse_text(text))


@pytest.mark.parametrize("accept", [None, "*/*", "text/plain", "text/plain;version=0.0.4"])
async def test_clients_not_asking_for_openmetrics_get_the_text_format(
    http: httpx.AsyncClient, accept: str | None
) -> None:
    r = await http.get("/metrics", headers={"Accept": accept} if accept else {})
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert b"# EOF" not in r.content
    assert "# TYPE modelarts_training_job_restarts_total counter" in r.text


@pytest.mark.parametrize("accept", [PROMETHEUS, ""])
async def test_gzip_serves_the_same_body_in_both_formats(
    http: httpx.AsyncClient, accept: str
) -> None:
    headers = {"Accept": accept, "Accept-Encoding": "identity"}
    plain = await http.get("/metrics", headers=headers)
    async with http.stream(
        "GET", "/metrics", headers={"Accept": accept, "Accept-Encoding": "gzip"}
    ) as r:
        assert r.headers["content-encoding"] == "gzip"
        packed = b"".join([chunk async for chunk in r.aiter_raw()])
    assert gzip.decompress(packed) == plain.content
    assert "Accept" in r.headers["vary"] and "Accept-Encoding" in r.headers["vary"]


async def test_a_body_of_many_write_slices_arrives_whole_with_its_length(daemon: Daemon) -> None:
    daemon.watch(1500)  # several MB: families larger than one write slice
    app = create_app(metrics=daemon.text, openmetrics=daemon.openmetrics,
                     ready=lambda: (True, "ok"), pages=NoPages())  # fmt: skip
    expected = b"".join(daemon.text())
    assert max(len(s) for s in daemon.series.scrape()) > 2 * WRITE_SLICE
    async for client in serve(app):
        for _ in range(2):  # the second from the cache
            r = await client.get("/metrics", headers={"Accept-Encoding": "identity"})
            assert r.content == expected
            assert int(r.headers["content-length"]) == len(expected)


async def test_head_answers_the_negotiated_type_and_length_without_a_body(
    http: httpx.AsyncClient, daemon: Daemon
) -> None:
    r = await http.head("/metrics", headers={"Accept": PROMETHEUS, "Accept-Encoding": "identity"})
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert int(r.headers["content-length"]) == len(b"".join(daemon.openmetrics()))
    assert r.content == b""


async def test_a_server_given_no_openmetrics_body_answers_text_to_prometheus(
    daemon: Daemon,
) -> None:
    app = create_app(metrics=daemon.text, ready=lambda: (True, "ok"), pages=NoPages())
    async for client in serve(app):
        r = await client.get("/metrics", headers={"Accept": PROMETHEUS})
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (PROMETHEUS, True),
        ("application/openmetrics-text", True),
        ("Application/OpenMetrics-Text; Version=1.0.0", True),
        ("application/openmetrics-text;version=0.0.1", True),
        ("application/openmetrics-text;version=2.0.0", False),  # not a version it writes
        ("application/openmetrics-text;q=0", False),
        ("application/openmetrics-text;q=0.5, text/plain", False),
        ("text/plain;q=0.5, application/openmetrics-text;q=0.6", True),
        ("application/openmetrics-text, text/plain", False),  # a tie: the text format
        ("application/*, text/plain;q=0.9", True),
        ("text/plain;q=0.2, */*", True),  # anything but text/plain is preferred
        ("application/openmetrics-text;q=oops, text/plain;q=0.1", False),
        ("*/*", False),
        ("", False),
    ],
)
def test_accept_decides_the_format_by_quality_and_specificity(accept: str, expected: bool) -> None:
    assert wants_openmetrics(accept) is expected
