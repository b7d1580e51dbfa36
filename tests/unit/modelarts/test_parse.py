"""schema.py: the wire JSON becomes an immutable snapshot, or a typed error naming the field."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from monitor.core.job import (
    RECOVER_RECORD_STRATEGIES,
    RECOVER_RESULTS,
    RECOVERING,
    JobSnapshot,
    RecoverRecord,
    bounded,
)
from monitor.errors import InvalidResponse
from monitor.modelarts.parse import parse_job, parse_job_events
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


# -- recover_records (SDK-only: running_records[].recover_records[]) ---------------------------

RECOVER = {
    "recover_start_at": 1700000100,
    "recover_end_at": 1700000160.0,
    "recover": "npu_proc_restart",
    "fault_scenario": "chip_fault",
    "reason": "NPU HBM ECC error",
    "related_task": "worker-1",
    "recover_result": "downgrade",
    "brand_new": {"ignored": True},
}


def test_recover_records_parse_into_immutable_records() -> None:
    snap = parse_job(job_doc(records=[{"start_at": 1, "end_at": 2, "recover_records": [RECOVER]}]))
    (rec,) = snap.running_records[0].recover_records
    assert rec == RecoverRecord(
        recover="npu_proc_restart",
        recover_result="downgrade",
        fault_scenario="chip_fault",
        reason="NPU HBM ECC error",
        related_task="worker-1",
        recover_start_at=1700000100,
        recover_end_at=1700000160,
    )
    assert isinstance(snap.running_records[0].recover_records, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.recover = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"start_at": 1}, ()),
        ({"start_at": 1, "recover_records": None}, ()),
        ({"start_at": 1, "recover_records": []}, ()),
        ({"start_at": 1, "recover_records": [None]}, (RecoverRecord(),)),
        (
            {"start_at": 1, "recover_records": [{"recover": None, "recover_end_at": None}]},
            (RecoverRecord(),),
        ),
        (
            {"start_at": 1, "recover_records": [{"recover_result": "rolled_dice"}]},
            (RecoverRecord(recover_result="rolled_dice"),),
        ),
    ],
    ids=["missing", "null", "empty", "null-item", "null-fields", "undocumented-result-kept-raw"],
)
def test_recover_records_tolerate_missing_and_null(
    record: dict[str, Any], expected: tuple[RecoverRecord, ...]
) -> None:
    assert parse_job(job_doc(records=[record])).running_records[0].recover_records == expected


@pytest.mark.parametrize(
    ("recover_records", "field"),
    [
        ("none", "status.running_records[0].recover_records"),
        ([7], "status.running_records[0].recover_records[0]"),
        ([{"recover": 3}], "status.running_records[0].recover_records[0].recover"),
        ([{"recover_result": []}], "status.running_records[0].recover_records[0].recover_result"),
        ([{}, {"reason": {}}], "status.running_records[0].recover_records[1].reason"),
        (
            [{"recover_start_at": "soon"}],
            "status.running_records[0].recover_records[0].recover_start_at",
        ),
        ([{"recover_end_at": 1.5}], "status.running_records[0].recover_records[0].recover_end_at"),
    ],
)
def test_recover_records_of_the_wrong_type_name_the_path(recover_records: Any, field: str) -> None:
    doc = job_doc(records=[{"start_at": 1, "recover_records": recover_records}])
    with pytest.raises(InvalidResponse, match=re.escape(field)):
        parse_job(doc)


def test_recover_label_sets_cover_the_sdk_documented_values() -> None:
    assert set(RECOVER_RECORD_STRATEGIES) == {
        "npu_step_retry",
        "npu_proc_restart",
        "gpu_proc_restart",
        "proc_restart",
        "pod_reschedule",
        "job_reschedule",
        "job_reschedule_with_taint",
    }
    assert set(RECOVER_RESULTS) == {"success", "failed", "downgrade", "terminated", "quotaExceeded"}
    assert RECOVERING not in RECOVER_RESULTS


# -- job events (GET .../training-jobs/{id}/events) -------------------------------------------


def test_job_events_keep_time_level_message_and_source_in_api_order() -> None:
    body = {
        "total": 2,
        "limit": 10,
        "events": [
            {
                "time": "2022-11-26T16:03:41+08:00",
                "level": "Error",
                "message": "failed.",
                "source": "Job",
                "extra": 1,
            },
            {"time": "2022-11-26T16:00:00+08:00", "level": "Error", "message": "OOM"},
            {"time": "2022-11-26T15:00:00+08:00", "level": "Error", "message": ""},
        ],
    }
    assert parse_job_events(body) == [
        {
            "time": "2022-11-26T16:03:41+08:00",
            "level": "Error",
            "message": "failed.",
            "source": "Job",
        },
        {"time": "2022-11-26T16:00:00+08:00", "level": "Error", "message": "OOM", "source": ""},
    ]
    assert parse_job_events({"total": 0}) == [] and parse_job_events({"events": None}) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "events body"),
        ({"events": {}}, "events"),
        ({"events": ["x"]}, "events[0]"),
        ({"events": [{"message": "ok"}, {"message": 5}]}, "events[1].message"),
        ({"events": [{"message": "ok", "time": 1669449821}]}, "events[0].time"),
    ],
)
def test_job_events_of_the_wrong_shape_name_the_field(body: Any, field: str) -> None:
    with pytest.raises(InvalidResponse, match=re.escape(field)):
        parse_job_events(body)
