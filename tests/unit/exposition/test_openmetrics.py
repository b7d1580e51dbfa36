"""OpenMetrics: the same sample lines as the text format under OpenMetrics headers, and a body
both of prometheus-client's parsers and promtool read as the text format's samples."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from monitor.exposition import openmetrics
from monitor.exposition.families import FAMILIES
from monitor.exposition.own import MonitorMetrics
from monitor.exposition.series import SeriesStore
from tests.conftest import FIXTURES, job_doc
from tests.harness import require
from tests.unit.exposition.conftest import NOW, body, state_of

COUNTERS = [f.name for f in FAMILIES if f.type == "counter"]


def samples(families: Any) -> list[tuple[str, tuple[tuple[str, str], ...], float]]:
    return sorted(
        (s.name, tuple(sorted(s.labels.items())), s.value) for f in families for s in f.samples
    )


def busy_store(seed_doc: dict[str, Any]) -> SeriesStore:
    """Two jobs using every kind of family: counters, units, usage ratios, escaped labels."""
    store = SeriesStore(project_id="proj")
    seed = state_of(seed_doc)
    other = state_of(
        job_doc(
            job_id="b",
            name='odd "name"\\with',
            task_statuses=[{"task": "w", "exit_code": 1}],
            records=[{"end_at": 1, "end_recover": "proc_restart"}],
        )
    )
    for i, state in enumerate((seed, other)):
        store.update(state, {"team": f"t{i}"})
        store.set_health(state.job_id, True, NOW)
    store.set_usage(seed.job_id, {"worker-0": {"cpuUsage": 0.25, "gpuUtil": 0.5}})
    return store


def test_the_seed_job_renders_the_golden_openmetrics(seed_store: SeriesStore) -> None:
    """Golden, as the text format's ``seed.prom``: the same samples under OpenMetrics headers.
    The daemon's body ends with the own registry's OpenMetrics text, which brings ``# EOF``."""
    got = b"".join(seed_store.scrape(openmetrics=True)) + b"# EOF\n"
    assert got == (FIXTURES / "golden" / "seed.om").read_bytes()


def test_sample_lines_are_the_same_in_both_formats(seed_store: SeriesStore) -> None:
    text = [ln for ln in seed_store.render().splitlines() if not ln.startswith(b"#")]
    om = b"".join(seed_store.scrape(openmetrics=True)).splitlines()
    assert [ln for ln in om if not ln.startswith(b"#")] == text


def test_counters_are_named_as_prometheus_client_names_its_own(seed_store: SeriesStore) -> None:
    """A counter's family is named without ``_total`` in HELP and TYPE, its samples with it,
    exactly as prometheus-client writes a counter in OpenMetrics."""
    om = b"".join(seed_store.scrape(openmetrics=True)).decode()
    for name in COUNTERS:
        family = name.removesuffix("_total")
        assert f"# TYPE {family} counter\n" in om and f"# HELP {family} " in om
        assert f"# TYPE {name} " not in om and f"# HELP {name} " not in om
    registry = CollectorRegistry()
    Counter("modelarts_training_job_restarts", "x", registry=registry).inc()
    theirs = openmetrics_latest(registry).decode()  # type: ignore[no-untyped-call]
    assert "# TYPE modelarts_training_job_restarts counter\n" in theirs
    assert "\nmodelarts_training_job_restarts_total 1.0\n" in theirs


def test_units_are_declared_only_for_names_ending_in_a_base_unit(seed_store: SeriesStore) -> None:
    om = b"".join(seed_store.scrape(openmetrics=True)).decode()
    units = dict(re.findall(r"^# UNIT (\S+) (\S+)$", om, re.MULTILINE))
    shown = [f.name for f in FAMILIES]
    assert units == {n: n.rsplit("_", 1)[1] for n in shown if n.endswith(("_seconds", "_ratio"))}
    families = {f.name: f for f in parse_openmetrics(om + "# EOF\n")}
    assert {n: families[n].unit for n in units} == units  # the parser checks name and unit agree


