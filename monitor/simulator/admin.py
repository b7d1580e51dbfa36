"""The simulator's ``/_sim`` endpoints: what tests use to drive and inspect it (see ``server.py``).

They are never authenticated and never subject to fault injection.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from monitor.simulator.checks import ScenarioError
from monitor.simulator.faults import FaultConfig
from monitor.simulator.search import SearchError, trim_config

if TYPE_CHECKING:
    from monitor.simulator.server import Simulator

__all__ = ["admin_routes", "json_response"]


def admin_routes(sim: Simulator) -> list[web.RouteDef]:
    """The ``/_sim`` routes of ``sim``."""

    async def state(request: web.Request) -> web.Response:
        return json_response(200, sim.state())

    async def advance(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return json_response(400, {"error": 'expected a JSON body {"seconds": n} or {"to": t}'})
        if not isinstance(body, dict) or len(body) != 1 or not ({"seconds", "to"} & body.keys()):
            return json_response(
                400, {"error": 'expected exactly one of {"seconds": n} or {"to": t}'}
            )
        ((key, value),) = body.items()
        if isinstance(value, bool) or not isinstance(value, int | float):
            return json_response(400, {"error": f"{key}: expected a number, got {value!r}"})
        try:
            if key == "seconds":
                sim.advance(float(value))
            else:
                sim.set_time(float(value))
        except ValueError as exc:
            return json_response(400, {"error": f"{key}: {exc}"})
        return json_response(200, sim.state())

    async def faults(request: web.Request) -> web.Response:
        if request.method == "POST":
            try:
                update = await request.json()
            except ValueError:
                update = None
            if not isinstance(update, dict):
                return json_response(400, {"error": "expected a JSON object of faults keys"})
            try:
                sim.configure_faults(update)
            except ScenarioError as exc:
                return json_response(400, {"error": str(exc), "problems": exc.problems})
        config = sim.faults.config if sim.faults is not None else FaultConfig()
        return json_response(200, config.as_dict())

    async def search_trim(request: web.Request) -> web.Response:
        if request.method == "POST":
            try:
                update = await request.json()
            except ValueError:
                update = None
            try:
                sim.searches.trim = trim_config(update)
            except SearchError as exc:
                return json_response(400, {"error": str(exc)})
        return json_response(200, sim.searches.trim.as_dict())

    async def revoke(request: web.Request) -> web.Response:
        return json_response(200, {"revoked": sim.iam.revoke_all() if sim.iam else 0})

    async def tokens(request: web.Request) -> web.Response:
        return json_response(200, {"tokens": sim.iam.issued() if sim.iam else []})

    return [
        web.get("/_sim/state", state),
        web.post("/_sim/advance", advance),
        web.get("/_sim/faults", faults),
        web.post("/_sim/faults", faults),
        web.get("/_sim/search", search_trim),
        web.post("/_sim/search", search_trim),
        web.post("/_sim/revoke", revoke),
        web.get("/_sim/tokens", tokens),
    ]


def json_response(status: int, data: Mapping[str, Any]) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(data).encode(), content_type="application/json"
    )
