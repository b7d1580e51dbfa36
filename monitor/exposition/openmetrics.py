"""OpenMetrics 1.0.0: what differs from the text format 0.0.4, and only that.

Prometheus asks for OpenMetrics first. For the monitor's series the two formats differ only in
the family headers and the end of the body, so the sample lines are rendered once and served in
both; what changes is derived here from the text header, the one place each family's help and
type are written (``Family.exposed_header``):

- a counter's family is named without ``_total`` in ``# HELP``/``# TYPE`` (its samples keep
  ``_total``, as OpenMetrics wants and prometheus-client writes);
- ``# UNIT`` is given where the name ends in a base unit (``_seconds``, ``_ratio``), as the
  format requires of a unit;
- ``"`` is escaped in ``# HELP`` too;
- the body ends with ``# EOF``: the own registry's OpenMetrics text, which comes last, ends
  with it (``MonitorMetrics.render``).

The rest is the same in both: label value escaping (``\\``, ``"``, newline), values, and no
timestamps or ``_created`` samples (the job counters are counts read from the API, whose start
is not known, and the own registry's are disabled).
"""

from __future__ import annotations

UNITS = ("seconds", "ratio")
"""Base units a family name may end in; the ones the monitor's families use."""


def header(text_header: bytes) -> bytes:
    """The OpenMetrics header of a family, from its text format header (``# HELP`` then
    ``# TYPE``, as ``Family.exposed_header`` writes it)."""
    help_line, type_line = text_header.decode().splitlines()
    name, _, text = help_line.removeprefix("# HELP ").partition(" ")
    kind = type_line.rsplit(" ", 1)[1]
    family = name.removesuffix("_total") if kind == "counter" else name
    text = text.replace('"', '\\"')  # \\ and newlines are escaped alike in both formats
    lines = [f"# HELP {family} {text}", f"# TYPE {family} {kind}"]
    unit = next((u for u in UNITS if family.endswith(f"_{u}")), None)
    if unit is not None:
        lines.append(f"# UNIT {family} {unit}")
    return ("\n".join(lines) + "\n").encode()
