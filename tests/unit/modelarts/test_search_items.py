"""``search_items``: when a job-search item may stand in for the job's detail (a table), which
job it names, and its digest."""

from __future__ import annotations

from typing import Any

import pytest

from monitor.modelarts.search_items import DIFF_FIELDS, item_digest, item_id, missing_fields
from tests.conftest import SEED_ID, job_doc


def without(*fields: str, **status: Any) -> dict[str, Any]:
    """A job-detail-shaped item with these ``status`` fields left out (others set as given)."""
    doc = job_doc(**status)
    for name in fields:
        del doc["status"][name]
    return doc


COMPLETENESS = [
    ("every field with a value", job_doc(), ()),
    ("empty lists are complete: the API says there are none", job_doc(records=[]), ()),
    (
        "no running records, no tasks statuses, no nodes: still complete",
        job_doc(records=[], task_statuses=[], nodes=[]),
        (),
    ),
    ("fields the diff does not read may be absent", without("duration", "tasks"), ()),
    ("running_records absent", without("running_records"), ("running_records",)),
    ("running_records null says no more", job_doc(running_records=None), ("running_records",)),
    ("phase absent", without("phase"), ("phase",)),
    ("secondary_phase absent", without("secondary_phase"), ("secondary_phase",)),
    ("node_count_metrics absent", without("node_count_metrics"), ("node_count_metrics",)),
    ("task_statuses absent", without("task_statuses"), ("task_statuses",)),
    (
        "several absent, in the order of DIFF_FIELDS",
        without("task_statuses", "phase"),
        ("phase", "task_statuses"),
    ),
    ("no status at all", {"metadata": {"id": SEED_ID}}, DIFF_FIELDS),
    ("status not an object", {"metadata": {"id": SEED_ID}, "status": []}, DIFF_FIELDS),
    ("not an object", ["phase"], DIFF_FIELDS),
]


@pytest.mark.parametrize(
    ("case", "item", "missing"), COMPLETENESS, ids=[c[0] for c in COMPLETENESS]
)
def test_an_item_is_complete_only_when_every_field_the_diff_reads_is_present(
    case: str, item: object, missing: tuple[str, ...]
) -> None:
    assert missing_fields(item) == missing


def test_the_fields_are_those_the_design_names() -> None:
    """DESIGN.md's ``poll.bulk``: phase, secondary_phase, running_records, node_count_metrics,
    task_statuses."""
    assert set(DIFF_FIELDS) == {
        "phase",
        "secondary_phase",
        "running_records",
        "node_count_metrics",
        "task_statuses",
    }


@pytest.mark.parametrize(
    ("item", "job_id"),
    [
        (job_doc(), SEED_ID),
        ({"metadata": {"id": 7}}, None),
        ({"metadata": "x"}, None),
        ({}, None),
        ("item", None),
    ],
)
def test_an_item_names_its_job_only_by_a_string_metadata_id(
    item: object, job_id: str | None
) -> None:
    assert item_id(item) == job_id


def test_the_digest_follows_the_content_not_the_key_order() -> None:
    doc = job_doc()
    reordered = {k: doc[k] for k in reversed(list(doc))}
    assert item_digest(doc) == item_digest(reordered)
    assert item_digest(doc) != item_digest(job_doc(phase="Failed"))
