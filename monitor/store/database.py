"""Durable state on SQLite: each job's last state, the event outbox, sinks' dead letters, the
discovered jobs, and the event journal (``journal.py``: the events, kept after delivery).

A poll's new state and the events it produced are written in one transaction, so after a crash
the monitor either has both (and the outbox redelivers the events) or neither (and the next poll
re-detects the same transitions, with the same deterministic ids). Each sink has its own position
in the outbox; an event is deleted once every configured sink has passed it (its journal row,
written in the same transaction, stays). An event a sink can never take is copied to that
sink's dead letters in the same transaction that moves the sink past it, so it is never both
lost and acknowledged.

The database is private (``files.py``): created ``0600`` before SQLite opens it, and SQLite gives
the ``-wal`` and ``-shm`` files it creates the database file's mode (``os_unix.c``), so they are
``0600`` too without touching the umask other threads share.

SQLite calls block, so they run on one dedicated thread (``call``), never on the event loop; one
thread also means one connection and no locking between writers. WAL mode with
``synchronous=NORMAL`` keeps a commit to a page append, which is cheap enough to do per change.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from monitor.core.state import JobState, decode_state
from monitor.errors import StateError
from monitor.store import outbox
from monitor.store.commits import Commit, write_commits
from monitor.store.dead_letters import DeadLetter as DeadLetter
from monitor.store.dead_letters import SinkDeadLetters as SinkDeadLetters
from monitor.store.files import loose_mode, make_private_dirs, open_private, report_loose
from monitor.store.journal import JournalMethods, record
from monitor.store.migrations import MIGRATIONS, SCHEMA_VERSION
from monitor.store.outbox import Batch

P = ParamSpec("P")
T = TypeVar("T")


class Store(JournalMethods):
    """The state database. Methods are synchronous; use ``call`` from async code."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        """Open (creating and migrating if needed) the database at ``path``.

        ``readonly`` is for inspecting a live daemon's database (``status``): it never creates,
        migrates or writes, and refuses a file whose schema is not this monitor's.
        """
        self.path = str(path)
        self.unreadable: dict[str, str] = {}
        """Job rows the last ``load_states`` could not read: job id -> why."""
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state-db")
        try:
            if readonly:
                if not Path(self.path).is_file():
                    raise StateError(f"no state database at {self.path} (has the daemon run?)")
                self._db = sqlite3.connect(
                    # as_uri() percent-encodes '#', '?' and '%'; a raw path would let them end
                    # the path and drop ``mode=ro`` (opening, even creating, another file).
                    Path(self.path).resolve().as_uri() + "?mode=ro",
                    uri=True,
                    check_same_thread=False,
                )
                self._check_integrity()
                self._check_version(exact=True)
                return
            if self.path != ":memory:":
                self._create_private()
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA busy_timeout = 5000")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._check_integrity()
            self._migrate()
        except sqlite3.Error as exc:
            raise StateError(f"state database {self.path}: {exc}") from exc
        except OSError as exc:
            raise StateError(f"state database {self.path}: {exc.strerror or exc}") from exc

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run one store method on the database thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._db.close()

    def _create_private(self) -> None:
        """Create the directory and the empty database file owner-only before SQLite opens it
        (an empty file is a new database to SQLite); report an operator's looser file once."""
        path = Path(self.path)
        make_private_dirs(path.parent)
        fd, mode = open_private(path, os.O_RDWR)
        os.close(fd)
        if mode is not None:
            report_loose(path, mode)
        # Left over from a run on a looser file: SQLite reuses them as they are.
        for suffix in ("-wal", "-shm"):
            side = Path(self.path + suffix)
            side_mode = loose_mode(side)
            if side_mode is not None:
                report_loose(side, side_mode)

    # -- schema -----------------------------------------------------------------------------

    def _check_integrity(self) -> None:
        row = self._db.execute("PRAGMA quick_check").fetchone()
        if row is None or row[0] != "ok":
            raise StateError(f"state database {self.path} is corrupt: {row[0] if row else '?'}")

    def _check_version(self, *, exact: bool = False) -> int:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StateError(
                f"state database {self.path} has schema version {version}, newer than this "
                f"monitor's {SCHEMA_VERSION}; upgrade the monitor or point state.path elsewhere"
            )
        if exact and version < SCHEMA_VERSION:
            raise StateError(
                f"state database {self.path} has schema version {version}, older than this "
                f"monitor's {SCHEMA_VERSION}; start the daemon once to migrate it"
            )
        return version

    def _migrate(self) -> None:
        version = self._check_version()
        for target in range(version + 1, SCHEMA_VERSION + 1):
            step = MIGRATIONS[target]
            try:
                if isinstance(step, str):
                    self._db.executescript(
                        f"BEGIN IMMEDIATE;{step};PRAGMA user_version = {target};COMMIT;"
                    )
                    continue
                with self._transaction():
                    step(self._db)
                    self._db.execute(f"PRAGMA user_version = {target}")
            except sqlite3.Error:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """Commit on success, roll back on any error."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- jobs -------------------------------------------------------------------------------

    def load_states(self) -> dict[str, JobState]:
        """Every job's stored state. A row that cannot be read costs only that job (it starts
        afresh, as if first seen); ``unreadable`` says which and why, for the caller to log."""
        try:
            rows = self._db.execute("SELECT job_id, state FROM jobs").fetchall()
        except sqlite3.Error as exc:
            raise StateError(f"state database {self.path}: cannot read job states: {exc}") from exc
        states: dict[str, JobState] = {}
        self.unreadable = {}
        for job_id, text in rows:
            try:
                states[job_id] = decode_state(json.loads(text))
            except ValueError as exc:  # StoredFormError and JSON errors alike
                self.unreadable[job_id] = str(exc)
        return states

    def commit(
        self, state: JobState, events: Iterable[Mapping[str, Any]], now: float, target: str = ""
    ) -> None:
        """Write a job's new state and its events (CloudEvents documents) atomically, with
        the name of the job's target ("" for a single-project config)."""
        self.commit_many([Commit(state, list(events), now, target)])

    def commit_many(self, commits: Sequence[Commit]) -> None:
        """Write several jobs' states and events in one transaction, all or none: the job
        book's group commit (``daemon/group_commit.py``), which makes a first round of thousands of
        new jobs cost a transaction per batch, not one per job."""
        try:
            with self._transaction():
                write_commits(self._db, commits)
                record(self._db, commits)  # the journal: the same events, the same commit
        except sqlite3.Error as exc:
            raise StateError(f"state database {self.path}: cannot commit: {exc}") from exc

    def record_success(self, times: Mapping[str, float]) -> None:
        """Persist when each job was last polled successfully; batched, not one write a poll."""
        if not times:
            return
        try:
            with self._transaction():
                self._db.executemany(
                    "UPDATE jobs SET last_success = ? WHERE job_id = ?",
                    [(ts, job_id) for job_id, ts in times.items()],
                )
        except sqlite3.Error as exc:
            raise StateError(f"state database {self.path}: cannot record polls: {exc}") from exc

    def load_targets(self) -> dict[str, str]:
        """Each stored job's target name ("" for a single-project config's), for ``status``."""
        try:
            rows = self._db.execute("SELECT job_id, target FROM jobs").fetchall()
        except sqlite3.Error as exc:
            raise StateError(f"state database {self.path}: {exc}") from exc
        return {job_id: str(target) for job_id, target in rows}

    def load_last_success(self) -> dict[str, float]:
        try:
            rows = self._db.execute(
                "SELECT job_id, last_success FROM jobs WHERE last_success IS NOT NULL"
            ).fetchall()
        except sqlite3.Error as exc:
            raise StateError(f"state database {self.path}: {exc}") from exc
        return {job_id: float(ts) for job_id, ts in rows}

    def forget(self, job_id: str) -> None:
        try:
            with self._transaction():
                self._db.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))
        except sqlite3.Error as exc:
            raise StateError(f"state database {self.path}: {exc}") from exc

    # -- discovered jobs ---------------------------------------------------------------------

    def add_discovered(
        self, jobs: Mapping[str, Mapping[str, str]], now: float, target: str = ""
    ) -> None:
        """Remember jobs found by ``target``'s discovery, with their labels, so that a restart
        watches them again even once they no longer match the search (a finished job in its
        retention). A job already known keeps its ``found_at``, takes the new labels."""
        if not jobs:
            return
        try:
            with self._transaction():
                self._db.executemany(
                    "INSERT INTO discovered(job_id, labels, found_at, target) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(job_id) DO UPDATE SET labels = excluded.labels, "
                    "target = excluded.target",
                    [
                        (job_id, json.dumps(dict(labels), sort_keys=True), now, target)
                        for job_id, labels in jobs.items()
                    ],
                )
        except sqlite3.Error as exc:
            raise StateError(f"state database {self.path}: cannot record jobs: {exc}") from exc

    def load_discovered(self, target: str = "") -> dict[str, dict[str, str]]:
        """The jobs ``target``'s discovery found, with labels (none if a row does not decode)."""
        try:
            rows = self._db.execute(
                "SELECT job_id, labels FROM discovered WHERE target = ?", (target,)
            ).fetchall()
        except sqlite3.Error as exc:
            raise StateError(f"state database {self.path}: {exc}") from exc
        out: dict[str, dict[str, str]] = {}
        for job_id, text in rows:
            try:
                labels = json.loads(text)
            except ValueError:
                labels = {}
            ok = isinstance(labels, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
            )
            out[job_id] = labels if ok else {}
        return out

    def forget_discovered(self, job_ids: Iterable[str]) -> None:
        """Drop jobs from the discovered list (retired, or another shard's)."""
        ids = [(job_id,) for job_id in job_ids]
        if not ids:
            return
        try:
            with self._transaction():
                self._db.executemany("DELETE FROM discovered WHERE job_id = ?", ids)
        except sqlite3.Error as exc:
            raise StateError(f"state database {self.path}: {exc}") from exc

    # -- outbox (the SQL is ``outbox.py``) ---------------------------------------------------

    def pending(self, sink: str, limit: int = 100) -> list[tuple[int, dict[str, Any]]]:
        """Events this sink has not taken yet, oldest first."""
        try:
            return outbox.pending(self._db, sink, limit)
        except sqlite3.Error as exc:
            raise StateError(f"state database {self.path}: cannot read outbox: {exc}") from exc

    def next_batch(self, sink: str, limit: int = 100) -> Batch:
        """The sink's next events and its backlog in one call (the dispatcher's read)."""
        try:
            return outbox.next_batch(self._db, sink, limit)
        except sqlite3.Error as exc:
            raise StateError(f"state database {self.path}: cannot read outbox: {exc}") from exc

    def ack(
        self,
        sink: str,
        seq: int,
        all_sinks: Sequence[str],
        dead: Sequence[tuple[str, str]] = (),
        now: float = 0.0,
    ) -> int:
        """Move a sink past ``seq``; drop events that every sink in ``all_sinks`` has taken;
        return the sink's backlog after the move, counted in the same transaction.

        ``dead`` are (event id, reason) of events in this stretch the sink can never take: their
        outbox bodies become the sink's dead letters, at ``now``, in the same transaction.
        """
        try:
            with self._transaction():
                return outbox.ack(self._db, sink, seq, all_sinks, dead, now)
        except sqlite3.Error as exc:
            raise StateError(f"state database {self.path}: cannot record delivery: {exc}") from exc

    def outbox_size(self, sink: str | None = None) -> int:
        """The events ``sink`` has not taken yet (no sink: every event still in the outbox)."""
        try:
            return outbox.backlog(self._db, sink)
        except sqlite3.Error as exc:
            raise StateError(f"state database {self.path}: {exc}") from exc

    # -- dead letters -----------------------------------------------------------------------

    def dead_letters(self, newest: int = 3) -> list[SinkDeadLetters]:
        """Each sink that has dead letters, by name: how many, and its ``newest`` latest."""
        try:
            counts = self._db.execute(
                "SELECT sink, COUNT(*) FROM dead_letters GROUP BY sink ORDER BY sink"
            ).fetchall()
            out: list[SinkDeadLetters] = []
            for sink, count in counts:
                rows = self._db.execute(
                    "SELECT event_id, reason, dead_at FROM dead_letters WHERE sink = ? "
                    "ORDER BY seq DESC LIMIT ?",
                    (sink, newest),
                ).fetchall()
                letters = tuple(DeadLetter(e, r, float(t)) for e, r, t in rows)
                out.append(SinkDeadLetters(sink, int(count), letters))
        except sqlite3.Error as exc:
            raise StateError(
                f"state database {self.path}: cannot read dead letters: {exc}"
            ) from exc
        return out
