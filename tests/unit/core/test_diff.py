"""diff.py: each transition rule, from a table of (before, after) -> events."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from monitor.core.diff import (
    MAX_RECOVER_RECORDS,
    diff,
    observe,
    recovery_counts,
    restart_counts,
)
from monitor.core.job import JobGone, JobSnapshot
from monitor.core.state import JobState
from monitor.core.text import TEXT_LIMIT
from monitor.modelarts.parse import parse_job
from tests.conftest import job_doc

NOW = 1_800_000_000.0
RUN0 = {"start_at": 100, "start_type": "init_or_rescheduled"}
RUN0_FAULT = {
    **RUN0,
    "end_at": 200,
    "end_reason": "exit 1",
    "end_related_task": "worker-1",
    "end_recover": "proc_restart",
    "end_recover_before_downgrade": "proc_restart",
}
RUN1 = {"start_at": 210, "xpu_start_at": 214, "start_type": "restarted"}
RUN1_RESCHEDULE = {
    **RUN1,
    "end_at": 300,
    "end_reason": "node lost",
    "end_recover": "pod_reschedule",
    "end_related_task": "worker-0",
}
RUN2 = {"start_at": 320, "start_type": "init_or_rescheduled"}


def snap(**kw: Any) -> JobSnapshot:
    return parse_job(job_doc(**kw))


def kinds(events: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(e.type, dict(e.data)) for e in events]


CASES = [
    pytest.param(
        None,
        {"phase": "Creating", "secondary_phase": "Creating"},
        [("discovered", {"phase": "Creating", "secondary_phase": "Creating"})],
        id="first-sight-is-discovered-only",
    ),
    pytest.param(
        None,
        {"records": [RUN0_FAULT, RUN1], "task_statuses": [{"task": "w", "exit_code": 1}]},
        [("discovered", {"phase": "Running", "secondary_phase": "Running"})],
        id="first-sight-does-not-replay-history",
    ),
    pytest.param({}, {}, [], id="no-change-no-event"),
    pytest.param(
        {"phase": "Pending", "secondary_phase": "Queuing"},
        {},
        [
            ("phase_changed", {"from": "Pending", "to": "Running"}),
            ("secondary_phase_changed", {"from": "Queuing", "to": "Running"}),
        ],
        id="phase-and-secondary-phase",
    ),
    pytest.param(
        {"secondary_phase": "Running"},
        {"secondary_phase": "Lost"},
        [("secondary_phase_changed", {"from": "Running", "to": "Lost"})],
        id="secondary-phase-alone",
    ),
    pytest.param(
        {"phase": "Running"},
        {"phase": "Hibernating"},
        [("phase_changed", {"from": "Running", "to": "Hibernating"})],
        id="undocumented-phase-keeps-its-raw-value-in-the-event",
    ),
    pytest.param(
        {"records": []},
        {"records": [RUN0]},
        [
            (
                "run_started",
                {
                    "index": 0,
                    "start_at": 100,
                    "xpu_start_at": None,
                    "start_type": "init_or_rescheduled",
                },
            )
        ],
        id="run-started",
    ),
    pytest.param(
        {"records": [RUN0]},
        {"records": [RUN0_FAULT, RUN1]},
        [
            (
                "run_ended",
                {
                    "index": 0,
                    "end_at": 200,
                    "end_reason": "exit 1",
                    "end_related_task": "worker-1",
                    "end_recover": "proc_restart",
                    "end_recover_before_downgrade": "proc_restart",
                    "recover_records": [],
                },
            ),
            (
                "run_started",
                {"index": 1, "start_at": 210, "xpu_start_at": 214, "start_type": "restarted"},
            ),
        ],
        id="process-fault-ends-a-run-and-starts-the-next-with-its-xpu-start",
    ),
    pytest.param(
        {"records": [RUN0]},
        {"records": [RUN0_FAULT, RUN1_RESCHEDULE, RUN2]},
        [
            (
                "run_ended",
                {
                    "index": 0,
                    "end_at": 200,
                    "end_reason": "exit 1",
                    "end_related_task": "worker-1",
                    "end_recover": "proc_restart",
                    "end_recover_before_downgrade": "proc_restart",
                    "recover_records": [],
                },
            ),
            (
                "run_started",
                {"index": 1, "start_at": 210, "xpu_start_at": 214, "start_type": "restarted"},
            ),
            (
                "run_ended",
                {
                    "index": 1,
                    "end_at": 300,
                    "end_reason": "node lost",
                    "end_related_task": "worker-0",
                    "end_recover": "pod_reschedule",
                    "end_recover_before_downgrade": "",
                    "recover_records": [],
                },
            ),
            (
                "run_started",
                {
                    "index": 2,
                    "start_at": 320,
                    "xpu_start_at": None,
                    "start_type": "init_or_rescheduled",
                },
            ),
        ],
        id="several-records-between-two-polls",
    ),
    pytest.param(
        {"records": [RUN0_FAULT]},
        {"records": [RUN0_FAULT]},
        [],
        id="an-ended-run-is-reported-once",
    ),
    pytest.param(
        {"records": [{"start_at": 500, "end_at": 400}]},
        {"records": [{"start_at": 500, "end_at": 400}]},
        [],
        id="inconsistent-record-is-not-an-event-again",
    ),
    pytest.param(
        {"nodes": [[1000, 4]]},
        {"nodes": [[1000, 4], [2000, 3]]},
        [("nodes_changed", {"from": 4, "to": 3})],
        id="node-lost",
    ),
    pytest.param(
        {"nodes": [[1000, 4]]},
        {"nodes": [[1000, 4], [2000, 4]]},
        [],
        id="same-node-count-new-point-no-event",
    ),
    pytest.param({"nodes": []}, {"nodes": [[1000, 4]]}, [], id="first-node-point-is-not-a-change"),
    pytest.param(
        {},
        {"task_statuses": [{"task": "worker-0", "exit_code": 137, "message": "OOMKilled"}]},
        [("task_failed", {"task": "worker-0", "exit_code": 137, "message": "OOMKilled"})],
        id="task-failed",
    ),
    pytest.param(
        {"task_statuses": [{"task": "worker-0", "exit_code": 137}]},
        {"task_statuses": [{"task": "worker-0", "exit_code": 137}]},
        [],
        id="task-failure-reported-once",
    ),
    pytest.param(
        {},
        {"task_statuses": [{"task": "worker-0", "exit_code": 0}, {"task": "worker-1"}]},
        [],
        id="exit-code-zero-or-absent-is-not-a-failure",
    ),
]


@pytest.mark.parametrize(("before", "after", "expected"), CASES)
def test_diff_rules(
    before: dict[str, Any] | None, after: dict[str, Any], expected: list[Any]
) -> None:
    prev = snap(**before) if before is not None else None
    assert kinds(diff(prev, snap(**after), NOW)) == expected


def test_events_carry_job_identity_and_observation_time() -> None:
    (event,) = diff(snap(phase="Pending"), snap(), NOW)
    assert (event.job_name, event.time, event.job_id) == ("train-a", NOW, snap().job_id)


def test_ids_are_deterministic_and_distinguish_transitions() -> None:
    a = diff(snap(phase="Pending"), snap(), NOW)[0]
    b = diff(snap(phase="Pending"), snap(), NOW + 60)[0]
    assert a.id == b.id, "the same transition seen at another time must keep its id"
    again = diff(snap(phase="Pending", records=[RUN0_FAULT]), snap(records=[RUN0_FAULT]), NOW)[0]
    assert again.id != a.id, "Pending->Running after a fault is a new occurrence"
    runs = diff(snap(records=[]), snap(records=[RUN0_FAULT, RUN1]), NOW)
    assert len({e.id for e in runs}) == len(runs) == 3


def test_observe_tracks_phase_since_only_on_phase_change() -> None:
    s1, _ = observe(None, snap(phase="Pending"), 100.0)
    s2, _ = observe(s1, snap(phase="Pending", duration=5), 200.0)
    s3, _ = observe(s2, snap(phase="Running"), 300.0)
    assert (s1.phase_since, s2.phase_since, s3.phase_since) == (100.0, 100.0, 300.0)


def test_restart_counts_cover_every_strategy_and_other() -> None:
    counts = restart_counts(
        snap(
            records=[
                RUN0_FAULT,
                RUN1_RESCHEDULE,
                {"end_at": 5, "end_recover": "teleport"},
                {"end_at": 6, "end_reason": "job completed"},
            ]
        )
    )
    assert counts == {
        "npu_proc_restart": 0,
        "gpu_proc_restart": 0,
        "proc_restart": 1,
        "pod_reschedule": 1,
        "job_reschedule": 0,
        "job_reschedule_with_taint": 0,
        "other": 1,
    }


def test_restarts_never_go_down_when_the_api_returns_fewer_records() -> None:
    s1, _ = observe(None, snap(records=[RUN0_FAULT, RUN1_RESCHEDULE]), 1.0)
    s2, _ = observe(s1, snap(records=[RUN1_RESCHEDULE]), 2.0)
    assert s2.restarts["proc_restart"] == 1 and s2.restarts["pod_reschedule"] == 1


def test_not_found_is_emitted_once_and_keeps_the_last_snapshot() -> None:
    s1, _ = observe(None, snap(), 1.0)
    s2, events = observe(s1, JobGone(s1.job_id), 2.0)
    assert [e.type for e in events] == ["not_found"]
    assert s2.gone and s2.snapshot == s1.snapshot
    s3, events = observe(s2, JobGone(s1.job_id), 3.0)
    assert events == [] and s3 == s2


def test_a_job_that_comes_back_resumes_without_a_second_discovered() -> None:
    s1, _ = observe(None, snap(phase="Running"), 1.0)
    s2, _ = observe(s1, JobGone(s1.job_id), 2.0)
    s3, events = observe(s2, snap(phase="Completed"), 3.0)
    assert not s3.gone
    assert [e.type for e in events] == ["phase_changed"]


def test_not_found_for_a_job_never_seen() -> None:
    state, events = observe(None, JobGone("ghost"), 1.0)
    assert [(e.type, e.job_name) for e in events] == [("not_found", "")]
    assert state == JobState(
        job_id="ghost", gone=True, gone_since=1.0, occurrences={events[0].id: 1}
    )


def test_a_task_listed_twice_with_the_same_code_in_one_answer_fails_once() -> None:
    prev, _ = observe(None, snap(), 1.0)
    twice = [{"task": "worker-0", "exit_code": 137}, {"task": "worker-0", "exit_code": 137}]
    _, events = observe(prev, snap(task_statuses=twice), 2.0)
    assert [e.type for e in events] == ["task_failed"]


def test_a_run_record_missing_from_one_answer_is_the_same_run_when_it_is_back() -> None:
    """Run events are keyed by the record's index, not counted as look-alikes: an answer that
    leaves the records out once must not page the job's runs again under new ids."""
    s1, _ = observe(None, snap(records=[]), 1.0)
    s2, first = observe(s1, snap(records=[RUN0_FAULT, RUN1]), 2.0)
    s3, _ = observe(s2, snap(records=[]), 3.0)
    _, again = observe(s3, snap(records=[RUN0_FAULT, RUN1]), 4.0)
    assert [e.id for e in again] == [e.id for e in first] and len(first) == 3


