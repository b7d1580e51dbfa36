"""SIGHUP re-reads the config of a running daemon: jobs added start polling, removed jobs'
series disappear, changed labels apply, and a broken file leaves the running config alone."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import yaml

from tests.harness import DaemonProc, SimulatorProc, daemon_config, free_port, wait_until
from tests.integration.conftest import DEMO, job_ids

pytestmark = pytest.mark.integration


def jobs_in(
    metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float],
) -> dict[str, dict[str, str]]:
    """job_id -> its labels, from modelarts_monitor_up."""
    return {
        dict(labels)["job_id"]: dict(labels)
        for (name, labels), _ in metrics.items()
        if name == "modelarts_monitor_up"
    }


def test_sighup_adds_removes_relabels_and_survives_a_broken_file(tmp_path: Path) -> None:
    ids = job_ids()
    bert, resnet, llama = ids["bert-pretrain"], ids["resnet-finetune"], ids["llama-sft"]
    sim = SimulatorProc(DEMO, tmp_path)
    port = free_port()
    config = daemon_config(tmp_path, sim.url, [bert, resnet], port=port)
    daemon = DaemonProc(config, port, tmp_path / "daemon.log")
    try:
        sim.wait_polled([bert, resnet])
        assert set(jobs_in(daemon.metrics())) == {bert, resnet}

        doc = yaml.safe_load(config.read_text())
        doc["jobs"] = [
            {"id": bert, "labels": {"team": "research", "tier": "gold"}},
            {"id": llama, "labels": {"team": "llm"}},
        ]
        config.write_text(yaml.safe_dump(doc))
        daemon.signal(signal.SIGHUP)

        def reloaded() -> bool:
            jobs = jobs_in(daemon.metrics())
            return set(jobs) == {bert, llama} and jobs[bert].get("tier") == "gold"

        wait_until(reloaded, 15, "the reloaded job set")
        sim.wait_polled([llama])
        metrics = daemon.metrics()
        assert jobs_in(metrics)[bert]["team"] == "research"
        assert not any(dict(k).get("job_id") == resnet for _, k in metrics), "resnet's series left"
        assert metrics[("modelarts_monitor_jobs", ())] == 2
        llama_phase = [
            v
            for (n, k), v in metrics.items()
            if n == "modelarts_training_job_phase"
            and dict(k).get("job_id") == llama
            and dict(k)["phase"] == "Creating"
        ]
        assert llama_phase == [1.0], "the added job is polled and exported"

        config.write_text("jobs: [this is: not valid\n")
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: "reload_failed" in daemon.output(), 15, "the reload to be refused")
        sim.wait_polled([bert, llama])
        assert set(jobs_in(daemon.metrics())) == {bert, llama}, "the running config stays"
        assert daemon.popen.poll() is None
    finally:
        assert daemon.stop() == 0
        sim.stop()
