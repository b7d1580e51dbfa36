"""Shared fixtures: the seed document from the API reference and a builder for variations."""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import pytest
import structlog

from monitor.store.database import Store

if TYPE_CHECKING:
    from monitor.simulator import Simulator

FIXTURES = Path(__file__).parent / "fixtures"
SEED_ID = "3faf5c03-aaa1-4cbe-879d-24b05d997347"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A test's state database, in a directory the store creates, as a daemon's first start."""
    return tmp_path / "state" / "state.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    """A real SQLite store at ``db_path``, closed after the test."""
    s = Store(db_path)
    yield s
    s.close()


@pytest.fixture
def seed_doc() -> dict[str, Any]:
    """The example response of the job-detail API reference, verbatim."""
    return json.loads((FIXTURES / "seed_job.json").read_text(encoding="utf-8"))


def job_doc(
    *,
    job_id: str = SEED_ID,
    name: str = "train-a",
    phase: str = "Running",
    secondary_phase: str = "Running",
    records: list[dict[str, Any]] | None = None,
    nodes: list[list[int]] | None = None,
    task_statuses: list[dict[str, Any]] | None = None,
    **status: Any,
) -> dict[str, Any]:
    """A job-detail document shaped like the seed, with the fields a test cares about."""
    doc: dict[str, Any] = {
        "kind": "job",
        "metadata": {
            "id": job_id,
            "name": name,
            "create_time": 1_700_000_000_000,
            "workspace_id": "0",
            "user_name": "alice",
        },
        "status": {
            "phase": phase,
            "secondary_phase": secondary_phase,
            "duration": 60_000,
            "start_time": 1_700_000_010_000,
            "node_count_metrics": nodes if nodes is not None else [[1_700_000_010_000, 2]],
            "tasks": ["worker-0", "worker-1"],
            "running_records": copy.deepcopy(records or []),
            "task_statuses": copy.deepcopy(task_statuses or []),
            **status,
        },
        "algorithm": {"engine": {"engine_name": "PyTorch", "engine_version": "2.1"}},
        "spec": {
            "resource": {
                "flavor_id": "modelarts.vm.gpu.8v100",
                "node_count": 2,
                "pool_id": "pool-1",
                "flavor_detail": {"flavor_type": "GPU"},
            }
        },
    }
    return doc


@pytest.fixture
def make_doc() -> Callable[..., dict[str, Any]]:
    return job_doc


class Serve(Protocol):
    async def __call__(self, sim: Simulator, **client_kw: Any) -> httpx.AsyncClient: ...


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start simulators on 127.0.0.1:0; yields a coroutine function returning an httpx client
    for each, and stops them all afterwards."""
    from monitor.simulator import start, stop

    runners: list[Any] = []
    clients: list[httpx.AsyncClient] = []

    async def _serve(sim: Simulator, **client_kw: Any) -> httpx.AsyncClient:
        access_log = client_kw.pop("access_log", False)
        runner, port = await start(sim, "127.0.0.1", 0, access_log=access_log)
        runners.append(runner)
        client_kw.setdefault("trust_env", False)
        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", **client_kw)
        clients.append(client)
        return client

    yield _serve
    for client in clients:
        await client.aclose()
    for runner in runners:
        await stop(runner)


async def wait_for(condition: Callable[[], object], timeout: float = 5.0) -> None:
    """Poll ``condition`` (a function, or a coroutine function) every 10 ms until it is
    truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        met = condition()
        if inspect.isawaitable(met):
            met = await met
        if met:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.01)


@pytest.fixture
def isolated_cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """For tests that run commands in-process: no ambient credentials, and the global logging
    set-up a command performs is undone afterwards."""
    for name in list(os.environ):
        if name.startswith(("HUAWEICLOUD_SDK_", "SIMULATOR_")):
            monkeypatch.delenv(name)
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)


def format1_row(state: Any) -> dict[str, Any]:
    """A job state as monitors before the versioned form wrote it (format 1: ``asdict()`` of
    the dataclasses, no ``format`` key), frozen here so old databases stay testable."""
    import dataclasses

    return {
        "job_id": state.job_id,
        "snapshot": dataclasses.asdict(state.snapshot) if state.snapshot else None,
        "phase_since": state.phase_since,
        "restarts": dict(state.restarts),
        "recoveries": {k: dict(v) for k, v in state.recoveries.items()},
        "last_reason": dict(state.last_reason),
        "gone": state.gone,
        "gone_since": state.gone_since,
        "hang": dataclasses.asdict(state.hang),
    }
