"""bulk.py with the job book and the poller: rounds of job-search pages over a mock transport
that answers searches and details from one set of documents, a real store and sinks."""

from __future__ import annotations

import contextlib
import copy
import functools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from monitor.config.settings import ApiSettings, AuthSettings, PollSettings
from monitor.config.targets import Target
from monitor.daemon import bulk
from monitor.daemon.bulk import LIVE_PHASES, BulkPolling, BulkRounds
from tests.conftest import SEED_ID, job_doc, wait_for
from tests.unit.daemon.conftest import LABELS, JobPath, job_path, sample

OTHER_ID = "7c0d2f7e-0000-4000-8000-000000000002"
RECORD = {"start_at": 1_700_000_010, "start_type": "init_or_rescheduled"}


def many(n: int) -> list[str]:
    return [f"7c0d2f7e-0000-4000-8000-{i:012d}" for i in range(100, 100 + n)]


@dataclass
class Account:
    """The fake API: job documents by id, served by the detail GET and the search POST (the
    search filters by workspace and ``phase in``, pages by page index like ModelArts)."""

    docs: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    """None: the job is gone (400 ModelArts.2775)."""
    trim: tuple[str, ...] = ()
    """``status`` fields the search leaves out of its items."""
    failing_pages: dict[int, httpx.Response] = field(default_factory=dict)
    hostile_total: bool = False
    """Answer every search with a full page of strangers and a huge total."""
    requests: list[httpx.Request] = field(default_factory=list)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.method == "POST":
            return self._search(json.loads(request.content))
        doc = self.docs.get(request.url.path.rsplit("/", 1)[-1])
        if doc is None:
            return httpx.Response(400, json={"error_code": "ModelArts.2775", "error_msg": "gone"})
        return httpx.Response(200, json=doc)

    def _search(self, body: dict[str, Any]) -> httpx.Response:
        page, limit = body["offset"], body["limit"]
        if page in self.failing_pages:
            return self.failing_pages[page]
        if self.hostile_total:
            strangers = [job_doc(job_id=f"stranger-{page}-{i}") for i in range(limit)]
            return httpx.Response(200, json={"total": 10**9, "items": strangers})
        (phase_filter,) = body["filters"]
        matched = [
            d
            for _, d in sorted(self.docs.items())
            if d is not None
            and d["metadata"]["workspace_id"] == body["workspace_id"]
            and d["status"]["phase"] in phase_filter["value"]
        ]
        items = copy.deepcopy(matched[page * limit : (page + 1) * limit])
        for item in items:
            for name in self.trim:
                item["status"].pop(name, None)
        return httpx.Response(200, json={"total": len(matched), "items": items})

    def searches(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests if r.method == "POST"]

    def details(self) -> list[str]:
        return [r.url.path.rsplit("/", 1)[-1] for r in self.requests if r.method == "GET"]


@dataclass
class Rig:
    path: JobPath
    account: Account
    bulk: BulkPolling

    async def detail_poll(self, job_id: str, doc: dict[str, Any]) -> None:
        """A detail poll of ``job_id`` answering ``doc`` (the job is then covered)."""
        self.account.docs[job_id] = doc
        await self.path.poller.poll(job_id)

    async def round(self) -> bulk.Round:
        self.account.requests.clear()
        report = await self.bulk.run_once()
        self.path.clock.now += 30
        return report

    async def events(self) -> list[str]:
        """The event types the sink took, once it has taken everything committed."""
        await wait_for(self._drained)
        return self.path.sink.types()

    async def _drained(self) -> bool:
        return await self.path.store.call(self.path.store.outbox_size) == 0

    def sample(self, name: str, **labels: str) -> float | None:
        return sample(
            (self.path.series.render() + self.path.metrics.render()).decode(), name, **labels
        )


