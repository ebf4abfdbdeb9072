"""Workflows as their authors write them: the YAML format of the product page.

A workflow is a trigger, optional conditions, one or more actions and a
circuit breaker. This module only validates and normalizes; matching lives in
:mod:`flowguard.engine.conditions`, deciding in :mod:`flowguard.engine.decision`.

Two conveniences keep the product page's examples loading as written:
``action:`` (one action) is the same as ``actions:`` with one item, and an
action without ``type`` whose keys are all retry settings is a retry
(the page's best-practice snippet writes ``action: {max_attempts: 3}``).
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import re2
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from flowguard.control.secrets import is_env_ref, mask
from flowguard.engine.fingerprint import FINGERPRINT_PATTERN
from flowguard.engine.messages import compile_template
from flowguard.errors import TemplateInvalid
from topics.triggers import StuckStage, TriggerName

DEFAULT_SLACK_MESSAGE = (
    "Task {task_name} failed on worker {worker}\n"
    "Error: {error_message}\n"
    "Args: {task_args}\n"
    "Time: {timestamp}\n"
    "Workflow: {workflow_name}"
)
DEFAULT_PAGERDUTY_SUMMARY = "Task {task_name} failed on {cluster}: {error_message}"
ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,127}$"

# Conditions that only make sense for some triggers: a task condition on a
# worker.offline workflow would silently never match, so it is refused.
TASK_CONDITIONS = frozenset(
    {"task_name_pattern", "queue", "error_pattern", "failure_count_threshold"}
)
CONDITIONS_BY_TRIGGER: dict[str, frozenset[str]] = {
    "task.failed": TASK_CONDITIONS | {"fingerprint", "cluster", "worker_pattern"},
    "task.orphaned": TASK_CONDITIONS - {"error_pattern"} | {"cluster", "worker_pattern"},
    "task.execution_time_exceeded": TASK_CONDITIONS - {"error_pattern"}
    | {"cluster", "worker_pattern"},
    "task.stuck": TASK_CONDITIONS - {"error_pattern"} | {"cluster", "worker_pattern"},
    "task.duplicate_start": TASK_CONDITIONS - {"error_pattern"} | {"cluster", "worker_pattern"},
    "worker.offline": frozenset({"cluster", "worker_pattern"}),
}
#: Triggers that fire when something has not happened for ``threshold_seconds``.
THRESHOLD_TRIGGERS = frozenset({"task.execution_time_exceeded", "task.stuck"})


def slugify(name: str) -> str:
    """A stable id from a name: ``"Auto-retry network errors"`` -> ``auto-retry-network-errors``."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", text).strip("-")
    return slug[:128] or "workflow"


def _template(text: str) -> str:
    try:
        compile_template(text)
    except TemplateInvalid as exc:
        raise PydanticCustomError("template_invalid", "{reason}", {"reason": str(exc)}) from None
    return text


def _regex_options() -> Any:
    options = re2.Options()
    options.log_errors = False  # RE2 would print the refused pattern to stderr
    return options


_RE2_OPTIONS = _regex_options()
# What RE2 says (its error text) -> what the author should know.
_RE2_REASONS = tuple(
    (re.compile(needle), reason)
    for needle, reason in (
        (r"invalid escape sequence: \\[0-9]", "backreferences (\\1, (?P=name)) are not supported"),
        (r"invalid perl operator: \(\?P$", "backreferences (\\1, (?P=name)) are not supported"),
        (r"invalid escape sequence: \\Z", "\\Z is not supported: write \\z"),
        (r"invalid perl operator: \(\?=", "lookahead (?=...) is not supported"),
        (r"invalid perl operator: \(\?!", "negative lookahead (?!...) is not supported"),
        (r"invalid perl operator: \(\?<[=!]", "lookbehind (?<=...), (?<!...) is not supported"),
        (r"invalid perl operator: \(\?>", "atomic groups (?>...) are not supported"),
        (r"pattern too large", "the pattern is too large"),
    )
)
_RE2_NOTE = "patterns run on RE2, in time linear in the message"


