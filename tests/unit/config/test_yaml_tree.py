"""yaml_tree.py: libyaml's parser reads the config, and a file reads, and fails, the same as
with PyYAML's pure-Python parser: the same settings, the same words, the same first problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from monitor.config import yaml_tree
from monitor.config.loading import load_settings
from monitor.errors import ConfigError

BASE = "api: {endpoint: https://modelarts.example.com, project_id: proj-1}\nauth: {type: none}\n"

RICH = (
    BASE
    + """\
poll: {interval: 1m, jitter: 0, concurrency: 0x20, rate_limit: 2.5, bulk: false}
shard: {index: 0, total: 1}
state:
  path: "/var/lib/mon/state.db"
events:
  sinks:
    - {type: file, path: '/tmp/it''s.jsonl', name: "file:one"}
    - type: webhook
      url: >-
        https://hooks.example.com/a
      headers: {X-Token: ~}
      batch: yes
jobs:
  - &first {id: job-1, interval: 90s, labels: &common {team: "nlp", tier: '1'}}
  - id: job-2
    labels: {<<: *common, env: "caf\\u00e9 \U0001f600"}
  - <<: *first
    id: "job-3"
    labels:
      note: |-
        one line
"""
)
"""A bit of every kind of YAML a config may hold: flow and block, quoted and folded, anchors,
merges, hex, floats, yes/~, escapes; nothing libyaml refuses (as an escaped surrogate pair), so
that each parser reads it."""


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def refusal(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    return info.value.problems


def read_with(monkeypatch: pytest.MonkeyPatch, parser: str, text: str) -> object:
    monkeypatch.setattr(yaml_tree, "LIBYAML", parser == "libyaml")
    return yaml_tree.read_document(text, "config.yaml")


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML was built without libyaml")
def test_both_parsers_read_the_same_document(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = read_with(monkeypatch, "libyaml", RICH)
    fallback = read_with(monkeypatch, "python", RICH)

    assert fast == fallback
    assert isinstance(fast, dict)
    assert isinstance(fast["jobs"], list)
    assert fast["jobs"][1]["labels"] == {
        "team": "nlp",
        "tier": "1",
        "env": "café \N{GRINNING FACE}",
    }
    assert fast["events"]["sinks"][1]["headers"] == {"X-Token": None}


@pytest.mark.usefixtures("yaml_parser")
def test_a_rich_config_reads_as_the_settings_it_says(tmp_path: Path) -> None:
    settings = load_settings(config(tmp_path, RICH.replace("~", "token")), env={})

    assert (settings.poll.concurrency, settings.poll.rate_limit) == (32, 2.5)
    assert settings.events.sinks[0].path == "/tmp/it's.jsonl"
    assert [(j.id, j.interval, j.labels) for j in settings.jobs] == [
        ("job-1", 90.0, {"team": "nlp", "tier": "1"}),
        ("job-2", None, {"team": "nlp", "tier": "1", "env": "café \N{GRINNING FACE}"}),
        ("job-3", 90.0, {"note": "one line"}),
    ]


SYNTAX = [
    (
        "a key indented into its value",
        "state:\n  path: a\n path: b\n",
        "while parsing a block mapping at line 1, column 1; expected <block end>, but found "
        "'<block mapping start>' at line 5, column 2",
    ),
    (
        "a list item out of line",
        "jobs:\n  - id: a\n   labels: {}\n",
        "while parsing a block collection at line 4, column 3; expected <block end>, but found "
        "'<block mapping start>' at line 5, column 4",
    ),
    (
        "an unclosed flow list",
        "jobs: [a, b\n",
        "while parsing a flow sequence at line 3, column 7; expected ',' or ']', but got "
        "'<stream end>' at line 4, column 1",
    ),
    (
        "a tab for indentation",
        "jobs:\n\t- id: a\n",
        "while scanning for the next token; found character '\\t' that cannot start any token "
        "at line 4, column 1",
    ),
    (
        "an unknown escape",
        'state: {path: "a\\qb"}\n',
        "while scanning a double-quoted scalar at line 3, column 15; found unknown escape "
        "character 'q' at line 3, column 18",
    ),
]


@pytest.mark.usefixtures("yaml_parser")
@pytest.mark.parametrize(
    ("text", "expected"), [pytest.param(text, said, id=name) for name, text, said in SYNTAX]
)
def test_a_syntax_error_is_said_in_the_same_words_whichever_parser_reads_it(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = config(tmp_path, BASE + text)

    assert refusal(path) == [f"{path}: {expected}"]


@pytest.mark.usefixtures("yaml_parser")
def test_a_control_character_far_into_the_file_is_the_first_problem_said(
    tmp_path: Path,
) -> None:
    """libyaml reads its input in pieces, so it met the character only after composing had
    refused the alias bomb at the top; PyYAML's reader checks every character first."""
    bomb = "l0: &l0 [a, a, a, a, a, a, a, a, a, a]\n" + "".join(
        f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 9)
    )
    padding = "".join(f"# {'x' * 70}\n" for _ in range(1000))  # 73 KB of comments
    path = config(tmp_path, BASE + bomb + padding + "state: {path: a\x07b}\n")

    assert refusal(path) == [f"{path}: the character U+0007 at line 1012 is not allowed in YAML"]


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML was built without libyaml")
def test_a_large_valid_config_never_reaches_the_python_parser(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Start-up with 10,000 jobs took 3.3 s in PyYAML's parser in Python (the speed itself is
    ``benchmarks/startup.py``'s to show): a valid file is read by libyaml alone."""
    jobs = "".join(
        f"- id: {i:08x}-0000-4000-8000-{i:012x}\n  labels:\n    team: team-{i % 20}\n"
        for i in range(2000)
    )

    def refuse(self: object, text: str) -> None:
        raise AssertionError("the pure-Python parser was used")

    monkeypatch.setattr(yaml_tree._PythonParser, "__init__", refuse)
    doc = read_with(monkeypatch, "libyaml", BASE + "jobs:\n" + jobs)
    assert isinstance(doc, dict) and len(doc["jobs"]) == 2000
