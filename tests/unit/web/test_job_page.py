"""job_page.py and svg.py: what a job's page shows, read as a DOM, hostile values included."""

from __future__ import annotations

from monitor.core.job import JobSnapshot, RecoverRecord, RunningRecord, TaskStatus
from monitor.web.job_page import Change, JobPage, PhaseSpan, Reason, job_page
from monitor.web.pages import JobRow
from monitor.web.svg import RIGHT, WIDTH
from tests.unit.web.conftest import HOSTILE, Node, dom

T0 = 1_800_000_000.0
JOB = "8d2e61b7-4c3a-4f9e-a0b5-6f1c92d7e438"

RECORDS = (
    RunningRecord(
        start_at=int(T0 + 10),
        end_at=int(T0 + 20),
        start_type="init_or_rescheduled",
        end_reason="process exited with 1",
        end_related_task="worker-1",
        end_recover="proc_restart",
        end_recover_before_downgrade="proc_restart",
    ),
    RunningRecord(
        start_at=int(T0 + 20),
        end_at=int(T0 + 30),
        start_type="restarted",
        end_reason="pod evicted: node NotReady",
        end_related_task="worker-0",
        end_recover="pod_reschedule",
        end_recover_before_downgrade="proc_restart",
        recover_records=(
            RecoverRecord(
                recover="pod_reschedule",
                recover_result="success",
                fault_scenario="node_fault",
                reason="pod evicted: node NotReady",
                related_task="worker-0",
            ),
        ),
    ),
    RunningRecord(start_at=int(T0 + 30), start_type="init_or_rescheduled"),
)


def page(**kw: object) -> JobPage:
    snap = JobSnapshot(
        JOB,
        name="bert-pretrain",
        phase="Running",
        secondary_phase="Running",
        requested_nodes=4,
        nodes=3,
        accelerators=32,
        accelerator_type="gpu",
        running_records=RECORDS,
        task_statuses=(TaskStatus("worker-0", 137, "OOMKilled"),),
    )
    fields: dict[str, object] = {
        "row": JobRow(
            JOB, "bert-pretrain", "Running", "Running", "up", T0 + 40, 2, labels={"team": "nlp"}
        ),
        "snapshot": snap,
        "now": T0 + 40,
        "phases": [PhaseSpan("Pending", T0, T0 + 10), PhaseSpan("Running", T0 + 10)],
        "history": [Change(T0, "discovered", "12:00:00  bert  discovered  phase Pending")],
        "nodes": [(T0 + 10, 4), (T0 + 30, 3)],
        "usage": {"worker-0": {"gpuUtil": 0.8, "memUsage": 0.27}, "worker-1": {"gpuUtil": 0.5}},
        "reasons": [
            Reason(
                "run #1 ended (pod_reschedule)", "Error", "2026-11-28T12:00:00Z", "node NotReady"
            )
        ],
    }
    fields.update(kw)
    return JobPage(**fields)  # type: ignore[arg-type]


def render(**kw: object) -> Node:
    return dom(job_page(page(**kw)))


def test_each_run_is_a_bar_and_a_row_with_its_end_reason_recovery_and_task() -> None:
    doc = render()
    runs = doc.by_id("runs").rows()
    assert [r[0] for r in runs] == ["#0", "#1", "#2"]
    assert runs[0][4:8] == ["init_or_rescheduled", "process exited with 1", "worker-1",
                            "proc_restart"]  # fmt: skip
    assert runs[1][7] == "pod_reschedule (downgraded from proc_restart)"
    assert (
        runs[1][8]
        == "pod_reschedule: success · node_fault · pod evicted: node NotReady · task worker-0"
    )
    assert runs[2][2] == "running"
    bars = doc.by_id("runs-timeline").all("g", class_="bar")
    assert len(bars) == 3
    assert [b.all("rect")[0].attrs["fill"] for b in bars] == ["#c98a00", "#c98a00", "#1f6feb"]
    rects = [b.all("rect")[0].attrs for b in bars]
    ends = [float(r["x"]) + float(r["width"]) for r in rects]
    assert float(rects[1]["x"]) == ends[0], "a run's bar starts where the one before ended"
    assert ends[2] == WIDTH - RIGHT, "the open run reaches now, the end of the axis"


