"""parse.py: the wire JSON becomes an immutable, bounded snapshot, or a typed error naming the
field."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from monitor.core.job import (
    ACCELERATORS_PER_NODE,
    DURATION_MS,
    EXIT_CODE,
    NODE_COUNT,
    RECOVER_RECORD_STRATEGIES,
    RECOVER_RESULTS,
    RECOVERING,
    RETRY_LIMIT,
    TIME_MS,
    TIME_S,
    Bound,
    JobSnapshot,
    RecoverRecord,
    bounded,
)
from monitor.errors import InvalidResponse
from monitor.modelarts.parse import parse_job, parse_job_events, parse_task_metrics
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
            lambda d: d["status"].update(duration=3.6e6),
            lambda s: s.duration_ms == 3_600_000,
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


# -- the edge bounds everything: numbers a field cannot mean, text nothing can render ---------

R = "\ufffd"
YEAR_3000_S = 32_503_680_000


def hostile_doc(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """A document with one record, one recover record and one task status, ``value`` at
    ``path``."""
    doc = job_doc(
        records=[{"start_at": 1, "end_at": 2, "recover_records": [{"recover_start_at": 1}]}],
        task_statuses=[{"task": "worker-0", "exit_code": 1, "message": "m"}],
    )
    parent: Any = doc
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    return doc


RECORD = ("status", "running_records", 0)
RECOVERY = (*RECORD, "recover_records", 0)
TASK = ("status", "task_statuses", 0)


@pytest.mark.parametrize(
    ("path", "value", "field", "bound"),
    [
        (("status", "duration"), 10**400, "status.duration", DURATION_MS),
        (("status", "duration"), -1, "status.duration", DURATION_MS),
        (("status", "duration"), 1e308, "status.duration", DURATION_MS),
        (("status", "duration"), 11 * 366 * 86_400_000, "status.duration", DURATION_MS),
        (("status", "start_time"), YEAR_3000_S * 1000, "status.start_time", TIME_MS),
        (("metadata", "create_time"), -5, "metadata.create_time", TIME_MS),
        (("metadata", "create_time"), YEAR_3000_S * 1000, "metadata.create_time", TIME_MS),
        (("spec", "resource", "node_count"), 100_001, "spec.resource.node_count", NODE_COUNT),
        (("spec", "resource", "node_count"), -2, "spec.resource.node_count", NODE_COUNT),
        (
            ("status", "node_count_metrics"),
            [[1_700_000_000_000, 10**6]],
            "status.node_count_metrics[0][1]",
            NODE_COUNT,
        ),
        (
            ("status", "node_count_metrics"),
            [[YEAR_3000_S * 1000, 2]],
            "status.node_count_metrics[0][0]",
            TIME_MS,
        ),
        (
            ("status", "node_count_metrics"),
            [[-1, 2]],
            "status.node_count_metrics[0][0]",
            TIME_MS,
        ),
        ((*TASK, "exit_code"), 2**40, "status.task_statuses[0].exit_code", EXIT_CODE),
        ((*TASK, "exit_code"), -(2**31) - 1, "status.task_statuses[0].exit_code", EXIT_CODE),
        (
            (*RECORD, "start_at"),
            1_700_000_000_000,  # milliseconds where seconds are documented
            "status.running_records[0].start_at",
            TIME_S,
        ),
        ((*RECORD, "end_at"), -1, "status.running_records[0].end_at", TIME_S),
        (
            (*RECOVERY, "recover_start_at"),
            YEAR_3000_S,
            "status.running_records[0].recover_records[0].recover_start_at",
            TIME_S,
        ),
        (
            (*RECOVERY, "recover_end_at"),
            10**400,
            "status.running_records[0].recover_records[0].recover_end_at",
            TIME_S,
        ),
        (
            (*RECORD, "xpu_start_at"),
            YEAR_3000_S,
            "status.running_records[0].xpu_start_at",
            TIME_S,
        ),
    ],
    ids=[
        "duration-401-digits",
        "duration-negative",
        "duration-1e308",
        "duration-eleven-years",
        "start-time-year-3000",
        "create-time-negative",
        "create-time-year-3000",
        "node-count-over-100k",
        "node-count-negative",
        "node-metric-count-million",
        "node-metric-ts-year-3000",
        "node-metric-ts-negative",
        "exit-code-2-40",
        "exit-code-below-int32",
        "start-at-in-ms",
        "end-at-negative",
        "recover-start-year-3000",
        "recover-end-401-digits",
        "xpu-start-year-3000",
    ],
)
def test_a_number_its_field_cannot_mean_is_invalid_naming_the_field_and_range(
    path: tuple[Any, ...], value: Any, field: str, bound: Bound
) -> None:
    with pytest.raises(InvalidResponse) as caught:
        parse_job(hostile_doc(path, value))
    message = str(caught.value)
    assert message.startswith(f"{field}: ")
    assert f"{bound.low}..{bound.high}" in message
    assert len(message) < 200  # a 401-digit number is not copied into the log


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_which_pythons_json_accepts_are_invalid(value: float) -> None:
    with pytest.raises(InvalidResponse, match=r"status\.duration"):
        parse_job(hostile_doc(("status", "duration"), value))


@pytest.mark.parametrize(
    ("path", "value", "read"),
    [
        (("status", "duration"), DURATION_MS.high, lambda s: s.duration_ms),
        (("status", "start_time"), 0, lambda s: s.start_time_ms),
        (("metadata", "create_time"), TIME_MS.high, lambda s: s.create_time_ms),
        ((*TASK, "exit_code"), -(2**31), lambda s: s.task_statuses[0].exit_code),
        ((*TASK, "exit_code"), 2**31 - 1, lambda s: s.task_statuses[0].exit_code),
        ((*TASK, "exit_code"), 137.0, lambda s: s.task_statuses[0].exit_code),
        ((*RECORD, "end_at"), TIME_S.high, lambda s: s.running_records[0].end_at),
        (("spec", "resource", "node_count"), NODE_COUNT.high, lambda s: s.requested_nodes),
    ],
    ids=[
        "duration-ten-years",
        "start-time-zero",
        "create-time-2200",
        "exit-code-int32-min",
        "exit-code-int32-max",
        "exit-code-whole-float",
        "end-at-2200",
        "node-count-100k",
    ],
)
def test_numbers_at_the_edge_of_their_bound_are_kept(
    path: tuple[Any, ...], value: Any, read: Any
) -> None:
    assert read(parse_job(hostile_doc(path, value))) == value


LABEL_FIELDS = [
    (("metadata", "workspace_id"), lambda s: s.workspace_id),
    (("metadata", "user_name"), lambda s: s.user_name),
    (("kind",), lambda s: s.kind),
    (("algorithm", "engine", "engine_name"), lambda s: s.engine_name),
    (("algorithm", "engine", "engine_version"), lambda s: s.engine_version),
    (("spec", "resource", "flavor_id"), lambda s: s.flavor_id),
    (("spec", "resource", "flavor_detail", "flavor_type"), lambda s: s.flavor_type),
    (("spec", "resource", "pool_id"), lambda s: s.pool_id),
    (("spec", "resource", "pool_name"), lambda s: s.pool_name),
    (("spec", "resource", "flavor_name"), lambda s: s.flavor_name),
    (("status", "phase"), lambda s: s.phase),
    (("status", "secondary_phase"), lambda s: s.secondary_phase),
    (("status", "tasks", 0), lambda s: s.tasks[0]),
    ((*TASK, "task"), lambda s: s.task_statuses[0].task),
    ((*RECORD, "start_type"), lambda s: s.running_records[0].start_type),
    ((*RECORD, "end_recover"), lambda s: s.running_records[0].end_recover),
    ((*RECORD, "end_related_task"), lambda s: s.running_records[0].end_related_task),
    (
        (*RECORD, "end_recover_before_downgrade"),
        lambda s: s.running_records[0].end_recover_before_downgrade,
    ),
    ((*RECOVERY, "recover"), lambda s: s.running_records[0].recover_records[0].recover),
    (
        (*RECOVERY, "recover_result"),
        lambda s: s.running_records[0].recover_records[0].recover_result,
    ),
    (
        (*RECOVERY, "related_task"),
        lambda s: s.running_records[0].recover_records[0].related_task,
    ),
]
LABEL_IDS = [".".join(str(p) for p in path[-2:]) for path, _ in LABEL_FIELDS]


@pytest.mark.parametrize(("path", "read"), LABEL_FIELDS, ids=LABEL_IDS)
@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("u" * 200, "u" * 127 + "…"),
        ("\ud800", R),
        ("bad\udfff", f"bad{R}"),
        ("two\nlines\ttab", f"two{R}lines{R}tab"),
        ("\x1b[2Jwipe\x00\x7f\x85", f"{R}[2Jwipe{R}{R}{R}"),
        ("gpu-8v100_中文", "gpu-8v100_中文"),
    ],
    ids=["200-chars", "lone-high-surrogate", "lone-low-surrogate", "newline-tab", "controls", "ok"],
)
def test_label_bound_text_is_one_clean_line_of_at_most_128_characters(
    path: tuple[Any, ...], read: Any, raw: str, clean: str
) -> None:
    assert read(parse_job(hostile_doc(path, raw))) == clean


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("n" * 5_000_000, "n" * 63 + "…"),
        ("x" * 65, "x" * 63 + "…"),
        ("x" * 64, "x" * 64),
        ("train\ud800", f"train{R}"),
        ("a\nb", f"a{R}b"),
    ],
    ids=["5-MB", "65-chars", "64-chars", "lone-surrogate", "newline"],
)
def test_the_job_name_is_cut_to_the_apis_64_characters_and_cleaned(raw: str, clean: str) -> None:
    assert parse_job(hostile_doc(("metadata", "name"), raw)).name == clean


FREE_FIELDS = [
    ((*TASK, "message"), lambda s: s.task_statuses[0].message),
    ((*RECORD, "end_reason"), lambda s: s.running_records[0].end_reason),
    ((*RECOVERY, "reason"), lambda s: s.running_records[0].recover_records[0].reason),
    (
        (*RECOVERY, "fault_scenario"),
        lambda s: s.running_records[0].recover_records[0].fault_scenario,
    ),
]


@pytest.mark.parametrize(("path", "read"), FREE_FIELDS, ids=[p[-1] for p, _ in FREE_FIELDS])
@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("m" * 5_000, "m" * 299 + "…"),
        ("Traceback:\n\tline 1\n", "Traceback:\n\tline 1\n"),
        ("oom\ud800 \x00\r\x1b", f"oom{R} {R}{R}{R}"),
        ("显存不足 😀", "显存不足 😀"),
    ],
    ids=["5000-chars", "tabs-newlines-kept", "surrogate-controls", "ok"],
)
def test_free_text_is_cleaned_and_clipped_to_300_characters(
    path: tuple[Any, ...], read: Any, raw: str, clean: str
) -> None:
    assert read(parse_job(hostile_doc(path, raw))) == clean


def test_a_response_id_that_would_need_cleaning_is_refused_not_altered() -> None:
    doc = job_doc(job_id="job\x00\ud800")
    with pytest.raises(InvalidResponse, match=r"metadata\.id"):
        parse_job(doc)


def test_a_huge_foreign_id_is_not_copied_into_the_error() -> None:
    with pytest.raises(InvalidResponse, match="not the requested") as caught:
        parse_job(job_doc(job_id="x" * 5_000_000), SEED_ID)
    assert len(str(caught.value)) < 200


def test_job_events_text_is_cleaned_and_clipped() -> None:
    body = {
        "events": [
            {
                "time": "2022-11-26T16:03:41+08:00\n",
                "level": "Error\ud800",
                "message": "OOM\ud800\nkilled" + "!" * 1000,
                "source": "s" * 200,
            }
        ]
    }
    (event,) = parse_job_events(body)
    assert event["time"] == f"2022-11-26T16:03:41+08:00{R}"
    assert event["level"] == f"Error{R}"
    assert event["message"] == f"OOM{R}\nkilled" + "!" * 288 + "…"
    assert event["source"] == "s" * 127 + "…"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_task_metrics_that_are_not_finite_are_invalid(value: float) -> None:
    with pytest.raises(InvalidResponse, match=re.escape("metrics[0].value[1]")):
        parse_task_metrics({"metrics": [{"metric": "cpuUsage", "value": [5.0, value]}]})


def test_a_task_metric_of_400_digits_reads_as_full_not_as_a_crash() -> None:
    assert parse_task_metrics({"metrics": [{"metric": "gpuUtil", "value": [10**400]}]}) == {
        "gpuUtil": 1.0
    }


def test_a_task_metric_of_the_wrong_type_names_it_without_copying_it() -> None:
    with pytest.raises(InvalidResponse, match=re.escape("metrics[0].value[0]")) as caught:
        parse_task_metrics({"metrics": [{"metric": "cpuUsage", "value": ["x" * 5_000_000]}]})
    assert len(str(caught.value)) < 200


# --- the fields of a job's resources -----------------------------------------------------------

RETRY = "metadata.annotations['fault-tolerance/job-retry-num']"


def resource_doc(node_count: int = 2, **resource: Any) -> dict[str, Any]:
    """A job whose ``spec.resource`` is exactly ``resource`` (and ``node_count``)."""
    doc = job_doc()
    doc["spec"]["resource"] = {"flavor_id": "f", "node_count": node_count, **resource}
    return doc


def annotated(value: Any) -> dict[str, Any]:
    doc = job_doc()
    doc["metadata"]["annotations"] = {"fault-tolerance/job-retry-num": value, "job_template": "RL"}
    return doc


def test_the_restart_limit_is_read_from_its_annotation_string() -> None:
    assert parse_job(annotated("3")).retry_limit == 3
    assert parse_job(annotated(" 0 ")).retry_limit == 0
    assert parse_job(annotated(str(RETRY_LIMIT.high))).retry_limit == RETRY_LIMIT.high


def test_a_job_without_the_annotation_has_no_restart_limit_not_zero() -> None:
    assert parse_job(job_doc()).retry_limit is None
    doc = job_doc()
    doc["metadata"]["annotations"] = {"job_template": "Template RL"}
    assert parse_job(doc).retry_limit is None


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("three", "expected a whole number, got 'three'"),
        ("-1", "expected a whole number"),
        ("3.5", "expected a whole number"),
        ("", "expected a whole number"),
        ("٣", "expected a whole number"),  # a digit to str.isdigit, not to the API
        (str(RETRY_LIMIT.high + 1), f"outside 0..{RETRY_LIMIT.high}"),
        ("9" * 5000, f"outside 0..{RETRY_LIMIT.high}"),
        (True, "expected a number, got bool"),
    ],
    ids=["word", "negative", "fraction", "empty", "arabic-digit", "over", "5000-digits", "bool"],
)
def test_a_restart_limit_that_is_not_a_count_is_invalid_naming_the_annotation(
    value: Any, why: str
) -> None:
    with pytest.raises(InvalidResponse) as caught:
        parse_job(annotated(value))
    assert str(caught.value).startswith(f"{RETRY}: ")
    assert why in str(caught.value)
    assert len(str(caught.value)) < 200


def test_annotations_that_are_not_an_object_are_invalid() -> None:
    doc = job_doc()
    doc["metadata"]["annotations"] = ["fault-tolerance/job-retry-num=3"]
    with pytest.raises(InvalidResponse, match=r"^metadata\.annotations: expected an object"):
        parse_job(doc)


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        (
            {"flavor_detail": {"flavor_type": "GPU", "flavor_info": {"gpu": {"unit_num": 8}}}},
            ("gpu", 16, "GPU"),
        ),
        (
            {"flavor_detail": {"flavor_type": "Ascend", "flavor_info": {"npu": {"unit_num": "8"}}}},
            ("npu", 16, "Ascend"),
        ),
        (
            {"flavor_detail": {"flavor_type": "Ascend", "flavor_info": {"npu": {"unit_num": 2}}}},
            ("npu", 4, "Ascend"),
        ),
        (
            {
                "main_container_allocated_resources": {
                    "accelerator_type": "ascend-snt9b",
                    "accelerator_num": 8.0,
                    "cpu_core_num": 192.0,
                }
            },
            ("npu", 16, "Ascend"),
        ),
        (
            {
                "main_container_allocated_resources": {
                    "accelerator_type": "nvidia-a800",
                    "accelerator_num": 4,
                }
            },
            ("gpu", 8, "GPU"),
        ),
        (
            {"main_container_allocated_resources": {"cpu_core_num": 32.0, "accelerator_num": 0}},
            ("", None, "CPU"),
        ),
        (
            {"main_container_allocated_resources": {"accelerator_type": "ascend-snt9c"}},
            ("", None, "Ascend"),  # the flavour's type is known, its count is not
        ),
        (
            {"flavor_detail": {"flavor_type": "CPU", "flavor_info": {"cpu": {"core_num": 8}}}},
            ("", None, "CPU"),
        ),
        ({}, ("", None, "")),
    ],
    ids=[
        "public-gpu",
        "public-npu-string",
        "public-npu-number",
        "dedicated-ascend",
        "dedicated-gpu",
        "dedicated-cpu",
        "dedicated-type-without-count",
        "public-cpu",
        "nothing-said",
    ],
)
def test_accelerators_are_cards_per_node_times_requested_nodes_on_either_kind_of_pool(
    resource: dict[str, Any], expected: tuple[str, int | None, str]
) -> None:
    snap = parse_job(resource_doc(node_count=2, **resource))
    assert (snap.accelerator_type, snap.accelerators, snap.flavor_type) == expected


def test_a_public_pools_own_flavor_type_wins_over_the_allocated_resources() -> None:
    snap = parse_job(
        resource_doc(
            flavor_detail={"flavor_type": "GPU", "flavor_info": {"gpu": {"unit_num": 1}}},
            main_container_allocated_resources={"accelerator_type": "ascend-snt9b"},
        )
    )
    assert (snap.flavor_type, snap.accelerator_type, snap.accelerators) == ("GPU", "gpu", 2)


def test_the_seed_example_holds_one_gpu(seed_doc: dict[str, Any]) -> None:
    snap = parse_job(seed_doc, SEED_ID)
    assert (snap.accelerator_type, snap.accelerators) == ("gpu", 1)
    assert (snap.pool_name, snap.flavor_name, snap.retry_limit) == ("", "", None)


@pytest.mark.parametrize(
    ("resource", "field", "why"),
    [
        (
            {"flavor_detail": {"flavor_info": {"gpu": {"unit_num": 2048}}}},
            "spec.resource.flavor_detail.flavor_info.gpu.unit_num",
            f"outside 0..{ACCELERATORS_PER_NODE.high}",
        ),
        (
            {"flavor_detail": {"flavor_info": {"npu": {"unit_num": "eight"}}}},
            "spec.resource.flavor_detail.flavor_info.npu.unit_num",
            "expected a whole number",
        ),
        (
            {"main_container_allocated_resources": {"accelerator_num": 0.5}},
            "spec.resource.main_container_allocated_resources.accelerator_num",
            "expected a whole number",
        ),
        (
            {"main_container_allocated_resources": {"accelerator_type": 8}},
            "spec.resource.main_container_allocated_resources.accelerator_type",
            "expected a string",
        ),
        (
            {"main_container_allocated_resources": "8 GPUs"},
            "spec.resource.main_container_allocated_resources",
            "expected an object",
        ),
    ],
    ids=["gpus-2048", "npus-word", "half-a-card", "type-number", "not-an-object"],
)
def test_an_accelerator_count_it_cannot_be_is_invalid_naming_the_field(
    resource: dict[str, Any], field: str, why: str
) -> None:
    with pytest.raises(InvalidResponse) as caught:
        parse_job(resource_doc(**resource))
    assert str(caught.value).startswith(f"{field}: ")
    assert why in str(caught.value)


def test_xpu_start_at_is_kept_in_seconds_on_its_record() -> None:
    snap = parse_job(job_doc(records=[{"start_at": 100, "xpu_start_at": 160}, {"start_at": 300}]))
    assert [r.xpu_start_at for r in snap.running_records] == [160, None]
