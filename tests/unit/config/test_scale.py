"""scale.py: the settings of sharding and discovery; ``shard.index: auto`` from the host name."""

from __future__ import annotations

import socket

import pytest

from monitor.config.scale import hostname_ordinal


@pytest.mark.parametrize(
    ("host", "ordinal"),
    [("modelarts-monitor-0", 0), ("modelarts-monitor-12", 12), ("mon-3.mon.ns.svc", 3)],
)
def test_the_ordinal_comes_from_a_statefulset_host_name(host: str, ordinal: int) -> None:
    assert hostname_ordinal({"HOSTNAME": host}) == ordinal


def test_without_hostname_the_system_host_name_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "monitor-4")
    assert hostname_ordinal({}) == 4


@pytest.mark.parametrize("host", ["monitor", "monitor-", "monitor-a", "-1", "7", "monitor-2\n"])
def test_a_host_name_without_an_ordinal_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match="ordinal"):
        hostname_ordinal({"HOSTNAME": host})
