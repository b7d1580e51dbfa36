"""How the monitor scales, measured in one run against the baselines of issues 6 and 15.

    python benchmarks/scale.py --jobs 10000

Starts a loopback backend serving N distinct job documents (``backend.py``: nginx, static, so
every poll after the first finds its body unchanged) and the real daemon
(``modelarts-monitor run``) against it, then measures:

- the first full poll round: from the daemon's first answer on ``/readyz`` (it starts serving
  just before it starts polling) until ``/readyz`` says every job was polled once, and until
  the file sink holds every job's ``discovered`` event (delivered behind the polls); and apart
  from it the start-up before it (imports, reading the 10,000-job config, wiring), and the
  round against the time raw aiohttp takes to fetch and decode every document once;
- CPU milliseconds per poll without auth and with AK/SK signing (the backend ignores the
  signature; the signing is the daemon's cost all the same), at the realistic load (every job
  every 30 s: 333 polls/s at 10,000 jobs) and with the schedule saturated (every job due every
  second, far more than one process can poll);
- resident memory per monitored job above the idle baseline (the same daemon with no jobs),
  at a realistic 30 s interval;
- ``/metrics`` latency (p50, p99) and size at that load: text 0.0.4 plain and gzip, and
  OpenMetrics (``Accept: application/openmetrics-text; version=1.0.0``), whatever the daemon
  answers to it (the content type is printed);

and, in the same run, the baselines (``baselines.py``):

- the HTTP floors at the same concurrency on the same backend, each fetching and decoding
  every document: raw aiohttp, httpx over aiohttp's transport, a bare httpx client (b);
- (a) a prometheus-client collector that rebuilds every family at scrape time, both formats.

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
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backend import PROJECT, Backend, cpu_seconds, free_port, job_id, rss_bytes
from baselines import OPENMETRICS, floors, serve_rebuilding_collector

CONCURRENCY = 32


SIGNED = {"type": "aksk", "ak": "BENCHMARKACCESSKEY01", "sk": "benchmark-secret-key-0123456789"}
"""Credentials the backend never checks: the daemon signs every request all the same."""


def daemon_config(
    workdir: Path,
    name: str,
    backend: str,
    jobs: int,
    interval: float,
    usage: bool = False,
    auth: dict[str, str] | None = None,
) -> Path:
    port = free_port()
    doc = {
        "api": {"endpoint": backend, "project_id": PROJECT, "timeout": "10s"},
        "auth": auth or {"type": "none"},
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
        return self.wait_rounds(timeout)[1]

    def wait_rounds(self, timeout: float) -> tuple[float, float]:
        """Seconds from start until the daemon first answered ``/readyz`` (served from just
        before the first poll), and until it said every job was polled once."""
        deadline, serving = self.started + timeout, None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("daemon exited")
            try:
                status = self.http.get(f"{self.url}/readyz").status_code
            except httpx.HTTPError:
                status = 0
            now = time.monotonic() - self.started
            if status and serving is None:
                serving = now
            if status == 200:
                assert serving is not None
                return serving, now
            time.sleep(0.05)
        raise RuntimeError("daemon not ready in time")

    def wait_delivered(self, events: Path, n: int, timeout: float) -> float:
        """Seconds from start until the file sink holds ``n`` events: the first round's
        ``discovered`` events are delivered behind its polls, from the outbox."""
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            if events.exists() and events.read_bytes().count(b"\n") >= n:
                return time.monotonic() - self.started
            time.sleep(0.25)
        raise RuntimeError("the first round's events were not delivered in time")

    def sample(self, prefix: str) -> float:
        text = self.http.get(f"{self.url}/metrics", headers={"Accept-Encoding": "identity"}).text
        for line in text.splitlines():
            if line.startswith(prefix):
                return float(line.split()[-1])
        raise RuntimeError(f"no {prefix}")

    def ok_polls(self) -> float:
        return self.sample('modelarts_monitor_polls_total{result="ok"}')

    def scrape_times(
        self, n: int, gzip: bool, openmetrics: bool = False
    ) -> tuple[list[float], int, str]:
        return scrape(f"{self.url}/metrics", n, gzip, openmetrics)

    def stop(self) -> None:
        self.http.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def scrape(url: str, n: int, gzip: bool, openmetrics: bool = False) -> tuple[list[float], int, str]:
    """Scrape ``n`` times with aiohttp's client, which reads a large body several times faster
    than httpx's sync client (as Prometheus itself does), so the measured time is the server's
    and not the reader's. Returns the times, the size on the wire and the content type."""

    async def run() -> tuple[list[float], int, str]:
        headers = {"Accept-Encoding": "gzip" if gzip else "identity"}
        if openmetrics:
            headers["Accept"] = OPENMETRICS
        times, size, kind = [], 0, ""
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            for _ in range(n):
                start = time.perf_counter()
                async with session.get(url, headers=headers) as r:
                    size, kind = 0, r.headers.get("Content-Type", "")
                    async for chunk in r.content.iter_chunked(1 << 20):
                        size += len(chunk)
                times.append(time.perf_counter() - start)
        return times, size, kind

    return asyncio.run(run())


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


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


