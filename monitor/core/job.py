"""A training job as the monitor knows it: an immutable snapshot of one successful poll.

These are the domain's types, not the wire's: ``modelarts/parse.py`` builds them from the API's
JSON and bounds every value on the way in, and everything after it (the diff, the store, the
metrics, the pages) meets only these. The enums are the documented values of the API reference
(``shared/reference/show-training-job-details.zh.txt``) and of the official SDK; a value outside
them is kept as it came in the snapshot and exported as ``other`` (``bounded``).

Only what the monitor uses is kept; the snapshot must be cheap to hold for 10,000 jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

PHASES: tuple[str, ...] = (
    "Creating",
    "Pending",
    "Running",
    "Failed",
    "Completed",
    "Terminating",
    "Terminated",
    "Abnormal",
)
SECONDARY_PHASES: tuple[str, ...] = (
    "Creating",
    "Queuing",
    "Running",
    "Failed",
    "Completed",
    "Terminating",
    "Terminated",
    "CreateFailed",
    "TerminatedFailed",
    "Unknown",
    "Lost",
)
RECOVER_STRATEGIES: tuple[str, ...] = (
    "npu_proc_restart",
    "gpu_proc_restart",
    "proc_restart",
    "pod_reschedule",
    "job_reschedule",
    "job_reschedule_with_taint",
)
RECOVER_RECORD_STRATEGIES: tuple[str, ...] = ("npu_step_retry", *RECOVER_STRATEGIES)
"""``recover_records[].recover``: the SDK documents ``npu_step_retry`` and five of ``end_recover``'s
six; ``gpu_proc_restart`` is kept too, so a GPU job's in-place restart is not exported as other."""
RECOVERING = "recovering"
"""``recover_result`` of a recovery still in progress: documented, but not an outcome."""
RECOVER_RESULTS: tuple[str, ...] = (
    "success",
    "failed",
    "downgrade",
    "terminated",
    "quotaExceeded",
)
"""The documented outcomes of ``recover_records[].recover_result`` (SDK 3.1.219), ``recovering``
left out: it is what a record says before it has an outcome."""
RETRY_ANNOTATION = "fault-tolerance/job-retry-num"
"""The ``metadata.annotations`` key that holds the automatic-restart limit, as a string."""
TERMINAL_PHASES = frozenset({"Completed", "Failed", "Terminated", "Abnormal"})
OTHER = "other"


# -- What a number from the API can mean --------------------------------------------------------
# Every whole number of the snapshot is checked against one of these where it enters
# (``modelarts/parse.py``); a value outside its bound makes the poll ``invalid_response``, because
# a snapshot holding it would be a lie that fails later, where nothing expects it (a 401-digit
# duration overflows when rendered as seconds). Units are the API reference's.


class Bound(NamedTuple):
    """The whole numbers, ``low`` to ``high`` inclusive, that a field can mean."""

    low: int
    high: int
    meaning: str
    """What the field is, for the error that names the bound."""


YEAR_2200_S = 7_258_118_400
"""2200-01-01T00:00:00Z in Unix seconds: later than any time the API can report. A time in
milliseconds sent where seconds are documented lands far past it, so unit mix-ups fail too."""
DURATION_MS = Bound(0, 10 * 366 * 86_400_000, "milliseconds, at most ten years")
"""``status.duration``: how long the job has run."""
TIME_MS = Bound(0, YEAR_2200_S * 1000, "Unix milliseconds, before the year 2200")
"""``metadata.create_time``, ``status.start_time`` (0 before the start) and the timestamps of
``status.node_count_metrics``."""
TIME_S = Bound(0, YEAR_2200_S, "Unix seconds, before the year 2200")
"""``running_records[].start_at`` / ``end_at`` / ``xpu_start_at`` and
``recover_records[].recover_start_at`` / ``recover_end_at``."""
NODE_COUNT = Bound(0, 100_000, "a number of nodes, at most 100,000")
"""``spec.resource.node_count`` and the counts of ``status.node_count_metrics``; no pool comes
near 100,000 nodes."""
RETRY_LIMIT = Bound(0, 10_000, "a number of automatic restarts, at most 10,000")
"""``metadata.annotations["fault-tolerance/job-retry-num"]``: a small count; the bound catches
a timestamp or an id sent in its place."""
ACCELERATORS_PER_NODE = Bound(0, 1_024, "accelerators on one node, at most 1,024")
"""``flavor_info.gpu/npu.unit_num`` and ``main_container_allocated_resources.accelerator_num``:
a node holds 8 or 16 cards; 1,024 leaves room and still catches a byte count sent as cards."""
EXIT_CODE = Bound(-(2**31), 2**31 - 1, "a 32-bit signed exit code")
"""``task_statuses[].exit_code``: what a process exit status can be on any platform."""
TASK_ROLES = 64
"""Most entries of the top-level ``tasks[]`` (the roles of a heterogeneous job) a body may
list. A job has a handful of roles; a longer list is not a job's description but garbage, and
each role is exported as series, so the list is refused (``invalid_response``), not cut."""
NAME_LIMIT = 64
"""``metadata.name``: the API reference allows 1-64 characters. A longer name is cut to this,
not refused: the name is shown, not used to identify the job (``job_id`` does), and refusing
would leave the job unwatched for a name its owner cannot change."""


