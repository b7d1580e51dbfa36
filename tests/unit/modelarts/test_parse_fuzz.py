"""Whatever the API sends, parse either works or raises ``InvalidResponse``, and what it returns
is bounded: every string encodes as UTF-8, label-bound strings are one line without control
characters and within their length, free text within its length, every number within its
field's bound. What follows the edge (the diff, the stored state, the events as the file sink
writes them, the metrics) then takes the snapshot without an error."""

from __future__ import annotations

import dataclasses
import json
import math
import unicodedata
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.core.diff import observe
from monitor.core.events import to_cloudevent
from monitor.core.job import (
    ACCELERATORS_PER_NODE,
    DURATION_MS,
    EXIT_CODE,
    NODE_COUNT,
    RETRY_LIMIT,
    TIME_MS,
    TIME_S,
    Bound,
    JobSnapshot,
)
from monitor.core.state import encode_state
from monitor.core.text import clip
from monitor.errors import InvalidResponse
from monitor.exposition.series import render_job
from monitor.modelarts.parse import parse_job, parse_job_events, parse_task_metrics
from tests.conftest import SEED_ID, job_doc

ANY_CHAR = st.characters(codec=None, exclude_categories=())  # surrogates and controls too
HOSTILE_VALUES = [
    10**400,
    -(10**400),
    2**40,
    -(2**31) - 1,
    2**31,
    -1,
    32_503_680_000_000,  # 3000-01-01 in ms
    32_503_680_000,  # ... in s
    1e308,
    -1e308,
    float("nan"),
    float("inf"),
    "\ud800",
    "\udfff",
    "a\x00b\x1b[2J\x7f\x85\u2028",
    "line\nbreak\ttab\r",
    "\ud800" * 400,
    "x" * 400,
]
HOSTILE = st.sampled_from(HOSTILE_VALUES)
LONG_TEXT = st.builds(lambda c, n: c * n, ANY_CHAR, st.integers(min_value=60, max_value=400))
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(alphabet=ANY_CHAR, max_size=20)
    | LONG_TEXT
    | HOSTILE,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)

BASE = job_doc(
    records=[
        {
            "start_at": 100,
            "end_at": 200,
            "end_recover": "proc_restart",
            "end_reason": "x",
            "recover_records": [
                {
                    "recover": "proc_restart",
                    "recover_result": "success",
                    "fault_scenario": "chip",
                    "reason": "ecc",
                    "related_task": "worker-0",
                    "recover_start_at": 150,
                    "recover_end_at": 160,
                }
            ],
        },
        {"start_at": 210, "xpu_start_at": 215},
    ],
    task_statuses=[{"task": "worker-0", "exit_code": 137, "message": "oom"}],
)
BASE["metadata"]["annotations"] = {"fault-tolerance/job-retry-num": "3", "job_template": "x"}
BASE["spec"]["resource"].update(
    pool_name="team-pool",
    flavor_name="GPU: 8*V100",
    main_container_allocated_resources={"accelerator_type": "ascend-snt9b", "accelerator_num": 8.0},
)  # both kinds of pool's fields: a mutation that drops one side reaches the other's parse
BASE["spec"]["resource"]["flavor_detail"]["flavor_info"] = {
    "gpu": {"unit_num": 8},
    "npu": {"unit_num": "0"},
}

# The promise, field by field: what each string of a snapshot may be, and each number's bound.
LABEL_BOUND = {
    "JobSnapshot.name": 64,
    **dict.fromkeys(
        (
            "JobSnapshot.job_id",
            "JobSnapshot.kind",
            "JobSnapshot.workspace_id",
            "JobSnapshot.user_name",
            "JobSnapshot.engine_name",
            "JobSnapshot.engine_version",
            "JobSnapshot.flavor_id",
            "JobSnapshot.flavor_type",
            "JobSnapshot.pool_id",
            "JobSnapshot.pool_name",
            "JobSnapshot.flavor_name",
            "JobSnapshot.accelerator_type",
            "JobSnapshot.phase",
            "JobSnapshot.secondary_phase",
            "JobSnapshot.tasks",
            "TaskStatus.task",
            "RunningRecord.start_type",
            "RunningRecord.end_related_task",
            "RunningRecord.end_recover",
            "RunningRecord.end_recover_before_downgrade",
            "RecoverRecord.recover",
            "RecoverRecord.recover_result",
            "RecoverRecord.related_task",
        ),
        128,
    ),
}
FREE_TEXT = dict.fromkeys(
    (
        "TaskStatus.message",
        "RunningRecord.end_reason",
        "RecoverRecord.fault_scenario",
        "RecoverRecord.reason",
    ),
    300,
)
NUMBER_BOUND: dict[str, Bound] = {
    "JobSnapshot.create_time_ms": TIME_MS,
    "JobSnapshot.requested_nodes": NODE_COUNT,
    "JobSnapshot.duration_ms": DURATION_MS,
    "JobSnapshot.start_time_ms": TIME_MS,
    "JobSnapshot.nodes": NODE_COUNT,
    "JobSnapshot.nodes_at_ms": TIME_MS,
    "JobSnapshot.retry_limit": RETRY_LIMIT,
    "JobSnapshot.accelerators": Bound(
        1, ACCELERATORS_PER_NODE.high * NODE_COUNT.high, "per-node cards x requested nodes"
    ),
    "RunningRecord.xpu_start_at": TIME_S,
    "TaskStatus.exit_code": EXIT_CODE,
    "RunningRecord.start_at": TIME_S,
    "RunningRecord.end_at": TIME_S,
    "RecoverRecord.recover_start_at": TIME_S,
    "RecoverRecord.recover_end_at": TIME_S,
}
UNSAFE = {"Cc", "Cs", "Zl", "Zp"}


