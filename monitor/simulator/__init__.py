"""A fake ModelArts API that plays scripted job lifecycles, for ``demo`` and the tests.

``scenario`` replays scenarios (pure), ``loader`` reads and validates scenario files, and
``server`` serves them over HTTP, with ``faults`` (injected failures), ``iam`` (tokens) and
``admin`` (the ``/_sim`` endpoints tests drive it with).
"""

from monitor.simulator.faults import FAULT_KINDS, FaultConfig, fault_config
from monitor.simulator.iam import IamConfig, IamUser
from monitor.simulator.loader import ScenarioError, builtin_scenario, load_scenario, parse_scenario
from monitor.simulator.scenario import Scenario
from monitor.simulator.server import Simulator, make_app, start, stop

__all__ = [
    "FAULT_KINDS",
    "FaultConfig",
    "IamConfig",
    "IamUser",
    "Scenario",
    "ScenarioError",
    "Simulator",
    "builtin_scenario",
    "fault_config",
    "load_scenario",
    "make_app",
    "parse_scenario",
    "start",
    "stop",
]
