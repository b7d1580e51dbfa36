"""Scenario files: validation with key paths, and the job documents a timeline replays into."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from monitor.modelarts.parse import parse_job
from monitor.simulator.loader import ScenarioError, builtin_scenario, load_scenario, parse_scenario
from monitor.simulator.scenario import JobSpec, Scenario

EPOCH = 1_700_000_000.0
BERT = "3faf5c03-aaa1-4cbe-879d-24b05d997347"
RESNET = "8d2e61b7-4c3a-4f9e-a0b5-6f1c92d7e438"
LLAMA = "c47a9f10-2b6e-4d83-9e5f-1a08b3d6c2f7"
SWEEP = "5b90e3c2-7a14-4e6d-8f2b-d3a6c1e09b58"


def ms(at: float) -> int:
    return int((EPOCH + at) * 1000)


def sec(at: float) -> int:
    return int(EPOCH + at)


@pytest.fixture(scope="module")
def demo() -> Scenario:
    return builtin_scenario("demo")


def job(scenario: Scenario, job_id: str) -> JobSpec:
    spec = scenario.job(job_id)
    assert spec is not None
    return spec


def doc_at(scenario: Scenario, job_id: str, t: float) -> dict[str, Any]:
    doc = job(scenario, job_id).document(t, EPOCH)
    assert doc is not None
    return doc


def minimal(**job_fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "job-1",
        "name": "one",
        "timeline": [{"at": 0, "phase": "Creating"}],
    }
    base.update(job_fields)
    return {"jobs": [base]}


def problems_of(data: object) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data)
    return info.value.problems


# --- the demo scenario ------------------------------------------------------------------------


def test_demo_has_the_promised_jobs_and_ends_at_36(demo: Scenario) -> None:
    assert demo.speed == 1.0
    assert [j.name for j in demo.jobs] == [
        "bert-pretrain",
        "resnet-finetune",
        "llama-sft",
        "data-sweep",
    ]
    assert demo.end_time == 36.0
    assert [j.pool_id for j in demo.jobs].count(None) == len(demo.jobs) - 1


def test_every_demo_document_parses_with_the_monitors_parser_at_every_step(
    demo: Scenario,
) -> None:
    for spec in demo.jobs:
        for t in sorted({s.at for s in spec.timeline} | {s.at + 0.5 for s in spec.timeline}):
            doc = spec.document(t, EPOCH)
            if doc is None:
                continue
            snap = parse_job(doc, spec.id)
            assert snap.name == spec.name
            assert snap.create_time_ms == ms(spec.first_at)


def test_bert_goes_through_queue_run_two_faults_and_completes(demo: Scenario) -> None:
    assert doc_at(demo, BERT, 0)["status"]["phase"] == "Creating"
    queued = doc_at(demo, BERT, 5)["status"]
    assert (queued["phase"], queued["secondary_phase"]) == ("Pending", "Queuing")
    assert (queued["start_time"], queued["duration"]) == (0, 0)

    running = doc_at(demo, BERT, 10)["status"]
    assert running["phase"] == "Running"
    assert running["start_time"] == ms(8)
    assert running["duration"] == 2000
    assert running["node_count_metrics"] == [[ms(8), 2]]
    assert running["running_records"] == [
        {"start_at": sec(8), "xpu_start_at": sec(11), "start_type": "init_or_rescheduled"}
    ]

    after_proc_restart = doc_at(demo, BERT, 20)["status"]["running_records"]
    assert after_proc_restart == [
        {
            "start_at": sec(8),
            "xpu_start_at": sec(11),
            "end_at": sec(16),
            "start_type": "init_or_rescheduled",
            "end_reason": "process exited with 1",
            "end_related_task": "worker-1",
            "end_recover": "proc_restart",
            "end_recover_before_downgrade": "proc_restart",
        },
        {"start_at": sec(16), "xpu_start_at": sec(17), "start_type": "restarted"},
    ]

    after_reschedule = doc_at(demo, BERT, 30)["status"]["running_records"]
    assert len(after_reschedule) == 3
    assert after_reschedule[1]["end_at"] == sec(24)
    assert after_reschedule[1]["end_recover"] == "pod_reschedule"
    assert after_reschedule[1]["end_recover_before_downgrade"] == "proc_restart"
    assert after_reschedule[2] == {"start_at": sec(24), "start_type": "init_or_rescheduled"}

    done = doc_at(demo, BERT, 40)["status"]
    assert (done["phase"], done["secondary_phase"]) == ("Completed", "Completed")
    assert done["running_records"][-1] == {
        "start_at": sec(24),
        "end_at": sec(34),
        "start_type": "init_or_rescheduled",
        "end_reason": "job completed",
    }


def test_duration_is_frozen_once_the_phase_is_terminal(demo: Scenario) -> None:
    assert doc_at(demo, BERT, 34)["status"]["duration"] == 26_000
    assert doc_at(demo, BERT, 1000)["status"]["duration"] == 26_000
    assert doc_at(demo, RESNET, 19.5)["status"]["duration"] == 13_500
    assert doc_at(demo, RESNET, 500)["status"]["duration"] == 14_000


def test_resnet_fails_with_an_oom_task_status(demo: Scenario) -> None:
    before = doc_at(demo, RESNET, 19)["status"]
    assert before["task_statuses"] == []
    assert before["node_count_metrics"] == [[ms(6), 1]]
    failed = doc_at(demo, RESNET, 20)["status"]
    assert (failed["phase"], failed["secondary_phase"]) == ("Failed", "Failed")
    assert failed["task_statuses"] == [
        {
            "task": "worker-0",
            "exit_code": 137,
            "message": "OOMKilled: container exceeded memory limit",
        }
    ]
    assert failed["running_records"] == [
        {
            "start_at": sec(6),
            "end_at": sec(20),
            "start_type": "init_or_rescheduled",
            "end_reason": "exit with 137",
            "end_related_task": "worker-0",
        }
    ]


def test_llama_loses_a_node_and_keeps_running_past_the_end(demo: Scenario) -> None:
    assert doc_at(demo, LLAMA, 21)["status"]["node_count_metrics"] == [[ms(5), 4]]
    late = doc_at(demo, LLAMA, 60)
    status = late["status"]
    assert status["node_count_metrics"] == [[ms(5), 4], [ms(22), 3]]
    assert status["phase"] == "Running"
    assert status["duration"] == 55_000
    assert status["running_records"] == [{"start_at": sec(5), "start_type": "init_or_rescheduled"}]
    assert late["spec"]["resource"]["node_count"] == 4
    assert parse_job(late, LLAMA).nodes == 3


def test_a_gone_job_has_no_document_from_its_gone_step_on(demo: Scenario) -> None:
    assert doc_at(demo, SWEEP, 27.9)["status"]["phase"] == "Terminated"
    assert job(demo, SWEEP).document(28, EPOCH) is None
    assert job(demo, SWEEP).document(100, EPOCH) is None


def test_a_job_does_not_exist_before_its_first_step() -> None:
    scenario = parse_scenario(minimal(timeline=[{"at": 5, "phase": "Creating"}]))
    spec = job(scenario, "job-1")
    assert spec.document(4.99, EPOCH) is None
    doc = spec.document(5, EPOCH)
    assert doc is not None
    assert doc["metadata"]["create_time"] == ms(5)


def test_document_has_the_reference_shape(demo: Scenario) -> None:
    doc = doc_at(demo, LLAMA, 10)
    assert doc["kind"] == "job"
    assert set(doc) == {"kind", "metadata", "status", "algorithm", "spec", "tasks"}
    assert [t["role"] for t in doc["tasks"]] == ["learner", "rollout"], "a heterogeneous job"
    assert doc["tasks"][1]["task_resource"]["flavor_info"] == {"npu": {"unit_num": "1"}}
    assert set(doc["metadata"]) == {
        "id",
        "name",
        "description",
        "create_time",
        "workspace_id",
        "user_name",
    }
    assert set(doc["status"]) == {
        "phase",
        "secondary_phase",
        "duration",
        "start_time",
        "node_count_metrics",
        "tasks",
        "task_statuses",
        "running_records",
    }
    assert doc["status"]["tasks"] == ["worker-0", "worker-1", "worker-2", "worker-3"]
    assert set(doc["algorithm"]) == {"code_dir", "boot_file", "engine"}
    assert set(doc["algorithm"]["engine"]) == {"engine_id", "engine_name", "engine_version"}
    resource = doc["spec"]["resource"]
    assert resource["pool_id"] == "pool-7f3c9a2e-llm"
    assert "flavor_detail" not in resource, "a dedicated pool sends no flavor_detail"
    assert resource["main_container_allocated_resources"] == {
        "accelerator_type": "nvidia-a800",
        "accelerator_num": 8.0,
    }
    assert "pool_id" not in doc_at(demo, BERT, 10)["spec"]["resource"]


def test_the_demo_serves_the_resource_fields_of_public_and_dedicated_pools(
    demo: Scenario,
) -> None:
    """Restart limit, pool and flavour names, cards per node on a public GPU and Ascend flavour
    and on a dedicated pool: in the SDK's shapes (an NPU count is a string there)."""
    bert = doc_at(demo, BERT, 10)
    assert bert["metadata"]["annotations"] == {"fault-tolerance/job-retry-num": "3"}
    assert bert["spec"]["resource"]["flavor_name"] == "GPU: 8*NVIDIA-V100(32GB)"
    assert bert["spec"]["resource"]["flavor_detail"] == {
        "flavor_type": "GPU",
        "flavor_info": {"gpu": {"unit_num": 8}},
    }
    resnet = doc_at(demo, RESNET, 10)["spec"]["resource"]["flavor_detail"]
    assert resnet == {"flavor_type": "Ascend", "flavor_info": {"npu": {"unit_num": "1"}}}
    llama = doc_at(demo, LLAMA, 10)
    assert llama["spec"]["resource"]["pool_name"] == "llm-dedicated"
    assert "annotations" not in llama["metadata"], "no annotations: none served"
    snaps = {j: parse_job(doc_at(demo, j, 10), j) for j in (BERT, RESNET, LLAMA)}
    assert {j: (s.accelerator_type, s.accelerators, s.flavor_type) for j, s in snaps.items()} == {
        BERT: ("gpu", 16, "GPU"),
        RESNET: ("npu", 1, "Ascend"),
        LLAMA: ("gpu", 32, "GPU"),
    }
    assert snaps[BERT].retry_limit == 3 and snaps[LLAMA].retry_limit is None


