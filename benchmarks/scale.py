"""How the monitor scales, measured in one run against the baselines named in issue 6.

    python benchmarks/scale.py --jobs 10000

Starts a loopback backend serving N distinct job documents (``backend.py``) and the real daemon
(``modelarts-monitor run``) against it, then measures:

- the first full poll round (start until ``/readyz`` says every job was polled once);
- sustained polls per second and CPU milliseconds per poll, with the schedule saturated;
- resident memory per monitored job above the idle baseline (the same daemon with no jobs),
  at a realistic 30 s interval;
- ``/metrics`` latency (p50, p99) and size, plain and gzip, at that realistic load;

and, in the same run, the two baselines:

- (a) a straightforward prometheus-client custom collector that rebuilds every family from the
  same snapshots at scrape time;
- (b) a bare ``httpx.AsyncClient`` GET loop at the same concurrency against the same backend.

It prints one JSON object: the figures, the ratios against the baselines, the targets, and the
machine. Figures drift on shared machines; the ratios, measured in one run, are what hold.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backend import PROJECT, Backend, cpu_seconds, document, free_port, job_id, rss_bytes

from monitor.core.diff import observe
from monitor.exposition.families import JOB_FAMILIES
from monitor.modelarts.parse import parse_job

CONCURRENCY = 32


def daemon_config(
    workdir: Path, name: str, backend: str, jobs: int, interval: float, usage: bool = False
) -> Path:
    port = free_port()
    doc = {
        "api": {"endpoint": backend, "project_id": PROJECT, "timeout": "10s"},
        "auth": {"type": "none"},
        "poll": {"interval": interval, "jitter": 0, "concurrency": CONCURRENCY},
        "jobs": [{"id": job_id(i), "labels": {"team": f"team-{i % 20}"}} for i in range(jobs)],
        "state": {"path": str(workdir / f"{name}.db")},
        "events": {"sinks": [{"type": "file", "path": str(workdir / f"{name}-events.jsonl")}]},
        "server": {"listen": f"127.0.0.1:{port}"},
        "log": {"level": "warning", "format": "json"},
        "usage": {"enabled": usage, "interval": "60s"},
    }
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


class Daemon:
    def __init__(self, config: Path, log: Path) -> None:
        doc = yaml.safe_load(config.read_text())
        self.url = "http://" + doc["server"]["listen"]
        self.started = time.monotonic()
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.http = httpx.Client(timeout=60, trust_env=False)

    def wait_ready(self, timeout: float) -> float:
        """Seconds from start until every job was polled once (``/readyz`` 200)."""
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("daemon exited")
            try:
                if self.http.get(f"{self.url}/readyz").status_code == 200:
                    return time.monotonic() - self.started
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("daemon not ready in time")

    def sample(self, prefix: str) -> float:
        text = self.http.get(f"{self.url}/metrics", headers={"Accept-Encoding": "identity"}).text
        for line in text.splitlines():
            if line.startswith(prefix):
                return float(line.split()[-1])
        raise RuntimeError(f"no {prefix}")

    def ok_polls(self) -> float:
        return self.sample('modelarts_monitor_polls_total{result="ok"}')

    def scrape_times(self, n: int, gzip: bool) -> tuple[list[float], int]:
        return scrape(f"{self.url}/metrics", n, gzip)

    def stop(self) -> None:
        self.http.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def scrape(url: str, n: int, gzip: bool) -> tuple[list[float], int]:
    """Scrape ``n`` times with aiohttp's client, which reads a large body several times faster
    than httpx's sync client (as Prometheus itself does), so the measured time is the server's
    and not the reader's. Returns the times and the size on the wire."""

    async def run() -> tuple[list[float], int]:
        headers = {"Accept-Encoding": "gzip" if gzip else "identity"}
        times, size = [], 0
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            for _ in range(n):
                start = time.perf_counter()
                async with session.get(url, headers=headers) as r:
                    size = 0
                    async for chunk in r.content.iter_chunked(1 << 20):
                        size += len(chunk)
                times.append(time.perf_counter() - start)
        return times, size

    return asyncio.run(run())


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def baseline_b(backend: str, jobs: int) -> dict[str, float]:
    """A bare httpx.AsyncClient GET loop at the daemon's concurrency, same backend."""
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=backend, limits=limits, trust_env=False) as client:
        sem = asyncio.Semaphore(CONCURRENCY)

        async def get(i: int) -> None:
            async with sem:
                r = await client.get(f"/v2/{PROJECT}/training-jobs/{job_id(i % jobs)}")
                assert r.status_code == 200

        await asyncio.gather(*(get(i) for i in range(min(2000, jobs))))  # warm-up
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(get(i) for i in range(jobs)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"polls_per_second": jobs / wall, "cpu_ms_per_request": cpu / jobs * 1000}


class RebuildingCollector:
    """Baseline (a): every family rebuilt from the snapshots on every scrape."""

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


def baseline_a(jobs: int, scrapes: int) -> dict[str, float]:
    """Served the way the daemon serves (aiohttp) and scraped with the same client, so the ratio
    compares scrapes, not a scrape with a function call."""
    states = [observe(None, parse_job(document(i), job_id(i)), time.time())[0] for i in range(jobs)]
    registry = CollectorRegistry(auto_describe=False)
    labels = [{"team": f"team-{i % 20}"} for i in range(jobs)]
    registry.register(RebuildingCollector(states, labels))
    port = free_port()
    ready = threading.Event()

    async def serve() -> None:
        async def metrics(request: web.Request) -> web.Response:
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
    times, size = scrape(f"http://127.0.0.1:{port}/metrics", scrapes, gzip=False)
    return {
        "p50_ms": percentile(times, 50) * 1000,
        "p99_ms": percentile(times, 99) * 1000,
        "bytes": size,
    }


