"""The settings schema: every key, its type, its default and the checks across keys.

Unknown keys are errors: a typo such as ``intervall`` must not silently leave a feature at its
default. ``loading.py`` turns a YAML file into these models; the value types (durations, label
names) live in ``values.py``, the scale-out blocks (sharding, discovery) in ``scale.py``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from monitor.config.exposure import MetricsSettings as MetricsSettings
from monitor.config.scale import DiscoverySettings as DiscoverySettings
from monitor.config.scale import LabelRule as LabelRule
from monitor.config.scale import SearchFilter as SearchFilter
from monitor.config.scale import ShardSettings as ShardSettings
from monitor.config.targets import TARGET_LABEL, access_problems, target_problems

# Re-exported (``X as X``): callers import every settings type from here.
from monitor.config.values import JOB_ID as JOB_ID
from monitor.config.values import RESERVED_LABELS as RESERVED_LABELS
from monitor.config.values import Duration as Duration
from monitor.config.values import Model
from monitor.config.values import NonNegativeDuration as NonNegativeDuration
from monitor.config.values import check_labels as check_labels
from monitor.config.values import parse_duration as parse_duration

_Model = Model


class ApiSettings(_Model):
    endpoint: str = ""
    """The ModelArts endpoint; when left out, the one ``region`` has in the SDK's table."""
    region: str | None = None
    """A region id (``cn-north-4``): the ModelArts and IAM endpoints come from the official
    SDK's region tables. Looked up when the client is built (``daemon/wiring.py``), since the
    tables live with the API code (``modelarts/regions.py``), which config does not import;
    ``endpoint``, when given, wins."""
    project_id: str = ""
    timeout: Duration = 10.0
    ca_file: str | None = None
    """A PEM bundle to trust instead of the system's (a corporate TLS-inspecting proxy)."""
    insecure_skip_verify: bool = False
    """Turns certificate verification off. For a lab only; logged as a warning at start."""
    transport: Literal["aiohttp", "httpx"] = "aiohttp"
    """aiohttp's connection pool under httpx (several times less CPU a poll), or httpx's own."""

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, v: str | None) -> str | None:
        if not v:  # "" from an unset ${VAR:-}: the system's CAs
            return None
        try:
            found = Path(v).is_file()
        except OSError as exc:  # e.g. ENAMETOOLONG, which is_file() does not swallow
            raise ValueError(f"{v[:200]!r} is not a readable file: {exc.strerror}") from None
        if not found:
            raise ValueError(f"{v!r} is not a readable file")
        return v

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if v and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("must be an http:// or https:// URL")
        return v.rstrip("/")

    @field_validator("region")
    @classmethod
    def _region_id(cls, v: str | None) -> str | None:
        if not v:  # "" from an unset ${VAR:-}: no region
            return None
        if not re.fullmatch(r"[a-z]{2}-[a-z0-9]+(-[a-z0-9]+)*", v):
            raise ValueError(f"{v[:100]!r} is not a region id such as cn-north-4")
        return v

    @model_validator(mode="after")
    def _endpoint_or_region(self) -> ApiSettings:
        if not self.endpoint and self.region is None:
            raise ValueError("endpoint or region is required")
        return self


