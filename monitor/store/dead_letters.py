"""The types of a sink's dead letters, as ``Store.dead_letters`` reports them (``status``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event a sink could never take: refused for good, or impossible to serialize."""

    event_id: str
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class SinkDeadLetters:
    """One sink's dead letters: how many, and the newest few (newest first)."""

    sink: str
    count: int
    newest: tuple[DeadLetter, ...]
