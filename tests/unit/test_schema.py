"""schema.py: the wire JSON becomes an immutable snapshot, or a typed error naming the field."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from monitor.errors import InvalidResponse
from monitor.modelarts.schema import JobSnapshot, bounded, parse_job
from tests.conftest import SEED_ID, job_doc


def test_seed_example_parses_with_every_field_the_monitor_uses(seed_doc: dict[str, Any]) -> None:
    snap = parse_job(seed_doc, SEED_ID)
    assert snap.job_id == SEED_ID
    assert snap.name == "trainjob--py14_mem06-108"
    assert (snap.phase, snap.secondary_phase) == ("Abnormal", "CreateFailed")
    assert snap.create_time_ms == 1636447346315
    assert (snap.duration_ms, snap.start_time_ms) == (0, 0)
    assert (snap.nodes, snap.nodes_at_ms) == (0, 1636447756000)
    assert snap.tasks == ("worker-0",)
    assert (snap.engine_name, snap.engine_version) == ("PyTorch", "PyTorch-1.4.0-python3.6-v2")
    assert (snap.flavor_id, snap.flavor_type, snap.requested_nodes) == (
        "modelarts.vm.pnt1.large.eco",
        "GPU",
        1,
    )
    assert snap.pool_id == ""
    assert snap.terminal


def test_seed_record_with_end_before_start_is_kept_as_reported(seed_doc: dict[str, Any]) -> None:
    first, second = parse_job(seed_doc).running_records
    assert (first.start_at, first.end_at) == (1701327093, 1701322341)
    assert first.end_recover == "job_reschedule"
    assert first.end_recover_before_downgrade == "npu_proc_restart"
    assert second.end_reason == "job completed" and second.end_recover == ""


def test_snapshot_is_immutable(seed_doc: dict[str, Any]) -> None:
    snap = parse_job(seed_doc)
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.phase = "Running"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("mutate", "check"),
    [
        (lambda d: d.pop("status"), lambda s: s.phase == "" and s.running_records == ()),
        (lambda d: d["status"].pop("running_records"), lambda s: s.running_records == ()),
        (lambda d: d["status"].update(running_records=[]), lambda s: s.running_records == ()),
        (lambda d: d["status"].update(running_records=None), lambda s: s.running_records == ()),
        (lambda d: d["status"].update(phase=None), lambda s: s.phase == ""),
        (lambda d: d.update(spec=None, algorithm=None), lambda s: s.requested_nodes is None),
        (lambda d: d["status"].update(node_count_metrics=[]), lambda s: s.nodes is None),
        (lambda d: d["metadata"].update(create_time=None), lambda s: s.create_time_ms is None),
        (
            lambda d: d["status"].update(running_records=[{"start_at": 5, "end_at": None}]),
            lambda s: not s.running_records[0].ended,
        ),
        (
            lambda d: d["status"].update(duration=1.7e12),
            lambda s: s.duration_ms == 1_700_000_000_000,
        ),
    ],
    ids=[
        "missing-status",
        "missing-records",
        "empty-records",
        "null-records",
        "null-phase",
        "null-spec",
        "no-node-points",
        "null-create-time",
        "open-record",
        "whole-float",
    ],
)
def test_tolerates_missing_and_null_fields(mutate: Any, check: Any) -> None:
    doc = job_doc()
    mutate(doc)
    assert check(parse_job(doc, doc["metadata"]["id"]))


def test_unknown_fields_are_ignored() -> None:
    doc = job_doc(records=[{"start_at": 1, "xpu_start_at": 2, "recover_records": [{"x": 1}]}])
    doc["status"]["retention_time"] = 7
    doc["status"]["task_ips"] = [{"task": "worker-0", "ip": "10.0.0.1"}]
    doc["brand_new_section"] = {"anything": [1, 2]}
    assert parse_job(doc).running_records[0].start_at == 1


def test_undocumented_enum_values_are_kept_raw_and_bounded_to_other() -> None:
    snap = parse_job(job_doc(phase="Hibernating", secondary_phase="Warming"))
    assert (snap.phase, snap.secondary_phase) == ("Hibernating", "Warming")
    assert bounded(snap.phase, ("Running",)) == "other"


def test_newest_node_point_is_chosen_by_timestamp_not_position() -> None:
    snap = parse_job(job_doc(nodes=[[3000, 3], [1000, 4], [2000, 5]]))
    assert (snap.nodes, snap.nodes_at_ms) == (3, 3000)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["status"].update(phase=3), "status.phase"),
        (lambda d: d["status"].update(running_records="none"), "status.running_records"),
        (lambda d: d["status"].update(running_records=[7]), "status.running_records[0]"),
        (
            lambda d: d["status"].update(running_records=[{"start_at": "soon"}]),
            "status.running_records[0].start_at",
        ),
        (lambda d: d["status"].update(duration=True), "status.duration"),
        (lambda d: d["status"].update(duration=1.5), "status.duration"),
        (lambda d: d["status"].update(node_count_metrics=[[1, 2, 3]]), "node_count_metrics[0]"),
        (lambda d: d.update(metadata=[]), "metadata"),
        (lambda d: d["status"].update(task_statuses=[{"exit_code": "x"}]), "exit_code"),
    ],
)
def test_wrong_types_raise_invalid_response_naming_the_field(mutate: Any, field: str) -> None:
    doc = job_doc()
    mutate(doc)
    with pytest.raises(InvalidResponse, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_job(doc)


@pytest.mark.parametrize("body", [[], "job", 3, None])
def test_a_body_that_is_not_an_object_is_invalid(body: object) -> None:
    with pytest.raises(InvalidResponse):
        parse_job(body, SEED_ID)


def test_a_document_about_another_job_is_rejected() -> None:
    with pytest.raises(InvalidResponse, match="not the requested"):
        parse_job(job_doc(job_id="other-job"), SEED_ID)


def test_missing_id_uses_the_requested_one() -> None:
    doc = job_doc()
    del doc["metadata"]["id"]
    assert parse_job(doc, "asked-for").job_id == "asked-for"
    with pytest.raises(InvalidResponse):
        parse_job(doc)


def test_snapshot_has_no_mutable_containers() -> None:
    snap = parse_job(
        job_doc(records=[{"start_at": 1}], task_statuses=[{"task": "w", "exit_code": 1}])
    )
    assert isinstance(snap, JobSnapshot)
    assert isinstance(snap.running_records, tuple) and isinstance(snap.task_statuses, tuple)
