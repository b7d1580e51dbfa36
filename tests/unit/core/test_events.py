"""events.py: deterministic ids and the CloudEvents structured form of DESIGN.md.

The id table drives ``observe()`` through sequences of API answers: per event type, the
look-alike transitions that must get *different* ids, and the replays (the same answer
re-observed, after a restart from the stored form, after a commit whose outbox is re-delivered)
that must get the *same* ones.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from monitor.core.diff import observe
from monitor.core.events import Event, event_id, new_event, numbered_id, rfc3339, to_cloudevent
from monitor.core.job import JobGone, JobSnapshot, Observation
from monitor.core.state import JobState, decode_state, encode_state
from monitor.modelarts.parse import parse_job
from tests.conftest import SEED_ID, job_doc


def test_id_depends_only_on_job_type_and_key() -> None:
    assert event_id("j", "phase_changed", ("A", "B", 0)) == event_id(
        "j", "phase_changed", ("A", "B", 0)
    )
    others = {
        event_id("k", "phase_changed", ("A", "B", 0)),
        event_id("j", "secondary_phase_changed", ("A", "B", 0)),
        event_id("j", "phase_changed", ("A", "B", 1)),
    }
    assert event_id("j", "phase_changed", ("A", "B", 0)) not in others
    assert len(others) == 3


def test_cloudevent_has_the_contract_shape() -> None:
    event = new_event(
        "phase_changed",
        job_id="j1",
        job_name="train",
        key=("Pending", "Running", 0),
        data={"from": "Pending", "to": "Running"},
        time=1_795_867_200.0,
    )
    event = event.__class__(
        **{**{f: getattr(event, f) for f in event.__slots__}, "labels": {"team": "nlp"}}
    )
    doc = to_cloudevent(event, "proj")
    assert doc == {
        "specversion": "1.0",
        "id": event.id,
        "source": "modelarts-monitor/proj",
        "type": "modelarts.job.phase_changed",
        "subject": "j1",
        "time": "2026-11-28T12:00:00Z",
        "datacontenttype": "application/json",
        "data": {
            "job_id": "j1",
            "job_name": "train",
            "from": "Pending",
            "to": "Running",
            "labels": {"team": "nlp"},
        },
    }


def test_rfc3339_keeps_milliseconds_when_present() -> None:
    assert rfc3339(0.25) == "1970-01-01T00:00:00.250Z"


# -- the id table: look-alikes apart, replays together --------------------------------------

NOW = 1_800_000_000.0
RUN0 = {"start_at": 100, "start_type": "init_or_rescheduled"}
RUN0_ENDED = {**RUN0, "end_at": 200, "end_reason": "exit 1", "end_recover": "proc_restart"}
RUN1 = {"start_at": 210, "start_type": "restarted"}
RUN1_ENDED = {**RUN1, "end_at": 300, "end_reason": "exit 1", "end_recover": "proc_restart"}
GONE = JobGone(SEED_ID)


def api(**kw: Any) -> JobSnapshot:
    """What the API answers, one run record in unless the step says otherwise."""
    return parse_job(job_doc(**{"records": [RUN0], **kw}))


def failing(exit_code: int | None, records: list[dict[str, Any]] | None = None) -> JobSnapshot:
    statuses = [{"task": "worker-0", "exit_code": exit_code, "message": "x"}]
    return api(task_statuses=statuses, records=records or [RUN0])


def nodes(count: int, at_ms: int) -> JobSnapshot:
    """The newest node-count point; built directly, as the API can say it (a point corrected
    in place keeps its timestamp), whatever the parser's tie-break for equal timestamps."""
    return replace(api(), nodes=count, nodes_at_ms=at_ms)


ID_TABLE = [
    pytest.param(
        "task_failed",
        [api(), failing(137), api(), failing(137), failing(0), failing(137)],
        True,
        id="task-fails-again-with-the-same-code-after-clearing-to-absent-or-0",
    ),
    pytest.param(
        "task_failed",
        [api(), failing(137), failing(None), failing(137)],
        True,
        id="task-fails-again-with-the-same-code-after-an-exit-code-of-null",
    ),
    pytest.param(
        "task_failed",
        [api(), failing(137), api(records=[RUN0_ENDED, RUN1]), failing(137, [RUN0_ENDED, RUN1])],
        False,
        id="task-fails-again-in-the-next-run",
    ),
    pytest.param(
        "phase_changed",
        [api(), api(phase="Pending"), api(), api(phase="Pending"), api(), api(phase="Pending")],
        True,
        id="running-pending-three-times-in-one-run",
    ),
    pytest.param(
        "secondary_phase_changed",
        [api(), api(secondary_phase="Lost"), api(), api(secondary_phase="Lost")],
        True,
        id="running-lost-twice-in-one-run",
    ),
    pytest.param(
        "nodes_changed",
        [nodes(4, 1000), nodes(3, 2000), nodes(4, 3000), nodes(3, 4000)],
        True,
        id="node-lost-twice-at-new-timestamps",
    ),
    pytest.param(
        "nodes_changed",
        [nodes(4, 2000), nodes(3, 2000), nodes(4, 2000), nodes(3, 2000)],
        True,
        id="node-lost-twice-at-the-same-timestamp",
    ),
    pytest.param(
        "not_found",
        [api(), GONE, api(), GONE],
        True,
        id="gone-back-and-gone-again",
    ),
    pytest.param(
        "run_started",
        [api(records=[]), api(records=[RUN0]), api(records=[RUN0_ENDED, RUN1])],
        False,
        id="each-run-starts-once-by-index",
    ),
    pytest.param(
        "run_ended",
        [
            api(records=[RUN0]),
            api(records=[RUN0_ENDED, RUN1]),
            api(records=[RUN0_ENDED, RUN1_ENDED]),
        ],
        False,
        id="each-run-ends-once-by-index",
    ),
]


