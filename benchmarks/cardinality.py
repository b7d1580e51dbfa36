"""What each job costs Prometheus: series and bytes of ``/metrics`` per job, full vs sparse.

Renders N realistic jobs (the scale benchmark's documents, each with per-task usage for its two
tasks, as a Running job has) through the real series store, once with ``metrics.state_sets:
full`` and once with ``sparse``, and reports the series, the bytes and their per-job share of
each, and whether ``promtool check metrics`` accepts both bodies. Rendering is what the daemon
does on a change; no network, no daemon: the figures are the exposition's, not the machine's.

    python benchmarks/cardinality.py --jobs 1000 10000
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend import document
from scale import machine

from monitor.config.exposure import MetricsSettings
from monitor.core.diff import observe
from monitor.exposition.series import SeriesStore
from monitor.modelarts.parse import parse_job

USAGE = {"cpuUsage": 0.4, "memUsage": 0.5, "gpuUtil": 0.8, "gpuMemUsage": 0.7}
"""A GPU job's readings for one task (the NPU metrics are absent on a GPU job, as the API says)."""


def exposition(jobs: int, state_sets: str) -> bytes:
    store = SeriesStore(project_id="bench", exposure=MetricsSettings(state_sets=state_sets))
    for i in range(jobs):
        state, _ = observe(None, parse_job(document(i)), 1_800_000_000.0)
        store.update(state, {"team": "bench"})
        store.set_health(state.job_id, True, 1_800_000_000.0)
        store.set_usage(state.job_id, {"worker-0": USAGE, "worker-1": USAGE})
    return store.render()


def series(body: bytes) -> int:
    return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))


def promtool(body: bytes) -> str:
    """``ok``, or promtool's complaint; promtool's lint warnings about HELP texts are not errors."""
    tool = shutil.which("promtool")
    if tool is None:
        return "promtool not installed"
    done = subprocess.run(
        [tool, "check", "metrics"], input=body, capture_output=True, timeout=600, check=False
    )
    errors = [
        line
        for line in (done.stdout + done.stderr).decode(errors="replace").splitlines()
        if "error" in line.lower()
    ]
    return "ok" if done.returncode in (0, 3) and not errors else "; ".join(errors[:3])


def measure(jobs: int) -> dict[str, Any]:
    out: dict[str, Any] = {"jobs": jobs}
    for mode in ("full", "sparse"):
        started = time.perf_counter()
        body = exposition(jobs, mode)
        n = series(body)
        out[mode] = {
            "series": n,
            "bytes": len(body),
            "series_per_job": round(n / jobs, 1),
            "bytes_per_job": round(len(body) / jobs),
            "render_s": round(time.perf_counter() - started, 2),
            "promtool": promtool(body),
        }
    out["sparse_vs_full_series"] = round(out["sparse"]["series"] / out["full"]["series"], 3)
    out["sparse_vs_full_bytes"] = round(out["sparse"]["bytes"] / out["full"]["bytes"], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[1_000, 10_000])
    args = parser.parse_args()
    result = {"machine": machine(), "runs": [measure(n) for n in args.jobs]}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
