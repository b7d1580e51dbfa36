"""Protecting the account's API quota: a global request rate and a pause after throttling.

ModelArts publishes no per-API limit; its advice for a 429 is to back off and retry after a
few seconds. Throttling is per account (or per source IP at the gateway), not per job, so a 429
pauses *every* request of this monitor: for ``Retry-After`` seconds when the server says, else
for an exponentially growing, jittered delay that resets on the first success.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from monitor.core.backoff import backoff_delay


class Throttle:
    def __init__(
        self,
        rate: float = 0.0,
        *,
        max_pause: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``rate`` requests per second across all callers; 0 means no limit."""
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._max_pause = max_pause
        self._clock = clock
        self._sleep = sleep
        self._next_slot = 0.0
        self._paused_until = 0.0
        self._throttled = 0

    async def acquire(self) -> None:
        """Wait for this request's turn. Slots are handed out in call order, without a lock:
        each caller reserves the next free slot before sleeping."""
        now = self._clock()
        slot = max(now, self._next_slot, self._paused_until)
        self._next_slot = slot + self._interval
        if slot > now:
            await self._sleep(slot - now)

    def at_once(self) -> bool:
        """Whether a request now goes without waiting: no rate limit and no pause. Then
        ``acquire`` has no turn to reserve either, so an admission may skip it (the poll path's
        fast path, ``daemon/targets.admitted``)."""
        return not self._interval and self._paused_until <= self._clock()

    def throttled(self, retry_after: float | None) -> float:
        """The API said 429: pause everyone; returns the pause in seconds."""
        self._throttled += 1
        pause = (
            min(retry_after, self._max_pause)
            if retry_after is not None
            else backoff_delay(self._throttled, base=1.0, cap=self._max_pause)
        )
        self._paused_until = max(self._paused_until, self._clock() + pause)
        return pause

    def succeeded(self) -> None:
        self._throttled = 0
