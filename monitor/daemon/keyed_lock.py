"""One fair lock per key, alive only while someone holds or awaits it.

The job book serializes each job's applies (a poll's, a sweep's) without one lock object per
watched job: at 10,000 jobs, idle locks would be memory spent on nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Turn:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class KeyedLock:
    def __init__(self) -> None:
        self._turns: dict[str, _Turn] = {}

    def __len__(self) -> int:
        """Keys held or awaited now."""
        return len(self._turns)

    @contextlib.asynccontextmanager
    async def __call__(self, key: str) -> AsyncIterator[None]:
        """Hold ``key``'s lock: holders of one key run one at a time, in the order they
        arrived (asyncio's lock is fair); other keys do not wait."""
        turn = self._turns.get(key)
        if turn is None:
            turn = self._turns[key] = _Turn()
        turn.users += 1
        try:
            async with turn.lock:
                yield
        finally:
            turn.users -= 1
            if not turn.users:
                del self._turns[key]
