"""The house of DESIGN.md, checked on the imports: rooms depend only the way the data flows.

A rule broken here is a design change: make it on purpose, in DESIGN.md and
docs/architecture.md too.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "monitor"
STDLIB = sys.stdlib_module_names


def imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (also inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def room_files(room: str) -> list[Path]:
    return sorted((PACKAGE / room).rglob("*.py"))


@pytest.mark.parametrize("path", room_files("core"), ids=lambda p: p.name)
def test_core_is_pure_it_imports_no_io_no_wire_and_no_other_room(path: Path) -> None:
    io = {"asyncio", "socket", "sqlite3", "time", "os", "pathlib", "io", "threading", "ssl"}
    for name in imports(path):
        top = name.split(".")[0]
        if top == "monitor":
            assert name.startswith("monitor.core"), f"{path.name} imports {name}"
        else:
            assert top in STDLIB, f"{path.name} imports the third-party {name}"
            assert top not in io, f"{path.name} imports {name}, which does I/O or reads clocks"


@pytest.mark.parametrize("path", room_files("simulator"), ids=lambda p: p.name)
def test_the_simulator_knows_nothing_of_the_monitor_but_the_signers_verify(path: Path) -> None:
    own = {n for n in imports(path) if n.startswith("monitor") and n != "monitor"}
    foreign = {n for n in own if not n.startswith("monitor.simulator")}
    assert foreign <= {"monitor.modelarts.auth.aksk", "monitor.modelarts.auth.aksk.verify"}


@pytest.mark.parametrize(
    ("room", "forbidden"),
    [
        ("modelarts", ("daemon", "store", "exposition", "delivery", "web", "cli", "simulator")),
        ("store", ("daemon", "modelarts", "exposition", "delivery", "web", "cli")),
        ("exposition", ("daemon", "modelarts", "store", "delivery", "web", "cli")),
        ("delivery", ("daemon", "modelarts", "exposition.series", "web", "cli")),
        ("web", ("daemon", "modelarts", "store", "delivery", "exposition", "config", "cli")),
        ("config", ("daemon", "modelarts", "store", "delivery", "web", "cli")),
        ("daemon", ("cli", "simulator")),
    ],
)
def test_rooms_do_not_reach_back_up_the_flow(room: str, forbidden: tuple[str, ...]) -> None:
    for path in room_files(room):
        for name in imports(path):
            for other in forbidden:
                assert not name.startswith(f"monitor.{other}"), (
                    f"{path.relative_to(PACKAGE)} imports {name}"
                )


def test_no_module_is_past_400_lines() -> None:
    sizes = {p: len(p.read_text(encoding="utf-8").splitlines()) for p in PACKAGE.rglob("*.py")}
    assert max(sizes.values()) < 400, max(sizes, key=sizes.__getitem__)


def test_no_test_module_imports_another_test_module() -> None:
    tests = Path(__file__).resolve().parents[1]
    for path in tests.rglob("test_*.py"):
        for name in imports(path):
            leaf = name.split(".")[-1]
            assert not (name.startswith("tests.") and leaf.startswith("test_")), (
                f"{path.relative_to(tests)} imports {name}: shared rigs belong in conftest.py"
            )


def test_docs_architecture_lists_every_module_once() -> None:
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    listed = re.findall(r"^\| `(monitor/[^`]+\.py)` \|", doc, flags=re.M)
    modules = sorted(str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("*.py"))
    assert sorted(listed) == modules, "docs/architecture.md and the tree disagree"
