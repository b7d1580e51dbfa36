"""What the daemon's start-up costs before its first poll, for N configured jobs.

    python benchmarks/startup.py [--jobs 10000] [--rounds 5]

Writes the scale benchmark's config for N jobs (``scale.daemon_config``: one label a job, as
``yaml.safe_dump`` writes it, about 70 bytes a job) and measures, each in a fresh interpreter
as ``modelarts-monitor run`` starts:

- ``import monitor.cli.main``: the command's imports;
- ``load_settings`` of that file: YAML, ``${ENV}`` expansion and the schema's validation;
- the same ``load_settings`` with PyYAML's pure-Python parser (``yaml_tree.LIBYAML`` off), what
  a PyYAML built without libyaml costs (left out where the code has no such switch).

Each figure is the least of ``--rounds`` rounds, wall and CPU seconds, since other processes
only ever add to a round. It prints one JSON object with the machine. To compare with another
checkout, run it with that checkout first on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import daemon_config, machine

_ROUND = """
import json, sys, time
wall, cpu = time.perf_counter(), time.process_time()
import monitor.cli.main
imported = (time.perf_counter() - wall, time.process_time() - cpu)
from monitor.config import loading
if sys.argv[2] == "python":
    from monitor.config import yaml_tree
    yaml_tree.LIBYAML = False
wall, cpu = time.perf_counter(), time.process_time()
settings = loading.load_settings(sys.argv[1], env={})
loaded = (time.perf_counter() - wall, time.process_time() - cpu)
assert len(settings.jobs) == int(sys.argv[3]), len(settings.jobs)
print(json.dumps({"import": imported, "load_settings": loaded}))
"""
"""One start-up in a fresh interpreter: argv is the config, the parser, the jobs expected."""

_HAS_SWITCH = """
import importlib.util, sys
sys.exit(0 if importlib.util.find_spec("monitor.config.yaml_tree") else 1)
"""


def one_round(config: Path, parser: str, jobs: int) -> dict[str, tuple[float, float]]:
    out = subprocess.run(
        [sys.executable, "-c", _ROUND, str(config), parser, str(jobs)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    figures: dict[str, tuple[float, float]] = json.loads(out)
    return figures


def least(rounds: list[dict[str, tuple[float, float]]], key: str) -> dict[str, float]:
    return {
        "wall_s": round(min(r[key][0] for r in rounds), 3),
        "cpu_s": round(min(r[key][1] for r in rounds), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    has_switch = subprocess.run([sys.executable, "-c", _HAS_SWITCH], check=False).returncode == 0
    parsers = ["default", "python"] if has_switch else ["default"]
    with tempfile.TemporaryDirectory(prefix="startup-") as tmp:
        config = daemon_config(Path(tmp), "startup", "http://127.0.0.1:9", args.jobs, 30.0)
        rounds: dict[str, list[dict[str, tuple[float, float]]]] = {p: [] for p in parsers}
        for _ in range(args.rounds):  # interleaved, so a busy spell costs every variant alike
            for name in parsers:
                rounds[name].append(one_round(config, name, args.jobs))
        result: dict[str, Any] = {
            "jobs": args.jobs,
            "config_bytes": config.stat().st_size,
            "rounds": args.rounds,
            "import_monitor_cli_main": least(rounds["default"], "import"),
            "load_settings": least(rounds["default"], "load_settings"),
        }
    if has_switch:
        result["load_settings_without_libyaml"] = least(rounds["python"], "load_settings")
    result["pythonpath"] = os.environ.get("PYTHONPATH", "")
    result["machine"] = machine()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
