"""``demo --state FILE``: the demo's state database is kept at FILE for ``events`` to read, and
the demo ends by naming the job that failed with its job page; a FILE it cannot use is one
line and exit 2, before anything starts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from monitor.cli.main import main
from monitor.simulator import builtin_scenario

pytestmark = pytest.mark.usefixtures("isolated_cli")


def demo_ids() -> dict[str, str]:
    return {job.name: job.id for job in builtin_scenario("demo").jobs}


def test_the_kept_state_tells_the_failed_jobs_story_and_the_demo_links_its_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "demo.db"
    # Its own process, as a user runs it: the demo configures logging for the whole process.
    demo = [sys.executable, "-m", "monitor", "demo", "--speed", "10", "--listen", "127.0.0.1:0"]
    done = subprocess.run(
        [*demo, "--state", str(state)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    resnet = demo_ids()["resnet-finetune"]
    port = re.search(r"metrics:  http://127\.0\.0\.1:(\d+)/metrics", out)
    assert port is not None
    url = f"http://127.0.0.1:{port.group(1)}/jobs/{resnet}"
    assert f"failed:   resnet-finetune  {url}" in out.splitlines()
    assert out.splitlines()[-2:] == [f"state kept in {state}", "demo finished"]

    config = tmp_path / "events.yaml"
    doc = {
        "api": {"endpoint": "http://127.0.0.1:9", "project_id": "demo-project"},
        "auth": {"type": "none"},
        "state": {"path": str(state)},
    }
    config.write_text(yaml.safe_dump(doc), encoding="utf-8")
    assert main(["events", "--config", str(config), "--job", "resnet-finetune"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # The same lines the demo printed live for that job, in the same order.
    live = [
        line for line in out.splitlines() if re.match(r"\d\d:\d\d:\d\d  resnet-finetune ", line)
    ]
    assert lines == live
    kinds = [line.split()[2] for line in lines]
    assert kinds[0] == "discovered" and "task_failed" in kinds
    assert "Running -> Failed" in "\n".join(lines)


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda tmp: tmp / "missing" / "demo.db", "the directory {tmp}/missing does not exist"),
        (lambda tmp: tmp / "old.db", "{tmp}/old.db exists; give a new file"),
    ],
)
def test_a_state_file_the_demo_cannot_use_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: object, says: str
) -> None:
    (tmp_path / "old.db").write_bytes(b"")
    path = make(tmp_path)  # type: ignore[operator]
    assert main(["demo", "--speed", "10", "--listen", "127.0.0.1:0", "--state", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith(f"config error: --state: {says.format(tmp=tmp_path)}")
