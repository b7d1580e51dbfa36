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

__all__ = ["DiscoverySettings", "FilterKey", "LabelRule", "SearchFilter", "ShardSettings"]


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
Scalar = str | int | float


class SearchFilter(Model):
    """One filter of the job-search API, sent as written: ``in`` / ``not`` take a list (a
    single value is a list of one), ``like`` a text, ``between`` two numbers (ms for
    ``create_time``)."""

    key: FilterKey
    operator: Literal["between", "like", "in", "not"]
    value: Scalar | list[Scalar]

    @field_validator("value")
    @classmethod
    def _value(cls, v: Scalar | list[Scalar], info: ValidationInfo) -> Scalar | list[Scalar]:
        operator = info.data.get("operator")  # absent when it was invalid itself
        if operator in ("in", "not"):
            values = v if isinstance(v, list) else [v]
            if not values:
                raise ValueError(f"{operator} needs at least one value")
            return values
        if operator == "like" and (not isinstance(v, str) or not v):
            raise ValueError("like needs a non-empty text")
        if operator == "between":
            bounds = _numbers(v)
            if bounds is None or len(bounds) != 2 or bounds[0] > bounds[1]:
                raise ValueError("between needs two numbers [low, high] with low <= high")
            return list(bounds)
        return v

    def body(self) -> dict[str, Any]:
        """The filter as the API takes it."""
        return {"key": self.key, "operator": self.operator, "value": self.value}


def _numbers(v: object) -> list[int | float] | None:
    """Two bounds of ``between``; numbers written as text (``${FROM}``) are read as numbers."""
    if not isinstance(v, list):
        return None
    out: list[int | float] = []
    for item in v:
        if isinstance(item, str):
            try:
                number = float(item)
            except ValueError:
                return None
            item = int(number) if number.is_integer() else number
        if isinstance(item, bool) or not isinstance(item, int | float) or not finite(item):
            return None
        out.append(item)
    return out


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
    filters: list[SearchFilter] = Field(default_factory=_default_filters)
    labels: list[LabelRule] = Field(default_factory=list)
    """Every rule whose regex matches a job's name adds its labels; later rules win."""
    page_size: int = Field(default=50, ge=1, le=50)

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
