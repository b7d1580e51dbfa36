"""Whatever the API sends, parse and diff either work or raise ``InvalidResponse``: no other
exception escapes, and a rejected body never becomes a transition."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.core.diff import observe
from monitor.errors import InvalidResponse
from monitor.modelarts.parse import parse_job
from tests.conftest import SEED_ID, job_doc

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)

BASE = job_doc(
    records=[
        {"start_at": 100, "end_at": 200, "end_recover": "proc_restart", "end_reason": "x"},
        {"start_at": 210},
    ],
    task_statuses=[{"task": "worker-0", "exit_code": 137, "message": "oom"}],
)


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
    state, events = observe(prev, snap, 2.0)
    assert state.snapshot == snap
    for event in events:
        json.dumps(dict(event.data))  # every event is serialisable as it will be sent


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=st.sampled_from(ALL_PATHS),
    value=JSON,
    delete=st.booleans(),
)
def test_mutated_documents_parse_or_raise_invalid_response(
    path: Any, value: Any, delete: bool
) -> None:
    check(mutate(BASE, path, value, delete))


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
