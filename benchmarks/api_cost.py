"""What polling costs the account's API throttle, in detail mode and in bulk mode (issue 13).

    python benchmarks/api_cost.py                 # 1,000 and 10,000 jobs
    python benchmarks/api_cost.py --jobs 1000 --interval 10

For each job count, the simulator (``modelarts-monitor simulate``, on loopback, manual clock)
serves a generated scenario: every job exists from the start, most Running or Pending, one in
twenty Completed. The real daemon (``modelarts-monitor run``) watches all of them, once with
``poll.bulk: false`` and once with ``poll.bulk: true``. After the daemon's first round (every job
polled once, ``/readyz``) and one more interval to settle, the requests the simulator received
over ``--rounds`` intervals are counted (detail GETs per job, and searches) and turned into API
calls per minute per job (a whole number of intervals: the polls of a fresh daemon come in
waves, and a window that cuts one would count it or not by chance). The bulk run starts from
the detail run's database, as a daemon switched to bulk mode does. The simulator's own counts
are the measure: they do not depend on what the daemon says of itself;
``modelarts_monitor_api_requests_total`` is read too, as a check (a moment apart, so it may
differ by the requests in flight).

The target (issue 13): bulk mode at most a tenth of detail mode. The arithmetic says where the
figures should land: detail mode is 60 / interval calls a minute per live job; bulk mode is one
search per 50 live jobs per interval, plus detail polls for the terminal ones at
``poll.terminal_interval``. Prints one JSON object: the figures per job count and mode, the
ratios, the target, and the machine. ``expected_*`` is that arithmetic: a measured detail figure
below it means the daemon did not keep up with the interval (the machine, not the mode).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backend import free_port
from scale import Daemon, machine

TARGET_RATIO = 0.1
WORKSPACES = ("0", "ws-research")


def scenario(jobs: int) -> dict[str, Any]:
    """``jobs`` jobs in two workspaces: one in twenty Completed, one in ten Pending, the rest
    Running (with a running record and a node count, as real ones have)."""

    def job(i: int) -> dict[str, Any]:
        if i % 20 == 19:
            steps = [{"at": 0, "phase": "Completed", "secondary_phase": "Completed"}]
        elif i % 10 == 3:
            steps = [{"at": 0, "phase": "Pending", "secondary_phase": "Queuing"}]
        else:
            running = {"phase": "Running", "secondary_phase": "Running", "nodes": 2, "run": {}}
            steps = [{"at": 0, **running}]
        return {
            "id": job_id(i),
            "name": f"bench-{i:05d}",
            "workspace_id": WORKSPACES[i % len(WORKSPACES)],
            "node_count": 2,
            "timeline": steps,
        }

    return {"speed": 1.0, "jobs": [job(i) for i in range(jobs)]}


def job_id(i: int) -> str:
    return f"b3c0ffee-0000-4000-8000-{i:012d}"


def daemon_config(
    work: Path, name: str, sim_url: str, jobs: int, interval: float, bulk: bool
) -> Path:
    port = free_port()
    doc = {
        "api": {"endpoint": sim_url, "project_id": "bench", "timeout": "10s"},
        "auth": {"type": "none"},
        "poll": {"interval": interval, "concurrency": 32, "bulk": bulk},
        "jobs": [{"id": job_id(i)} for i in range(jobs)],
        # One database per job count: the bulk run starts from what the detail run stored, as
        # a daemon switched to bulk mode does (its first round then needs no detail polls).
        "state": {"path": str(work / f"state-{jobs}.db")},
        "events": {"sinks": [{"type": "file", "path": str(work / f"{name}-events.jsonl")}]},
        "server": {"listen": f"127.0.0.1:{port}"},
        "log": {"level": "warning", "format": "json"},
        "usage": {"enabled": False},
    }
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


class Simulator:
    """``modelarts-monitor simulate`` on loopback, its clock stopped (the jobs hold still)."""

    def __init__(self, scenario_file: Path, log: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "monitor", "simulate", "--manual-clock"),
                *("--scenario", str(scenario_file), "--listen", self.url.removeprefix("http://")),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.http = httpx.Client(timeout=30, trust_env=False)
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"simulator did not start (see {log})")
            try:
                self.http.get(f"{self.url}/_sim/state").raise_for_status()
                return
            except httpx.HTTPError:
                time.sleep(0.1)

    def counts(self) -> tuple[int, int]:
        """(detail requests, search requests) so far."""
        state = self.http.get(f"{self.url}/_sim/state").json()
        return sum(state["requests"].values()), state.get("search_requests", 0)

    def stop(self) -> None:
        self.http.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self._log.close()


def expected(jobs: int, interval: float, bulk: bool, terminal_interval: float = 300.0) -> float:
    """Calls per minute per job by the arithmetic of the module docstring, for ``scenario``."""
    spec = scenario(jobs)["jobs"]
    live = [j for j in spec if j["timeline"][0]["phase"] != "Completed"]
    terminal = (len(spec) - len(live)) * 60 / terminal_interval
    if not bulk:
        return (len(live) * 60 / interval + terminal) / jobs
    pages = sum(-(-sum(1 for j in live if j["workspace_id"] == w) // 50) for w in WORKSPACES)
    return (pages * 60 / interval + terminal) / jobs


def measure(
    work: Path, sim: Simulator, jobs: int, interval: float, window: float, bulk: bool
) -> dict[str, Any]:
    name = f"{'bulk' if bulk else 'detail'}-{jobs}"
    daemon = Daemon(daemon_config(work, name, sim.url, jobs, interval, bulk), work / f"{name}.log")
    try:
        ready = daemon.wait_ready(timeout=300)
        time.sleep(interval)  # settle: the first rounds, and the first polls' timers, are past
        detail0, search0 = sim.counts()
        own0 = own_requests(daemon)
        started = time.monotonic()
        time.sleep(window)
        elapsed = time.monotonic() - started
        detail1, search1 = sim.counts()
        own1 = own_requests(daemon)
    finally:
        daemon.stop()
    detail, search = detail1 - detail0, search1 - search0
    per_minute = 60 / elapsed
    return {
        "first_round_s": round(ready, 1),
        "window_s": round(elapsed, 1),
        "detail_requests": detail,
        "search_requests": search,
        "calls_per_minute": round((detail + search) * per_minute, 1),
        "calls_per_minute_per_job": round((detail + search) * per_minute / jobs, 4),
        "expected_calls_per_minute_per_job": round(expected(jobs, interval, bulk), 4),
        "daemon_counted": own1 - own0,
    }


def own_requests(daemon: Daemon) -> float:
    """The daemon's own count of its API requests (every endpoint and result)."""
    text = daemon.http.get(f"{daemon.url}/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("modelarts_monitor_api_requests_total{")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--interval", type=float, default=15.0, help="poll.interval, seconds")
    parser.add_argument("--rounds", type=int, default=2, help="intervals counted per run")
    args = parser.parse_args()
    result: dict[str, Any] = {
        "interval_s": args.interval,
        "target": f"bulk calls per minute at most {TARGET_RATIO} of detail mode's",
        "machine": machine(),
        "runs": {},
    }
    with tempfile.TemporaryDirectory(prefix="api-cost-") as tmp:
        work = Path(tmp)
        for jobs in args.jobs:
            scenario_file = work / f"scenario-{jobs}.yaml"
            scenario_file.write_text(yaml.safe_dump(scenario(jobs)), encoding="utf-8")
            sim = Simulator(scenario_file, work / f"simulator-{jobs}.log")
            try:
                runs = {
                    mode: measure(
                        work, sim, jobs, args.interval, args.rounds * args.interval, mode == "bulk"
                    )
                    for mode in ("detail", "bulk")
                }
            finally:
                sim.stop()
            detail, bulk = (runs[m]["calls_per_minute_per_job"] for m in ("detail", "bulk"))
            ratio = bulk / detail if detail else None
            runs["bulk_over_detail"] = round(ratio, 4) if ratio is not None else None
            runs["meets_target"] = ratio is not None and ratio <= TARGET_RATIO
            result["runs"][str(jobs)] = runs
            print(json.dumps({str(jobs): runs}), file=sys.stderr, flush=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