def test_defaults_fill_the_optional_job_fields() -> None:
    doc = job(parse_scenario(minimal()), "job-1").document(0, EPOCH)
    assert doc is not None
    assert doc["metadata"]["workspace_id"] == "0"
    assert doc["metadata"]["user_name"] == ""
    assert doc["status"]["tasks"] == ["worker-0"]
    assert doc["spec"]["resource"]["node_count"] == 1
    snap = parse_job(doc, "job-1")
    assert snap.engine_name
    assert snap.flavor_type


def test_state_accumulates_and_a_bare_step_changes_nothing() -> None:
    scenario = parse_scenario(
        minimal(
            timeline=[
                {"at": 0, "phase": "Creating", "secondary_phase": "Creating"},
                {"at": 1, "phase": "Running", "nodes": 2},
                {"at": 2},
            ]
        )
    )
    spec = job(scenario, "job-1")
    one, two = spec.document(1, EPOCH), spec.document(2, EPOCH)
    assert one is not None
    assert two is not None
    assert two["status"]["secondary_phase"] == "Creating"
    assert two["status"]["node_count_metrics"] == one["status"]["node_count_metrics"]
    assert two["status"]["phase"] == "Running"


def test_phase_may_be_an_undocumented_value() -> None:
    scenario = parse_scenario(minimal(timeline=[{"at": 0, "phase": "Hibernating"}]))
    doc = job(scenario, "job-1").document(0, EPOCH)
    assert doc is not None
    assert doc["status"]["phase"] == "Hibernating"


