"""series.py with ``metrics:``: sparse state sets, allowed and denied families, and the gone
family, as a scrape shows them."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from monitor.config.exposure import MetricsSettings
from monitor.core.diff import observe
from monitor.core.job import JobGone
from monitor.core.state import JobState
from monitor.exposition.families import FAMILIES
from monitor.exposition.series import SeriesStore
from monitor.modelarts.parse import parse_job
from tests.conftest import FIXTURES, SEED_ID, job_doc

NOW = 1_800_000_000.0
SPARSE = MetricsSettings(state_sets="sparse")
STATE_SETS = ("modelarts_training_job_phase", "modelarts_training_job_secondary_phase")


def state_of(doc: dict[str, Any], prev: JobState | None = None, now: float = NOW) -> JobState:
    return observe(prev, parse_job(doc), now)[0]


def seed_store(seed_doc: dict[str, Any], exposure: MetricsSettings) -> SeriesStore:
    """The seed job as the golden test of the full exposition renders it, under ``exposure``."""
    store = SeriesStore(project_id="0a1b2c3d4e5f", exposure=exposure)
    state = state_of(seed_doc)
    store.update(state, {"team": "nlp"})
    store.set_health(state.job_id, True, NOW + 0.5)
    return store


def sections(text: bytes) -> dict[str, bytes]:
    """Each family's block of exposition text (HELP, TYPE and samples), by family name."""
    out: dict[str, bytes] = {}
    name = ""
    for line in text.splitlines(keepends=True):
        if line.startswith(b"# HELP "):
            name = line.split()[2].decode()
        out[name] = out.get(name, b"") + line
    return out


def values(text: bytes, name: str) -> dict[str, float]:
    """A family's samples as {rendered extra labels: value}."""
    shared = {"job_id", "job_name", "team", "project_id"}
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            if s.name == name:
                extra = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()) if k not in shared)
                out[extra] = s.value
    return out


# --- sparse state sets ----------------------------------------------------------------------


def test_sparse_state_sets_render_the_golden_exposition(seed_doc: dict[str, Any]) -> None:
    """Phase and secondary phase each show one series, at 1; HELP says why the rest is missing."""
    body = seed_store(seed_doc, SPARSE).render()
    assert body == (FIXTURES / "golden" / "seed-sparse.prom").read_bytes()


def test_sparse_changes_nothing_but_the_state_sets(seed_doc: dict[str, Any]) -> None:
    full = sections(seed_store(seed_doc, MetricsSettings()).render())
    sparse = sections(seed_store(seed_doc, SPARSE).render())
    assert full.keys() == sparse.keys()
    changed = {name for name in full if full[name] != sparse[name]}
    assert changed == set(STATE_SETS)


def test_sparse_phase_change_replaces_the_old_phases_series() -> None:
    store = SeriesStore(exposure=SPARSE)
    pending = state_of(job_doc(phase="Pending", secondary_phase="Pending"))
    store.update(pending, {})
    assert values(store.render(), "modelarts_training_job_phase") == {"phase=Pending": 1.0}
    store.update(state_of(job_doc(phase="Running"), pending, NOW + 30), {})
    body = store.render()
    assert values(body, "modelarts_training_job_phase") == {"phase=Running": 1.0}
    assert values(body, "modelarts_training_job_secondary_phase") == {
        "secondary_phase=Running": 1.0
    }


def test_sparse_undocumented_phase_is_the_one_other_series() -> None:
    store = SeriesStore(exposure=SPARSE)
    store.update(state_of(job_doc(phase="Hibernating")), {})
    assert values(store.render(), "modelarts_training_job_phase") == {"phase=other": 1.0}


def test_sparse_leaves_the_restart_counters_whole() -> None:
    """Counters are not state sets: every strategy stays, at 0 where none happened, so an
    increase() sees the first restart."""
    store = SeriesStore(exposure=SPARSE)
    store.update(state_of(job_doc()), {})
    restarts = values(store.render(), "modelarts_training_job_restarts_total")
    assert len(restarts) == 7
    assert set(restarts.values()) == {0.0}


# --- allow / deny ---------------------------------------------------------------------------


