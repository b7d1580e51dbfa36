"""The ``modelarts-monitor`` commands (``python -m monitor`` is the same program).

Exit codes: 0 success; 1 the command ran but found problems (``check``, ``once``); 2 a bad
config, bad arguments or an unusable state database, reported as one line per problem on stderr,
never as a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING

from monitor import __version__, logs
from monitor.cli.events import add_parser as add_events_parser
from monitor.cli.events import run_events
from monitor.config.loading import load_settings
from monitor.config.settings import DiscoverySettings, Settings, split_listen
from monitor.config.targets import Target, targets_of
from monitor.core.diff import observe
from monitor.errors import ApiError, ConfigError, ListenError, MonitorError, StateError
from monitor.exposition.series import View, render_job

if TYPE_CHECKING:
    from monitor.modelarts.client import ModelArtsClient

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2


def _listen(value: str) -> str:
    try:
        split_listen(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if number <= 0:
        raise argparse.ArgumentTypeError("must be greater than zero")
    return number


def _speed(value: str) -> float:
    from monitor.cli.demo import MAX_SPEED

    speed = _positive(value)
    if speed > MAX_SPEED:
        raise argparse.ArgumentTypeError(f"at most {MAX_SPEED:g}; faster, polls would miss steps")
    return speed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelarts-monitor",
        description="Watch ModelArts training jobs; export Prometheus metrics and events.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--config", required=True, help="YAML config file")

    check = sub.add_parser("check", help="validate the config and fetch each job once")
    check.add_argument("--config", required=True)

    once = sub.add_parser("once", help="poll once; print each snapshot and its metric lines")
    once.add_argument("--config", required=True)
    once.add_argument("--job", help="only this job id (default: every configured job)")

    status = sub.add_parser("status", help="table of monitored jobs from the state database")
    status.add_argument("--config", required=True)

    add_events_parser(sub)

    demo = sub.add_parser("demo", help="simulator + daemon on a built-in scenario")
    demo.add_argument("--speed", type=_speed, default=1.0, help="scenario speed, up to 10")
    demo.add_argument(
        "--listen", type=_listen, default="127.0.0.1:9888", help="where /metrics is served"
    )
    demo.add_argument(
        "--keep-running", action="store_true", help="keep serving after the scenario ends"
    )
    demo.add_argument("--scenario", help="scenario file (default: the built-in demo)")
    demo.add_argument("--events-file", help="also append the events to this JSON-lines file")
    demo.add_argument("--state", metavar="FILE", help="keep the state database here, for events")

    sim = sub.add_parser("simulate", help="run the fake ModelArts API alone")
    sim.add_argument("--scenario", required=True)
    sim.add_argument("--listen", type=_listen, default="127.0.0.1:8443")
    sim.add_argument("--speed", type=_positive, help="override the scenario's speed")
    sim.add_argument(
        "--manual-clock",
        action="store_true",
        help="scenario time moves only via POST /_sim/advance",
    )
    sim.add_argument(
        "--ak",
        default=os.environ.get("SIMULATOR_AK"),
        help="require AK/SK signatures with this access key (SK from $SIMULATOR_SK)",
    )
    sim.add_argument(
        "--iam-user",
        metavar="NAME",
        help="issue IAM tokens to this user (password from $SIMULATOR_IAM_PASSWORD)",
    )
    sim.add_argument("--iam-domain", metavar="DOMAIN", help="the account of --iam-user")
    sim.add_argument(
        "--token-ttl",
        type=_positive,
        metavar="SECONDS",
        help="lifetime of issued IAM tokens (default: the scenario's, else 86400)",
    )
    sim.add_argument(
        "--credential-ttl",
        type=_positive,
        metavar="SECONDS",
        help="lifetime of the temporary AK/SK its metadata service issues (default: 3600)",
    )
    sim.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this PEM certificate")
    sim.add_argument("--tls-key", metavar="FILE", help="the PEM private key of --tls-cert")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args.config)
        if args.command == "check":
            return asyncio.run(_check(_settings(args.config, stream=sys.stderr)))
        if args.command == "once":
            return asyncio.run(_once(_settings(args.config, stream=sys.stderr), args.job))
        if args.command == "status":
            return _status(load_settings(args.config))
        if args.command == "events":
            return run_events(args)
        if args.command == "demo":
            from monitor.cli.demo import run_demo

            return asyncio.run(
                run_demo(
                    speed=args.speed,
                    listen=args.listen,
                    keep_running=args.keep_running,
                    scenario_path=args.scenario,
                    events_file=args.events_file,
                    state=args.state,
                )
            )
        if args.command == "simulate":
            return _simulate(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except StateError as exc:
        print(f"state error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except MonitorError as exc:  # e.g. ListenError from the demo: its message says what
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:
        from monitor.simulator import ScenarioError  # only demo/simulate read scenario files

        if not isinstance(exc, ScenarioError):
            raise
        for problem in exc.problems:
            print(f"scenario error: {exc.source}: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled command {args.command}")


def _settings(path: str, stream: object = None) -> Settings:
    settings = load_settings(path)
    logs.configure(
        settings.log.level,
        settings.log.format,
        stream=stream if stream is not None else sys.stdout,  # type: ignore[arg-type]
    )
    return settings


def _run(path: str) -> int:
    from monitor.daemon import gc_thresholds
    from monitor.daemon.app import App

    gc_thresholds.tune()
    settings = _settings(path)
    try:
        asyncio.run(App(settings, config_path=path).run())
    except ListenError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


async def _check(settings: Settings) -> int:
    """Each target's endpoint, credentials and jobs; with ``targets:``, a block per target
    headed by its name and project, its lines indented and worded as for a single project."""
    problems = 0
    for target in targets_of(settings):
        if target.name:
            print(f"target {target.name} (project {target.project_id}):")
        problems += await _check_target(target, "  " if target.name else "")
    return EXIT_PROBLEMS if problems else EXIT_OK


async def _check_target(target: Target, indent: str) -> int:
    """One line per job; a cause that fails every job alike (``diagnose``) is said once, for
    the jobs not yet fetched, which are then not fetched (each would wait for the same DNS
    failure or refused connection). A target with discovery and no jobs is checked with one
    search page instead. Returns the problems found."""
    from monitor.cli.diagnose import diagnose
    from monitor.daemon.wiring import build_client
    from monitor.modelarts.parse import parse_job

    problems = 0
    jobs = target.jobs
    async with build_client(target) as client:
        if not jobs and target.discovery is not None:
            return await _check_search(client, target, target.discovery, indent)
        for i, job in enumerate(jobs):
            try:
                snap = parse_job(await client.get_job(job.id), job.id)
            except ApiError as exc:
                problems += 1
                found = diagnose(exc, target)
                left = len(jobs) - i
                if found.everywhere and left > 1:
                    who = f"all {left} jobs" if i == 0 else f"job {job.id} and {left - 1} more"
                    print(f"{indent}{who}: {exc.result}: {found.text}")
                    break
                print(f"{indent}job {job.id}: {exc.result}: {found.text}")
                continue
            print(f"{indent}job {job.id}: ok ({snap.name}, {snap.phase or 'no phase'})")
    if not jobs:
        print(f"{indent}config ok; no jobs configured")
    return problems


async def _check_search(
    client: ModelArtsClient, target: Target, discovery: DiscoverySettings, indent: str
) -> int:
    """Endpoint and credentials of a discovery-only target: its first search page."""
    from monitor.cli.diagnose import diagnose
    from monitor.daemon.discovery import search_body

    workspace = discovery.workspaces[0]
    try:
        await client.search_jobs(search_body(discovery, workspace, 0))
    except ApiError as exc:
        print(f"{indent}job search: {exc.result}: {diagnose(exc, target).text}")
        return 1
    print(f"{indent}job search: ok (workspace {workspace}); no jobs configured")
    return 0


async def _once(settings: Settings, only: str | None) -> int:
    """Every target's jobs (or the one ``--job`` names), one after the other."""
    from monitor.daemon.wiring import build_client
    from monitor.modelarts.parse import parse_job

    targets = targets_of(settings)
    wanted = [(t, j) for t in targets for j in t.jobs if only is None or j.id == only]
    if only is not None and not wanted:
        raise ConfigError(f"--job: {only!r} is not one of the configured jobs")
    failed = 0
    view = View.of(settings.metrics)
    for target in targets:
        jobs = [j for t, j in wanted if t is target]
        if not jobs:
            continue
        async with build_client(target) as client:
            for job in jobs:
                try:
                    snap = parse_job(await client.get_job(job.id), job.id)
                except ApiError as exc:
                    failed += 1
                    print(f"# job {job.id}: {exc.result}: {exc}")
                    continue
                state, _ = observe(None, snap, time.time())
                print(f"# job {job.id}")
                print(json.dumps(asdict(snap), indent=2, ensure_ascii=False))
                chunks = render_job(
                    state, target.job_labels(job.labels), {"project_id": target.project_id}, view
                )
                for header, chunk in zip(view.headers, chunks, strict=False):
                    if chunk:  # what the daemon would export: metrics: applies here too
                        print(header.decode() + chunk.decode(), end="")
    return EXIT_PROBLEMS if failed else EXIT_OK