def run(steps: list[Observation], restart: bool = False) -> list[list[Event]]:
    """The events of each step, observed in order from one job's state; ``restart``: the state
    goes through its stored form between every two steps, as if the monitor restarted."""
    state: JobState | None = None
    out = []
    for i, step in enumerate(steps):
        state, events = observe(state, step, NOW + 60 * i)
        state = stored(state) if restart else state
        out.append(events)
    return out


def stored(state: JobState) -> JobState:
    """The state as a restarted monitor reads it back from its database."""
    return decode_state(json.loads(json.dumps(encode_state(state))))


def ids_of(type_: str, events: list[Event]) -> list[str]:
    return [e.id for e in events if e.type == type_]


@pytest.mark.parametrize(("type_", "steps", "look_alike"), ID_TABLE)
def test_two_transitions_of_a_kind_never_share_an_id(
    type_: str, steps: list[Observation], look_alike: bool
) -> None:
    events = [e for step in run(steps) for e in step if e.type == type_]
    assert len(events) >= 2
    assert len({e.id for e in events}) == len(events), "a consumer would drop one of these"
    if look_alike:  # the table case is what it says: the API's data cannot tell them apart
        assert len({json.dumps(dict(e.data), sort_keys=True) for e in events}) < len(events)


@pytest.mark.parametrize(("type_", "steps", "look_alike"), ID_TABLE)
def test_a_replayed_transition_keeps_its_id(
    type_: str, steps: list[Observation], look_alike: bool
) -> None:
    seen = run(steps)
    assert run(steps, restart=True) == seen, "a restart between every two polls changes no id"
    state: JobState | None = None
    for i, (step, events) in enumerate(zip(steps, seen, strict=True)):
        # The commit of this poll did not happen: the next poll re-observes from the same state.
        _, again = observe(state, step, NOW + 60 * i + 30)
        assert [e.id for e in again] == [e.id for e in events]
        # The monitor died before the commit and restarted from the stored previous state.
        if state is not None:
            _, restarted = observe(stored(state), step, NOW + 60 * i + 45)
            assert [e.id for e in restarted] == [e.id for e in events]
        state, _ = observe(state, step, NOW + 60 * i)
        # The commit happened, the monitor died before delivery: the outbox re-delivers these
        # documents, and the next poll of the same answer adds none with another id.
        assert [to_cloudevent(e, "p")["id"] for e in events] == [e.id for e in events]
        assert observe(stored(state), step, NOW + 60 * i + 50)[1] == []


FIRST_IDS = {
    "task-fails-again-with-the-same-code-after-clearing-to-absent-or-0": (
        "6261033ffe3fbeb77f7616393641d261"
    ),
    "task-fails-again-with-the-same-code-after-an-exit-code-of-null": (
        "6261033ffe3fbeb77f7616393641d261"
    ),
    "task-fails-again-in-the-next-run": "6261033ffe3fbeb77f7616393641d261",
    "running-pending-three-times-in-one-run": "0e9614249581dc78cdf7643c0c8e81f6",
    "running-lost-twice-in-one-run": "d980dd74e2a1a009b3a2ff0659dd5892",
    "node-lost-twice-at-new-timestamps": "f013e6a439cd6d3e315914a7b2c18a6c",
    "node-lost-twice-at-the-same-timestamp": "f013e6a439cd6d3e315914a7b2c18a6c",
    "gone-back-and-gone-again": "66c3c107fa77167f314284e2140e892c",
    "each-run-starts-once-by-index": "c6c43b6639440fb8a0939533350a2a2d",
    "each-run-ends-once-by-index": "684a4220f7d1a32a1144ca5da870d943",
}
"""The id of each table case's first transition as the monitor gave it before it counted
look-alikes (measured on the previous release's code): consumers hold these ids, so a first
occurrence keeps its id."""


@pytest.mark.parametrize(
    ("type_", "steps", "first_id"),
    [pytest.param(p.values[0], p.values[1], FIRST_IDS[str(p.id)], id=p.id) for p in ID_TABLE],
)
def test_a_first_occurrence_keeps_the_id_earlier_monitors_gave_it(
    type_: str, steps: list[Observation], first_id: str
) -> None:
    assert ids_of(type_, [e for step in run(steps) for e in step])[0] == first_id


# -- the shortcuts of the event path: the same ids and documents, computed once ------------


def test_each_occurrence_of_a_look_alike_gets_the_id_its_number_gives_it() -> None:
    key = ("Running", "Pending", 1)
    seen: dict[str, int] = {}
    ids = []
    for _ in range(3):
        before = dict(seen)
        id_, counts = numbered_id(seen, "j", "phase_changed", key)
        assert seen == before, "the job's committed counts are not changed"
        ids.append(id_)
        seen = counts
    assert ids == [event_id("j", "phase_changed", key, n) for n in (1, 2, 3)]
    assert ids[0] == event_id("j", "phase_changed", key), "a first occurrence keeps its id"
    assert seen == {ids[0]: 3}


def test_converting_with_the_jobs_labels_is_the_document_of_the_labelled_event() -> None:
    event = new_event(
        "run_ended",
        job_id="j1",
        job_name="train",
        key=(0,),
        data={"index": 0, "end_reason": "exit 1"},
        time=1_795_867_200.25,
    )
    labels = {"team": "nlp", "queue": "a"}
    labelled = to_cloudevent(replace(event, labels=labels), "proj")
    given = to_cloudevent(event, "proj", labels)
    assert json.dumps(given) == json.dumps(labelled)
    assert given["data"]["labels"] == labels and given["data"]["labels"] is not labels
    assert to_cloudevent(event, "proj")["data"]["labels"] == {}, "no labels given: the event's"
