"""What each step of the poll path saves: CPU per detail GET, one step added at a time.

    python benchmarks/poll_path.py [--jobs 2000] [--rounds 7] [--only 5,6,7,P]

Against nginx serving the scale benchmark's documents (``backend.py``), at the daemon's
concurrency (32), each variant fetches every job's document and digests it as the poller does
(an unchanged body costs no decoding). The variants, each adding one step to the one before:

1. ``httpx.AsyncClient.stream(path)`` over the aiohttp transport: the old client;
2. a prepared ``httpx.Request`` per job (URL parsed once, headers copied), still through
   ``AsyncClient.send`` (its cookie jar, redirects, hooks, timeout handling);
3. straight to the transport through the auth flow, the body read undecoded when it is not
   compressed (``ModelArtsClient``'s path for any request);
4. the signer's cached parts (``SigningCache``): a job's detail GET as ``ModelArtsClient`` sends it;
5. an aiohttp session without a cookie jar;
6. headers handed to aiohttp decoded once (``transport.aiohttp_headers``), httpx-aiohttp's
   timers still set (``sock_read`` rescheduled per chunk, ``connect``);
7. no aiohttp timer (the client's deadline bounds the exchange);
8. and the body read as aiohttp buffers it, not by httpx's raw iterator in 16 KiB reads
   (``transport._Body``): the daemon's client and transport (``put_back`` undoes the later
   steps for the earlier rows).

Then ``Poller.poll`` around that client, on a real job book over a SQLite file, every body
unchanged after a first round (a large monitor's steady state), one step at a time from the
poller as it was (``BeforePoller``, a copy of its per-poll code):

P1. as it was: every poll admitted through its throttle's turn by a generator context
    manager, the job's view taken twice, ``labels()`` per count, ``bound_contextvars``;
P2. + the admission's fast path (no rate limit, no pause: no throttle turn, no generator);
P3. + one view per poll; P4. + the counters' label children found once (``MonitorMetrics``);
P5. + the log context bound and reset by token: ``Poller.poll`` as it is (now).

Each runs unsigned and AK/SK-signed in ``--rounds`` interleaved rounds, the least printed
(other processes only add to a round's CPU). Row 0 is the floor, raw aiohttp JSON-decoding as
``performance-notes.md`` measured it; each row's ratio to it is the figure to compare across
machines. One JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import aiohttp
import httpx
import structlog
from httpx_aiohttp.transport import AiohttpResponseStream, AiohttpTransport

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backend import PROJECT, Backend, job_id
from baselines import httpx_client
from scale import CONCURRENCY, SIGNED, machine, rounded

from monitor.config.settings import PollSettings
from monitor.daemon.handoff import Failed
from monitor.daemon.jobs import JobBook
from monitor.daemon.poller import Poller
from monitor.daemon.targets import Pauses, admitted
from monitor.daemon.wiring import TargetThrottle
from monitor.delivery.dispatcher import Dispatcher
from monitor.exposition.own import MonitorMetrics
from monitor.exposition.series import SeriesStore
from monitor.logs import configure as configure_logs
from monitor.modelarts import client as client_module
from monitor.modelarts import transport as transport_module
from monitor.modelarts.auth.aksk import SIGNING_CACHE, AkSkAuth
from monitor.modelarts.client import ModelArtsClient
from monitor.modelarts.transport import build_transport
from monitor.store import Store

Poll = Callable[[str], Awaitable[bytes | None]]
HEADERS = {"Accept": "application/json", "User-Agent": "modelarts-monitor"}
# What httpx-aiohttp sets for a request of httpx.Timeout(10.0), the client's:
HTTPX_AIOHTTP_TIMERS = aiohttp.ClientTimeout(sock_connect=10.0, sock_read=10.0, connect=10.0)


@dataclass
class Variant:
    """One row's poll of one job, what closes it, and what surrounds each of its rounds."""

    poll: Poll
    closers: list[Callable[[], Awaitable[None]]]
    around: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext


def auth_of(signed: bool) -> httpx.Auth | None:
    return AkSkAuth(SIGNED["ak"], SIGNED["sk"], project_id=PROJECT) if signed else None


def limits() -> httpx.Limits:
    return httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)


def path_of(job: str) -> str:
    return f"/v2/{PROJECT}/training-jobs/{job}"


async def via_raw_aiohttp(url: str) -> Variant:
    """Row 0, ``baselines.raw_aiohttp`` in the same interleaved rounds: aiohttp's own client,
    no cookie jar, the body JSON-decoded (unsigned in both columns)."""
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    session = aiohttp.ClientSession(url, connector=connector, cookie_jar=aiohttp.DummyCookieJar())

    async def poll(job: str) -> None:
        async with session.get(path_of(job)) as r:
            json.loads(await r.read())

    return Variant(poll, [session.close])


async def via_async_client(url: str, signed: bool, prepared: bool) -> Variant:
    """Steps 1 and 2: an ``httpx.AsyncClient`` as the old client built it."""
    client = httpx.AsyncClient(
        base_url=url,
        auth=auth_of(signed),
        timeout=httpx.Timeout(10.0),
        headers=HEADERS,
        transport=AiohttpTransport(limits=limits()),
    )
    urls: dict[str, httpx.URL] = {}
    headers = httpx.Headers({"Host": httpx.URL(url).netloc.decode(), **client.headers})
    extensions = {"timeout": httpx.Timeout(10.0).as_dict()}

    async def poll(job: str) -> bytes:
        if not prepared:
            async with client.stream("GET", path_of(job)) as r:
                return await r.aread()
        if job not in urls:
            urls[job] = httpx.URL(url + path_of(job))
        request = httpx.Request("GET", urls[job], headers=headers, extensions=extensions)
        r = await client.send(request, stream=True)
        try:
            return await r.aread()
        finally:
            await r.aclose()

    return Variant(poll, [client.aclose])


def jarless_session() -> aiohttp.ClientSession:
    """Step 5's: httpx-aiohttp's session, without a cookie jar."""
    connector = aiohttp.TCPConnector(limit=CONCURRENCY, keepalive_timeout=5.0)
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())


async def read_via_aiter_raw(streamed: httpx.Response) -> bytes:
    """How the client read a plain body before step 8 (but for the cap: it costs nothing)."""
    return b"".join([chunk async for chunk in streamed.aiter_raw()])


@contextlib.contextmanager
def put_back(step: int) -> Iterator[None]:
    """Steps 3 to 7: what the later steps replaced, for the length of a round."""
    olds: list[tuple[object, str, object]] = [(client_module, "_read_capped", read_via_aiter_raw)]
    olds += [(transport_module, "_Body", AiohttpResponseStream)] if step >= 6 else []
    olds += [(transport_module, "_UNBOUNDED", HTTPX_AIOHTTP_TIMERS)] if step == 6 else []
    with contextlib.ExitStack() as stack:
        for module, name, old in olds:
            stack.enter_context(mock.patch.object(module, name, old))
        yield


async def via_monitor_client(url: str, signed: bool, step: int) -> Variant:
    """Steps 3 to 8: ``ModelArtsClient``; 3 sends a job's prepared detail GET without its
    ``SigningCache`` (signed from scratch), the later ones with it."""
    transport = (
        build_transport("aiohttp", verify=True, max_connections=CONCURRENCY)
        if step >= 6
        else AiohttpTransport(limits=limits(), client=jarless_session if step == 5 else None)
    )
    client = ModelArtsClient(url, PROJECT, auth=auth_of(signed), transport=transport)
    client.keep_prepared(lambda job: True)

    async def poll(job: str) -> bytes:
        if step == 3:
            request = client._detail_request(job)
            request.extensions.pop(SIGNING_CACHE, None)  # this request's copy only
            return (await client._request(request, "detail")).content
        return (await client.get_job_body(job)).content

    around = functools.partial(put_back, step) if step < 8 else contextlib.nullcontext
    return Variant(poll, [client.aclose], around)


