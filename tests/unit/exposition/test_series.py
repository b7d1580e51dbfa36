"""metrics.py: job series rendered once per change, joined per family, valid exposition text."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.core.diff import observe
from monitor.core.job import PHASES
from monitor.core.state import JobState
from monitor.exposition.doc import metrics_doc
from monitor.exposition.families import JOB_FAMILIES, LAST_SUCCESS, UP
from monitor.exposition.own import MonitorMetrics
from monitor.exposition.series import SeriesStore
from monitor.modelarts.parse import parse_job
from tests.conftest import FIXTURES, job_doc
from tests.harness import require

ROOT = Path(__file__).resolve().parents[3]
NOW = 1_800_000_000.0


def state_of(doc: dict[str, Any], prev: JobState | None = None) -> JobState:
    return observe(prev, parse_job(doc), NOW)[0]


def scrape(store: SeriesStore, monitor: MonitorMetrics | None = None) -> str:
    body = store.render() + (monitor or MonitorMetrics()).render()
    return body.decode()


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_seed_document_renders_the_golden_exposition(seed_doc: dict[str, Any]) -> None:
    """Golden text, as kube-state-metrics' job_test.go: any change to the output is deliberate."""
    store = SeriesStore(project_id="0a1b2c3d4e5f")
    state = state_of(seed_doc)
    store.update(state, {"team": "nlp"})
    store.set_health(state.job_id, True, NOW + 0.5)
    assert store.render() == (FIXTURES / "golden" / "seed.prom").read_bytes()


def test_every_documented_phase_is_always_present_and_exactly_one_is_set() -> None:
    store = SeriesStore()
    store.update(state_of(job_doc(phase="Pending")), {})
    phases = samples(scrape(store), "modelarts_training_job_phase")
    assert sorted(dict(k)["phase"] for k in phases) == sorted([*PHASES, "other"])
    assert [dict(k)["phase"] for k, v in phases.items() if v == 1] == ["Pending"]


def test_undocumented_values_become_other_never_a_label() -> None:
    store = SeriesStore()
    store.update(
        state_of(
            job_doc(
                phase="Hibernating",
                secondary_phase="Dreaming",
                records=[{"end_at": 1, "end_recover": "teleport"}],
            )
        ),
        {},
    )
    text = scrape(store)
    assert "Hibernating" not in text and "Dreaming" not in text and "teleport" not in text
    phase = samples(text, "modelarts_training_job_phase")
    assert [dict(k)["phase"] for k, v in phase.items() if v == 1] == ["other"]
    restarts = samples(text, "modelarts_training_job_restarts_total")
    assert {dict(k)["end_recover"]: v for k, v in restarts.items()}["other"] == 1


def test_start_timestamp_is_absent_until_the_job_has_started() -> None:
    store = SeriesStore()
    store.update(state_of(job_doc(start_time=0)), {})
    assert samples(scrape(store), "modelarts_training_job_start_timestamp_seconds") == {}
    store.update(state_of(job_doc(start_time=1_700_000_010_500)), {})
    assert list(
        samples(scrape(store), "modelarts_training_job_start_timestamp_seconds").values()
    ) == [1_700_000_010.5]


def test_units_are_seconds() -> None:
    store = SeriesStore()
    store.update(state_of(job_doc(duration=90_500)), {})
    text = scrape(store)
    assert list(samples(text, "modelarts_training_job_duration_seconds").values()) == [90.5]
    assert list(samples(text, "modelarts_training_job_created_timestamp_seconds").values()) == [
        1_700_000_000.0
    ]


def test_task_exit_codes_per_task() -> None:
    store = SeriesStore()
    store.update(
        state_of(
            job_doc(
                task_statuses=[
                    {"task": "worker-0", "exit_code": 137},
                    {"task": "worker-1", "exit_code": 0},
                ]
            )
        ),
        {},
    )
    codes = samples(scrape(store), "modelarts_training_job_task_exit_code")
    assert {dict(k)["task"]: v for k, v in codes.items()} == {"worker-0": 137, "worker-1": 0}


def test_label_values_are_escaped_and_parse_back() -> None:
    store = SeriesStore()
    store.update(state_of(job_doc()), {"note": 'a "quoted" \\ back\nslash'})
    (labels,) = samples(scrape(store), "modelarts_monitor_up")
    assert dict(labels)["note"] == 'a "quoted" \\ back\nslash'


