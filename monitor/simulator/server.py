"""A fake ModelArts API on aiohttp that serves a scenario's jobs as they are at scenario time now.

Why it exists: the monitor must be exercised end to end -- HTTP, signing, error mapping, the
400-for-a-deleted-job quirk -- without a cloud account, both by the ``demo`` command and by the
integration tests over loopback. It speaks the real wire format (see ``scenario.py`` for the
document) and the real error bodies, and knows nothing of the monitor's internals; the one
exception is ``monitor.modelarts.auth.verify``, imported lazily, so that the AK/SK check the
simulator applies is exactly the scheme the monitor signs with.

Scenario time runs on a clock: ``(clock() - start) * speed + offset`` in real mode, or only when
told (``advance``/``set_time``, or ``POST /_sim/advance``) in manual mode, which is what tests use
so that nothing waits on wall time. Endpoints:

* ``GET /v2/{project_id}/training-jobs/{training_job_id}``: 200 with the document, or 400
  ``ModelArts.2775`` for an unknown, not-yet-created or deleted job; any project id is accepted.
  With ``credentials`` set, every ``/v2/`` request must be AK/SK-signed, else 401 ``APIG.0301``.
  Every response carries an ``X-Request-Id``.
* ``GET /_sim/state``: ``{"time", "end_time", "finished", "requests"}``.
* ``POST /_sim/advance`` with ``{"seconds": n}`` or ``{"to": t}``: moves scenario time, answers
  the new state. Admin endpoints are never signed.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.log import access_logger
from aiohttp.typedefs import Handler

from monitor.simulator.scenario import Scenario

__all__ = ["SIMULATOR", "Simulator", "make_app", "start", "stop"]

NOT_FOUND_CODE = "ModelArts.2775"
AUTH_FAILED_CODE = "APIG.0301"


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
    ) -> None:
        if speed is not None and not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a finite number > 0, got {speed!r}")
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

    def state(self) -> dict[str, Any]:
        """What ``GET /_sim/state`` answers."""
        return {
            "time": self.now(),
            "end_time": self.end_time(),
            "finished": self.finished(),
            "requests": dict(self.requests),
        }

    def app(self) -> web.Application:
        return make_app(self)


SIMULATOR = web.AppKey("simulator", Simulator)


def make_app(sim: Simulator) -> web.Application:
    """The aiohttp application serving ``sim``."""
    app = web.Application(middlewares=[_request_id_and_auth])
    app[SIMULATOR] = sim
    app.router.add_get("/v2/{project_id}/training-jobs/{training_job_id}", _job_detail)
    app.router.add_get("/_sim/state", _state)
    app.router.add_post("/_sim/advance", _advance)
    return app


async def start(
    sim: Simulator, host: str = "127.0.0.1", port: int = 0, *, access_log: bool = False
) -> tuple[web.AppRunner, int]:
    """Serve ``sim`` on ``host:port`` (0 picks a free port); returns the runner and the port."""
    runner = web.AppRunner(
        sim.app(), access_log=access_logger if access_log else None, shutdown_timeout=2.0
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
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
        if sim.credentials is not None and request.path.startswith("/v2/"):
            reason = await _signature_problem(request, sim.credentials)
            if reason is not None:
                body = {
                    "error_code": AUTH_FAILED_CODE,
                    "error_msg": f"Incorrect IAM authentication information: {reason}",
                    "request_id": request_id,
                }
                response: web.StreamResponse = _json(401, body)
            else:
                response = await handler(request)
        else:
            response = await handler(request)
    except web.HTTPException as exc:
        exc.headers["X-Request-Id"] = request_id
        raise
    response.headers["X-Request-Id"] = request_id
    return response


async def _signature_problem(request: web.Request, credentials: Mapping[str, str]) -> str | None:
    """Why the request's AK/SK signature is not valid, or ``None`` if it is."""
    from monitor.modelarts.auth import verify

    body = await request.read()
    # The URL as the client sent it: Host header plus the undecoded path and query, so that
    # percent-encoding is canonicalised from the same bytes the client signed.
    url = f"{request.scheme}://{request.host}{request.raw_path}"
    return verify(request.method, url, request.headers, body, credentials.get, time.time())


async def _job_detail(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    job_id = request.match_info["training_job_id"]
    sim.requests[job_id] = sim.requests.get(job_id, 0) + 1
    job = sim.scenario.job(job_id)
    if job is not None and job.latency > 0:
        await asyncio.sleep(job.latency)
    doc = sim.document(job_id)
    if doc is None:
        return _json(
            400,
            {"error_code": NOT_FOUND_CODE, "error_msg": f"Training job not found: {job_id}"},
        )
    return _json(200, doc)


async def _state(request: web.Request) -> web.Response:
    return _json(200, request.app[SIMULATOR].state())


async def _advance(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    try:
        body = await request.json()
    except ValueError:
        return _json(400, {"error": 'expected a JSON body {"seconds": n} or {"to": t}'})
    if not isinstance(body, dict) or len(body) != 1 or not ({"seconds", "to"} & body.keys()):
        return _json(400, {"error": 'expected exactly one of {"seconds": n} or {"to": t}'})
    ((key, value),) = body.items()
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _json(400, {"error": f"{key}: expected a number, got {value!r}"})
    try:
        if key == "seconds":
            sim.advance(float(value))
        else:
            sim.set_time(float(value))
    except ValueError as exc:
        return _json(400, {"error": f"{key}: {exc}"})
    return _json(200, sim.state())


def _json(status: int, data: Mapping[str, Any]) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(data).encode(), content_type="application/json"
    )
