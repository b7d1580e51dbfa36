"""The monitor's client against the simulator over HTTPS (a private CA made with ``trustme``)
and through an HTTP forward proxy taken from the environment, all on 127.0.0.1."""

from __future__ import annotations

import contextlib
import re
import selectors
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import yaml
from aiohttp import web

from monitor.cli.main import main
from monitor.errors import NetworkError
from monitor.modelarts.client import ModelArtsClient, tls_verify
from monitor.modelarts.parse import parse_job
from monitor.simulator import Simulator, builtin_scenario, start, stop

BERT = "3faf5c03-aaa1-4cbe-879d-24b05d997347"
PROJECT = "0123456789abcdef"
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ModelArtsClient`` trusts the environment: no ambient proxy or CA bundle may leak in."""
    for name in (*PROXY_VARS, *(v.lower() for v in PROXY_VARS), "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def certs(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """PEM files: the CA, and the simulator's certificate for 127.0.0.1 and its key."""
    folder = tmp_path_factory.mktemp("certs")
    server = ca.issue_cert("127.0.0.1")
    paths = {"ca": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    for blob in server.cert_chain_pems[1:]:
        blob.write_to_path(str(paths["cert"]), append=True)
    server.private_key_pem.write_to_path(str(paths["key"]))
    return paths


def sim_at_10() -> Simulator:
    sim = Simulator(builtin_scenario(), manual_clock=True)
    sim.set_time(10)
    return sim


@pytest.fixture
async def https_url(certs: dict[str, Path]) -> AsyncIterator[str]:
    """The simulator served over HTTPS on 127.0.0.1 with the trustme certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs["cert"], certs["key"])
    runner, port = await start(sim_at_10(), "127.0.0.1", 0, ssl_context=context)
    yield f"https://127.0.0.1:{port}"
    await stop(runner)


async def fetch(url: str, **kw: Any) -> Any:
    async with ModelArtsClient(url, PROJECT, timeout=5.0, **kw) as client:
        return await client.get_job(BERT)


# --- TLS ----------------------------------------------------------------------------------------


async def test_default_verification_rejects_the_private_ca(https_url: str) -> None:
    with pytest.raises(NetworkError, match="certificate verify failed"):
        await fetch(https_url, verify=tls_verify(None, False))


async def test_the_private_ca_file_makes_the_certificate_trusted(
    https_url: str, certs: dict[str, Path]
) -> None:
    doc = await fetch(https_url, verify=tls_verify(str(certs["ca"]), False))
    assert parse_job(doc, BERT).phase == "Running"


async def test_insecure_skips_verification(https_url: str) -> None:
    doc = await fetch(https_url, verify=tls_verify(None, True))
    assert parse_job(doc, BERT).name == "bert-pretrain"


def test_simulate_serves_https_with_tls_flags(certs: dict[str, Path], tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    jobs = [{"id": "j", "name": "n", "timeline": [{"at": 0, "phase": "Running"}]}]
    scenario.write_text(yaml.safe_dump({"jobs": jobs}), encoding="utf-8")
    argv = [sys.executable, "-m", "monitor", "simulate", "--scenario", str(scenario)]
    argv += ["--listen", "127.0.0.1:0", "--tls-cert", str(certs["cert"])]
    argv += ["--tls-key", str(certs["key"])]
    with spawn(argv, tmp_path / "simulator.log") as url:
        assert url.startswith("https://")
        verify = ssl.create_default_context(cafile=str(certs["ca"]))
        with httpx.Client(verify=verify, trust_env=False, timeout=5) as http:
            assert http.get(f"{url}/v2/p/training-jobs/j").json()["metadata"]["id"] == "j"


def test_simulate_with_an_unreadable_certificate_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "s.yaml"
    jobs = [{"id": "j", "name": "n", "timeline": [{"at": 0, "phase": "Running"}]}]
    scenario.write_text(yaml.safe_dump({"jobs": jobs}), encoding="utf-8")
    missing = tmp_path / "missing.pem"
    argv = ["simulate", "--scenario", str(scenario), "--listen", "127.0.0.1:0"]
    rc = main([*argv, "--tls-cert", str(missing), "--tls-key", str(missing)])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("config error: --tls-cert/--tls-key: cannot load")
    assert len(err.splitlines()) == 1


@contextlib.contextmanager
def spawn(argv: list[str], log: Path) -> Iterator[str]:
    """A ``simulate`` subprocess, always stopped; yields the URL it announces on stdout."""
    with log.open("w") as stderr:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True)
    assert proc.stdout is not None
    try:
        url = None
        deadline = time.monotonic() + 20
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while url is None and time.monotonic() < deadline and proc.poll() is None:
                if sel.select(timeout=0.2):
                    m = re.search(
                        r"listening on (https?://127\.0\.0\.1:\d+)", proc.stdout.readline()
                    )
                    url = m.group(1) if m else None
        assert url is not None, f"simulator did not start: {log.read_text()}"
        yield url
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
        proc.stdout.close()


# --- HTTP proxy ---------------------------------------------------------------------------------


class ForwardProxy:
    """A minimal HTTP forward proxy: takes absolute-form requests, records their targets and
    relays them to the origin with a client that ignores the environment's proxies."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._upstream = httpx.AsyncClient(trust_env=False, timeout=5)

    async def handle(self, request: web.Request) -> web.Response:
        target = request.raw_path  # the request line's target, as the client sent it
        self.seen.append(target)
        if not target.startswith("http://"):
            return web.Response(status=400, text="expected an absolute-form request")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream = await self._upstream.request(
            request.method, target, headers=headers, content=await request.read()
        )
        relayed = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
        return web.Response(status=upstream.status_code, body=upstream.content, headers=relayed)

    async def aclose(self) -> None:
        await self._upstream.aclose()


HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "transfer-encoding",
    "content-length",
    "content-encoding",
    "host",
}


