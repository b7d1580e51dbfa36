"""``modelarts-monitor events``: a job's story from the event journal, after delivery.

It opens the state database read-only (``Store(readonly=True)``), so it is safe beside a running
daemon and never changes what the daemon will do. The text form is the console sink's line
(``sinks.describe``, the one place that words an event for people), so what ``demo`` printed
live reads the same here; ``--json`` prints the CloudEvents as the file sink writes them.
With ``targets:`` each line starts with the event's target (its ``data.labels.target``).

``--job`` takes an id or a job name. Names come from the stored job states: a name several
jobs share shows all of them, and says so on stderr (stdout stays one event per line).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

from monitor.config.loading import load_settings
from monitor.config.settings import Settings, parse_duration
from monitor.core.events import EVENT_TYPES, TYPE_PREFIX
from monitor.errors import ConfigError
from monitor.store.database import Store

EXIT_OK, EXIT_NOTHING = 0, 1


def add_parser(sub: Any) -> None:
    """The ``events`` subcommand's arguments (``sub``: the commands' subparsers)."""
    events = sub.add_parser("events", help="the event journal from the state database")
    events.add_argument("--config", required=True, help="YAML config file (for state.path)")
    events.add_argument("--job", metavar="ID-or-NAME", help="only this job (an id or a name)")
    events.add_argument("--since", metavar="DURATION", help="only the last DURATION (30m, 1h, 7d)")
    events.add_argument(
        "--type",
        action="append",
        default=[],
        metavar="TYPE",
        help="only this type (phase_changed, or modelarts.job.phase_changed); repeatable",
    )
    events.add_argument("--target", metavar="NAME", help="only this target's jobs (targets:)")
    events.add_argument("--json", action="store_true", help="the CloudEvents, one per line")


def run_events(
    args: argparse.Namespace,
    *,
    now: float | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Print the journal's matching events, oldest first. Exit 1 if ``--job`` names no job
    the database knows; bad arguments raise ``ConfigError`` and a missing database
    ``StateError`` (``main`` turns both into one line and exit 2)."""
    out, err = out or sys.stdout, err or sys.stderr
    settings = load_settings(args.config)
    since = _since(args.since, time.time() if now is None else now)
    types = [_type(t) for t in args.type]
    targets = _targets(settings, args.target)
    store = Store(settings.state.path, readonly=True)
    try:
        job_ids: list[str] = []
        if args.job is not None:
            job_ids = _job_ids(store, args.job, err)
            if not job_ids:
                print(f"--job: no job with the id or name {args.job!r} is known", file=err)
                return EXIT_NOTHING
        events = store.journal(job_ids, since, types, limit=0, targets=targets)
    finally:
        store.close()
    width = max((len(t.name) for t in settings.targets or ()), default=0)
    for event in events:
        out.write(_printable(_line(event, args.json, width)) + "\n")
    out.flush()
    return EXIT_OK


def _since(text: str | None, now: float) -> float | None:
    if text is None:
        return None
    try:
        return now - parse_duration(text)
    except ValueError as exc:
        raise ConfigError(f"--since: {exc}") from None


def _type(text: str) -> str:
    short = text.removeprefix(TYPE_PREFIX)
    if short not in EVENT_TYPES:
        raise ConfigError(f"--type: {text!r} is not an event type; one of {', '.join(EVENT_TYPES)}")
    return short


def _targets(settings: Settings, name: str | None) -> list[str]:
    if name is None:
        return []
    names = [t.name for t in settings.targets or ()]
    if not names:
        raise ConfigError(f"--target: {name!r}: the config has no targets: section")
    if name not in names:
        raise ConfigError(
            f"--target: {name!r} is not a configured target; one of {', '.join(names)}"
        )
    return [name]


def _job_ids(store: Store, wanted: str, err: TextIO) -> list[str]:
    """``wanted`` as a stored job id, else the stored jobs of that name, else an id the
    journal still has events of (a job the monitor no longer keeps); [] if none."""
    states = store.load_states()
    if wanted in states:
        return [wanted]
    named = sorted(
        job_id
        for job_id, state in states.items()
        if state.snapshot is not None and state.snapshot.name == wanted
    )
    if len(named) > 1:
        print(
            f"--job: the name {wanted!r} matches {len(named)} jobs ({', '.join(named)}); "
            "showing the events of all of them",
            file=err,
        )
    if named:
        return named
    return [wanted] if store.journal([wanted], limit=1) else []


def _line(event: dict[str, Any], as_json: bool, target_width: int) -> str:
    from monitor.delivery.sinks import describe, to_json

    if as_json:
        try:
            return to_json(event).decode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: as a \u escape, still valid JSON
            return json.dumps(event, separators=(",", ":"))
    if not target_width:
        return describe(event)
    target = str(event.get("data", {}).get("labels", {}).get("target", "")) or "-"
    return f"{target:<{target_width}}  {describe(event)}"


def _printable(text: str) -> str:
    """One line any terminal takes: text the monitor could not make encodable when it was
    observed (a lone surrogate) is shown escaped, not a traceback."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
