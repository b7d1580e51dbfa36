"""The one back-off rule: exponential, capped, with jitter.

Used for a failing sink (``dispatcher``), a job whose polls keep failing (``poller``) and a
throttled API (``modelarts.throttle``). Jitter takes a random point in the upper half of the
window, so thousands of jobs or several monitors that failed together do not retry together,
yet a delay never collapses to almost nothing.
"""

from __future__ import annotations

import random


def backoff_delay(
    failures: int, *, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait after ``failures`` consecutive failures (1 for the first)."""
    if failures <= 0:
        return 0.0
    ceiling = min(cap, base * 2 ** min(failures - 1, 32))
    return (rng or random).uniform(ceiling / 2, ceiling)