@pytest.fixture
async def proxy() -> AsyncIterator[tuple[ForwardProxy, int]]:
    forward = ForwardProxy()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield forward, int(runner.addresses[0][1])
    await runner.cleanup()
    await forward.aclose()


@pytest.fixture
async def http_url() -> AsyncIterator[str]:
    runner, port = await start(sim_at_10(), "127.0.0.1", 0)
    yield f"http://127.0.0.1:{port}"
    await stop(runner)


async def test_the_client_goes_through_the_http_proxy_from_the_environment(
    proxy: tuple[ForwardProxy, int], http_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    forward, port = proxy
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")  # read at client construction
    doc = await fetch(http_url)
    assert parse_job(doc, BERT).name == "bert-pretrain"
    assert forward.seen == [f"{http_url}/v2/{PROJECT}/training-jobs/{BERT}"]


async def test_the_daemons_client_on_the_default_aiohttp_transport_honours_the_proxy_too(
    proxy: tuple[ForwardProxy, int], http_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README says proxies come from the environment; the default transport is aiohttp's,
    which does not read the environment itself, so the client is built with the proxy for its
    endpoint."""
    from monitor.config.loading import parse_settings
    from monitor.daemon.wiring import build_client

    forward, port = proxy
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    doc = {"api": {"endpoint": http_url, "project_id": PROJECT}, "auth": {"type": "none"}}
    settings = parse_settings(doc, env={})
    assert settings.api is not None and settings.api.transport == "aiohttp"
    async with build_client(settings) as client:
        assert parse_job(await client.get_job(BERT), BERT).name == "bert-pretrain"
    assert forward.seen == [f"{http_url}/v2/{PROJECT}/training-jobs/{BERT}"]


async def test_without_the_proxy_variable_the_client_goes_direct(
    proxy: tuple[ForwardProxy, int], http_url: str
) -> None:
    forward, _ = proxy
    doc = await fetch(http_url)
    assert parse_job(doc, BERT).name == "bert-pretrain"
    assert forward.seen == []