def usage_cost(work: Path, backend: str, jobs: int, window: float) -> dict[str, Any]:
    """Issue 7: detail polls with per-task usage polling off and on (2 tasks a job, 60 s)."""
    out: dict[str, Any] = {"jobs": jobs, "interval_seconds": 10}
    for usage in (False, True):
        name = f"usage-{'on' if usage else 'off'}"
        daemon = Daemon(daemon_config(work, name, backend, jobs, 10.0, usage), work / f"{name}.log")
        try:
            daemon.wait_ready(600)
            time.sleep(5)
            before = [
                daemon.ok_polls(),
                daemon.sample(SUM),
                daemon.sample(COUNT),
                daemon.sample(USAGE_OK),
            ]
            start = time.monotonic()
            time.sleep(window)
            elapsed = time.monotonic() - start
            after = [
                daemon.ok_polls(),
                daemon.sample(SUM),
                daemon.sample(COUNT),
                daemon.sample(USAGE_OK),
            ]
            out[name] = {
                "detail_polls_per_second": (after[0] - before[0]) / elapsed,
                "detail_poll_mean_ms": (after[1] - before[1]) / (after[2] - before[2]) * 1000,
                "usage_requests_per_second": (after[3] - before[3]) / elapsed,
            }
        finally:
            daemon.stop()
    out["detail_poll_mean_ratio_on_vs_off"] = (
        out["usage-on"]["detail_poll_mean_ms"] / out["usage-off"]["detail_poll_mean_ms"]
    )
    return out


SUM = "modelarts_monitor_poll_duration_seconds_sum"
COUNT = "modelarts_monitor_poll_duration_seconds_count"
USAGE_OK = 'modelarts_monitor_usage_polls_total{result="ok"}'


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--window", type=float, default=15.0, help="seconds of sustained polling")
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument(
        "--usage-jobs",
        type=int,
        default=2000,
        help="jobs for the usage-polling cost figure (0: skip it)",
    )
    args = parser.parse_args()
    n = args.jobs
    result: dict[str, Any] = {
        "jobs": n,
        "concurrency": CONCURRENCY,
        "machine": machine(),
        "scrape_client": "aiohttp, both scrapes served by aiohttp on loopback",
    }
    with tempfile.TemporaryDirectory(prefix="modelarts-bench-") as tmp:
        work = Path(tmp)
        backend = Backend(n, work)
        result["backend"] = backend.kind
        try:
            result["baseline_b_bare_httpx"] = asyncio.run(baseline_b(backend.url, n))

            # Saturated: every job due every second, far more than one process can poll.
            daemon = Daemon(daemon_config(work, "saturated", backend.url, n, 1.0), work / "a.log")
            try:
                result["first_round_seconds"] = daemon.wait_ready(600)
                time.sleep(2)
                polls, cpu, wall = daemon.ok_polls(), cpu_seconds(daemon.proc.pid), time.monotonic()
                time.sleep(args.window)
                polls = daemon.ok_polls() - polls
                cpu = cpu_seconds(daemon.proc.pid) - cpu
                wall = time.monotonic() - wall
                result["sustained"] = {
                    "polls_per_second": polls / wall,
                    "cpu_ms_per_poll": cpu / polls * 1000,
                }
            finally:
                daemon.stop()

            idle = Daemon(daemon_config(work, "idle", backend.url, 0, 30.0), work / "i.log")
            try:
                idle.wait_ready(60)
                time.sleep(2)
                rss_idle = rss_bytes(idle.proc.pid)
            finally:
                idle.stop()

            if args.usage_jobs:
                result["usage_polling"] = usage_cost(work, backend.url, args.usage_jobs, 60.0)

            # Realistic: 30 s interval (333 polls/s at 10,000 jobs); memory and scrapes.
            daemon = Daemon(daemon_config(work, "steady", backend.url, n, 30.0), work / "s.log")
            try:
                daemon.wait_ready(600)
                time.sleep(5)
                plain, plain_size = daemon.scrape_times(args.scrapes, gzip=False)
                gz, gz_size = daemon.scrape_times(max(5, args.scrapes // 2), gzip=True)
                rss = rss_bytes(daemon.proc.pid)
            finally:
                daemon.stop()
        finally:
            backend.stop()

    result["memory"] = {
        "rss_idle_mib": rss_idle / 2**20,
        "rss_mib": rss / 2**20,
        "kib_per_job": (rss - rss_idle) / n / 1024,
    }
    result["metrics"] = {
        "plain": {
            "p50_ms": percentile(plain, 50) * 1000,
            "p99_ms": percentile(plain, 99) * 1000,
            "bytes": plain_size,
        },
        "gzip": {
            "p50_ms": percentile(gz, 50) * 1000,
            "p99_ms": percentile(gz, 99) * 1000,
            "bytes": gz_size,
        },
    }
    result["baseline_a_rebuilding_collector"] = baseline_a(n, max(3, args.scrapes // 4))
    ratios = {
        "metrics_speedup_vs_a": result["baseline_a_rebuilding_collector"]["p50_ms"]
        / result["metrics"]["plain"]["p50_ms"],
        "poll_throughput_vs_b": result["sustained"]["polls_per_second"]
        / result["baseline_b_bare_httpx"]["polls_per_second"],
    }
    result["ratios"] = ratios
    result["targets"] = {
        "metrics_at_least_20x_faster_than_a": ratios["metrics_speedup_vs_a"] >= 20,
        "poll_throughput_at_least_0_7x_b": ratios["poll_throughput_vs_b"] >= 0.7,
        "at_most_25_kib_per_job": result["memory"]["kib_per_job"] <= 25,
    }
    print(json.dumps(rounded(result), indent=2))


def rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return value


if __name__ == "__main__":
    main()