# --- validation --------------------------------------------------------------------------------


def test_wrong_types_are_reported_with_their_key_path() -> None:
    data = minimal(timeline=[{"at": 0, "phase": "Creating"}, {"at": 1, "nodes": "four"}])
    data["jobs"].append(copy.deepcopy(data["jobs"][0]))
    data["jobs"][1]["id"] = "job-2"
    data["jobs"][1]["timeline"].append({"at": 2, "phase": 3})
    problems = problems_of(data)
    assert "jobs[0].timeline[1].nodes: expected an integer, got 'four'" in problems
    assert "jobs[1].timeline[1].nodes: expected an integer, got 'four'" in problems
    assert any(p.startswith("jobs[1].timeline[2].phase: expected a string") for p in problems)


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"jobs": [], "sped": 2}, "sped"),
        (minimal(owner="x"), "jobs[0].owner"),
        (
            minimal(engine={"id": "a", "name": "b", "version": "c", "vendor": "d"}),
            "jobs[0].engine.vendor",
        ),
        (
            minimal(timeline=[{"at": 0, "phase": "Creating", "phaze": "x"}]),
            "jobs[0].timeline[0].phaze",
        ),
        (
            minimal(timeline=[{"at": 0, "phase": "R", "run": {"start_type": "x", "typo": 1}}]),
            "jobs[0].timeline[0].run.typo",
        ),
        (
            minimal(
                timeline=[
                    {"at": 0, "phase": "R", "run": {}},
                    {"at": 1, "end_run": {"end_recovery": "proc_restart"}},
                ]
            ),
            "jobs[0].timeline[1].end_run.end_recovery",
        ),
        (
            minimal(
                timeline=[{"at": 0, "phase": "F", "task_statuses": [{"task": "w", "code": 1}]}]
            ),
            "jobs[0].timeline[0].task_statuses[0].code",
        ),
    ],
)
def test_unknown_keys_are_rejected_by_path(data: dict[str, Any], path: str) -> None:
    assert any(p.startswith(f"{path}: unknown key") for p in problems_of(data))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, "jobs: required"),
        ([], "(top level): expected a mapping"),
        ({"jobs": []}, "jobs: expected at least one job"),
        (
            {"jobs": [{"id": "a", "name": "b", "timeline": []}]},
            "jobs[0].timeline: expected at least",
        ),
        ({"speed": 0, "jobs": minimal()["jobs"]}, "speed: expected a finite number > 0"),
        (minimal(name="has space"), "jobs[0].name: expected 1-64 of letters"),
        (minimal(name="x" * 65), "jobs[0].name: expected 1-64"),
        (minimal(id="a/b"), "jobs[0].id: expected a non-empty string without '/'"),
        (minimal(workspace_id=0), "jobs[0].workspace_id: expected a string, got 0 (quote it"),
        (minimal(node_count=0), "jobs[0].node_count: expected an integer >= 1"),
        (minimal(latency=-1), "jobs[0].latency: expected a finite number >= 0"),
        (minimal(tasks="worker-0"), "jobs[0].tasks: expected a list"),
        (minimal(flavor={"id": "f"}), "jobs[0].flavor.type: required"),
        (
            minimal(flavor={"id": "f", "type": "GPU", "gpus": 8, "npus": 8}),
            "jobs[0].flavor: gpus and npus",
        ),
        (
            minimal(flavor={"id": "f", "type": "GPU", "gpus": -1}),
            "jobs[0].flavor.gpus: expected an integer >= 0",
        ),
        (
            minimal(allocated={"accelerator_type": "ascend-snt9b"}),
            "jobs[0].allocated.accelerator_num: required",
        ),
        (
            minimal(allocated={"accelerator_type": 9, "accelerator_num": 8}),
            "jobs[0].allocated.accelerator_type: expected a string",
        ),
        (
            minimal(annotations={"fault-tolerance/job-retry-num": 3}),
            "jobs[0].annotations.fault-tolerance/job-retry-num: expected a string",
        ),
        (minimal(annotations=["x"]), "jobs[0].annotations: expected a mapping"),
        (
            minimal(timeline=[{"at": 0, "phase": "R", "run": {"xpu_after": -1}}]),
            "jobs[0].timeline[0].run.xpu_after: expected a finite number >= 0",
        ),
        (minimal(timeline=[{"phase": "Creating"}]), "jobs[0].timeline[0].at: required"),
        (
            minimal(timeline=[{"at": True, "phase": "C"}]),
            "jobs[0].timeline[0].at: expected a number",
        ),
        (minimal(timeline=[{"at": 0}]), "jobs[0].timeline[0].phase: the first step must set"),
        (
            minimal(timeline=[{"at": 5, "phase": "C"}, {"at": 4}]),
            "jobs[0].timeline[1].at: steps must be sorted",
        ),
        (
            minimal(timeline=[{"at": 0, "phase": "C", "end_run": {}}]),
            "jobs[0].timeline[0].end_run: no running record is open",
        ),
        (
            minimal(timeline=[{"at": 0, "phase": "R", "run": {}}, {"at": 1, "run": {}}]),
            "jobs[0].timeline[1].run: a running record is already open",
        ),
        (
            minimal(timeline=[{"at": 0, "phase": "C", "gone": True}, {"at": 1}]),
            "jobs[0].timeline[1]: the job is already gone",
        ),
        (
            minimal(timeline=[{"at": 0, "phase": "C", "gone": "yes"}]),
            "jobs[0].timeline[0].gone: expected true or false",
        ),
        (
            minimal(timeline=[{"at": 0, "phase": "F", "task_statuses": [{"exit_code": 1}]}]),
            "jobs[0].timeline[0].task_statuses[0].task: required",
        ),
    ],
)
def test_invalid_values_are_reported_by_path(data: object, expected: str) -> None:
    problems = problems_of(data)
    assert any(p.startswith(expected) for p in problems), problems


