"""A fake ModelArts API on aiohttp that serves a scenario's jobs as they are at scenario time now.

Why it exists: the monitor must be exercised end to end -- HTTP, signing, error mapping, the
400-for-a-deleted-job quirk -- without a cloud account, both by the ``demo`` command and by the
integration tests over loopback. It speaks the real wire format (see ``scenario.py`` for the
document) and the real error bodies, and knows nothing of the monitor's internals; the one
exception is ``monitor.modelarts.auth.aksk.verify``, imported lazily, so that the AK/SK check the
simulator applies is exactly the scheme the monitor signs with.

Scenario time runs on a clock: ``(clock() - start) * speed + offset`` in real mode, or only when
told (``advance``/``set_time``, or ``POST /_sim/advance``) in manual mode, which is what tests use
so that nothing waits on wall time. Endpoints:

* ``GET /v2/{project_id}/training-jobs/{training_job_id}``: 200 with the document, or 400
  ``ModelArts.2775`` for an unknown, not-yet-created or deleted job; any project id is accepted.
  With ``credentials`` set, every ``/v2/`` request must be AK/SK-signed, else 401 ``APIG.0301``.
  Every response carries an ``X-Request-Id``.
  With IAM users configured, a valid ``X-Auth-Token`` is accepted too (AK/SK still is, when
  credentials are set); a missing, unknown, expired or revoked token gets 401 ``APIG.0301``.
  With fault injection, the answer may be a fault instead (``faults.py``).
* ``POST /v2/{project_id}/training-job-searches``: a page of the job-detail documents of the
  jobs that exist now and match (``search.py``), or 400 ``ModelArts.0101``; signed, never faulted.
* ``GET /v2/{project_id}/training-jobs/{training_job_id}/metrics/{task_id}`` and
  ``GET /v2/{project_id}/training-jobs/{training_job_id}/events``: a task's resource usage
  (``usage.py``) and the job's events (``events.py``), served by ``telemetry.py``; signed like
  the job-detail endpoint, never faulted, no ``latency``.
* ``POST /v3/auth/tokens``: IAM password authentication (``iam.py``); 201 + ``X-Subject-Token``.
* ``PUT /meta-data/latest/api/token``, ``GET /openstack/latest/securitykey``: the metadata
  service's temporary AK/SK (``metadata.py``). A ``/v2/`` request with ``X-Security-Token`` must
  be signed with such an AK/SK and carry its unexpired token, else 401 ``APIG.0301``.
* ``GET /_sim/state``: ``{"time", "end_time", "finished", "requests"}``, plus
  ``"ok_requests"`` (per job: fault-free answers) and ``"faults"`` (per kind) when fault
  injection is configured, ``"tokens_issued"`` when IAM is, ``"credentials_issued"`` once the
  metadata service has issued some, ``"search_requests"`` and ``"searched"`` (per job: answers
  listing it) once used, ``"metrics_requests"`` and ``"events_requests"`` (per job) likewise.
* ``POST /_sim/advance`` ``{"seconds": n}`` or ``{"to": t}``: moves scenario time, answers state.
* ``GET /_sim/faults``, ``POST /_sim/faults`` with any subset of the scenario's ``faults`` block
  (``{"rate": 0}`` turns faults off): the fault configuration, changed from the next request.
* ``GET``/``POST /_sim/search`` ``{"omit": [status fields], "jobs": [ids] or null}``: what the
  search leaves out of its items (``search.Trim``); ``{"omit": []}`` serves them whole.
* ``POST /_sim/revoke``: revokes every issued token. ``GET /_sim/tokens``: ``{"tokens": [...]}``,
  every token ever issued, so that tests can check that none leaked into a log.

Admin endpoints are never authenticated. Neither tokens, passwords nor SKs are logged or put
in an error body by the simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import ssl
import struct
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.log import access_logger
from aiohttp.typedefs import Handler

from monitor.simulator.admin import admin_routes, json_response
from monitor.simulator.faults import FaultConfig, FaultInjector, fault_config
from monitor.simulator.iam import (
    TOKEN_TTL,
    WRONG_CREDENTIALS,
    IamUser,
    TokenIssuer,
    iam_error,
    parse_auth_request,
)
from monitor.simulator.metadata import CREDENTIAL_TTL, CredentialIssuer, metadata_routes
from monitor.simulator.scenario import Scenario
from monitor.simulator.search import BAD_REQUEST_CODE, SearchError, Searches
from monitor.simulator.telemetry import telemetry_routes

__all__ = ["SIMULATOR", "Simulator", "make_app", "start", "stop"]

NOT_FOUND_CODE = "ModelArts.2775"
AUTH_FAILED_CODE = "APIG.0301"
TOKEN_PROBLEM = "x-auth-token invalid or expired"  # noqa: S105 -- a message


class Simulator:
    """A scenario plus a clock: what every job looks like *now*, and how often it was asked."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        speed: float | None = None,
        manual_clock: bool = False,
        credentials: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        faults: FaultConfig | Mapping[str, Any] | None = None,
        iam_users: Iterable[tuple[str, str, str]] = (),
        token_ttl: float | None = None,
        credential_ttl: float | None = None,
    ) -> None:
        """``faults`` replaces the scenario's block (a mapping is validated like it);
        ``iam_users`` (name, password, domain) add to the scenario's users, and ``token_ttl``
        overrides its TTL; ``credential_ttl`` is the lifetime of the metadata service's
        credentials. ``wall_clock`` dates the documents and expires tokens and credentials."""
        if speed is not None and not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a finite number > 0, got {speed!r}")
        for name, ttl in (("token_ttl", token_ttl), ("credential_ttl", credential_ttl)):
            if ttl is not None and not (math.isfinite(ttl) and ttl > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {ttl!r}")
        self.scenario = scenario
        self.speed = scenario.speed if speed is None else speed
        self.manual_clock = manual_clock
        self.credentials: dict[str, str] | None = (
            dict(credentials) if credentials is not None else None
        )
        self._clock = clock
        self._start = clock()
        self._offset = 0.0
        self.epoch = wall_clock()
        """Unix time that scenario time 0 stands for; every timestamp in a document hangs on it."""
        self.requests: dict[str, int] = {}
        """Job-detail requests per requested job id (400s included, rejected signatures not)."""
        self.ok_requests: dict[str, int] = {}
        """Of those, the ones answered correctly and without a fault (200 or 400 ModelArts.2775)."""
        self.search_requests = 0
        """Job-search requests (400s included, rejected signatures not)."""
        self.searches = Searches()  # what the search listed, and trims (POST /_sim/search)
        self.metrics_requests: dict[str, int] = {}
        self.events_requests: dict[str, int] = {}
        """Task-metrics and job-events requests per job id (``telemetry.py``)."""
        if faults is None:
            faults = scenario.faults
        elif not isinstance(faults, FaultConfig):
            faults = fault_config(faults)
        self.faults = FaultInjector(faults) if faults is not None else None
        """``None`` until fault injection is configured (scenario, argument or ``/_sim/faults``)."""
        scenario_iam = scenario.iam
        users = [*(scenario_iam.users if scenario_iam else ()), *(IamUser(*u) for u in iam_users)]
        ttl = token_ttl or (scenario_iam.token_ttl if scenario_iam else TOKEN_TTL)
        self.iam = TokenIssuer(users, ttl, wall_clock) if users else None
        """``None`` when no IAM user is configured: tokens are then never issued nor accepted."""
        self.metadata = CredentialIssuer(credential_ttl or CREDENTIAL_TTL, wall_clock)

    def now(self) -> float:
        """Current scenario time in seconds."""
        if self.manual_clock:
            return self._offset
        return (self._clock() - self._start) * self.speed + self._offset

    def advance(self, seconds: float) -> None:
        """Move scenario time forward by ``seconds`` (in either mode)."""
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
        self._offset += seconds

    def set_time(self, t: float) -> None:
        """Jump to scenario time ``t``; backwards is allowed (jobs then look as they did)."""
        if not (math.isfinite(t) and t >= 0):
            raise ValueError(f"time must be a finite number >= 0, got {t!r}")
        self._offset += t - self.now()

    def job_ids(self) -> list[str]:
        """Every job of the scenario, whether it exists yet or not."""
        return [job.id for job in self.scenario.jobs]

    def end_time(self) -> float:
        """Scenario time of the last step of any job."""
        return self.scenario.end_time

    def finished(self) -> bool:
        """Every job has played its last step."""
        return self.now() >= self.end_time()

    def document(self, job_id: str) -> dict[str, Any] | None:
        """The job-detail body now, or ``None`` if the job is unknown, not created yet or gone."""
        job = self.scenario.job(job_id)
        return None if job is None else job.document(self.now(), self.epoch)

    def search(self, body: object) -> dict[str, Any]:
        """The job-search answer now (``search.py``); ``SearchError`` if ``body`` is invalid."""
        return self.searches.answer(self.scenario.jobs, body, self.now(), self.epoch)

    def configure_faults(self, update: Mapping[str, Any]) -> FaultConfig:
        """Change any subset of the fault configuration (``ScenarioError`` if invalid); a
        ``seed`` key restarts the generator."""
        base = self.faults.config if self.faults is not None else FaultConfig()
        config = fault_config(update, base)
        if self.faults is None:
            self.faults = FaultInjector(config)
        else:
            self.faults.reconfigure(config, reseed="seed" in update)
        return config

    def state(self) -> dict[str, Any]:
        """What ``GET /_sim/state`` answers."""
        state: dict[str, Any] = {
            "time": self.now(),
            "end_time": self.end_time(),
            "finished": self.finished(),
            "requests": dict(self.requests),
        }
        if self.faults is not None:
            state["ok_requests"] = dict(self.ok_requests)
            state["faults"] = dict(self.faults.counts)
        if self.iam is not None:
            state["tokens_issued"] = len(self.iam.issued())
        if self.metadata.count():
            state["credentials_issued"] = self.metadata.count()
        if self.search_requests:
            state["search_requests"] = self.search_requests
            state["searched"] = dict(self.searches.listed)
        if self.metrics_requests:
            state["metrics_requests"] = dict(self.metrics_requests)
        if self.events_requests:
            state["events_requests"] = dict(self.events_requests)
        return state

    def app(self) -> web.Application:
        return make_app(self)


SIMULATOR = web.AppKey("simulator", Simulator)


def make_app(sim: Simulator) -> web.Application:
    """The aiohttp application serving ``sim``."""
    app = web.Application(middlewares=[_request_id_and_auth])
    app[SIMULATOR] = sim
    app.router.add_get("/v2/{project_id}/training-jobs/{training_job_id}", _job_detail)
    app.router.add_post("/v2/{project_id}/training-job-searches", _job_search)
    app.router.add_post("/v3/auth/tokens", _issue_token)
    app.add_routes(telemetry_routes(sim))
    app.add_routes(metadata_routes(sim.metadata))
    app.add_routes(admin_routes(sim))
    return app


async def start(
    sim: Simulator,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    access_log: bool = False,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[web.AppRunner, int]:
    """Serve ``sim`` on ``host:port`` (0 picks a free port), over HTTPS with ``ssl_context``;
    returns the runner and the port."""
    runner = web.AppRunner(
        sim.app(), access_log=access_logger if access_log else None, shutdown_timeout=2.0
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
        bound = runner.addresses[0][1]
    except BaseException:
        await runner.cleanup()
        raise
    return runner, int(bound)


async def stop(runner: web.AppRunner) -> None:
    """Stop serving and close every connection."""
    await runner.cleanup()


@web.middleware
async def _request_id_and_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = uuid.uuid4().hex
    sim = request.app[SIMULATOR]
    try:
        if request.path.startswith("/v2/"):
            reason = await _auth_problem(request, sim)
            if reason is not None:
                body = {
                    "error_code": AUTH_FAILED_CODE,
                    "error_msg": f"Incorrect IAM authentication information: {reason}",
                    "request_id": request_id,
                }
                response: web.StreamResponse = json_response(401, body)
            else:
                response = await handler(request)
        else:
            response = await handler(request)
    except web.HTTPException as exc:
        exc.headers["X-Request-Id"] = request_id
        raise
    response.headers["X-Request-Id"] = request_id
    return response


async def _auth_problem(request: web.Request, sim: Simulator) -> str | None:
    """Why a ``/v2/`` request is not authenticated, or ``None`` if it is (or needs not be).
    A request carrying a token is judged by it; without one, by its AK/SK signature. One with
    ``X-Security-Token`` must be signed with a temporary AK/SK that token belongs to."""
    security_token = request.headers.get("X-Security-Token")
    if security_token is not None:
        reason = await _signature_problem(request, sim.metadata.secret_for)
        authorization = request.headers.get("Authorization", "")
        return reason or sim.metadata.problem(authorization, security_token)
    if sim.iam is not None:
        token = request.headers.get("X-Auth-Token")
        if token is not None or sim.credentials is None:
            return None if token and sim.iam.valid(token) else TOKEN_PROBLEM
    if sim.credentials is not None:
        return await _signature_problem(request, sim.credentials.get)
    return None


async def _signature_problem(
    request: web.Request, secret_for: Callable[[str], str | None]
) -> str | None:
    """Why the request's AK/SK signature is not valid, or ``None`` if it is."""
    from monitor.modelarts.auth.aksk import verify

    body = await request.read()
    # The URL as the client sent it: Host header plus the undecoded path and query, so that
    # percent-encoding is canonicalised from the same bytes the client signed.
    url = f"{request.scheme}://{request.host}{request.raw_path}"
    return verify(request.method, url, request.headers, body, secret_for, time.time())


async def _job_detail(request: web.Request) -> web.StreamResponse:
    sim = request.app[SIMULATOR]
    job_id = request.match_info["training_job_id"]
    sim.requests[job_id] = sim.requests.get(job_id, 0) + 1
    injector = sim.faults
    fault = injector.draw() if injector is not None else None
    job = sim.scenario.job(job_id)
    if job is not None and job.latency > 0:
        await asyncio.sleep(job.latency)
    if fault == "slow" and injector is not None:
        await asyncio.sleep(injector.config.slow_seconds)
    doc = sim.document(job_id)
    status, body = (200, doc) if doc is not None else (400, _not_found(job_id))
    if fault is None or injector is None:
        sim.ok_requests[job_id] = sim.ok_requests.get(job_id, 0) + 1
        return json_response(status, body)
    if fault == "slow":
        return json_response(status, body)
    answer = injector.answer(fault, status, body)
    if answer.reset:
        _reset(request)
        # Nothing is sent: writing to the aborted transport fails and aiohttp drops it quietly.
        return web.Response(status=500)
    return web.Response(status=answer.status, body=answer.body, headers=answer.headers)


async def _job_search(request: web.Request) -> web.StreamResponse:
    sim = request.app[SIMULATOR]
    sim.search_requests += 1
    try:
        body = await request.json()
    except ValueError:
        body = None
    try:
        answer = sim.search(body)
    except SearchError as exc:
        return json_response(400, {"error_code": BAD_REQUEST_CODE, "error_msg": str(exc)})
    return json_response(200, answer)


def _not_found(job_id: str) -> dict[str, Any]:
    return {"error_code": NOT_FOUND_CODE, "error_msg": f"Training job not found: {job_id}"}


def _reset(request: web.Request) -> None:
    """Drop the connection with a TCP RST (SO_LINGER 0), as a crashing gateway does."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def _issue_token(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    try:
        body = await request.json()
    except ValueError:
        return json_response(
            400, iam_error(400, "Bad Request", "The request body is not valid JSON.")
        )
    auth = parse_auth_request(body)
    if isinstance(auth, str):
        return json_response(
            400, iam_error(400, "Bad Request", f"Invalid input for field '{auth}'.")
        )
    if sim.iam is None or not sim.iam.authenticate(auth):
        return json_response(401, iam_error(401, "Unauthorized", WRONG_CREDENTIALS))
    token, doc = sim.iam.issue(auth)
    response = json_response(201, doc)
    response.headers["X-Subject-Token"] = token
    return response
