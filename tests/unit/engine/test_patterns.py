"""User patterns run in linear time (issue 16, item 2): RE2 for error_pattern, atomic globs.

The catastrophic cases run in a child process with a deadline: on a backtracking engine
they never finish, and a C-level match cannot be interrupted in-process.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from flowguard.engine.conditions import compile_conditions
from flowguard.engine.documents import parse_workflow
from flowguard.errors import WorkflowInvalid
from topics.triggers import TaskContext, Trigger

_MATCH = """
import sys, time
from flowguard.engine.conditions import compile_conditions
from flowguard.engine.documents import parse_workflow
from topics.triggers import TaskContext, Trigger
conditions = {sys.argv[1]: sys.argv[2]}
wf = parse_workflow({"name": "t", "trigger": {"event": "task.failed", "conditions": conditions},
                     "action": {"type": "retry"}}, source="t")
task = TaskContext(id="1", root_id="1", name=sys.argv[3], exception_type="ValueError",
                   error_message=sys.argv[3])
trigger = Trigger(trigger_id="t", event="task.failed", at=0.0, cluster="c", task=task)
started = time.perf_counter()
compile_conditions(wf.trigger.conditions).evaluate(trigger)
print(time.perf_counter() - started)
"""


def _match_seconds(condition: str, pattern: str, text: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", _MATCH, condition, pattern, text],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    return float(done.stdout)


def test_a_catastrophic_error_pattern_returns_at_once() -> None:
    seconds = _match_seconds("error_pattern", "(a+)+$", "a" * 100_000 + "!")
    assert seconds < 0.5


def test_a_many_star_glob_on_a_long_name_returns_at_once() -> None:
    seconds = _match_seconds("task_name_pattern", "*a*a*a*a*a*a*a*a*b", "a" * 20_000)
    assert seconds < 0.5


def _trigger(error: str) -> Trigger:
    task = TaskContext(
        id="1", root_id="1", name="app.t", exception_type="ConnectionError", error_message=error
    )
    return Trigger(trigger_id="t", event="task.failed", at=0.0, cluster="c", task=task)


def _matches(pattern: str, error: str) -> bool:
    wf = parse_workflow(
        {
            "name": "t",
            "trigger": {"event": "task.failed", "conditions": {"error_pattern": pattern}},
            "action": {"type": "retry"},
        },
        source="t",
    )
    return compile_conditions(wf.trigger.conditions).evaluate(_trigger(error))[1]


def test_the_product_page_patterns_still_search_the_error() -> None:
    # Searched anywhere in "ExceptionType: message", as before.
    assert _matches("ConnectionError|Timeout|503", "upstream answered")
    assert _matches("503", "upstream answered 503")
    assert not _matches("SMTPException", "upstream answered 503")
    assert _matches("^ConnectionError: refused$", "refused")


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(a)\1", "backreferences"),
        (r"(?P<x>a)(?P=x)", "backreferences"),
        (r"foo(?=bar)", "lookahead"),
        (r"foo(?!bar)", "negative lookahead"),
        (r"(?<=foo)bar", "lookbehind"),
        (r"(", "missing )"),
    ],
)
def test_what_re2_cannot_run_is_refused_with_the_field_and_reason(
    pattern: str, reason: str
) -> None:
    doc = {
        "name": "t",
        "trigger": {"event": "task.failed", "conditions": {"error_pattern": pattern}},
        "action": {"type": "retry"},
    }
    with pytest.raises(WorkflowInvalid) as caught:
        parse_workflow(doc, source="t")
    [(field, message)] = caught.value.problems
    assert field == "trigger.conditions.error_pattern"
    assert reason in message
    assert "RE2" in message


def test_compiling_is_cheap_enough_for_every_version() -> None:
    started = time.perf_counter()
    for _ in range(200):
        _matches("ConnectionError|Timeout", "x")
    assert time.perf_counter() - started < 5
