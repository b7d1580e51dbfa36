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

Items may be trimmed (``Trim``, set through ``POST /_sim/search``): a list endpoint may serve
lighter items than the detail, and nothing in the reference promises that the search's
``JobResponse`` items carry every ``status`` field the detail does. A trim leaves the named
``status`` fields out of the items (of every job, or of the listed ones), so a test can drive a
client's fallback to the detail; the detail itself is never trimmed.

A malformed body is answered 400 with ``error_code`` ``ModelArts.0101`` (the simulator's choice:
the reference does not document the code for a bad search request).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from monitor.simulator.scenario import JobSpec

__all__ = [
    "BAD_REQUEST_CODE",
    "MAX_LIMIT",
    "Query",
    "SearchError",
    "Searches",
    "Trim",
    "answer",
    "matching",
    "query",
    "search",
    "trim_config",
]

BAD_REQUEST_CODE = "ModelArts.0101"
MAX_LIMIT = 50
DEFAULT_WORKSPACE = "0"
_FIELDS = ("workspace_id", "offset", "limit", "sort_by", "order", "filters")
_UNSERVED_FIELDS = ("group_by", "train_type", "tags", "host_ips")
"""Fields of the SDK's ``JobSearches`` the simulator does not implement."""
_KEYS = ("phase", "name", "workspace_id", "kind", "create_time")
_API_ONLY_KEYS = ("algorithm_name", "user_id", "tags")
_OPERATORS = ("in", "not", "like", "between")
TRIMMABLE = (
    "phase",
    "secondary_phase",
    "duration",
    "start_time",
    "node_count_metrics",
    "tasks",
    "task_statuses",
    "running_records",
)
"""The ``status`` fields a trim may leave out of the search items."""
_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


Filter = tuple[str, str, Any]
"""(key, operator, operand): the operand is the values, the text, or the two bounds."""


class SearchError(ValueError):
    """The search body is invalid; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class Query:
    """A validated search body. ``key`` is everything but the page: two pages of one search
    share it, so a caller can keep the matched list between them (``Simulator.search``)."""

    workspace: str
    offset: int
    limit: int
    sort_by: str
    order: str
    filters: tuple[Filter, ...]

    @property
    def key(self) -> tuple[object, ...]:
        filters = tuple(
            (k, op, tuple(v) if isinstance(v, list) else v) for k, op, v in self.filters
        )
        return (self.workspace, self.sort_by, self.order, filters)


class Searches:
    """The search endpoint's state: its trim, how often each job was listed, and the last
    search's matches, kept for the next page of the same search at the same scenario time
    (10,000 jobs are 200 pages: rendering every job for each page would be 200 times the work)."""

    def __init__(self) -> None:
        self.trim = Trim()
        self.listed: dict[str, int] = {}
        """Per job id: answers that listed it (what a bulk-polling client refreshed)."""
        self._matched: tuple[tuple[object, ...], list[dict[str, Any]]] | None = None

    def answer(
        self, jobs: Iterable[JobSpec], body: object, t: float, epoch: float
    ) -> dict[str, Any]:
        """``search``'s answer, its items trimmed; ``SearchError`` if ``body`` is invalid."""
        q = query(body)
        key = (t, epoch, *q.key)
        if self._matched is None or self._matched[0] != key:
            self._matched = (key, matching(jobs, q, t, epoch))
        reply = answer(q, self._matched[1])
        reply["items"] = [self.trim.apply(doc) for doc in reply["items"]]
        for doc in reply["items"]:
            job_id = doc["metadata"]["id"]
            self.listed[job_id] = self.listed.get(job_id, 0) + 1
        return reply


def search(jobs: Iterable[JobSpec], body: object, t: float, epoch: float) -> dict[str, Any]:
    """The answer to a search ``body`` at scenario time ``t``; ``SearchError`` if invalid."""
    q = query(body)
    return answer(q, matching(jobs, q, t, epoch))


def query(body: object) -> Query:
    """The body checked as ModelArts checks it; ``SearchError`` naming the field if invalid."""
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
    filters = tuple(_filters(body.get("filters", [])))
    return Query(workspace, offset, limit, sort_by, order, filters)


def matching(jobs: Iterable[JobSpec], q: Query, t: float, epoch: float) -> list[dict[str, Any]]:
    """Every document at time ``t`` that ``q`` matches, in the order of its answer."""
    docs = [d for d in (job.document(t, epoch) for job in jobs) if d is not None]
    mine = [d for d in docs if d["metadata"]["workspace_id"] == q.workspace]
    matched = [d for d in mine if all(_matches(d, f) for f in q.filters)]
    matched.sort(key=lambda d: (d["metadata"]["create_time"], d["metadata"]["id"]))
    if q.order == "desc":
        matched.reverse()
    return matched


def answer(q: Query, matched: list[dict[str, Any]]) -> dict[str, Any]:
    """The answer for ``q``'s page of ``matched``."""
    page = matched[q.offset * q.limit : (q.offset + 1) * q.limit]
    return {
        "total": len(matched),
        "count": len(page),
        "limit": q.limit,
        "offset": q.offset,
        "sort_by": q.sort_by,
        "order": q.order,
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


@dataclass(frozen=True, slots=True)
class Trim:
    """The ``status`` fields the search leaves out of its items, for every job (``jobs`` None)
    or only for the listed ones."""

    omit: tuple[str, ...] = ()
    jobs: frozenset[str] | None = None

    def apply(self, doc: dict[str, Any]) -> dict[str, Any]:
        """``doc`` as a search item: a trimmed copy, or ``doc`` itself when nothing is left out."""
        if not self.omit or (self.jobs is not None and doc["metadata"]["id"] not in self.jobs):
            return doc
        status = {k: v for k, v in doc["status"].items() if k not in self.omit}
        return {**doc, "status": status}

    def as_dict(self) -> dict[str, Any]:
        return {
            "omit": list(self.omit),
            "jobs": sorted(self.jobs) if self.jobs is not None else None,
        }


def trim_config(raw: object) -> Trim:
    """``{"omit": [status fields], "jobs": [ids] | null}`` as a ``Trim``; ``SearchError`` naming
    the key if invalid (``{"omit": []}`` turns trimming off)."""
    if not isinstance(raw, dict) or not set(raw) <= {"omit", "jobs"} or "omit" not in raw:
        raise SearchError('expected {"omit": [status fields], "jobs": [job ids] or null}')
    omit, jobs = raw["omit"], raw.get("jobs")
    if not isinstance(omit, list) or not all(isinstance(f, str) for f in omit):
        raise SearchError(f"omit: expected an array of strings, got {omit!r:.80}")
    unknown = [f for f in omit if f not in TRIMMABLE]
    if unknown:
        raise SearchError(f"omit: {unknown[0]!r} is not one of {', '.join(TRIMMABLE)}")
    if jobs is not None and (
        not isinstance(jobs, list) or not all(isinstance(j, str) for j in jobs)
    ):
        raise SearchError(f"jobs: expected an array of job ids or null, got {jobs!r:.80}")
    return Trim(tuple(dict.fromkeys(omit)), frozenset(jobs) if jobs is not None else None)
