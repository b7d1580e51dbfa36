"""The outbox's SQL: each sink's pending events, its backlog, and moving it past what it took.

These are plain functions on a connection, inside the caller's transaction where they write;
``Store``'s outbox methods call them and translate ``sqlite3`` errors where they enter.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any


def pending(db: sqlite3.Connection, sink: str, limit: int) -> list[tuple[int, dict[str, Any]]]:
    """Up to ``limit`` events ``sink`` has not taken yet, oldest first, as (seq, body)."""
    rows = db.execute(
        "SELECT seq, body FROM outbox WHERE seq > "
        "COALESCE((SELECT seq FROM sink_positions WHERE sink = ?), 0) "
        "ORDER BY seq LIMIT ?",
        (sink, limit),
    ).fetchall()
    return [(seq, json.loads(body)) for seq, body in rows]


def ack(
    db: sqlite3.Connection,
    sink: str,
    seq: int,
    all_sinks: Sequence[str],
    dead: Sequence[tuple[str, str]],
    now: float,
) -> None:
    """Move ``sink`` past ``seq`` (never back), store its ``dead`` letters (event id, reason)
    at ``now``, drop the events every sink in ``all_sinks`` has passed. All in the caller's
    transaction."""
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


def backlog(db: sqlite3.Connection, sink: str | None = None) -> int:
    """The events ``sink`` has not taken yet (no sink: every event still in the outbox)."""
    if sink is None:
        return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    return int(
        db.execute(
            "SELECT COUNT(*) FROM outbox WHERE seq > "
            "COALESCE((SELECT seq FROM sink_positions WHERE sink = ?), 0)",
            (sink,),
        ).fetchone()[0]
    )


def _storable(text: str) -> str:
    """``text`` as SQLite can bind it: a lone surrogate (the very thing that makes an event
    unserializable) would fail the whole transaction, so it is kept as a ``\\udcxx`` escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
