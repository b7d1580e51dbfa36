"""The HTTP side of per-task usage (``usage.py``) and job events (``events.py``).

* ``GET /v2/{project_id}/training-jobs/{training_job_id}/metrics/{task_id}``: 200 with the
  task's metrics; 400 ``ModelArts.2775`` for an unknown, not-yet-created or deleted job (as the
  job-detail endpoint); 400 ``INVALID_PARAMETER`` for a task the job does not have.
* ``GET /v2/{project_id}/training-jobs/{training_job_id}/events``: 200 with the events; 400
  ``ModelArts.2775`` as above; 400 ``INVALID_PARAMETER`` for an invalid query parameter.

Both are authenticated like every ``/v2/`` path (the server's middleware), are never subject
to fault injection nor to a job's ``latency``, and count their requests per job id (400s
included, rejected signatures not) in ``Simulator.metrics_requests``/``events_requests``.

``INVALID_PARAMETER`` is ``ModelArts.0104``, which ModelArts' error-code table lists as
"Parameter error."; the references do not document the code of these two particular cases.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from monitor.simulator.admin import json_response
from monitor.simulator.events import EventQueryError, list_events
from monitor.simulator.usage import task_metrics

if TYPE_CHECKING:
    from monitor.simulator.scenario import JobSpec
    from monitor.simulator.server import Simulator

__all__ = ["INVALID_PARAMETER", "NOT_FOUND_CODE", "telemetry_routes"]

NOT_FOUND_CODE = "ModelArts.2775"
"""The job-detail endpoint's code for a job that does not exist (``server.py``)."""
INVALID_PARAMETER = "ModelArts.0104"

JOB = "/v2/{project_id}/training-jobs/{training_job_id}"


def telemetry_routes(sim: Simulator) -> list[web.RouteDef]:
    """The metrics and events routes of ``sim``."""

    def existing(job_id: str, t: float) -> JobSpec | None:
        job = sim.scenario.job(job_id)
        state = job.state_at(t) if job is not None else None
        return job if state is not None and not state.gone else None

    async def metrics(request: web.Request) -> web.Response:
        job_id, task = request.match_info["training_job_id"], request.match_info["task_id"]
        sim.metrics_requests[job_id] = sim.metrics_requests.get(job_id, 0) + 1
        t = sim.now()
        job = existing(job_id, t)
        if job is None:
            return json_response(400, not_found(job_id))
        if task not in job.tasks:
            message = f"Task {task} not found in training job {job_id}."
            return json_response(400, invalid(message))
        return json_response(200, task_metrics(job, task, t))

    async def events(request: web.Request) -> web.Response:
        job_id = request.match_info["training_job_id"]
        sim.events_requests[job_id] = sim.events_requests.get(job_id, 0) + 1
        t = sim.now()
        job = existing(job_id, t)
        if job is None:
            return json_response(400, not_found(job_id))
        try:
            answer = list_events(job, request.query, t, sim.epoch)
        except EventQueryError as exc:
            return json_response(400, invalid(f"Invalid parameter: {exc}"))
        return json_response(200, answer)

    return [web.get(f"{JOB}/metrics/{{task_id}}", metrics), web.get(f"{JOB}/events", events)]


def not_found(job_id: str) -> dict[str, Any]:
    return {"error_code": NOT_FOUND_CODE, "error_msg": f"Training job not found: {job_id}"}


def invalid(message: str) -> dict[str, Any]:
    return {"error_code": INVALID_PARAMETER, "error_msg": message}
