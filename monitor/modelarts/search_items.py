"""What a job-search item can stand in for: the one rule deciding whether it replaces a detail GET.

The job search answers ``items: list[JobResponse]``, the type of the job-detail answer
(``shared/reference/modelarts-api-notes.md``), so an item that carries every field the diff reads
is parsed with the same ``parse_job`` and means exactly what a detail poll would have meant. Yet
nothing promises that a search item carries all of them: a list endpoint may trim its items. A
*missing* field is not an empty one, and the parser reads both as "none" (it tolerates missing
fields), so an item without ``running_records`` would look like a job whose runs all vanished:
restarts reset, runs never ended. Hence the rule here, decided from the data of each item:

* complete: ``status`` is an object holding every field of ``DIFF_FIELDS`` with a value
  (``running_records: []`` is complete: the API says there are none);
* otherwise (absent, or ``null``, which says no more than absent): the job's detail is fetched.

This is the one place that rule lives (``daemon/bulk.py`` applies it; its tests are a table).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["DIFF_FIELDS", "item_digest", "item_id", "missing_fields"]

DIFF_FIELDS: tuple[str, ...] = (
    "phase",
    "secondary_phase",
    "running_records",
    "node_count_metrics",
    "task_statuses",
)
"""The ``status`` fields the diff reads (``core.diff``): DESIGN.md's ``poll.bulk`` list."""


def missing_fields(item: object) -> tuple[str, ...]:
    """The ``status.*`` fields of ``DIFF_FIELDS`` that ``item`` lacks (absent or ``null``), in
    that order; ``()`` when the item is complete for the diff. An item that is not an object,
    or has no ``status`` object, lacks them all."""
    status = item.get("status") if isinstance(item, Mapping) else None
    if not isinstance(status, Mapping):
        return DIFF_FIELDS
    return tuple(name for name in DIFF_FIELDS if status.get(name) is None)


def item_id(item: object) -> str | None:
    """The item's ``metadata.id`` when it is a string; None for an item that names no job."""
    metadata = item.get("metadata") if isinstance(item, Mapping) else None
    job_id = metadata.get("id") if isinstance(metadata, Mapping) else None
    return job_id if isinstance(job_id, str) else None


def item_digest(item: Any) -> bytes:
    """A digest of the item's content, so an item unchanged since the job's last refresh costs
    no parse and no commit (the book's digest shortcut). Keys are sorted: the same content
    gives the same digest whatever order the server wrote it in."""
    text = json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
