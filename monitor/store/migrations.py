"""The database's schema versions: ``MIGRATIONS[n]`` takes a database from version n-1 to n.

A released migration never changes (a test pins the first one): databases in the field were
made by it. The version is SQLite's ``user_version``; a database newer than this monitor is
refused rather than guessed at.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable

from monitor.core.state import StoredFormError, decode_state, encode_state
from monitor.store import journal

SCHEMA_VERSION = 7


def _versioned_job_states(db: sqlite3.Connection) -> None:
    """4: every job row rewritten in the versioned stored form (``core/state.py``). A row
    that does not decode is left as it is: loading reports it and the job starts afresh."""
    for job_id, text in db.execute("SELECT job_id, state FROM jobs").fetchall():
        try:
            doc = encode_state(decode_state(json.loads(text)))
        except (ValueError, StoredFormError):
            continue
        db.execute("UPDATE jobs SET state = ? WHERE job_id = ?", (json.dumps(doc), job_id))


def _event_journal(db: sqlite3.Connection) -> None:
    """7: the event journal (``journal.py``), holding at once every event still in the outbox
    (each under its job's target), so none is missing from it once delivered. A body that
    does not decode stays in the outbox only: it is delivered (or dead-lettered) as before."""
    for statement in journal.SCHEMA:
        db.execute(statement)
    targets = dict(db.execute("SELECT job_id, target FROM jobs").fetchall())
    rows = db.execute("SELECT seq, job_id, body FROM outbox ORDER BY seq").fetchall()
    for seq, job_id, body in rows:
        try:
            doc = json.loads(body)
            kind, event_id = str(doc["type"]), str(doc["id"])
        except (ValueError, TypeError, KeyError):
            continue
        db.execute(
            "INSERT OR IGNORE INTO journal(id, job_id, type, time, target, outbox_seq, body) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                event_id,
                job_id,
                kind,
                journal.event_time(doc, 0.0),
                targets.get(job_id, ""),
                seq,
                body,
            ),
        )


Migration = str | Callable[[sqlite3.Connection], None]
"""SQL, or a function run inside the migration's transaction."""

MIGRATIONS: dict[int, Migration] = {
    1: """
    CREATE TABLE jobs (
        job_id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        job_id TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE TABLE sink_positions (
        sink TEXT PRIMARY KEY,
        seq INTEGER NOT NULL
    );
    """,
    2: """
    ALTER TABLE jobs ADD COLUMN last_success REAL;
    """,
    3: """
    CREATE TABLE discovered (
        job_id TEXT PRIMARY KEY,
        labels TEXT NOT NULL,
        found_at REAL NOT NULL
    );
    """,
    4: _versioned_job_states,
    # 5: each sink's dead letters: the event as the outbox held it, why the sink can never
    # take it, and when; one row per sink and event, however often it is offered again.
    5: """
    CREATE TABLE dead_letters (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        sink TEXT NOT NULL,
        event_id TEXT NOT NULL,
        body TEXT NOT NULL,
        reason TEXT NOT NULL,
        dead_at REAL NOT NULL,
        UNIQUE (sink, event_id)
    );
    """,
    # 6: the target (``targets:``) each job and each discovered job belongs to; '' for the
    # single-project config's, which is what every row written before is.
    6: """
    ALTER TABLE jobs ADD COLUMN target TEXT NOT NULL DEFAULT '';
    ALTER TABLE discovered ADD COLUMN target TEXT NOT NULL DEFAULT '';
    """,
    7: _event_journal,
}
"""Forward migrations: ``MIGRATIONS[n]`` takes a database from version n-1 to n."""
