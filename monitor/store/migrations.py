"""The database's schema versions: ``MIGRATIONS[n]`` takes a database from version n-1 to n.

A released migration never changes (a test pins the first one): databases in the field were
made by it. The version is SQLite's ``user_version``; a database newer than this monitor is
refused rather than guessed at.
"""

from __future__ import annotations

SCHEMA_VERSION = 3

MIGRATIONS: dict[int, str] = {
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
}
"""Forward migrations: ``MIGRATIONS[n]`` takes a database from version n-1 to n."""