def test_every_series_carries_job_id_job_name_and_configured_labels() -> None:
    store = SeriesStore()
    store.update(state_of(job_doc()), {"team": "nlp", "env": "prod"})
    for family in text_string_to_metric_families(scrape(store)):
        for s in family.samples:
            if s.name.startswith(("modelarts_training_job", "modelarts_monitor_up")):
                assert {"job_id", "job_name", "team", "env"} <= s.labels.keys(), s


def test_a_job_never_polled_successfully_shows_only_its_health() -> None:
    store = SeriesStore()
    store.update(JobState(job_id="ghost"), {})
    store.set_health("ghost", False, None)
    text = scrape(store)
    assert samples(text, "modelarts_monitor_up") == {(("job_id", "ghost"), ("job_name", "")): 0.0}
    for family in JOB_FAMILIES:
        assert samples(text, family.name) == {}


def test_a_scrape_renders_nothing_unchanged_and_a_health_update_only_its_own_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rendering happens when a job changes, not when it is scraped; and a poll that only moves
    the job's last-success time renders nothing at all until the next scrape, which renders
    that one line, however many polls came in between."""
    import monitor.exposition.series as series

    store = SeriesStore()
    state = state_of(job_doc())
    store.update(state, {})
    store.set_health(state.job_id, True, NOW)
    first = store.render()
    rendered: list[str] = []

    def counting(render: Callable[..., bytes]) -> Callable[..., bytes]:
        def counted(head: str, *rest: Any) -> bytes:
            rendered.append(head)
            return render(head, *rest)

        return counted

    for name in ("_render", "_render_one"):
        monkeypatch.setattr(series, name, counting(getattr(series, name)))
    heads = {"up": series.HEADS[UP], "last_success": series.HEADS[LAST_SUCCESS]}

    assert store.render() == first
    store.set_health(state.job_id, True, NOW)  # same values: nothing to re-render
    assert rendered == []
    for k in range(1, 31):
        store.set_health(state.job_id, True, NOW + k)
    assert rendered == [], "a health update rendered at once, not at the scrape"
    second = store.render()
    assert rendered == [heads["last_success"]], "only the last-success line is rendered, once"
    assert second.replace(b"1800000030", b"1800000000") == first

    rendered.clear()
    store.set_health(state.job_id, False, NOW + 30)  # a failed poll: only up moves
    assert b"modelarts_monitor_up{" in store.render()
    assert rendered == [heads["up"]]


def test_removed_job_leaves_the_exposition() -> None:
    store = SeriesStore()
    store.update(state_of(job_doc(job_id="a")), {})
    store.update(state_of(job_doc(job_id="b")), {})
    store.remove("a")
    assert 'job_id="a"' not in scrape(store) and 'job_id="b"' in scrape(store)


def test_families_are_contiguous_across_jobs() -> None:
    store = SeriesStore()
    for job_id in ("a", "b", "c"):
        store.update(state_of(job_doc(job_id=job_id)), {})
    names = [line.split("{")[0] for line in scrape(store).splitlines() if not line.startswith("#")]
    seen: list[str] = []
    for name in names:
        if not seen or seen[-1] != name:
            assert name not in seen, f"{name} is split"
            seen.append(name)


def test_monitor_metrics_pre_create_every_result_and_event_type() -> None:
    text = MonitorMetrics().render().decode()
    results = samples(text, "modelarts_monitor_polls_total")
    assert {dict(k)["result"] for k in results} == {
        "ok",
        "not_found",
        "auth_error",
        "rate_limited",
        "server_error",
        "timeout",
        "invalid_response",
        "network_error",
        "state_error",
    }
    assert "_created" not in text
    assert samples(text, "modelarts_monitor_build_info")


def test_promtool_accepts_the_exposition(seed_doc: dict[str, Any], tmp_path: Path) -> None:
    promtool = require("promtool")
    store = SeriesStore()
    for i, doc in enumerate(
        [seed_doc, job_doc(job_id="b", task_statuses=[{"task": "w", "exit_code": 1}])]
    ):
        state = state_of(doc)
        store.update(state, {"team": f"t{i}"})
        store.set_health(state.job_id, True, NOW)
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=scrape(store).encode(),
        capture_output=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_metrics_doc_matches_the_code() -> None:
    assert (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8") == metrics_doc(), (
        "regenerate with: python -m monitor.exposition.doc > docs/metrics.md"
    )


def test_seed_fixture_is_the_reference_example() -> None:
    doc = json.loads((FIXTURES / "seed_job.json").read_text(encoding="utf-8"))
    assert doc["metadata"]["id"] == "3faf5c03-aaa1-4cbe-879d-24b05d997347"


RECOVERIES = "modelarts_training_job_recoveries_total"


def recovery_doc(*pairs: tuple[str, str]) -> dict[str, Any]:
    recover_records = [{"recover": r, "recover_result": k, "reason": "why"} for r, k in pairs]
    return job_doc(records=[{"start_at": 1, "end_at": 2, "recover_records": recover_records}])


def recoveries(text: str) -> dict[tuple[str, str], float]:
    return {
        (dict(k)["recover"], dict(k)["recover_result"]): v
        for k, v in samples(text, RECOVERIES).items()
    }


def test_recoveries_export_only_the_combinations_that_occurred_with_bounded_labels() -> None:
    store = SeriesStore()
    doc = recovery_doc(
        ("npu_proc_restart", "downgrade"),
        ("job_reschedule", "success"),
        ("job_reschedule", "success"),
        ("teleport", "quantum_success"),
        ("pod_reschedule", "recovering"),
    )
    store.update(state_of(doc), {"team": "nlp"})
    text = scrape(store)
    assert recoveries(text) == {
        ("npu_proc_restart", "downgrade"): 1,
        ("job_reschedule", "success"): 2,
        ("other", "other"): 1,
    }
    assert "teleport" not in text and "quantum" not in text and "why" not in text
    assert all(dict(k)["team"] == "nlp" and dict(k)["job_id"] for k in samples(text, RECOVERIES))


def test_a_job_without_recoveries_has_only_the_family_header() -> None:
    store = SeriesStore()
    store.update(state_of(job_doc()), {})
    text = scrape(store)
    assert f"# TYPE {RECOVERIES} counter" in text
    assert recoveries(text) == {}


def test_recoveries_never_decrease_when_the_api_returns_fewer_records() -> None:
    store = SeriesStore()
    first = state_of(recovery_doc(("proc_restart", "success"), ("proc_restart", "failed")))
    store.update(first, {})
    later = state_of(recovery_doc(("proc_restart", "failed")), prev=first)
    store.update(later, {})
    assert recoveries(scrape(store)) == {
        ("proc_restart", "success"): 1,
        ("proc_restart", "failed"): 1,
    }
    grown = state_of(recovery_doc(*[("proc_restart", "failed")] * 3), prev=later)
    store.update(grown, {})
    assert recoveries(scrape(store))[("proc_restart", "failed")] == 3


def test_usage_series_per_task_absent_without_data_and_dropped_on_request() -> None:
    store = SeriesStore()
    state = state_of(job_doc())
    store.update(state, {})
    store.set_usage(state.job_id, {"worker-0": {"gpuUtil": 0.8, "cpuUsage": 0.1}, "worker-1": {}})
    text = scrape(store)
    gpu = samples(text, "modelarts_training_job_task_gpu_utilization_ratio")
    assert {dict(k)["task"]: v for k, v in gpu.items()} == {"worker-0": 0.8}
    assert samples(text, "modelarts_training_job_task_npu_utilization_ratio") == {}
    store.set_usage(state.job_id, None)
    assert samples(scrape(store), "modelarts_training_job_task_cpu_usage_ratio") == {}


def test_own_labels_names_every_label_of_the_monitors_own_families() -> None:
    from monitor.exposition.own import OWN_LABELS

    metrics = MonitorMetrics()
    metrics.outbox_pending.labels("webhook").set(0)
    metrics.deliveries.labels("webhook", "ok")
    seen = {k for fam in metrics.registry.collect() for s in fam.samples for k in s.labels}
    assert seen - {"le"} == OWN_LABELS


def dedicated_job(**metadata: Any) -> dict[str, Any]:
    """A job on a dedicated Ascend pool: no flavor_detail, the allocated resources instead."""
    doc = job_doc()
    doc["metadata"].update(metadata)
    doc["spec"]["resource"] = {
        "flavor_id": "modelarts.pool.snt9b.8",
        "flavor_name": "Ascend: 8*snt9b",
        "node_count": 4,
        "pool_id": "pool-9c1",
        "pool_name": "llm-dedicated",
        "main_container_allocated_resources": {
            "accelerator_type": "ascend-snt9b",
            "accelerator_num": 8.0,
        },
    }
    return doc


def test_the_restart_limit_is_exported_when_the_job_sets_one_and_absent_otherwise() -> None:
    store = SeriesStore()
    limited = dedicated_job(annotations={"fault-tolerance/job-retry-num": "3"})
    store.update(state_of(limited), {})
    store.update(state_of(job_doc(job_id="other-job")), {})
    retry = samples(scrape(store), "modelarts_training_job_retry_limit")
    assert {dict(k)["job_id"]: v for k, v in retry.items()} == {limited["metadata"]["id"]: 3}


def test_accelerators_are_exported_by_type_and_absent_for_a_job_holding_none() -> None:
    store = SeriesStore()
    npu = dedicated_job()
    gpu = job_doc(job_id="gpu-job")
    gpu["spec"]["resource"]["flavor_detail"]["flavor_info"] = {"gpu": {"unit_num": 8}}
    store.update(state_of(npu), {})
    store.update(state_of(gpu), {})
    store.update(state_of(job_doc(job_id="cpu-job")), {})  # flavor_detail without cards
    held = samples(scrape(store), "modelarts_training_job_accelerators")
    assert {(dict(k)["job_id"], dict(k)["type"]): v for k, v in held.items()} == {
        (npu["metadata"]["id"], "npu"): 32,  # 8 a node x 4 nodes
        ("gpu-job", "gpu"): 16,  # 8 a node x 2 nodes
    }


def test_info_names_the_pool_and_flavor_and_a_dedicated_pools_flavor_type() -> None:
    store = SeriesStore()
    store.update(state_of(dedicated_job()), {})
    ((labels, value),) = samples(scrape(store), "modelarts_training_job_info").items()
    info = dict(labels)
    assert value == 1
    assert (info["pool_name"], info["flavor_name"]) == ("llm-dedicated", "Ascend: 8*snt9b")
    assert info["flavor_type"] == "Ascend", "derived from the allocated accelerator type"


def test_project_id_from_the_config_is_on_info_only() -> None:
    store = SeriesStore(project_id="proj-7")
    store.update(state_of(job_doc()), {})
    text = store.render().decode()
    info = [line for line in text.splitlines() if line.startswith("modelarts_training_job_info{")]
    assert len(info) == 1 and 'project_id="proj-7"' in info[0]
    assert sum('project_id="' in line for line in text.splitlines()) == 1


def test_a_task_listed_twice_renders_one_exit_code_series_and_the_scrape_parses() -> None:
    store = SeriesStore()
    statuses = [
        {"task": "worker-0", "exit_code": 1, "message": "first"},
        {"task": "worker-0", "exit_code": 137, "message": "again"},
    ]
    store.update(state_of(job_doc(task_statuses=statuses)), {})
    text = store.render().decode()
    name = "modelarts_training_job_task_exit_code{"
    lines = [line for line in text.splitlines() if line.startswith(name)]
    assert len(lines) == 1, "a duplicate series makes Prometheus refuse the whole scrape"
    assert lines[0].endswith(" 137")


def test_rendered_label_tails_kept_for_reuse_are_bounded_whatever_the_jobs_send(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tails of lines that repeat across jobs are kept to be reused; task names that never
    repeat, or usage ratios, must not make that memory grow with the jobs."""
    import monitor.exposition.series as series

    monkeypatch.setattr(series, "_suffixes", {})
    monkeypatch.setattr(series, "SUFFIX_CACHE", 40)
    store = SeriesStore()
    for i in range(30):
        statuses = [{"task": f"task-{i}-{k}", "exit_code": k} for k in range(3)]
        store.update(state_of(job_doc(job_id=f"job-{i}", task_statuses=statuses)), {})
        store.set_usage(f"job-{i}", {"worker-0": {"cpuUsage": 0.5 + i / 1000}})
    assert len(series._suffixes) <= 40
    assert not any(0 < key[-1] < 1 for key in series._suffixes), "a ratio was kept"  # type: ignore[operator]
    text = scrape(store)
    assert 'job_id="job-29",job_name="train-a",task="task-29-2"} 2' in text
    assert 'job_id="job-29",job_name="train-a",task="worker-0"} 0.529' in text
