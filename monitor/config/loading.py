"""How a YAML file becomes ``Settings``, with every problem reported as one line.

Every problem starts with its place: the key path (``jobs[2].labels.team``), or for a problem of
the file itself the file and line, because an operator fixing a config at 3 a.m. needs the
place, not a traceback. Any string value may be ``${VAR}`` or ``${VAR:-default}``; expansion
happens on the parsed tree, so a secret containing ``#`` or ``:`` cannot break the YAML syntax,
and the error for an unset variable names the key that asked for it.

The file is read under bounds before any of it is trusted (``MAX_CONFIG_BYTES``, ``MAX_DEPTH``,
``MAX_ALIAS_VALUES``), so a wrong file (a log, an image, a "billion laughs" alias bomb) is
refused in milliseconds instead of holding the process for minutes or all of its memory. And
only what the schema can use is read: text, numbers, true/false, null, lists, and mappings
whose keys are text and written once. PyYAML would otherwise hand on a date where text was
meant (``name: 2024-01-01``), bytes for ``!!binary``, a set, the last of two equal keys, or half
of an emoji (YAML decodes ``"\\ud83d\\ude00"`` escape by escape). Each of those is refused here,
naming its key, and never reaches the schema, the logs or the state database.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from yaml.composer import ComposerError
from yaml.events import AliasEvent, Event
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from monitor.config.settings import Settings
from monitor.core.text import first_unsafe
from monitor.errors import ConfigError

MAX_CONFIG_BYTES = 1024 * 1024
"""A config file larger than 1 MiB is refused unread. 10,000 jobs with a label each take about
700 KB; PyYAML, in pure Python, needs seconds a MB, and a 50 MB file took 15 s to refuse."""
MAX_DEPTH = 32
"""Levels of nesting (the schema uses 6). PyYAML composes recursively, so a file of a thousand
``[`` would otherwise end in ``RecursionError``."""
MAX_ALIAS_VALUES = 100_000
"""Values (keys, scalars, lists and mappings) that aliases (``*name``, ``<<: *name``) may repeat
in all. Each alias costs the size of what it names *as if expanded*, counted while composing,
so nine levels of ten aliases (a billion values once expanded) are refused after a few dozen
nodes; a few anchors for shared labels cost a few values each."""

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_TAG + name for name in ("str", "int", "float", "bool", "null")}
_KINDS = {
    _TAG + "int": "a number",
    _TAG + "float": "a number",
    _TAG + "bool": "true/false",
    _TAG + "null": "null",
    _TAG + "timestamp": "a date",
}
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
"""Control characters (C0, DEL, C1) and the Unicode line separators: no setting means one, and
each would break a log line, a label value, an HTTP header or the terminal showing an error."""
_PAIR = re.compile("([\ud800-\udbff])([\udc00-\udfff])")
_SURROGATE = re.compile("[\ud800-\udfff]")


def load_settings(path: str | Path, env: Mapping[str, str] | None = None) -> Settings:
    """The file at ``path`` as ``Settings``; ``ConfigError`` (one line per problem) for anything
    else, whatever the file holds."""
    path = Path(path)
    text = _read(path)
    try:
        doc = _Loader(text).document()
    except yaml.reader.ReaderError as exc:  # a raw control character in the file
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(
            f"{path}: the character U+{exc.character:04X} at line {line} is not allowed in YAML"
        ) from None
    except yaml.MarkedYAMLError as exc:
        # PyYAML's own text spans lines (snippets, carets); its parts make one line.
        parts = [(exc.context, exc.context_mark), (exc.problem or "invalid YAML", exc.problem_mark)]
        said = "; ".join(f"{what}{_at(mark)}" for what, mark in parts if what)
        raise ConfigError(f"{path}: {said}") from None
    return parse_settings(doc, env)


def parse_settings(doc: object, env: Mapping[str, str] | None = None) -> Settings:
    """Validate an already-decoded document; ``ConfigError`` lists every problem found."""
    env = os.environ if env is None else env
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(f"$: the config must be a mapping, got {type(doc).__name__}")
    expanded = expand_env(doc, env)
    assert isinstance(expanded, dict)
    _env_defaults(expanded, env)
    try:
        # HOSTNAME for ``shard.index: auto`` comes from the same environment as ${VAR}s.
        return Settings.model_validate(expanded, context={"env": env})
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def expand_env(node: object, env: Mapping[str, str], path: str = "") -> object:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of a decoded tree, and hold
    every key and value to what a setting can be (``_checked``, finite numbers). One walk, so a
    value from the environment meets the same rules as one written in the file."""
    if isinstance(node, dict):
        out: dict[object, object] = {}
        for key, value in node.items():
            if isinstance(key, str):
                key = _checked(key, path, f"the key {key!r}")
            out[key] = expand_env(value, env, _join(path, str(key)))
        return out
    if isinstance(node, list):
        return [expand_env(v, env, f"{path}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(f"{path or '$'}: {node} is not a finite number")
    if not isinstance(node, str):
        return node

    def substitute(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"{path or '$'}: environment variable {name} is not set")

    return _checked(_ENV.sub(substitute, node), path, "the value")


def _checked(text: str, path: str, what: str) -> str:
    """``text`` with each UTF-16 surrogate pair joined into its character, as JSON means the
    pair; ``ConfigError`` for a lone surrogate (UTF-8 cannot encode it: the start crashed
    rendering the job's series) or a character the edge's text rule would replace
    (``core.text.first_unsafe``). Values are never shown: they may be secrets."""
    if not text.isascii():
        text = _PAIR.sub(
            lambda m: chr(0x10000 + (ord(m[1]) - 0xD800) * 0x400 + ord(m[2]) - 0xDC00), text
        )
        if lone := _SURROGATE.search(text):
            raise ConfigError(
                f"{path or '$'}: {what} holds U+{ord(lone[0]):04X}, half of a UTF-16 surrogate "
                "pair without its other half; write the character itself"
            )
    if bad := first_unsafe(text):  # no surrogate is left here: only controls and separators
        kind = "a line separator" if bad in "\u2028\u2029" else "a control character"
        raise ConfigError(f"{path or '$'}: {what} contains U+{ord(bad):04X}, {kind}")
    return text


def _env_defaults(doc: dict[str, Any], env: Mapping[str, str]) -> None:
    """The Huawei SDKs' variables fill keys the file leaves out, as users already expect;
    only in the single-project form: with ``targets:`` each target names its credentials
    (one account's variables are not every target's)."""
    if "targets" in doc:
        return
    api = doc.get("api")
    if isinstance(api, dict) and "project_id" not in api and env.get("HUAWEICLOUD_SDK_PROJECT_ID"):
        api["project_id"] = env["HUAWEICLOUD_SDK_PROJECT_ID"]
    auth = doc.setdefault("auth", {})
    if isinstance(auth, dict) and auth.get("type", "aksk") == "aksk":
        for key, var in (
            ("ak", "HUAWEICLOUD_SDK_AK"),
            ("sk", "HUAWEICLOUD_SDK_SK"),
            ("security_token", "HUAWEICLOUD_SDK_SECURITY_TOKEN"),  # a temporary AK/SK's
        ):
            if key not in auth and env.get(var):
                auth[key] = env[var]


def _read(path: Path) -> str:
    """The file's text, read no further than one byte past ``MAX_CONFIG_BYTES``."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        limit = f"{MAX_CONFIG_BYTES // 1024 // 1024} MiB"
        raise ConfigError(f"{path}: larger than {limit}, the limit for a config file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, composing under ``MAX_DEPTH`` and ``MAX_ALIAS_VALUES``; then
    ``document()`` builds the plain tree from the nodes itself instead of PyYAML's constructor,
    because only there is each node's key path known for the error."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0
        self._open: list[str] = []
        """Anchors whose node is still being composed: an alias to one would be a cycle."""
        self._repeated = 0
        self._shapes: dict[int, tuple[int, int]] = {}

    def document(self) -> object:
        """The one document of the stream as plain data (``None`` for an empty file)."""
        node = self.compose_document() if self.check_node() else None
        if self.check_node():
            raise _refused("a config is one YAML document; a second one starts", self._peek())
        return None if node is None else self._plain(node, "")

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event = self._peek()
        if isinstance(event, AliasEvent):
            if event.anchor in self._open:
                raise _refused(f"the alias *{event.anchor} is inside the value it names", event)
            node = super().compose_node(parent, index)
            assert node is not None
            values, height = self._shape(node)
            self._repeated += values
            if self._repeated > MAX_ALIAS_VALUES:
                raise _refused(f"aliases repeat more than {MAX_ALIAS_VALUES:,} values", event)
            if self._depth + height > MAX_DEPTH:
                raise _refused(f"nested more than {MAX_DEPTH} levels deep", event)
            return node
        if self._depth > MAX_DEPTH:
            raise _refused(f"nested more than {MAX_DEPTH} levels deep", event)
        anchor: str | None = getattr(event, "anchor", None)
        if anchor is not None:
            self._open.append(anchor)
        self._depth += 1
        node = super().compose_node(parent, index)
        self._depth -= 1
        if anchor is not None:
            self._open.pop()
        return node

    def _peek(self) -> Event:
        """The next parser event (``peek_event`` is untyped in PyYAML's stubs)."""
        event: Event = self.peek_event()  # type: ignore[no-untyped-call]
        return event

    def _shape(self, node: Node) -> tuple[int, int]:
        """``(values, height)`` of a composed node as if its aliases were expanded. Memoized by
        node, so nested aliases cost their distinct nodes, never their expansion."""
        known = self._shapes.get(id(node))
        if known is None:
            if isinstance(node, ScalarNode):
                known = (1, 0)
            else:
                children = node.value
                if isinstance(node, MappingNode):
                    children = [part for pair in node.value for part in pair]
                shapes = [self._shape(child) for child in children]
                known = (
                    1 + sum(values for values, _ in shapes),
                    1 + max((height for _, height in shapes), default=-1),
                )
            self._shapes[id(node)] = known
        return known

    def _plain(self, node: Node, path: str) -> object:
        where = path or "$"
        if isinstance(node, MappingNode) and node.tag == _TAG + "map":
            return self._mapping(node, path)
        if isinstance(node, SequenceNode) and node.tag == _TAG + "seq":
            return [self._plain(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        if isinstance(node, ScalarNode) and node.tag in _SCALAR_TAGS:
            try:
                return self.construct_object(node)
            except (ValueError, KeyError):  # an explicit tag on text it does not fit: !!int x
                raise ConfigError(f"{where}: {node.value!r} is not {_KINDS[node.tag]}") from None
        if node.tag == _TAG + "timestamp":
            raise ConfigError(f"{where}: {node.value} is read as a date, not text; quote it")
        raise ConfigError(f"{where}: the YAML tag {_short(node.tag)!r} is not supported")

    def _mapping(self, node: MappingNode, path: str) -> dict[str, object]:
        """A mapping with text keys, each written once; ``<<`` merges as YAML 1.1 says (the
        mapping's own keys win, then the earlier of the merged mappings)."""
        merged: dict[str, object] = {}
        own: dict[str, object] = {}
        lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node, path)
            line = key_node.start_mark.line + 1
            if key in lines:
                raise ConfigError(
                    f"{_join(path, key)}: the key is written twice (lines {lines[key]} and "
                    f"{line}); YAML would silently keep the last"
                )
            lines[key] = line
            if key_node.tag != _TAG + "merge":
                own[key] = self._plain(value_node, _join(path, key))
                continue
            sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
            for source in reversed(sources):
                if not (isinstance(source, MappingNode) and source.tag == _TAG + "map"):
                    raise ConfigError(
                        f"{_join(path, '<<')}: merges a mapping or a list of mappings"
                    )
                merged.update(self._mapping(source, path))
        return merged | own

    @staticmethod
    def _key(node: Node, path: str) -> str:
        if isinstance(node, ScalarNode) and node.tag in (_TAG + "str", _TAG + "merge"):
            return str(node.value)
        if isinstance(node, ScalarNode):
            kind = _KINDS.get(node.tag, f"tagged {_short(node.tag)!r}")
            raise ConfigError(
                f"{path or '$'}: the key {node.value!r} is read as {kind}, not text; quote it"
            )
        kind = "list" if isinstance(node, SequenceNode) else "mapping"
        raise ConfigError(f"{path or '$'}: a key must be text, not a {kind}")


def _refused(problem: str, event: Event) -> ComposerError:
    """A bound or structure refused while composing, reported as YAML errors are (line, column)."""
    mark = event.start_mark if isinstance(event.start_mark, yaml.error.Mark) else None
    return ComposerError(None, None, problem, mark)


def _at(mark: yaml.Mark | None) -> str:
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def _short(tag: str) -> str:
    return "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag


_SINK_TAGS = {"log", "console", "file", "webhook"}


def _describe(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = err["loc"]
        path = ""
        for i, part in enumerate(loc):
            if part in _SINK_TAGS and i >= 2 and loc[i - 2] == "sinks":
                continue  # the discriminated union's branch (events.sinks[N].file), not a key
            path = f"{path}[{part}]" if isinstance(part, int) else _join(path, str(part))
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "missing":
            message = "required key is missing"
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
        for line in message.splitlines():
            problems.append(f"{path}: {line}" if path else line)
    return problems


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
