"""usage.py: per-task metrics parsing (percent -> ratio, -1 = no data) and the hang rule."""

from __future__ import annotations

from typing import Any

import pytest

from monitor.core.hang import HangState, accelerators_idle, observe_hang
from monitor.errors import InvalidResponse
from monitor.modelarts.parse import parse_task_metrics

DOC_EXAMPLE = {
    "metrics": [
        {"metric": "cpuUsage", "value": [2.43, 5.1, 16.8]},
        {"metric": "memUsage", "value": [0.04, 10.2, -1]},
        {"metric": "gpuUtil", "value": [-1, -1, -1]},
        {"metric": "npuUtil", "value": []},
        {"metric": "diskUsage", "value": [50]},
    ]
}


def test_newest_valid_point_per_metric_as_a_ratio() -> None:
    assert parse_task_metrics(DOC_EXAMPLE) == pytest.approx({"cpuUsage": 0.168, "memUsage": 0.102})


def test_minus_one_everywhere_means_no_series_not_zero() -> None:
    parsed = parse_task_metrics(DOC_EXAMPLE)
    assert "gpuUtil" not in parsed
    assert "npuUtil" not in parsed


@pytest.mark.parametrize(
    "raw",
    [
        [],
        {"metrics": "x"},
        {"metrics": [1]},
        {"metrics": [{"metric": "cpuUsage", "value": "7"}]},
        {"metrics": [{"metric": "cpuUsage", "value": ["7"]}]},
    ],
)
def test_bad_shapes_are_invalid_responses(raw: Any) -> None:
    with pytest.raises(InvalidResponse):
        parse_task_metrics(raw)


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"w0": {"gpuUtil": 0.0}, "w1": {"gpuUtil": 0.0}}, True),
        ({"w0": {"gpuUtil": 0.0}, "w1": {"gpuUtil": 0.5}}, False),
        ({"w0": {"npuUtil": 0.0}, "w1": {"npuUtil": 0.0, "cpuUsage": 0.9}}, True),
        ({"w0": {"gpuUtil": 0.0}, "w1": {"cpuUsage": 0.1}}, None),
        ({"w0": {"cpuUsage": 0.0}}, None),
        ({}, None),
    ],
    ids=[
        "all-idle",
        "one-busy",
        "npu-idle-cpu-busy",
        "a-task-without-data",
        "no-accelerator",
        "none",
    ],
)
def test_accelerators_idle(usage: Any, expected: bool | None) -> None:
    assert accelerators_idle(usage) is expected


IDLE = {"w0": {"gpuUtil": 0.0}, "w1": {"gpuUtil": 0.0}}
BUSY = {"w0": {"gpuUtil": 0.7}, "w1": {"gpuUtil": 0.0}}


def step(
    state: HangState, usage: Any, now: float, running: bool = True
) -> tuple[HangState, list[str]]:
    state, events = observe_hang(
        state, job_id="j", job_name="n", running=running, usage=usage, now=now, window=1800
    )
    return state, [e.type for e in events]


def test_one_suspicion_per_episode_and_one_clearing() -> None:
    s = HangState()
    s, ev = step(s, IDLE, 0)
    assert ev == []
    s, ev = step(s, IDLE, 1799)
    assert ev == [], "not before the window has passed"
    s, ev = step(s, IDLE, 1800)
    assert ev == ["hang_suspected"]
    s, ev = step(s, IDLE, 3600)
    assert ev == [], "once per episode"
    s, ev = step(s, BUSY, 3660)
    assert ev == ["hang_cleared"]
    s, ev = step(s, BUSY, 3720)
    assert ev == []


def test_a_busy_minute_restarts_the_window() -> None:
    s = HangState()
    s, _ = step(s, IDLE, 0)
    s, _ = step(s, BUSY, 1000)
    s, ev = step(s, IDLE, 1100)
    s, ev = step(s, IDLE, 2000)
    assert ev == []
    s, ev = step(s, IDLE, 2900)
    assert ev == ["hang_suspected"]


def test_leaving_running_clears_an_open_episode() -> None:
    s, _ = step(HangState(), IDLE, 0)
    s, _ = step(s, IDLE, 1800)
    s, ev = step(s, IDLE, 1900, running=False)
    assert ev == ["hang_cleared"]


def test_missing_data_neither_opens_nor_closes_an_episode() -> None:
    s, _ = step(HangState(), IDLE, 0)
    s, ev = step(s, {"w0": {"cpuUsage": 0.5}}, 1000)
    assert ev == []
    s, ev = step(s, IDLE, 1800)
    assert ev == ["hang_suspected"]


def test_episodes_get_distinct_deterministic_ids() -> None:
    def ids() -> list[str]:
        s, out = HangState(), []
        for now, usage in [(0, IDLE), (1800, IDLE), (1900, BUSY), (2000, IDLE), (3800, IDLE)]:
            s, events = observe_hang(
                s, job_id="j", job_name="n", running=True, usage=usage, now=now, window=1800
            )
            out += [e.id for e in events]
        return out

    first = ids()
    assert len(first) == 3
    assert len(set(first)) == 3
    assert ids() == first
