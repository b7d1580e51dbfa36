"""state.py: the stored form of a job's state is explicit and versioned, and old rows load."""

from __future__ import annotations

import json
from typing import Any

import pytest

from monitor.core.diff import observe
from monitor.core.state import STATE_FORMAT, StoredFormError, decode_state, encode_state
from monitor.modelarts.parse import parse_job
from tests.conftest import FIXTURES, job_doc

RUN0_FAULT = {
    "start_at": 100,
    "start_type": "init_or_rescheduled",
    "end_at": 200,
    "end_reason": "node lost",
    "end_recover": "pod_reschedule",
    "recover_records": [{"recover": "pod_reschedule", "recover_result": "success"}],
}


def format1() -> dict[str, Any]:
    """A row exactly as the monitor wrote it before the stored form had a version."""
    doc: dict[str, Any] = json.loads((FIXTURES / "state_format1.json").read_text("utf-8"))
    return doc


NEW_IN_4 = {
    "flavor_name": "",
    "pool_name": "",
    "retry_limit": None,
    "accelerator_type": "",
    "accelerators": None,
}
"""The snapshot names format 4 added, as an older row reads: unknown until the next poll."""


def as_current(doc: dict[str, Any]) -> dict[str, Any]:
    """What a row of format 1 to 4 is stored as once upgraded: its names, plus the names later
    formats added (format 4's if it lacks them, format 5's ``roles``)."""
    snap = doc["snapshot"]
    records = [{"xpu_start_at": None, **r} for r in snap["running_records"]]
    return {
        **doc,
        "format": STATE_FORMAT,
        "snapshot": {**NEW_IN_4, **snap, "roles": [], "running_records": records},
    }


def test_a_row_written_before_the_form_was_versioned_loads_whole() -> None:
    state = decode_state(format1())
    assert state.snapshot is not None
    assert state.snapshot.running_records[0].recover_records[0].reason == "node NotReady"
    assert state.snapshot.task_statuses[0].exit_code == 137
    assert state.recoveries == {"pod_reschedule": {"success": 1}}
    assert state.last_reason["message"] == "OOM"
    assert state.hang.episode == 1 and state.hang.suspected_at == 1_799_999_900.0
    assert encode_state(state) == as_current({**format1(), "occurrences": {}}), (
        "later formats keep format 1's names: the upgrades add the version and the new fields"
    )


def test_the_stored_form_round_trips_and_names_its_format() -> None:
    state = decode_state(format1())
    doc = json.loads(json.dumps(encode_state(state)))
    assert doc["format"] == STATE_FORMAT
    assert decode_state(doc) == state


def test_the_stored_names_are_the_format_not_the_dataclass_fields() -> None:
    """A golden list of every stored key: renaming a field in the dataclasses must not change
    what is on disk (it would orphan every database in the field)."""
    doc = encode_state(decode_state(format1()))
    snapshot, record = doc["snapshot"], doc["snapshot"]["running_records"][0]
    assert sorted(doc) == [
        "format", "gone", "gone_since", "hang", "job_id", "last_reason", "occurrences",
        "phase_since", "recoveries", "restarts", "snapshot",
    ]  # fmt: skip
    assert sorted(snapshot) == sorted(
        [
            "job_id", "name", "kind", "workspace_id", "user_name", "create_time_ms",
            "engine_name", "engine_version", "flavor_id", "flavor_type", "pool_id",
            "requested_nodes", "phase", "secondary_phase", "duration_ms", "start_time_ms",
            "nodes", "nodes_at_ms", "tasks", "task_statuses", "running_records",
            "flavor_name", "pool_name", "retry_limit", "accelerator_type", "accelerators",
            "roles",
        ]
    )  # fmt: skip
    assert sorted(record) == sorted(
        [
            "start_at", "end_at", "start_type", "end_reason", "end_related_task",
            "end_recover", "end_recover_before_downgrade", "recover_records", "xpu_start_at",
        ]
    )  # fmt: skip
    assert sorted(doc["hang"]) == ["episode", "idle_since", "suspected_at"]
    with_roles = encode_state(decode_state({**doc, "snapshot": {**snapshot, "roles": [{}]}}))
    assert sorted(with_roles["snapshot"]["roles"][0]) == sorted(
        [
            "role", "flavor_id", "flavor_name", "flavor_type", "pool_id", "accelerator_type",
            "accelerators_per_node",
        ]
    )  # fmt: skip


def test_a_format1_row_from_before_recoveries_existed_loads_with_empty_defaults() -> None:
    doc = format1()
    del doc["recoveries"], doc["last_reason"], doc["hang"]
    for record in doc["snapshot"]["running_records"]:
        del record["recover_records"]
    old = decode_state(doc)
    assert old.recoveries == {} and old.last_reason == {} and old.hang.episode == 0
    assert old.snapshot is not None and old.snapshot.running_records[0].recover_records == ()
    again, _ = observe(old, parse_job(job_doc(records=[RUN0_FAULT])), 2.0)
    assert again.recoveries == {"pod_reschedule": {"success": 1}}


