"""The event journal: every event the monitor produced, kept after delivery for ``events`` and
the job pages.

The outbox forgets an event once every sink has taken it; the journal is what is left of a
job's story after that. ``record`` runs inside ``Store.commit``'s transaction, so a job's state,
its outbox rows and its journal rows are one commit: the journal can never hold an event the
job's state does not account for, nor miss one that was delivered.

Each row keeps the CloudEvent exactly as the outbox holds it, with the columns the readers
filter on (job, full type, time as Unix seconds, target) and the event's outbox ``seq``, which
is how pruning tells a delivered event from one a sink still waits for. ``prune`` bounds the
journal by age (``events.journal.retention``) and by rows (``events.journal.max_events``), and
never removes an event some configured sink has not taken yet: the journal must not lose what
the outbox still owes.

These are plain functions on a connection. ``Store`` calls ``record`` in its commit and has
the readers' methods from ``JournalMethods`` (kept here, beside their SQL), which translate
``sqlite3`` errors where they enter.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from monitor.core.events import TYPE_PREFIX
from monitor.errors import StateError
from monitor.store.commits import Commit

SCHEMA = (
    """
    CREATE TABLE journal (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        job_id TEXT NOT NULL,
        type TEXT NOT NULL,
        time REAL NOT NULL,
        target TEXT NOT NULL DEFAULT '',
        outbox_seq INTEGER NOT NULL,
        body TEXT NOT NULL
    )
    """,
    "CREATE INDEX journal_by_job ON journal(job_id, seq)",
    "CREATE INDEX journal_by_time ON journal(time)",
)
"""Version 7's tables (``migrations.py``); frozen with that version once released."""

_RECORD = (
    # The outbox row's seq, whether this commit inserted it or an identical event (same id)
    # was already waiting there. An event re-detected after its outbox row was delivered and
    # deleted goes out again under a new seq; its journal row follows that seq, so it is not
    # pruned before the second delivery either.
    "INSERT INTO journal(id, job_id, type, time, target, outbox_seq, body) "
    "SELECT id, job_id, ?, ?, ?, seq, body FROM outbox WHERE id = ? "
    "ON CONFLICT(id) DO UPDATE SET outbox_seq = excluded.outbox_seq"
)


def event_time(doc: Mapping[str, Any], default: float) -> float:
    """The event's ``time`` (RFC 3339, as ``core.events.rfc3339`` writes it) as Unix seconds;
    ``default`` (the commit's time) for an event without a readable one."""
    try:
        return datetime.fromisoformat(str(doc["time"])).timestamp()
    except (KeyError, ValueError):
        return default


def full_type(kind: str) -> str:
    """``phase_changed`` or ``modelarts.job.phase_changed``, as the journal stores it."""
    return kind if kind.startswith(TYPE_PREFIX) else TYPE_PREFIX + kind


def record(db: sqlite3.Connection, commits: Sequence[Commit]) -> None:
    """Journal the events ``write_commits`` just put in the outbox, in its transaction."""
    db.executemany(
        _RECORD,
        [
            (str(e["type"]), event_time(e, c.now), c.target, e["id"])
            for c in commits
            for e in c.events
        ],
    )


