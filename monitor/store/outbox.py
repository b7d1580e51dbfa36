"""The outbox's SQL: each sink's next batch, its backlog, and moving it past what it took.

Every configured sink has a position in the outbox (``sink_positions``: the last ``seq`` it
took); its backlog is every outbox row past that position. ``seq`` is ``AUTOINCREMENT``
(migration 1), so SQLite never hands out a seq again, even once the outbox has been emptied
and the file reopened: a sink's position can never be overtaken by new events reusing old
numbers. Seqs may have gaps (an ignored duplicate insert can use one up), so a backlog is
counted, never worked out from seqs.

The dispatcher asks twice per batch, and each answer carries the sink's backlog, because each
call to the database thread costs both threads CPU (a first round at 10,000 jobs delivers 100
batches per sink while it polls): ``next_batch`` reads the batch and the backlog together,
``ack`` moves the position and counts what is left in the same transaction, so the count is
never stale against the position it follows. The count takes the short way round
(``_count_after``), since counting a long stretch of rows was most of the database thread's
share of delivering a first round.

These are plain functions on a connection, inside the caller's transaction where they write;
``Store``'s outbox methods call them and translate ``sqlite3`` errors where they enter.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_POSITION = "SELECT COALESCE((SELECT seq FROM sink_positions WHERE sink = ?), 0)"
"""A sink's position; a sink without one yet starts at the oldest event still in the outbox."""

_BOUNDS = (
    # Three subqueries, so that each keeps SQLite's shortcut: MIN and MAX of the rowid are a
    # seek, and a lone COUNT(*) counts the cells of the smallest index's pages.
    "SELECT (SELECT MIN(seq) FROM outbox), (SELECT MAX(seq) FROM outbox), "
    "(SELECT COUNT(*) FROM outbox)"
)


@dataclass(frozen=True, slots=True)
class Batch:
    """A sink's next events, oldest first, and its whole backlog (these events included)."""

    events: list[tuple[int, dict[str, Any]]]
    backlog: int


def position(db: sqlite3.Connection, sink: str) -> int:
    """The last seq ``sink`` has taken (0 before its first)."""
    return int(db.execute(_POSITION, (sink,)).fetchone()[0])


def pending(db: sqlite3.Connection, sink: str, limit: int) -> list[tuple[int, dict[str, Any]]]:
    """Up to ``limit`` events ``sink`` has not taken yet, oldest first, as (seq, body)."""
    return _after(db, position(db, sink), limit)


def backlog(db: sqlite3.Connection, sink: str | None = None) -> int:
    """The events ``sink`` has not taken yet (no sink: every event still in the outbox)."""
    if sink is None:
        return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    return _count_after(db, position(db, sink))


def _after(db: sqlite3.Connection, seq: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
    rows = db.execute(
        "SELECT seq, body FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
    ).fetchall()
    return [(row_seq, json.loads(body)) for row_seq, body in rows]


def _count_after(db: sqlite3.Connection, seq: int) -> int:
    """The outbox rows past ``seq``, counted from whichever side of it is shorter.

    SQLite counts a whole table from its index pages without reading a row, but a stretch of
    seqs only row by row: past a sink's position, in a first round, that is thousands of rows,
    counted twice a batch. Rows at or below the position are only those another sink still
    waits for (a single sink has none), so the whole count less those is usually the short way.
    """
    low, high, total = db.execute(_BOUNDS).fetchone()
    if not total or seq >= high:
        return 0
    if seq < low:
        return int(total)
    if high - seq <= seq - low:
        return int(db.execute("SELECT COUNT(*) FROM outbox WHERE seq > ?", (seq,)).fetchone()[0])
    below = db.execute("SELECT COUNT(*) FROM outbox WHERE seq <= ?", (seq,)).fetchone()[0]
    return int(total) - int(below)


def next_batch(db: sqlite3.Connection, sink: str, limit: int) -> Batch:
    """``sink``'s next ``limit`` events and its backlog, read on the one connection with
    nothing between them. A short batch is the whole backlog, so it is not counted again."""
    after = position(db, sink)
    events = _after(db, after, limit)
    if len(events) < limit:
        return Batch(events, len(events))
    return Batch(events, _count_after(db, after))


def ack(
    db: sqlite3.Connection,
    sink: str,
    seq: int,
    all_sinks: Sequence[str],
    dead: Sequence[tuple[str, str]],
    now: float,
) -> int:
    """Move ``sink`` past ``seq`` (never back), store its ``dead`` letters (event id, reason)
    at ``now``, drop the events every sink in ``all_sinks`` has passed; return the sink's
    backlog after the move. All in the caller's transaction."""
    db.executemany(
        # Copied before the outbox row can be deleted below. Delivered again after a crash,
        # the same event stays one dead letter.
        "INSERT OR IGNORE INTO dead_letters(sink, event_id, body, reason, dead_at) "
        "SELECT ?, id, body, ?, ? FROM outbox WHERE id = ?",
        [(sink, _storable(reason), now, event_id) for event_id, reason in dead],
    )
    db.execute(
        "INSERT INTO sink_positions(sink, seq) VALUES (?, ?) "
        "ON CONFLICT(sink) DO UPDATE SET seq = MAX(seq, excluded.seq)",
        (sink, seq),
    )
    marks = ",".join("?" * len(all_sinks))
    row = db.execute(
        f"SELECT COUNT(*), MIN(seq) FROM sink_positions WHERE sink IN ({marks})",  # noqa: S608
        tuple(all_sinks),
    ).fetchone()
    if row[0] == len(all_sinks):
        db.execute("DELETE FROM outbox WHERE seq <= ?", (row[1],))
    return backlog(db, sink)


def _storable(text: str) -> str:
    """``text`` as SQLite can bind it: a lone surrogate (the very thing that makes an event
    unserializable) would fail the whole transaction, so it is kept as a ``\\udcxx`` escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
