"""Best-practice warnings: valid workflows that the product page calls risky."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

from flowguard.control.secrets import is_env_ref
from flowguard.engine.workflow import RetryAction, Workflow

LARGE_MAX_ATTEMPTS = 10


@dataclass(frozen=True, slots=True)
class LintWarning:
    field: str
    message: str


def lint(workflow: Workflow) -> list[LintWarning]:
    """Warnings for one valid workflow, in field order."""
    warnings = []
    pattern = workflow.trigger.conditions.task_name_pattern
    if pattern is not None and pattern.strip("*") == "":
        warnings.append(
            LintWarning(
                "trigger.conditions.task_name_pattern",
                f"{pattern!r} matches every task; narrow it (e.g. 'myapp.tasks.send_email')",
            )
        )
    for index, action in enumerate(workflow.actions):
        if isinstance(action, RetryAction) and action.max_attempts > LARGE_MAX_ATTEMPTS:
            where = "action" if len(workflow.actions) == 1 else f"actions.{index}"
            warnings.append(
                LintWarning(
                    f"{where}.max_attempts",
                    f"{action.max_attempts} retries per chain is very large; start with 3",
                )
            )
    warnings += _never_retry_warnings(workflow)
    if workflow.trigger.event == "task.stuck" and workflow.trigger.stage != "unstarted":
        which = "stage unreceived" if workflow.trigger.stage else "without a stage, unreceived"
        warnings.append(
            LintWarning(
                "trigger.stage",
                f"{which} needs task-sent events: set task_send_sent_event = True on the Celery "
                "app (off by default), or a task no worker received is never seen; stage "
                "unstarted needs only the worker's events",
            )
        )
    has_retry = any(isinstance(a, RetryAction) for a in workflow.actions)
    if has_retry and workflow.circuit_breaker is None:
        warnings.append(
            LintWarning(
                "circuit_breaker",
                "a retry workflow without an explicit circuit breaker (default: 100 per hour); "
                "set max_executions and time_window_hours",
            )
        )
    return warnings


def _never_retry_warnings(workflow: Workflow) -> list[LintWarning]:
    """A retry whose never_retry lists the one group the workflow matches never runs."""
    wanted = workflow.trigger.conditions.fingerprint
    for index, action in enumerate(workflow.actions):
        if isinstance(action, RetryAction) and wanted is not None and wanted in action.never_retry:
            where = "action" if len(workflow.actions) == 1 else f"actions.{index}"
            return [
                LintWarning(
                    f"{where}.never_retry",
                    f"lists {wanted}, the fingerprint the trigger matches: this retry never runs",
                )
            ]
    return []


LITERAL_SECRET = (
    "a literal secret is stored in clear on Kafka (<prefix>.workflows and, forever, "
    "<prefix>.workflow-history) because FLOWGUARD_SECRETS_KEY is not set: anyone who can "
    "read those topics reads it, and rotating it never removes the old value. Set "
    "FLOWGUARD_SECRETS_KEY, or write ${FLOWGUARD_SECRET_...} (docs/security.md)"
)


def literal_secret_warnings(workflow: Workflow) -> list[LintWarning]:
    """One warning per secret written as a literal: shown when no sealing key is set."""
    warnings = []
    notify = workflow.breaker.notify if workflow.circuit_breaker is not None else None
    holders = [
        ("action" if len(workflow.actions) == 1 else f"actions.{i}", a)
        for i, a in enumerate(workflow.actions)
    ]
    if notify is not None:
        holders.append(("circuit_breaker.notify", notify))
    for where, action in holders:
        for name in type(action).model_fields:
            value = getattr(action, name)
            values = value if isinstance(value, dict) else {None: value}
            for key, secret in values.items():
                if isinstance(secret, SecretStr) and not is_env_ref(secret.get_secret_value()):
                    path = f"{where}.{name}" + (f".{key}" if key is not None else "")
                    warnings.append(LintWarning(path, LITERAL_SECRET))
    return warnings