# -- recoveries (running_records[].recover_records[]) ------------------------------------------


def rec(recover: str, result: str, **kw: Any) -> dict[str, Any]:
    return {"recover": recover, "recover_result": result, **kw}


def faulted(*recover_records: dict[str, Any], start_at: int = 100) -> dict[str, Any]:
    return {**RUN0_FAULT, "start_at": start_at, "recover_records": list(recover_records)}


def test_recovery_counts_count_outcomes_by_strategy_and_result_only_where_they_occur() -> None:
    counts = recovery_counts(
        snap(
            records=[
                faulted(rec("npu_proc_restart", "downgrade"), rec("job_reschedule", "success")),
                faulted(rec("job_reschedule", "success"), rec("gpu_proc_restart", "failed")),
                faulted(rec("teleport", "success"), rec("proc_restart", "rolled_dice")),
                faulted(rec("npu_step_retry", "recovering"), rec("pod_reschedule", "")),
                RUN2,
            ]
        )
    )
    assert counts == {
        "npu_proc_restart": {"downgrade": 1},
        "job_reschedule": {"success": 2},
        "gpu_proc_restart": {"failed": 1},
        "other": {"success": 1},
        "proc_restart": {"other": 1},
    }, "recovering and empty results are not outcomes yet; undocumented values are other"


