"""Rigs the command tests share."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml


def targets_config(path: Path, names: Sequence[str], db: Path) -> Path:
    """A config file at ``path`` with one target per name (project ``p-<name>``, one job
    ``job-<name>``, no auth) and its state database at ``db``."""
    doc = {
        "targets": [
            {
                "name": name,
                "api": {"endpoint": "https://ma.example.com", "project_id": f"p-{name}"},
                "auth": {"type": "none"},
                "jobs": [{"id": f"job-{name}"}],
            }
            for name in names
        ],
        "state": {"path": str(db)},
    }
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path