def _status(settings: Settings) -> int:
    from monitor.cli.status import render_dead_letters, render_table, status_rows
    from monitor.store.database import Store

    store = Store(settings.state.path, readonly=True)
    try:
        states = store.load_states()
        last_success = store.load_last_success()
        stored_targets = store.load_targets()
        dead_letters = store.dead_letters()
    finally:
        store.close()
    for job_id, why in store.unreadable.items():
        print(f"warning: job {job_id}: stored state unreadable ({why})", file=sys.stderr)
    configured = {j.id: t.name for t in targets_of(settings) for j in t.jobs}
    rows = status_rows(
        list(configured), states, last_success, targets={**stored_targets, **configured}
    )
    print(render_table(rows), end="")
    print(render_dead_letters(dead_letters), end="")
    return EXIT_OK


def _simulate(args: argparse.Namespace) -> int:
    from monitor.simulator import Simulator, load_scenario, start, stop

    scenario = load_scenario(args.scenario)
    credentials = None
    if args.ak:
        sk = os.environ.get("SIMULATOR_SK")
        if not sk:
            raise ConfigError("--ak needs the secret key in the environment variable SIMULATOR_SK")
        credentials = {args.ak: sk}
    iam_users = []
    if args.iam_user or args.iam_domain:
        if not (args.iam_user and args.iam_domain):
            raise ConfigError("--iam-user and --iam-domain go together")
        password = os.environ.get("SIMULATOR_IAM_PASSWORD")
        if not password:
            raise ConfigError(
                "--iam-user needs the password in the environment variable SIMULATOR_IAM_PASSWORD"
            )
        iam_users.append((args.iam_user, password, args.iam_domain))
    ssl_context = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise ConfigError("--tls-cert and --tls-key go together")
        import ssl

        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ssl_context.load_cert_chain(args.tls_cert, args.tls_key)
        except OSError as exc:  # ssl.SSLError included
            raise ConfigError(
                f"--tls-cert/--tls-key: cannot load {args.tls_cert} and {args.tls_key}: "
                f"{exc.strerror or exc}"
            ) from None
    host, port = split_listen(args.listen)

    async def serve() -> None:
        sim = Simulator(
            scenario,
            speed=args.speed,
            manual_clock=args.manual_clock,
            credentials=credentials,
            iam_users=iam_users,
            token_ttl=args.token_ttl,
            credential_ttl=args.credential_ttl,
        )
        runner, bound = await start(sim, host, port, ssl_context=ssl_context)
        scheme = "https" if ssl_context is not None else "http"
        print(f"simulator listening on {scheme}://{host}:{bound}", flush=True)
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        import signal

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopped.set)
        try:
            await stopped.wait()
        finally:
            await stop(runner)

    asyncio.run(serve())
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
