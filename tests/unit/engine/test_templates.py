"""Templates: known variables only, nothing that reaches into objects."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowguard.engine.templates import VARIABLES, compile_template
from flowguard.errors import TemplateInvalid

PAGE_TEMPLATE = (
    "Task {task_name} failed on worker {worker}\n"
    "Error: {error_message}\n"
    "Args: {task_args}\n"
    "Time: {timestamp}\n"
    "Workflow: {workflow_name}"
)


def test_the_pages_template_renders() -> None:
    template = compile_template(PAGE_TEMPLATE)
    assert template.variables == {
        "task_name",
        "worker",
        "error_message",
        "task_args",
        "timestamp",
        "workflow_name",
    }
    text = template.render(
        {
            "task_name": "a.b",
            "worker": "w1",
            "error_message": "boom",
            "task_args": "(1,)",
            "timestamp": "2026-01-01T00:00:00Z",
            "workflow_name": "wf",
        }
    )
    assert text.splitlines()[0] == "Task a.b failed on worker w1"


def test_emoji_and_escaped_braces_pass_through() -> None:
    assert (
        compile_template("💳 {{literal}} {task_name}").render({"task_name": "x"})
        == "💳 {literal} x"
    )
    assert compile_template("🚨 {task_name}").render({}) == "🚨 ", "a missing value renders empty"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{task.name}", "attribute and index access are not allowed"),
        ("{task_args[0]}", "attribute and index access are not allowed"),
        ("{}", "positional fields are not allowed"),
        ("{0}", "positional fields are not allowed"),
        ("{nope}", "unknown variable {nope}; allowed: attempt, cluster"),
        ("{task_name!r}", "conversions are not allowed"),
        ("{task_name:>10}", "format specs are not allowed"),
        ("{task_name", "not a valid template"),
        ("}", "not a valid template"),
    ],
)
def test_refusals_name_the_variable_and_the_reason(text: str, reason: str) -> None:
    with pytest.raises(TemplateInvalid) as info:
        compile_template(text)
    assert reason in str(info.value)


@given(st.text().filter(lambda s: "{" not in s and "}" not in s))
def test_text_without_braces_renders_as_is(text: str) -> None:
    assert compile_template(text).render({}) == text


@given(name=st.sampled_from(sorted(VARIABLES)), value=st.text())
def test_a_variable_renders_its_value_verbatim(name: str, value: str) -> None:
    assert compile_template("{" + name + "}").render({name: value}) == value