def test_the_phases_are_a_timeline_and_a_table() -> None:
    doc = render()
    segments = doc.by_id("phase-timeline").all("g", class_="bar")
    assert [s.all("title")[0].text.split(":")[0] for s in segments] == ["Pending", "Running"]
    rows = doc.by_id("phases").rows()
    assert [r[0] for r in rows] == ["Pending", "Running"]
    assert rows[1][2] == "now"


def test_node_count_over_time_is_drawn_against_the_requested_count() -> None:
    doc = render()
    chart = doc.by_id("nodes-chart")
    assert len(chart.all("circle")) == 2
    assert chart.all("title")[0].text == "requested"
    assert [r[1] for r in doc.by_id("nodes").rows()] == ["4", "3"]
    facts = {r[0]: r[1] for r in doc.by_id("facts").rows()}
    assert facts["nodes"] == "3 of 4 requested"
    assert facts["accelerators"] == "32 gpu"


def test_the_latest_usage_shows_per_task_in_percent() -> None:
    usage = doc_usage = render().by_id("usage")
    assert [th.text for th in usage.all("th")] == ["task", "memory usage", "gpu utilization"]
    assert doc_usage.rows() == [["worker-0", " 27%", " 80%"], ["worker-1", "-", " 50%"]]


def test_reasons_show_what_they_were_fetched_for() -> None:
    rows = render().by_id("reasons").rows()
    assert rows == [["run #1 ended (pod_reschedule)", "Error", "2026-11-28T12:00:00Z",
                     "node NotReady"]]  # fmt: skip


def test_the_page_links_to_the_jobs_lines_of_metrics_and_its_labels_filter() -> None:
    doc = render()
    assert doc.by_id("metrics-link").attrs["href"] == f"/jobs/{JOB}/metrics"
    hrefs = [a.attrs["href"] for a in doc.by_id("facts").all("a")]
    assert "/?team=nlp" in hrefs


def test_a_job_not_seen_yet_renders_without_charts() -> None:
    doc = render(snapshot=None, phases=[], nodes=[], usage={}, reasons=[], history=[])
    assert not doc.all("svg")
    assert doc.by_id("job-name").text == "bert-pretrain"


def test_hostile_values_are_text_in_the_html_and_in_the_svg() -> None:
    record = RunningRecord(
        start_at=int(T0),
        end_at=int(T0 + 5),
        start_type=HOSTILE,
        end_reason=HOSTILE,
        end_related_task=HOSTILE,
        end_recover=HOSTILE,
        recover_records=(RecoverRecord(recover=HOSTILE, recover_result=HOSTILE, reason=HOSTILE),),
    )
    snap = JobSnapshot(
        JOB,
        name=HOSTILE,
        phase=HOSTILE,
        running_records=(record,),
        task_statuses=(TaskStatus(HOSTILE, 1, HOSTILE),),
    )
    html = job_page(
        page(
            row=JobRow(
                JOB,
                HOSTILE,
                HOSTILE,
                HOSTILE,
                "down",
                None,
                0,
                labels={HOSTILE: HOSTILE},
                last_reason=HOSTILE,
                error=HOSTILE,
            ),
            snapshot=snap,
            phases=[PhaseSpan(HOSTILE, T0)],
            usage={HOSTILE: {"cpuUsage": 0.5}},
            reasons=[Reason(HOSTILE, HOSTILE, HOSTILE, HOSTILE)],
            history=[Change(T0, HOSTILE, HOSTILE)],
            journal_note=HOSTILE,
        )
    )
    doc = dom(html)
    assert not doc.all("script") and not doc.all("img")
    assert doc.by_id("job-name").text == HOSTILE
    assert doc.all("title")[0].text.startswith(HOSTILE)
    assert HOSTILE in doc.by_id("phase-timeline").text
    assert HOSTILE in doc.by_id("runs-timeline").all("title")[0].text
    assert doc.by_id("reasons").rows() == [[HOSTILE] * 4]
    assert "<script>" not in html and "]]>" not in html


def test_the_job_page_needs_nothing_its_policy_forbids() -> None:
    """No script, no external source or link out: its charts are inline SVG, its style inline."""
    html = job_page(page())
    assert "<script" not in html and "src=" not in html
    assert "http://" not in html and "https://" not in html
    assert len(dom(html).all("svg")) == 3
