"""The ``metrics:`` block: how many series each job costs Prometheus.

Two knobs, both read once when the series store is built (``exposition/series.py``), never per
scrape:

- ``state_sets``: ``full`` exports every documented state of the state-set families (phase,
  secondary phase) at 0 or 1, as kube-state-metrics does; ``sparse`` only the current state's
  series, at 1, which saves about nine series of ten on those families. The shipped alerts and
  dashboard only ever select ``== 1``, so they read both modes alike.
- ``allow`` / ``deny``: regexes over whole metric names (``re.fullmatch``) choosing which job
  families are exported. The monitor's own families (``modelarts_monitor_*``, the per-job
  ``modelarts_monitor_up`` included) are always exported: without them nobody can tell a
  filtered series from a broken monitor. Job families *can* be filtered away even when a
  shipped alert reads them (that is the operator's call, e.g. no usage ratios and so no hang
  alert); ``starved_alerts`` names those alerts, and the series store logs them once at start.

A pattern that does not compile, or matches no family at all (a typo that would silently drop
everything from ``allow``), is a config error naming its key (``metrics.deny[1]``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import BeforeValidator, field_validator

from monitor.config.values import Model
from monitor.exposition.families import FAMILIES

OWN_PREFIX = "modelarts_monitor_"
"""The monitor's own families: never filtered."""

_FILTERABLE = tuple(f.name for f in FAMILIES if not f.name.startswith(OWN_PREFIX))
_OWN = tuple(f.name for f in FAMILIES if f.name.startswith(OWN_PREFIX))

ALERT_FAMILIES: Mapping[str, tuple[str, ...]] = {
    "ModelArtsJobFailed": ("modelarts_training_job_phase", "modelarts_training_job_task_exit_code"),
    "ModelArtsJobRestarting": ("modelarts_training_job_restarts_total",),
    "ModelArtsJobRescheduled": ("modelarts_training_job_restarts_total",),
    "ModelArtsJobStuckPending": (
        "modelarts_training_job_phase",
        "modelarts_training_job_phase_last_change_timestamp_seconds",
    ),
    "ModelArtsJobNodesMissing": (
        "modelarts_training_job_nodes",
        "modelarts_training_job_requested_nodes",
        "modelarts_training_job_phase",
    ),
    "ModelArtsJobHangSuspected": (
        "modelarts_training_job_task_gpu_utilization_ratio",
        "modelarts_training_job_task_npu_utilization_ratio",
        "modelarts_training_job_phase",
    ),
    "ModelArtsMonitorCannotPollJob": ("modelarts_training_job_gone",),
}
"""The job families each shipped alert (``deploy/prometheus/alerts.yml``) reads; a deploy test
keeps this true. Without ``_gone``, ``ModelArtsMonitorCannotPollJob`` still works but fires for
deleted jobs again."""


def _compile(value: object) -> re.Pattern[str]:
    if not isinstance(value, str):
        raise ValueError("must be a regular expression (a string)")
    try:
        pattern = re.compile(value)
    except re.error as exc:
        raise ValueError(f"{value[:200]!r} is not a valid regular expression: {exc}") from None
    names = (*_FILTERABLE, *_OWN)
    if not value.startswith(OWN_PREFIX) and not any(pattern.fullmatch(n) for n in names):
        raise ValueError(
            f"{value[:200]!r} matches no metric family (each pattern must match a whole"
            " name, as listed in docs/metrics.md)"
        )
    return pattern


Pattern = Annotated[re.Pattern[str], BeforeValidator(_compile)]


class MetricsSettings(Model):
    """``metrics:``: the state-set mode and the job-family filters."""

    state_sets: Literal["full", "sparse"] = "full"
    allow: tuple[Pattern, ...] = ()
    """Export only the job families whose name one of these matches; empty: all."""
    deny: tuple[Pattern, ...] = ()
    """Never export the job families whose name one of these matches; applied after allow."""

    @field_validator("allow", "deny", mode="before")
    @classmethod
    def _list(cls, value: object) -> object:
        if value is None:  # ``deny:`` left empty in YAML
            return ()
        if isinstance(value, str):
            raise ValueError("must be a list of regular expressions")
        return value

    @property
    def sparse(self) -> bool:
        return self.state_sets == "sparse"

    def exports(self, name: str) -> bool:
        """Whether the family called ``name`` is exported; always for the monitor's own."""
        if name.startswith(OWN_PREFIX):
            return True
        if self.allow and not any(p.fullmatch(name) for p in self.allow):
            return False
        return not any(p.fullmatch(name) for p in self.deny)

    def starved_alerts(self) -> dict[str, list[str]]:
        """Each shipped alert that reads a family these filters drop, with those families."""
        starved = {
            alert: [name for name in names if not self.exports(name)]
            for alert, names in ALERT_FAMILIES.items()
        }
        return {alert: names for alert, names in starved.items() if names}
