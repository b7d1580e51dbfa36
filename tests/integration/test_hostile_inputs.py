"""What a hostile API or a hostile config costs the real daemon: one poll, one job or one clear
line, never the process, the scrape, the events file or the host's memory.

Each test runs ``modelarts-monitor run`` against ``HostileApi`` (tests/integration/conftest.py),
which answers what no faithful ModelArts would: a 401-digit duration, a 5 MB job name, lone
UTF-16 surrogates, a task failing twice alike. The daemon runs from a scratch directory, so with
``PYTHONPATH`` set (to an older checkout, say) it runs that code rather than the working tree's.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import stat
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import job_doc
from tests.harness import TEST_SK, DaemonProc, command, daemon_config, free_port, wait_until
from tests.integration.conftest import (
    HostileApi,
    resident_bytes,
    strict_events,
    umask,
    value,
)

pytestmark = pytest.mark.integration

API_NAME_LIMIT = 64
"""The longest job name the API allows (show-training-job-details: 1-64 characters)."""


@pytest.fixture(autouse=True)
def _outside_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m monitor`` puts its working directory first on ``sys.path``; from the
    checkout that shadows ``PYTHONPATH``, so the daemon starts from the test's directory."""
    monkeypatch.chdir(tmp_path)


class Daemon:
    """``DaemonProc`` on a config for ``HostileApi``, with the files a test reads."""

    def __init__(self, tmp: Path, api: HostileApi, job_ids: list[str], **overrides: Any) -> None:
        self.events_file = tmp / "events.jsonl"
        port = free_port()
        config = daemon_config(tmp, api.url, job_ids, port=port, **overrides)
        self.proc = DaemonProc(config, port, tmp / "daemon.log")
        self.url = self.proc.url
        self.returncode: int | None = None

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return self.proc.metrics()

    def stop(self) -> None:
        """Stop it (in a ``finally``: asserting here would hide the failure being raised)."""
        self.returncode = self.proc.stop()

    def log(self) -> list[dict[str, Any]]:
        """The daemon's JSON log lines (anything else it printed is left out)."""
        entries = []
        for line in self.proc.output().splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    entries.append(entry)
        return entries

    def exited_cleanly(self) -> None:
        """After ``stop``: it drained and exited 0, and what it met was refused where it
        entered: no poll crashed on the way (no traceback, no log entry with an exception)."""
        output = self.proc.output()
        assert self.returncode == 0, output[-4000:]
        assert "Traceback" not in output, output[max(0, output.index("Traceback") - 2000) :][:6000]
        crashed = [e for e in self.log() if "exception" in e]
        assert not crashed, [{k: e.get(k) for k in ("event", "error", "job_id")} for e in crashed]


def series_of(metrics: dict[Any, float], job_id: str) -> dict[Any, float]:
    """The job's ``modelarts_training_job_*`` series: what the API said about it."""
    return {
        key: v
        for key, v in metrics.items()
        if key[0].startswith("modelarts_training_job_") and dict(key[1]).get("job_id") == job_id
    }


def polls(metrics: dict[Any, float], result: str) -> float:
    return metrics.get(("modelarts_monitor_polls_total", (("result", result),)), 0.0)


def events_of(events: list[dict[str, Any]], job_id: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["subject"] == job_id and e["type"] == f"modelarts.job.{kind}"]


# --- numbers and text bounded at the API edge ----------------------------------------------------


def test_a_401_digit_duration_fails_that_poll_and_keeps_the_last_good_series(
    tmp_path: Path, hostile_api: HostileApi
) -> None:
    bad, good = "huge-duration", "steady-neighbour"
    hostile_api.script(bad, job_doc(job_id=bad, name="bad", duration=60_000))
    hostile_api.script(good, job_doc(job_id=good, name="good", duration=60_000))
    daemon = Daemon(tmp_path, hostile_api, [bad, good])
    try:
        wait_until(
            lambda: all(
                value(daemon.metrics(), "modelarts_monitor_up", j) == 1 for j in (bad, good)
            ),
            what="both jobs up",
        )
        before = daemon.metrics()
        hostile_api.script(bad, job_doc(job_id=bad, name="bad", duration=int("9" * 401)))
        hostile_api.script(good, job_doc(job_id=good, name="good", duration=120_000))
        hostile_api.wait_fetched([bad, good])
        wait_until(
            lambda: value(daemon.metrics(), "modelarts_training_job_duration_seconds", good) == 120,
            what="the neighbour's new duration",
        )
        after = daemon.metrics()
    finally:
        daemon.stop()

    assert polls(after, "invalid_response") > polls(before, "invalid_response")
    assert value(after, "modelarts_monitor_up", bad) == 0
    assert value(after, "modelarts_monitor_up", good) == 1
    assert series_of(after, bad) == series_of(before, bad), "the last good values stay"
    assert value(after, "modelarts_training_job_duration_seconds", bad) == 60
    failures = [
        e for e in daemon.log() if (e.get("event"), e.get("job_id")) == ("poll_failed", bad)
    ]
    assert failures, "the refused poll is logged"
    assert all("status.duration" in e["error"] for e in failures), failures
    daemon.exited_cleanly()