def test_a_quote_in_help_is_escaped_as_openmetrics_wants() -> None:
    header = openmetrics.header(b'# HELP x_seconds Says "hi".\n# TYPE x_seconds gauge\n')
    assert header == (
        b'# HELP x_seconds Says \\"hi\\".\n# TYPE x_seconds gauge\n# UNIT x_seconds seconds\n'
    )
    registry = CollectorRegistry()
    Gauge("x_seconds", 'Says "hi".', registry=registry)
    theirs = openmetrics_latest(registry)  # type: ignore[no-untyped-call]
    assert theirs.startswith(b'# HELP x_seconds Says \\"hi\\".\n# TYPE x_seconds gauge\n')


def test_the_openmetrics_body_ends_once_with_eof_after_the_own_families(
    seed_doc: dict[str, Any],
) -> None:
    om = body(busy_store(seed_doc), openmetrics=True)
    assert om.endswith(b"\n# EOF\n") and om.count(b"# EOF") == 1
    assert b"# EOF" not in body(busy_store(seed_doc), openmetrics=False)


def test_both_parsers_read_both_bodies_as_the_same_samples(seed_doc: dict[str, Any]) -> None:
    store, own = busy_store(seed_doc), MonitorMetrics()
    own.events.labels("discovered").inc(2)
    text = body(store, own, openmetrics=False).decode()
    om = body(store, own, openmetrics=True).decode()
    expected = samples(parse_text(text))
    assert samples(parse_openmetrics(om)) == expected
    assert samples(parse_text(om)) == expected
    assert any(s[0] == "modelarts_training_job_restarts_total" for s in expected)
    names = {dict(labels).get("job_name", "") for _, labels, _ in expected}
    assert any('"' in n and "\\" in n for n in names), "a name that needs escaping"


def promtool_findings(promtool: str, exposition: bytes) -> tuple[int, list[str]]:
    result = subprocess.run(
        [promtool, "check", "metrics"], input=exposition, capture_output=True, timeout=30
    )
    out = (result.stdout + result.stderr).decode()
    return result.returncode, [line for line in out.splitlines() if line.strip()]


def test_promtool_accepts_both_bodies(seed_doc: dict[str, Any]) -> None:
    """The text body is clean. ``promtool check metrics`` reads only the text format: on an
    OpenMetrics body it parses every line and objects only that a counter's ``_total``
    samples have no HELP of that name, which is how OpenMetrics names counters; it says the
    same of prometheus-client's own OpenMetrics output, and of nothing else here."""
    promtool = require("promtool")
    store = busy_store(seed_doc)
    assert promtool_findings(promtool, body(store, openmetrics=False)) == (0, [])
    code, findings = promtool_findings(promtool, body(store, openmetrics=True))
    assert code in (0, 3), findings  # 3: lint findings; 1 would be a parse error
    om = body(store, openmetrics=True).decode()
    counters = {f"{name}_total" for name in re.findall(r"^# TYPE (\S+) counter$", om, re.M)}
    assert findings and all(re.fullmatch(r"\S+_total no help text", f) for f in findings), findings
    assert {f.split()[0] for f in findings} <= counters
    assert "modelarts_training_job_restarts_total no help text" in findings
    registry = CollectorRegistry()
    Counter("x_requests", "Help.", registry=registry).inc()
    theirs = openmetrics_latest(registry)  # type: ignore[no-untyped-call]
    assert "x_requests_total no help text" in promtool_findings(promtool, theirs)[1]


@pytest.mark.parametrize("openmetrics_format", [False, True])
def test_families_keep_their_order_and_headers_in_both_formats(
    seed_store: SeriesStore, openmetrics_format: bool
) -> None:
    text = b"".join(seed_store.scrape(openmetrics=openmetrics_format)).decode()
    helps = re.findall(r"^# HELP (\S+) ", text, re.MULTILINE)
    strip = (lambda n: n.removesuffix("_total")) if openmetrics_format else (lambda n: n)
    assert helps == [strip(f.name) if f.type == "counter" else f.name for f in FAMILIES]