class AuthSettings(_Model):
    type: Literal["aksk", "token", "metadata", "none"] = "aksk"
    ak: str = ""
    sk: SecretStr = SecretStr("")
    security_token: SecretStr | None = None
    """With a temporary AK/SK (type: aksk): sent and signed as ``X-Security-Token``."""
    # Temporary AK/SK of the host's agency (type: metadata)
    metadata_url: str = "http://169.254.169.254"
    """The ECS/CCE metadata service the agency's temporary credentials come from."""
    # IAM password-scoped token (type: token)
    iam_endpoint: str | None = None
    """Default: the IAM of api.region (or of the region whose endpoint api.endpoint is) in the
    SDK's table, else the global https://iam.myhuaweicloud.com, as the SDK does."""
    user: str = ""
    password: SecretStr = SecretStr("")
    domain: str = ""
    """The account (domain) name the IAM user belongs to."""
    refresh_before: Duration = 3600.0
    """Fetch a new token this long before the current one expires (tokens live 24 h)."""

    @field_validator("security_token")
    @classmethod
    def _security_token(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or not v.get_secret_value():  # "" from an unset ${VAR:-}: none
            return None
        if v.get_secret_value() != v.get_secret_value().strip():
            raise ValueError("has leading or trailing white space")
        return v

    @field_validator("metadata_url")
    @classmethod
    def _metadata_url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+$", v.rstrip("/")):
            raise ValueError("must be an http:// or https:// URL without a path")
        return v.rstrip("/")


class RetrySettings(_Model):
    max_backoff: Duration = 300.0
    """Longest a job waits after repeated transient failures (5xx, timeouts, network)."""


class PollSettings(_Model):
    interval: Duration = 30.0
    jitter: NonNegativeDuration | None = None
    """Random spread added to each run; defaults to a tenth of the interval."""
    concurrency: int = Field(default=16, ge=1, le=1024)
    """Polls in flight at once; bounds what N slow jobs can hold."""
    rate_limit: float = Field(default=0.0, ge=0.0)
    """Requests per second to the API across all jobs; 0 means no limit."""
    retry: RetrySettings = RetrySettings()
    terminal_interval: Duration = 300.0
    """How often a job in Completed, Failed, Terminated or Abnormal is still polled."""
    terminal_retention: Duration = 86400.0
    """After this long in a terminal phase a job is no longer polled or exported."""
    not_found_interval: Duration = 300.0
    """How often a job the API says is gone is polled, in case it comes back."""
    not_found_retention: Duration = 3600.0
    """After this long gone, a job's series leave /metrics (it is still polled)."""
    bulk: bool = False
    """Refresh statuses from job-search pages (50 jobs a call) every ``interval`` instead of one
    detail GET per job; a job's detail is fetched only when its search item lacks a field the
    diff reads, or the search did not return it (``daemon/bulk.py``). Off until it has met the
    real API: the search's items are documented as the detail's type, not proven to be whole."""


class JobSettings(_Model):
    id: str
    labels: dict[str, str] = Field(default_factory=dict)
    interval: Duration | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not JOB_ID.fullmatch(v):
            raise ValueError("must be 1-64 letters, digits, '-' or '_'")
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return check_labels(v)


class TargetSettings(_Model):
    """One project in one region, polled with its own client (endpoint, credentials, TLS,
    rate limit and 429 pause); ``monitor/config/targets.py`` says how targets are read."""

    name: str
    """The ``target`` label of the target's series and events."""
    api: ApiSettings
    auth: AuthSettings = AuthSettings()
    labels: dict[str, str] = Field(default_factory=dict)
    """Added to every series and event of this target's jobs (a job's own labels win)."""
    poll: PollSettings | None = None
    """Only the keys given override the top-level ``poll``; ``concurrency`` and ``jitter``
    are the process's (shared slots, one scheduler) and may not be given here."""
    jobs: list[JobSettings] = Field(default_factory=list)
    discovery: DiscoverySettings | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z0-9_-]{1,63}", v):
            raise ValueError(f"{v[:80]!r} is not 1-63 of a-z, 0-9, '_' or '-'")
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        if TARGET_LABEL in v:
            raise ValueError(f"{TARGET_LABEL!r} is set by the monitor itself (the target's name)")
        return check_labels(v)


class StateSettings(_Model):
    path: str = "/var/lib/modelarts-monitor/state.db"


class _SinkBase(_Model):
    name: str | None = None
    """The sink's identity: its position in the outbox and its ``sink`` label. Defaults to
    the type (``file:<path>`` for files); renaming a sink makes it start over from the
    oldest event still in the outbox."""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9_.:/-]{1,100}", v):
            raise ValueError("1-100 letters, digits or _ . : / -")
        return v


class LogSinkSettings(_SinkBase):
    type: Literal["log"]


class ConsoleSinkSettings(_SinkBase):
    """Human-readable lines on stdout; what ``demo`` uses."""

    type: Literal["console"]


class FileSinkSettings(_SinkBase):
    type: Literal["file"]
    path: str


class WebhookSinkSettings(_SinkBase):
    type: Literal["webhook"]
    url: SecretStr
    """Secret because webhook URLs often carry a token in their path or query."""
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    timeout: Duration = 10.0
    batch: bool = False
    """One POST per batch (``application/cloudevents-batch+json``) instead of per event."""

    @field_validator("url")
    @classmethod
    def _url(cls, v: SecretStr) -> SecretStr:
        if not re.match(r"^https?://[^/\s]+", v.get_secret_value()):
            raise ValueError("must be an http:// or https:// URL")
        return v


