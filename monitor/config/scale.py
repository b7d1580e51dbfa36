"""The settings for scaling out: this instance's shard, and job discovery by search.

``shard`` (``daemon/sharding.py``) splits the jobs between instances; ``discovery``
(``daemon/discovery.py``) adds the jobs a ModelArts job search finds to the configured ones. Both
are blocks of ``Settings`` (``settings.py``), which re-exports these classes.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from monitor.config.values import Duration, Model, check_labels, finite

__all__ = [
    "TAG_SEARCH_SPAN_MS",
    "DiscoverySettings",
    "FilterKey",
    "LabelRule",
    "SearchFilter",
    "ShardSettings",
    "TagFilter",
    "between_bounds",
]


class ShardSettings(Model):
    """This instance's share of the jobs (``daemon/sharding.py``)."""

    index: int = Field(default=0, ge=0)
    """``auto`` in the file: the ordinal of the StatefulSet pod's host name (``<name>-<N>``)."""
    total: int = Field(default=1, ge=1)

    @field_validator("index", mode="before")
    @classmethod
    def _index(cls, v: object, info: ValidationInfo) -> object:
        if isinstance(v, bool):
            raise ValueError("expected a number or auto")
        if v == "auto":
            env = (info.context or {}).get("env", os.environ)
            return hostname_ordinal(env)
        return v


FilterKey = Literal[
    "name", "create_time", "phase", "algorithm_name", "kind", "user_id", "workspace_id", "tags"
]
"""Filter keys the job-search API knows (``shared/reference/modelarts-api-notes.md``)."""

_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
"""A bound of ``between`` as the API takes it: a decimal number written as text."""
_BETWEEN = "between needs two numbers [low, high] with low <= high"
TAG_SEARCH_SPAN_MS = 31 * 86_400_000
"""The widest ``create_time`` window the API allows with a tag search: 31 days."""


class SearchFilter(Model):
    """One filter of the job-search API, as the SDK's ``Filter`` sends it: ``value`` is always
    an array of strings (``Filter.value: list[str]``). A lone value is taken as an array of
    one and numbers are sent as text, so ``like: "bert"`` and ``between: [0, 10]`` written
    the easy way still reach the API in the one form it takes."""

    key: FilterKey
    operator: Literal["between", "like", "in", "not"]
    value: list[str]

    @field_validator("value", mode="before")
    @classmethod
    def _value(cls, v: object, info: ValidationInfo) -> list[str]:
        texts = [_text(item) for item in (v if isinstance(v, list) else [v])]
        operator = info.data.get("operator")  # absent when it was invalid itself
        if operator in ("in", "not") and not texts:
            raise ValueError(f"{operator} needs at least one value")
        if operator == "like" and (len(texts) != 1 or not texts[0]):
            raise ValueError("like needs one non-empty text")
        if operator == "between":
            bounds = between_bounds(texts)
            if bounds is None:
                raise ValueError(_BETWEEN)
        return texts

    def body(self) -> dict[str, Any]:
        """The filter as the API takes it."""
        return {"key": self.key, "operator": self.operator, "value": list(self.value)}


def _text(item: object) -> str:
    """One filter value as the API's string: text as written, a number in its plain form
    (``1764300000000``, not ``1.7643e12``)."""
    if isinstance(item, str):
        return item
    if isinstance(item, bool) or not isinstance(item, int | float):
        raise ValueError(f"expected text or a number, got {item!r}")
    if isinstance(item, int):
        return str(item)
    if not finite(item):
        raise ValueError(f"{item} is not a finite number")
    return str(int(item)) if item.is_integer() else repr(item)


def between_bounds(texts: list[str]) -> tuple[float, float] | None:
    """``(low, high)`` of a ``between`` value, or None unless it is two decimal numbers with
    low <= high (a bound beyond float range is not one)."""
    if len(texts) != 2 or not all(_DECIMAL.fullmatch(t) for t in texts):
        return None
    low, high = float(texts[0]), float(texts[1])
    if not (finite(low) and finite(high)) or low > high:
        return None
    return low, high


_TAG_KEY = re.compile(r"[\w.:=+\-@](?:[\w .:=+\-@]{0,126}[\w.:=+\-@])?")
_TAG_VALUE = re.compile(r"[\w .:/=+\-@]{0,255}")


