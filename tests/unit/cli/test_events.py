"""``modelarts-monitor events``: the journal of a real state database, read-only beside its
writer, as the console sink's lines or as CloudEvents; ``--job`` by id or name, ``--since``,
``--type``, ``--target``; bad arguments are one line and exit 2."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.cli.main import main
from monitor.core.events import new_event, to_cloudevent
from monitor.core.job import JobSnapshot
from monitor.core.state import JobState
from monitor.delivery.sinks import describe
from monitor.store.database import Store
from tests.unit.cli.conftest import targets_config

pytestmark = pytest.mark.usefixtures("isolated_cli")

BERT, BERT_2, RESNET = "job-bert", "job-bert-2", "job-resnet"
HOUR = 3600.0


def cloudevent(
    job_id: str, name: str, kind: str, n: int, age: float, target: str = ""
) -> dict[str, Any]:
    """An event of ``job_id`` observed ``age`` seconds ago (``n`` keeps ids apart)."""
    data: dict[str, Any] = {
        "phase_changed": {"from": "Pending", "to": "Running"},
        "task_failed": {"task": "worker-0", "exit_code": 137, "message": "OOMKilled"},
    }[kind]
    made = new_event(
        kind, job_id=job_id, job_name=name, key=(n,), data=data, time=time.time() - age
    )
    if target:
        made = dataclasses.replace(made, labels={"target": target})
    return to_cloudevent(made, "proj")


def named(job_id: str, name: str) -> JobState:
    return JobState(job_id=job_id, snapshot=JobSnapshot(job_id=job_id, name=name, phase="Failed"))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
def config(tmp_path: Path, db: Path) -> Path:
    doc = {
        # Never contacted: events reads the state database only.
        "api": {"endpoint": "http://127.0.0.1:9", "project_id": "proj"},
        "auth": {"type": "none"},
        "state": {"path": str(db)},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


@pytest.fixture
def journal(db: Path) -> Iterator[dict[str, list[dict[str, Any]]]]:
    """Two jobs' events, delivered to the one sink (gone from the outbox), and the writer left
    open as a running daemon's would be."""
    events = {
        BERT: [
            cloudevent(BERT, "bert", "phase_changed", 1, 2 * HOUR),
            cloudevent(BERT, "bert", "task_failed", 2, 60),
        ],
        RESNET: [cloudevent(RESNET, "resnet", "phase_changed", 3, 30)],
    }
    store = Store(db)
    store.commit(named(BERT, "bert"), events[BERT], time.time())
    store.commit(named(RESNET, "resnet"), events[RESNET], time.time())
    store.ack("log", store.pending("log")[-1][0], ["log"])
    assert store.outbox_size() == 0
    yield events
    store.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], list[str]]:
    rc = main(["events", *argv])
    out, err = capsys.readouterr()
    return rc, out.splitlines(), err.splitlines()


