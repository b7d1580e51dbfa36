"""YAML text into plain data (dicts, lists, text, numbers, true/false, null) under the
config's bounds, from libyaml's parser when PyYAML was built with it.

The composing is this module's own loop over parser events, the interface PyYAML's ``Composer``
reads (``get_event``), so every bound and check is the same whichever parser gives the events:
libyaml's C parser (``CParser``: a 10,000-job config in about 0.2 s, where PyYAML's scanner in
Python took 3 s and was most of the daemon's start-up), or PyYAML's pure-Python parser
where PyYAML has no libyaml (``yaml.__with_libyaml__``). The two give the same events for a
valid file and differ in three things, each made the same here:

- marks: libyaml's are ``yaml._yaml.Mark``; only their line and column are read.
- characters: both refuse the same ones (PyYAML's ``Reader.NON_PRINTABLE``), but libyaml reads
  lazily, so a bound broken earlier in the file would be reported instead. The text is checked
  here, with PyYAML's pattern, before either parser sees it.
- the language: libyaml refuses a few things PyYAML reads (escaped halves of an emoji,
  ``"\\ud83d\\ude00"``, as ``json.dumps`` writes one), and words its syntax errors its own
  way ("did not find expected key" for "expected <block end>, but found '<scalar>'"). A file
  libyaml refuses is composed again from PyYAML's parser, which has the last word: what it
  reads is read, and what it refuses is reported in its words, so neither depends on how
  PyYAML was built. Only such files pay for the second, slower parse.

Bounds are kept while composing, before any value is trusted: ``MAX_DEPTH`` levels, and
``MAX_ALIAS_VALUES`` values repeated by aliases, each alias counted as if expanded. Then the
composed nodes become plain data, where each problem is known by its key path: only
str/int/float/bool/null scalars (a date, ``!!binary``, a set or a custom tag is refused), text
keys written once, ``<<`` merges of mappings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, cast

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import (
    AliasEvent,
    Event,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import ScalarNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from monitor.errors import ConfigError

MAX_DEPTH = 32
"""Levels of nesting (the schema uses 6). Composing is recursive, so a file of a thousand
``[`` would otherwise end in ``RecursionError``."""
MAX_ALIAS_VALUES = 100_000
"""Values (keys, scalars, lists and mappings) that aliases (``*name``, ``<<: *name``) may repeat
in all. Each alias costs the size of what it names *as if expanded*, counted while composing,
so nine levels of ten aliases (a billion values once expanded) are refused after a few dozen
nodes; a few anchors for shared labels cost a few values each."""

LIBYAML: bool = yaml.__with_libyaml__
"""Whether events come from libyaml's C parser; the tests turn it off to run the fallback."""

_TAG = "tag:yaml.org,2002:"
_STR, _MAP, _SEQ, _MERGE = (_TAG + name for name in ("str", "map", "seq", "merge"))
_TIMESTAMP = _TAG + "timestamp"
_KINDS = {
    _TAG + "int": "a number",
    _TAG + "float": "a number",
    _TAG + "bool": "true/false",
    _TAG + "null": "null",
    _TIMESTAMP: "a date",
}


class _Events(Protocol):
    """What composing needs of a parser: libyaml's ``CParser`` and PyYAML's ``Parser`` both."""

    def get_event(self) -> Event | None: ...


class _PythonParser(Reader, Scanner, Parser):
    """PyYAML's pure-Python parser alone (``SafeLoader`` without its composer and constructor)."""

    def __init__(self, text: str) -> None:
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)


class _Scalar:
    __slots__ = ("tag", "value")

    def __init__(self, tag: str, value: str) -> None:
        self.tag, self.value = tag, value


class _Sequence:
    __slots__ = ("items", "shape", "tag")

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.items: list[_Node] = []
        self.shape: tuple[int, int] | None = None


class _Mapping:
    __slots__ = ("pairs", "shape", "tag")

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.pairs: list[tuple[_Node, _Node, int]] = []
        """``(key, value, the key's line)``: the line for a key written twice."""
        self.shape: tuple[int, int] | None = None


_Node = str | _Scalar | _Sequence | _Mapping
"""A composed value: text as itself (most values and keys: it is already plain), anything else
with its resolved tag. Smaller than PyYAML's nodes, which carry two marks and a style that
nothing here reads, and fewer objects for the garbage collector to walk."""


def _scalar(tag: str, value: str) -> str | _Scalar:
    return value if tag == _STR else _Scalar(tag, value)


class _Refused(Exception):
    """A bound or a structure refused while composing; its text ends with the place."""


