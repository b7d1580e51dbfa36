"""Keeping the event journal within ``events.journal``: a background task, never the poll path.

A round is one bounded DELETE on the database thread (``Store.prune_journal``): delivered
events past retention, and the oldest delivered over the row bound. A round is cheap and
bounded, so the task can fall behind a burst and catch up over the next rounds instead of
holding the database thread (which the polls' commits share) for long. The first round runs at
start, so a journal that outgrew a lowered bound while the daemon was down is trimmed at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from monitor.config.settings import JournalSettings
from monitor.delivery.sinks import Sink
from monitor.errors import StateError
from monitor.logs import get_logger
from monitor.store.database import Store
from monitor.store.journal import Pruned

log = get_logger("monitor.journal")
PRUNE_SECONDS = 60.0
"""Between two rounds: retention is counted in days, so a minute late is never noticed."""
PRUNE_BATCH = 5000
"""Rows one round deletes at most: a few milliseconds of the database thread."""


class JournalPruner:
    def __init__(
        self,
        store: Store,
        settings: JournalSettings,
        sinks: Sequence[str],
        *,
        clock: Callable[[], float] = time.time,
        batch: int = PRUNE_BATCH,
    ) -> None:
        self._store = store
        self._settings = settings
        self._sinks = list(sinks)
        """The configured sinks' names: an event is delivered once all of them took it."""
        self._clock = clock
        self._batch = batch

    async def prune_once(self) -> Pruned:
        """One round; logged once, with its counts, when it deleted anything."""
        s = self._settings
        pruned = await self._store.call(
            self._store.prune_journal,
            now=self._clock(),
            retention=s.retention,
            max_events=s.max_events,
            sinks=self._sinks,
            batch=self._batch,
        )
        if pruned.total:
            log.info(
                "journal_pruned",
                expired=pruned.expired,
                over_limit=pruned.over_limit,
                retention_seconds=s.retention,
                max_events=s.max_events,
            )
        return pruned

    async def run(self, interval: float = PRUNE_SECONDS) -> None:
        """Rounds until cancelled; a failing round is logged and the next one tries again."""
        while True:
            try:
                await self.prune_once()
            except StateError as exc:
                log.error("journal_prune_failed", error=str(exc))
            except Exception:  # pruning must outlive a bug in itself
                log.exception("journal_prune_crashed")
            await asyncio.sleep(interval)


def start_pruning(
    store: Store, settings: JournalSettings, sinks: Sequence[Sink], clock: Callable[[], float]
) -> asyncio.Task[None]:
    """``App``'s pruning task, beside its housekeeping; cancelled at stop."""
    pruner = JournalPruner(store, settings, [sink.name for sink in sinks], clock=clock)
    return asyncio.create_task(pruner.run(), name="journal pruning")