def test_a_format2_row_loads_with_no_look_alikes_counted_yet() -> None:
    """Format 2 is format 1's names with the version (what the previous monitor wrote)."""
    state = decode_state({**format1(), "format": 2})
    assert state.occurrences == {}
    assert encode_state(state) == as_current({**format1(), "occurrences": {}})


def test_a_format3_row_loads_with_the_new_fields_unknown_until_the_next_poll() -> None:
    """Format 3 is what an older monitor wrote; the store re-encodes it in today's format."""
    row = {**format1(), "format": 3, "occurrences": {}}
    old = decode_state(row)
    assert old.snapshot is not None and old.snapshot.retry_limit is None
    assert old.snapshot.running_records[0].xpu_start_at is None
    assert encode_state(old) == as_current(row)


def test_the_fields_format4_added_survive_a_restart() -> None:
    """Retry limit, pool and flavor names, accelerators and xpu_start_at are stored, so the
    series rendered from a reloaded state are the ones the last poll showed."""
    doc = job_doc(records=[{**RUN0_FAULT, "xpu_start_at": 130}])
    doc["metadata"]["annotations"] = {"fault-tolerance/job-retry-num": "3"}
    doc["spec"]["resource"].update(
        pool_name="team-pool",
        flavor_name="Ascend: 8*snt9b",
        main_container_allocated_resources={
            "accelerator_type": "ascend-snt9b",
            "accelerator_num": 8,
        },
    )
    del doc["spec"]["resource"]["flavor_detail"]
    state, _ = observe(None, parse_job(doc), 1.0)
    stored = json.loads(json.dumps(encode_state(state)))
    assert stored["snapshot"]["retry_limit"] == 3
    assert stored["snapshot"]["running_records"][0]["xpu_start_at"] == 130
    assert decode_state(stored) == state


def test_a_format4_row_loads_with_no_roles_until_the_next_poll() -> None:
    """Format 4 is what the previous monitor wrote: no ``roles``, so none are known."""
    row = as_current({**format1(), "occurrences": {}})
    row = {
        **row,
        "format": 4,
        "snapshot": {k: v for k, v in row["snapshot"].items() if k != "roles"},
    }
    old = decode_state(row)
    assert old.snapshot is not None and old.snapshot.roles == ()
    assert encode_state(old) == as_current(row)


def test_a_heterogeneous_jobs_roles_survive_a_restart() -> None:
    """Each role's flavour is stored, so its series after a restart are the last poll's."""
    doc = job_doc()
    doc["tasks"] = [
        {
            "role": "learner",
            "task_resource": {
                "flavor_id": "modelarts.vm.gpu.8v100",
                "flavor_type": "GPU",
                "pool_id": "pool-a",
                "flavor_info": {"gpu": {"unit_num": 8}},
            },
        },
        {"role": "actor", "task_resource": {"flavor_id": "modelarts.vm.cpu.8u"}},
    ]
    state, _ = observe(None, parse_job(doc), 1.0)
    stored = json.loads(json.dumps(encode_state(state)))
    assert [r["role"] for r in stored["snapshot"]["roles"]] == ["learner", "actor"]
    assert stored["snapshot"]["roles"][0]["accelerators_per_node"] == 8
    assert decode_state(stored) == state


def test_the_look_alike_counts_survive_a_restart() -> None:
    failed = parse_job(job_doc(task_statuses=[{"task": "worker-0", "exit_code": 137}]))
    state, _ = observe(None, parse_job(job_doc()), 1.0)
    state, (first,) = observe(state, failed, 2.0)
    state, _ = observe(state, parse_job(job_doc()), 3.0)
    state, (second,) = observe(state, failed, 4.0)
    doc = json.loads(json.dumps(encode_state(state)))
    assert doc["occurrences"] == {first.id: 2}, "counted by the first occurrence's id"
    assert decode_state(doc) == state
    restarted, _ = observe(decode_state(doc), parse_job(job_doc()), 5.0)
    _, (third,) = observe(restarted, failed, 6.0)
    assert len({first.id, second.id, third.id}) == 3, "the third failure is a third id"


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        ({**format1(), "format": STATE_FORMAT + 1}, "is not one this monitor reads"),
        ({**format1(), "format": "2"}, "is not one this monitor reads"),
        ([], "expected an object"),
        ({"format": 2}, "KeyError"),
        ({**format1(), "restarts": {"proc_restart": "many"}}, "ValueError"),
        ({**format1(), "format": 3}, "KeyError: 'occurrences'"),
        (
            {**format1(), "format": 3, "occurrences": {"6261033ffe3fbeb77f7616393641d261": 0}},
            "occurrences: expected a count of at least 1, got 0",
        ),
        ({**format1(), "format": 3, "occurrences": {"x": True}}, "at least 1, got True"),
    ],
)
def test_a_state_that_cannot_be_read_says_why(doc: Any, why: str) -> None:
    with pytest.raises(StoredFormError, match=why):
        decode_state(doc)
