"""lifecycle.py: how often a job is polled and whether it is exported, from a table."""

from __future__ import annotations

import pytest

from monitor.config.settings import PollSettings
from monitor.core.job import JobSnapshot
from monitor.core.lifecycle import Plan, plan
from monitor.core.state import JobState

NOW = 1_000_000.0
POLL = PollSettings(
    terminal_interval=300,
    terminal_retention=86400,
    not_found_interval=600,
    not_found_retention=3600,
)


def job(phase: str = "Running", since: float = NOW, gone_since: float | None = None) -> JobState:
    return JobState(
        job_id="j",
        snapshot=JobSnapshot(job_id="j", phase=phase),
        phase_since=since,
        gone=gone_since is not None,
        gone_since=gone_since,
    )


@pytest.mark.parametrize(
    ("state", "interval", "expected"),
    [
        (None, 30, Plan(30, True)),
        (JobState(job_id="j"), 30, Plan(30, True)),
        (job("Running", since=NOW - 10**6), 30, Plan(30, True)),
        (job("Pending"), 30, Plan(30, True)),
        (job("Completed", since=NOW - 60), 30, Plan(300, True)),
        (job("Abnormal", since=NOW - 86399), 30, Plan(300, True)),
        (job("Failed", since=NOW - 86400), 30, Plan(None, False)),
        (job("Terminated", since=NOW - 60), 900, Plan(900, True)),
        (job("Running", gone_since=NOW - 60), 30, Plan(600, True)),
        (job("Running", gone_since=NOW - 3600), 30, Plan(600, False)),
        (job("Completed", since=NOW - 10**6, gone_since=NOW - 5), 30, Plan(600, True)),
        (JobState(job_id="j", gone=True, gone_since=NOW), 30, Plan(600, True)),
    ],
    ids=[
        "unknown-job",
        "never-polled",
        "running-forever-is-never-retired",
        "pending",
        "terminal-slows-down",
        "terminal-just-within-retention",
        "terminal-retired-after-retention",
        "a-slower-own-interval-wins",
        "gone-polled-slower-still-exported",
        "gone-past-retention-not-exported",
        "gone-beats-terminal",
        "gone-before-ever-seen",
    ],
)
def test_plan(state: JobState | None, interval: float, expected: Plan) -> None:
    assert plan(state, NOW, interval, POLL) == expected
