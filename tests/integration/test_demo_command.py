"""``modelarts-monitor demo`` as a person runs it: prints every kind of event, exits 0."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import pytest

from monitor.core.events import EVENT_TYPES
from tests.harness import command, read_events

pytestmark = pytest.mark.integration


def test_demo_prints_every_event_type_and_exits_by_itself(tmp_path: Path) -> None:
    events_file = tmp_path / "events.jsonl"
    result = subprocess.run(
        command(
            "demo", "--speed", "10", "--listen", "127.0.0.1:0", "--events-file", str(events_file)
        ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "metrics:  http://127.0.0.1:" in out
    assert out.rstrip().endswith("demo finished")
    assert "Traceback" not in result.stderr
    printed = Counter(line.split()[2] for line in out.splitlines() if line[:2].isdigit())
    assert set(printed) == set(EVENT_TYPES)
    assert sum(printed.values()) == 40  # 38 transitions, plus a hang and its clearing
    written = read_events(events_file)
    assert len(written) == 40
    assert len({e["id"] for e in written}) == 40
    assert "task worker-0 exited with 137" in out
    assert "4 -> 3" in out


def test_demo_leaves_no_state_behind(tmp_path: Path) -> None:
    """The state database lives in a temporary directory that is removed at the end."""
    before = set(Path("/tmp").glob("modelarts-monitor-demo-*"))
    result = subprocess.run(
        command("demo", "--speed", "10", "--listen", "127.0.0.1:0"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert set(Path("/tmp").glob("modelarts-monitor-demo-*")) == before
    assert list(tmp_path.iterdir()) == []