def leaves(obj: Any) -> Iterator[tuple[str, object]]:
    """Every scalar of a snapshot, named ``Class.field`` (items of a tuple of strings by the
    tuple's name)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        name = f"{type(obj).__name__}.{f.name}"
        if isinstance(value, tuple):
            for item in value:
                yield from leaves(item) if dataclasses.is_dataclass(item) else [(name, item)]
        else:
            yield name, value


def assert_bounded(snap: JobSnapshot) -> None:
    for name, value in leaves(snap):
        if isinstance(value, str):
            value.encode("utf-8")  # strict, as the sinks and the pages encode
            if name in LABEL_BOUND:
                assert len(value) <= LABEL_BOUND[name], (name, len(value))
                assert not {unicodedata.category(c) for c in value} & UNSAFE, (name, value)
            else:
                assert name in FREE_TEXT, f"{name}: a string the promise does not cover"
                assert len(value) <= FREE_TEXT[name], (name, len(value))
                bad = [c for c in value if c not in "\t\n" and unicodedata.category(c) in UNSAFE]
                assert not bad, (name, value)
        elif value is not None:
            assert name in NUMBER_BOUND, f"{name}: a number the promise does not cover"
            bound = NUMBER_BOUND[name]
            assert isinstance(value, int) and not isinstance(value, bool), (name, value)
            assert bound.low <= value <= bound.high, (name, value)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths(v, (*prefix, i))
    return out


ALL_PATHS = [p for p in paths(BASE) if p]


def mutate(doc: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    doc = json.loads(json.dumps(doc))
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


def check(body: Any) -> None:
    prev, _ = observe(None, parse_job(BASE, SEED_ID), 1.0)
    try:
        snap = parse_job(body, SEED_ID)
    except InvalidResponse:
        return
    assert_bounded(snap)
    state, events = observe(prev, snap, 2.0)
    assert state.snapshot == snap
    json.dumps(encode_state(state), ensure_ascii=False).encode("utf-8")  # the stored row
    for event in events:  # as the file sink writes it
        json.dumps(to_cloudevent(event, "p"), ensure_ascii=False).encode("utf-8")
    text = b"".join(render_job(state, {"team": "nlp"})).decode("utf-8")
    for line in text.splitlines():  # one sample a line: no value broke out of its label
        assert line.startswith("modelarts_"), line


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=st.sampled_from(ALL_PATHS),
    value=JSON,
    delete=st.booleans(),
)
def test_mutated_documents_parse_bounded_or_raise_invalid_response(
    path: Any, value: Any, delete: bool
) -> None:
    check(mutate(BASE, path, value, delete))


def test_every_hostile_value_at_every_path_parses_bounded_or_raises_invalid_response() -> None:
    for path in ALL_PATHS:
        for value in HOSTILE_VALUES:
            try:
                check(mutate(BASE, path, value, delete=False))
            except Exception as exc:
                raise AssertionError(f"{path} = {clip(repr(value), 40)}: {exc!r}") from exc


@settings(max_examples=300, deadline=None)
@given(body=JSON)
def test_random_json_parses_or_raises_invalid_response(body: Any) -> None:
    check(body)


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(min_value=0, max_value=len(json.dumps(BASE))))
def test_truncated_bodies_are_invalid(cut: int) -> None:
    text = json.dumps(BASE)[:cut]
    try:
        body = json.loads(text)
    except ValueError:
        return  # the client turns an undecodable body into InvalidResponse before parsing
    check(body)


HOSTILE_TEXT = (
    st.text(alphabet=ANY_CHAR, min_size=1, max_size=20)
    | LONG_TEXT
    | HOSTILE.filter(lambda v: isinstance(v, str))
)
EVENT = st.fixed_dictionaries(
    {"message": HOSTILE_TEXT},  # an event without a message is dropped: always give one
    optional={k: HOSTILE_TEXT | JSON for k in ("time", "level", "source")},
)


@settings(max_examples=300, deadline=None)
@given(events=st.lists(EVENT, max_size=4))
def test_job_events_come_out_bounded_or_raise_invalid_response(
    events: list[dict[str, Any]],
) -> None:
    try:
        parsed = parse_job_events({"events": events})
    except InvalidResponse:
        return
    for event in parsed:
        for key, value in event.items():
            value.encode("utf-8")
            limit, kept = (300, "\t\n") if key == "message" else (128, "")
            assert len(value) <= limit, (key, len(value))
            assert not [c for c in value if c not in kept and unicodedata.category(c) in UNSAFE]


@settings(max_examples=300, deadline=None)
@given(values=st.lists(JSON, max_size=5))
def test_task_metrics_are_ratios_or_raise_invalid_response(values: list[Any]) -> None:
    try:
        parsed = parse_task_metrics({"metrics": [{"metric": "cpuUsage", "value": values}]})
    except InvalidResponse:
        return
    for ratio in parsed.values():
        assert math.isfinite(ratio) and 0.0 <= ratio <= 1.0
