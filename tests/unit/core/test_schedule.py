"""core/schedule.py: a job's grid of poll times, coalesced when a poll runs late or long."""

from __future__ import annotations

import pytest

from monitor.core.schedule import anchor_for, coalesce, fire_time, following, spread

ANCHOR, INTERVAL = 100.0, 10.0


@pytest.mark.parametrize(
    ("due", "now", "expected"),
    [
        (0, 100.0, (0, 0)),  # on time
        (0, 109.9, (0, 0)),  # late, but before the next grid time: still this one
        (0, 110.0, (1, 1)),  # the next one is due: it replaces this one, missed
        (3, 175.0, (7, 4)),  # four grid times passed while the loop was busy
        (5, 149.0, (5, 0)),  # woken early (clock skew): never polls for a past index
    ],
)
def test_a_late_wakeup_polls_once_for_the_latest_grid_time(
    due: int, now: float, expected: tuple[int, int]
) -> None:
    assert coalesce(ANCHOR, INTERVAL, due, now) == expected


@pytest.mark.parametrize(
    ("ran", "now", "expected"),
    [
        (0, 101.0, (1, 0)),  # a quick poll: the next grid time
        (0, 110.0, (2, 1)),  # ended exactly on the next grid time: that one was overrun
        (2, 155.5, (6, 3)),  # grid times 3, 4 and 5 passed while the poll ran
        (4, 120.0, (5, 0)),  # the clock says earlier than the poll's own time: next index
    ],
)
def test_the_next_poll_is_the_first_grid_time_after_the_poll_ended(
    ran: int, now: float, expected: tuple[int, int]
) -> None:
    assert following(ANCHOR, INTERVAL, ran, now) == expected


def test_the_grid_does_not_drift_with_when_polls_end() -> None:
    index, times = 0, []
    for end in (101.5, 113.0, 129.9, 131.0):
        index, _ = following(ANCHOR, INTERVAL, index, end)
        times.append(fire_time(ANCHOR, INTERVAL, index, 0.0))
    assert times == [110.0, 120.0, 130.0, 140.0]


@pytest.mark.parametrize(
    ("jitter", "interval", "expected"),
    [(3.0, 30.0, 3.0), (20.0, 30.0, 15.0), (-1.0, 30.0, 0.0), (0.0, 5.0, 0.0)],
)
def test_jitter_is_kept_within_half_an_interval(
    jitter: float, interval: float, expected: float
) -> None:
    assert spread(jitter, interval) == expected


@pytest.mark.parametrize(
    ("phase", "second_poll_after"),
    [(0.0, 10.0), (0.5, 7.5), (0.999, 5.005)],
)
def test_a_jobs_later_polls_come_between_half_an_interval_and_an_interval_after_its_first(
    phase: float, second_poll_after: float
) -> None:
    first = 103.0
    anchor = anchor_for(first, INTERVAL, phase)
    assert coalesce(anchor, INTERVAL, 0, first) == (0, 0)  # the first poll is grid time 0
    second, _ = following(anchor, INTERVAL, 0, first + 0.5)
    assert fire_time(anchor, INTERVAL, second, 0.0) - first == pytest.approx(second_poll_after)