def compile_regex(text: str) -> Any:
    """``text`` compiled for RE2, which runs in linear time: no pattern can stall a worker.

    Python's ``re`` backtracks: ``(a+)+$`` against a long message never ends, and it ran
    on the event loop. RE2 has no backreferences or lookaround; those are refused here
    with the reason (:func:`regex_problem`). Matching is ``search``, as before.
    """
    try:
        return re2.compile(text, _RE2_OPTIONS)
    except re2.error as exc:
        raise ValueError(_re2_reason(exc)) from None


def _re2_reason(exc: Exception) -> str:
    detail = exc.args[0] if exc.args else ""
    text = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
    for needle, reason in _RE2_REASONS:
        if needle.search(text):
            return f"{reason}: {_RE2_NOTE}"
    return f"{text.split(':')[0] or 'not a valid regular expression'} ({_RE2_NOTE})"


def regex_problem(text: str) -> str | None:
    """Why ``text`` cannot be an ``error_pattern``, or ``None``."""
    try:
        compile_regex(text)
    except ValueError as exc:
        return str(exc)
    return None


def _regex(text: str) -> str:
    problem = regex_problem(text)
    if problem is not None:
        raise PydanticCustomError(
            "regex_invalid", "not a valid regular expression: {reason}", {"reason": problem}
        )
    return text


def _url(secret: SecretStr) -> SecretStr:
    """An http(s) URL with a valid host, or ``${ENV}``. The value never enters the error.

    Only the shape is checked here; whether the host may be reached (HTTPS, no
    internal addresses) is the runner's decision, made on the resolved address.
    """
    value = secret.get_secret_value()
    if _env_ref_or_refuse(value):
        return secret
    problem = url_problem(value)
    if problem is not None:
        raise PydanticCustomError("url_invalid", "{reason}", {"reason": problem})
    return secret


def _env_ref_or_refuse(value: str) -> bool:
    """True for ``${NAME}``; a value that starts like one but is not is refused, not sent as is."""
    if is_env_ref(value):
        return True
    if value.startswith("${"):
        raise PydanticCustomError(
            "env_ref_invalid",
            "looks like an environment reference but is not ${NAME} (letters, digits, _)",
        )
    return False


_DNS_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def url_problem(value: str) -> str | None:
    """Why ``value`` is not an acceptable action URL, or ``None``. Never quotes it.

    Checked on literals when a workflow loads and on ``${ENV}`` values when the action runs.
    """
    if any(c.isspace() or ord(c) < 32 for c in value):
        return "must be a URL without spaces or control characters"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return "must be an http:// or https:// URL with a valid host and port (1-65535)"
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL with a host, or ${ENV_VAR}"
    if "@" in parts.netloc:
        return "credentials in the URL are not allowed: send them in headers (as ${ENV_VAR})"
    if port == 0:
        return "port must be 1-65535"
    return _host_problem(parts.hostname)


def _host_problem(host: str) -> str | None:
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    try:
        ascii_host = host.encode("idna").decode("ascii").rstrip(".")
    except UnicodeError:
        return "host is not a valid host name"
    labels = ascii_host.split(".")
    if len(ascii_host) > 253 or not all(_DNS_LABEL.match(label) for label in labels):
        return "host is not a valid host name"
    return None


# Headers flowguard sets itself (or HTTP framing owns): a workflow may not override them.
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "idempotency-key",
        "flowguard-signature",
        "flowguard-timestamp",
        "flowguard-sample",
    }
)
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _headers(headers: dict[str, SecretStr]) -> dict[str, SecretStr]:
    """Valid names, none of ours, values that fit on one line. Names may be shown, values not."""
    for name, value in headers.items():
        if not _HEADER_NAME.match(name):
            raise PydanticCustomError(
                "header_invalid", "'{name}' is not a valid HTTP header name", {"name": name}
            )
        if name.lower() in RESERVED_HEADERS or name.lower().startswith("proxy-"):
            raise PydanticCustomError(
                "header_reserved",
                "header {name} is set by flowguard or by HTTP itself and cannot be given",
                {"name": name},
            )
        text = value.get_secret_value()
        problem = header_value_problem(text)
        if problem is not None:
            raise PydanticCustomError(
                "header_invalid", "header {name}: {problem}", {"name": name, "problem": problem}
            )
        _env_ref_or_refuse(text)
    return headers


