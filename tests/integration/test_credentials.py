"""Credentials cloud hosts use, end to end: ``modelarts-monitor run`` against
``modelarts-monitor simulate`` over loopback.

* ``auth.type: metadata``: the daemon takes the host agency's temporary AK/SK from the
  simulator's metadata service; they live two seconds, so they expire and are renewed many
  times during the run, and not one poll fails.
* ``auth.type: aksk`` with a temporary AK/SK and ``HUAWEICLOUD_SDK_SECURITY_TOKEN``: the
  simulator verifies the signature made with the temporary SK and the token that goes with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import (
    TEST_AK,
    TEST_SK,
    DaemonProc,
    Proc,
    SimulatorProc,
    command,
    daemon_config,
    free_port,
    read_events,
    wait_until,
)
from tests.integration.conftest import DEMO, check_events, job_ids, step_times

pytestmark = pytest.mark.integration

CREDENTIAL_TTL = 2.0
SWEEP_ID = job_ids()["data-sweep"]  # deleted at the end of the demo scenario


class MetadataSimulator(SimulatorProc):
    """The demo scenario, AK/SK-signed, whose metadata service issues short-lived credentials."""

    def __init__(self, tmp: Path, credential_ttl: float) -> None:
        self.port = free_port()
        args = command(
            "simulate",
            "--scenario",
            str(DEMO),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--manual-clock",
            "--ak",
            TEST_AK,
            "--credential-ttl",
            str(credential_ttl),
        )
        Proc.__init__(self, args, tmp / f"simulator-{self.port}.log", {"SIMULATOR_SK": TEST_SK})
        self.url = f"http://127.0.0.1:{self.port}"
        wait_until(self._up, what=f"simulator on {self.url}\n{self.output()}")


def poll_results(daemon: DaemonProc) -> dict[str, float]:
    """``modelarts_monitor_polls_total`` summed per ``result``."""
    totals: dict[str, float] = {}
    for (name, labels), value in daemon.metrics().items():
        if name == "modelarts_monitor_polls_total":
            result = dict(labels)["result"]
            totals[result] = totals.get(result, 0.0) + value
    return totals


def failed(results: dict[str, float]) -> dict[str, float]:
    """Poll results that are failures (``not_found`` is the scenario's deleted job)."""
    return {k: v for k, v in results.items() if k not in ("ok", "not_found") and v}


def up_of(daemon: DaemonProc, ids: list[str]) -> dict[str, float | None]:
    metrics = daemon.metrics()
    found: dict[str, float | None] = dict.fromkeys(ids)
    for (name, labels), value in metrics.items():
        job = dict(labels).get("job_id")
        if name == "modelarts_monitor_up" and job in found:
            found[job] = value
    return found


def run_daemon(tmp: Path, sim: SimulatorProc, auth: dict[str, Any]) -> DaemonProc:
    ids = list(job_ids().values())
    port = free_port()
    config = daemon_config(tmp, sim.url, ids, port=port, auth=auth)
    return DaemonProc(config, port, tmp / "daemon.log")


def test_metadata_credentials_expire_and_renew_during_the_run_with_no_failed_poll(
    tmp_path: Path,
) -> None:
    ids = list(job_ids().values())
    sim = MetadataSimulator(tmp_path, CREDENTIAL_TTL)
    daemon = None
    try:
        daemon = run_daemon(tmp_path, sim, {"type": "metadata", "metadata_url": sim.url})
        for t in step_times():
            sim.set_time(t)
            sim.wait_polled(ids)
        # However fast the scenario went: several lifetimes pass with polls going on.
        wait_until(
            lambda: sim.state().get("credentials_issued", 0) >= 4,
            timeout=30,
            what="credentials renewed three times",
        )
        sim.wait_polled(ids)
        results = poll_results(daemon)
        ups = up_of(daemon, ids)
    finally:
        if daemon is not None:
            daemon.stop()
        sim.stop()
    assert results.get("ok", 0) > 0
    assert failed(results) == {}, daemon.output()
    assert {job: up for job, up in ups.items() if up != 1.0} == {SWEEP_ID: 0.0}, "only gone"
    check_events(read_events(tmp_path / "events.jsonl"), job_ids())


def test_a_temporary_ak_sk_with_its_security_token_is_verified_by_the_simulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token comes from ``HUAWEICLOUD_SDK_SECURITY_TOKEN``, as with the SDK."""
    ids = list(job_ids().values())
    sim = MetadataSimulator(tmp_path, 3600.0)
    daemon = None
    try:
        credential = httpx.get(f"{sim.url}/openstack/latest/securitykey", timeout=5).json()
        temporary = credential["credential"]
        monkeypatch.setenv("HUAWEICLOUD_SDK_SECURITY_TOKEN", temporary["securitytoken"])
        auth = {"type": "aksk", "ak": temporary["access"], "sk": temporary["secret"]}
        daemon = run_daemon(tmp_path, sim, auth)
        for t in step_times()[:4]:
            sim.set_time(t)
            sim.wait_polled(ids)
        results = poll_results(daemon)
        ups = up_of(daemon, ids)
        output = daemon.output()
    finally:
        if daemon is not None:
            daemon.stop()
        sim.stop()
    assert results.get("ok", 0) > 0
    assert failed(results) == {}, output
    assert set(ups.values()) == {1.0}
    assert temporary["securitytoken"] not in output
    assert temporary["secret"] not in output