def read_document(text: str, name: str) -> object:
    """The one YAML document of ``text`` as plain data (``None`` when there is none).

    ``ConfigError`` for anything else: a problem of the file as ``{name}: ... at line L, column
    C``, a problem of a value as its key path (``jobs[2].labels.team: ...``)."""
    if bad := Reader.NON_PRINTABLE.search(text):  # what either parser would refuse, found first
        line = text.count("\n", 0, bad.start()) + 1
        raise ConfigError(
            f"{name}: the character U+{ord(bad[0]):04X} at line {line} is not allowed in YAML"
        )
    try:
        try:
            root = _Composer(_parser(text)).document()
        except yaml.MarkedYAMLError:
            if not LIBYAML:
                raise
            # What libyaml refuses, PyYAML's parser reads again and has the last word on: it
            # reads a few things libyaml does not (escaped halves of an emoji, "\ud83d\ude00",
            # as json.dumps writes one), and its error is worded as without libyaml.
            root = _Composer(_PythonParser(text)).document()
    except _Refused as exc:
        raise ConfigError(f"{name}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(f"{name}: {_said(exc)}") from None
    return None if root is None else _Plain().value(root, "")


def _parser(text: str) -> _Events:
    if LIBYAML:
        from yaml._yaml import CParser  # only there when PyYAML was built with libyaml

        return CParser(text)
    return _PythonParser(text)


def _said(exc: yaml.MarkedYAMLError) -> str:
    """PyYAML's text spans lines (snippets, carets); its parts make one line."""
    parts = [(exc.context, exc.context_mark), (exc.problem or "invalid YAML", exc.problem_mark)]
    return "; ".join(f"{what}{_at(mark)}" for what, mark in parts if what)


class _Composer:
    """Events into nodes under ``MAX_DEPTH`` and ``MAX_ALIAS_VALUES``, tags resolved as
    PyYAML's ``SafeLoader`` resolves them, anchors and aliases as its ``Composer`` keeps them."""

    def __init__(self, events: _Events) -> None:
        self._next = cast("Callable[[], Event]", events.get_event)
        """The next event; never None, which only follows the stream's end, never read past."""
        self._anchors: dict[str, tuple[_Node, Event]] = {}
        self._open: list[str] = []
        """Anchors whose node is still being composed: an alias to one would be a cycle."""
        self._depth = 0
        self._repeated = 0
        self._resolver = Resolver()
        self._plain_tags: dict[str, str] = {}
        """Each plain scalar's resolved tag: ids differ, but keys and label values repeat."""

    def document(self) -> _Node | None:
        self._next()  # the stream's start
        event = self._next()
        if isinstance(event, StreamEndEvent):
            return None
        node = self._node(self._next())  # after the document's start
        self._next()  # the document's end
        if not isinstance(following := self._next(), StreamEndEvent):
            raise _Refused(
                f"a config is one YAML document; a second one starts{_at_event(following)}"
            )
        return node

    def _node(self, event: Event) -> _Node:
        if type(event) is ScalarEvent and event.anchor is None and self._depth <= MAX_DEPTH:
            return _scalar(self._scalar_tag(event), event.value)  # most nodes: nothing to check
        if isinstance(event, AliasEvent):
            return self._alias(event)
        if self._depth > MAX_DEPTH:
            raise _Refused(f"nested more than {MAX_DEPTH} levels deep{_at_event(event)}")
        assert isinstance(event, ScalarEvent | SequenceStartEvent | MappingStartEvent)
        anchor = event.anchor
        if anchor is not None and anchor in self._anchors:
            first = self._anchors[anchor][1]
            raise _Refused(
                f"found duplicate anchor {anchor!r}; first occurrence{_at_event(first)}; "
                f"second occurrence{_at_event(event)}"
            )
        if isinstance(event, ScalarEvent):
            node: _Node = _scalar(self._scalar_tag(event), event.value)
            if anchor is not None:
                self._anchors[anchor] = (node, event)
            return node
        tag = event.tag
        if tag is None or tag == "!":
            # What Resolver.resolve answers for any untagged collection: the safe resolver has
            # no path resolvers.
            sequence = isinstance(event, SequenceStartEvent)
            tag = Resolver.DEFAULT_SEQUENCE_TAG if sequence else Resolver.DEFAULT_MAPPING_TAG
        node = _Sequence(tag) if isinstance(event, SequenceStartEvent) else _Mapping(tag)
        if anchor is not None:
            self._anchors[anchor] = (node, event)
            self._open.append(anchor)
        self._depth += 1
        self._children(node)
        self._depth -= 1
        if anchor is not None:
            self._open.pop()
        return node

    def _children(self, node: _Sequence | _Mapping) -> None:
        """The items of a list or the pairs of a mapping, up to the event that ends it."""
        next_event, compose = self._next, self._node
        event = next_event()
        if isinstance(node, _Sequence):
            items = node.items
            while type(event) is not SequenceEndEvent:
                items.append(compose(event))
                event = next_event()
            return
        pairs = node.pairs
        while type(event) is not MappingEndEvent:
            line = event.start_mark.line + 1 if event.start_mark else 0
            key = compose(event)
            pairs.append((key, compose(next_event()), line))
            event = next_event()

    def _scalar_tag(self, event: ScalarEvent) -> str:
        tag = event.tag
        if tag is not None and tag != "!":
            return tag
        if not event.implicit[0]:  # quoted: text (a plain one, or one tagged "!", is resolved)
            return _STR
        known = self._plain_tags.get(event.value)
        if known is None:
            known = self._resolver.resolve(ScalarNode, event.value, event.implicit)  # type: ignore[no-untyped-call]
            self._plain_tags[event.value] = known
        return known

    def _alias(self, event: AliasEvent) -> _Node:
        name = event.anchor
        if name in self._open:
            raise _Refused(f"the alias *{name} is inside the value it names{_at_event(event)}")
        if name is None or name not in self._anchors:
            raise _Refused(f"found undefined alias {name!r}{_at_event(event)}")
        node = self._anchors[name][0]
        values, height = _shape(node)
        self._repeated += values
        if self._repeated > MAX_ALIAS_VALUES:
            raise _Refused(
                f"aliases repeat more than {MAX_ALIAS_VALUES:,} values{_at_event(event)}"
            )
        if self._depth + height > MAX_DEPTH:
            raise _Refused(f"nested more than {MAX_DEPTH} levels deep{_at_event(event)}")
        return node


def _shape(node: _Node) -> tuple[int, int]:
    """``(values, height)`` of a composed node as if its aliases were expanded. Kept on the
    node, so nested aliases cost their distinct nodes, never their expansion."""
    if isinstance(node, str | _Scalar):
        return (1, 0)
    if node.shape is None:
        if isinstance(node, _Sequence):
            children = node.items
        else:
            children = [part for key, value, _ in node.pairs for part in (key, value)]
        shapes = [_shape(child) for child in children]
        node.shape = (
            1 + sum(values for values, _ in shapes),
            1 + max((height for _, height in shapes), default=-1),
        )
    return node.shape


class _Plain:
    """Composed nodes into plain data, each refusal naming the key path where it is."""

    def __init__(self) -> None:
        constructor = SafeConstructor()
        self._scalars = {
            _TAG + "int": constructor.construct_yaml_int,
            _TAG + "float": constructor.construct_yaml_float,
            _TAG + "bool": constructor.construct_yaml_bool,
            _TAG + "null": constructor.construct_yaml_null,
        }

    def value(self, node: _Node, path: str) -> object:
        if isinstance(node, str):
            return node
        if isinstance(node, _Scalar):
            if construct := self._scalars.get(node.tag):
                try:
                    return construct(ScalarNode(node.tag, node.value))
                except (ValueError, KeyError):  # an explicit tag on text it does not fit: !!int x
                    raise ConfigError(
                        f"{path or '$'}: {node.value!r} is not {_KINDS[node.tag]}"
                    ) from None
            if node.tag == _TIMESTAMP:
                raise ConfigError(
                    f"{path or '$'}: {node.value} is read as a date, not text; quote it"
                )
        elif isinstance(node, _Mapping) and node.tag == _MAP:
            return self._mapping(node, path)
        elif isinstance(node, _Sequence) and node.tag == _SEQ:
            return [self.value(item, f"{path}[{i}]") for i, item in enumerate(node.items)]
        raise ConfigError(f"{path or '$'}: the YAML tag {_short(node.tag)!r} is not supported")

    def _mapping(self, node: _Mapping, path: str) -> dict[str, object]:
        """A mapping with text keys, each written once; ``<<`` merges as YAML 1.1 says (the
        mapping's own keys win, then the earlier of the merged mappings)."""
        merged: dict[str, object] = {}
        own: dict[str, object] = {}
        lines: dict[str, int] = {}
        for key_node, value_node, line in node.pairs:
            key = _key(key_node, path)
            if key in lines:
                raise ConfigError(
                    f"{key_path(path, key)}: the key is written twice (lines {lines[key]} and "
                    f"{line}); YAML would silently keep the last"
                )
            lines[key] = line
            if not (isinstance(key_node, _Scalar) and key_node.tag == _MERGE):
                own[key] = self.value(value_node, key_path(path, key))
                continue
            sources = value_node.items if isinstance(value_node, _Sequence) else [value_node]
            for source in reversed(sources):
                if not (isinstance(source, _Mapping) and source.tag == _MAP):
                    raise ConfigError(
                        f"{key_path(path, '<<')}: merges a mapping or a list of mappings"
                    )
                merged.update(self._mapping(source, path))
        return merged | own


def _key(node: _Node, path: str) -> str:
    if isinstance(node, str):
        return node
    if isinstance(node, _Scalar) and node.tag == _MERGE:
        return node.value
    if isinstance(node, _Scalar):
        kind = _KINDS.get(node.tag, f"tagged {_short(node.tag)!r}")
        raise ConfigError(
            f"{path or '$'}: the key {node.value!r} is read as {kind}, not text; quote it"
        )
    kind = "list" if isinstance(node, _Sequence) else "mapping"
    raise ConfigError(f"{path or '$'}: a key must be text, not a {kind}")


def _at_event(event: Event) -> str:
    return _at(event.start_mark)


def _at(mark: yaml.Mark | yaml._yaml.Mark | None) -> str:
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def _short(tag: str) -> str:
    return "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag


def key_path(path: str, key: str) -> str:
    """``key`` under ``path`` as errors name it: ``jobs[0].labels`` and ``team``."""
    return f"{path}.{key}" if path else key