def header_value_problem(value: str) -> str | None:
    """Why ``value`` cannot go on the wire as a header value, or ``None``. Never quotes it.

    Checked on literals when a workflow loads and on ``${ENV}`` values when the action
    runs: httpx encodes values as ASCII (anything else raises before sending) and h11
    refuses control characters and surrounding whitespace with an error that quotes the
    value, so either would reach a log or a record with the secret in it.
    """
    if any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in value):
        return "the value must be one line without control characters (CR, LF, NUL, ...)"
    if not value.isascii():
        return "the value has non-ASCII characters; encode it (percent or base64)"
    if value != value.strip(" \t"):
        return "the value must not start or end with whitespace"
    return None


def _routing_key(secret: SecretStr) -> SecretStr:
    if _env_ref_or_refuse(secret.get_secret_value()):
        return secret
    if not re.fullmatch(r"[A-Za-z0-9]{32}", secret.get_secret_value()):
        raise PydanticCustomError(
            "routing_key_invalid",
            "must be a 32-character Events API v2 integration key, or ${ENV_VAR}",
        )
    return secret


MIN_SIGNING_SECRET_CHARS = 16


def _signing_secret(secret: SecretStr) -> SecretStr:
    if _env_ref_or_refuse(secret.get_secret_value()):
        return secret
    if len(secret.get_secret_value()) < MIN_SIGNING_SECRET_CHARS:
        raise PydanticCustomError(
            "secret_too_short",
            "a signing secret needs at least {n} characters, or ${ENV_VAR}",
            {"n": MIN_SIGNING_SECRET_CHARS},
        )
    return secret


