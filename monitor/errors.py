"""The monitor's exception tree: one root, so callers can catch exactly what they mean.

    MonitorError
    ├── ConfigError            the config file or a command-line argument is wrong (exit 2)
    ├── StateError             the state database cannot be opened, read or written
    ├── ListenError            the HTTP server cannot bind its address
    └── ApiError               a poll failed; ``result`` is its ``polls_total`` label
        ├── AuthError          401/403: credentials or signature rejected
        ├── RateLimited        429: throttled; ``retry_after`` seconds when the server said
        ├── JobNotFound        400 ModelArts.2775: the job is gone
        ├── EndpointNotFound   404 (gateway APIG.0101): no such API here; endpoint or region wrong
        ├── InvalidResponse    the body is not a job-detail document we can trust
        └── TransientError     worth retrying later
            ├── ServerError    5xx
            ├── ApiTimeout     no answer within the configured timeout
            └── NetworkError   connection refused, reset, DNS, TLS

Foreign exceptions (httpx, json, sqlite3, pydantic) are translated where they enter the monitor,
with ``raise ... from exc``, so nothing above the client or the store needs to know those
libraries. Messages never carry credentials: only status, error code, request id and a
truncated server message.
"""

from __future__ import annotations


class MonitorError(Exception):
    """Root of every error the monitor raises on purpose."""


class ConfigError(MonitorError):
    """The configuration is invalid; ``problems`` has one line per problem, naming its key."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class StateError(MonitorError):
    """The state database is unusable (corrupt, unwritable, from a newer version)."""


class ListenError(MonitorError):
    """``server.listen`` cannot be bound (in use, not an address of this host, no permission).
    Only this error says "cannot listen": any other start-up failure names its own cause."""

    def __init__(self, listen: str, reason: str) -> None:
        self.listen = listen
        super().__init__(f"cannot listen on {listen}: {reason}")


class ApiError(MonitorError):
    """A ModelArts API call failed. ``result`` is the bounded label used in metrics."""

    result = "invalid_response"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.status = status
        self.error_code = error_code
        self.request_id = request_id
        details = [
            f"{k}={v}"
            for k, v in (("status", status), ("error_code", error_code), ("request_id", request_id))
            if v is not None
        ]
        super().__init__(f"{message} ({', '.join(details)})" if details else message)


class AuthError(ApiError):
    result = "auth_error"


class RateLimited(ApiError):
    result = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)  # type: ignore[arg-type]


class JobNotFound(ApiError):
    result = "not_found"


class EndpointNotFound(ApiError):
    """404: the host answered, but no such API lives there (the gateway's ``APIG.0101``), so
    ``api.endpoint`` or ``api.region`` names the wrong service or region. Never a gone job
    (ModelArts says that with 400 ``ModelArts.2775``). Counted as ``invalid_response``, the
    label the ``polls_total`` contract has for an answer that is not the API's."""

    result = "invalid_response"


class InvalidResponse(ApiError):
    result = "invalid_response"


class TransientError(ApiError):
    result = "network_error"


class ServerError(TransientError):
    result = "server_error"


class ApiTimeout(TransientError):
    result = "timeout"


class NetworkError(TransientError):
    result = "network_error"


STATE_ERROR = "state_error"
"""The poll's answer could not be committed to the state database: the poll did not happen,
and its transitions are re-detected (same ids) once the database works again."""
POLL_RESULTS = (
    "ok",
    "not_found",
    "auth_error",
    "rate_limited",
    "server_error",
    "timeout",
    "invalid_response",
    "network_error",
    STATE_ERROR,
)
"""Every value of ``modelarts_monitor_polls_total{result}``; all are exported from the start."""
