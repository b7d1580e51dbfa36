"""When a job's polls are due: a fixed grid per job, coalesced when a poll runs late or long.

A job polled every ``interval`` seconds has scheduled times on a grid, ``anchor + k *
interval``, fixed when the job is added (so it never drifts with the polls' durations) and
spread across the interval (``anchor_for``). Each poll fires at its grid time plus the job's
jitter. Two things can put a job off its grid, and each is
coalesced the same way: the job is polled once, at the latest time due, never twice to catch
up, and the grid times that passed without a poll are counted as skipped, so the operator sees
them (``modelarts_monitor_polls_skipped_total``):

- **missed**: the process was too busy to start the poll before the next one was due (the
  loop woke late); ``coalesce`` says which grid time to poll for and how many it replaces;
- **overrun**: the job's poll was still running when later grid times came; ``following``
  gives the first grid time after the poll ended, and how many passed while it ran. A job is
  therefore never polled twice at the same time.

Pure, so the rules are tested from tables (``tests/unit/core/test_schedule.py``); the running
loop that acts on them is ``daemon/scheduler.py``.
"""

from __future__ import annotations

import math


def anchor_for(first: float, interval: float, phase: float) -> float:
    """The grid of a job whose first poll fires at ``first``: its later polls come between half
    an interval and an interval after it, at ``phase`` (in [0, 1)) of that span. Thousands of
    jobs whose first polls all fire in the first second (so the first round ends soon) would
    otherwise stay a herd, every interval, for as long as the process runs."""
    return first - phase * interval / 2


def index_at(anchor: float, interval: float, now: float) -> int:
    """The latest grid index whose time is not after ``now`` (-1 before the anchor)."""
    return math.floor((now - anchor) / interval)


def coalesce(anchor: float, interval: float, due: int, now: float) -> tuple[int, int]:
    """The loop woke at ``now`` for grid index ``due``: the index to poll for (the latest one
    due by now) and how many earlier ones it replaces (missed)."""
    latest = max(due, index_at(anchor, interval, now))
    return latest, latest - due


def following(anchor: float, interval: float, ran: int, now: float) -> tuple[int, int]:
    """The poll of grid index ``ran`` ended at ``now``: the next index to poll for (the first
    whose time is after now) and how many passed while the poll ran (overrun)."""
    upcoming = max(ran + 1, index_at(anchor, interval, now) + 1)
    return upcoming, upcoming - ran - 1


def fire_time(anchor: float, interval: float, index: int, offset: float) -> float:
    """When grid index ``index`` fires: its time plus the jitter drawn for it (``offset``),
    which ``spread`` keeps within half an interval so a poll never fires in the next one's
    slot."""
    return anchor + index * interval + offset


def spread(jitter: float, interval: float) -> float:
    """The most a poll's time may be put off by jitter: ``jitter``, at most half an interval."""
    return max(0.0, min(jitter, interval / 2))
