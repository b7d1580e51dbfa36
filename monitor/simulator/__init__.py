"""A fake ModelArts API that plays scripted job lifecycles, for ``demo`` and the tests.

``scenario`` replays scenarios (pure), ``loader`` reads and validates scenario files, and
``server`` serves them over HTTP.
"""

from monitor.simulator.loader import ScenarioError, builtin_scenario, load_scenario, parse_scenario
from monitor.simulator.scenario import Scenario
from monitor.simulator.server import Simulator, make_app, start, stop

__all__ = [
    "Scenario",
    "ScenarioError",
    "Simulator",
    "builtin_scenario",
    "load_scenario",
    "make_app",
    "parse_scenario",
    "start",
    "stop",
]
