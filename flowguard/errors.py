"""One tree of errors. A user-facing error names the field and the reason."""

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


class KafkaUnavailable(FlowguardError):
    """The Kafka cluster did not answer in time."""
