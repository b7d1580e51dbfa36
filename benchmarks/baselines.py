"""The baselines ``scale.py`` holds the daemon against, each on the same backend in the same run.

- The HTTP floors: raw aiohttp, httpx over the aiohttp transport, and a bare httpx
  ``AsyncClient`` (httpcore), each fetching *and JSON-decoding* every job document at the
  daemon's concurrency, as ``shared/reference/performance-notes.md`` measured them.
- The rebuilding collector: a straightforward prometheus-client custom collector that rebuilds
  every family from the same snapshots on each scrape, served by aiohttp in text 0.0.4 or
  OpenMetrics as the scrape asks.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import httpx
from aiohttp import web
from backend import PROJECT, document, free_port, job_id
from httpx_aiohttp import AiohttpTransport
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.openmetrics import exposition as openmetrics

from monitor.core.diff import observe
from monitor.exposition.families import JOB_FAMILIES
from monitor.modelarts.parse import parse_job

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
"""The Accept header that asks for OpenMetrics (Prometheus sends it first)."""

Fetch = Callable[[str], Awaitable[Any]]


async def _measure(
    fetch: Fetch, jobs: int, concurrency: int, rate: float | None = None
) -> dict[str, float]:
    """Fetch every document once, as fast as ``concurrency`` allows, or the i-th no sooner
    than ``i / rate`` seconds in (then ``rate * 15`` of them, for 15 s)."""
    sem = asyncio.Semaphore(concurrency)
    paths = [f"/v2/{PROJECT}/training-jobs/{job_id(i)}" for i in range(jobs)]
    count = jobs if rate is None else min(jobs, int(rate * 15))

    async def get(i: int, start: float | None = None) -> None:
        if start is not None and rate is not None:
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        async with sem:
            await fetch(paths[i % jobs])

    await asyncio.gather(*(get(i) for i in range(min(2000, jobs))))  # warm-up
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(get(i, wall) for i in range(count)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"requests_per_second": count / wall, "cpu_ms_per_request": cpu / count * 1000}


async def raw_aiohttp(
    backend: str, jobs: int, concurrency: int, rate: float | None = None
) -> dict[str, float]:
    """The floor for Python here: aiohttp's own client, no cookie jar. At a ``rate``, each
    request costs more than flat out (fewer to share each turn of the loop), so the daemon at
    a given rate is held against this floor at the same rate."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(
        backend, connector=connector, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:

        async def fetch(path: str) -> Any:
            async with session.get(path) as r:
                assert r.status == 200
                return json.loads(await r.read())

        return await _measure(fetch, jobs, concurrency, rate)


async def httpx_client(backend: str, jobs: int, concurrency: int, aiohttp_transport: bool) -> Any:
    """An ``httpx.AsyncClient`` used the plain way, over aiohttp's pool or httpx's own."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    transport = AiohttpTransport(limits=limits) if aiohttp_transport else None
    async with httpx.AsyncClient(
        base_url=backend, limits=limits, trust_env=False, transport=transport
    ) as client:

        async def fetch(path: str) -> Any:
            r = await client.get(path)
            assert r.status_code == 200
            return r.json()

        return await _measure(fetch, jobs, concurrency)


def floors(backend: str, jobs: int, concurrency: int, rate: float) -> dict[str, dict[str, float]]:
    """The floors flat out, and raw aiohttp's at ``rate`` requests a second as well."""
    return {
        "raw_aiohttp": asyncio.run(raw_aiohttp(backend, jobs, concurrency)),
        "raw_aiohttp_paced": asyncio.run(raw_aiohttp(backend, jobs, concurrency, rate)),
        "httpx_over_aiohttp": asyncio.run(httpx_client(backend, jobs, concurrency, True)),
        "bare_httpx": asyncio.run(httpx_client(backend, jobs, concurrency, False)),
    }


class RebuildingCollector:
    """Every family rebuilt from the snapshots on every scrape."""

    def __init__(self, states: list[Any], labels: list[dict[str, str]]) -> None:
        self.states, self.labels = states, labels

    def collect(self) -> Any:
        for family in JOB_FAMILIES:
            extra = list(family.labels)
            builder = CounterMetricFamily if family.type == "counter" else GaugeMetricFamily
            names = ["job_id", "job_name", "team", *extra]
            name = family.name.removesuffix("_total") if family.type == "counter" else family.name
            metric = builder(name, family.help, labels=names)
            for state, labels in zip(self.states, self.labels, strict=True):
                context = dict.fromkeys(family.context, PROJECT)  # e.g. _info's project_id
                for sample_labels, value in family.samples(state.snapshot, state):
                    values = [state.job_id, state.job_name, labels["team"]]
                    sample_labels = {**sample_labels, **context}
                    metric.add_metric(values + [sample_labels[k] for k in extra], value)
            yield metric


def serve_rebuilding_collector(jobs: int) -> str:
    """Start the collector for ``jobs`` snapshots on a thread; returns its ``/metrics`` URL.
    Served the way the daemon serves (aiohttp), so the ratio compares scrapes."""
    states = [observe(None, parse_job(document(i), job_id(i)), time.time())[0] for i in range(jobs)]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        RebuildingCollector(states, [{"team": f"team-{i % 20}"} for i in range(jobs)])
    )
    port = free_port()
    ready = threading.Event()

    async def serve() -> None:
        async def metrics(request: web.Request) -> web.Response:
            if "application/openmetrics-text" in request.headers.get("Accept", ""):
                body = openmetrics.generate_latest(registry)
                return web.Response(
                    body=body, headers={"Content-Type": openmetrics.CONTENT_TYPE_LATEST}
                )
            return web.Response(body=generate_latest(registry), content_type="text/plain")

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.Event().wait()

    threading.Thread(target=lambda: asyncio.run(serve()), daemon=True).start()
    ready.wait(30)
    return f"http://127.0.0.1:{port}/metrics"
