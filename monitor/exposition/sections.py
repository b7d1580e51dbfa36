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

Lines that change at every poll (the health families: the last-success time) are not even
rendered when they change: ``stale`` only marks the job, and the lines are rendered (by the
``render`` the owner gave) when they are next read, at the join of the next scrape. A poll
then costs the family nothing but the mark, however many polls come between two scrapes, and
a mark holds no text, so it never forces an early join.

Each body lives in pages of its own (an anonymous ``mmap``): a body is MBs, replaced whole at
each join, and a replaced ``bytes`` of that size would stay in the C heap (glibc raises its mmap
threshold after the first such free), so a few joins would leave the process holding every
old body's worth of freed heap. Pages are given back to the system the moment the last view of
an old body (a scrape still writing it) lets go. They are allocated with room to spare, which
costs address space only until written: a join that only adds jobs (a first round's early
joins) writes their lines past the end of the body, where no view of it reaches, instead of
copying the whole body again each time.
"""

from __future__ import annotations

import mmap
from array import array
from collections.abc import Callable
from typing import Generic, TypeVar

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


J = TypeVar("J", bound=JobLines)


class Sections(Generic[J]):
    """The joined body of each of ``families`` families, and the lines waiting to join it.
    ``render(job, family)`` gives a job's current lines of a family marked ``stale``."""

    def __init__(self, families: int, render: Callable[[J, int], bytes] | None = None) -> None:
        self._bodies: list[memoryview] = [EMPTY] * families
        self._order: list[list[J]] = [[] for _ in range(families)]
        """The jobs whose lines are in each body, in the order they appear there."""
        self._pending: list[dict[J, bytes]] = [{} for _ in range(families)]
        self._stale: list[dict[J, None]] = [{} for _ in range(families)]
        """Jobs whose lines of each family are to be rendered when next read (a dict, not a
        set: a job new to the family joins it in the order it came, as with ``set``)."""
        self._pages: list[mmap.mmap | None] = [None] * families
        """The pages under each body, with room past its end (``_append``)."""
        self._render = render

    def get(self, job: J, family: int) -> bytes:
        """The job's current lines of ``family`` (pending or in place)."""
        return bytes(self._current(job, family))

    def set(self, job: J, family: int, lines: bytes) -> None:
        """The job's lines of ``family`` are now ``lines`` (``b""``: none). The same lines
        again change nothing, so the family's body stays cached."""
        self.set_all(job, (lines,), family)

    def set_all(self, job: J, chunks: tuple[bytes, ...], first: int = 0) -> None:
        """``set`` of the families ``first``, ``first + 1``... at once: a job's lines of every
        job family after a poll, in one loop (this is most of what installing a poll costs)."""
        spans, bodies = job.spans, self._bodies
        for family, lines in enumerate(chunks, first):
            pending = self._pending[family]
            current = pending.get(job)
            if current is None:  # inline ``_current``: this runs for every family of every poll
                length = spans[2 * family + 1]
                if not length:
                    if not lines:
                        continue
                else:
                    start = spans[2 * family]
                    if bodies[family][start : start + length] == lines:
                        continue
            elif current == lines:
                continue
            pending[job] = lines
            if len(pending) > max(MIN_PENDING, len(self._order[family]) // PENDING_SHARE):
                self._join(family)

    def stale(self, job: J, family: int) -> None:
        """The job's lines of ``family`` changed: ``render`` gives them when they are next
        read (until then, and over any ``set`` of them). Nothing is rendered or joined now."""
        self._stale[family][job] = None

    def _current(self, job: J, family: int) -> bytes | memoryview:
        if job in self._stale[family]:
            return self._rendered(job, family)
        pending = self._pending[family].get(job)
        if pending is not None:
            return pending
        start, length = job.spans[2 * family], job.spans[2 * family + 1]
        return self._bodies[family][start : start + length]

    def _rendered(self, job: J, family: int) -> bytes:
        if self._render is None:
            raise TypeError("Sections.stale needs the render it was built with")
        return self._render(job, family)

    def drop(self, job: J) -> None:
        """The job leaves every family at the next join of each."""
        for family, pending in enumerate(self._pending):
            self._stale[family].pop(job, None)
            if job.spans[2 * family + 1] or job in pending:
                pending[job] = b""

    def body(self, family: int) -> memoryview:
        """Every job's lines of ``family``, joined; joined again only if a job changed them."""
        if self._pending[family] or self._stale[family]:
            self._join(family)
        return self._bodies[family]

    def _join(self, family: int) -> None:
        pending, stale = self._pending[family], self._stale[family]
        for job in stale:  # rendered now, at the join that needs them: once per scrape
            pending[job] = self._rendered(job, family)
        stale.clear()
        size = 2 * family + 1
        newcomers = [job for job in pending if not job.spans[size]]
        if len(newcomers) == len(pending):  # only jobs new to the family (a first round)
            self._append(family, newcomers)
        else:
            self._rejoin(family)
        pending.clear()

    def _append(self, family: int, newcomers: list[J]) -> None:
        """Newcomers' lines after the body as it is. The body's pages were allocated with
        room to spare (untouched pages cost no memory), so the new lines are written past its
        end, where no view of the old body reaches, and nothing of the old body is copied:
        a first round of 10,000 jobs copies each line once, not once per early join."""
        pending, order = self._pending[family], self._order[family]
        at, size = 2 * family, 2 * family + 1
        old = self._bodies[family]
        position = len(old)
        lines: list[bytes] = []
        for job in newcomers:
            new = pending[job]
            if new:
                lines.append(new)
                order.append(job)
                job.spans[at], job.spans[size] = position, len(new)
                position += len(new)
        if not lines:
            return
        pages = self._pages[family]
        if pages is None or len(pages) < position:
            pages = self._pages[family] = _allocate(position)
            pages.write(old)
        pages.seek(len(old))
        pages.write(b"".join(lines))
        self._bodies[family] = memoryview(pages)[:position].toreadonly()

    def _rejoin(self, family: int) -> None:
        """Every job's lines in order into new pages: unchanged ones sliced from the old body
        (each run of neighbours as one slice), changed ones from ``pending``."""
        pending = self._pending[family]
        old = self._bodies[family]
        parts = _Parts(old)
        order: list[J] = []
        position = 0
        at, size = 2 * family, 2 * family + 1
        for job in [*self._order[family], *(job for job in pending if not job.spans[size])]:
            spans = job.spans
            lines = pending.get(job)
            if lines is None:  # unchanged: the same bytes, from where they sat
                length = spans[size]
                parts.old(spans[at], length)
                spans[at] = position
                order.append(job)
                position += length
            elif lines:
                parts.new(lines)
                order.append(job)
                spans[at], spans[size] = position, len(lines)
                position += len(lines)
            else:
                spans[at] = spans[size] = 0
        self._order[family] = order
        if not position:
            self._pages[family], self._bodies[family] = None, EMPTY
            return
        pages = self._pages[family] = _allocate(position)
        parts.write(pages)
        self._bodies[family] = memoryview(pages)[:position].toreadonly()


EMPTY = memoryview(b"")
HEADROOM = 2
"""New pages hold this many times the body they are made for: room for the jobs a first round
adds next, in address space only until written."""


def _allocate(size: int) -> mmap.mmap:
    return mmap.mmap(-1, max(size * HEADROOM, mmap.PAGESIZE))


class _Parts:
    """The pieces of a new body, each run of neighbours in the old body kept as one slice and
    each run of new lines joined, so the copy into pages is a few large writes rather than
    one per job."""

    __slots__ = ("_old", "_pieces", "_run", "_run_end", "_run_start")

    def __init__(self, old: memoryview) -> None:
        self._old = old
        self._pieces: list[bytes | memoryview] = []
        self._run: list[bytes] = []
        self._run_start = self._run_end = 0

    def old(self, start: int, length: int) -> None:
        if self._run:
            self._flush_new()
        if start != self._run_end:
            self._flush_old()
            self._run_start = start
        self._run_end = start + length

    def new(self, lines: bytes) -> None:
        self._flush_old()
        self._run.append(lines)

    def _flush_old(self) -> None:
        if self._run_end > self._run_start:
            self._pieces.append(self._old[self._run_start : self._run_end])
        self._run_start = self._run_end = 0

    def _flush_new(self) -> None:
        self._pieces.append(self._run[0] if len(self._run) == 1 else b"".join(self._run))
        self._run = []

    def write(self, pages: mmap.mmap) -> None:
        self._flush_old()
        if self._run:
            self._flush_new()
        for piece in self._pieces:
            pages.write(piece)