SinkSettings = Annotated[
    LogSinkSettings | ConsoleSinkSettings | FileSinkSettings | WebhookSinkSettings,
    Field(discriminator="type"),
]


class JournalSettings(_Model):
    """What ``events`` and the job pages can look back on: every event, kept after delivery."""

    retention: Duration = 7 * 86400.0
    """An event delivered to every sink is deleted once its ``time`` is this old."""
    max_events: int = Field(default=100_000, ge=1)
    """Most events kept: over it, the oldest delivered go first. An event is about 0.5 KB (a
    few KB with reasons attached), so the default bounds the journal to tens of MB, as many
    events as the outbox may owe one sink (``outbox_limit``). An undelivered event is never
    deleted."""


class EventSettings(_Model):
    sinks: list[SinkSettings] = Field(default_factory=lambda: [LogSinkSettings(type="log")])  # type: ignore[arg-type]
    outbox_limit: int = Field(default=100_000, ge=1)
    """Backlog per sink above which the monitor reports itself unready and logs an error.
    Events are never dropped."""
    max_backoff: Duration = 60.0
    """Longest wait between two delivery attempts to a failing sink."""
    journal: JournalSettings = JournalSettings()


class ServerSettings(_Model):
    listen: str = "0.0.0.0:9888"  # an exporter is scraped from other hosts

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        split_listen(v)
        return v


class LogSettings(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class ReasonSettings(_Model):
    enabled: bool = True
    """Fetch the job's newest Error and Warning events when it fails (phase Failed or
    Abnormal, or a run ended with a recovery) and attach them to those events as ``reasons``."""
    max: int = Field(default=5, ge=1, le=20)
    """Most messages attached to one event (and asked for per level)."""


class UsageSettings(_Model):
    """Per-task resource usage of Running jobs, and the hung-job rule built on it."""

    enabled: bool = True
    interval: Duration = 60.0
    """Seconds between sweeps; the API's values have a one-minute resolution."""
    concurrency: int = Field(default=4, ge=1, le=256)
    """Usage requests in flight at once, apart from the detail polls' slots."""
    hang_window: NonNegativeDuration = 1800.0
    """Every task's accelerator at 0 this long while Running: ``hang_suspected``. 0: off."""


class Settings(_Model):
    api: ApiSettings | None = None
    """The one project of a single-project config; with ``targets``, left out."""
    auth: AuthSettings = AuthSettings()
    poll: PollSettings = PollSettings()
    jobs: list[JobSettings] = Field(default_factory=list)
    state: StateSettings = StateSettings()
    events: EventSettings = EventSettings()
    server: ServerSettings = ServerSettings()
    log: LogSettings = LogSettings()
    reasons: ReasonSettings = ReasonSettings()
    usage: UsageSettings = UsageSettings()
    shard: ShardSettings = ShardSettings()
    metrics: MetricsSettings = MetricsSettings()
    discovery: DiscoverySettings | None = None
    """Absent: only the configured jobs are watched."""
    targets: list[TargetSettings] | None = None
    """Several projects or regions in one process, instead of the top-level ``api``,
    ``auth``, ``jobs`` and ``discovery`` (``targets.py``)."""

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        problems = []
        if self.targets is not None:
            problems += target_problems(self)
        else:
            problems += self._single_project_problems()
        if self.shard.index >= self.shard.total:
            problems.append(
                f"shard.index: {self.shard.index} is not below shard.total "
                f"({self.shard.total}); shards are numbered 0 to total-1"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _single_project_problems(self) -> list[str]:
        if self.api is None:
            return ["api: required key is missing"]
        problems = []
        seen: set[str] = set()
        for i, job in enumerate(self.jobs):
            if job.id in seen:
                problems.append(f"jobs[{i}].id: {job.id!r} is listed twice")
            seen.add(job.id)
        return problems + access_problems("", self.api, self.auth)

    def interval_for(self, job: JobSettings) -> float:
        """A top-level job's interval (a target's jobs: ``Target.interval_for``)."""
        return job.interval or self.poll.interval

    def jitter_for_interval(self, interval: float) -> float:
        jitter = self.poll.jitter if self.poll.jitter is not None else interval / 10
        return min(jitter, interval / 2)


def split_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9888`` for IPv6) into its parts, or ValueError."""
    host, sep, port = listen.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        raise ValueError(f"{listen!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104
