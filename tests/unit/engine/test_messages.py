"""Message templates: known variables only, nothing that reaches into objects, rendering is
total."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowguard.engine.messages import VARIABLES, Template, compile_template
from flowguard.errors import TemplateInvalid

# The product page's Slack "Available variables" block, as written there.
PAGE_TEMPLATE = (
    "Task {task_name} failed on worker {worker}\n"
    "Error: {error_message}\n"
    "Args: {task_args}\n"
    "Time: {timestamp}\n"
    "Workflow: {workflow_name}"
)
PAYMENT_MESSAGE = "💳 Payment task {task_name} failed: {error_message}"
ESCALATION_MESSAGE = "🚨 Task {task_name} failed 3 times. Manual intervention needed."

VALUES = {
    "task_name": "payments.process_card",
    "worker": "celery@w1",
    "error_message": "ConnectionError('card gateway timed out')",
    "task_args": "(42, 'Sean O\\'Brien')",
    "timestamp": "2026-01-01T00:00:00Z",
    "workflow_name": "Alert on payment processing failures",
}


def test_the_pages_template_block_renders() -> None:
    template = compile_template(PAGE_TEMPLATE)
    assert template.variables == set(VALUES)
    assert template.render(VALUES) == (
        "Task payments.process_card failed on worker celery@w1\n"
        "Error: ConnectionError('card gateway timed out')\n"
        "Args: (42, 'Sean O\\'Brien')\n"
        "Time: 2026-01-01T00:00:00Z\n"
        "Workflow: Alert on payment processing failures"
    )


def test_the_pages_message_examples_render_with_their_emoji() -> None:
    payment = compile_template(PAYMENT_MESSAGE)
    assert payment.variables == {"task_name", "error_message"}
    assert payment.render(VALUES) == (
        "💳 Payment task payments.process_card failed: ConnectionError('card gateway timed out')"
    )
    escalation = compile_template(ESCALATION_MESSAGE)
    assert escalation.render({"task_name": "a.b"}) == (
        "🚨 Task a.b failed 3 times. Manual intervention needed."
    )


def test_every_listed_variable_is_accepted() -> None:
    source = " ".join("{" + name + "}" for name in sorted(VARIABLES))
    assert compile_template(source).variables == VARIABLES


def test_escaped_braces_render_as_braces() -> None:
    assert compile_template("{{literal}}").render({}) == "{literal}"
    assert compile_template("}}{{ {task_name} {{}}").render({"task_name": "x"}) == "}{ x {}"


def test_a_missing_value_renders_as_empty() -> None:
    assert compile_template("🚨 {task_name} on {queue}").render({"task_name": "t"}) == "🚨 t on "


def test_values_are_never_expanded_again() -> None:
    # A value that looks like a template or a format attack is printed as it is.
    template = compile_template("{error_message}")
    for value in ("{task_name}", "{0.__class__.__mro__}", "{{", "%s %(x)s"):
        assert template.render({"error_message": value, "task_name": "no"}) == value


def test_template_keeps_its_source_and_is_frozen() -> None:
    template = compile_template(PAYMENT_MESSAGE)
    assert template.source == PAYMENT_MESSAGE
    assert template == compile_template(PAYMENT_MESSAGE)
    with pytest.raises(AttributeError):
        template.source = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{task.name}", "{task.name}: attribute and index access are not allowed"),
        ("{task_args[0]}", "{task_args[0]}: attribute and index access are not allowed"),
        ("{task_name.__class__}", "attribute and index access are not allowed"),
        ("{0.__class__}", "{0.__class__}: attribute and index access are not allowed"),
        ("{}", "{}: positional fields are not allowed"),
        ("{0}", "{0}: positional fields are not allowed"),
        ("{!r}", "positional fields are not allowed"),
        ("{nope}", "unknown variable {nope}; allowed: attempt, cluster"),
        ("{ task_name }", "unknown variable { task_name } (no spaces inside the braces)"),
        ("{Task_Name}", "unknown variable {Task_Name}"),
        ("{task_name!r}", "{task_name!r}: conversions are not allowed"),
        ("{task_name!s}", "{task_name!s}: conversions are not allowed"),
        ("{task_name:>10}", "{task_name:>10}: format specs are not allowed"),
        ("{task_name:{worker}}", "{task_name:{worker}}: format specs are not allowed"),
        ("{task_name", "not a valid template: expected '}' before end of string"),
        ("}", "not a valid template: Single '}' encountered"),
        ("{task_name!}", "not a valid template"),
        ("a {b{c}} d", "not a valid template"),
    ],
)
def test_refusals_name_the_field_and_the_reason(text: str, reason: str) -> None:
    with pytest.raises(TemplateInvalid) as info:
        compile_template(text)
    assert reason in str(info.value)


def test_an_unknown_variable_lists_every_allowed_one() -> None:
    with pytest.raises(TemplateInvalid) as info:
        compile_template("Hi {taskname}")
    assert all(name in str(info.value) for name in VARIABLES)


@given(st.text().filter(lambda s: "{" not in s and "}" not in s))
def test_text_without_braces_renders_as_is(text: str) -> None:
    template = compile_template(text)
    assert template.variables == frozenset()
    assert template.render({"task_name": "x"}) == text


@given(name=st.sampled_from(sorted(VARIABLES)), value=st.text())
def test_a_variable_renders_its_value_verbatim(name: str, value: str) -> None:
    assert compile_template("{" + name + "}").render({name: value}) == value


# A template as a list of pieces: literal text (any characters, braces included) or a variable.
pieces = st.lists(st.text(max_size=8) | st.sampled_from(sorted(VARIABLES)).map(lambda n: (n,)))


@given(parts=pieces, values=st.dictionaries(st.sampled_from(sorted(VARIABLES)), st.text()))
def test_escaped_text_and_variables_interleave(
    parts: list[str | tuple[str]], values: dict[str, str]
) -> None:
    source = "".join(
        "{" + p[0] + "}" if isinstance(p, tuple) else p.replace("{", "{{").replace("}", "}}")
        for p in parts
    )
    expected = "".join(values.get(p[0], "") if isinstance(p, tuple) else p for p in parts)
    template = compile_template(source)
    assert template.render(values) == expected
    assert template.variables == {p[0] for p in parts if isinstance(p, tuple)}


@given(st.text())
def test_any_text_compiles_or_is_refused_with_template_invalid(text: str) -> None:
    try:
        template = compile_template(text)
    except TemplateInvalid:
        return
    assert isinstance(template, Template)
    assert template.variables <= VARIABLES
    assert isinstance(template.render({}), str)
