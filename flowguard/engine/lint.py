"""Best-practice warnings: valid workflows that the product page calls risky."""

from __future__ import annotations

from dataclasses import dataclass

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
