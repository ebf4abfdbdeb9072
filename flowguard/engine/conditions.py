"""Conditions, compiled once per workflow version and evaluated per trigger.

All conditions that are set must hold. Each evaluation reports every
condition with its value and whether it matched, which is what the execution
record and ``replay --explain`` show.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass

from flowguard.engine.fingerprint import fingerprint_of
from flowguard.engine.triggers import error_text
from flowguard.engine.workflow import Conditions, compile_regex
from topics.execution import ConditionResult
from topics.triggers import Trigger

Check = Callable[[Trigger], bool]


def glob(pattern: str) -> re.Pattern[str]:
    """Shell-style glob, case-sensitive (task names are).

    Not a user regex: ``fnmatch.translate`` escapes everything but ``*``, ``?`` and
    ``[...]`` and wraps each star in an atomic group, so matching stays linear-ish
    (tests/unit/engine/test_patterns.py times a many-star glob on a long name).
    """
    return re.compile(fnmatch.translate(pattern))


def is_literal_glob(pattern: str) -> bool:
    return not any(ch in pattern for ch in "*?[")


@dataclass(frozen=True, slots=True)
class CompiledConditions:
    checks: tuple[tuple[str, str | int, Check], ...]

    def evaluate(self, trigger: Trigger) -> tuple[list[ConditionResult], bool]:
        """(every condition with its result, whether all matched). Stops at nothing: all shown."""
        results = [ConditionResult(name=n, value=v, matched=c(trigger)) for n, v, c in self.checks]
        return results, all(r.matched for r in results)

    def first_failure(self, trigger: Trigger) -> tuple[str, str | int] | None:
        """The first condition that does not hold, cheaply (no result objects)."""
        for name, value, check in self.checks:
            if not check(trigger):
                return name, value
        return None


def _task_name(pattern: str) -> Check:
    rx = glob(pattern)
    return lambda t: (
        t.task is not None and t.task.name is not None and rx.match(t.task.name) is not None
    )


def _queue(queue: str) -> Check:
    return lambda t: t.task is not None and t.task.queue == queue


def _error(pattern: str) -> Check:
    rx = compile_regex(pattern)  # RE2: linear time, whatever the pattern and the message
    return lambda t: t.task is not None and rx.search(error_text(t.task)) is not None


def _fingerprint(wanted: str) -> Check:
    return lambda t: fingerprint_of(t.task) == wanted


def _failures(threshold: int) -> Check:
    return lambda t: t.task is not None and t.task.failure_count >= threshold


def _cluster(pattern: str) -> Check:
    rx = glob(pattern)
    return lambda t: rx.match(t.cluster) is not None


def _worker(pattern: str) -> Check:
    rx = glob(pattern)
    return lambda t: t.worker is not None and rx.match(t.worker) is not None


_BUILDERS: dict[str, Callable[[str], Check] | Callable[[int], Check]] = {
    "task_name_pattern": _task_name,
    "queue": _queue,
    "error_pattern": _error,
    "failure_count_threshold": _failures,
    "fingerprint": _fingerprint,
    "cluster": _cluster,
    "worker_pattern": _worker,
}


def compile_conditions(conditions: Conditions) -> CompiledConditions:
    checks = [(name, value, _BUILDERS[name](value)) for name, value in conditions.given().items()]  # type: ignore[arg-type]
    return CompiledConditions(tuple(checks))
