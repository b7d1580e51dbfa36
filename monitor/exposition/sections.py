"""Each family's lines of every job, joined once and kept until a job's lines of it change.

A scrape used to join every job's lines again, tens of MB at 10,000 jobs, though most families
(phases, info, restarts) change only when a job does. Here each family's joined body is kept,
and a scrape writes it as it is; only a family some job changed since the last scrape is joined
again, once, at that scrape (``body``).

The body is the one copy of the text: a job keeps no lines of its own, only where its lines
sit in each family's body (``JobLines.spans``: start and length per family). A job's new lines
wait in the family's ``pending`` until the next join puts them in their place (at the next
scrape, or earlier when many wait), so only jobs that changed lately hold a second copy of
their lines, and only of the families that changed. Keeping the joined body therefore costs
no memory, where keeping it next to per-job copies would double the largest thing the monitor
holds.

Each body lives in pages of its own (an anonymous ``mmap``): a body is MBs, replaced whole at
each join, and a replaced ``bytes`` of that size would stay in the C heap (glibc raises its mmap
threshold after the first such free), so a few joins would leave the process holding every
old body's worth of freed heap. Pages are given back to the system the moment the last view of
an old body (a scrape still writing it) lets go.
"""

from __future__ import annotations

import mmap
from array import array

MIN_PENDING = 256
PENDING_SHARE = 8
"""A family is joined early, between scrapes, once more than ``MIN_PENDING`` jobs and more
than one in ``PENDING_SHARE`` of its jobs wait in ``pending``: so a first round of 10,000 new
jobs never holds every job's lines twice (pending, then joined) and leaves no heap of freed
lines behind, at the cost of joining a family a few times over (each join is one ``memcpy``
of its body, amortised over an eighth of its jobs)."""


class JobLines:
    """One job's place in every family's body. Compared by identity: a job removed and
    watched again is a new ``JobLines``, and the old one's lines leave at the next join."""

    __slots__ = ("spans",)

    def __init__(self, families: int) -> None:
        self.spans = array("I", bytes(8 * families))
        """Start and length of this job's lines in each family's body (length 0: none);
        32 bits each, for bodies of tens of MB (a family past 4 GiB would not be scraped)."""


class Sections:
    """The joined body of each of ``families`` families, and the lines waiting to join it."""

    def __init__(self, families: int) -> None:
        self._bodies: list[memoryview] = [EMPTY] * families
        self._order: list[list[JobLines]] = [[] for _ in range(families)]
        """The jobs whose lines are in each body, in the order they appear there."""
        self._pending: list[dict[JobLines, bytes]] = [{} for _ in range(families)]

    def get(self, job: JobLines, family: int) -> bytes:
        """The job's current lines of ``family`` (pending or in place)."""
        return bytes(self._current(job, family))

    def set(self, job: JobLines, family: int, lines: bytes) -> None:
        """The job's lines of ``family`` are now ``lines`` (``b""``: none). The same lines
        again change nothing, so the family's body stays cached."""
        pending = self._pending[family]
        current = pending.get(job)
        if current is None:  # inline ``_current``: this runs for every family of every poll
            start, length = job.spans[2 * family], job.spans[2 * family + 1]
            if (self._bodies[family][start : start + length] == lines) if length else not lines:
                return
        elif current == lines:
            return
        pending[job] = lines
        if len(pending) > max(MIN_PENDING, len(self._order[family]) // PENDING_SHARE):
            self._join(family)

    def _current(self, job: JobLines, family: int) -> bytes | memoryview:
        pending = self._pending[family].get(job)
        if pending is not None:
            return pending
        start, length = job.spans[2 * family], job.spans[2 * family + 1]
        return self._bodies[family][start : start + length]

    def drop(self, job: JobLines) -> None:
        """The job leaves every family at the next join of each."""
        for family, pending in enumerate(self._pending):
            if job.spans[2 * family + 1] or job in pending:
                pending[job] = b""

    def body(self, family: int) -> memoryview:
        """Every job's lines of ``family``, joined; joined again only if a job changed them."""
        if self._pending[family]:
            self._join(family)
        return self._bodies[family]

    def _join(self, family: int) -> None:
        pending = self._pending[family]
        old = self._bodies[family]  # unchanged jobs' lines are sliced from it, not copied
        parts: list[bytes | memoryview] = []
        order: list[JobLines] = []
        position = 0
        at, size = 2 * family, 2 * family + 1
        newcomers = [job for job in pending if not job.spans[size]]
        keep: list[JobLines] = self._order[family]
        if len(newcomers) == len(pending):  # only jobs new to the family (a first round):
            parts.append(old)  # the body stays as it is, in one piece, and they follow it
            order.extend(keep)
            position, keep = len(old), []
        for job in [*keep, *newcomers]:
            lines: bytes | memoryview | None = pending.get(job)
            if lines is None:
                lines = old[job.spans[at] : job.spans[at] + job.spans[size]]
            if not lines:
                job.spans[at] = job.spans[size] = 0
                continue
            parts.append(lines)
            order.append(job)
            job.spans[at], job.spans[size] = position, len(lines)
            position += len(lines)
        self._bodies[family] = _paged(parts, position)
        self._order[family] = order
        pending.clear()


EMPTY = memoryview(b"")


def _paged(parts: list[bytes | memoryview], size: int) -> memoryview:
    """``parts`` joined into pages of their own, read-only."""
    if not size:
        return EMPTY
    pages = mmap.mmap(-1, size)
    at = 0
    for part in parts:
        pages[at : at + len(part)] = part
        at += len(part)
    return memoryview(pages).toreadonly()
