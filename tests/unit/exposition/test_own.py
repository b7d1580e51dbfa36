"""own.py: the monitor's own counters keep their series per target and result, and a poll's
count finds its series without asking the family for it again."""

from __future__ import annotations

import pytest
from prometheus_client import Counter
from prometheus_client.parser import text_string_to_metric_families

from monitor.exposition.own import MonitorMetrics


def samples(metrics: MonitorMetrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
        if s.name == name and s.value
    }


def test_counts_land_in_the_series_of_their_own_target_and_result() -> None:
    metrics = MonitorMetrics(["east", "west"])
    for target, result in [("east", "ok"), ("east", "ok"), ("west", "ok"), ("east", "timeout")]:
        metrics.count_poll(target, result)
        metrics.count_usage(target, result)
        metrics.count_request(target, "detail", result)
    metrics.count_request("east", "events", "ok")

    polls = {(("result", "ok"), ("target", "east")): 2.0}
    polls |= {(("result", "ok"), ("target", "west")): 1.0}
    polls |= {(("result", "timeout"), ("target", "east")): 1.0}
    assert samples(metrics, "modelarts_monitor_polls_total") == polls
    assert samples(metrics, "modelarts_monitor_usage_polls_total") == polls
    assert samples(metrics, "modelarts_monitor_api_requests_total") == {
        (("endpoint", "detail"), *key): value for key, value in polls.items()
    } | {(("endpoint", "events"), ("result", "ok"), ("target", "east")): 1.0}


def test_without_targets_the_counters_carry_no_target_label() -> None:
    metrics = MonitorMetrics()
    metrics.count_poll("", "ok")
    metrics.count_request("", "detail", "ok")
    assert samples(metrics, "modelarts_monitor_polls_total") == {(("result", "ok"),): 1.0}
    assert samples(metrics, "modelarts_monitor_api_requests_total") == {
        (("endpoint", "detail"), ("result", "ok")): 1.0
    }


def test_counting_polls_and_requests_looks_each_series_up_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``labels()`` checks and joins the label values on every call; a poll counts itself and
    its request each time, so each (target, result) series is found once and kept."""
    metrics = MonitorMetrics(["east"])
    asked: list[tuple[str, ...]] = []
    labels = Counter.labels

    def counted(self: Counter, *values: str) -> Counter:
        asked.append(values)
        return labels(self, *values)

    monkeypatch.setattr(Counter, "labels", counted)
    for _ in range(50):
        metrics.count_poll("east", "ok")
        metrics.count_usage("east", "ok")
        metrics.count_request("east", "detail", "ok")
    assert sorted(asked) == [("east", "detail", "ok"), ("east", "ok"), ("east", "ok")]
    assert samples(metrics, "modelarts_monitor_polls_total") == {
        (("result", "ok"), ("target", "east")): 50.0
    }