def read(
    db: sqlite3.Connection,
    *,
    job_ids: Sequence[str] = (),
    since: float | None = None,
    types: Sequence[str] = (),
    targets: Sequence[str] = (),
    limit: int = 1000,
    newest_first: bool = False,
) -> list[dict[str, Any]]:
    """The journaled CloudEvents matching every filter given (an empty one matches all), in
    commit order, oldest first unless ``newest_first``; at most ``limit`` (0: no limit)."""
    where: list[str] = []
    args: list[object] = []
    for column, values in (
        ("job_id", list(job_ids)),
        ("type", [full_type(t) for t in types]),
        ("target", list(targets)),
    ):
        if values:
            where.append(f"{column} IN ({','.join('?' * len(values))})")
            args += values
    if since is not None:
        where.append("time >= ?")
        args.append(since)
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    order = "DESC" if newest_first else "ASC"
    rows = db.execute(
        f"SELECT body FROM journal {clause}ORDER BY seq {order} LIMIT ?",  # noqa: S608
        (*args, limit if limit > 0 else -1),
    ).fetchall()
    return [json.loads(body) for (body,) in rows]


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one pruning round removed: past retention, and (younger) over the row bound."""

    expired: int = 0
    over_limit: int = 0

    @property
    def total(self) -> int:
        return self.expired + self.over_limit


_DELIVERED = (
    # Delivered: no configured sink still has the event ahead of its position. A sink without
    # a position yet starts at the oldest outbox row (``Store.pending``), so it counts as 0;
    # an event whose outbox row is gone was passed by every sink that was configured then.
    "NOT EXISTS (SELECT 1 FROM outbox o WHERE o.seq = journal.outbox_seq AND o.seq > ?)"
)


def prune(
    db: sqlite3.Connection,
    *,
    now: float,
    retention: float,
    max_events: int,
    sinks: Sequence[str],
    batch: int,
) -> Pruned:
    """Delete up to ``batch`` delivered events, oldest first: those older than ``retention``
    and, while the journal holds more than ``max_events`` rows, the oldest delivered ones.
    One DELETE, in the caller's transaction."""
    floor = _delivery_floor(db, sinks)
    total = int(db.execute("SELECT COUNT(*) FROM journal").fetchone()[0])
    bound = 0
    if total > max_events:
        row = db.execute(
            f"SELECT MAX(seq) FROM (SELECT seq FROM journal WHERE {_DELIVERED} "  # noqa: S608
            "ORDER BY seq LIMIT ?)",
            (floor, total - max_events),
        ).fetchone()
        bound = int(row[0] or 0)
    cutoff = now - retention
    gone = db.execute(
        "DELETE FROM journal WHERE seq IN (SELECT seq FROM journal "  # noqa: S608
        f"WHERE (time < ? OR seq <= ?) AND {_DELIVERED} ORDER BY seq LIMIT ?) "
        "RETURNING time < ?",
        (cutoff, bound, floor, batch, cutoff),
    ).fetchall()
    expired = sum(1 for (old,) in gone if old)
    return Pruned(expired=expired, over_limit=len(gone) - expired)


def _delivery_floor(db: sqlite3.Connection, sinks: Sequence[str]) -> int:
    """The outbox seq every configured sink has passed (no sinks: every event is done)."""
    if not sinks:
        return 2**62
    marks = ",".join("?" * len(sinks))
    row = db.execute(
        f"SELECT COUNT(*), MIN(seq) FROM sink_positions WHERE sink IN ({marks})",  # noqa: S608
        tuple(sinks),
    ).fetchone()
    return int(row[1]) if row[0] == len(sinks) else 0


class JournalMethods:
    """The journal's methods of ``Store`` (a mixin: ``Store`` owns the connection)."""

    path: str
    _db: sqlite3.Connection

    def journal(
        self,
        job_ids: Sequence[str] = (),
        since: float | None = None,
        types: Sequence[str] = (),
        limit: int = 1000,
        newest_first: bool = False,
        *,
        targets: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """The journaled CloudEvents as stored, oldest first unless ``newest_first``: of
        ``job_ids``, of ``types`` (short or full), with ``time`` at or after ``since`` (Unix
        seconds), of ``targets`` (names; "" is the single-project config's), each filter
        left empty matching all; at most ``limit`` (0: no limit)."""
        try:
            return read(
                self._db,
                job_ids=job_ids,
                since=since,
                types=types,
                targets=targets,
                limit=limit,
                newest_first=newest_first,
            )
        except sqlite3.Error as exc:
            raise StateError(f"state database {self.path}: cannot read the journal: {exc}") from exc
        except ValueError as exc:  # a body that is not JSON: the file was written by others
            raise StateError(f"state database {self.path}: unreadable journal: {exc}") from exc

    def prune_journal(
        self, *, now: float, retention: float, max_events: int, sinks: Sequence[str], batch: int
    ) -> Pruned:
        """One pruning round (``prune``); ``sinks`` are the configured sinks' names."""
        try:
            return prune(
                self._db,
                now=now,
                retention=retention,
                max_events=max_events,
                sinks=sinks,
                batch=batch,
            )
        except sqlite3.Error as exc:
            raise StateError(
                f"state database {self.path}: cannot prune the journal: {exc}"
            ) from exc
