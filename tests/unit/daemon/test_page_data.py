"""page_data.py and reports.py: the pages' rows and a job's page, from a real job book, store
and journal, with the job driven through polls over a mock transport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.config.settings import PollSettings, ReasonSettings
from monitor.core.job import JobSnapshot
from monitor.core.state import JobState
from monitor.daemon.page_data import JOURNAL_LIMIT, PageData, build_page
from monitor.errors import StateError
from monitor.exposition.series import SeriesStore
from tests.conftest import SEED_ID, job_doc
from tests.unit.daemon.conftest import LABELS, JobPath, job_path

POLL = PollSettings(terminal_retention=3600)
REASONS = [
    {"time": "2026-11-28T20:00:05+08:00", "level": "Error", "message": "exit 137: OOMKilled"},
    {"time": "2026-11-28T20:00:01+08:00", "level": "Warning", "message": "memory above 95%"},
]
ENDED = {
    "start_at": 1_700_000_010,
    "end_at": 1_700_000_020,
    "start_type": "init_or_rescheduled",
    "end_reason": "exit with 137",
    "end_related_task": "worker-0",
}


class Api:
    """The fake ModelArts: the job's detail is whatever the test set last; its events list
    ``REASONS``; ``status`` other than 200 answers every detail request with that."""

    def __init__(self) -> None:
        self.doc: dict[str, Any] = job_doc()
        self.status = 200

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            level = request.url.params.get("level")
            events = [{**e, "source": "Job"} for e in REASONS if e["level"] == level]
            return httpx.Response(200, json={"total": len(events), "events": events})
        if self.status == 404:
            return httpx.Response(400, json={"error_code": "ModelArts.2775", "error_msg": "gone"})
        if self.status != 200:
            return httpx.Response(self.status, text="busy")
        return httpx.Response(200, json=self.doc)


class Rig:
    def __init__(self, path: JobPath, api: Api) -> None:
        self.path, self.api = path, api
        target = SimpleNamespace(poll=POLL)
        self.pages = PageData(path.book, path.store, path.series, lambda name: target, path.clock)

    async def poll(self, **doc: Any) -> None:
        if doc:
            self.api.doc = job_doc(**doc)
        view = self.path.book.view(SEED_ID)
        if view is not None:
            self.path.clock.now = max(self.path.clock.now, view.health.not_before)
        await self.path.poller.poll(SEED_ID)
        self.path.clock.now += 30

    def health(self) -> str:
        (row,) = self.pages.rows()
        return row.health


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    api = Api()
    async with job_path(tmp_path, api.handler, poll=POLL, reasons=ReasonSettings()) as path:
        yield Rig(path, api)


async def failed_story(rig: Rig) -> None:
    """Pending, Running on 2 nodes, down to 1 node, then Failed with an ended run."""
    await rig.poll(phase="Pending", secondary_phase="Queuing")
    await rig.poll(nodes=[[1_700_000_010_000, 2]])
    await rig.poll(nodes=[[1_700_000_015_000, 1]])
    await rig.poll(phase="Failed", secondary_phase="Failed", records=[ENDED],
                   nodes=[[1_700_000_015_000, 1]])  # fmt: skip


async def test_health_is_up_after_a_good_poll_and_down_after_a_failed_one(rig: Rig) -> None:
    assert rig.health() == "down", "a job not polled yet is not up"
    assert rig.pages.rows()[0].error == "not polled yet"
    await rig.poll()
    assert rig.health() == "up"
    rig.api.status = 503
    await rig.poll()
    assert rig.health() == "down"
    assert rig.pages.rows()[0].error.startswith("server_error")


async def test_a_deleted_job_is_gone_not_down(rig: Rig) -> None:
    await rig.poll()
    rig.api.status = 404
    await rig.poll()
    assert rig.health() == "gone"


async def test_a_terminal_job_past_its_retention_is_retired(rig: Rig) -> None:
    await rig.poll(phase="Completed", secondary_phase="Completed")
    assert rig.health() == "up", "finished, but within poll.terminal_retention"
    rig.path.clock.now += POLL.terminal_retention
    assert rig.health() == "retired"


async def test_the_row_carries_labels_nodes_and_requested_nodes(rig: Rig) -> None:
    await rig.poll(nodes=[[1_700_000_010_000, 1]])
    (row,) = rig.pages.rows()
    assert row.labels == LABELS
    assert (row.nodes, row.requested_nodes) == (1, 2)


async def test_a_row_follows_a_change_of_labels_and_of_state(rig: Rig) -> None:
    await rig.poll()
    assert rig.pages.rows()[0].labels == LABELS
    rig.path.book.watch(SEED_ID, {"team": "vision"})
    assert rig.pages.rows()[0].labels == {"team": "vision"}
    await rig.poll(name="renamed")
    assert rig.pages.rows()[0].name == "renamed"


async def test_the_page_of_a_failed_job_tells_its_story_from_the_journal(rig: Rig) -> None:
    await failed_story(rig)
    page = await rig.pages.job(SEED_ID)
    assert page is not None
    assert [p.phase for p in page.phases] == ["Pending", "Running", "Failed"]
    assert page.phases[-1].end is None
    assert [n for _, n in page.nodes] == [2, 1]
    assert page.snapshot is not None and page.snapshot.running_records[0].end_reason == (
        "exit with 137"
    )
    assert [(r.level, r.message) for r in page.reasons] == [
        ("Error", "exit 137: OOMKilled"),
        ("Warning", "memory above 95%"),
    ]
    assert {r.about for r in page.reasons} == {"phase Running -> Failed"}
    kinds = [c.kind for c in page.history]
    assert kinds[0] == "discovered" and "phase_changed" in kinds and "nodes_changed" in kinds
    assert "Running -> Failed" in next(c.text for c in page.history if "Failed" in c.text)
    assert page.journal_note == ""


async def test_the_page_shows_the_latest_usage_per_task(rig: Rig) -> None:
    await rig.poll()
    usage = {"worker-0": {"gpuUtil": 0.5}, "worker-1": {"gpuUtil": 0.7}}
    await rig.path.book.apply_usage(SEED_ID, usage, hang_window=None)
    page = await rig.pages.job(SEED_ID)
    assert page is not None and page.usage == usage


async def test_an_unwatched_job_has_no_page(rig: Rig) -> None:
    assert await rig.pages.job("not-watched") is None


async def test_the_job_metrics_are_its_own_lines(rig: Rig) -> None:
    await rig.poll()
    text = rig.pages.job_metrics(SEED_ID).decode()
    assert 'modelarts_training_job_phase{job_id="' + SEED_ID in text
    assert rig.pages.job_metrics("not-watched") == b""


async def test_a_journal_that_cannot_be_read_leaves_the_current_state_shown(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    await failed_story(rig)

    def broken(*args: object, **kw: object) -> list[dict[str, Any]]:
        raise StateError("state database x: cannot read the journal: disk I/O error")

    monkeypatch.setattr(rig.path.store, "journal", broken)
    page = await rig.pages.job(SEED_ID)
    assert page is not None
    assert "could not be read" in page.journal_note and "disk I/O error" in page.journal_note
    assert [p.phase for p in page.phases] == ["Failed"], "the current phase, from phase_since"
    assert [(r.level, r.message) for r in page.reasons] == [("Error", "exit 137: OOMKilled")]


def test_damaged_journal_entries_are_left_out_and_counted() -> None:
    view = SimpleNamespace(
        job_id="j", labels={}, interval=30.0, state=None, target="", usage={},
        health=SimpleNamespace(up=True, polled=True, last_success=None, last_error=None),
    )  # fmt: skip
    good = {
        "type": "modelarts.job.discovered",
        "time": "2026-11-28T12:00:00Z",
        "data": {"job_id": "j", "job_name": "n", "phase": "Pending", "secondary_phase": "Q"},
    }
    damaged: list[Any] = [{"type": "x"}, {"time": "yesterday", "data": {}}, "not an object"]
    page = build_page(view, [good, *damaged], 1_800_000_000.0, POLL)  # type: ignore[arg-type]
    assert [p.phase for p in page.phases] == ["Pending"]
    assert page.journal_note == "3 journal events could not be read"
    assert JOURNAL_LIMIT >= 100


A, B = "job-a", "job-a2"


def two_jobs() -> SeriesStore:
    series = SeriesStore(project_id="p")
    snap = JobSnapshot(A, name="alpha", phase="Running", nodes=2, requested_nodes=2)
    series.update(JobState(A, snapshot=snap), {"team": "nlp"})
    # A look-alike: its id starts with A's, and its name and label hold A's label text.
    tricky = f'x{{job_id="{A}",'
    other = JobSnapshot(B, name=tricky, phase="Failed", nodes=1, requested_nodes=1)
    series.update(JobState(B, snapshot=other), {"team": tricky})
    series.set_health(A, True, 1_800_000_000.0)
    series.set_health(B, False, None)
    return series


def test_only_the_jobs_own_lines_are_kept_each_under_its_familys_header() -> None:
    pages = PageData(None, None, two_jobs(), lambda name: None, lambda: 0.0)  # type: ignore[arg-type]
    text = pages.job_metrics(A).decode()
    families = list(text_string_to_metric_families(text))
    samples = [s for f in families for s in f.samples]
    assert samples, "the job has series"
    assert {s.labels["job_id"] for s in samples} == {A}
    names = {f.name for f in families}
    assert {"modelarts_training_job_phase", "modelarts_monitor_up"} <= names
    for line in text.splitlines():
        assert line.startswith("#") or f'job_id="{A}",' in line


def test_a_job_without_series_has_no_lines() -> None:
    pages = PageData(None, None, two_jobs(), lambda name: None, lambda: 0.0)  # type: ignore[arg-type]
    assert pages.job_metrics("job-zzz") == b""
