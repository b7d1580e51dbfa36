"""loading.py: a config file read under bounds, and every YAML it can read but not use refused
with one line naming its place, in the library and in each command; each test once with
libyaml's parser and once with PyYAML's pure-Python one (``yaml_parser``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.cli.main import main
from monitor.config.loading import MAX_CONFIG_BYTES, load_settings
from monitor.config.yaml_tree import MAX_ALIAS_VALUES, MAX_DEPTH
from monitor.errors import ConfigError

pytestmark = pytest.mark.usefixtures("yaml_parser")

BASE = "api: {endpoint: https://modelarts.example.com, project_id: proj-1}\nauth: {type: none}\n"
"""A valid config in three lines (lines 1 and 2); each case appends from line 3 on."""


def config(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "config.yaml"
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return path


def refusal(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={} if env is None else env)
    return info.value.problems


def _bytes_read() -> int:
    """What this process has read with read(2) so far (Linux ``/proc/self/io``)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


# --- the size limit -------------------------------------------------------------------------


def test_a_50_mb_file_is_refused_naming_the_limit_without_being_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as f:
        f.truncate(50 * 1024 * 1024)  # sparse: costs no disk

    before = _bytes_read()
    problems = refusal(path)
    read = _bytes_read() - before

    assert problems == [f"{path}: larger than 1 MiB, the limit for a config file"]
    assert read <= MAX_CONFIG_BYTES + 64 * 1024, f"read {read} bytes of a 50 MB file"


def test_a_file_of_exactly_the_limit_is_read(tmp_path: Path) -> None:
    padding = MAX_CONFIG_BYTES - len(BASE) - len("#\n")
    path = config(tmp_path, BASE + "#" + "x" * padding + "\n")
    assert path.stat().st_size == MAX_CONFIG_BYTES

    assert load_settings(path, env={}).api.project_id == "proj-1"


# --- aliases and nesting --------------------------------------------------------------------


def _alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The "billion laughs": each level lists the previous one ``width`` times."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return BASE + "\n".join(lines) + "\n"


@pytest.mark.timeout(10)
def test_an_alias_bomb_is_refused_while_composing(tmp_path: Path) -> None:
    path = config(tmp_path, _alias_bomb())

    # 9**9 values once expanded; the walk of ${VAR}s used to run until killed.
    assert refusal(path) == [
        f"{path}: aliases repeat more than {MAX_ALIAS_VALUES:,} values at line 8, column 10"
    ]


def test_anchors_aliases_and_merge_keys_keep_working(tmp_path: Path) -> None:
    path = config(
        tmp_path,
        BASE
        + "jobs:\n"
        + "  - &first {id: a, interval: 1m, labels: &nlp {team: nlp, env: prod}}\n"
        + "  - {<<: *first, id: b}\n"
        + "  - {id: c, labels: {<<: *nlp, env: dev}}\n"
        + "  - {id: d, labels: {<<: [{team: vision}, *nlp]}}\n",
    )

    jobs = load_settings(path, env={}).jobs

    assert [(j.id, j.interval, j.labels) for j in jobs] == [
        ("a", 60.0, {"team": "nlp", "env": "prod"}),
        ("b", 60.0, {"team": "nlp", "env": "prod"}),  # merged, its own id wins
        ("c", None, {"team": "nlp", "env": "dev"}),  # its own key wins over the merged one
        ("d", None, {"team": "vision", "env": "prod"}),  # the earlier merged mapping wins
    ]


def test_an_alias_inside_the_value_it_names_is_refused(tmp_path: Path) -> None:
    path = config(tmp_path, BASE + "jobs: &loop [*loop]\n")

    assert refusal(path) == [
        f"{path}: the alias *loop is inside the value it names at line 3, column 14"
    ]


def test_nesting_deeper_than_the_limit_is_refused_without_a_recursion_error(
    tmp_path: Path,
) -> None:
    path = config(tmp_path, BASE + "jobs: " + "[" * 5000 + "]" * 5000 + "\n")

    assert refusal(path) == [
        f"{path}: nested more than {MAX_DEPTH} levels deep at line 3, column {MAX_DEPTH + 7}"
    ]


def test_an_alias_that_would_nest_too_deep_is_refused(tmp_path: Path) -> None:
    deep = "[" * 20 + "x" + "]" * 20
    path = config(tmp_path, BASE + f"a: &a {deep}\nb: {'[' * 20}*a{']' * 20}\n")

    assert refusal(path) == [
        f"{path}: nested more than {MAX_DEPTH} levels deep at line 4, column 24"
    ]


# --- what YAML can say but a config cannot use ---------------------------------------------

