"""parse.py: the values every job repeats (phases, flavours, engines, task and role names,
start types, end reasons, recovery strategies) are held once for all snapshots, not once per
job: at 10,000 jobs the snapshots' copies of them were about 1 KB a job."""

from __future__ import annotations

import json
from typing import Any

from monitor.core.job import JobSnapshot
from monitor.modelarts import fields
from monitor.modelarts.parse import parse_job
from tests.conftest import job_doc


def decoded(job_id: str) -> dict[str, Any]:
    """A job's document as a poll gets it: decoded from its own bytes, so no string is
    shared with another job's document before parsing."""
    doc = job_doc(
        job_id=job_id,
        name=f"train-{job_id}",
        records=[
            {
                "start_at": 1_700_000_000,
                "end_at": 1_700_000_500,
                "start_type": "init_or_rescheduled",
                "end_reason": "process exited with 1",
                "end_related_task": "worker-1",
                "end_recover": "proc_restart",
                "recover_records": [
                    {"recover": "proc_restart", "recover_result": "success",
                     "related_task": "worker-1", "fault_scenario": "process exited"}
                ],
            }
        ],
        task_statuses=[{"task": "worker-0", "exit_code": 0, "message": ""}],
    )  # fmt: skip
    doc["algorithm"]["engine"]["engine_version"] = "PyTorch-2.1.0-python3.10"
    doc["spec"]["resource"] |= {"flavor_name": "GPU: 8*V100", "pool_name": "pool-one"}
    doc["tasks"] = [
        {"role": "learner", "task_resource": {"flavor_id": "modelarts.vm.cpu.8u",
                                              "flavor_name": "CPU: 8u", "flavor_type": "CPU",
                                              "pool_id": "pool-1"}}
    ]  # fmt: skip
    return json.loads(json.dumps(doc))


def shared_values(snap: JobSnapshot) -> dict[str, str]:
    record, role = snap.running_records[0], snap.roles[0]
    recover = record.recover_records[0]
    return {
        "kind": snap.kind,
        "workspace_id": snap.workspace_id,
        "user_name": snap.user_name,
        "phase": snap.phase,
        "secondary_phase": snap.secondary_phase,
        "engine_name": snap.engine_name,
        "engine_version": snap.engine_version,
        "flavor_id": snap.flavor_id,
        "flavor_name": snap.flavor_name,
        "flavor_type": snap.flavor_type,
        "pool_id": snap.pool_id,
        "pool_name": snap.pool_name,
        "task": snap.tasks[0],
        "task_status.task": snap.task_statuses[0].task,
        "start_type": record.start_type,
        "end_reason": record.end_reason,
        "end_related_task": record.end_related_task,
        "end_recover": record.end_recover,
        "recover": recover.recover,
        "recover_result": recover.recover_result,
        "related_task": recover.related_task,
        "fault_scenario": recover.fault_scenario,
        "role": role.role,
        "role.flavor_id": role.flavor_id,
        "role.flavor_name": role.flavor_name,
        "role.flavor_type": role.flavor_type,
        "role.pool_id": role.pool_id,
    }


def test_values_every_job_repeats_are_one_copy_shared_by_all_snapshots() -> None:
    a = shared_values(parse_job(decoded("job-a"), "job-a"))
    b = shared_values(parse_job(decoded("job-b"), "job-b"))
    assert a == b
    copies = sorted(field for field in a if a[field] and a[field] is not b[field])
    assert copies == [], f"each snapshot keeps its own copy of {copies}"


def test_a_shared_value_is_still_bounded_and_cleaned_where_it_enters() -> None:
    doc = decoded("job-a")
    doc["status"]["phase"] = "Run\nning" + "x" * 500
    snap = parse_job(doc, "job-a")
    assert "\n" not in snap.phase and len(snap.phase) == 128 and snap.phase.endswith("…")


def test_a_word_clean_as_free_text_is_still_cleaned_where_it_becomes_a_label() -> None:
    """End reasons keep tabs (free text); the same string as a start type (one line) may not,
    however often it was seen as an end reason first."""
    doc = decoded("job-a")
    doc["status"]["running_records"][0]["end_reason"] = "exit\tcode 1"
    assert parse_job(doc, "job-a").running_records[0].end_reason == "exit\tcode 1"
    doc["status"]["running_records"][0]["start_type"] = "exit\tcode 1"
    record = parse_job(doc, "job-a").running_records[0]
    assert record.start_type == "exit\ufffdcode 1"
    assert record.end_reason == "exit\tcode 1"


def test_novel_words_in_every_body_keep_the_remembered_words_bounded() -> None:
    doc = decoded("job-a")
    for n in range(fields.WORDS_KEPT + 10):
        doc["status"]["phase"] = f"phase-{n}"
        assert parse_job(doc, "job-a").phase == f"phase-{n}"
        assert len(fields._LINE_WORDS) <= fields.WORDS_KEPT
    assert parse_job(decoded("job-b"), "job-b").phase == "Running"