def test_a_5mb_job_name_leaves_metrics_small_names_bounded_and_memory_flat(
    tmp_path: Path, hostile_api: HostileApi
) -> None:
    huge, plain = "huge-name", ["plain-a", "plain-b"]
    # Encoded once: the fake answers the same 5 MB on every poll.
    hostile_api.script(huge, json.dumps(job_doc(job_id=huge, name="x" * 5_000_000)).encode())
    for job_id in plain:
        hostile_api.script(job_id, job_doc(job_id=job_id, name=job_id))
    daemon = Daemon(tmp_path, hostile_api, [huge, *plain])
    try:
        wait_until(
            lambda: all(value(daemon.metrics(), "modelarts_monitor_up", j) == 1 for j in plain),
            what="the plain jobs up",
        )
        hostile_api.wait_fetched([huge, *plain], times=5, timeout=60)
        scrape = httpx.get(f"{daemon.url}/metrics", timeout=30).content
        rss = resident_bytes(daemon.proc.popen.pid)
        events_size = daemon.events_file.stat().st_size if daemon.events_file.exists() else 0
    finally:
        daemon.stop()

    assert len(scrape) < 100_000, f"/metrics is {len(scrape)} bytes for three jobs"
    names = {
        s.labels["job_name"]
        for family in text_string_to_metric_families(scrape.decode())
        for s in family.samples
        if "job_name" in s.labels
    }
    assert set(plain) <= names
    assert max(map(len, names)) <= API_NAME_LIMIT, "a job name longer than the API allows"
    assert events_size < 100_000, f"the events file is {events_size} bytes"
    # About 56 MiB with plain names; a 5 MB name kept and copied into every series, ~300 MiB.
    assert rss < 150 * 2**20, f"the daemon holds {rss / 2**20:.0f} MiB"
    daemon.exited_cleanly()


def test_lone_surrogates_in_a_name_a_task_message_and_a_reason_break_nothing(
    tmp_path: Path, hostile_api: HostileApi
) -> None:
    bad, other = "surrogate-job", "plain-neighbour"
    name = "bad-\ud800-name"
    worker = [{"task": "worker-0", "exit_code": 0, "message": ""}]
    killed = [{"task": "worker-0", "exit_code": 137, "message": "killed \udc00 by OOM"}]
    hostile_api.script(bad, job_doc(job_id=bad, name=name, task_statuses=worker))
    hostile_api.script(other, job_doc(job_id=other, name=other))
    daemon = Daemon(tmp_path, hostile_api, [bad, other])
    try:
        hostile_api.wait_fetched([bad, other])
        hostile_api.script(bad, job_doc(job_id=bad, name=name, task_statuses=killed))
        hostile_api.wait_fetched([bad])
        hostile_api.reasons(
            bad, [{"level": "Error", "message": "out of memory \ud83d on worker-0"}]
        )
        failed = job_doc(
            job_id=bad, name=name, phase="Failed", secondary_phase="Failed", task_statuses=killed
        )
        hostile_api.script(bad, failed)
        hostile_api.wait_fetched([bad])
        # Later events: the job is deleted, and its neighbour completes.
        hostile_api.script(bad, None)
        done = job_doc(job_id=other, name=other, phase="Completed", secondary_phase="Completed")
        hostile_api.script(other, done)
        later = {(bad, "not_found"), (other, "phase_changed")}
        wait_until(
            lambda: (
                later
                <= {
                    (e["subject"], e["type"].removeprefix("modelarts.job."))
                    for e in strict_events(daemon.events_file)
                }
            ),
            what="the later events of both jobs in the events file",
        )
        scrape = httpx.get(f"{daemon.url}/metrics", timeout=5)
        page = httpx.get(f"{daemon.url}/", timeout=5)
        events = strict_events(daemon.events_file)
    finally:
        daemon.stop()

    assert scrape.status_code == 200
    families = list(text_string_to_metric_families(scrape.text))
    assert any(f.name == "modelarts_training_job_phase" for f in families)
    assert page.status_code == 200
    (discovered,) = events_of(events, bad, "discovered")
    assert discovered["data"]["job_name"].startswith("bad-")
    assert discovered["data"]["job_name"].endswith("-name")
    (task_failed,) = events_of(events, bad, "task_failed")
    assert "by OOM" in task_failed["data"]["message"]
    (to_failed,) = [
        e for e in events_of(events, bad, "phase_changed") if e["data"]["to"] == "Failed"
    ]
    assert any("on worker-0" in r["message"] for r in to_failed["data"]["reasons"])
    assert [e["data"]["to"] for e in events_of(events, other, "phase_changed")] == ["Completed"]
    daemon.exited_cleanly()