def test_recoveries_never_go_down_and_a_seen_combination_stays() -> None:
    s1, _ = observe(None, snap(records=[faulted(rec("proc_restart", "success")), RUN1]), 1.0)
    assert s1.recoveries == {"proc_restart": {"success": 1}}
    s2, _ = observe(s1, snap(records=[RUN1]), 2.0)  # the API forgot the faulted record
    assert s2.recoveries == {"proc_restart": {"success": 1}}
    s3, _ = observe(
        s2,
        snap(
            records=[faulted(rec("proc_restart", "failed"), rec("proc_restart", "success")), RUN1]
        ),
        3.0,
    )
    assert s3.recoveries == {"proc_restart": {"success": 1, "failed": 1}}
    s4, _ = observe(s3, JobGone(s3.job_id), 4.0)
    assert s4.recoveries == s3.recoveries


def test_a_recovery_in_progress_is_counted_once_when_its_outcome_arrives() -> None:
    s1, _ = observe(None, snap(records=[faulted(rec("pod_reschedule", "recovering"))]), 1.0)
    assert s1.recoveries == {}
    s2, _ = observe(s1, snap(records=[faulted(rec("pod_reschedule", "success"))]), 2.0)
    assert s2.recoveries == {"pod_reschedule": {"success": 1}}


