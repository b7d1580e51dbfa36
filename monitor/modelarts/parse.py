"""The API's JSON into ``core`` types: the job-detail document as an immutable ``JobSnapshot``.

The authority is the API reference (``shared/reference/show-training-job-details.zh.txt``). The
parser is deliberately two-faced:

* tolerant of what the API is documented or known to do: fields missing, ``null`` where a value
  was expected, fields it has never heard of, enum values it does not know, running records that
  contradict themselves (``end_at`` before ``start_at``);
* strict about what would make a snapshot a lie: a body that is not an object, a field of the
  wrong type, a job id that is not the one asked for. Those raise ``InvalidResponse`` naming the
  field, so a poll that gets garbage fails loudly and never becomes a transition.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from monitor.core.hang import USAGE_METRICS
from monitor.core.job import JobSnapshot, RecoverRecord, RunningRecord, TaskStatus
from monitor.errors import InvalidResponse


def parse_job(raw: object, job_id: str | None = None) -> JobSnapshot:
    """Turn a decoded job-detail body into a snapshot, or raise ``InvalidResponse``.

    ``job_id`` is the id that was asked for; a body about another job is rejected rather than
    silently filed under the wrong id.
    """
    if not isinstance(raw, dict):
        raise InvalidResponse(f"body: expected a JSON object, got {type(raw).__name__}")
    doc: Mapping[str, Any] = raw
    metadata = _obj(doc.get("metadata"), "metadata")
    status = _obj(doc.get("status"), "status")
    spec = _obj(doc.get("spec"), "spec")
    resource = _obj(spec.get("resource"), "spec.resource")
    flavor_detail = _obj(resource.get("flavor_detail"), "spec.resource.flavor_detail")
    algorithm = _obj(doc.get("algorithm"), "algorithm")
    engine = _obj(algorithm.get("engine"), "algorithm.engine")

    found_id = _str(metadata.get("id"), "metadata.id")
    if job_id is None:
        if not found_id:
            raise InvalidResponse("response has no metadata.id")
        job_id = found_id
    elif found_id and found_id != job_id:
        raise InvalidResponse(f"response is about job {found_id!r}, not the requested {job_id!r}")

    nodes, nodes_at = _newest_point(status.get("node_count_metrics"))
    return JobSnapshot(
        job_id=job_id,
        name=_str(metadata.get("name"), "metadata.name"),
        kind=_str(doc.get("kind"), "kind"),
        workspace_id=_str(metadata.get("workspace_id"), "metadata.workspace_id"),
        user_name=_str(metadata.get("user_name"), "metadata.user_name"),
        create_time_ms=_int(metadata.get("create_time"), "metadata.create_time"),
        engine_name=_str(engine.get("engine_name"), "algorithm.engine.engine_name"),
        engine_version=_str(engine.get("engine_version"), "algorithm.engine.engine_version"),
        flavor_id=_str(resource.get("flavor_id"), "spec.resource.flavor_id"),
        flavor_type=_str(
            flavor_detail.get("flavor_type"), "spec.resource.flavor_detail.flavor_type"
        ),
        pool_id=_str(resource.get("pool_id"), "spec.resource.pool_id"),
        requested_nodes=_int(resource.get("node_count"), "spec.resource.node_count"),
        phase=_str(status.get("phase"), "status.phase"),
        secondary_phase=_str(status.get("secondary_phase"), "status.secondary_phase"),
        duration_ms=_int(status.get("duration"), "status.duration"),
        start_time_ms=_int(status.get("start_time"), "status.start_time"),
        nodes=nodes,
        nodes_at_ms=nodes_at,
        tasks=tuple(
            _str(t, f"status.tasks[{i}]")
            for i, t in enumerate(_list(status.get("tasks"), "status.tasks"))
        ),
        task_statuses=tuple(
            _task_status(t, f"status.task_statuses[{i}]")
            for i, t in enumerate(_list(status.get("task_statuses"), "status.task_statuses"))
        ),
        running_records=tuple(
            _record(r, f"status.running_records[{i}]")
            for i, r in enumerate(_list(status.get("running_records"), "status.running_records"))
        ),
    )


def _task_status(raw: object, path: str) -> TaskStatus:
    obj = _obj(raw, path)
    return TaskStatus(
        task=_str(obj.get("task"), f"{path}.task"),
        exit_code=_int(obj.get("exit_code"), f"{path}.exit_code"),
        message=_str(obj.get("message"), f"{path}.message"),
    )


def _record(raw: object, path: str) -> RunningRecord:
    obj = _obj(raw, path)
    return RunningRecord(
        start_at=_int(obj.get("start_at"), f"{path}.start_at"),
        end_at=_int(obj.get("end_at"), f"{path}.end_at"),
        start_type=_str(obj.get("start_type"), f"{path}.start_type"),
        end_reason=_str(obj.get("end_reason"), f"{path}.end_reason"),
        end_related_task=_str(obj.get("end_related_task"), f"{path}.end_related_task"),
        end_recover=_str(obj.get("end_recover"), f"{path}.end_recover"),
        end_recover_before_downgrade=_str(
            obj.get("end_recover_before_downgrade"), f"{path}.end_recover_before_downgrade"
        ),
        recover_records=tuple(
            _recover(r, f"{path}.recover_records[{i}]")
            for i, r in enumerate(_list(obj.get("recover_records"), f"{path}.recover_records"))
        ),
    )


def _recover(raw: object, path: str) -> RecoverRecord:
    obj = _obj(raw, path)
    return RecoverRecord(
        recover=_str(obj.get("recover"), f"{path}.recover"),
        recover_result=_str(obj.get("recover_result"), f"{path}.recover_result"),
        fault_scenario=_str(obj.get("fault_scenario"), f"{path}.fault_scenario"),
        reason=_str(obj.get("reason"), f"{path}.reason"),
        related_task=_str(obj.get("related_task"), f"{path}.related_task"),
        recover_start_at=_int(obj.get("recover_start_at"), f"{path}.recover_start_at"),
        recover_end_at=_int(obj.get("recover_end_at"), f"{path}.recover_end_at"),
    )


EVENT_FIELDS: tuple[str, ...] = ("time", "level", "message", "source")


def parse_job_events(raw: object) -> list[dict[str, str]]:
    """The ``events`` of a job-events response (``GET .../training-jobs/{id}/events``), each
    reduced to ``time``, ``level``, ``message`` and ``source`` (missing ones empty), in the
    order the API sent them; entries without a message are dropped. A wrong shape raises
    ``InvalidResponse`` naming the field, as ``parse_job`` does."""
    if not isinstance(raw, dict):
        raise InvalidResponse(f"events body: expected a JSON object, got {type(raw).__name__}")
    out = []
    for i, item in enumerate(_list(raw.get("events"), "events")):
        obj = _obj(item, f"events[{i}]")
        event = {k: _str(obj.get(k), f"events[{i}].{k}") for k in EVENT_FIELDS}
        if event["message"]:
            out.append(event)
    return out


def parse_task_metrics(raw: object) -> dict[str, float]:
    """The newest valid point of each known metric, as a ratio; raises ``InvalidResponse``.

    The endpoint returns, per metric, one value a minute (oldest first), with -1 for "no data".
    The values read as percentages (the API reference's own example climbs from 2.43 to 16.8);
    the reference does not state the unit, so the monitor *assumes* percent and exports ratios
    0..1, and says so in the metrics' HELP.
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
        for value in reversed(values):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidResponse(f"task metrics: metrics[{i}].value has {value!r}")
            if value >= 0:
                out[str(name)] = min(float(value), 100.0) / 100.0
                break
    return out


def _newest_point(raw: object) -> tuple[int | None, int | None]:
    """The ``[ts_ms, count]`` pair with the highest timestamp; the list's order is not promised."""
    newest: tuple[int, int] | None = None
    for i, point in enumerate(_list(raw, "status.node_count_metrics")):
        path = f"status.node_count_metrics[{i}]"
        pair = _list(point, path)
        if len(pair) != 2:
            raise InvalidResponse(f"{path}: expected [timestamp_ms, count], got {len(pair)} items")
        ts, count = _int(pair[0], f"{path}[0]"), _int(pair[1], f"{path}[1]")
        if ts is None or count is None:
            continue
        if newest is None or ts >= newest[0]:
            newest = (ts, count)
    return (newest[1], newest[0]) if newest else (None, None)


def _obj(value: object, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidResponse(f"{path}: expected an object, got {type(value).__name__}")
    return value


def _list(value: object, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidResponse(f"{path}: expected an array, got {type(value).__name__}")
    return value


def _str(value: object, path: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidResponse(f"{path}: expected a string, got {type(value).__name__}")
    return value


def _int(value: object, path: str) -> int | None:
    """Integers, and floats that are whole numbers (JSON does not tell them apart)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidResponse(f"{path}: expected a number, got {type(value).__name__}")
    if isinstance(value, float):
        if not value.is_integer():
            raise InvalidResponse(f"{path}: expected a whole number, got {value!r}")
        return int(value)
    return value