def test_a_jobs_delivered_events_print_as_the_console_sink_prints_them_by_name_or_id(
    config: Path, journal: dict[str, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    wanted = [describe(e) for e in journal[BERT]]
    assert run(capsys, "--config", str(config), "--job", "bert") == (0, wanted, [])
    assert run(capsys, "--config", str(config), "--job", BERT) == (0, wanted, [])


def test_without_filters_every_event_prints_oldest_first(
    config: Path, journal: dict[str, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, _ = run(capsys, "--config", str(config))
    assert (rc, out) == (0, [describe(e) for e in [*journal[BERT], *journal[RESNET]]])


def test_json_prints_each_cloudevent_as_stored_one_per_line(
    config: Path, journal: dict[str, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, _ = run(capsys, "--config", str(config), "--job", "resnet", "--json")
    assert rc == 0
    assert [json.loads(line) for line in out] == journal[RESNET]


def test_since_keeps_only_events_of_that_last_duration(
    config: Path, journal: dict[str, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, _ = run(capsys, "--config", str(config), "--since", "1h")
    assert (rc, out) == (0, [describe(journal[BERT][1]), describe(journal[RESNET][0])])
    rc, out, _ = run(capsys, "--config", str(config), "--since", "1d")
    assert len(out) == 3


def test_type_takes_the_short_or_the_full_type_and_repeats(
    config: Path, journal: dict[str, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    failed = [describe(journal[BERT][1])]
    assert run(capsys, "--config", str(config), "--type", "task_failed")[1] == failed
    assert run(capsys, "--config", str(config), "--type", "modelarts.job.task_failed")[1] == failed
    both = run(capsys, "--config", str(config), "--type", "task_failed", "--type", "phase_changed")
    assert len(both[1]) == 3


def test_a_name_several_jobs_share_shows_all_of_them_and_says_so(
    db: Path, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = (
        cloudevent(BERT, "bert", "phase_changed", 1, 60),
        cloudevent(BERT_2, "bert", "phase_changed", 2, 30),
    )
    store = Store(db)
    store.commit(named(BERT, "bert"), [first], time.time())
    store.commit(named(BERT_2, "bert"), [second], time.time())
    store.close()
    rc, out, err = run(capsys, "--config", str(config), "--job", "bert")
    assert (rc, out) == (0, [describe(first), describe(second)])
    assert err == [
        f"--job: the name 'bert' matches 2 jobs ({BERT}, {BERT_2}); "
        "showing the events of all of them"
    ]


def test_a_job_the_database_does_not_know_is_one_line_and_exit_1(
    config: Path, journal: dict[str, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "--config", str(config), "--job", "nope") == (
        1,
        [],
        ["--job: no job with the id or name 'nope' is known"],
    )


def test_the_events_of_a_job_no_longer_stored_are_still_found_by_id(
    db: Path,
    config: Path,
    journal: dict[str, list[dict[str, Any]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = Store(db)
    store.forget(RESNET)
    store.close()
    rc, out, _ = run(capsys, "--config", str(config), "--job", RESNET)
    assert (rc, out) == (0, [describe(journal[RESNET][0])])


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["--since", "soon"], "config error: --since: 'soon' is not a duration"),
        (["--type", "exploded"], "config error: --type: 'exploded' is not an event type; one of"),
        (["--target", "east"], "config error: --target: 'east': the config has no targets:"),
    ],
)
def test_a_bad_argument_is_one_line_and_exit_2(
    config: Path,
    journal: dict[str, list[dict[str, Any]]],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    line: str,
) -> None:
    rc, out, err = run(capsys, "--config", str(config), *argv)
    assert (rc, out, len(err)) == (2, [], 1)
    assert err[0].startswith(line)


def test_a_missing_database_is_one_line_and_exit_2(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = run(capsys, "--config", str(config))
    assert (rc, out, len(err)) == (2, [], 1)
    assert err[0].startswith("state error: no state database at")


def test_with_targets_each_line_starts_with_its_target_and_target_filters(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = targets_config(tmp_path / "targets.yaml", ("east", "west-2"), db)
    east = cloudevent("job-east", "a", "phase_changed", 1, 60, target="east")
    west = cloudevent("job-west-2", "b", "phase_changed", 2, 30, target="west-2")
    store = Store(db)
    store.commit(named("job-east", "a"), [east], time.time(), "east")
    store.commit(named("job-west-2", "b"), [west], time.time(), "west-2")
    store.close()

    rc, out, _ = run(capsys, "--config", str(config))
    assert (rc, out) == (0, [f"east    {describe(east)}", f"west-2  {describe(west)}"])
    rc, out, _ = run(capsys, "--config", str(config), "--target", "west-2")
    assert (rc, out) == (0, [f"west-2  {describe(west)}"])
    rc, _, err = run(capsys, "--config", str(config), "--target", "north")
    assert (rc, err) == (
        2,
        ["config error: --target: 'north' is not a configured target; one of east, west-2"],
    )
