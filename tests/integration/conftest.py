"""The demo scenario as the integration tests play it: its jobs, the events it must produce
once each, and the final metrics it must leave."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import monitor
from monitor.simulator import load_scenario
from tests.harness import SimulatorProc

DEMO = Path(monitor.__file__).parent / "simulator" / "scenarios" / "demo.yaml"
BERT, RESNET, LLAMA, SWEEP = "bert-pretrain", "resnet-finetune", "llama-sft", "data-sweep"

EXPECTED = Counter(
    [
        (BERT, "discovered", "Creating"),
        (BERT, "phase_changed", "Creating->Pending"),
        (BERT, "secondary_phase_changed", "Creating->Queuing"),
        (BERT, "phase_changed", "Pending->Running"),
        (BERT, "secondary_phase_changed", "Queuing->Running"),
        (BERT, "run_started", "#0 init_or_rescheduled"),
        (BERT, "run_ended", "#0 proc_restart"),
        (BERT, "run_started", "#1 restarted"),
        (BERT, "run_ended", "#1 pod_reschedule"),
        (BERT, "run_started", "#2 init_or_rescheduled"),
        (BERT, "phase_changed", "Running->Completed"),
        (BERT, "secondary_phase_changed", "Running->Completed"),
        (BERT, "run_ended", "#2 "),
        (RESNET, "discovered", "Creating"),
        (RESNET, "phase_changed", "Creating->Pending"),
        (RESNET, "secondary_phase_changed", "Creating->Queuing"),
        (RESNET, "phase_changed", "Pending->Running"),
        (RESNET, "secondary_phase_changed", "Queuing->Running"),
        (RESNET, "run_started", "#0 init_or_rescheduled"),
        (RESNET, "phase_changed", "Running->Failed"),
        (RESNET, "secondary_phase_changed", "Running->Failed"),
        (RESNET, "run_ended", "#0 "),
        (RESNET, "task_failed", "worker-0 137"),
        (LLAMA, "discovered", "Creating"),
        (LLAMA, "phase_changed", "Creating->Running"),
        (LLAMA, "secondary_phase_changed", "Creating->Running"),
        (LLAMA, "run_started", "#0 init_or_rescheduled"),
        (LLAMA, "nodes_changed", "4->3"),
        (SWEEP, "discovered", "Creating"),
        (SWEEP, "phase_changed", "Creating->Running"),
        (SWEEP, "secondary_phase_changed", "Creating->Running"),
        (SWEEP, "run_started", "#0 init_or_rescheduled"),
        (SWEEP, "phase_changed", "Running->Terminating"),
        (SWEEP, "secondary_phase_changed", "Running->Terminating"),
        (SWEEP, "phase_changed", "Terminating->Terminated"),
        (SWEEP, "secondary_phase_changed", "Terminating->Terminated"),
        (SWEEP, "run_ended", "#0 "),
        (SWEEP, "not_found", ""),
    ]
)


def summary(event: dict[str, Any]) -> tuple[str, str, str]:
    """(job name, short type, the detail that identifies the transition)."""
    data, kind = event["data"], event["type"].removeprefix("modelarts.job.")
    if kind in ("phase_changed", "secondary_phase_changed", "nodes_changed"):
        detail = f"{data['from']}->{data['to']}"
    elif kind == "discovered":
        detail = data["phase"]
    elif kind == "run_started":
        detail = f"#{data['index']} {data['start_type']}"
    elif kind == "run_ended":
        detail = f"#{data['index']} {data['end_recover']}"
    elif kind == "task_failed":
        detail = f"{data['task']} {data['exit_code']}"
    else:
        detail = ""
    return data["job_name"], kind, detail


def play(sim: SimulatorProc, job_ids: list[str], times: list[float]) -> None:
    for t in times:
        sim.set_time(t)
        sim.wait_polled(job_ids)


def step_times() -> list[float]:
    scenario = load_scenario(DEMO)
    return sorted({step.at for job in scenario.jobs for step in job.timeline})


def job_ids() -> dict[str, str]:
    return {job.name: job.id for job in load_scenario(DEMO).jobs}


def value(metrics: dict[Any, float], name: str, job_id: str, **labels: str) -> float | None:
    for (n, lbls), v in metrics.items():
        d = dict(lbls)
        if (
            n == name
            and d.get("job_id") == job_id
            and all(d.get(k) == x for k, x in labels.items())
        ):
            return v
    return None


def check_events(events: list[dict[str, Any]], ids: dict[str, str]) -> None:
    """The demo scenario's events: each transition exactly once, in CloudEvents form."""
    # Events: the exact multiset, each transition once, in CloudEvents form, with labels.
    assert Counter(summary(e) for e in events) == EXPECTED
    assert len({e["id"] for e in events}) == len(events)
    for e in events:
        assert e["specversion"] == "1.0"
        assert e["source"] == "modelarts-monitor/test-project"
        assert e["subject"] == e["data"]["job_id"] == ids[e["data"]["job_name"]]
        assert e["data"]["labels"] == {"team": "ml"}
    bert_fault = next(e for e in events if summary(e) == (BERT, "run_ended", "#1 pod_reschedule"))
    assert bert_fault["data"]["end_recover_before_downgrade"] == "proc_restart"
    assert bert_fault["data"]["end_related_task"] == "worker-0"


