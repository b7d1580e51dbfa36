"""server.py: /metrics, /healthz, /readyz, the overview and the job pages, served over
loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest

from monitor.core.events import rfc3339
from monitor.core.job import JobSnapshot
from monitor.web.job_page import JobPage
from monitor.web.pages import JobRow
from monitor.web.server import create_app
from tests.conftest import SEED_ID
from tests.unit.web.conftest import HOSTILE, dom, serve

NOW = 1_800_000_000.0
BODY = b'# HELP modelarts_monitor_up 1 if ...\n# TYPE modelarts_monitor_up gauge\nmodelarts_monitor_up{job_id="x"} 1\n'


@dataclass
class Backend:
    """What the server is handed: plain callables whose answers a test changes at will."""

    body: bytes = BODY
    readiness: tuple[bool, str] = (True, "ok")
    rows: list[JobRow] = field(default_factory=list)
    lines: dict[str, bytes] = field(default_factory=dict)
    scrapes: int = 0
    asked: list[str] = field(default_factory=list)

    def metrics(self) -> bytes:
        self.scrapes += 1
        return self.body

    def ready(self) -> tuple[bool, str]:
        return self.readiness

    def overview(self) -> list[JobRow]:
        return self.rows

    async def job(self, job_id: str) -> JobPage | None:
        self.asked.append(job_id)
        found = [r for r in self.rows if r.job_id == job_id]
        if not found:
            return None
        return JobPage(found[0], JobSnapshot(job_id, name=found[0].name), NOW)

    def job_metrics(self, job_id: str) -> bytes:
        return self.lines.get(job_id, b"")


@dataclass
class Pages:
    """The server's ``Pages`` over a backend."""

    backend: Backend

    def rows(self) -> list[JobRow]:
        return self.backend.overview()

    async def job(self, job_id: str) -> JobPage | None:
        return await self.backend.job(job_id)

    def job_metrics(self, job_id: str) -> bytes:
        return self.backend.job_metrics(job_id)


@pytest.fixture
def backend() -> Backend:
    return Backend()


@pytest.fixture
async def http(backend: Backend) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(metrics=backend.metrics, ready=backend.ready, pages=Pages(backend))
    async for client in serve(app):
        yield client


async def test_metrics_serves_the_body_as_prometheus_text(
    http: httpx.AsyncClient, backend: Backend
) -> None:
    r = await http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert r.content == BODY


async def test_metrics_renders_fresh_on_every_scrape(
    http: httpx.AsyncClient, backend: Backend
) -> None:
    await http.get("/metrics")
    backend.body = b"modelarts_monitor_jobs 2\n"
    r = await http.get("/metrics")
    assert r.content == b"modelarts_monitor_jobs 2\n"
    assert backend.scrapes == 2


