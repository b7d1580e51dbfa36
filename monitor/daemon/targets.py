"""What each target decides for its jobs, as the job book keeps it (``Scope``, ``Scopes``),
what a reload may change of the running targets (``running_targets``, ``restart_reasons``),
and how a target's requests are admitted to the shared slots (``Pauses``, ``admitted``).

The book's record of a job carries only its target's *name*; the project its events and
``_info`` name, the poll rules it follows and the labels its series carry before its own are
looked up here, so a reload that changes a target's labels or rules changes them for every
job of that target at once, and no job holds a stale copy. A single-project config is the one
scope named "" (no labels, so no ``target`` label: its output is what it was before targets).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from monitor.config.settings import JobSettings, PollSettings
from monitor.config.targets import Target, job_labels
from monitor.daemon.wiring import TargetThrottle


@dataclass(frozen=True, slots=True)
class Scope:
    """One target's project, poll rules and labels (``target`` and the target's own)."""

    name: str = ""
    project_id: str = ""
    poll: PollSettings = field(default_factory=PollSettings)
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, target: Target) -> Scope:
        return cls(target.name, target.project_id, target.poll, dict(target.labels))

    @property
    def context(self) -> dict[str, str]:
        """The values of the families' context labels (``series.render_job``)."""
        return {"project_id": self.project_id}

    def labels_of(self, own: Mapping[str, str]) -> dict[str, str]:
        return job_labels(self.labels, own)


class Scopes:
    """The scopes by target name. A target dropped by a reload keeps its scope (its jobs
    are unwatched by the reload, or need the restart it reports)."""

    def __init__(self, scopes: Iterable[Scope]) -> None:
        self._scopes = {sc.name: sc for sc in scopes}

    def __getitem__(self, name: str) -> Scope:
        return self._scopes[name]

    def replace(self, scopes: Iterable[Scope]) -> set[str]:
        """Take new scopes; the names of those whose labels or project changed (their jobs'
        series must be rendered again)."""
        old, self._scopes = self._scopes, {**self._scopes, **{sc.name: sc for sc in scopes}}
        return {
            name
            for name, sc in self._scopes.items()
            if name not in old
            or (old[name].labels, old[name].project_id) != (sc.labels, sc.project_id)
        }


def restart_reasons(running: Sequence[Target], wanted: Sequence[Target]) -> list[str]:
    """What a reload asks of the targets that only a restart can do (each target's client is
    built once, like the single-project config's): a target added or removed, or a target's
    ``api`` or ``auth`` changed. The single-project form's own ``api``/``auth`` are the
    top-level sections ``App`` already compares."""
    before, after = {t.name: t for t in running}, {t.name: t for t in wanted}
    if ("" in before) != ("" in after):
        return ["targets"]  # the single-project form turned into targets, or back
    reasons = [f"targets.{name} (added)" for name in after.keys() - before.keys()]
    reasons += [f"targets.{name} (removed)" for name in before.keys() - after.keys()]
    for name in sorted(before.keys() & after.keys() - {""}):
        reasons += [
            f"targets.{name}.{key}"
            for key in ("api", "auth")
            if getattr(before[name], key) != getattr(after[name], key)
        ]
    return sorted(reasons)


def running_targets(running: Sequence[Target], wanted: Sequence[Target]) -> tuple[Target, ...]:
    """The targets after a reload: each running one takes its new jobs, labels, poll rules and
    discovery but keeps the ``api`` and ``auth`` its client was built from; a target added by
    the reload waits for a restart, one removed keeps running as it was until then."""
    after = {t.name: t for t in wanted}
    return tuple(
        replace(after[t.name], api=t.api, auth=t.auth) if t.name in after else t for t in running
    )


def job_changed(a: tuple[Target, JobSettings], b: tuple[Target, JobSettings]) -> bool:
    """A configured job changed across a reload: its settings or its target."""
    return (a[0].name, a[1]) != (b[0].name, b[1])


class Pauses:
    """Each target's throttle, for admitting its requests to the shared slots (``admitted``);
    a target without one (a test's, or none configured) is admitted at once."""

    def __init__(self) -> None:
        self._throttles: dict[str, TargetThrottle] = {}

    def add(self, target: str, throttle: TargetThrottle) -> TargetThrottle:
        self._throttles[target] = throttle
        return throttle

    def __call__(self, target: str) -> float:
        """Seconds ``target``'s 429 pause has left."""
        throttle = self._throttles.get(target)
        return throttle.pause_left() if throttle is not None else 0.0

    async def admit(self, target: str) -> None:
        throttle = self._throttles.get(target)
        if throttle is not None:
            await throttle.admit()

    def at_once(self, target: str) -> bool:
        """Whether ``target``'s next request may go without waiting for a turn: it has no
        throttle, or one with no rate limit and no 429 pause."""
        throttle = self._throttles.get(target)
        return throttle is None or throttle.at_once()


def admitted(slots: asyncio.Semaphore, pauses: Pauses, target: str) -> Admission:
    """Hold one of ``slots`` for one request of ``target``, taken only once that request's turn
    has come (its rate slot, the end of a 429 pause): a throttled target's requests wait
    without a slot, so the other targets' polls keep theirs (``async with admitted(...)``)."""
    return Admission(slots, pauses, target)


class Admission:
    """``admitted``'s context: a class, not a generator context manager, because it is entered
    once per poll; and a target that is neither rate limited nor paused (the usual case) takes
    its slot at once, without a throttle's turn to wait for."""

    __slots__ = ("_pauses", "_slots", "_target")

    def __init__(self, slots: asyncio.Semaphore, pauses: Pauses, target: str) -> None:
        self._slots, self._pauses, self._target = slots, pauses, target

    async def __aenter__(self) -> None:
        slots, pauses, target = self._slots, self._pauses, self._target
        if pauses.at_once(target):
            await slots.acquire()
            if pauses.at_once(target):
                return
            slots.release()  # a 429 paused the target while this waited for the slot
        while True:
            await pauses.admit(target)
            await slots.acquire()
            if pauses(target) <= 0:
                return
            slots.release()  # a 429 paused the target meanwhile: wait again, without the slot

    async def __aexit__(self, *exc: object) -> None:
        self._slots.release()
