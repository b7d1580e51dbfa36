"""How a YAML file becomes ``Settings``, with every problem reported as one line.

Every problem starts with the key path (``jobs[2].labels.team``), because an operator fixing a
config at 3 a.m. needs the place, not a traceback. Any string value may be ``${VAR}`` or
``${VAR:-default}``; expansion happens on the parsed YAML tree, so a secret containing ``#`` or
``:`` cannot break the YAML syntax, and the error for an unset variable names the key that asked
for it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from monitor.config.settings import Settings
from monitor.errors import ConfigError

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(node: object, env: Mapping[str, str], path: str = "") -> object:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of a parsed YAML tree."""
    if isinstance(node, dict):
        return {k: expand_env(v, env, _join(path, str(k))) for k, v in node.items()}
    if isinstance(node, list):
        return [expand_env(v, env, f"{path}[{i}]") for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def substitute(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"{path or '$'}: environment variable {name} is not set")

    return _ENV.sub(substitute, node)


def _env_defaults(doc: dict[str, Any], env: Mapping[str, str]) -> None:
    """The Huawei SDKs' variables fill keys the file leaves out, as users already expect."""
    api = doc.get("api")
    if isinstance(api, dict) and "project_id" not in api and env.get("HUAWEICLOUD_SDK_PROJECT_ID"):
        api["project_id"] = env["HUAWEICLOUD_SDK_PROJECT_ID"]
    auth = doc.setdefault("auth", {})
    if isinstance(auth, dict) and auth.get("type", "aksk") == "aksk":
        for key, var in (("ak", "HUAWEICLOUD_SDK_AK"), ("sk", "HUAWEICLOUD_SDK_SK")):
            if key not in auth and env.get(var):
                auth[key] = env[var]


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


def load_settings(path: str | Path, env: Mapping[str, str] | None = None) -> Settings:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: {problem}{where}") from None
    return parse_settings(doc, env)


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