def bounded(value: str, documented: tuple[str, ...]) -> str:
    """Map a value onto a documented enum, or ``other``: the one rule for every enum label."""
    return value if value in documented else OTHER


@dataclass(frozen=True, slots=True)
class RecoverRecord:
    """One fault-tolerance action taken when a run ended abnormally (SDK-only field). Seconds."""

    recover: str = ""
    recover_result: str = ""
    fault_scenario: str = ""
    reason: str = ""
    related_task: str = ""
    recover_start_at: int | None = None
    recover_end_at: int | None = None


@dataclass(frozen=True, slots=True)
class RunningRecord:
    """One run of the job; a new one appears after every fault recovery. Times in seconds."""

    start_at: int | None = None
    end_at: int | None = None
    xpu_start_at: int | None = None
    """When the run's accelerators started (SDK-only field): after ``start_at`` by the time the
    cards took to come up."""
    start_type: str = ""
    end_reason: str = ""
    end_related_task: str = ""
    end_recover: str = ""
    end_recover_before_downgrade: str = ""
    recover_records: tuple[RecoverRecord, ...] = ()

    @property
    def ended(self) -> bool:
        return self.end_at is not None


@dataclass(frozen=True, slots=True)
class TaskStatus:
    task: str
    exit_code: int | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class TaskRole:
    """One role of a heterogeneous job: an entry of the top-level ``tasks[]`` (SDK
    ``TaskResponse``) with the flavour of its ``task_resource``.

    The API gives no node count per role (``max_num`` is the flavour's maximum, not what the
    role holds), so a role's accelerators are known per node only; the job's total stays
    ``JobSnapshot.accelerators``, from ``spec.resource``."""

    role: str = ""
    """``tasks[].role``: the API reference says roles are "not supported yet", so often empty;
    the role's position in ``tasks[]`` identifies it."""
    flavor_id: str = ""
    flavor_name: str = ""
    flavor_type: str = ""
    pool_id: str = ""
    accelerator_type: str = ""
    """``gpu`` or ``npu`` from ``task_resource.flavor_info``; "" when the role holds none."""
    accelerators_per_node: int | None = None


@dataclass(frozen=True, slots=True)
class JobSnapshot:
    """What one successful poll says about one job. Times from the API are kept in its units."""

    job_id: str
    name: str = ""
    kind: str = ""
    workspace_id: str = ""
    user_name: str = ""
    create_time_ms: int | None = None
    engine_name: str = ""
    engine_version: str = ""
    flavor_id: str = ""
    flavor_name: str = ""
    flavor_type: str = ""
    """``flavor_detail.flavor_type`` (public pools), else derived from the allocated
    accelerator type (dedicated pools: ``CPU``, ``GPU`` or ``Ascend``)."""
    pool_id: str = ""
    pool_name: str = ""
    requested_nodes: int | None = None
    retry_limit: int | None = None
    """The automatic-restart limit (annotation ``fault-tolerance/job-retry-num``); None if unset."""
    accelerator_type: str = ""
    """``gpu`` (the SDK's ``flavor_info.gpu``, or a non-Ascend allocated type), ``npu`` (Ascend:
    ``flavor_info.npu``, or an ``ascend-*`` allocated type), or "" when the job holds none."""
    accelerators: int | None = None
    """Accelerators the job holds in all: per-node count x ``requested_nodes``; None if none."""
    phase: str = ""
    secondary_phase: str = ""
    duration_ms: int | None = None
    start_time_ms: int | None = None
    nodes: int | None = None
    """Value of the newest point of ``node_count_metrics`` (by timestamp, not list position)."""
    nodes_at_ms: int | None = None
    tasks: tuple[str, ...] = ()
    task_statuses: tuple[TaskStatus, ...] = ()
    running_records: tuple[RunningRecord, ...] = ()
    roles: tuple[TaskRole, ...] = ()
    """The top-level ``tasks[]`` of a heterogeneous job, in the API's order; empty otherwise."""

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES


@dataclass(frozen=True, slots=True)
class JobGone:
    """The API answered that the job does not exist (400 ``ModelArts.2775``)."""

    job_id: str


Observation = JobSnapshot | JobGone