REALISTIC, SATURATED = 30.0, 1.0
"""The intervals of the two loads: every job every 30 s (333 polls/s at 10,000 jobs), and every
job due every second, far more than one process can poll."""


def polling(
    work: Path, backend: str, n: int, window: float, auth: str, interval: float
) -> dict[str, float]:
    """The first round, then CPU per poll over ``window`` seconds of polling every job every
    ``interval`` s (``REALISTIC`` or ``SATURATED``); every body after the first is unchanged,
    so this is the poll path's own cost."""
    realistic = interval == REALISTIC
    name = f"{'steady' if realistic else 'saturated'}-{auth}"
    config = daemon_config(
        work, name, backend, n, interval, auth=SIGNED if auth == "aksk" else None
    )
    daemon = Daemon(config, work / f"{name}.log")
    try:
        serving, ready = daemon.wait_rounds(600)
        delivered = daemon.wait_delivered(work / f"{name}-events.jsonl", n, 600)
        # At the realistic load the second round is due an interval after the first polls:
        # measure from there, over a whole interval, when every job is on its own timer.
        time.sleep(max(2.0, interval + 2 - delivered) if realistic else 2)
        polls, cpu, wall = daemon.ok_polls(), cpu_seconds(daemon.proc.pid), time.monotonic()
        time.sleep(max(window, interval) if realistic else window)
        polls = daemon.ok_polls() - polls
        cpu = cpu_seconds(daemon.proc.pid) - cpu
        wall = time.monotonic() - wall
    finally:
        daemon.stop()
    return {
        "startup_seconds": serving,
        "first_round_seconds": ready - serving,
        "first_round_events_delivered_seconds": delivered - serving,
        "ready_seconds": ready,
        "polls_per_second": polls / wall,
        "cpu_ms_per_poll": cpu / polls * 1000,
    }


