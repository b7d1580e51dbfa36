"""The job search of the fake API: ``POST /v2/{project_id}/training-job-searches``.

Per ``shared/reference/modelarts-api-notes.md`` and the SDK's request model (``JobSearches`` with
``Filter``): the body is ``{"workspace_id", "offset", "limit", "sort_by", "order", "filters":
[{"key", "operator", "value"}]}`` where ``offset`` is a *page index* (page ``offset`` of
``limit`` items, not a row offset), ``limit`` is 1..50, ``workspace_id`` a string (absent: the
default workspace ``"0"``) and every filter's ``value`` an **array of strings**; the answer is
``{"total", "count", "limit", "offset", "sort_by", "order", "items"}`` with ``items`` the same
documents the job-detail endpoint serves. Pure: the caller passes the scenario time and epoch.

The simulator refuses what ModelArts refuses, so that it cannot agree with a wrong client: a
bare string where an array is due, a number where a string is due, a ``between`` that is not two
numbers written as strings, a field the request model does not have. What it implements:

* one workspace a search: only the jobs whose ``workspace_id`` is the body's;
* filter keys ``phase`` (``status.phase``), ``name``, ``workspace_id``, ``kind`` (always
  ``job``) and ``create_time`` (ms); the API's other keys (``algorithm_name``, ``user_id``,
  ``tags``) and the request fields it does not serve (``group_by``, ``train_type``, ``tags``,
  ``host_ips``) are answered 400, so a test cannot rely on a filter that is silently ignored;
* operators ``in`` and ``not`` (one value or more), ``like`` (one value, a substring,
  case-sensitive), ``between`` (``["low", "high"]`` inclusive, decimal numbers as strings,
  ``create_time`` only);
* ``sort_by`` ``create_time`` (the default), ``order`` ``asc`` or ``desc`` (the default), ties
  broken by job id so that paging is stable;
* only jobs that exist at scenario time ``t``: not before their first step, not once gone.

A malformed body is answered 400 with ``error_code`` ``ModelArts.0101`` (the simulator's choice:
the reference does not document the code for a bad search request).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from monitor.simulator.scenario import JobSpec

__all__ = ["BAD_REQUEST_CODE", "MAX_LIMIT", "SearchError", "search"]

BAD_REQUEST_CODE = "ModelArts.0101"
MAX_LIMIT = 50
DEFAULT_WORKSPACE = "0"
_FIELDS = ("workspace_id", "offset", "limit", "sort_by", "order", "filters")
_UNSERVED_FIELDS = ("group_by", "train_type", "tags", "host_ips")
"""Fields of the SDK's ``JobSearches`` the simulator does not implement."""
_KEYS = ("phase", "name", "workspace_id", "kind", "create_time")
_API_ONLY_KEYS = ("algorithm_name", "user_id", "tags")
_OPERATORS = ("in", "not", "like", "between")
_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


class SearchError(ValueError):
    """The search body is invalid; the message says which field and why."""


def search(jobs: Iterable[JobSpec], body: object, t: float, epoch: float) -> dict[str, Any]:
    """The answer to a search ``body`` at scenario time ``t``; ``SearchError`` if invalid."""
    if not isinstance(body, dict):
        raise SearchError("the body must be a JSON object")
    for name in body:
        if name in _UNSERVED_FIELDS:
            raise SearchError(f"{name}: not supported by the simulator")
        if name not in _FIELDS:
            raise SearchError(f"unknown field {name!r}")
    workspace = body.get("workspace_id", DEFAULT_WORKSPACE)
    if not isinstance(workspace, str) or not workspace:
        raise SearchError(f"workspace_id: expected a non-empty string, got {workspace!r}")
    offset = _integer(body, "offset", 0, 0, None)
    limit = _integer(body, "limit", MAX_LIMIT, 1, MAX_LIMIT)
    sort_by = body.get("sort_by", "create_time")
    if sort_by != "create_time":
        raise SearchError(f"sort_by: {sort_by!r} is not supported (create_time)")
    order = body.get("order", "desc")
    if order not in ("asc", "desc"):
        raise SearchError(f"order: {order!r} is not asc or desc")
    filters = _filters(body.get("filters", []))

    docs = [d for d in (job.document(t, epoch) for job in jobs) if d is not None]
    mine = [d for d in docs if d["metadata"]["workspace_id"] == workspace]
    matched = [d for d in mine if all(_matches(d, f) for f in filters)]
    matched.sort(key=lambda d: (d["metadata"]["create_time"], d["metadata"]["id"]))
    if order == "desc":
        matched.reverse()
    page = matched[offset * limit : (offset + 1) * limit]
    return {
        "total": len(matched),
        "count": len(page),
        "limit": limit,
        "offset": offset,
        "sort_by": sort_by,
        "order": order,
        "items": page,
    }


def _integer(body: dict[str, Any], key: str, default: int, low: int, high: int | None) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SearchError(f"{key}: expected an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"{low}..{high}" if high is not None else f">= {low}"
        raise SearchError(f"{key}: {value} is out of range {bounds}")
    return value


Filter = tuple[str, str, Any]


def _filters(raw: object) -> list[Filter]:
    if not isinstance(raw, list):
        raise SearchError("filters: expected a list")
    out: list[Filter] = []
    for i, f in enumerate(raw):
        where = f"filters[{i}]"
        if not isinstance(f, dict) or set(f) != {"key", "operator", "value"}:
            raise SearchError(f"{where}: expected exactly key, operator and value")
        key, op, value = f["key"], f["operator"], f["value"]
        if key in _API_ONLY_KEYS:
            raise SearchError(f"{where}.key: {key!r} is not supported by the simulator")
        if key not in _KEYS:
            raise SearchError(f"{where}.key: unknown key {key!r}")
        if op not in _OPERATORS:
            raise SearchError(f"{where}.operator: {op!r} is not one of {', '.join(_OPERATORS)}")
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SearchError(f"{where}.value: expected an array of strings, got {value!r:.80}")
        out.append((key, op, _operand(where, key, op, value)))
    return out


def _operand(where: str, key: str, op: str, value: list[str]) -> Any:
    """What a filter's value means for ``op``: the values, the text, or the two bounds."""
    if op in ("in", "not"):
        if not value:
            raise SearchError(f"{where}.value: {op} needs at least one value")
        return value
    if op == "like":
        if len(value) != 1:
            raise SearchError(f"{where}.value: like needs exactly one string")
        return value[0]
    if key != "create_time":
        raise SearchError(f"{where}.operator: between applies to create_time only")
    if len(value) != 2 or not all(_DECIMAL.fullmatch(v) for v in value):
        raise SearchError(f"{where}.value: between needs [low, high], two numbers as strings")
    low, high = float(value[0]), float(value[1])
    if low > high:
        raise SearchError(f"{where}.value: between needs low <= high")
    return low, high


def _field(doc: dict[str, Any], key: str) -> Any:
    if key == "phase":
        return doc["status"]["phase"]
    if key == "kind":
        return doc["kind"]
    return doc["metadata"][key]


def _matches(doc: dict[str, Any], f: Filter) -> bool:
    key, op, value = f
    field = _field(doc, key)
    if op == "in":
        return field in value
    if op == "not":
        return field not in value
    if op == "like":
        return isinstance(field, str) and value in field
    low, high = value
    return bool(low <= field <= high)
