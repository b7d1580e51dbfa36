"""Shared fixtures: the seed document from the API reference and a builder for variations."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
SEED_ID = "3faf5c03-aaa1-4cbe-879d-24b05d997347"


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
