"""The CPU a first poll and a health update cost the monitor, past the HTTP request.

    python benchmarks/first_poll.py --jobs 10000 [--repeat 3]

``scale.py`` measures the whole daemon; this isolates the two costs of the job path that do
not depend on the network, so a change to them can be measured before and after in one run
(run it once with ``PYTHONPATH`` at the old tree and once at the new, alternating):

- **a first round**: N distinct job documents (``backend.document``, what ``scale.py``
  serves), each decoded and parsed (``parse_job``) and applied to the job book as a poll of a
  job it has never seen (``JobBook.apply_poll``: diff, render, group commit into a real
  SQLite file, install), 32 at a time as the poller's slots would; then the first scrape.
  Reported whole and split: parsing alone, and rendering alone (``SeriesStore.update`` of the
  resulting states into a fresh store);
- **health updates**: what every later poll of an unchanged body costs the exposition
  (``SeriesStore.set_health`` with a new last-success time), N of them, then the scrape that
  shows them.

Every figure is CPU time of the process (SQLite's thread included), the best of ``--repeat``
runs, since the machine may be shared. It prints one JSON object with the machine
(``scale.py``'s ``machine()``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backend import document, job_id
from scale import machine

from monitor.config.settings import PollSettings
from monitor.core.diff import observe
from monitor.core.state import JobState
from monitor.daemon.handoff import Observed
from monitor.daemon.jobs import JobBook
from monitor.delivery.dispatcher import Dispatcher
from monitor.exposition.own import MonitorMetrics
from monitor.exposition.series import SeriesStore
from monitor.logs import configure
from monitor.modelarts.parse import parse_job
from monitor.store import Store

CONCURRENCY = 32
LABELS = {"team": "bench", "queue": "default"}
NOW = 1_800_000_000.0


def cpu(run: Callable[[], object]) -> float:
    """CPU seconds ``run`` took, with the collector out of the way."""
    gc.collect()
    started = time.process_time()
    run()
    return time.process_time() - started


def first_round(bodies: dict[str, bytes], workdir: Path) -> dict[str, float]:
    """Every job's first poll through the book, then the first scrape."""
    store = Store(workdir / "state.db")
    series, metrics = SeriesStore(project_id="bench"), MonitorMetrics()
    book = JobBook(
        store=store,
        series=series,
        metrics=metrics,
        dispatcher=Dispatcher(store, []),
        project_id="bench",
        poll=PollSettings(),
        schedule=lambda job, interval, initial: None,
        clock=lambda: NOW,
    )

    async def poll(job: str, body: bytes) -> None:
        await book.apply_poll(job, Observed(parse_job(json.loads(body), job)), slow=False)

    async def apply_all() -> None:
        items = list(bodies.items())
        for at in range(0, len(items), CONCURRENCY):
            await asyncio.gather(*(poll(job, body) for job, body in items[at : at + CONCURRENCY]))

    def watch_and_poll() -> None:
        for job in bodies:
            book.watch(job, LABELS)
        asyncio.run(apply_all())

    try:
        round_cpu = cpu(watch_and_poll)
        scrape_cpu = cpu(lambda: sum(len(piece) for piece in series.scrape()))
    finally:
        store.close()
    return {"round_s": round_cpu, "first_scrape_ms": scrape_cpu * 1000}


def parts(bodies: dict[str, bytes]) -> dict[str, float]:
    """The parse and the render of a first poll, each alone."""
    docs = [(job, json.loads(body)) for job, body in bodies.items()]
    parsed: list[Any] = []
    parse_s = cpu(lambda: parsed.extend(parse_job(doc, job) for job, doc in docs))
    states: list[JobState] = [observe(None, snapshot, NOW)[0] for snapshot in parsed]
    series = SeriesStore(project_id="bench")

    def render() -> None:
        for state in states:
            series.update(state, LABELS)

    render_s = cpu(render)
    for state in states:
        series.set_health(state.job_id, True, NOW)
    joined_ms = cpu(lambda: sum(len(piece) for piece in series.scrape())) * 1000
    ids = [state.job_id for state in states]

    def health() -> None:
        for i, job in enumerate(ids):
            series.set_health(job, True, NOW + 30 + i / 1000)

    health_s = cpu(health)
    scrape_ms = cpu(lambda: sum(len(piece) for piece in series.scrape())) * 1000
    return {
        "parse_s": parse_s,
        "render_s": render_s,
        "render_scrape_ms": joined_ms,
        "health_s": health_s,
        "health_scrape_ms": scrape_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-book", action="store_true", help="skip the round through the book")
    args = parser.parse_args()
    configure("warning")
    n = args.jobs
    bodies = {job_id(i): json.dumps(document(i)).encode() for i in range(n)}
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        runs = parts(bodies)
        if not args.no_book:
            with tempfile.TemporaryDirectory(prefix="first-poll-bench-") as workdir:
                runs |= first_round(bodies, Path(workdir))
        best = {k: min(v, best.get(k, v)) for k, v in runs.items()}
    per_job = {
        "first_poll_ms": best.get("round_s", 0.0) * 1000 / n,
        "parse_ms": best["parse_s"] * 1000 / n,
        "render_ms": best["render_s"] * 1000 / n,
        "health_update_us": best["health_s"] * 1e6 / n,
    }
    print(
        json.dumps(
            {
                "jobs": n,
                "monitor": str(Path(sys.modules["monitor"].__file__ or "").parent),
                "best_of": args.repeat,
                "cpu_per_job": {k: round(v, 4) for k, v in per_job.items()},
                "cpu_total": {k: round(v, 3) for k, v in best.items()},
                "machine": machine(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
