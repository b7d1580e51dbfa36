"""pages.py: the overview at ``/`` — its filters, pages, health and escaping, read as a DOM."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from monitor.web.pages import (
    PAGE_SIZE,
    REFRESH_SECONDS,
    JobRow,
    OverviewQuery,
    landing_page,
    parse_query,
)
from tests.unit.web.conftest import HOSTILE, dom

NOW = 1_800_000_000.0


def row(job_id: str, name: str = "", phase: str = "Running", **kw: object) -> JobRow:
    fields: dict[str, object] = {
        "secondary_phase": phase,
        "health": "up",
        "last_success": NOW,
        "restarts": 0,
    }
    fields.update(kw)
    return JobRow(job_id, name or job_id, phase, **fields)  # type: ignore[arg-type]


ROWS = [
    row("j-bert", "bert", labels={"team": "nlp"}, restarts=2, nodes=2, requested_nodes=2),
    row("j-resnet", "resnet", "Failed", labels={"team": "vision"}, last_reason="Error: OOM"),
    row("j-llama", "llama", labels={"team": "nlp", "tier": "gold"}, nodes=3, requested_nodes=4),
    row("j-sweep", "sweep", "Terminated", labels={"team": "data"}, health="gone"),
]


def shown(page: str) -> list[str]:
    """The job ids of the overview's rows, in order."""
    return [tr.attrs["data-job-id"] for tr in dom(page).by_id("jobs").all("tr") if tr.all("td")]


def query(text: str) -> OverviewQuery:
    return parse_query(parse_qsl(text))


def test_every_job_is_listed_sorted_by_name_with_a_link_to_its_page() -> None:
    page = dom(landing_page(ROWS))
    table = page.by_id("jobs")
    assert [r[0].split("j-")[0] for r in table.rows()] == ["bert", "llama", "resnet", "sweep"]
    links = [a.attrs["href"] for a in table.all("a") if a.attrs["href"].startswith("/jobs/")]
    assert links == ["/jobs/j-bert", "/jobs/j-llama", "/jobs/j-resnet", "/jobs/j-sweep"]


def test_a_label_filter_shows_exactly_the_jobs_with_that_label_value() -> None:
    assert shown(landing_page(ROWS, query("team=nlp"))) == ["j-bert", "j-llama"]
    assert shown(landing_page(ROWS, query("team=nlp&team=data"))) == [
        "j-bert",
        "j-llama",
        "j-sweep",
    ]


def test_phase_and_label_filters_must_all_hold() -> None:
    assert shown(landing_page(ROWS, query("phase=Running&team=nlp&tier=gold"))) == ["j-llama"]
    assert shown(landing_page(ROWS, query("phase=Failed"))) == ["j-resnet"]
    assert shown(landing_page(ROWS, query("phase=Failed&team=nlp"))) == []


def test_a_parameter_no_job_has_as_a_label_is_ignored_not_an_error() -> None:
    assert shown(landing_page(ROWS, query("utm_source=mail&team=vision"))) == ["j-resnet"]


def test_filter_values_are_bounded_before_use() -> None:
    huge = "x" * 100_000
    parsed = query(f"team={huge}&phase={huge}&page={'9' * 50}")
    assert all(len(v) <= 129 for vs in parsed.labels.values() for v in vs)
    assert all(len(p) <= 129 for p in parsed.phases)
    assert parsed.page == 1, "an absurd page number is page 1"
    assert shown(landing_page(ROWS, parsed)) == []
    many = parse_query([(f"k{i}", "v") for i in range(10_000)])
    assert len(many.labels) <= 32


def test_health_shows_up_down_gone_and_why_a_job_is_down() -> None:
    rows = [
        row("a", health="up"),
        row("b", health="down", error="timeout: read timed out"),
        row("c", health="gone"),
        row("d", health="retired"),
    ]
    cells = dom(landing_page(rows)).all("td", class_="health")
    assert [c.text for c in cells] == ["up", "down", "gone", "retired"]
    assert cells[1].all("span")[0].attrs["title"] == "timeout: read timed out"


def test_phase_links_count_the_jobs_and_keep_the_label_filters() -> None:
    page = dom(landing_page(ROWS, query("team=nlp")))
    links = {a.text: a.attrs["href"] for a in page.by_id("phase-filters").all("a")}
    assert links["Running (2)"] == "/?phase=Running&team=nlp"
    assert "Failed (1)" not in links, "counts are of the jobs the label filters select"
    removers = page.by_id("label-filters").all("a")
    assert [a.attrs["href"] for a in removers] == ["/"]


def test_the_overview_reloads_itself_without_script() -> None:
    page = dom(landing_page(ROWS))
    refresh = page.all("meta", **{"http-equiv": "refresh"})
    assert [m.attrs["content"] for m in refresh] == [str(REFRESH_SECONDS)]
    assert not page.all("script")


def test_nodes_show_against_the_requested_count() -> None:
    rows = {r[0]: r for r in dom(landing_page(ROWS)).by_id("jobs").rows()}
    llama = next(r for k, r in rows.items() if k.startswith("llama"))
    assert "3 / 4" in llama


def test_ten_thousand_jobs_are_shown_a_page_at_a_time_and_the_links_keep_the_filters() -> None:
    rows = [row(f"job-{i:05d}", labels={"team": "a" if i % 2 else "b"}) for i in range(10_000)]
    first = landing_page(rows, query("team=a"))
    assert len(shown(first)) == PAGE_SIZE
    pager = dom(first).by_id("pager")
    (nxt,) = [a for a in pager.all("a") if a.attrs.get("rel") == "next"]
    assert dict(parse_qsl(urlsplit(nxt.attrs["href"]).query)) == {"team": "a", "page": "2"}
    last = landing_page(rows, query("team=a&page=25"))
    assert len(shown(last)) == 5_000 - 24 * PAGE_SIZE
    assert shown(last)[-1] == "job-09999"
    assert "page 25 of 25" in dom(last).by_id("summary").text
    beyond = landing_page(rows, query("team=a&page=99"))
    assert shown(beyond) == shown(last), "a page past the end shows the last one"


def test_a_hostile_name_reason_and_label_show_as_text() -> None:
    rows = [
        row(
            "j<1>",
            HOSTILE,
            HOSTILE,
            labels={"team": HOSTILE},
            last_reason=HOSTILE,
            health="down",
            error=HOSTILE,
        )
    ]
    html = landing_page(rows, parse_query([("team", HOSTILE)]))
    page = dom(html)
    assert not page.all("script") and not page.all("img")
    (tr,) = page.by_id("jobs").all("tr", **{"data-job-id": "j<1>"})
    assert HOSTILE in tr.text
    assert HOSTILE in page.by_id("label-filters").text
    assert page.all("title")[0].text == "modelarts-monitor"
    assert "<script>" not in html