def latency(times: list[float], size: int, kind: str) -> dict[str, Any]:
    return {
        "p50_ms": percentile(times, 50) * 1000,
        "p99_ms": percentile(times, 99) * 1000,
        "bytes": size,
        "content_type": kind,
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
            # Paced at the realistic load's rate: every job every 30 s.
            result["http_floors"] = floors(backend.url, n, CONCURRENCY, n / REALISTIC)
            for auth, key in (("none", "unsigned"), ("aksk", "signed")):
                result[key] = polling(work, backend.url, n, args.window, auth, REALISTIC)
                result[f"{key}_saturated"] = polling(
                    work, backend.url, n, args.window, auth, SATURATED
                )

            idle = Daemon(daemon_config(work, "idle", backend.url, 0, REALISTIC), work / "i.log")
            try:
                idle.wait_ready(60)
                time.sleep(2)
                rss_idle = rss_bytes(idle.proc.pid)
            finally:
                idle.stop()

            if args.usage_jobs:
                result["usage_polling"] = usage_cost(work, backend.url, args.usage_jobs, 60.0)

            # Realistic: 30 s interval (333 polls/s at 10,000 jobs); memory and scrapes.
            daemon = Daemon(
                daemon_config(work, "steady", backend.url, n, REALISTIC), work / "s.log"
            )
            try:
                daemon.wait_ready(600)
                time.sleep(5)
                few = max(5, args.scrapes // 2)
                scrapes = {
                    "text": latency(*daemon.scrape_times(args.scrapes, gzip=False)),
                    "text_gzip": latency(*daemon.scrape_times(few, gzip=True)),
                    "openmetrics": latency(*daemon.scrape_times(args.scrapes, False, True)),
                    "openmetrics_gzip": latency(*daemon.scrape_times(few, True, True)),
                }
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
    result["metrics"] = scrapes
    collector = serve_rebuilding_collector(n)
    times = max(3, args.scrapes // 4)
    result["baseline_a_rebuilding_collector"] = {
        "text": latency(*scrape(collector, times, gzip=False)),
        "openmetrics": latency(*scrape(collector, times, gzip=False, openmetrics=True)),
    }
    result["ratios"] = ratios = ratios_of(result)
    result["targets"] = targets_of(result, ratios)
    print(json.dumps(rounded(result), indent=2))


NOTES_RAW_AIOHTTP_MS, NOTES_RAW_AIOHTTP_RPS = 0.12, 8689
"""Raw aiohttp on the machine issue 15 measured (``performance-notes.md``, concurrency 32): its
absolute targets are also given as multiples of that floor, since raw aiohttp measured here in
the same run is the one baseline these shared machines cannot shift."""


def ratios_of(result: dict[str, Any]) -> dict[str, float]:
    a, metrics, http = (
        result["baseline_a_rebuilding_collector"],
        result["metrics"],
        result["http_floors"],
    )
    raw, over = http["raw_aiohttp"], http["httpx_over_aiohttp"]
    ratios = {
        "metrics_text_speedup_vs_a": a["text"]["p50_ms"] / metrics["text"]["p50_ms"],
        "metrics_openmetrics_speedup_vs_a": a["openmetrics"]["p50_ms"]
        / metrics["openmetrics"]["p50_ms"],
        "poll_throughput_vs_bare_httpx": result["unsigned_saturated"]["polls_per_second"]
        / http["bare_httpx"]["requests_per_second"],
        "first_round_vs_raw_aiohttp_fetching_all": result["unsigned"]["first_round_seconds"]
        / (result["jobs"] / raw["requests_per_second"]),
    }
    for key in ("unsigned", "signed", "unsigned_saturated", "signed_saturated"):
        cpu = result[key]["cpu_ms_per_poll"]
        ratios[f"{key}_poll_cpu_vs_raw_aiohttp"] = cpu / raw["cpu_ms_per_request"]
        ratios[f"{key}_poll_cpu_vs_httpx_over_aiohttp"] = cpu / over["cpu_ms_per_request"]
    for key in ("unsigned", "signed"):  # the realistic load against the floor at its rate
        paced = http["raw_aiohttp_paced"]["cpu_ms_per_request"]
        ratios[f"{key}_poll_cpu_vs_raw_aiohttp_at_the_same_rate"] = (
            result[key]["cpu_ms_per_poll"] / paced
        )
    return ratios


def targets_of(result: dict[str, Any], ratios: dict[str, float]) -> dict[str, bool]:
    """Issue 15's targets as it states them, and as multiples of raw aiohttp (see above).

    CPU per poll is held, like for like, against the floor flat out (the saturated run) *and*
    against the floor at the realistic load's rate (the 30 s run): a ratio target is met only
    if both are. The absolute ones are the saturated run's, the poll path's own cost."""
    round_floor = 10_000 / NOTES_RAW_AIOHTTP_RPS
    out: dict[str, bool] = {}
    for key, limit in (("signed", 0.45), ("unsigned", 0.35)):
        worst = max(
            ratios[f"{key}_saturated_poll_cpu_vs_raw_aiohttp"],
            ratios[f"{key}_poll_cpu_vs_raw_aiohttp_at_the_same_rate"],
        )
        multiple = limit / NOTES_RAW_AIOHTTP_MS
        out[f"{key}_poll_at_most_{limit}_ms".replace(".", "_")] = (
            result[f"{key}_saturated"]["cpu_ms_per_poll"] <= limit
        )
        out[f"{key}_poll_at_most_{multiple:.2f}x_raw_aiohttp".replace(".", "_")] = worst <= multiple
    return out | {
        "first_round_at_most_5_s": result["unsigned"]["first_round_seconds"] <= 5,
        "first_round_at_most_4_3x_raw_aiohttp_fetching_all": ratios[
            "first_round_vs_raw_aiohttp_fetching_all"
        ]
        <= 5 / round_floor,
        "metrics_at_least_40x_faster_than_a": ratios["metrics_text_speedup_vs_a"] >= 40,
        "openmetrics_at_least_40x_faster_than_a": ratios["metrics_openmetrics_speedup_vs_a"] >= 40,
        "poll_throughput_at_least_0_7x_b": ratios["poll_throughput_vs_bare_httpx"] >= 0.7,
        "at_most_16_kib_per_job": result["memory"]["kib_per_job"] <= 16,
    }


def rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return value


if __name__ == "__main__":
    main()