REFUSED = [
    ("a top-level list", "", "- a\n- b\n", "$: the config must be a mapping, got list"),
    ("a number as key", BASE, "1: x\n", "$: the key '1' is read as a number, not text; quote it"),
    ("null as key", BASE, "null: x\n", "$: the key 'null' is read as null, not text; quote it"),
    (
        "true as a label name",
        BASE,
        "jobs: [{id: a, labels: {on: x}}]\n",
        "jobs[0].labels: the key 'on' is read as true/false, not text; quote it",
    ),
    ("a list as key", BASE, "? [a]\n: x\n", "$: a key must be text, not a list"),
    (
        "a date as label value",
        BASE,
        "jobs: [{id: a, labels: {since: 2024-01-01}}]\n",
        "jobs[0].labels.since: 2024-01-01 is read as a date, not text; quote it",
    ),
    (
        "a timestamp as path",
        BASE,
        "state: {path: 2024-01-01 10:00:00}\n",
        "state.path: 2024-01-01 10:00:00 is read as a date, not text; quote it",
    ),
    (
        "binary",
        BASE,
        "state: {path: !!binary aGVsbG8=}\n",
        "state.path: the YAML tag '!!binary' is not supported",
    ),
    (
        "an unknown tag",
        BASE,
        "state: {path: !vault x}\n",
        "state.path: the YAML tag '!vault' is not supported",
    ),
    (
        "a python tag",
        BASE,
        "state: {path: !!python/object/apply:os.system [id]}\n",
        "state.path: the YAML tag '!!python/object/apply:os.system' is not supported",
    ),
    ("a set", BASE, "jobs: !!set {a}\n", "jobs: the YAML tag '!!set' is not supported"),
    (
        "an explicit tag that does not fit",
        BASE,
        "poll: {concurrency: !!int many}\n",
        "poll.concurrency: 'many' is not a number",
    ),
    (
        "a duplicate top-level key",
        BASE,
        "state: {path: /a}\nstate: {path: /b}\n",
        "state: the key is written twice (lines 3 and 4); YAML would silently keep the last",
    ),
    (
        "a duplicate nested key",
        BASE,
        "jobs:\n  - id: a\n    labels: {team: x, team: y}\n",
        "jobs[0].labels.team: the key is written twice (lines 5 and 5); YAML would silently "
        "keep the last",
    ),
    (
        "a merge of a text",
        BASE,
        "jobs: [{<<: [abc], id: x}]\n",
        "jobs[0].<<: merges a mapping or a list of mappings",
    ),
    (
        "a control character in a value",
        BASE,
        'jobs: [{id: a, labels: {team: "nl\\x1b[31mp"}}]\n',
        "jobs[0].labels.team: the value contains U+001B, a control character",
    ),
    (
        "a newline ending a job id",
        BASE,
        'jobs: [{id: "abc\\n"}]\n',
        "jobs[0].id: the value contains U+000A, a control character",
    ),
    (
        "a line separator",
        BASE,
        'jobs: [{id: a, labels: {team: "a\\u2028b"}}]\n',
        "jobs[0].labels.team: the value contains U+2028, a line separator",
    ),
    (
        "a control character in a key",
        BASE,
        'jobs: [{id: a, labels: {"team\\t": x}}]\n',
        "jobs[0].labels: the key 'team\\t' contains U+0009, a control character",
    ),
    (
        "a lone surrogate",
        BASE,
        'jobs: [{id: a, labels: {team: "\\ud83d"}}]\n',
        "jobs[0].labels.team: the value holds U+D83D, half of a UTF-16 surrogate pair "
        "without its other half; write the character itself",
    ),
    (
        "a surrogate pair the wrong way round",
        BASE,
        'jobs: [{id: a, labels: {team: "\\ude00\\ud83d"}}]\n',
        "jobs[0].labels.team: the value holds U+DE00, half of a UTF-16 surrogate pair "
        "without its other half; write the character itself",
    ),
    ("NaN", BASE, "poll: {rate_limit: .nan}\n", "poll.rate_limit: nan is not a finite number"),
    ("infinity", BASE, "poll: {rate_limit: .inf}\n", "poll.rate_limit: inf is not a finite number"),
    (
        "infinity where a union takes numbers or text",
        BASE,
        "discovery: {filters: [{key: name, operator: in, value: [-.inf]}]}\n",
        "discovery.filters[0].value[0]: -inf is not a finite number",
    ),
    (
        "a number too large for a duration",
        BASE,
        f"poll: {{interval: 1{'0' * 400}}}\n",
        "poll.interval: must be a finite duration",
    ),
]
FILE_REFUSED = [
    (
        "two documents",
        BASE + "---\n" + BASE,
        "{path}: a config is one YAML document; a second one starts at line 3, column 1",
    ),
    (
        "a raw control character",
        BASE + "state: {path: a\x07b}\n",
        "{path}: the character U+0007 at line 3 is not allowed in YAML",
    ),
    (
        "bytes that are not UTF-8",
        BASE.encode() + b"state: {path: \xff}\n",
        "{path}: not UTF-8 text (byte 0xff at offset 100)",
    ),
    (
        "an anchor defined twice",
        BASE + "a: &x 1\nb: &x 2\n",
        "{path}: found duplicate anchor 'x'; first occurrence at line 3, column 4; second "
        "occurrence at line 4, column 4",
    ),
]