def test_allow_and_deny_render_the_golden_exposition(seed_doc: dict[str, Any]) -> None:
    """Only the allowed families less the denied ones, each without its HELP/TYPE once dropped;
    the job's own health (up, last success) stays, since a filter cannot deny it."""
    exposure = MetricsSettings(
        allow=[r"modelarts_training_job_(phase|gone|nodes|requested_nodes)"],
        deny=[r"modelarts_training_job_requested_.*", "modelarts_monitor_up"],
    )
    body = seed_store(seed_doc, exposure).render()
    assert body == (FIXTURES / "golden" / "seed-filtered.prom").read_bytes()
    assert list(sections(body)) == [
        "modelarts_training_job_phase",
        "modelarts_training_job_gone",
        "modelarts_training_job_nodes",
        "modelarts_monitor_up",
        "modelarts_monitor_last_poll_success_timestamp_seconds",
    ]


def test_denying_every_name_keeps_only_the_monitors_own_health(seed_doc: dict[str, Any]) -> None:
    body = seed_store(seed_doc, MetricsSettings(deny=[".*"])).render()
    assert list(sections(body)) == [
        "modelarts_monitor_up",
        "modelarts_monitor_last_poll_success_timestamp_seconds",
    ]
    assert values(body, "modelarts_monitor_up") == {"": 1.0}


def test_denied_usage_ratios_are_never_rendered() -> None:
    store = SeriesStore(exposure=MetricsSettings(deny=[r".*_utilization_ratio"]))
    store.update(state_of(job_doc()), {})
    store.set_usage(SEED_ID, {"worker-0": {"gpuUtil": 0.5, "cpuUsage": 0.25}})
    names = set(sections(store.render()))
    assert "modelarts_training_job_task_gpu_utilization_ratio" not in names
    assert "modelarts_training_job_task_cpu_usage_ratio" in names


def test_a_filter_that_starves_a_shipped_alert_is_logged_once_at_start() -> None:
    with capture_logs() as logs:
        store = SeriesStore(exposure=MetricsSettings(deny=[r"modelarts_training_job_phase"]))
        store.update(state_of(job_doc()), {})
        store.render()
    warnings = [e for e in logs if e["event"] == "metrics_filter_starves_alerts"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    assert warnings[0]["alerts"]["ModelArtsJobFailed"] == ["modelarts_training_job_phase"]
    assert "ModelArtsJobRestarting" not in warnings[0]["alerts"]


def test_the_default_filters_log_nothing() -> None:
    with capture_logs() as logs:
        SeriesStore(exposure=MetricsSettings())
    assert logs == []


# --- gone -----------------------------------------------------------------------------------


def test_a_job_the_api_says_is_gone_shows_gone_1_and_keeps_its_last_series() -> None:
    store = SeriesStore()
    seen = state_of(job_doc(phase="Running"))
    store.update(seen, {})
    assert values(store.render(), "modelarts_training_job_gone") == {"": 0.0}
    gone, _ = observe(seen, JobGone(SEED_ID), NOW + 60)
    store.update(gone, {})
    store.set_health(SEED_ID, False, NOW)
    body = store.render()
    assert values(body, "modelarts_training_job_gone") == {"": 1.0}
    assert values(body, "modelarts_monitor_up") == {"": 0.0}
    assert values(body, "modelarts_training_job_phase")["phase=Running"] == 1.0


def test_a_gone_job_that_comes_back_shows_gone_0_again() -> None:
    store = SeriesStore()
    seen = state_of(job_doc())
    gone, _ = observe(seen, JobGone(SEED_ID), NOW + 60)
    store.update(state_of(job_doc(), gone, NOW + 120), {})
    assert values(store.render(), "modelarts_training_job_gone") == {"": 0.0}


def test_a_job_never_seen_has_no_gone_series_even_when_the_api_says_it_is_gone() -> None:
    """A mistyped id: nothing known of the job, so no job series at all; only its up 0 shows,
    and the poll alert keeps firing for it."""
    store = SeriesStore()
    state, _ = observe(None, JobGone("typo-job"), NOW)
    store.update(state, {})
    store.set_health("typo-job", False, None)
    names = {n for n, block in sections(store.render()).items() if b"typo-job" in block}
    assert names == {"modelarts_monitor_up"}


def test_every_family_of_the_table_is_a_section_of_a_full_scrape() -> None:
    store = SeriesStore(exposure=MetricsSettings())
    assert list(sections(store.render())) == [f.name for f in FAMILIES]
