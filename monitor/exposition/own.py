"""The monitor's own metrics: polls, deliveries, dead letters, events, jobs, shards, build.

prometheus-client's collector model, on a registry of the monitor's own (no process-global
state, so tests can build as many as they like). Per-job health (``up``, last success) is not
here: it carries each job's own label set and is rendered with the job's series (``series.py``).

With ``targets:`` configured, the counters about the API (``polls_total``,
``usage_polls_total``, ``api_requests_total``) carry a ``target`` label, since each target has
its own account, throttle and 429 pauses; without, they are exactly what they were before targets (a
prometheus-client family has one label set, so the choice is made when the registry is built).
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import disable_created_metrics
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from monitor import __version__
from monitor.core.events import EVENT_TYPES
from monitor.errors import POLL_RESULTS

API_ENDPOINTS = ("detail", "search", "events", "metrics")
"""The ``endpoint`` label of ``api_requests_total``: the API calls the client makes."""
OWN_LABELS = frozenset({"result", "reason", "type", "sink", "version", "endpoint"})
"""The label names of the monitor's own families below (a test keeps this true)."""


class MonitorMetrics:
    """The monitor's own counters, on a registry of its own (no process-global state)."""

    def __init__(self, targets: Sequence[str] = ()) -> None:
        """``targets``: the names of the configured targets (none for a single project)."""
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        self._targets = tuple(targets)
        self._children: dict[tuple[object, ...], Counter] = {}
        per_target = ["target"] if self._targets else []
        self.polls = Counter(
            "modelarts_monitor_polls",
            "Polls of the job-detail API by result.",
            [*per_target, "result"],
            registry=self.registry,
        )
        self.polls_skipped = Counter(
            "modelarts_monitor_polls_skipped",
            "Scheduled polls that did not run: overrun (the job's previous poll was still"
            " going) or missed (the process was too busy to start it in time).",
            ["reason"],
            registry=self.registry,
        )
        for reason in ("overrun", "missed"):
            self.polls_skipped.labels(reason)
        self.usage_polls = Counter(
            "modelarts_monitor_usage_polls",
            "Requests for a task's resource usage, by result (the labels of polls_total).",
            [*per_target, "result"],
            registry=self.registry,
        )
        for result in POLL_RESULTS:
            for target in self._targets or ("",):
                self.polls.labels(*self._by(target, result))
                self.usage_polls.labels(*self._by(target, result))
        self.api_requests = Counter(
            "modelarts_monitor_api_requests",
            "Requests sent to the ModelArts API, by endpoint (detail, search, events, metrics)"
            " and result (the labels of polls_total): what the monitor costs the account's"
            " throttle. result is the exchange's outcome; a body found unusable afterwards is"
            " counted ok here and invalid_response where it is used.",
            [*per_target, "endpoint", "result"],
            registry=self.registry,
        )
        for endpoint in API_ENDPOINTS:
            for result in POLL_RESULTS:
                for target in self._targets or ("",):
                    self.api_requests.labels(*self._by(target, endpoint, result))
        self.poll_duration = Histogram(
            "modelarts_monitor_poll_duration_seconds",
            "Time for one poll of one job: request, parse, diff and commit.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.events = Counter(
            "modelarts_monitor_events",
            "Events emitted, by type.",
            ["type"],
            registry=self.registry,
        )
        for type_ in EVENT_TYPES:
            self.events.labels(type_)
        self.outbox_pending = Gauge(
            "modelarts_monitor_outbox_pending",
            "Events in the outbox that this sink has not taken yet.",
            ["sink"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "modelarts_monitor_event_deliveries",
            "Event deliveries by sink and result: ok, retry (a failed attempt that will be"
            " retried), rejected (refused for good by the receiver, or impossible to serialize"
            " for the sink: each one is also a dead letter).",
            ["sink", "result"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "modelarts_monitor_dead_letters",
            "Events moved to a sink's dead letters because the sink can never take them (the"
            " receiver refused them for good, or they cannot be serialized for it); kept in the"
            " state database and listed by `modelarts-monitor status`.",
            ["sink"],
            registry=self.registry,
        )
        self.jobs = Gauge("modelarts_monitor_jobs", "Jobs being monitored.", registry=self.registry)
        self.shard_ordinal = Gauge(
            "modelarts_monitor_shard_ordinal",
            "This instance's shard: it watches the jobs whose job_id hashes to it.",
            registry=self.registry,
        )
        self.total_shards = Gauge(
            "modelarts_monitor_total_shards",
            "How many shards the jobs are split into (1: no sharding).",
            registry=self.registry,
        )
        self.total_shards.set(1)
        self.build_info = Gauge(
            "modelarts_monitor_build_info",
            "Version of the monitor, value 1.",
            ["version"],
            registry=self.registry,
        )
        self.build_info.labels(__version__).set(1)

    def _by(self, target: str, *labels: str) -> tuple[str, ...]:
        return (target, *labels) if self._targets else labels

    def count_poll(self, target: str, result: str) -> None:
        """One detail poll of a job of ``target`` ("" without targets) came to ``result``."""
        self._child(self.polls, target, result).inc()

    def count_usage(self, target: str, result: str) -> None:
        """One usage request of a job of ``target`` came to ``result``."""
        self._child(self.usage_polls, target, result).inc()

    def add_sink(self, name: str) -> None:
        """Every per-sink series, at 0, from the start: an alert on a rate or an increase
        needs the series before the first event goes wrong."""
        for result in ("ok", "retry", "rejected"):
            self.deliveries.labels(name, result)
        self.dead_letters.labels(name)
        self.outbox_pending.labels(name).set(0)

    def count_request(self, target: str, endpoint: str, result: str) -> None:
        """One API request of ``target``'s client and its outcome (its ``RequestCounter``)."""
        self._child(self.api_requests, target, endpoint, result).inc()

    def _child(self, family: Counter, target: str, *labels: str) -> Counter:
        """The family's series of these labels, found once: ``labels()`` validates and joins
        them on every call, and these are counted on every poll and request. A child stays the
        family's for good (nothing here removes or clears a series)."""
        key = (family, target, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = family.labels(*self._by(target, *labels))
        return child

    def render(self, *, openmetrics: bool = False) -> bytes:
        """The registry in the text format, or in OpenMetrics: then ending with ``# EOF``, so
        it comes last in the body, after the job families."""
        if openmetrics:
            body: bytes = openmetrics_latest(self.registry)  # type: ignore[no-untyped-call]
            return body
        return generate_latest(self.registry)