def check_final_metrics(metrics: dict[Any, float], ids: dict[str, str]) -> None:
    """The final value of every metric of DESIGN.md after the demo scenario."""

    # Metrics: the final value of every job family, per job.
    def m(name: str, job: str, **labels: str) -> float | None:
        return value(metrics, name, ids[job], **labels)

    final_phase = {BERT: "Completed", RESNET: "Failed", LLAMA: "Running", SWEEP: "Terminated"}
    for job, phase in final_phase.items():
        assert m("modelarts_training_job_phase", job, phase=phase) == 1, job
        assert m("modelarts_training_job_secondary_phase", job, secondary_phase=phase) == 1, job
        phases = [
            v
            for (n, lbls), v in metrics.items()
            if n == "modelarts_training_job_phase" and dict(lbls)["job_id"] == ids[job]
        ]
        assert sorted(phases) == [0.0] * 8 + [1.0]
        spec = load_scenario(DEMO).job(ids[job])
        assert spec is not None
        assert (
            m(
                "modelarts_training_job_info",
                job,
                flavor_type=spec.flavor.type,
                engine_name=spec.engine.name,
                user_name=spec.user_name,
            )
            == 1
        )
        assert m("modelarts_training_job_phase_last_change_timestamp_seconds", job)
    assert m("modelarts_training_job_info", LLAMA, pool_id="pool-7f3c9a2e-llm") == 1

    expected_duration = {BERT: 34 - 8, RESNET: 20 - 6, LLAMA: 36 - 5, SWEEP: 20 - 4}
    for job, seconds in expected_duration.items():
        assert m("modelarts_training_job_duration_seconds", job) == pytest.approx(seconds, abs=0.01)
    for job, started in {BERT: 8, RESNET: 6, LLAMA: 5, SWEEP: 4}.items():
        created = m("modelarts_training_job_created_timestamp_seconds", job)
        start = m("modelarts_training_job_start_timestamp_seconds", job)
        assert created and start
        assert start - created == pytest.approx(started, abs=0.01)

    assert {j: m("modelarts_training_job_nodes", j) for j in final_phase} == {
        BERT: 2,
        RESNET: 1,
        LLAMA: 3,
        SWEEP: 1,
    }
    assert {j: m("modelarts_training_job_requested_nodes", j) for j in final_phase} == {
        BERT: 2,
        RESNET: 1,
        LLAMA: 4,
        SWEEP: 1,
    }
    assert {j: m("modelarts_training_job_running_records", j) for j in final_phase} == {
        BERT: 3,
        RESNET: 1,
        LLAMA: 1,
        SWEEP: 1,
    }
    restarts = {
        k: m("modelarts_training_job_restarts_total", BERT, end_recover=k)
        for k in (
            "npu_proc_restart",
            "gpu_proc_restart",
            "proc_restart",
            "pod_reschedule",
            "job_reschedule",
            "job_reschedule_with_taint",
            "other",
        )
    }
    assert restarts == {
        "npu_proc_restart": 0,
        "gpu_proc_restart": 0,
        "proc_restart": 1,
        "pod_reschedule": 1,
        "job_reschedule": 0,
        "job_reschedule_with_taint": 0,
        "other": 0,
    }
    assert m("modelarts_training_job_restarts_total", RESNET, end_recover="other") == 0
    assert m("modelarts_training_job_task_exit_code", RESNET, task="worker-0") == 137

    # Monitor health: the deleted job is down, the others are up.
    assert {j: m("modelarts_monitor_up", j) for j in final_phase} == {
        BERT: 1,
        RESNET: 1,
        LLAMA: 1,
        SWEEP: 0,
    }
    for job in final_phase:
        assert m("modelarts_monitor_last_poll_success_timestamp_seconds", job)
    own = {n: v for (n, lbls), v in metrics.items() if not dict(lbls).get("job_id")}
    assert own["modelarts_monitor_jobs"] == 4
    assert metrics[("modelarts_monitor_build_info", (("version", monitor.__version__),))] == 1
    assert metrics[("modelarts_monitor_polls_total", (("result", "not_found"),))] >= 2
    assert own["modelarts_monitor_poll_duration_seconds_count"] > 0
    by_type = Counter(kind for _, kind, _ in EXPECTED.elements())
    for kind, count in by_type.items():
        assert metrics[("modelarts_monitor_events_total", (("type", kind),))] == count, kind