async def test_head_metrics_answers_with_headers_and_no_body(http: httpx.AsyncClient) -> None:
    r = await http.head("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert r.content == b""


async def test_healthz_is_ok_while_the_process_serves(
    http: httpx.AsyncClient, backend: Backend
) -> None:
    backend.readiness = (False, "2 of 2 jobs not polled yet")  # liveness ignores readiness
    r = await http.get("/healthz")
    assert r.status_code == 200
    assert r.text == "ok\n"


async def test_readyz_is_200_when_ready(http: httpx.AsyncClient) -> None:
    r = await http.get("/readyz")
    assert r.status_code == 200
    assert r.text == "ok\n"


async def test_readyz_is_503_with_the_reason_when_not_ready(
    http: httpx.AsyncClient, backend: Backend
) -> None:
    backend.readiness = (False, "state database: disk I/O error")
    r = await http.get("/readyz")
    assert r.status_code == 503
    assert "state database: disk I/O error" in r.text
    backend.readiness = (True, "ok")
    assert (await http.get("/readyz")).status_code == 200


async def test_landing_page_lists_each_job_with_phase_last_poll_and_restarts(
    http: httpx.AsyncClient, backend: Backend
) -> None:
    backend.rows = [
        JobRow(SEED_ID, "bert-pretrain", "Running", "Running", "up", NOW, 3),
        JobRow("job-2", "", "", "", "down", None, 0),
    ]
    r = await http.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    page = dom(r.text)
    unnamed, first = page.by_id("jobs").rows()  # a job not seen yet has no name: it sorts first
    assert first[0] == f"bert-pretrain{SEED_ID}"
    assert first[1:5] == ["Running Running", "up", "3", "- / -"]
    assert first[6] == rfc3339(NOW)
    assert unnamed[0] == "unknownjob-2" and unnamed[2] == "down" and unnamed[6] == "never"
    assert {a.attrs["href"] for a in page.all("a")} >= {"/metrics", "/healthz", "/readyz"}


async def test_landing_page_escapes_html_in_values_from_the_api(
    http: httpx.AsyncClient, backend: Backend
) -> None:
    backend.rows = [
        JobRow(SEED_ID, "<script>alert(1)</script>", "<b>Running", "x&y", "up", NOW, 0),
    ]
    page = (await http.get("/")).text
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;Running" in page
    assert "x&amp;y" in page


async def test_landing_page_with_no_jobs_still_renders(http: httpx.AsyncClient) -> None:
    r = await http.get("/")
    assert r.status_code == 200
    assert "modelarts-monitor" in r.text


async def test_unknown_paths_are_404(http: httpx.AsyncClient) -> None:
    assert (await http.get("/nope")).status_code == 404


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("gzip", True),
        ("deflate, gzip;q=0.5", True),
        ("GZIP", True),
        ("gzip;q=0", False),
        ("identity", False),
        ("", False),
        ("br, x-gzip", True),
    ],
)
def test_accepts_gzip(header: str, expected: bool) -> None:
    from monitor.web.server import accepts_gzip

    assert accepts_gzip(header) is expected


async def test_metrics_is_gzipped_when_the_scraper_asks(http: httpx.AsyncClient) -> None:
    import gzip

    async with http.stream("GET", "/metrics", headers={"Accept-Encoding": "gzip"}) as r:
        raw = b"".join([chunk async for chunk in r.aiter_raw()])
    assert r.headers["content-encoding"] == "gzip"
    assert "Accept-Encoding" in r.headers["vary"]
    assert gzip.decompress(raw) == BODY


async def test_metrics_is_plain_when_the_scraper_does_not_ask(http: httpx.AsyncClient) -> None:
    async with http.stream("GET", "/metrics", headers={"Accept-Encoding": "identity"}) as r:
        raw = b"".join([chunk async for chunk in r.aiter_raw()])
    assert "content-encoding" not in r.headers
    assert raw == BODY


async def test_landing_page_shows_each_jobs_last_reason_escaped(
    http: httpx.AsyncClient, backend: Backend
) -> None:
    reason = "Error 2022-11-26T16:03:41+08:00: <img src=x onerror=alert(1)> & OOM"
    backend.rows = [
        JobRow(SEED_ID, "bert", "Failed", "Failed", "up", NOW, 1, last_reason=reason),
        JobRow("job-2", "ok-job", "Running", "Running", "up", NOW, 0),
    ]
    page = dom((await http.get("/")).text)
    assert [th.text for th in page.by_id("jobs").all("th")][-1] == "last reason"
    first, second = page.by_id("jobs").rows()
    assert first[-1] == reason
    assert not page.all("img")
    assert second[-1] == "-", "a job without a reason shows a dash"


