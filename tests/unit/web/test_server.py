"""server.py: /metrics, /healthz, /readyz and the landing page, served over loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from aiohttp import web

from monitor.core.events import rfc3339
from monitor.web.pages import JobRow
from monitor.web.server import create_app
from tests.conftest import SEED_ID

NOW = 1_800_000_000.0
BODY = b'# HELP modelarts_monitor_up 1 if ...\n# TYPE modelarts_monitor_up gauge\nmodelarts_monitor_up{job_id="x"} 1\n'


@dataclass
class Backend:
    """What the server is handed: plain callables whose answers a test changes at will."""

    body: bytes = BODY
    readiness: tuple[bool, str] = (True, "ok")
    rows: list[JobRow] = field(default_factory=list)
    scrapes: int = 0

    def metrics(self) -> bytes:
        self.scrapes += 1
        return self.body

    def ready(self) -> tuple[bool, str]:
        return self.readiness

    def overview(self) -> list[JobRow]:
        return self.rows


@pytest.fixture
def backend() -> Backend:
    return Backend()


@pytest.fixture
async def http(backend: Backend) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(metrics=backend.metrics, ready=backend.ready, overview=backend.overview)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", trust_env=False) as client:
            yield client
    finally:
        await runner.cleanup()


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
        JobRow(SEED_ID, "bert-pretrain", "Running", "Running", True, NOW, 3),
        JobRow("job-2", "", "", "", False, None, 0),
    ]
    r = await http.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    page = r.text
    first, second = page.split("<tr>")[2:4]  # after the header row
    assert "bert-pretrain" in first and SEED_ID in first
    assert "<td>Running</td>" in first
    assert rfc3339(NOW) in first
    assert "<td>3</td>" in first
    assert "<td>up</td>" in first
    assert "job-2" in second and "never" in second and "<b>down</b>" in second
    assert "<i>unknown</i>" in second
    for link in ("/metrics", "/healthz", "/readyz"):
        assert f"href='{link}'" in page


async def test_landing_page_escapes_html_in_values_from_the_api(
    http: httpx.AsyncClient, backend: Backend
) -> None:
    backend.rows = [
        JobRow(SEED_ID, "<script>alert(1)</script>", "<b>Running", "x&y", True, NOW, 0),
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
    backend.rows = [
        JobRow(
            SEED_ID,
            "bert",
            "Failed",
            "Failed",
            True,
            NOW,
            1,
            last_reason="Error 2022-11-26T16:03:41+08:00: <img src=x onerror=alert(1)> & OOM",
        ),
        JobRow("job-2", "ok-job", "Running", "Running", True, NOW, 0),
    ]
    page = (await http.get("/")).text
    assert "<th>last reason</th>" in page
    first, second = page.split("<tr>")[2:4]
    assert (
        "<td>Error 2022-11-26T16:03:41+08:00: &lt;img src=x onerror=alert(1)&gt; &amp; OOM</td>"
        in first
    )
    assert "<img" not in page
    assert "<td>0</td><td>-</td></tr>" in second, "a job without a reason shows a dash"


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
    backend.rows = [JobRow(SEED_ID, "bert", "Running", "Running", True, NOW, 0)]

    r = await http.request(method, path, headers=headers)

    assert r.status_code == status
    assert {k: r.headers.get(k) for k in EXPECTED_SECURITY_HEADERS} == EXPECTED_SECURITY_HEADERS


async def test_the_landing_page_needs_nothing_its_policy_forbids(http: httpx.AsyncClient) -> None:
    """No script, no external source: only the inline style and the data: icon it allows."""
    page = (await http.get("/")).text

    assert "<script" not in page and "src=" not in page
    assert "<link rel='icon' href='data:,'>" in page
    assert "http://" not in page and "https://" not in page