@contextlib.asynccontextmanager
async def make_rig(tmp_path: Path, *, max_pages: int = bulk.MAX_PAGES) -> AsyncIterator[Rig]:
    account = Account()
    async with job_path(tmp_path, account.handler, poll=PollSettings(interval=30)) as path:
        path.client.count_requests(functools.partial(path.metrics.count_request, ""))
        polling = BulkPolling(
            search=path.client.search_jobs,
            jobs=path.book.watched,
            view=path.book.view,
            unchanged=path.book.unchanged,
            apply=path.poller.apply,
            detail=path.poller.poll,
            interval=30,
            clock=path.clock,
            max_pages=max_pages,
        )
        yield Rig(path, account, polling)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with make_rig(tmp_path) as r:
        yield r


async def test_a_round_refreshes_a_running_job_from_one_search_page_and_no_detail(rig: Rig) -> None:
    await rig.detail_poll(SEED_ID, job_doc(phase="Pending", secondary_phase="Queuing"))
    rig.account.docs[SEED_ID] = job_doc(phase="Running", records=[RECORD])

    report = await rig.round()

    assert rig.account.details() == []
    assert len(rig.account.searches()) == 1
    assert report.applied == [SEED_ID]
    assert await rig.events() == [
        "discovered",
        "phase_changed",
        "secondary_phase_changed",
        "run_started",
    ]
    assert rig.sample("modelarts_training_job_phase", job_id=SEED_ID, phase="Running") == 1
    assert rig.sample("modelarts_monitor_up", job_id=SEED_ID) == 1
    assert rig.sample("modelarts_monitor_api_requests_total", endpoint="search", result="ok") == 1
    assert rig.sample("modelarts_monitor_api_requests_total", endpoint="detail", result="ok") == 1


async def test_search_items_give_the_same_events_ids_and_series_as_detail_polls(
    tmp_path: Path,
) -> None:
    """The same documents, seen once through detail polls and once through rounds."""
    steps = [
        job_doc(phase="Pending", secondary_phase="Queuing"),
        job_doc(phase="Running", records=[RECORD], nodes=[[1_700_000_010_000, 2]]),
        job_doc(
            phase="Running",
            records=[{**RECORD, "end_at": 1_700_000_020, "end_recover": "proc_restart"}, RECORD],
            nodes=[[1_700_000_010_000, 2], [1_700_000_020_000, 1]],
        ),
        job_doc(
            phase="Failed",
            secondary_phase="Failed",
            records=[{**RECORD, "end_at": 1_700_000_020, "end_recover": "proc_restart"}, RECORD],
            task_statuses=[{"task": "worker-0", "exit_code": 137, "message": "OOMKilled"}],
        ),
    ]
    seen: list[tuple[list[Any], list[str]]] = []
    for mode in ("detail", "bulk"):
        async with make_rig(tmp_path / mode) as r:
            await r.detail_poll(SEED_ID, steps[0])
            for doc in steps[1:]:
                r.account.docs[SEED_ID] = doc
                if mode == "bulk":
                    await r.round()
                else:
                    await r.path.poller.poll(SEED_ID)
                    r.path.clock.now += 30
            await wait_for(lambda r=r: len(r.path.sink.received) >= 10)
            events = [(e["id"], e["type"], e["data"]) for e in r.path.sink.received]
            lines = r.path.series.render().decode().splitlines()
            seen.append((events, [x for x in lines if x.startswith("modelarts_training_job_")]))
    assert seen[0] == seen[1]


