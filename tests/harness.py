"""Processes for integration and e2e tests: the simulator and the daemon as a user runs them.

Both run as real subprocesses of the installed ``modelarts-monitor`` command over loopback. The
simulator runs on a manual clock, so a test moves scenario time itself and then waits for an
observable fact (every job fetched twice since the move), never for a fixed time.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

TEST_AK = "TESTAK0123456789"
TEST_SK = "test-secret-key-never-logged-9f8e7d"
TEST_USER, TEST_DOMAIN = "monitor-bot", "acme"
TEST_PASSWORD = "iam-password-never-logged-4c3b2a"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``predicate`` every 20 ms until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "monitor", *args]


class Proc:
    """A subprocess that is always stopped, and whose output is kept for failure messages."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self._fh = log.open("ab")
        self.popen = subprocess.Popen(
            args, stdout=self._fh, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def wait(self, timeout: float = 20.0) -> int:
        return self.popen.wait(timeout=timeout)

    def stop(self) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
        self._fh.close()
        return self.popen.returncode


class SimulatorProc(Proc):
    def __init__(
        self, scenario: Path, tmp: Path, *, signed: bool = True, iam: bool = False
    ) -> None:
        self.port = free_port()
        args = command(
            "simulate",
            "--scenario",
            str(scenario),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--manual-clock",
        )
        env = {}
        if signed:
            args += ["--ak", TEST_AK]
            env["SIMULATOR_SK"] = TEST_SK
        if iam:
            args += ["--iam-user", TEST_USER, "--iam-domain", TEST_DOMAIN]
            env["SIMULATOR_IAM_PASSWORD"] = TEST_PASSWORD
        super().__init__(args, tmp / f"simulator-{self.port}.log", env)
        self.url = f"http://127.0.0.1:{self.port}"
        wait_until(self._up, what=f"simulator on {self.url}\n{self.output()}")

    def _up(self) -> bool:
        if self.popen.poll() is not None:
            raise AssertionError(f"simulator exited:\n{self.output()}")
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.url}/_sim/state", timeout=1).status_code == 200
        return False

    def state(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/_sim/state", timeout=5).json()  # type: ignore[no-any-return]

    def set_time(self, t: float) -> None:
        httpx.post(f"{self.url}/_sim/advance", json={"to": t}, timeout=5).raise_for_status()

    def wait_polled(
        self, job_ids: list[str], times: int = 2, timeout: float = 20.0, counter: str = "requests"
    ) -> None:
        """Wait until each job was fetched ``times`` more times: the first of them is then
        fully processed, because a job's next poll starts only after its previous one ended.
        With faults on, count ``ok_requests`` (clean answers) instead."""
        base = self.state().get(counter, {})
        wait_until(
            lambda: all(
                self.state().get(counter, {}).get(j, 0) >= base.get(j, 0) + times for j in job_ids
            ),
            timeout,
            f"{times} {counter} of {job_ids}",
        )

    def faults(self, **block: object) -> None:
        httpx.post(f"{self.url}/_sim/faults", json=block, timeout=5).raise_for_status()

    def tokens(self) -> list[str]:
        return httpx.get(f"{self.url}/_sim/tokens", timeout=5).json()["tokens"]  # type: ignore[no-any-return]


def daemon_config(
    tmp: Path, sim_url: str, job_ids: list[str], *, port: int, **overrides: Any
) -> Path:
    doc: dict[str, Any] = {
        "api": {"endpoint": sim_url, "project_id": "test-project", "timeout": "2s"},
        "auth": {"type": "aksk", "ak": TEST_AK, "sk": "${TEST_SK}"},
        "poll": {
            "interval": "100ms",
            "jitter": "10ms",
            "concurrency": 4,
            # The scenario moves on a manual clock: finished and deleted jobs keep the pace.
            "terminal_interval": "100ms",
            "not_found_interval": "100ms",
            "retry": {"max_backoff": "1s"},
        },
        "jobs": [{"id": j, "labels": {"team": "ml"}} for j in job_ids],
        "state": {"path": str(tmp / "state.db")},
        "events": {"sinks": [{"type": "log"}, {"type": "file", "path": str(tmp / "events.jsonl")}]},
        "server": {"listen": f"127.0.0.1:{port}"},
        "log": {"level": "info", "format": "json"},
        # Hang detection runs on wall-clock windows; tests that want it turn it on.
        "usage": {"enabled": False},
    }
    doc.update(overrides)
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


class DaemonProc(Proc):
    def __init__(self, config: Path, port: int, log: Path) -> None:
        env = {"TEST_SK": TEST_SK, "TEST_PASSWORD": TEST_PASSWORD}
        super().__init__(command("run", "--config", str(config)), log, env)
        self.url = f"http://127.0.0.1:{port}"
        wait_until(self._up, what=f"daemon on {self.url}")

    def _up(self) -> bool:
        if self.popen.poll() is not None:
            raise AssertionError(f"daemon exited {self.popen.returncode}:\n{self.output()}")
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        return False

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


class WebhookReceiver:
    """A real HTTP receiver on loopback, in a thread: records CloudEvents, answers ``status``."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        receiver = self
        self.status = 200
        self.events: list[dict[str, Any]] = []
        self.refused = 0
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    status = receiver.status
                    if status < 300:
                        doc = json.loads(body)
                        receiver.events.extend(doc if isinstance(doc, list) else [doc])
                    else:
                        receiver.refused += 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.events)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def require(binary: str) -> str:
    """A program the test needs: CI installs it (``.ci/run``), so there it must exist; on a
    developer machine without it the test is skipped, saying what to install."""
    import shutil

    import pytest

    path = shutil.which(binary)
    if path is None:
        message = f"{binary} not installed (apt-get install prometheus prometheus-alertmanager)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path