TemplateText = Annotated[str, AfterValidator(_template)]
Regex = Annotated[str, Field(min_length=1), AfterValidator(_regex)]
Glob = Annotated[str, Field(min_length=1)]
SecretUrl = Annotated[SecretStr, AfterValidator(_url)]
Headers = Annotated[dict[str, SecretStr], AfterValidator(_headers)]
RoutingKey = Annotated[SecretStr, AfterValidator(_routing_key)]
SigningSecret = Annotated[SecretStr, AfterValidator(_signing_secret)]
SlackName = Annotated[str, Field(min_length=1, max_length=80, pattern=r"^\S+$")]
Fingerprint = Annotated[
    str,
    Field(
        pattern=FINGERPRINT_PATTERN,
        description="A failure fingerprint: 16 lowercase hex digits, as the Groups page shows it.",
    ),
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Conditions(_Model):
    """All given conditions must hold (AND). Globs use shell syntax (``*``, ``?``, ``[ab]``)."""

    task_name_pattern: Glob | None = None
    queue: str | None = Field(default=None, min_length=1)
    error_pattern: Regex | None = Field(
        default=None, description='Regex searched in "ExceptionType: message".'
    )
    failure_count_threshold: int | None = Field(default=None, ge=1)
    fingerprint: Fingerprint | None = Field(
        default=None,
        description="task.failed: the failure's fingerprint (task, exception type, message "
        "with numbers, ids and quoted values normalized) is this one.",
    )
    cluster: Glob | None = None
    worker_pattern: Glob | None = None

    def given(self) -> dict[str, str | int]:
        """The conditions that were set, in a fixed order."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class Trigger(_Model):
    event: TriggerName
    conditions: Conditions = Conditions()
    threshold_seconds: float | None = Field(
        default=None,
        gt=0,
        description="task.execution_time_exceeded: run time that fires it; "
        "task.stuck: how long the task waits (unreceived or unstarted) before it fires.",
    )
    stage: StuckStage | None = Field(
        default=None,
        description="task.stuck: unreceived (sent, no worker received it: no consumer on its "
        "queue) or unstarted (received, not started: prefetch or a blocked pool); both if "
        "left out.",
    )

    @model_validator(mode="after")
    def _check_fit(self) -> Trigger:
        if self.event in THRESHOLD_TRIGGERS and self.threshold_seconds is None:
            raise PydanticCustomError(
                "missing_threshold",
                "threshold_seconds is required for {event}",
                {"event": self.event},
            )
        if self.event not in THRESHOLD_TRIGGERS and self.threshold_seconds is not None:
            raise PydanticCustomError(
                "unused_threshold",
                "threshold_seconds only applies to task.execution_time_exceeded and task.stuck",
            )
        if self.event != "task.stuck" and self.stage is not None:
            raise PydanticCustomError("unused_stage", "stage only applies to task.stuck")
        if self.stage == "unreceived" and self.conditions.worker_pattern is not None:
            raise PydanticCustomError(
                "condition_not_applicable",
                "condition worker_pattern does not apply to task.stuck at stage unreceived "
                "(no worker has the task: it can never match)",
            )
        allowed = CONDITIONS_BY_TRIGGER[self.event]
        for name in self.conditions.given():
            if name not in allowed:
                raise PydanticCustomError(
                    "condition_not_applicable",
                    "condition {name} does not apply to {event} (it can never match)",
                    {"name": name, "event": self.event},
                )
        return self


class RetryAction(_Model):
    type: Literal["retry"] = "retry"
    delay_seconds: float = Field(default=60, ge=0, le=7 * 24 * 3600)
    max_attempts: int = Field(default=3, ge=1, le=1000)
    same_arguments: bool = True
    exponential_backoff: bool = False
    backoff_multiplier: float = Field(default=2.0, ge=1.0, le=100.0)
    max_delay_seconds: float | None = Field(default=None, gt=0, le=7 * 24 * 3600)
    never_retry: tuple[Fingerprint, ...] = Field(
        default=(),
        max_length=1000,
        description="Failure fingerprints this workflow never retries: such a retry is "
        "skipped, with the reason on the execution record.",
    )


class _Notify(_Model):
    @field_serializer("*", when_used="always")
    def _mask_secrets(self, value: Any, info: Any) -> Any:
        context = info.context or {}
        if isinstance(value, SecretStr):
            return value.get_secret_value() if context.get("reveal_secrets") else mask(value)
        if isinstance(value, dict) and any(isinstance(v, SecretStr) for v in value.values()):
            return {k: self._mask_secrets(v, info) for k, v in value.items()}
        return value


class SlackAction(_Notify):
    type: Literal["slack"] = "slack"
    webhook_url: SecretUrl
    message: Annotated[TemplateText, Field(min_length=1)] = DEFAULT_SLACK_MESSAGE
    channel: SlackName | None = None
    username: str | None = Field(default=None, min_length=1, max_length=80)
    icon_emoji: str | None = Field(default=None, pattern=r"^:[a-z0-9_+'-]+:$")
    blocks: bool = Field(default=False, description="Add a Block Kit layout with task context.")


class WebhookAction(_Notify):
    type: Literal["webhook"] = "webhook"
    url: SecretUrl
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    headers: Headers = Field(default_factory=dict)
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    retries: int = Field(default=3, ge=0, le=20)
    secret: SigningSecret | None = Field(default=None, description="HMAC-SHA256 signing secret.")


class PagerDutyAction(_Notify):
    type: Literal["pagerduty"] = "pagerduty"
    routing_key: RoutingKey
    severity: Literal["critical", "error", "warning", "info"] = "error"
    summary: Annotated[TemplateText, Field(min_length=1)] = DEFAULT_PAGERDUTY_SUMMARY


NotifyAction = Annotated[SlackAction | WebhookAction | PagerDutyAction, Field(discriminator="type")]
Action = Annotated[
    RetryAction | SlackAction | WebhookAction | PagerDutyAction, Field(discriminator="type")
]
RETRY_FIELDS = frozenset(RetryAction.model_fields) - {"type"}


class CircuitBreaker(_Model):
    max_executions: int = Field(default=100, ge=1, le=1_000_000)
    scope: Literal["workflow", "cluster"] = Field(
        default="workflow",
        description=(
            "'workflow': one breaker for all the workflow's executions, fleet-wide. 'cluster': "
            "one per cluster, so a storm in one cluster does not skip the others' executions."
        ),
    )
    time_window_hours: float | None = Field(default=None, gt=0, le=24 * 365)
    time_window_seconds: float | None = Field(default=None, gt=0, le=3600 * 24 * 365)
    notify: NotifyAction | None = Field(
        default=None, description="Where the open/close notice goes; default: the workflow's own."
    )

    @model_validator(mode="after")
    def _one_window(self) -> CircuitBreaker:
        if self.time_window_hours is not None and self.time_window_seconds is not None:
            raise PydanticCustomError(
                "two_windows", "give time_window_hours or time_window_seconds, not both"
            )
        return self

    @property
    def window_seconds(self) -> float:
        if self.time_window_seconds is not None:
            return self.time_window_seconds
        return (self.time_window_hours or 1.0) * 3600.0


def _normalize_action(action: Any) -> Any:
    if isinstance(action, dict) and "type" not in action and action and set(action) <= RETRY_FIELDS:
        return {"type": "retry", **action}
    return action


class Workflow(_Model):
    """One workflow. ``id`` defaults to a slug of ``name`` and is its identity across versions."""

    id: Annotated[str, Field(pattern=ID_PATTERN)]
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    enabled: bool = True
    trigger: Trigger
    actions: tuple[Action, ...] = Field(min_length=1, max_length=20)
    circuit_breaker: CircuitBreaker | None = None

    _breaker: CircuitBreaker = PrivateAttr(default_factory=CircuitBreaker)

    @model_validator(mode="before")
    @classmethod
    def _normalize(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "action" in data:
            if "actions" in data:
                raise PydanticCustomError("two_action_keys", "give action or actions, not both")
            data["actions"] = [data.pop("action")]
        if isinstance(data.get("actions"), list):
            data["actions"] = [_normalize_action(a) for a in data["actions"]]
        if "id" not in data and isinstance(data.get("name"), str):
            data["id"] = slugify(data["name"])
        return data

    @model_validator(mode="after")
    def _check_actions(self) -> Workflow:
        retries = [a for a in self.actions if isinstance(a, RetryAction)]
        if len(retries) > 1:
            raise PydanticCustomError("two_retries", "a workflow can hold at most one retry action")
        if retries and self.trigger.event == "worker.offline":
            raise PydanticCustomError(
                "retry_needs_task", "a retry action needs a task trigger, not worker.offline"
            )
        if retries and retries[0].never_retry and self.trigger.event != "task.failed":
            raise PydanticCustomError(
                "never_retry_not_applicable",
                "never_retry only applies to task.failed: {event} carries no error, so no "
                "fingerprint (it can never match)",
                {"event": self.trigger.event},
            )
        return self

    def model_post_init(self, context: Any, /) -> None:
        if self.circuit_breaker is not None:
            self._breaker = self.circuit_breaker

    @property
    def breaker(self) -> CircuitBreaker:
        """The circuit breaker in force: the one written, or the defaults (100 per hour)."""
        return self._breaker

    def to_document(self, *, reveal_secrets: bool = False) -> dict[str, Any]:
        """The workflow as a YAML-ready mapping in the product page's format; secrets masked."""
        data = self.model_dump(
            mode="json",
            exclude_none=True,
            exclude_defaults=False,
            context={"reveal_secrets": reveal_secrets},
        )
        if len(self.actions) == 1:
            data["action"] = data.pop("actions")[0]
        return data