EXPECTED_SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        pytest.param("GET", "/", {}, 200, id="landing-page"),
        pytest.param("GET", "/metrics", {}, 200, id="metrics"),
        pytest.param("GET", "/metrics", {"Accept-Encoding": "gzip"}, 200, id="metrics-gzip"),
        pytest.param("HEAD", "/metrics", {}, 200, id="metrics-head"),
        pytest.param("GET", "/healthz", {}, 200, id="healthz"),
        pytest.param("GET", "/readyz", {}, 503, id="readyz-not-ready"),
        pytest.param("GET", "/nope", {}, 404, id="not-found"),
        pytest.param("GET", f"/jobs/{SEED_ID}", {}, 200, id="job-page"),
        pytest.param("GET", "/jobs/unknown", {}, 404, id="job-page-unknown"),
        pytest.param("GET", f"/jobs/{SEED_ID}/metrics", {}, 200, id="job-metrics"),
        pytest.param("POST", "/metrics", {}, 405, id="method-not-allowed"),
    ],
)
async def test_every_response_carries_the_security_headers(
    http: httpx.AsyncClient,
    backend: Backend,
    method: str,
    path: str,
    headers: dict[str, str],
    status: int,
) -> None:
    backend.readiness = (False, "no job polled yet")
    backend.rows = [JobRow(SEED_ID, "bert", "Running", "Running", "up", NOW, 0)]
    backend.lines = {SEED_ID: BODY}

    r = await http.request(method, path, headers=headers)

    assert r.status_code == status
    assert {k: r.headers.get(k) for k in EXPECTED_SECURITY_HEADERS} == EXPECTED_SECURITY_HEADERS


async def test_the_landing_page_needs_nothing_its_policy_forbids(http: httpx.AsyncClient) -> None:
    """No script, no external source: only the inline style and the data: icon it allows."""
    page = (await http.get("/")).text

    assert "<script" not in page and "src=" not in page
    assert "<link rel='icon' href='data:,'>" in page
    assert "http://" not in page and "https://" not in page


async def test_the_overview_filters_by_the_query_of_its_url(
    http: httpx.AsyncClient, backend: Backend
) -> None:
    backend.rows = [
        JobRow("a", "alpha", "Running", "Running", "up", NOW, 0, labels={"team": "nlp"}),
        JobRow("b", "beta", "Failed", "Failed", "up", NOW, 0, labels={"team": "nlp"}),
        JobRow("c", "gamma", "Running", "Running", "up", NOW, 0, labels={"team": "cv"}),
    ]
    page = dom((await http.get("/", params={"phase": "Running", "team": "nlp"})).text)
    assert [tr.attrs["data-job-id"] for tr in page.by_id("jobs").all("tr")[1:]] == ["a"]


async def test_a_job_page_is_served_as_html_for_a_watched_job(
    http: httpx.AsyncClient, backend: Backend
) -> None:
    backend.rows = [JobRow(SEED_ID, "bert", "Running", "Running", "up", NOW, 0)]
    r = await http.get(f"/jobs/{SEED_ID}")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert dom(r.text).by_id("job-name").text == "bert"
    assert backend.asked == [SEED_ID]


async def test_an_unwatched_job_page_is_404_with_the_id_escaped(
    http: httpx.AsyncClient, backend: Backend
) -> None:
    r = await http.get("/jobs/" + HOSTILE.replace("/", "%2F"))
    assert r.status_code == 404
    page = dom(r.text)
    assert not page.all("script") and not page.all("img")
    assert HOSTILE in page.all("code")[0].text


async def test_an_id_longer_than_any_job_id_is_not_looked_up(
    http: httpx.AsyncClient, backend: Backend
) -> None:
    assert (await http.get("/jobs/" + "x" * 5000)).status_code == 404
    assert (await http.get("/jobs/" + "x" * 5000 + "/metrics")).status_code == 404
    assert backend.asked == []


async def test_a_jobs_metrics_are_its_lines_as_prometheus_text(
    http: httpx.AsyncClient, backend: Backend
) -> None:
    backend.lines = {SEED_ID: BODY}
    r = await http.get(f"/jobs/{SEED_ID}/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert r.content == BODY
    missing = await http.get("/jobs/other/metrics")
    assert missing.status_code == 404 and missing.text == "no series of this job\n"