async def test_an_unchanged_item_costs_no_parse(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    await rig.detail_poll(SEED_ID, job_doc())
    parsed: list[str] = []
    real = bulk.parse_job

    def counting(raw: object, job_id: str | None = None) -> Any:
        parsed.append(str(job_id))
        return real(raw, job_id)

    monkeypatch.setattr(bulk, "parse_job", counting)
    await rig.round()
    await rig.round()
    await rig.round()
    assert parsed == [SEED_ID]  # the first item's digest differs from the detail body's
    assert rig.sample("modelarts_monitor_up", job_id=SEED_ID) == 1


async def test_an_item_without_running_records_costs_one_detail_poll_and_keeps_the_runs(
    rig: Rig,
) -> None:
    await rig.detail_poll(SEED_ID, job_doc(records=[RECORD]))
    rig.account.trim = ("running_records",)

    report = await rig.round()

    assert report.incomplete == [SEED_ID] and report.applied == []
    assert rig.account.details() == [SEED_ID]
    assert rig.sample("modelarts_training_job_running_records", job_id=SEED_ID) == 1
    assert await rig.events() == ["discovered"]


async def test_an_item_with_empty_lists_is_complete(rig: Rig) -> None:
    await rig.detail_poll(SEED_ID, job_doc(phase="Pending"))
    rig.account.docs[SEED_ID] = job_doc(records=[], task_statuses=[], nodes=[])

    report = await rig.round()

    assert report.applied == [SEED_ID] and rig.account.details() == []
    assert rig.sample("modelarts_training_job_phase", job_id=SEED_ID, phase="Running") == 1


async def test_a_job_that_finished_between_rounds_gets_one_detail_poll_then_leaves_the_round(
    rig: Rig,
) -> None:
    await rig.detail_poll(SEED_ID, job_doc(records=[RECORD]))
    rig.account.docs[SEED_ID] = job_doc(
        phase="Completed",
        secondary_phase="Completed",
        records=[{**RECORD, "end_at": 1_700_000_090}],
    )

    report = await rig.round()

    assert report.missing == [SEED_ID]
    assert rig.account.details() == [SEED_ID]
    assert rig.sample("modelarts_training_job_phase", job_id=SEED_ID, phase="Completed") == 1
    await rig.round()
    assert rig.account.requests == []  # terminal: its own slower timer polls it
    await rig.bulk.poll(SEED_ID)
    assert rig.account.details() == [SEED_ID]


async def test_the_search_asks_for_the_live_phases_and_the_last_seen_ones_per_workspace(
    rig: Rig,
) -> None:
    await rig.detail_poll(SEED_ID, job_doc(phase="Suspended"))
    other = job_doc(job_id=OTHER_ID)
    other["metadata"]["workspace_id"] = "ws-2"
    rig.path.book.watch(OTHER_ID, LABELS)
    await rig.detail_poll(OTHER_ID, other)

    await rig.round()

    bodies = {b["workspace_id"]: b for b in rig.account.searches()}
    assert set(bodies) == {"0", "ws-2"}
    assert bodies["0"]["filters"] == [
        {"key": "phase", "operator": "in", "value": sorted({*LIVE_PHASES, "Suspended"})}
    ]
    assert bodies["ws-2"]["filters"][0]["value"] == sorted(LIVE_PHASES)
    assert all(b["limit"] == 50 and b["offset"] == 0 for b in bodies.values())


async def test_a_failed_page_applies_nothing_and_its_jobs_wait_for_the_next_round(
    rig: Rig,
) -> None:
    ids = many(51)
    for job_id in ids:
        rig.path.book.watch(job_id, LABELS)
        await rig.detail_poll(job_id, job_doc(job_id=job_id, phase="Pending"))
    for job_id in ids:
        rig.account.docs[job_id] = job_doc(job_id=job_id, phase="Running")
    rig.account.failing_pages[1] = httpx.Response(503, json={"error_msg": "busy"})
    last = ids[-1]

    with capture_logs() as logs:
        first = await rig.round()
        second = await rig.round()

    assert first.applied == ids[:50] and first.waiting == [last] and second.waiting == [last]
    assert rig.account.details() == []  # no burst of detail polls at a failing API
    assert rig.sample("modelarts_training_job_phase", job_id=last, phase="Pending") == 1
    assert rig.sample("modelarts_training_job_phase", job_id=ids[0], phase="Running") == 1
    failures = [e for e in logs if e["event"] == "bulk_search_failed"]
    assert len(failures) == 1 and failures[0]["jobs_waiting"] == 1
    assert (
        rig.sample("modelarts_monitor_api_requests_total", endpoint="search", result="server_error")
        == 2
    )

    del rig.account.failing_pages[1]
    with capture_logs() as logs:
        third = await rig.round()
    assert last in third.applied
    assert [e["event"] for e in logs if e["event"].startswith("bulk_search")] == [
        "bulk_search_recovered"
    ]


async def test_an_invalid_search_answer_applies_none_of_its_items(rig: Rig) -> None:
    await rig.detail_poll(SEED_ID, job_doc(phase="Pending"))
    rig.account.docs[SEED_ID] = job_doc(phase="Running")
    rig.account.failing_pages[0] = httpx.Response(
        200, json={"total": 1, "items": {"0": job_doc(phase="Running")}}
    )

    report = await rig.round()

    assert report.applied == [] and report.waiting == [SEED_ID]
    assert rig.sample("modelarts_training_job_phase", job_id=SEED_ID, phase="Pending") == 1


async def test_a_hostile_total_cannot_keep_a_round_paging(tmp_path: Path) -> None:
    async with make_rig(tmp_path, max_pages=3) as r:
        await r.detail_poll(SEED_ID, job_doc())
        r.account.hostile_total = True

        with capture_logs() as logs:
            report = await r.round()

    assert report.pages == 3 and report.truncated == ["0"]
    assert report.missing == [SEED_ID] and r.account.details() == [SEED_ID]
    assert [e["event"] for e in logs if e["event"] == "bulk_search_truncated"] == [
        "bulk_search_truncated"
    ]


async def test_a_covered_jobs_own_timer_skips_while_rounds_keep_it_fresh(rig: Rig) -> None:
    await rig.detail_poll(SEED_ID, job_doc())
    rig.account.requests.clear()

    await rig.bulk.poll(SEED_ID)
    assert rig.account.details() == []

    await rig.round()  # refreshed now
    rig.path.clock.now += 25
    await rig.bulk.poll(SEED_ID)
    assert rig.account.details() == []

    rig.path.clock.now += 10  # two rounds (60 s) without a refresh: the search is failing
    await rig.bulk.poll(SEED_ID)
    assert rig.account.details() == [SEED_ID]


async def test_jobs_the_round_does_not_cover_keep_their_detail_polls(rig: Rig) -> None:
    rig.account.docs[SEED_ID] = job_doc()
    await rig.bulk.poll(SEED_ID)  # never seen: its first answer says where it lives
    assert rig.account.details() == [SEED_ID]

    rig.account.docs[SEED_ID] = None
    await rig.path.poller.poll(SEED_ID)
    rig.account.requests.clear()
    await rig.round()
    assert rig.account.requests == []  # gone: polled at not_found_interval, not searched
    await rig.bulk.poll(SEED_ID)
    assert rig.account.details() == [SEED_ID]


async def test_a_job_polled_faster_than_the_round_keeps_its_own_interval(rig: Rig) -> None:
    await rig.detail_poll(SEED_ID, job_doc())
    rig.path.book.watch(SEED_ID, LABELS, 10)
    rig.account.requests.clear()

    await rig.round()
    assert rig.account.searches() == []
    await rig.bulk.poll(SEED_ID)
    assert rig.account.details() == [SEED_ID]


def target(*, bulk: bool) -> Target:
    return Target(
        "",
        ApiSettings(endpoint="https://modelarts.test", project_id="proj"),
        AuthSettings(type="none"),
        PollSettings(interval=30, bulk=bulk),
    )


async def test_bulk_rounds_run_for_a_target_with_bulk_on_and_stop_when_a_reload_turns_it_off(
    rig: Rig,
) -> None:
    await rig.detail_poll(SEED_ID, job_doc(phase="Pending"))
    rig.account.docs[SEED_ID] = job_doc(phase="Running")
    rig.account.requests.clear()
    rounds = BulkRounds(
        book=rig.path.book,
        poller=rig.path.poller,
        clients={"": rig.path.client},
        clock=rig.path.clock,
    )
    try:
        await rounds.configure([target(bulk=True)])
        await wait_for(lambda: rounds[""].rounds >= 1)  # the first round runs at once
        assert rig.sample("modelarts_training_job_phase", job_id=SEED_ID, phase="Running") == 1
        await rounds.poll(SEED_ID)  # the job's own timer: fresh, so no detail GET
        assert rig.account.details() == [] and len(rig.account.searches()) == 1

        await rounds.configure([target(bulk=False)])
        searches = len(rig.account.searches())
        await rounds.poll(SEED_ID)  # bulk off: the timer polls the detail again
        assert rig.account.details() == [SEED_ID]
        assert len(rig.account.searches()) == searches
    finally:
        await rounds.stop()
