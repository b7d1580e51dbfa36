"""One field of the API's JSON, checked where it enters: its JSON type, its bound, the one text
rule (``core.text``), and one copy of the words every job repeats.

``parse.py`` reads every field of every changed body through these, 10,000 bodies in a first
poll round, so each check returns the common case first: a value of the right type within its
bound, or a word already seen clean, is returned as it is, before any other work. Anything else
takes the full check, which is the only place a refusal is worded. The name of the field an
error gives is built only then: callers pass the path of the object and the ``key`` of the
field in it (``where``) rather than a path formatted for each field of each record.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

from monitor.core.job import Bound
from monitor.core.text import LABEL_LIMIT, clip, free_text, label_text
from monitor.errors import InvalidResponse

WORDS_KEPT = 4096
"""How many clean words (``word``, ``text_word``) are remembered; at most this many short
strings are kept alive, and when it is reached the memory starts over, so a body of novel
values costs its own checks and never a growing table."""

_LINE_WORDS: dict[str, str] = {}
"""Clean one-line words, each mapped to its interned self."""
_TEXT_WORDS: dict[str, str] = {}
"""Clean free-text words (a string may be clean free text but not one line: a tab)."""


def where(path: str, key: str | int | None = None) -> str:
    """The name of a field in an error: ``path`` and, when given, the ``key`` within it."""
    if key is None:
        return path
    return f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}"


def obj(value: object, path: str, key: str | int | None = None) -> Mapping[str, Any]:
    """An object (``{}`` for null)."""
    if isinstance(value, dict):
        return value
    if value is None:
        return {}
    raise InvalidResponse(f"{where(path, key)}: expected an object, got {type(value).__name__}")


def array(value: object, path: str, key: str | int | None = None) -> list[Any]:
    """An array (``[]`` for null)."""
    if isinstance(value, list):
        return value
    if value is None:
        return []
    raise InvalidResponse(f"{where(path, key)}: expected an array, got {type(value).__name__}")


def string(value: object, path: str, key: str | int | None = None) -> str:
    """A string (``""`` for null), as sent."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    raise InvalidResponse(f"{where(path, key)}: expected a string, got {type(value).__name__}")


def line(value: object, path: str, limit: int = LABEL_LIMIT) -> str:
    """A string that may become a label value or name something: one line, bounded."""
    return label_text(string(value, path), limit)


def text(value: object, path: str, key: str | int | None = None) -> str:
    """A message or a reason: free text, bounded."""
    raw = string(value, path, key)
    return free_text(raw) if raw else ""


def word(value: object, path: str, key: str | int | None = None) -> str:
    """``line`` for a value from a small set every job repeats (a phase, flavour, engine, task
    or role name, start type, recovery strategy): one copy for all snapshots (``sys.intern``),
    not one a job (most of what their strings weighed). Each word's clean copy is remembered,
    so the next job's equal word is that copy without being checked again."""
    return _remembered(_LINE_WORDS, _line_at, value, path, key)


def text_word(value: object, path: str, key: str | int | None = None) -> str:
    """``word`` for free text every job repeats (an end reason, a fault scenario)."""
    return _remembered(_TEXT_WORDS, text, value, path, key)


def _line_at(value: object, path: str, key: str | int | None) -> str:
    return line(value, where(path, key))


def _remembered(
    words: dict[str, str],
    clean: Callable[[object, str, str | int | None], str],
    value: object,
    path: str,
    key: str | int | None,
) -> str:
    """A word already remembered as clean is its shared copy; any other value is cleaned by
    ``clean`` (which words with ``path`` and ``key`` any refusal) and its copy remembered."""
    if type(value) is str:
        known = words.get(value)
        if known is not None:
            return known
    elif value is None:
        return ""
    return _learned(words, clean(value, path, key))


def _learned(words: dict[str, str], clean: str) -> str:
    """The one copy of ``clean``, remembered under itself: cleaning a clean word leaves it as it
    is, so a later value equal to it may skip the check and share the copy."""
    shared = sys.intern(clean)
    if len(words) >= WORDS_KEPT:
        words.clear()
    words[shared] = shared
    return shared


def whole(value: object, path: str, bound: Bound, key: str | int | None = None) -> int | None:
    """A whole number within ``bound``: an integer, or a float that is a whole number (JSON
    does not tell them apart); None for null."""
    if type(value) is int:  # not a bool: that is refused below
        if bound.low <= value <= bound.high:
            return value
    elif value is None:
        return None
    return _whole(value, where(path, key), bound)


def whole_text(value: object, path: str, bound: Bound) -> int | None:
    """A whole number within ``bound`` sent as a string of digits (annotations are strings),
    or as a number."""
    if not isinstance(value, str):
        return whole(value, path, bound)
    digits = value.strip()
    if not digits.isascii() or not digits.isdigit():
        raise InvalidResponse(f"{path}: expected a whole number, got {clip(value, 24)!r}")
    if len(digits) > 24:  # never int() a string of any length: that is quadratic
        raise InvalidResponse(f"{path}: {clip(digits, 24)} is outside {bound.low}..{bound.high}")
    return whole(int(digits), path, bound)


def _whole(value: object, path: str, bound: Bound) -> int | None:
    """``whole`` past its common case: every refusal of a number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidResponse(f"{path}: expected a number, got {type(value).__name__}")
    if isinstance(value, float):
        if not value.is_integer():  # NaN and the infinities are not whole numbers either
            raise InvalidResponse(f"{path}: expected a whole number, got {value!r}")
        value = int(value)
    if not bound.low <= value <= bound.high:
        raise InvalidResponse(
            f"{path}: {clip(str(value), 24)} is outside {bound.low}..{bound.high} ({bound.meaning})"
        )
    return value
