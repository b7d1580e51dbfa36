"""series.py draws a job's lines through shortcuts: a state set's tails rendered once per store
for each state that can be current, a single value in one step. Whatever state a job is in,
the bytes must be what a plain rendering of the family table's samples gives, for every view
``metrics:`` can ask for; the plain rendering is kept here, apart from the code it checks."""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.core.job import (
    OTHER,
    PHASES,
    RECOVER_RECORD_STRATEGIES,
    RECOVER_RESULTS,
    RECOVER_STRATEGIES,
    SECONDARY_PHASES,
    JobSnapshot,
    TaskRole,
    TaskStatus,
)
from monitor.core.state import JobState
from monitor.exposition.families import JOB_FAMILIES
from monitor.exposition.series import SeriesStore, View, render_job

TEXT = st.lists(
    st.sampled_from(["a", "Running", '"', "\\", "\n", "é", "😀", "-", "0"]), max_size=4
).map("".join)
NUMBER = st.none() | st.integers(-(2**60), 2**60) | st.sampled_from([0, 1, 2, 10**15 + 1])
TIME = st.none() | st.floats(0, 8e9, allow_nan=False) | st.sampled_from([1.8e9, 0.5])


def counts(keys: tuple[str, ...]) -> st.SearchStrategy[dict[str, int]]:
    return st.dictionaries(st.sampled_from(keys), st.integers(0, 9), max_size=4)


SNAPSHOTS = st.builds(
    JobSnapshot,
    job_id=st.just("job-1"),
    name=TEXT,
    workspace_id=TEXT,
    user_name=TEXT,
    create_time_ms=NUMBER,
    flavor_id=TEXT,
    flavor_type=TEXT,
    pool_name=TEXT,
    requested_nodes=NUMBER,
    retry_limit=NUMBER,
    accelerator_type=st.sampled_from(["", "gpu", "npu"]),
    accelerators=NUMBER,
    phase=st.sampled_from(["", "Hibernating", *PHASES]),
    secondary_phase=st.sampled_from(["", "Dreaming", *SECONDARY_PHASES]),
    duration_ms=NUMBER,
    start_time_ms=NUMBER,
    nodes=NUMBER,
    task_statuses=st.lists(st.builds(TaskStatus, TEXT, NUMBER), max_size=3).map(tuple),
    roles=st.lists(
        st.builds(TaskRole, role=TEXT, accelerator_type=TEXT, accelerators_per_node=NUMBER),
        max_size=2,
    ).map(tuple),
)
STATES = st.builds(
    JobState,
    job_id=st.just("job-1"),
    snapshot=SNAPSHOTS,
    phase_since=TIME,
    restarts=counts((*RECOVER_STRATEGIES, OTHER)),
    recoveries=st.dictionaries(
        st.sampled_from((*RECOVER_RECORD_STRATEGIES, OTHER)),
        counts((*RECOVER_RESULTS, OTHER)),
        max_size=3,
    ),
    gone=st.booleans(),
)


class Metrics:
    """A ``metrics:`` block: sparse or full state sets, and families left out."""

    def __init__(self, sparse: bool, denied: frozenset[str]) -> None:
        self.sparse, self.denied = sparse, denied

    def exports(self, name: str) -> bool:
        return name not in self.denied

    def starved_alerts(self) -> Mapping[str, list[str]]:
        return {}


VIEWS = st.builds(
    Metrics,
    st.booleans(),
    st.frozensets(st.sampled_from([f.name for f in JOB_FAMILIES]), max_size=4),
).map(View.of)


def plain(state: JobState, labels: dict[str, str], project: str, view: View) -> list[bytes]:
    """Each family's lines drawn the long way: every sample of the table, every label escaped,
    every value formatted, one line at a time."""

    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    def number(value: float) -> str:
        return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)

    assert state.snapshot is not None
    job = {"job_id": state.job_id, "job_name": state.job_name, **dict(sorted(labels.items()))}
    chunks = []
    for i, family in enumerate(JOB_FAMILIES):
        lines = []
        for own, value in family.samples(state.snapshot, state) if view.shown[i] else []:
            if view.sparse and family.state_set and value != 1:
                continue
            every = {**job, **own, **dict.fromkeys(family.context, project)}
            text = ",".join(f'{k}="{escape(v)}"' for k, v in every.items())
            lines.append(f"{family.name}{{{text}}} {number(float(value))}\n")
        chunks.append("".join(lines).encode())
    return chunks


@settings(max_examples=300, deadline=None)
@given(STATES, st.dictionaries(st.sampled_from(["team", "env"]), TEXT), TEXT, VIEWS)
def test_a_jobs_lines_are_the_plain_rendering_of_its_samples_in_every_view(
    state: JobState, labels: dict[str, str], project: str, view: View
) -> None:
    drawn = render_job(state, labels, {"project_id": project}, view)
    assert list(drawn) == plain(state, labels, project, view)


def test_recoveries_are_listed_in_the_documented_order_whatever_order_they_were_counted() -> None:
    """The exposition of a job does not change while its counts do not: the order its
    recoveries were counted in (the order of its records) is not the order they are shown."""
    counted = {"job_reschedule": {"failed": 1, "success": 2}, "npu_step_retry": {"success": 1}}
    store = SeriesStore()
    snapshot = JobSnapshot(job_id="job-1", phase="Running")
    store.update(JobState(job_id="job-1", snapshot=snapshot, recoveries=counted), {})
    lines = [
        line.split(",", 2)[2]
        for line in store.render().decode().splitlines()
        if line.startswith("modelarts_training_job_recoveries_total{")
    ]
    assert lines == [
        'recover="npu_step_retry",recover_result="success"} 1',
        'recover="job_reschedule",recover_result="success"} 2',
        'recover="job_reschedule",recover_result="failed"} 1',
    ]