# --- look-alike transitions ----------------------------------------------------------------------


def test_a_task_failing_twice_alike_in_one_run_delivers_two_task_failed_events(
    tmp_path: Path, hostile_api: HostileApi
) -> None:
    job = "twice-failing"
    run = [{"start_at": 1_700_000_010, "start_type": "init_or_rescheduled"}]

    def answer(exit_code: int | None) -> dict[str, Any]:
        tasks = [] if exit_code is None else [{"task": "worker-0", "exit_code": exit_code}]
        return job_doc(job_id=job, records=run, task_statuses=tasks)

    hostile_api.script(job, answer(None))
    daemon = Daemon(tmp_path, hostile_api, [job])
    try:
        for exit_code in (137, 0, 137):
            hostile_api.wait_fetched([job])
            hostile_api.script(job, answer(exit_code))
        wait_until(
            lambda: len(events_of(strict_events(daemon.events_file), job, "task_failed")) >= 2,
            what="two task_failed events in the events file",
        )
        hostile_api.wait_fetched([job])
        failures = events_of(strict_events(daemon.events_file), job, "task_failed")
    finally:
        daemon.stop()

    assert [e["data"]["exit_code"] for e in failures] == [137, 137]
    assert len({e["id"] for e in failures}) == 2, "two failures, two ids"
    daemon.exited_cleanly()


# --- files only their owner reads ----------------------------------------------------------------


def test_state_and_events_files_are_owner_only_under_umask_022(
    tmp_path: Path, hostile_api: HostileApi
) -> None:
    job = "private-job"
    state_dir, events_dir = tmp_path / "state", tmp_path / "events"
    db, events_file = state_dir / "state.db", events_dir / "events.jsonl"
    hostile_api.script(job, job_doc(job_id=job))
    with umask(0o022):
        daemon = Daemon(
            tmp_path,
            hostile_api,
            [job],
            state={"path": str(db)},
            events={"sinks": [{"type": "file", "path": str(events_file)}]},
        )
    try:
        wait_until(lambda: strict_events(events_file), what="the first event in the file")
        wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
        wait_until(lambda: wal.exists() and shm.exists(), what="the WAL and shared-memory files")
        modes = {
            p.name: stat.S_IMODE(p.stat().st_mode)
            for p in (state_dir, events_dir, db, wal, shm, events_file)
        }
    finally:
        daemon.stop()

    assert modes == {
        "state": 0o700,
        "events": 0o700,
        "state.db": 0o600,
        "state.db-wal": 0o600,
        "state.db-shm": 0o600,
        "events.jsonl": 0o600,
    }
    daemon.exited_cleanly()


# --- configs refused with one line ---------------------------------------------------------------


def refused(config: Path) -> subprocess.CompletedProcess[str]:
    """``run --config`` on a config that must be refused at once; fails the test if the daemon
    is still running after 10 s. Its address space is capped at 2 GiB, so a config that
    expands without bound costs a MemoryError, not the test machine."""

    def cap_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))

    try:
        return subprocess.run(
            command("run", "--config", str(config)),
            capture_output=True,
            text=True,
            timeout=10,
            env={**os.environ, "TEST_SK": TEST_SK},
            preexec_fn=cap_memory,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"run --config {config.name} still running after 10 s: {exc.stderr!r}")


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, lines[:5]
    return lines[0]


def test_a_yaml_alias_bomb_config_exits_2_at_once_with_one_line(tmp_path: Path) -> None:
    # The billion laughs: nine levels of nine aliases, 9**9 strings once expanded, in a few
    # hundred bytes, under a key the schema knows.
    levels = ["&a [" + ", ".join(['"lol"'] * 9) + "]"]
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        levels.append(f"&{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    config = daemon_config(tmp_path, "http://127.0.0.1:9", ["bomb-job"], port=free_port())
    doc = yaml.safe_load(config.read_text(encoding="utf-8"))
    doc["jobs"][0]["labels"] = {"team": "BOMB"}
    text = yaml.safe_dump(doc).replace("team: BOMB", f"team: [{', '.join(levels)}]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(text, encoding="utf-8")

    line = one_line(refused(bomb))
    assert line.startswith("config error:"), line


def test_a_job_id_ending_in_a_newline_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = daemon_config(tmp_path, "http://127.0.0.1:9", ["placeholder"], port=free_port())
    text = config.read_text(encoding="utf-8").replace("id: placeholder", 'id: "abc\\n"')
    config.write_text(text, encoding="utf-8")
    assert yaml.safe_load(text)["jobs"][0]["id"] == "abc\n"

    line = one_line(refused(config))
    assert "jobs[0].id" in line, line
