"""``modelarts-monitor status``: the rows and table from a table of cases, then the command on a
real state database (read-only, exit codes, one line per job, each sink's dead letters)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.cli.main import main
from monitor.cli.status import COLUMNS, render_dead_letters, render_table, status_rows
from monitor.core.events import new_event, to_cloudevent
from monitor.core.job import JobSnapshot
from monitor.core.state import JobState
from monitor.store.database import DeadLetter, SinkDeadLetters, Store
from tests.unit.cli.conftest import targets_config

pytestmark = pytest.mark.usefixtures("isolated_cli")

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
NOW_TEXT = "2027-01-15T08:00:00Z"


def snap(job_id: str, **kw: Any) -> JobSnapshot:
    fields: dict[str, Any] = {
        "name": "bert",
        "phase": "Running",
        "secondary_phase": "Running",
        "nodes": 3,
        "requested_nodes": 4,
    }
    fields.update(kw)
    return JobSnapshot(job_id=job_id, **fields)


def state(job_id: str, **kw: Any) -> JobState:
    snapshot = kw.pop("snapshot", None) or snap(job_id)
    return JobState(job_id=job_id, snapshot=snapshot, **{"phase_since": NOW, **kw})


CASES: list[tuple[str, list[str], dict[str, JobState], dict[str, float], list[tuple[str, ...]]]] = [
    (
        "never polled",
        ["job-a"],
        {},
        {},
        [("?", "job-a", "never polled", "-", "-", "-", "-", "-")],
    ),
    (
        "running, nodes of requested, restarts summed, RFC 3339 UTC times",
        ["job-a"],
        {"job-a": state("job-a", restarts={"proc_restart": 2, "pod_reschedule": 1, "other": 0})},
        {"job-a": NOW + 30.5},
        [
            (
                "bert",
                "job-a",
                "Running",
                "Running",
                "3/4",
                "3",
                NOW_TEXT,
                "2027-01-15T08:00:30.500Z",
            )
        ],
    ),
    (
        "gone",
        ["job-a"],
        {"job-a": state("job-a", gone=True)},
        {"job-a": NOW},
        [("bert", "job-a", "Running (gone)", "Running", "3/4", "0", NOW_TEXT, NOW_TEXT)],
    ),
    (
        "unknown nodes and phases, no name, never succeeded since restart",
        ["job-a", "job-b"],
        {
            "job-a": state(
                "job-a",
                snapshot=snap("job-a", name="", phase="", secondary_phase="", nodes=None),
            ),
            "job-b": state("job-b", snapshot=snap("job-b", nodes=2, requested_nodes=None)),
        },
        {},
        [
            ("?", "job-a", "-", "-", "-/4", "0", NOW_TEXT, "-"),
            ("bert", "job-b", "Running", "Running", "2", "0", NOW_TEXT, "-"),
        ],
    ),
    (
        "jobs no longer configured come last, sorted, marked",
        ["job-b"],
        {
            "job-z": state("job-z", snapshot=snap("job-z", name="old")),
            "job-b": state("job-b"),
            "job-c": state("job-c", snapshot=snap("job-c", name="")),
        },
        {},
        [
            ("bert", "job-b", "Running", "Running", "3/4", "0", NOW_TEXT, "-"),
            ("? (not configured)", "job-c", "Running", "Running", "3/4", "0", NOW_TEXT, "-"),
            ("old (not configured)", "job-z", "Running", "Running", "3/4", "0", NOW_TEXT, "-"),
        ],
    ),
    (
        "configured order is kept",
        ["job-b", "job-a"],
        {"job-a": state("job-a", snapshot=snap("job-a", name="a"))},
        {},
        [
            ("?", "job-b", "never polled", "-", "-", "-", "-", "-"),
            ("a", "job-a", "Running", "Running", "3/4", "0", NOW_TEXT, "-"),
        ],
    ),
]


@pytest.mark.parametrize(
    ("job_ids", "states", "last_success", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_status_rows_describe_each_job_as_the_database_knows_it(
    job_ids: Sequence[str],
    states: Mapping[str, JobState],
    last_success: Mapping[str, float],
    expected: list[tuple[str, ...]],
) -> None:
    rows = status_rows(job_ids, states, last_success)
    assert rows == expected
    assert all(len(row) == len(COLUMNS) for row in rows)


def test_a_job_gone_on_its_first_poll_is_shown_as_gone_not_never_polled() -> None:
    (row,) = status_rows(["job-a"], {"job-a": JobState(job_id="job-a", gone=True)}, {})
    assert "never polled" not in row[2]
    assert "(gone)" in row[2]


def test_render_table_aligns_columns_under_a_header() -> None:
    rows = [
        ("bert", "job-a", "Running", "Running", "3/4", "3", NOW_TEXT, NOW_TEXT),
        ("a-much-longer-name", "job-b", "never polled", "-", "-", "-", "-", "-"),
    ]
    lines = render_table(rows).splitlines()
    assert render_table(rows).endswith("\n")
    assert lines[0].split() == [
        "JOB",
        "ID",
        "PHASE",
        "SECONDARY",
        "NODES",
        "RESTARTS",
        "PHASE",
        "SINCE",
        "LAST",
        "SUCCESSFUL",
        "POLL",
    ]
    assert len(lines) == 3
    # Every column starts at the same offset on every line.
    for cell_index, header in ((1, "ID"), (2, "PHASE"), (6, "PHASE SINCE")):
        offset = lines[0].index(header)
        assert lines[1][offset:].startswith(rows[0][cell_index])
        assert lines[2][offset:].startswith(rows[1][cell_index])
    assert all(line == line.rstrip() for line in lines)


def test_render_table_of_no_rows_is_just_the_header() -> None:
    assert render_table([]).splitlines() == ["  ".join(COLUMNS)]


# -- dead letters -----------------------------------------------------------------------------


def test_no_dead_letters_print_nothing_after_the_table() -> None:
    assert render_dead_letters([]) == ""


def test_dead_letters_print_a_line_per_sink_with_its_count_then_its_newest_ones() -> None:
    text = render_dead_letters(
        [
            SinkDeadLetters(
                "file:/var/log/events.jsonl",
                7,
                (
                    DeadLetter("id-7", "cannot serialize for this sink: UnicodeEncodeError", NOW),
                    DeadLetter("id-6", "HTTP 400:\n bad", NOW - 60),
                ),
            ),
            SinkDeadLetters("webhook", 1, (DeadLetter("id-1", "HTTP 422: \x1b[2Jgone", NOW),)),
        ]
    )
    assert text.splitlines() == [
        "",
        "dead letters of sink file:/var/log/events.jsonl: 7, newest first",
        f"  {NOW_TEXT}  id-7  cannot serialize for this sink: UnicodeEncodeError",
        "  2027-01-15T07:59:00Z  id-6  HTTP 400: bad",
        "",
        "dead letters of sink webhook: 1, newest first",
        # A receiver's reply cannot move the terminal's cursor or clear its screen.
        f"  {NOW_TEXT}  id-1  HTTP 422: ?[2Jgone",
    ]


# -- the command ------------------------------------------------------------------------------


def write_config(tmp_path: Path, jobs: list[str]) -> Path:
    doc = {
        # Never contacted: status reads the state database only.
        "api": {"endpoint": "http://127.0.0.1:9", "project_id": "proj-status"},
        "auth": {"type": "none"},
        "jobs": [{"id": j} for j in jobs],
        "state": {"path": str(tmp_path / "state" / "state.db")},
        "log": {"level": "warning", "format": "json"},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def event_for(job_id: str) -> dict[str, Any]:
    event = new_event(
        "discovered",
        job_id=job_id,
        job_name="bert",
        key=(),
        data={"phase": "Running", "secondary_phase": "Running"},
        time=NOW,
    )
    return to_cloudevent(event, "proj-status")


def test_status_prints_a_header_and_one_line_per_job_from_the_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, ["job-a", "job-b"])
    db_path = tmp_path / "state" / "state.db"
    store = Store(db_path)
    try:
        store.commit(
            state("job-a", restarts={"proc_restart": 1, "job_reschedule": 1}),
            [event_for("job-a")],
            NOW,
        )
        store.commit(state("job-old", snapshot=snap("job-old", name="old")), [], NOW)
        store.record_success({"job-a": NOW + 30, "job-old": NOW})
    finally:
        store.close()
    before = db_path.stat()

    rc = main(["status", "--config", str(config)])

    out, err = capsys.readouterr()
    assert rc == 0, err
    assert err == ""
    lines = out.splitlines()
    assert len(lines) == 4
    assert lines[0].split()[:3] == ["JOB", "ID", "PHASE"]
    assert lines[1].split() == [
        "bert",
        "job-a",
        "Running",
        "Running",
        "3/4",
        "2",
        NOW_TEXT,
        "2027-01-15T08:00:30Z",
    ]
    assert lines[2].split() == ["?", "job-b", "never", "polled", "-", "-", "-", "-", "-"]
    assert lines[3].split()[:4] == ["old", "(not", "configured)", "job-old"]
    assert lines[3].split()[-1] == NOW_TEXT
    after = db_path.stat()
    assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)


def test_status_without_a_state_database_exits_2_saying_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, ["job-a"])

    rc = main(["status", "--config", str(config)])

    out, err = capsys.readouterr()
    assert rc == 2
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith("state error: no state database at ")
    assert str(tmp_path / "state" / "state.db") in line
    assert not (tmp_path / "state" / "state.db").exists()


def test_status_with_a_missing_config_exits_2_with_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.yaml"
    rc = main(["status", "--config", str(missing)])
    assert rc == 2
    assert capsys.readouterr().err.splitlines() == [
        f"config error: {missing}: cannot read config: No such file or directory"
    ]


def test_status_lists_each_sinks_dead_letters_after_the_job_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, ["job-a"])
    store = Store(tmp_path / "state" / "state.db")
    docs = [event_for(job) for job in ("job-a", "job-b", "job-c", "job-d")]
    try:
        store.commit(state("job-a"), docs, NOW)
        last = store.pending("webhook")[-1][0]
        refusals = [(d["id"], f"HTTP 400: no {d['subject']}") for d in docs]
        store.ack("webhook", last, ["webhook"], refusals, NOW)
    finally:
        store.close()

    rc = main(["status", "--config", str(config)])

    out, err = capsys.readouterr()
    assert rc == 0, err
    table, _, rest = out.partition("\n\n")
    assert [line.split()[1] for line in table.splitlines()[1:]] == ["job-a"]
    assert rest.splitlines() == [
        "dead letters of sink webhook: 4, newest first",
        f"  {NOW_TEXT}  {docs[3]['id']}  HTTP 400: no job-d",
        f"  {NOW_TEXT}  {docs[2]['id']}  HTTP 400: no job-c",
        f"  {NOW_TEXT}  {docs[1]['id']}  HTTP 400: no job-b",
    ]  # the newest three; the rest are in the database


def test_rows_of_jobs_of_several_targets_start_with_the_target_and_one_target_has_no_column() -> (
    None
):
    states = {"job-a": state("job-a"), "job-b": state("job-b")}
    two = status_rows(["job-a", "job-b"], states, {}, targets={"job-a": "east", "job-b": "west"})
    one = status_rows(["job-a", "job-b"], states, {}, targets={"job-a": "east", "job-b": "east"})

    assert [row[:2] for row in two] == [("east", "bert"), ("west", "bert")]
    assert one == status_rows(["job-a", "job-b"], states, {})
    header = render_table(two).splitlines()[0].split()
    assert header[:3] == ["TARGET", "JOB", "ID"]
    assert render_table(one).splitlines()[0].split()[:2] == ["JOB", "ID"]


def test_status_shows_each_jobs_target_when_the_database_holds_several(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The target comes from the config for configured jobs, else from the database."""
    config = targets_config(
        tmp_path / "config.yaml", ("east", "west"), tmp_path / "state" / "state.db"
    )
    store = Store(tmp_path / "state" / "state.db")
    try:
        store.commit(state("job-east"), [], NOW, "east")
        store.commit(state("job-gone", snapshot=snap("job-gone", name="old")), [], NOW, "north")
    finally:
        store.close()

    rc = main(["status", "--config", str(config)])

    out, err = capsys.readouterr()
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["TARGET", "JOB", "ID"]
    assert lines[1].split()[:3] == ["east", "bert", "job-east"]
    assert lines[2].split()[:3] == ["west", "?", "job-west"]
    assert lines[3].split()[:4] == ["north", "old", "(not", "configured)"]
