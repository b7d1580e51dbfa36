"""The API's JSON into ``core`` types: the job-detail document as an immutable ``JobSnapshot``.

The authority is the API reference (``shared/reference/show-training-job-details.zh.txt``). The
parser is deliberately two-faced:

* tolerant of what the API is documented or known to do: fields missing, ``null`` where a value
  was expected, fields it has never heard of, enum values it does not know, running records that
  contradict themselves (``end_at`` before ``start_at``);
* strict about what would make a snapshot a lie: a body that is not an object, a field of the
  wrong type, a number outside what its field can mean (``core.job``'s bounds: a negative
  duration, a timestamp past 2200, an exit code wider than 32 bits), a job id that is not the
  one asked for. Those raise ``InvalidResponse`` naming the field, so a poll that gets garbage
  fails loudly and never becomes a transition.

Every string is bounded here too, by the one text rule (``core.text``): whatever can become a
label value or an identifier is one line of at most ``LABEL_LIMIT`` characters (the job name
``NAME_LIMIT``, the API's own limit), messages and reasons at most ``TEXT_LIMIT``, and none
keeps a lone surrogate or a control character. Nothing after this module meets a value it
cannot render, store as JSON or encode as UTF-8. Values every job repeats (phases, flavours,
task names) leave it as one copy shared by all snapshots (``fields.word``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from monitor.core.hang import USAGE_METRICS
from monitor.core.job import (
    ACCELERATORS_PER_NODE,
    DURATION_MS,
    EXIT_CODE,
    NAME_LIMIT,
    NODE_COUNT,
    RETRY_ANNOTATION,
    RETRY_LIMIT,
    TASK_ROLES,
    TIME_MS,
    TIME_S,
    JobSnapshot,
    RecoverRecord,
    RunningRecord,
    TaskRole,
    TaskStatus,
)
from monitor.core.text import LABEL_LIMIT, clip, label_text
from monitor.errors import InvalidResponse
from monitor.modelarts.fields import (
    array,
    line,
    obj,
    string,
    text,
    text_word,
    whole,
    whole_text,
    word,
)


def parse_job(raw: object, job_id: str | None = None) -> JobSnapshot:
    """Turn a decoded job-detail body into a snapshot, or raise ``InvalidResponse``.

    ``job_id`` is the id that was asked for; a body about another job is rejected rather than
    silently filed under the wrong id.
    """
    if not isinstance(raw, dict):
        raise InvalidResponse(f"body: expected a JSON object, got {type(raw).__name__}")
    doc: Mapping[str, Any] = raw
    metadata = obj(doc.get("metadata"), "metadata")
    status = obj(doc.get("status"), "status")
    spec = obj(doc.get("spec"), "spec")
    resource = obj(spec.get("resource"), "spec.resource")
    flavor_detail = obj(resource.get("flavor_detail"), "spec.resource.flavor_detail")
    algorithm = obj(doc.get("algorithm"), "algorithm")
    engine = obj(algorithm.get("engine"), "algorithm.engine")

    found_id = string(metadata.get("id"), "metadata.id")
    if job_id is None:
        if not found_id:
            raise InvalidResponse("response has no metadata.id")
        if label_text(found_id) != found_id:  # an id is never altered: altered, it names no job
            raise InvalidResponse(
                f"metadata.id {clip(found_id, 80)!r}: not a job id (control characters,"
                f" or over {LABEL_LIMIT} characters)"
            )
        job_id = found_id
    elif found_id and found_id != job_id:
        raise InvalidResponse(
            f"response is about job {clip(found_id, 80)!r}, not the requested {job_id!r}"
        )

    nodes, nodes_at = _newest_point(status.get("node_count_metrics"))
    annotations = obj(metadata.get("annotations"), "metadata.annotations")
    requested = whole(resource.get("node_count"), "spec.resource.node_count", NODE_COUNT)
    flavor_type, accelerator, per_node = _accelerators(resource, flavor_detail)
    return JobSnapshot(
        job_id=job_id,
        name=line(metadata.get("name"), "metadata.name", NAME_LIMIT),
        kind=word(doc.get("kind"), "kind"),
        workspace_id=word(metadata.get("workspace_id"), "metadata.workspace_id"),
        user_name=word(metadata.get("user_name"), "metadata.user_name"),
        create_time_ms=whole(metadata.get("create_time"), "metadata.create_time", TIME_MS),
        engine_name=word(engine.get("engine_name"), "algorithm.engine.engine_name"),
        engine_version=word(engine.get("engine_version"), "algorithm.engine.engine_version"),
        flavor_id=word(resource.get("flavor_id"), "spec.resource.flavor_id"),
        flavor_name=word(resource.get("flavor_name"), "spec.resource.flavor_name"),
        flavor_type=flavor_type,
        pool_id=word(resource.get("pool_id"), "spec.resource.pool_id"),
        pool_name=word(resource.get("pool_name"), "spec.resource.pool_name"),
        requested_nodes=requested,
        retry_limit=whole_text(
            annotations.get(RETRY_ANNOTATION),
            f"metadata.annotations[{RETRY_ANNOTATION!r}]",
            RETRY_LIMIT,
        ),
        accelerator_type=accelerator if per_node and requested else "",
        accelerators=per_node * requested if per_node and requested else None,
        phase=word(status.get("phase"), "status.phase"),
        secondary_phase=word(status.get("secondary_phase"), "status.secondary_phase"),
        duration_ms=whole(status.get("duration"), "status.duration", DURATION_MS),
        start_time_ms=whole(status.get("start_time"), "status.start_time", TIME_MS),
        nodes=nodes,
        nodes_at_ms=nodes_at,
        tasks=tuple(
            [
                word(t, "status.tasks", i)
                for i, t in enumerate(array(status.get("tasks"), "status.tasks"))
            ]
        ),
        task_statuses=tuple(
            [
                _task_status(t, f"status.task_statuses[{i}]")
                for i, t in enumerate(array(status.get("task_statuses"), "status.task_statuses"))
            ]
        ),
        running_records=tuple(
            [
                _record(r, f"status.running_records[{i}]")
                for i, r in enumerate(
                    array(status.get("running_records"), "status.running_records")
                )
            ]
        ),
        roles=_roles(doc.get("tasks")),
    )


def _accelerators(
    resource: Mapping[str, Any], flavor_detail: Mapping[str, Any]
) -> tuple[str, str, int | None]:
    """``(flavor_type, accelerator type, accelerators per node)`` of the job's main flavour.

    A public pool describes its flavour in ``flavor_detail`` (``flavor_type``, and the cards in
    ``flavor_info.gpu``/``npu``); a dedicated pool sends no ``flavor_detail`` but what it
    allocated to the main container (``main_container_allocated_resources``: an
    ``accelerator_type`` such as ``ascend-snt9b``, and ``accelerator_num``), from which the
    flavour type is derived so that ``flavor_type`` means the same on both kinds of pool. The
    SDK documents two kinds of accelerator, GPU and Ascend: an ``ascend-*`` type is an NPU, any
    other named type a GPU.
    """
    path = "spec.resource.flavor_detail"
    flavor_type = word(flavor_detail.get("flavor_type"), path, "flavor_type")
    accelerator, per_node = _cards(flavor_detail.get("flavor_info"), f"{path}.flavor_info")
    if per_node:
        return flavor_type, accelerator, per_node
    path = "spec.resource.main_container_allocated_resources"
    allocated = obj(resource.get("main_container_allocated_resources"), path)
    if not allocated:  # no accelerator named, nothing to derive the flavour type from
        return flavor_type, "", None
    count = whole(allocated.get("accelerator_num"), path, ACCELERATORS_PER_NODE, "accelerator_num")
    kind = word(allocated.get("accelerator_type"), path, "accelerator_type")
    accelerator = "npu" if kind.lower().startswith("ascend") else "gpu" if kind else ""
    if not flavor_type:
        flavor_type = {"npu": "Ascend", "gpu": "GPU"}.get(accelerator, "CPU")
    return flavor_type, accelerator, count if accelerator else None


def _cards(raw: object, path: str) -> tuple[str, int | None]:
    """``(accelerator type, cards per node)`` of a ``flavor_info`` (``FlavorInfo`` under
    ``flavor_detail``, ``FlavorInfoResponse`` under a role's ``task_resource``: the same
    ``gpu``/``npu`` objects); ``("", None)`` when it names no card."""
    if raw is None:
        return "", None
    info = obj(raw, path)
    gpu = obj(info.get("gpu"), path, "gpu")
    npu = obj(info.get("npu"), path, "npu")
    gpus = whole(gpu.get("unit_num"), f"{path}.gpu", ACCELERATORS_PER_NODE, "unit_num")
    npus = whole_text(  # a string in the SDK and the reference; a number is taken too
        npu.get("unit_num"), f"{path}.npu.unit_num", ACCELERATORS_PER_NODE
    )
    if npus:
        return "npu", npus
    if gpus:
        return "gpu", gpus
    return "", None


def _roles(raw: object) -> tuple[TaskRole, ...]:
    """The top-level ``tasks[]`` of a heterogeneous job (SDK ``TaskResponse``): each role and
    the flavour of its ``task_resource`` (``FlavorResponse``)."""
    if raw is None:
        return ()
    entries = array(raw, "tasks")
    if len(entries) > TASK_ROLES:
        raise InvalidResponse(
            f"tasks: {len(entries)} roles, more than the {TASK_ROLES} a job can mean"
        )
    roles = []
    for i, entry in enumerate(entries):
        path = f"tasks[{i}]"
        task = obj(entry, path)
        resource = obj(task.get("task_resource"), path, "task_resource")
        path = f"{path}.task_resource"
        accelerator, per_node = _cards(resource.get("flavor_info"), f"{path}.flavor_info")
        roles.append(
            TaskRole(
                role=word(task.get("role"), f"tasks[{i}]", "role"),
                flavor_id=word(resource.get("flavor_id"), path, "flavor_id"),
                flavor_name=word(resource.get("flavor_name"), path, "flavor_name"),
                flavor_type=word(resource.get("flavor_type"), path, "flavor_type"),
                pool_id=word(resource.get("pool_id"), path, "pool_id"),
                accelerator_type=accelerator,
                accelerators_per_node=per_node,
            )
        )
    return tuple(roles)


def _task_status(raw: object, path: str) -> TaskStatus:
    found = obj(raw, path)
    return TaskStatus(
        task=word(found.get("task"), path, "task"),
        exit_code=whole(found.get("exit_code"), path, EXIT_CODE, "exit_code"),
        message=text(found.get("message"), path, "message"),
    )


def _record(raw: object, path: str) -> RunningRecord:
    found = obj(raw, path)
    get = found.get
    recovers = get("recover_records")
    return RunningRecord(
        start_at=whole(get("start_at"), path, TIME_S, "start_at"),
        end_at=whole(get("end_at"), path, TIME_S, "end_at"),
        xpu_start_at=whole(get("xpu_start_at"), path, TIME_S, "xpu_start_at"),
        start_type=word(get("start_type"), path, "start_type"),
        end_reason=text_word(get("end_reason"), path, "end_reason"),
        end_related_task=word(get("end_related_task"), path, "end_related_task"),
        end_recover=word(get("end_recover"), path, "end_recover"),
        end_recover_before_downgrade=word(
            get("end_recover_before_downgrade"), path, "end_recover_before_downgrade"
        ),
        recover_records=()
        if recovers is None
        else tuple(
            [
                _recover(r, f"{path}.recover_records[{i}]")
                for i, r in enumerate(array(recovers, path, "recover_records"))
            ]
        ),
    )


def _recover(raw: object, path: str) -> RecoverRecord:
    found = obj(raw, path)
    return RecoverRecord(
        recover=word(found.get("recover"), path, "recover"),
        recover_result=word(found.get("recover_result"), path, "recover_result"),
        fault_scenario=text_word(found.get("fault_scenario"), path, "fault_scenario"),
        reason=text(found.get("reason"), path, "reason"),
        related_task=word(found.get("related_task"), path, "related_task"),
        recover_start_at=whole(found.get("recover_start_at"), path, TIME_S, "recover_start_at"),
        recover_end_at=whole(found.get("recover_end_at"), path, TIME_S, "recover_end_at"),
    )


EVENT_FIELDS: tuple[str, ...] = ("time", "level", "message", "source")


def parse_job_events(raw: object) -> list[dict[str, str]]:
    """The ``events`` of a job-events response (``GET .../training-jobs/{id}/events``), each
    reduced to ``time``, ``level``, ``message`` and ``source`` (missing ones empty), in the
    order the API sent them; entries without a message are dropped. The message is free text,
    the others one line (``core.text``). A wrong shape raises ``InvalidResponse`` naming the
    field, as ``parse_job`` does."""
    if not isinstance(raw, dict):
        raise InvalidResponse(f"events body: expected a JSON object, got {type(raw).__name__}")
    out = []
    for i, item in enumerate(array(raw.get("events"), "events")):
        found = obj(item, f"events[{i}]")
        event = {
            k: (text if k == "message" else line)(found.get(k), f"events[{i}].{k}")
            for k in EVENT_FIELDS
        }
        if event["message"]:
            out.append(event)
    return out


def parse_task_metrics(raw: object) -> dict[str, float]:
    """The newest valid point of each known metric, as a ratio; raises ``InvalidResponse``.

    The endpoint returns, per metric, one value a minute (oldest first), with -1 for "no data".
    The values read as percentages (the API reference's own example climbs from 2.43 to 16.8);
    the reference does not state the unit, so the monitor *assumes* percent and exports ratios
    0..1 (above 100 % reads as 1), and says so in the metrics' HELP. NaN and infinities, which
    Python's JSON decoder accepts, are not readings: they raise.
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("metrics"), list):
        raise InvalidResponse("task metrics: expected an object with a 'metrics' array")
    out: dict[str, float] = {}
    for i, item in enumerate(raw["metrics"]):
        if not isinstance(item, dict):
            raise InvalidResponse(f"task metrics: metrics[{i}] is not an object")
        name, values = item.get("metric"), item.get("value")
        if name not in USAGE_METRICS:
            continue  # a metric this monitor does not know yet
        if not isinstance(values, list):
            raise InvalidResponse(f"task metrics: metrics[{i}].value is not an array")
        for j in reversed(range(len(values))):
            value = values[j]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidResponse(
                    f"task metrics: metrics[{i}].value[{j}]: expected a number,"
                    f" got {type(value).__name__}"
                )
            if isinstance(value, float) and not math.isfinite(value):
                raise InvalidResponse(
                    f"task metrics: metrics[{i}].value[{j}]: expected a finite number,"
                    f" got {value!r}"
                )
            if value >= 0:  # capped before float(): an integer of 400 digits overflows a float
                out[str(name)] = min(value, 100) / 100
                break
    return out


def _newest_point(raw: object) -> tuple[int | None, int | None]:
    """The ``[ts_ms, count]`` pair with the highest timestamp; the list's order is not promised."""
    newest: tuple[int, int] | None = None
    for i, point in enumerate(array(raw, "status.node_count_metrics")):
        path = f"status.node_count_metrics[{i}]"
        pair = array(point, path)
        if len(pair) != 2:
            raise InvalidResponse(f"{path}: expected [timestamp_ms, count], got {len(pair)} items")
        ts, count = whole(pair[0], path, TIME_MS, 0), whole(pair[1], path, NODE_COUNT, 1)
        if ts is None or count is None:
            continue
        if newest is None or ts >= newest[0]:
            newest = (ts, count)
    return (newest[1], newest[0]) if newest else (None, None)