class TagFilter(Model):
    """One tag condition of the search (the SDK's ``ListTagFilter``): jobs with tag ``key``
    set to one of ``values``, or set at all when ``values`` is empty. The character rules and
    limits are the API's, so a typo is a config error rather than a 400 every round."""

    key: str
    values: list[str] = Field(default_factory=list, max_length=10)

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        if not _TAG_KEY.fullmatch(v):
            raise ValueError(
                f"{v[:140]!r} is not a tag key: 1-128 letters, digits, spaces and _ . : = + - @, "
                "not starting or ending with a space"
            )
        return v

    @field_validator("values")
    @classmethod
    def _values(cls, v: list[str]) -> list[str]:
        for value in v:
            if not _TAG_VALUE.fullmatch(value):
                raise ValueError(
                    f"{value[:260]!r} is not a tag value: up to 255 letters, digits, spaces "
                    "and _ . : / = + - @"
                )
        if len(set(v)) != len(v):
            raise ValueError("a value is listed twice")
        return v

    def body(self) -> dict[str, Any]:
        """The condition as the API takes it."""
        return {"key": self.key, "values": list(self.values)}


class LabelRule(Model):
    """Labels for the discovered jobs whose name matches ``name_regex`` (``re.search``)."""

    name_regex: str
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("name_regex")
    @classmethod
    def _regex(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"{v!r} is not a valid regular expression: {exc}") from None
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return check_labels(v)

    def matches(self, name: str) -> bool:
        return re.search(self.name_regex, name) is not None


def _default_filters() -> list[SearchFilter]:
    return [SearchFilter(key="phase", operator="in", value=["Creating", "Pending", "Running"])]


class DiscoverySettings(Model):
    """Watch the jobs a job search finds, besides the configured ones (``discovery.py``)."""

    interval: Duration = 300.0
    workspaces: list[str] = Field(default_factory=lambda: ["0"])
    """Each is searched: the API searches one workspace a request, the default one ("0")
    unless told, so the jobs of any other would never be found."""
    filters: list[SearchFilter] = Field(default_factory=_default_filters)
    tags: list[TagFilter] = Field(default_factory=list, max_length=10)
    """Tag conditions (AND between keys, OR between a key's values)."""
    labels: list[LabelRule] = Field(default_factory=list)
    """Every rule whose regex matches a job's name adds its labels; later rules win."""
    page_size: int = Field(default=50, ge=1, le=50)

    @field_validator("workspaces")
    @classmethod
    def _workspaces(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError('needs at least one workspace id ("0" is the default workspace)')
        for workspace in v:
            if not workspace:
                raise ValueError("a workspace id is empty")
        duplicates = sorted({w for w in v if v.count(w) > 1})
        if duplicates:
            raise ValueError(f"{duplicates[0]!r} is listed twice")
        return v

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[TagFilter], info: ValidationInfo) -> list[TagFilter]:
        """Keys once each; and the API takes a tag search only within 31 days of
        ``create_time`` (the last 31 days when no ``create_time`` filter is given)."""
        keys = [t.key for t in v]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ValueError(f"tag key {duplicates[0]!r} is listed twice")
        for i, f in enumerate(info.data.get("filters", []) if v else []):
            if f.key != "create_time":
                continue
            bounds = between_bounds(f.value) if f.operator == "between" else None
            if bounds is None or bounds[1] - bounds[0] > TAG_SEARCH_SPAN_MS:
                raise ValueError(
                    f"a tag search needs filters[{i}] (create_time) to be a between of at most "
                    "31 days (2678400000 ms), or no create_time filter (the last 31 days)"
                )
        return v

    def labels_for(self, name: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for rule in self.labels:
            if rule.matches(name):
                out.update(rule.labels)
        return out


_ORDINAL = re.compile(r".+-([0-9]+)")


def hostname_ordinal(env: Mapping[str, str]) -> int:
    """The ordinal of a StatefulSet pod from its host name (``monitor-2`` -> 2): ``HOSTNAME``
    from ``env``, else ``socket.gethostname()``. ValueError if the name has no ordinal."""
    host = env.get("HOSTNAME") or socket.gethostname()
    m = _ORDINAL.fullmatch(host.split(".", 1)[0])
    if m is None:
        raise ValueError(
            f"auto: host name {host!r} does not end in a StatefulSet pod ordinal "
            "(<name>-<N>); set the index as a number"
        )
    return int(m.group(1))
