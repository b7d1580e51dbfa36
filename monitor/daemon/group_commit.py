"""Group commit: the job book's commits of many jobs gathered into one SQLite transaction.

A first round of 10,000 new jobs used to be 10,000 transactions, one after another on the
database thread, each a thread hop, a ``BEGIN``/``COMMIT`` and a WAL append: the round was
bound by SQLite, not by the API. Here a commit waits only for the transaction ahead of it (if
any) and is then written together with every commit that arrived meanwhile, up to
``max_batch`` per transaction. Nothing waits on a timer: a lone commit goes out on the next turn
of the event loop, and under load the batch is whatever gathered while the previous one was
written, so the batch size follows the load and the wait is bounded by one transaction.

Each job's state and events are still one unit: a batch is one transaction, all or none. If it
fails, every commit of it fails with the same ``StateError`` (one per waiter, so tracebacks do
not pile up on a shared exception) and each job stays as it was, exactly like a single refused
commit. The book still holds each job's lock around its own ``commit`` call, so the order of one
job's writes and "render before commit, publish after" are the book's, unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from monitor.core.state import JobState
from monitor.errors import StateError
from monitor.store import Store
from monitor.store.commits import Commit

MAX_BATCH = 200
"""Commits per transaction at most: large enough that a first round is bound by the API, small
enough that one transaction (a few ms) never stalls the database thread for long."""


class GroupCommit:
    """Gathers commits and writes each gathering in one transaction; one writer task at a time."""

    def __init__(self, store: Store, *, max_batch: int = MAX_BATCH) -> None:
        self._store = store
        self._max_batch = max_batch
        self._pending: list[tuple[Commit, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def commit(
        self, state: JobState, events: Sequence[Mapping[str, Any]], now: float, target: str
    ) -> None:
        """Return once the job's state and events are in the database (``Store.commit``'s
        arguments); raise ``StateError`` if their batch was refused. Cancelled while waiting,
        the commit may still be written (as a cancelled single commit on the database thread
        may be): the next poll re-detects the same transitions, with the same ids."""
        done = asyncio.get_running_loop().create_future()
        self._pending.append((Commit(state, events, now, target), done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="group-commit")
        await done

    async def _write(self) -> None:
        await asyncio.sleep(0)  # the commits arriving on this turn of the loop join the first batch
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                await self._write_batch([c for c, _ in batch])
            except Exception as exc:  # the database refused, or a bug: the whole batch fails
                self._fail(batch, exc)
            except BaseException:  # cancelled at shutdown: no waiter is left hanging
                for _, done in batch + self._pending:
                    done.cancel()
                self._pending.clear()
                raise
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)

    async def _write_batch(self, commits: list[Commit]) -> None:
        """A batch of one is a plain ``Store.commit``; more, one ``commit_many`` (both write
        through ``store/commits.py``, in one transaction)."""
        if len(commits) == 1:
            c = commits[0]
            await self._store.call(self._store.commit, c.state, c.events, c.now, c.target)
        else:
            await self._store.call(self._store.commit_many, commits)

    @staticmethod
    def _fail(batch: list[tuple[Commit, asyncio.Future[None]]], exc: Exception) -> None:
        """Each waiter gets its own ``StateError`` (a shared one would collect every waiter's
        traceback); a bug's exception is handed on as it is, as a single commit's would be."""
        for _, done in batch:
            if not done.done():
                done.set_exception(StateError(str(exc)) if isinstance(exc, StateError) else exc)