def test_duplicate_job_ids_are_rejected() -> None:
    data = minimal()
    data["jobs"].append(copy.deepcopy(data["jobs"][0]))
    assert "jobs[1].id: duplicate of jobs[0].id ('job-1')" in problems_of(data)


def test_end_run_before_run_in_the_same_step_allows_a_restart() -> None:
    scenario = parse_scenario(
        minimal(
            timeline=[
                {"at": 0, "phase": "Running", "run": {}},
                {
                    "at": 3,
                    "end_run": {"end_recover": "proc_restart"},
                    "run": {"start_type": "restarted"},
                },
            ]
        )
    )
    doc = job(scenario, "job-1").document(3, EPOCH)
    assert doc is not None
    assert doc["status"]["running_records"] == [
        {
            "start_at": sec(0),
            "end_at": sec(3),
            "start_type": "init_or_rescheduled",
            "end_recover": "proc_restart",
        },
        {"start_at": sec(3), "start_type": "restarted"},
    ]


# --- files -------------------------------------------------------------------------------------


def test_load_scenario_reads_yaml_and_names_the_file_in_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("speed: 2\njobs:\n  - {id: j, name: n, timeline: [{at: 0, phase: Creating}]}\n")
    assert load_scenario(good).speed == 2.0

    bad = tmp_path / "bad.yaml"
    bad.write_text("jobs:\n  - {id: j, name: n, timeline: [{at: 0, phase: Creating, nodes: x}]}\n")
    with pytest.raises(ScenarioError, match=r"bad\.yaml: jobs\[0\]\.timeline\[0\]\.nodes"):
        load_scenario(bad)

    broken = tmp_path / "broken.yaml"
    broken.write_text("jobs: [\n")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(broken)

    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.yaml")


def test_builtin_scenario_rejects_unknown_names() -> None:
    with pytest.raises(ScenarioError, match="available: demo"):
        builtin_scenario("nope")
    with pytest.raises(ScenarioError):
        builtin_scenario("../pyproject")
