"""One fair lock per key, alive only while someone holds or awaits it.

The job book serializes each job's applies (a poll's, a sweep's) without one lock object per
watched job: at 10,000 jobs, idle locks would be memory spent on nothing.

Nor does a held key get an ``asyncio.Lock``: almost every hold is uncontended (one poll of a
job at a time; a usage sweep rarely overlaps it), and a first poll round takes 10,000 of them
on the main thread, whose CPU bounds the round. So the uncontended hold is one dict entry, set
on entry and deleted on exit, with no lock, Future, generator or dataclass made; a FIFO of
waiter futures is made only when a second holder of the key arrives. Release hands the key
straight to the first waiter still waiting (fair, as ``asyncio.Lock`` is), so a newcomer can
never barge in between a release and the woken waiter's turn.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from types import TracebackType

_Waiters = deque[asyncio.Future[None]]


class KeyedLock:
    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: dict[str, _Waiters | None] = {}
        """Key held -> its waiters in arrival order (``None`` until a second holder arrives)."""

    def __len__(self) -> int:
        """Keys held or awaited now."""
        return len(self._held)

    def __call__(self, key: str) -> _Hold:
        """Hold ``key``'s lock: holders of one key run one at a time, in the order they
        arrived; other keys do not wait."""
        return _Hold(self._held, key)


class _Hold:
    """One ``async with lock(key):``, a plain object: ``contextlib.asynccontextmanager``'s
    generator and wrapper would cost more than the uncontended hold itself."""

    __slots__ = ("_held", "_key")

    def __init__(self, held: dict[str, _Waiters | None], key: str) -> None:
        self._held = held
        self._key = key

    async def __aenter__(self) -> None:
        held, key = self._held, self._key
        if key not in held:
            held[key] = None  # the fast path: nobody holds it, now we do
            return
        waiters = held[key]
        if waiters is None:
            waiters = held[key] = deque()
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.append(turn)
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                # Handed the key in the same turn as we were cancelled: we hold it, so pass
                # it on, or it stays held by a task that is gone.
                self._release()
            else:
                # Cancelled (or interrupted) while queued: mark the turn done so no release
                # hands it the key, and leave the queue now rather than at the next release,
                # which may already have dropped it.
                turn.cancel()
                with contextlib.suppress(ValueError):
                    waiters.remove(turn)
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release()

    def _release(self) -> None:
        """Hand the key to its first waiter still waiting, or let it go."""
        waiters = self._held[self._key]
        while waiters:
            turn = waiters.popleft()
            if not turn.done():  # a done turn was cancelled: its task is leaving the queue
                turn.set_result(None)
                return
        del self._held[self._key]
