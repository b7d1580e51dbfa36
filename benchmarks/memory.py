"""Where a watched job's memory goes: tracemalloc around N jobs polled once through the book.

    python benchmarks/memory.py --jobs 3000 [--top 15] [--scrape] [--rss]

The job path is wired as ``App`` wires it (store, series, book, poller, dispatcher), over an
httpx mock transport serving ``backend.document`` (the realistic job documents ``scale.py``
serves), with no scheduler (its timers are another process's cost, measured by ``scale.py``'s
RSS figures). Every job is watched and polled once; then the heap is compared with the one
before the first job was watched. ``--scrape`` scrapes once in each format first, which joins
every family whose lines still wait (as a running daemon's first scrape does).

It prints one JSON object: bytes per job Python allocated, the lines that allocated most of
them (per job), so a cut can be aimed at the right place, and the exposition text per job,
which lives in pages of its own (``sections.py``) that tracemalloc does not see. RSS also
holds allocator slack and SQLite's page cache, which ``scale.py`` measures through HTTP.

``--rss`` measures the process's resident memory instead (``/proc/self/status``), before the
first job is watched and after every job was polled (and scraped, with ``--scrape``), without
tracemalloc, whose own bookkeeping would swell it: the figure ``scale.py`` reports for the
daemon, for the job path alone, so a before/after of a change takes a minute, not a run of
the daemon at 10,000 jobs.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backend import document, job_id, rss_bytes

from monitor.config.settings import PollSettings
from monitor.daemon.jobs import JobBook
from monitor.daemon.poller import Poller
from monitor.delivery.dispatcher import Dispatcher
from monitor.exposition.own import MonitorMetrics
from monitor.exposition.series import SeriesStore
from monitor.logs import configure
from monitor.modelarts.client import ModelArtsClient
from monitor.store import Store

CONCURRENCY = 32


async def measure(jobs: int, top: int, scrape: bool, rss: bool = False) -> dict[str, Any]:
    bodies = {job_id(i): json.dumps(document(i)).encode() for i in range(jobs)}

    def handler(request: httpx.Request) -> httpx.Response:
        body = bodies.get(request.url.path.rstrip("/").rsplit("/", 1)[-1])
        return httpx.Response(200 if body else 404, content=body or b"{}")

    workdir = Path(tempfile.mkdtemp(prefix="memory-bench-"))
    store = Store(workdir / "state.db")
    client = ModelArtsClient(
        "https://modelarts.test", "bench", transport=httpx.MockTransport(handler), timeout=10
    )
    series, metrics = SeriesStore(project_id="bench"), MonitorMetrics()
    dispatcher = Dispatcher(store, [])
    book = JobBook(
        store=store,
        series=series,
        metrics=metrics,
        dispatcher=dispatcher,
        project_id="bench",
        poll=PollSettings(),
        schedule=lambda job, interval, initial: None,
        clock=time.time,
    )
    poller = Poller(client=client, book=book, metrics=metrics, concurrency=CONCURRENCY)
    ids = list(bodies)
    await poller.poll(ids[0])  # warm every lazy import and cache on a job not counted
    book.unwatch(ids[0])
    gc.collect()
    rss_before = rss_bytes(os.getpid())
    if not rss:
        tracemalloc.start(1)
    before = tracemalloc.take_snapshot() if not rss else None
    started = time.perf_counter()
    for job in ids:
        book.watch(job, {"team": "bench", "queue": "default"})
    await poll_all(poller, ids)
    round_seconds = time.perf_counter() - started
    if scrape:
        for openmetrics in (False, True):
            for _ in series.scrape(openmetrics=openmetrics):
                pass
    text = sum(len(piece) for piece in series.scrape())
    gc.collect()
    polled, watched = book.first_round()
    common = {
        "jobs": watched,
        "polled": polled,
        "first_round_seconds": round(round_seconds, 2),
        "text_bytes_per_job": round(text / jobs),
    }
    if before is None:
        rss_after = rss_bytes(os.getpid())
        await client.aclose()
        store.close()
        return common | {
            "rss_bytes_per_job": round((rss_after - rss_before) / jobs),
            "note": "rss: resident memory after the round minus before the first watch, text"
            " (in mmap pages) included, SQLite's page cache and allocator slack too",
        }
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    stats = after.compare_to(before, "lineno")
    total = sum(s.size_diff for s in stats)
    await client.aclose()
    store.close()
    return common | {
        "bytes_per_job": round(total / jobs),
        "note": "text: the exposition, in mmap pages (sections.py), which tracemalloc does not"
        " see; bytes_per_job: everything else Python allocated",
        "top": [
            {
                "where": f"{Path(s.traceback[0].filename).name}:{s.traceback[0].lineno}",
                "bytes_per_job": round(s.size_diff / jobs),
                "blocks_per_job": round(s.count_diff / jobs, 2),
            }
            for s in stats[:top]
        ],
    }


async def poll_all(poller: Poller, ids: list[str]) -> None:
    """One poll of each job; the finished tasks are let go before the heap is compared."""
    tasks = [asyncio.ensure_future(poller.poll(job)) for job in ids]
    await asyncio.wait(tasks)
    tasks.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--scrape", action="store_true", help="count the cached scrape bodies")
    parser.add_argument("--rss", action="store_true", help="resident memory, no tracemalloc")
    args = parser.parse_args()
    configure("warning")
    result = asyncio.run(measure(args.jobs, args.top, args.scrape, args.rss))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
