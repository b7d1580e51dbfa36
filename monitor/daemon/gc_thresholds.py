"""The cycle collector's thresholds for a daemon that keeps most of what it allocates.

CPython collects its youngest generation every 700 net allocations of container objects, the
next one every tenth of those, and the whole heap every tenth of *those* once the objects that
survived since the last full collection are a quarter of the heap. That suits a program whose
objects die young. A first round of 10,000 jobs keeps nearly everything it allocates (each
job's state, its series, its prepared request): every object survives its collections and is
examined again at each older one, and the whole heap, millions of objects, was walked five
times in the round as it grew. Measured with ``gc.callbacks`` in the real daemon at 10,000
jobs: 1.9 s of a first round's 16 s of CPU was the collector; with the youngest generation
collected every 20,000 allocations instead, under 0.2 s, and no full collection in the round.

Reference counting frees almost all of the monitor's garbage the moment it is dropped; the
collector is only for cycles (an exception and its traceback's frames, mostly), and 20,000
young objects waiting for it are a few MB at most. The two older thresholds stay CPython's.
"""

from __future__ import annotations

import gc

YOUNG = 20_000
"""Net allocations between two collections of the youngest generation (CPython's: 700)."""


def tune() -> None:
    """Set the daemon's thresholds: once, before the config (10,000 jobs' objects) is read."""
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG, middle, oldest)
