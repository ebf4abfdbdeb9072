"""One tree of errors. A user-facing error names the field and the reason.

Every error flowguard and the bridge raise on purpose is defined here, under
:class:`FlowguardError`, grouped by where it comes from: settings and input, Celery's wire
format, the control plane (store, history, templates), actions, Kafka, the API, the bridge.
"""

from __future__ import annotations


class FlowguardError(Exception):
    """Base of every error flowguard raises on purpose."""


class ConfigError(FlowguardError):
    """A setting is missing or invalid."""


class WorkflowInvalid(FlowguardError):
    """A workflow definition was refused; ``problems`` lists (field path, reason) pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: {field}: {reason}" for field, reason in problems]
        super().__init__("\n".join(lines))


class TemplateInvalid(FlowguardError):
    """A message template uses a variable or syntax flowguard does not allow."""


class ArgsUnrecoverable(FlowguardError):
    """A task's reported args/kwargs cannot be turned back into the exact values."""


class EventInvalid(FlowguardError):
    """A raw or normalized event cannot be decoded; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class ActionFailed(FlowguardError):
    """An action was carried out and failed; ``reason`` is safe to log (no secrets)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class Refused(ActionFailed):
    """An action's URL or an address it resolves to is not allowed: final, never retried."""


# The control plane --------------------------------------------------------------------------


class WorkflowNotFound(FlowguardError, LookupError):
    """No workflow (or no such version of it) in the store."""


class VersionConflict(FlowguardError):
    """Someone saved the workflow since the caller last read it."""


class TemplateNotFound(FlowguardError, LookupError):
    """No workflow template by that slug."""


class HistoryError(FlowguardError, ValueError):
    """A history query or a projection file that cannot be used; the message names the field."""


class KafkaUnavailable(FlowguardError):
    """The Kafka cluster did not answer in time."""


# The API ------------------------------------------------------------------------------------


class ApiProblem(FlowguardError):
    """Raised by API handlers: a status, a stable code, a message and optional field problems."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        problems: list[tuple[str, str]] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.problems = problems or []
        super().__init__(message)


class AuthError(FlowguardError):
    """401 (no or unknown token) or 403 (role too low); the message never holds the token."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


class TooManyEvents(FlowguardError):
    """More events in a range than the caller allows (the API's bound on a rehearsal)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"more than {limit} events in the range")


# The bridge ---------------------------------------------------------------------------------


class CeleryUnavailable(FlowguardError):
    """``send_task``/``revoke``/``inspect`` could not reach the broker: try the command later."""
