"""The config tests' rigs: which YAML parser gives the loader its events."""

from __future__ import annotations

import pytest
import yaml

from monitor.config import yaml_tree


@pytest.fixture(params=["libyaml", "python"])
def yaml_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test once with libyaml's C parser and once with PyYAML's pure-Python one (what a
    PyYAML built without libyaml uses): a file must read, and fail, the same either way."""
    if request.param == "libyaml" and not yaml.__with_libyaml__:
        pytest.skip("PyYAML was built without libyaml")
    monkeypatch.setattr(yaml_tree, "LIBYAML", request.param == "libyaml")
    return str(request.param)
