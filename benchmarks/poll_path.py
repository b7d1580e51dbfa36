"""What each step of the poll path saves: CPU per detail GET, one step added at a time.

    python benchmarks/poll_path.py [--jobs 2000] [--rounds 7]

Against nginx serving the scale benchmark's documents (``backend.py``), at the daemon's
concurrency (32), each variant fetches every job's document and digests it as the poller does
(an unchanged body costs no decoding). The variants, each adding one step to the one before:

1. ``httpx.AsyncClient.stream(path)`` over the aiohttp transport: the old client (``base_url``
   merged, default headers and cookies per request, the signer's canonical request each time);
2. a prepared ``httpx.Request`` per job (URL parsed once, headers copied), still through
   ``AsyncClient.send`` (its cookie jar, redirects, hooks, timeout handling);
3. straight to the transport through the auth flow, the body read undecoded when it is not
   compressed (``ModelArtsClient``'s path for any request);
4. the signer's cached parts (``SigningCache``): a job's detail GET as ``ModelArtsClient`` sends it;
5. and an aiohttp session without a cookie jar (``transport.build_transport``): the daemon's path.

Each variant is run without auth and with AK/SK signing, in ``--rounds`` interleaved rounds;
the least is printed, as other processes only ever add to a round's CPU. Next to them, the
floors: raw aiohttp and httpx over aiohttp, both also JSON-decoding, as
``shared/reference/performance-notes.md`` measured them. It prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from httpx_aiohttp import AiohttpTransport

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backend import PROJECT, Backend, job_id
from baselines import httpx_client, raw_aiohttp
from scale import CONCURRENCY, SIGNED, machine, rounded

from monitor.modelarts.auth.aksk import SIGNING_CACHE, AkSkAuth
from monitor.modelarts.client import ModelArtsClient
from monitor.modelarts.transport import build_transport

Poll = Callable[[str], Awaitable[bytes]]
HEADERS = {"Accept": "application/json", "User-Agent": "modelarts-monitor"}


def auth_of(signed: bool) -> httpx.Auth | None:
    return AkSkAuth(SIGNED["ak"], SIGNED["sk"], project_id=PROJECT) if signed else None


def limits() -> httpx.Limits:
    return httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)


def path_of(job: str) -> str:
    return f"/v2/{PROJECT}/training-jobs/{job}"


async def via_async_client(url: str, signed: bool, prepared: bool) -> tuple[Poll, Any]:
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

    return poll, client


async def via_monitor_client(url: str, signed: bool, step: int) -> tuple[Poll, Any]:
    """Steps 3 to 5: ``ModelArtsClient``; 3 sends a job's prepared detail GET without its
    ``SigningCache`` (signed from scratch), 4 and 5 with it."""
    transport = (
        build_transport("aiohttp", verify=True, max_connections=CONCURRENCY)
        if step == 5
        else AiohttpTransport(limits=limits())
    )
    client = ModelArtsClient(url, PROJECT, auth=auth_of(signed), transport=transport)
    client.keep_prepared(lambda job: True)

    async def poll(job: str) -> bytes:
        if step == 3:
            request = client._detail_request(job)
            request.extensions.pop(SIGNING_CACHE, None)  # this request's copy only
            return (await client._request(request, "detail")).content
        return (await client.get_job_body(job)).content

    return poll, client


STEPS = {
    "1 httpx.AsyncClient.stream (before)": lambda url, signed: via_async_client(url, signed, False),
    "2 + prepared URL and headers": lambda url, signed: via_async_client(url, signed, True),
    "3 + straight to the transport, raw body read": lambda url, signed: via_monitor_client(
        url, signed, 3
    ),
    "4 + cached signing parts": lambda url, signed: via_monitor_client(url, signed, 4),
    "5 + no aiohttp cookie jar (now)": lambda url, signed: via_monitor_client(url, signed, 5),
}


async def cpu_ms(poll: Poll, jobs: list[str]) -> float:
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(job: str) -> None:
        async with sem:
            hashlib.blake2b(await poll(job), digest_size=16).digest()

    cpu = time.process_time()
    await asyncio.gather(*(one(job) for job in jobs))
    return (time.process_time() - cpu) / len(jobs) * 1000


async def run(url: str, n: int, rounds: int) -> dict[str, dict[str, float]]:
    jobs = [job_id(i) for i in range(n)]
    variants = [(name, signed) for name in STEPS for signed in (False, True)]
    polls: dict[tuple[str, bool], Poll] = {}
    clients = []
    for name, signed in variants:
        poll, client = await STEPS[name](url, signed)
        polls[name, signed] = poll
        clients.append(client)
        await cpu_ms(poll, jobs)  # warm-up: connections open, every job prepared once
    samples: dict[tuple[str, bool], list[float]] = {v: [] for v in variants}
    for _ in range(rounds):
        for variant in variants:
            samples[variant].append(await cpu_ms(polls[variant], jobs))
    for client in clients:
        await client.aclose()
    table: dict[str, dict[str, float]] = {}
    for (name, signed), values in samples.items():
        table.setdefault(name, {})["signed" if signed else "unsigned"] = min(values)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="modelarts-poll-path-") as tmp:
        backend = Backend(args.jobs, Path(tmp))
        try:
            steps = asyncio.run(run(backend.url, args.jobs, args.rounds))
            floors = {
                "raw_aiohttp": asyncio.run(raw_aiohttp(backend.url, args.jobs, CONCURRENCY)),
                "httpx_over_aiohttp": asyncio.run(
                    httpx_client(backend.url, args.jobs, CONCURRENCY, True)
                ),
            }
        finally:
            backend.stop()
    result = {
        "jobs": args.jobs,
        "rounds": args.rounds,
        "backend": backend.kind,
        "machine": machine(),
        "cpu_ms_per_poll": steps,
        "floors_cpu_ms_per_request_with_json": {
            k: v["cpu_ms_per_request"] for k, v in floors.items()
        },
    }
    print(json.dumps(rounded(result), indent=2))


if __name__ == "__main__":
    main()
