"""The pages in a real headless browser (Debian's ``chromium``, driven by Playwright): the daemon
plays the demo scenario against the simulator to its end, then the overview filtered by a label
and the failed job's page are asserted on the DOM the browser rendered, under the server's
Content-Security-Policy (a violation would show in the console). Screenshots go to the test's
temp dir."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import monitor
from monitor.simulator import load_scenario
from monitor.web.pages import JobRow, landing_page, parse_query
from tests.harness import DaemonProc, SimulatorProc, daemon_config, free_port
from tests.unit.web.conftest import HOSTILE

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""Root needs ``--no-sandbox``; without the background-networking flags chromium tries to
reach Google's services, which a closed network refuses."""
DEMO = Path(monitor.__file__).parent / "simulator" / "scenarios" / "demo.yaml"
TEAMS = {"bert-pretrain": "nlp", "llama-sft": "nlp", "resnet-finetune": "vision",
         "data-sweep": "data"}  # fmt: skip


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """The daemon after the whole demo scenario: its URL and the job ids by name."""
    tmp = tmp_path_factory.mktemp("demo")
    scenario = load_scenario(DEMO)
    ids = {job.name: job.id for job in scenario.jobs}
    times = sorted({step.at for job in scenario.jobs for step in job.timeline})
    sim = SimulatorProc(DEMO, tmp)
    port = free_port()
    jobs = [{"id": ids[name], "labels": {"team": team}} for name, team in TEAMS.items()]
    daemon = None
    try:
        daemon = DaemonProc(daemon_config(tmp, sim.url, [], port=port, jobs=jobs), port,
                            tmp / "daemon.log")  # fmt: skip
        for t in times:
            sim.set_time(t)
            sim.wait_polled(list(ids.values()))
        yield daemon.url, ids
    finally:
        if daemon:
            assert daemon.stop() == 0, daemon.output()
        sim.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        message = "chromium not installed (apt-get install chromium; .ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=FLAGS, headless=True,
            viewport={"width": 1280, "height": 900},
        )  # fmt: skip
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def errors() -> list[str]:
    """The console errors of the test's tab (a CSP violation is one)."""
    return []


@pytest.fixture
def page(browser: Any, errors: list[str]) -> Iterator[Any]:
    tab = browser.new_page()
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        yield tab
    finally:
        tab.close()


def ids_shown(page: Any) -> list[str]:
    return list(
        page.eval_on_selector_all("#jobs tbody tr", "rows => rows.map(r => r.dataset.jobId)")
    )


def test_the_overview_filtered_by_a_label_shows_exactly_its_jobs(
    demo: tuple[str, dict[str, str]], page: Any, errors: list[str], tmp_path: Path
) -> None:
    url, ids = demo
    page.goto(f"{url}/?team=nlp")
    assert sorted(ids_shown(page)) == sorted([ids["bert-pretrain"], ids["llama-sft"]])
    names = page.eval_on_selector_all(
        "#jobs tbody tr td:first-child a", "a => a.map(x => x.textContent)"
    )
    assert names == ["bert-pretrain", "llama-sft"]
    phases = page.eval_on_selector_all(
        "#jobs tbody tr td:nth-child(2) .badge", "b => b.map(x => x.textContent)"
    )
    assert phases == ["Completed", "Running"]
    assert page.inner_text("#summary").startswith("2 of 4 jobs match")
    page.screenshot(path=str(tmp_path / "overview-team-nlp.png"), full_page=True)

    page.goto(f"{url}/")
    page.click(f"tr[data-job-id='{ids['resnet-finetune']}'] a:has-text('team=vision')")
    assert ids_shown(page) == [ids["resnet-finetune"]]
    assert page.url.endswith("/?team=vision")

    page.goto(f"{url}/?phase=Failed")
    assert ids_shown(page) == [ids["resnet-finetune"]]
    health = page.eval_on_selector_all("#jobs td.health", "c => c.map(x => x.textContent)")
    assert health == ["up"]
    page.goto(f"{url}/?phase=Terminated")
    assert page.inner_text("#jobs td.health") == "gone", "a deleted job is gone, not down"
    assert errors == [], errors


def test_the_failed_jobs_page_shows_its_runs_and_reasons(
    demo: tuple[str, dict[str, str]], page: Any, errors: list[str], tmp_path: Path
) -> None:
    url, ids = demo
    job_id = ids["resnet-finetune"]
    page.goto(f"{url}/")
    page.click("text=resnet-finetune")
    assert page.url == f"{url}/jobs/{job_id}"
    assert page.inner_text("#job-name") == "resnet-finetune"

    runs = page.eval_on_selector_all(
        "#runs tr.run", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    assert len(runs) == 1
    assert runs[0][0] == "#0" and runs[0][4] == "init_or_rescheduled"
    assert runs[0][5:7] == ["exit with 137", "worker-0"]
    assert page.locator("#runs-timeline g.bar").count() == 1

    reasons = page.eval_on_selector_all(
        "#reasons tr.reason", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    messages = {(r[1], r[3]) for r in reasons}
    assert messages == {
        ("Error", "Process exited with code 137: OOMKilled"),
        ("Warning", "Memory usage above 95% on worker-0"),
    }
    assert all(r[0] == "phase Running -> Failed" for r in reasons)

    phases = page.eval_on_selector_all(
        "#phases tr td:first-child", "c => c.map(x => x.textContent)"
    )
    assert phases == ["Creating", "Pending", "Running", "Failed"]
    tasks = page.inner_text("#tasks")
    assert "137" in tasks and "OOMKilled" in tasks
    page.screenshot(path=str(tmp_path / "job-page.png"), full_page=True)
    assert (tmp_path / "job-page.png").stat().st_size > 10_000

    page.click("#metrics-link")
    text = page.inner_text("body")
    assert f'job_id="{job_id}"' in text
    assert ids["bert-pretrain"] not in text, "only this job's lines"
    assert errors == [], errors


def test_the_pages_carry_their_security_policy(demo: tuple[str, dict[str, str]]) -> None:
    url, ids = demo
    for path in ("/?team=nlp", f"/jobs/{ids['resnet-finetune']}"):
        r = httpx.get(url + path, timeout=5)
        assert r.headers["content-security-policy"].startswith("default-src 'none'")
        assert r.headers["x-content-type-options"] == "nosniff"


def test_hostile_names_and_reasons_render_as_text_in_the_browser(page: Any) -> None:
    """What the browser's own parser makes of a page whose job name, labels and reason
    would run script if anything were left unescaped."""
    row = JobRow("j-1", HOSTILE, "Failed", HOSTILE, "down", None, 0, last_reason=HOSTILE,
                 labels={"team": HOSTILE}, error=HOSTILE)  # fmt: skip
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.set_content(landing_page([row], parse_query([("team", HOSTILE)])))
    assert page.eval_on_selector_all("script, img", "els => els.length") == 0
    cells = page.eval_on_selector_all("#jobs tbody td", "c => c.map(x => x.textContent)")
    assert cells[0].startswith(HOSTILE) and cells[-1] == HOSTILE
    assert page.title() == "modelarts-monitor"
    assert dialogs == []
