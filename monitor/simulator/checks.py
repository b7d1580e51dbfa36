"""Validation helpers shared by the scenario loader and the runtime admin endpoints.

Every problem is collected as a ``path: message`` line naming its key path, so that a
hand-written scenario is fixed in one round rather than one error at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

__all__ = ["Checker", "ScenarioError", "describe"]


class ScenarioError(ValueError):
    """The scenario is unusable; ``problems`` holds one line per problem, each naming its key."""

    def __init__(self, problems: list[str] | str, source: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        text = "; ".join(self.problems)
        super().__init__(f"{source}: {text}" if source else text)


T = TypeVar("T")
D = TypeVar("D")


class Checker:
    """Collects problems as ``path: message`` lines while turning raw values into typed ones."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{path or '(top level)'}: {message}")

    def get(
        self,
        m: Mapping[str, Any],
        key: str,
        path: str,
        convert: Callable[..., T | None],
        *,
        default: D,
        **kw: Any,
    ) -> T | D:
        """``m[key]`` converted, or ``default`` when absent or wrong (the problem is recorded)."""
        if key not in m:
            return default
        value = convert(m[key], f"{path}.{key}" if path else key, **kw)
        return default if value is None else value

    def nullable(
        self,
        m: Mapping[str, Any],
        key: str,
        path: str,
        convert: Callable[..., T | None],
        *,
        default: D,
        **kw: Any,
    ) -> T | D | None:
        """Like ``get``, but an explicit ``null`` means ``None`` rather than a problem."""
        if key in m and m[key] is None:
            return None
        return self.get(m, key, path, convert, default=default, **kw)

    def mapping(
        self,
        value: object,
        path: str,
        allowed: tuple[str, ...],
        required: tuple[str, ...] | None,
    ) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.fail(path, f"expected a mapping, got {describe(value)}")
            return None
        prefix = f"{path}." if path else ""
        for key in value:
            if key not in allowed:
                self.fail(f"{prefix}{key}", f"unknown key (allowed: {', '.join(allowed)})")
        for key in required or ():
            if key not in value:
                self.fail(f"{prefix}{key}", "required")
        return value

    def sequence(self, value: object, path: str) -> list[Any] | None:
        if not isinstance(value, list):
            self.fail(path, f"expected a list, got {describe(value)}")
            return None
        return value

    def string(
        self, value: object, path: str, *, non_empty: bool = False, secret: bool = False
    ) -> str | None:
        """A string; a ``secret`` one is never echoed back, whatever it turned out to be."""
        if isinstance(value, str):
            if non_empty and not value:
                self.fail(path, "expected a non-empty string")
                return None
            return value
        hint = " (quote it in YAML)" if isinstance(value, int | float) else ""
        got = type(value).__name__ if secret and value is not None else describe(value)
        self.fail(path, f"expected a string, got {got}{hint}")
        return None

    def integer(self, value: object, path: str, minimum: int | None = None) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"expected an integer, got {describe(value)}")
            return None
        if minimum is not None and value < minimum:
            self.fail(path, f"expected an integer >= {minimum}, got {value}")
            return None
        return value

    def number(self, value: object, path: str, positive: bool = False) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            self.fail(path, f"expected a number, got {describe(value)}")
            return None
        if math.isinf(value) or value < 0 or (positive and value == 0):
            self.fail(
                path, f"expected a finite number {'> 0' if positive else '>= 0'}, got {value}"
            )
            return None
        return float(value)

    def boolean(self, value: object, path: str) -> bool | None:
        if not isinstance(value, bool):
            self.fail(path, f"expected true or false, got {describe(value)}")
            return None
        return value


def describe(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, str | int | float | bool):
        return repr(value)
    return type(value).__name__
