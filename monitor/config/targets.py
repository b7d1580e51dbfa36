"""Targets: the projects and regions one process watches, each with its own client and jobs.

A config either names ``targets:`` (each with its ``api``, ``auth``, ``labels``, ``poll``
overrides, ``jobs`` and ``discovery``) or keeps the single-project form (top-level ``api``,
``auth``, ``jobs``, ``discovery``), which means **one implicit target** whose name is empty:
its series and events carry no ``target`` label, byte for byte what they were before targets
existed, so dashboards and alerts written for one project keep working. ``targets_of`` is the
one place that turns either form into ``Target`` records; nothing else reads the top-level
``api``/``auth``/``jobs``/``discovery``.

Why a target's ``poll`` overrides key by key: the rate limit and the 429 pause belong to an
account (``Throttle`` is per client), intervals and retention to its jobs, so a target names
only what differs. ``concurrency`` and ``jitter`` are the process's: the poll slots are shared
by every target, and the one scheduler spreads every job alike.

This module does not import ``settings.py`` at run time (``settings.py`` imports the checks
below for its validator); it reads the models through their attributes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.config.settings import (
        ApiSettings,
        AuthSettings,
        DiscoverySettings,
        JobSettings,
        PollSettings,
        Settings,
    )

TARGET_LABEL = "target"
"""With ``targets:``, the label carrying a target's name on its series and events; reserved
for the monitor then (a job or a discovery rule may not set it)."""
PROCESS_POLL_KEYS = ("concurrency", "jitter")
"""``poll`` keys a target may not override: the slots and the scheduler are the process's."""
_SINGLE_KEYS = ("api", "auth", "jobs", "discovery")


@dataclass(frozen=True, slots=True)
class Target:
    """One target as the daemon uses it: the top-level form becomes one with ``name`` "".

    ``labels`` are what every series and event of its jobs carry before their own labels:
    ``{}`` for the implicit target, ``{"target": name, **target labels}`` otherwise."""

    name: str
    api: ApiSettings
    auth: AuthSettings
    poll: PollSettings
    """The top-level ``poll`` with the target's overrides applied."""
    jobs: tuple[JobSettings, ...] = ()
    discovery: DiscoverySettings | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def project_id(self) -> str:
        return self.api.project_id

    def interval_for(self, job: JobSettings) -> float:
        return job.interval or self.poll.interval

    def job_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        return job_labels(self.labels, labels)


def job_labels(target: Mapping[str, str], own: Mapping[str, str]) -> dict[str, str]:
    """A job's labels as exported: its target's first, its own last (they win)."""
    return {**target, **own}


def targets_of(settings: Settings) -> tuple[Target, ...]:
    """The targets of a valid config, in config order (the implicit one when none is named)."""
    if settings.targets is None:
        assert settings.api is not None
        return (
            Target(
                "",
                settings.api,
                settings.auth,
                settings.poll,
                tuple(settings.jobs),
                settings.discovery,
            ),
        )
    out = []
    for t in settings.targets:
        override = {k: getattr(t.poll, k) for k in t.poll.model_fields_set} if t.poll else {}
        out.append(
            Target(
                t.name,
                t.api,
                t.auth,
                settings.poll.model_copy(update=override),
                tuple(t.jobs),
                t.discovery,
                {TARGET_LABEL: t.name, **t.labels},
            )
        )
    return tuple(out)


def only_target(settings: Settings | Target) -> Target:
    """The one target of a single-project config (or the target given)."""
    if isinstance(settings, Target):
        return settings
    targets = targets_of(settings)
    if len(targets) != 1:
        raise ValueError(f"{len(targets)} targets configured; name the one meant")
    return targets[0]


def target_problems(settings: Settings) -> list[str]:
    """The checks across a ``targets:`` list, one line each (for the settings validator)."""
    given = [k for k in _SINGLE_KEYS if k in settings.model_fields_set]
    problems = []
    if given:
        problems.append(
            f"{', '.join(given)}: not allowed beside targets; move them into a target "
            "(targets[].api, .auth, .jobs, .discovery)"
        )
    targets = settings.targets or []
    if not targets:
        problems.append("targets: needs at least one target (or leave it out)")
    names: dict[str, int] = {}
    owner: dict[str, str] = {}
    for i, t in enumerate(targets):
        where = f"targets[{i}]"
        if t.name in names:
            problems.append(f"{where}.name: {t.name!r} is also targets[{names[t.name]}]'s name")
        names.setdefault(t.name, i)
        for key in PROCESS_POLL_KEYS:
            if t.poll is not None and key in t.poll.model_fields_set:
                problems.append(
                    f"{where}.poll.{key}: is the process's, shared by every target; "
                    f"set it in the top-level poll"
                )
        seen: set[str] = set()
        for j, job in enumerate(t.jobs):
            if TARGET_LABEL in job.labels:
                problems.append(
                    f"{where}.jobs[{j}].labels.{TARGET_LABEL}: set by the monitor itself "
                    "(the target's name)"
                )
            if job.id in seen:
                problems.append(f"{where}.jobs[{j}].id: {job.id!r} is listed twice")
            elif owner.setdefault(job.id, t.name) != t.name:
                problems.append(
                    f"{where}.jobs[{j}].id: {job.id!r} is listed in targets "
                    f"{owner[job.id]} and {t.name}"
                )
            seen.add(job.id)
        rules = t.discovery.labels if t.discovery is not None else []
        for r, rule in enumerate(rules):
            if TARGET_LABEL in rule.labels:
                problems.append(
                    f"{where}.discovery.labels[{r}].labels.{TARGET_LABEL}: set by the monitor "
                    "itself (the target's name)"
                )
        problems += access_problems(f"{where}.", t.api, t.auth, env_hints=False)
    return problems


def access_problems(
    where: str, api: ApiSettings, auth: AuthSettings, *, env_hints: bool = True
) -> list[str]:
    """A project's endpoint and credentials checked together; ``where`` prefixes the keys
    (``""`` for the top level, ``targets[1].`` for a target). The SDK's environment
    variables fill only the top-level form (``loading.py``), so only it mentions them."""
    problems = []
    if auth.type == "aksk" and not (auth.ak and auth.sk.get_secret_value()):
        hint = " (or HUAWEICLOUD_SDK_AK / HUAWEICLOUD_SDK_SK)" if env_hints else ""
        problems.append(f"{where}auth: type aksk needs ak and sk{hint}")
    if auth.type == "token":
        missing = [
            k
            for k, v in (
                ("user", auth.user),
                ("password", auth.password.get_secret_value()),
                ("domain", auth.domain),
            )
            if not v
        ]
        if missing:
            problems.append(f"{where}auth: type token needs {', '.join(missing)}")
    if auth.security_token is not None and auth.type != "aksk":
        problems.append(
            f"{where}auth.security_token: only used with type aksk (a temporary AK/SK), "
            f"not with type {auth.type}"
        )
    if not api.project_id:
        hint = " (or set HUAWEICLOUD_SDK_PROJECT_ID)" if env_hints else ""
        problems.append(f"{where}api.project_id: required{hint}")
    return problems
