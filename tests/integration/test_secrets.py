"""Credentials never leave the process: run the whole demo scenario with AK/SK signing and with
IAM token auth, with faults and debug logging on and a token revocation forcing a refresh, then
look for the SK, the password and every token issued in every log line (exceptions included),
event, metric, page and command output."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.harness import (
    TEST_DOMAIN,
    TEST_PASSWORD,
    TEST_SK,
    TEST_USER,
    DaemonProc,
    SimulatorProc,
    command,
    daemon_config,
    free_port,
)
from tests.integration.conftest import DEMO, EXPECTED, job_ids, step_times

pytestmark = pytest.mark.integration


def run_and_collect(tmp: Path, auth: str) -> tuple[str, list[str]]:
    """Everything the monitor wrote or served during a full scenario, and the secrets in play."""
    ids = list(job_ids().values())
    sim = SimulatorProc(DEMO, tmp, signed=auth == "aksk", iam=auth == "token")
    sim.faults(rate=0.2, retry_after=0.2, slow_seconds=3, seed=5)
    port = free_port()
    overrides = {"log": {"level": "debug", "format": "json"}}
    if auth == "token":
        overrides["auth"] = {
            "type": "token",
            "iam_endpoint": sim.url,
            "user": TEST_USER,
            "password": "${TEST_PASSWORD}",
            "domain": TEST_DOMAIN,
        }
    config = daemon_config(tmp, sim.url, ids, port=port, **overrides)
    daemon = DaemonProc(config, port, tmp / "daemon.log")
    served: list[str] = []
    try:
        for i, t in enumerate(step_times()):
            sim.set_time(t)
            if auth == "token" and i == len(step_times()) // 2:
                httpx.post(f"{sim.url}/_sim/revoke", timeout=5).raise_for_status()
            sim.wait_polled(ids, counter="ok_requests", timeout=60)
        for path in ("/metrics", "/", "/readyz", "/healthz"):
            served.append(httpx.get(f"{daemon.url}{path}", timeout=5).text)
        tokens = sim.tokens() if auth == "token" else []
    finally:
        daemon.stop()
        sim.stop()
    env = {**os.environ, "TEST_SK": TEST_SK, "TEST_PASSWORD": TEST_PASSWORD}
    for args in (("status", "--config", str(config)), ("once", "--config", str(config))):
        result = subprocess.run(
            command(*args), capture_output=True, text=True, timeout=60, check=False, env=env
        )
        served += [result.stdout, result.stderr]
    events = (tmp / "events.jsonl").read_text(encoding="utf-8")
    assert len(events.splitlines()) >= sum(EXPECTED.values()) - 1  # the scenario really ran
    haystack = "\n".join([daemon.output(), events, *served])
    secrets = [TEST_SK] if auth == "aksk" else [TEST_PASSWORD, *tokens]
    return haystack, secrets


@pytest.mark.parametrize("auth", ["aksk", "token"])
def test_no_credential_appears_anywhere(tmp_path: Path, auth: str) -> None:
    haystack, secrets = run_and_collect(tmp_path, auth)
    if auth == "token":
        assert len(secrets) >= 3, "the revocation forced at least one refresh"
    assert '"poll_failed"' in haystack, "error paths were exercised"
    for secret in secrets:
        assert secret not in haystack
        assert secret[:16] not in haystack, "not even a prefix"
