"""What the exposition tests share: states made from job documents, a store holding the seed
job, and the two bodies of a scrape as the daemon composes them (job families, then the
monitor's own)."""

from __future__ import annotations

from typing import Any

import pytest

from monitor.core.diff import observe
from monitor.core.state import JobState
from monitor.exposition.own import MonitorMetrics
from monitor.exposition.series import SeriesStore
from monitor.modelarts.parse import parse_job

NOW = 1_800_000_000.0


def state_of(doc: dict[str, Any], prev: JobState | None = None, now: float = NOW) -> JobState:
    return observe(prev, parse_job(doc), now)[0]


def body(store: SeriesStore, own: MonitorMetrics | None = None, *, openmetrics: bool) -> bytes:
    """A whole scrape in one format, as ``App.render_metrics`` yields it."""
    own = own or MonitorMetrics()
    return b"".join([*store.scrape(openmetrics=openmetrics), own.render(openmetrics=openmetrics)])


@pytest.fixture
def seed_store(seed_doc: dict[str, Any]) -> SeriesStore:
    """The seed job as the golden files show it: labelled, polled, up."""
    store = SeriesStore(project_id="0a1b2c3d4e5f")
    state = state_of(seed_doc)
    store.update(state, {"team": "nlp"})
    store.set_health(state.job_id, True, NOW + 0.5)
    return store
