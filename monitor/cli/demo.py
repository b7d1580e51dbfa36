"""``modelarts-monitor demo``: the simulator and the daemon together, no cloud account needed.

It is the real daemon (``App``) against the real simulator over loopback, with AK/SK signing on
(a throw-away key pair made for this run), so what a person sees here is what ``run`` does in
production. State goes to a temporary directory that is removed at the end, or, with
``--state FILE``, to FILE, kept for ``events`` and ``status`` to read afterwards. At the end it
names the jobs that failed, each with its job page, where their story is told.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from monitor import logs
from monitor.config.loading import parse_settings
from monitor.config.settings import split_listen
from monitor.core.reasons import FAILURE_PHASES
from monitor.daemon.app import App
from monitor.errors import ConfigError
from monitor.simulator import Simulator, builtin_scenario, load_scenario, start, stop

PROJECT_ID = "demo-project"
MAX_SPEED = 10.0
"""The demo's closest steps are 2 scenario seconds apart; faster than this, polls miss them."""


def poll_interval(speed: float) -> float:
    """Several polls per scenario step, but never so often that a poll overruns its slot."""
    return max(0.1, min(1.0, 0.5 / speed))


async def run_demo(
    *,
    speed: float = 1.0,
    listen: str = "127.0.0.1:9888",
    keep_running: bool = False,
    scenario_path: str | None = None,
    events_file: str | None = None,
    state: str | None = None,
) -> int:
    if state is not None:
        _check_state_file(Path(state))
    logs.configure("warning", "console", stream=sys.stderr)
    scenario = load_scenario(scenario_path) if scenario_path else builtin_scenario("demo")
    ak, sk = "DEMO" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30)
    sim = Simulator(scenario, speed=speed, credentials={ak: sk})
    sim_runner, sim_port = await start(sim, "127.0.0.1", 0)
    interval = poll_interval(speed)
    with _state_path(state) as state_path:
        sinks: list[dict[str, str]] = [{"type": "console"}]
        if events_file:
            sinks.append({"type": "file", "path": events_file})
        doc = {
            "api": {"endpoint": f"http://127.0.0.1:{sim_port}", "project_id": PROJECT_ID},
            "auth": {"type": "aksk", "ak": ak, "sk": sk},
            "poll": {
                "interval": interval,
                "jitter": interval / 10,
                # A 36 s story: finished and deleted jobs keep the pace instead of slowing down.
                "terminal_interval": interval,
                "not_found_interval": interval,
            },
            # llama-sft's accelerators idle from t=24 to t=32: a 3-scenario-second window shows
            # the hang and its clearing.
            "usage": {"interval": interval, "hang_window": 3.0 / speed},
            "jobs": [{"id": job_id, "labels": {"team": "demo"}} for job_id in sim.job_ids()],
            "state": {"path": state_path},
            "events": {"sinks": sinks},
            "server": {"listen": listen},
        }
        app = App(parse_settings(doc, env={}))
        try:
            await app.start()
        except OSError:
            host, _ = split_listen(listen)
            print(f"{listen} is busy; serving on a free port instead", file=sys.stderr)
            doc["server"] = {"listen": f"{host}:0"}
            app = App(parse_settings(doc, env={}))
            await app.start()
        host, _ = split_listen(listen)
        print(
            f"modelarts-monitor demo: {len(sim.job_ids())} jobs, scenario of "
            f"{sim.end_time():.0f} s at speed {speed:g}"
        )
        print(f"metrics:  http://{host}:{app.port}/metrics")
        print(f"overview: http://{host}:{app.port}/")
        print("events:", flush=True)
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopped.set)
        try:
            await _until_scenario_seen(sim, stopped, interval)
            _print_failed(app, f"http://{host}:{app.port}")
            if keep_running:
                await stopped.wait()
        finally:
            await app.stop(grace=5.0)
            await stop(sim_runner)
    if state is not None:
        print(f"state kept in {state}")
    print("demo finished", flush=True)
    return 0


def _check_state_file(path: Path) -> None:
    """``--state``: a new file in an existing directory. An existing one is refused: the demo
    plays its scenario from the start, and a stored story of the same jobs would not fit it."""
    if not path.parent.is_dir():
        raise ConfigError(f"--state: the directory {path.parent} does not exist")
    if path.exists():
        raise ConfigError(f"--state: {path} exists; give a new file (or remove it first)")


@contextlib.contextmanager
def _state_path(state: str | None) -> Iterator[str]:
    """``state``, or a database in a temporary directory removed afterwards."""
    if state is not None:
        yield state
        return
    with tempfile.TemporaryDirectory(prefix="modelarts-monitor-demo-") as tmp:
        yield str(Path(tmp) / "state.db")


def _print_failed(app: App, base: str) -> None:
    """Each job that ended Failed or Abnormal, with the page that shows its runs and reasons."""
    for view in app.book.views():
        snap = view.state.snapshot if view.state is not None else None
        if snap is not None and snap.phase in FAILURE_PHASES:
            print(f"failed:   {snap.name or view.job_id}  {base}/jobs/{view.job_id}", flush=True)


async def _until_scenario_seen(sim: Simulator, stopped: asyncio.Event, interval: float) -> None:
    """Wait for the scenario's end, then for two more polls of every job.

    Two, because a poll's request is counted when it is served: the second request of a job
    can only start after the first one's poll has finished (``max_instances=1``).
    """
    while not sim.finished() and not stopped.is_set():
        await _wait(stopped, interval)
    seen = dict(sim.requests)
    while not stopped.is_set() and any(
        sim.requests.get(j, 0) < seen.get(j, 0) + 2 for j in sim.job_ids()
    ):
        await _wait(stopped, interval / 2)


async def _wait(stopped: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopped.wait(), timeout=seconds)
