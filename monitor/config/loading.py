"""How a YAML file becomes ``Settings``, with every problem reported as one line.

Every problem starts with its place: the key path (``jobs[2].labels.team``), or for a problem of
the file itself the file and line, because an operator fixing a config at 3 a.m. needs the
place, not a traceback. Any string value may be ``${VAR}`` or ``${VAR:-default}``; expansion
happens on the parsed tree, so a secret containing ``#`` or ``:`` cannot break the YAML syntax,
and the error for an unset variable names the key that asked for it.

The file is read under bounds before any of it is trusted (``MAX_CONFIG_BYTES`` here,
``MAX_DEPTH`` and ``MAX_ALIAS_VALUES`` while composing, in ``yaml_tree.py``), so a wrong file (a
log, an image, a "billion laughs" alias bomb) is refused in milliseconds instead of holding the
process for minutes or all of its memory. And only what the schema can use is read: text,
numbers, true/false, null, lists, and mappings whose keys are text and written once
(``yaml_tree.py``: PyYAML would otherwise hand on a date where text was meant, bytes for
``!!binary``, a set, or the last of two equal keys). Here every string, from the file or the
environment, is held to the text rule: YAML decodes ``"\\ud83d\\ude00"`` escape by escape, so
halves of an emoji are joined, and a lone half or a control character is refused, naming its
key, and never reaches the schema, the logs or the state database.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from monitor.config.settings import Settings
from monitor.config.yaml_tree import key_path, read_document
from monitor.core.text import first_unsafe
from monitor.errors import ConfigError

MAX_CONFIG_BYTES = 1024 * 1024
"""A config file larger than 1 MiB is refused unread. 10,000 jobs with a label each take about
700 KB (0.35 s to load with libyaml, 2 s with PyYAML's parser in Python, where PyYAML has no
libyaml); a 50 MB file took 15 s to refuse."""

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
"""``${VAR}`` or ``${VAR:-default}`` anywhere in a string."""
_PAIR = re.compile("([\ud800-\udbff])([\udc00-\udfff])")
_SURROGATE = re.compile("[\ud800-\udfff]")


def load_settings(path: str | Path, env: Mapping[str, str] | None = None) -> Settings:
    """The file at ``path`` as ``Settings``; ``ConfigError`` (one line per problem) for anything
    else, whatever the file holds."""
    path = Path(path)
    doc = read_document(_read(path), str(path))
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
            out[key] = expand_env(value, env, key_path(path, str(key)))
        return out
    if isinstance(node, list):
        return [expand_env(v, env, f"{path}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(f"{path or '$'}: {node} is not a finite number")
    if not isinstance(node, str):
        return node
    if "${" not in node:  # most strings: no variable to look up
        return _checked(node, path, "the value")

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


_SINK_TAGS = {"log", "console", "file", "webhook"}


def _describe(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = err["loc"]
        path = ""
        for i, part in enumerate(loc):
            if part in _SINK_TAGS and i >= 2 and loc[i - 2] == "sinks":
                continue  # the discriminated union's branch (events.sinks[N].file), not a key
            path = f"{path}[{part}]" if isinstance(part, int) else key_path(path, str(part))
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "missing":
            message = "required key is missing"
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
        for line in message.splitlines():
            problems.append(f"{path}: {line}" if path else line)
    return problems
