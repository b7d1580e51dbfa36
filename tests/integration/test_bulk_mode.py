"""``poll.bulk``: the daemon as a user runs it, against the simulator over loopback, through the
whole demo scenario, once polling every job's detail and once refreshing statuses from job-search
pages: the same events (ids, types, data) and the same final job series. And with search items
that lack ``running_records`` (the fallback to the detail), the same again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.harness import (
    DaemonProc,
    SimulatorProc,
    daemon_config,
    free_port,
    read_events,
    wait_until,
)
from tests.integration.conftest import DEMO, check_events, check_final_metrics, job_ids, step_times

pytestmark = pytest.mark.integration

Metrics = dict[tuple[str, tuple[tuple[str, str], ...]], float]
MONITOR_CLOCK = (
    "modelarts_monitor_last_poll_success_timestamp_seconds",
    "modelarts_training_job_phase_last_change_timestamp_seconds",
)
"""Job series whose value is the monitor's own wall-clock time, not the API's data."""


def served(sim: SimulatorProc) -> dict[str, int]:
    """Per job: detail answers plus search answers that listed it (a refresh either way)."""
    state = sim.state()
    jobs = state["requests"].keys() | state.get("searched", {}).keys()
    return {j: state["requests"].get(j, 0) + state.get("searched", {}).get(j, 0) for j in jobs}


def play(sim: SimulatorProc, ids: list[str]) -> None:
    """Every step of the scenario, each held until every job was refreshed three more times:
    the first of those is then fully applied (a job's detail polls, and the rounds, run one
    after the other), whichever way it was refreshed."""
    for t in step_times():
        sim.set_time(t)
        base = served(sim)
        wait_until(
            lambda base=base: all(served(sim).get(j, 0) >= base.get(j, 0) + 3 for j in ids),
            20,
            f"three refreshes of every job at scenario time {t}",
        )


def run_demo(sim: SimulatorProc, tmp: Path, *, bulk: bool) -> tuple[list[dict[str, Any]], Metrics]:
    """A fresh daemon (its own state) through the demo scenario from time 0; its events and
    final metrics."""
    tmp.mkdir()
    ids = list(job_ids().values())
    port = free_port()
    config = daemon_config(tmp, sim.url, ids, port=port)
    doc = yaml.safe_load(config.read_text(encoding="utf-8"))
    doc["poll"]["bulk"] = bulk
    config.write_text(yaml.safe_dump(doc), encoding="utf-8")
    sim.set_time(0)
    daemon = DaemonProc(config, port, tmp / "daemon.log")
    try:
        play(sim, ids)
        metrics = daemon.metrics()
        events = read_events(tmp / "events.jsonl")
    finally:
        assert daemon.stop() == 0, daemon.output()
    return events, metrics


def job_series(metrics: Metrics) -> Metrics:
    return {
        (name, labels): value
        for (name, labels), value in metrics.items()
        if dict(labels).get("job_id") and name not in MONITOR_CLOCK
    }


def transitions(events: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    return sorted((e["id"], e["type"], e["data"]) for e in events)


def requests(metrics: Metrics, endpoint: str) -> float:
    return sum(
        v
        for (n, labels), v in metrics.items()
        if n == "modelarts_monitor_api_requests_total" and dict(labels)["endpoint"] == endpoint
    )


def test_the_demo_scenario_gives_the_same_events_and_metrics_in_detail_and_bulk_mode(
    tmp_path: Path,
) -> None:
    ids = job_ids()
    sim = SimulatorProc(DEMO, tmp_path)
    try:
        detail_events, detail_metrics = run_demo(sim, tmp_path / "detail", bulk=False)
        searches_before = sim.state().get("search_requests", 0)
        bulk_events, bulk_metrics = run_demo(sim, tmp_path / "bulk", bulk=True)
        searched = sim.state()["searched"]
        searches = sim.state()["search_requests"] - searches_before
    finally:
        sim.stop()

    check_events(bulk_events, ids)
    check_final_metrics(bulk_metrics, ids)
    assert transitions(bulk_events) == transitions(detail_events)
    assert job_series(bulk_metrics) == job_series(detail_metrics)
    # Bulk mode did refresh from the search, and said so; detail mode never searched.
    assert searches > 0 and all(searched.get(j, 0) > 0 for j in ids.values())
    assert requests(bulk_metrics, "search") > 0 and requests(detail_metrics, "search") == 0
    assert requests(bulk_metrics, "detail") < requests(detail_metrics, "detail")


def test_search_items_without_running_records_fall_back_to_the_detail_with_the_same_events(
    tmp_path: Path,
) -> None:
    ids = job_ids()
    sim = SimulatorProc(DEMO, tmp_path)
    try:
        trim = {"omit": ["running_records"], "jobs": None}
        httpx.post(f"{sim.url}/_sim/search", json=trim, timeout=5).raise_for_status()
        events, metrics = run_demo(sim, tmp_path / "trimmed", bulk=True)
    finally:
        sim.stop()

    check_events(events, ids)
    check_final_metrics(metrics, ids)
    assert requests(metrics, "search") > 0
