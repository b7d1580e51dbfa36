"""docs/metrics.md, generated from the family tables so the doc cannot drift from the code."""

from __future__ import annotations

from monitor.exposition.families import FAMILIES
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
        "The config's `metrics:` block sets how many series a job costs:",
        "",
        "- `state_sets: full` (the default) exports every documented state of a **state set**",
        "  (marked below) at 0 or 1; `sparse` exports only the current state's series, at 1.",
        "  Select states with `== 1` and a query reads both modes alike.",
        "- `allow` / `deny`: regexes, each matching a whole metric name, choose which job",
        "  families are exported (`allow` empty: all; `deny` applied after it). The monitor's",
        "  own `modelarts_monitor_*` families, `modelarts_monitor_up` included, are always",
        "  exported. A job family a shipped alert reads can be filtered away; the monitor then",
        "  logs `metrics_filter_starves_alerts` at start, naming the alerts.",
        "",
        "A job the API says no longer exists is *gone*, not down: `modelarts_training_job_gone`",
        "is 1 and `modelarts_monitor_up` 0; the shipped `ModelArtsMonitorCannotPollJob` leaves",
        "it out (`modelarts_monitor_up == 0 unless modelarts_training_job_gone == 1`). Its series",
        "keep their last values until `poll.not_found_retention`, then leave. A job the monitor",
        "never saw (a mistyped id) has no job series, `_gone` included, so it keeps alerting.",
        "",
        "## Job series",
        "",
        "| name | type | extra labels | help |",
        "| --- | --- | --- | --- |",
    ]
    for f in FAMILIES:  # the order a scrape has: job families, per-task usage, per-job health
        note = "**State set.** " if f.state_set else ""
        rows.append(f"| `{f.name}` | {f.type} | {', '.join(f.labels)} | {note}{f.help} |")
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