def test_run_ended_carries_the_newest_ten_recover_records_with_free_text_clipped() -> None:
    records = [
        rec("proc_restart", "failed", reason=f"r{i}", recover_start_at=i, recover_end_at=i + 1)
        for i in range(11)
    ]
    records[-1] |= {"reason": "x" * 1000, "fault_scenario": "y" * 400, "related_task": "worker-0"}
    (ended, _started) = diff(snap(records=[RUN0]), snap(records=[faulted(*records), RUN1]), NOW)
    assert ended.type == "run_ended"
    details = ended.data["recover_records"]
    assert len(details) == MAX_RECOVER_RECORDS == 10
    assert details[0] == {
        "recover": "proc_restart",
        "recover_result": "failed",
        "fault_scenario": "",
        "reason": "r1",
        "related_task": "",
        "recover_start_at": 1,
        "recover_end_at": 2,
    }, "the oldest record is the one left out"
    last = details[-1]
    assert len(last["reason"]) == len(last["fault_scenario"]) == TEXT_LIMIT == 300
    assert last["reason"].endswith("…") and last["related_task"] == "worker-0"
    again = diff(snap(records=[RUN0]), snap(records=[faulted(), RUN1]), NOW)[0]
    assert again.id == ended.id, "the records are data: they never change the event's id"


def test_observe_carries_the_last_reason_forward() -> None:
    reason = {"level": "Error", "time": "2022-11-26T16:03:41+08:00", "message": "OOM"}
    s1, _ = observe(None, snap(phase="Running"), 1.0)
    s2, _ = observe(replace(s1, last_reason=reason), snap(phase="Failed"), 2.0)
    s3, _ = observe(s2, JobGone(s2.job_id), 3.0)
    assert s2.last_reason == s3.last_reason == reason


def test_observe_carries_over_the_hang_bookkeeping_only_usage_sweeps_change() -> None:
    from monitor.core.hang import HangState

    hang = HangState(idle_since=NOW - 900, suspected_at=NOW - 300, episode=2)
    first, _ = observe(None, parse_job(job_doc(phase="Running")), NOW - 60)
    prev = replace(first, hang=hang)
    state, events = observe(prev, parse_job(job_doc(phase="Failed")), NOW)
    assert [e.type for e in events] == ["phase_changed"]
    assert state.hang == hang
