"""Durable state on SQLite: job rows, the outbox, discovered jobs, migrations."""

from monitor.store.database import Store

__all__ = ["Store"]
