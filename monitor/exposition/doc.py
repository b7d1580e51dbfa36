"""docs/metrics.md, generated from the family tables so the doc cannot drift from the code."""

from __future__ import annotations

from monitor.exposition.families import HEALTH_FAMILIES, JOB_FAMILIES
from monitor.exposition.own import MonitorMetrics


def metrics_doc() -> str:
    """docs/metrics.md, generated so the doc cannot drift from the code (a test compares them).

    Regenerate with ``python -m monitor.exposition.doc > docs/metrics.md``.
    """
    rows = [
        "# Metrics",
        "",
        "Generated from `monitor/exposition/` by",
        "`python -m monitor.exposition.doc > docs/metrics.md`;",
        "a test fails when this file and the code disagree.",
        "",
        "Every job series carries `job_id`, `job_name` and the job's configured `labels`.",
        "Undocumented enum values are exported as `other`; the raw value goes to events and logs.",
        "",
        "## Job series",
        "",
        "| name | type | extra labels | help |",
        "| --- | --- | --- | --- |",
    ]
    for f in (*JOB_FAMILIES, *HEALTH_FAMILIES):
        rows.append(f"| `{f.name}` | {f.type} | {', '.join(f.labels)} | {f.help} |")
    rows += [
        "",
        "## The monitor itself",
        "",
        "| name | type | labels | help |",
        "| --- | --- | --- | --- |",
    ]
    own = MonitorMetrics()
    own.add_sink("sink")  # so the per-sink families show their labels
    for family in own.registry.collect():
        labels = sorted({k for s in family.samples for k in s.labels} - {"le"})
        name = f"{family.name}_total" if family.type == "counter" else family.name
        rows.append(f"| `{name}` | {family.type} | {', '.join(labels)} | {family.documentation} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(metrics_doc(), end="")