@contextlib.asynccontextmanager
async def generator_admission(
    slots: asyncio.Semaphore, pauses: Pauses, target: str
) -> AsyncIterator[None]:
    """``daemon/targets.admitted`` as it was: every poll through the throttle's turn."""
    while True:
        await pauses.admit(target)
        await slots.acquire()
        if pauses(target) <= 0:
            break
        slots.release()
    try:
        yield
    finally:
        slots.release()


class BeforePoller(Poller):
    """``Poller.poll`` as it was, with this round's steps switched on up to ``step`` (P1-P4)."""

    def __init__(self, *, step: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._step = step

    async def poll(self, job_id: str) -> None:
        view = self._book.view(job_id)
        if view is None or self._clock() < view.health.not_before:
            return
        await self._before_in_slot(job_id, view.target)  # no job is slow here

    async def _before_in_slot(self, job_id: str, target: str) -> None:
        context = {"job_id": job_id, "target": target} if target else {"job_id": job_id}
        admission = admitted if self._step >= 2 else generator_admission
        async with admission(self._slots, self._pauses, target):
            with structlog.contextvars.bound_contextvars(**context):
                started = time.perf_counter()
                client = self._client_for(target) if self._step >= 3 else self.client_of(job_id)
                outcome = await self._fetch(job_id, client)
                timed_out = isinstance(outcome, Failed) and outcome.result == "timeout"
                slow = timed_out or time.perf_counter() - started > self._slow_after
                result = await self.apply(job_id, outcome, slow=slow)
                self._metrics.poll_duration.observe(time.perf_counter() - started)
                if self._step >= 4:
                    self._metrics.count_poll(target, result)
                else:
                    self._metrics.polls.labels(result).inc()


@dataclass
class Rig:
    """One job book over a SQLite file, every job watched, that the poller rows share."""

    jobs: list[str]
    workdir: Path
    metrics: MonitorMetrics = field(default_factory=MonitorMetrics)
    book: JobBook | None = None
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def start(self) -> JobBook:
        store = Store(self.workdir / "state.db")
        dispatcher = Dispatcher(store, [], metrics=self.metrics)
        dispatcher.start()
        self.book = JobBook(
            store=store,
            series=SeriesStore(project_id=PROJECT),
            metrics=self.metrics,
            dispatcher=dispatcher,
            schedule=lambda job, interval, initial: None,
            clock=time.time,
            project_id=PROJECT,
            poll=PollSettings(interval=30.0),
        )
        for job in self.jobs:
            self.book.watch(job, {})

        async def close() -> None:
            await dispatcher.stop(1.0)
            store.close()

        self.closers.append(close)
        return self.book


async def via_poller(url: str, signed: bool, step: int, rig: Rig) -> Variant:
    """P1-P5: a poller as App wires it (a rate-free throttle, requests counted); P5 ``Poller``."""
    book = rig.book or await rig.start()
    pauses = Pauses()
    throttle = pauses.add("", TargetThrottle(0.0, max_pause=60.0))
    transport = build_transport("aiohttp", verify=True, max_connections=CONCURRENCY)
    client = ModelArtsClient(
        url, PROJECT, auth=auth_of(signed), throttle=throttle, transport=transport
    )
    metrics = rig.metrics

    def old_count(endpoint: str, result: str) -> None:  # ``labels()`` per request, as before
        metrics.api_requests.labels(endpoint, result).inc()

    client.count_requests(functools.partial(metrics.count_request, "") if step >= 4 else old_count)
    common: dict[str, Any] = {"client": client, "book": book, "metrics": metrics}
    common |= {"concurrency": CONCURRENCY, "pauses": pauses}
    poller = Poller(**common) if step == 5 else BeforePoller(step=step, **common)
    return Variant(poller.poll, [client.aclose])


STEPS = (
    "0 raw aiohttp, JSON-decoded (the floor)",
    "1 httpx.AsyncClient.stream (before)",
    "2 + prepared URL and headers",
    "3 + straight to the transport, raw body read",
    "4 + cached signing parts",
    "5 + no aiohttp cookie jar",
    "6 + headers decoded once for aiohttp",
    "7 + no aiohttp timers",
    "8 + body read as aiohttp buffers it (client now)",
    "P1 Poller.poll, body unchanged (before)",
    "P2 + admission fast path",
    "P3 + one view per poll",
    "P4 + label children found once",
    "P5 + log context by token (poller now)",
)  # each row's name starts with its step


async def build(name: str, url: str, signed: bool, rig: Rig) -> Variant:
    step = name.split()[0]
    if step == "0":
        return await via_raw_aiohttp(url)
    if step in ("1", "2"):
        return await via_async_client(url, signed, prepared=step == "2")
    if step.startswith("P"):
        return await via_poller(url, signed, int(step[1:]), rig)
    return await via_monitor_client(url, signed, int(step))


async def cpu_ms(poll: Poll, jobs: list[str]) -> float:
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(job: str) -> None:
        async with sem:
            body = await poll(job)
            if body is not None:
                hashlib.blake2b(body, digest_size=16).digest()

    cpu = time.process_time()
    await asyncio.gather(*(one(job) for job in jobs))
    return (time.process_time() - cpu) / len(jobs) * 1000


async def run(
    url: str, n: int, rounds: int, workdir: Path, only: str | None = None
) -> dict[str, dict[str, float]]:
    jobs = [job_id(i) for i in range(n)]
    prefixes = ("0", *only.split(",")) if only else ("",)  # the floor is always measured
    names = [name for name in STEPS if name.startswith(prefixes)]
    variants = [(name, signed) for name in names for signed in (False, True)]
    rig = Rig(jobs, workdir)
    built: dict[tuple[str, bool], Variant] = {}
    try:
        for name, signed in variants:
            variant = built[name, signed] = await build(name, url, signed, rig)
            with variant.around():
                await cpu_ms(variant.poll, jobs)  # warm-up: connections open, jobs prepared
        samples: dict[tuple[str, bool], list[float]] = {v: [] for v in variants}
        for _ in range(rounds):
            for key in variants:
                with built[key].around():
                    samples[key].append(await cpu_ms(built[key].poll, jobs))
    finally:
        for variant in built.values():
            for close in variant.closers:
                await close()
        for close in rig.closers:
            await close()
    table: dict[str, dict[str, float]] = {}
    for (name, signed), values in samples.items():
        table.setdefault(name, {})["signed" if signed else "unsigned"] = min(values)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", help="only the rows starting so (comma-separated: 5,6,7,P)")
    args = parser.parse_args()
    configure_logs("info", "json", stream=sys.stderr)  # as the daemon: debug lines cost nothing
    with tempfile.TemporaryDirectory(prefix="modelarts-poll-path-") as tmp:
        backend = Backend(args.jobs, Path(tmp))
        try:
            steps = asyncio.run(run(backend.url, args.jobs, args.rounds, Path(tmp), args.only))
            httpx_floor = asyncio.run(httpx_client(backend.url, args.jobs, CONCURRENCY, True))
        finally:
            backend.stop()
    raw = min(steps[STEPS[0]].values())  # both columns are samples of the same unsigned row
    ratios = {name: {k: ms / raw for k, ms in row.items()} for name, row in steps.items()}
    result = {"jobs": args.jobs, "rounds": args.rounds, "backend": backend.kind}
    result |= {"machine": machine(), "cpu_ms_per_poll": steps, "ratio_to_raw_aiohttp": ratios}
    result["httpx_over_aiohttp_cpu_ms_with_json"] = httpx_floor["cpu_ms_per_request"]
    print(json.dumps(rounded(result), indent=2))


if __name__ == "__main__":
    main()