@pytest.mark.parametrize(
    ("base", "text", "expected"),
    [pytest.param(base, text, expected, id=name) for name, base, text, expected in REFUSED],
)
def test_yaml_a_config_cannot_use_is_refused_with_one_line_naming_the_key(
    tmp_path: Path, base: str, text: str, expected: str
) -> None:
    assert refusal(config(tmp_path, base + text)) == [expected]


@pytest.mark.parametrize(
    ("text", "expected"),
    [pytest.param(text, expected, id=name) for name, text, expected in FILE_REFUSED],
)
def test_a_file_that_is_not_one_yaml_document_is_refused_naming_the_line(
    tmp_path: Path, text: str | bytes, expected: str
) -> None:
    path = config(tmp_path, text)
    assert refusal(path) == [expected.format(path=path)]


def test_a_key_written_once_and_merged_once_is_not_a_duplicate(tmp_path: Path) -> None:
    path = config(tmp_path, BASE + "state: {<<: {path: /a}, path: /b}\n")

    assert load_settings(path, env={}).state.path == "/b"


# --- text: surrogate pairs joined, environment values held to the same rules ----------------


def test_a_label_written_as_a_json_surrogate_pair_is_the_emoji(tmp_path: Path) -> None:
    """How ``json.dumps`` writes an emoji; YAML decodes each escape alone, as two halves."""
    path = config(tmp_path, BASE + 'jobs: [{id: a, labels: {mood: "\\ud83d\\ude00 ok"}}]\n')

    labels = load_settings(path, env={}).jobs[0].labels

    assert labels == {"mood": "\N{GRINNING FACE} ok"}
    labels["mood"].encode("utf-8")  # what crashed the start: the first log line, the database


def test_a_value_from_the_environment_meets_the_same_rules(tmp_path: Path) -> None:
    path = config(tmp_path, BASE + "jobs: [{id: '${JOB}', labels: {team: '${TEAM}'}}]\n")

    # os.environ decodes bytes that are not UTF-8 as lone surrogates (surrogateescape).
    assert refusal(path, {"JOB": "abc\n", "TEAM": "x"}) == [
        "jobs[0].id: the value contains U+000A, a control character"
    ]
    assert refusal(path, {"JOB": "abc", "TEAM": "caf\udce9"}) == [
        "jobs[0].labels.team: the value holds U+DCE9, half of a UTF-16 surrogate pair "
        "without its other half; write the character itself"
    ]


def test_a_secret_with_a_control_character_is_refused_without_showing_it(
    tmp_path: Path,
) -> None:
    path = config(
        tmp_path,
        "api: {endpoint: https://m.example.com, project_id: p}\n"
        "auth: {type: aksk, ak: AK, sk: '${SK}'}\n",
    )

    (problem,) = refusal(path, {"SK": "hunter2-secret\r"})

    assert problem == "auth.sk: the value contains U+000D, a control character"


def test_infinity_written_as_text_is_refused_where_a_number_is_expected(tmp_path: Path) -> None:
    path = config(tmp_path, BASE + "poll: {rate_limit: '${RATE}'}\n")

    assert refusal(path, {"RATE": "inf"}) == ["poll.rate_limit: Input should be a finite number"]


# --- every command: one line, exit 2, never a traceback -----------------------------------


@pytest.mark.usefixtures("isolated_cli")
@pytest.mark.parametrize("command", ["run", "check", "once", "status"])
@pytest.mark.parametrize(
    ("text", "line"),
    [
        pytest.param(
            BASE + "state: {path: /a}\nstate: {path: /b}\n",
            "config error: state: the key is written twice (lines 3 and 4); YAML would "
            "silently keep the last",
            id="duplicate-key",
        ),
        pytest.param(
            _alias_bomb(),
            "config error: {path}: aliases repeat more than 100,000 values at line 8, column 10",
            id="alias-bomb",
        ),
        pytest.param(
            BASE + 'jobs: [{id: a, labels: {team: "\\udc00"}}]\n',
            "config error: jobs[0].labels.team: the value holds U+DC00, half of a UTF-16 "
            "surrogate pair without its other half; write the character itself",
            id="lone-surrogate",
        ),
    ],
)
def test_each_command_prints_one_line_and_exits_2(
    command: str, text: str, line: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(tmp_path, text)

    rc = main([command, "--config", str(path)])

    out, err = capsys.readouterr()
    assert (rc, err.splitlines(), out) == (2, [line.format(path=path)], "")
