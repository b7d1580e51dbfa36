"""What one commit writes: a job's new state and the events it produced, as SQL.

``Store.commit`` (one job) and ``Store.commit_many`` (a batch of jobs, the book's group commit)
both write through ``write_commits``, so there is one statement for a job row and one for the
outbox, whatever the batch size. The caller holds the transaction: a batch is all or nothing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from monitor.core.state import JobState, encode_state

UPSERT_JOB = (
    "INSERT INTO jobs(job_id, state, updated_at, target) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(job_id) DO UPDATE SET state = excluded.state, "
    "updated_at = excluded.updated_at, target = excluded.target"
)
# The same transition re-detected (same deterministic id) is stored once.
INSERT_EVENT = "INSERT OR IGNORE INTO outbox(id, job_id, body) VALUES (?, ?, ?)"


@dataclass(frozen=True, slots=True)
class Commit:
    """One job's new state and its events (CloudEvents documents), written together."""

    state: JobState
    events: Sequence[Mapping[str, Any]]
    now: float
    target: str = ""
    """The name of the job's target ("" for a single-project config)."""


def write_commits(db: sqlite3.Connection, commits: Sequence[Commit]) -> None:
    """Write every commit's job row, then every event in order, inside the caller's
    transaction (two statements for the whole batch, not two per job)."""
    db.executemany(
        UPSERT_JOB,
        [(c.state.job_id, json.dumps(encode_state(c.state)), c.now, c.target) for c in commits],
    )
    db.executemany(
        INSERT_EVENT, [(e["id"], e["subject"], json.dumps(e)) for c in commits for e in c.events]
    )
