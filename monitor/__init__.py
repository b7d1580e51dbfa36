"""modelarts-monitor: ModelArts training jobs as Prometheus metrics and CloudEvents."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("modelarts-monitor")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
