"""Prometheus: the metric family table, the pre-rendered per-job series, the monitor's own."""
