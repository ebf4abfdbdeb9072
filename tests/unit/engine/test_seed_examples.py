"""Every YAML example of the product page loads as it is written."""

from __future__ import annotations

import pytest

from flowguard.engine.documents import parse_fragment, parse_workflow
from flowguard.engine.lint import lint
from flowguard.engine.workflow import RetryAction, SlackAction, Workflow
from tests.seed import SEED_PAGE, SHARED_SEED_PAGE, seed_blocks, seed_documents


def test_the_repository_copy_of_the_product_page_is_current() -> None:
    if not SHARED_SEED_PAGE.exists():
        pytest.skip("shared/ is not beside this checkout")
    assert SEED_PAGE.read_text() == SHARED_SEED_PAGE.read_text()


def test_the_page_has_the_examples_we_expect() -> None:
    assert len(seed_blocks()) == 15


@pytest.mark.parametrize("index", range(15))
def test_every_example_loads(index: int) -> None:
    doc = seed_documents()[index]
    if "trigger" in doc:
        workflow = parse_workflow(doc, source=f"seed#{index}", default_name=f"seed example {index}")
        assert isinstance(workflow, Workflow)
    else:
        parts = parse_fragment(doc, source=f"seed#{index}")
        assert parts, "a fragment must validate at least one part"


def _workflows() -> dict[str, Workflow]:
    found = {}
    for index, doc in enumerate(seed_documents()):
        if "trigger" in doc:
            wf = parse_workflow(doc, source=f"seed#{index}", default_name=f"seed-{index}")
            found[wf.name] = wf
    return found


def test_templates_load_with_their_meaning() -> None:
    wfs = _workflows()
    auto = wfs["Auto-retry network errors"]
    assert auto.id == "auto-retry-network-errors"
    assert auto.trigger.event == "task.failed"
    assert auto.trigger.conditions.error_pattern == "ConnectionError|Timeout|ConnectionRefusedError"
    (retry,) = auto.actions
    assert isinstance(retry, RetryAction)
    assert (retry.delay_seconds, retry.max_attempts, retry.same_arguments) == (60, 3, True)
    assert auto.breaker.max_executions == 100
    assert auto.breaker.window_seconds == 3600

    payments = wfs["Alert on payment processing failures"]
    (slack,) = payments.actions
    assert isinstance(slack, SlackAction)
    assert slack.message == "💳 Payment task {task_name} failed: {error_message}"
    assert payments.breaker.max_executions == 50

    orphan = wfs["Recover orphaned tasks"]
    assert orphan.trigger.event == "task.orphaned"
    assert orphan.breaker.window_seconds == 24 * 3600

    escalate = wfs["Escalate after 3 failures"]
    assert escalate.trigger.conditions.failure_count_threshold == 3
    assert escalate.circuit_breaker is None
    assert escalate.breaker.max_executions == 100


def test_the_best_practice_fragments_load_and_lint_agrees_with_the_page() -> None:
    docs = seed_documents()
    bad_attempts = next(d for d in docs if d.get("action", {}).get("max_attempts") == 999)
    parts = parse_fragment(bad_attempts, source="seed")
    (action,) = parts["actions"]
    assert isinstance(action, RetryAction)
    assert action.max_attempts == 999

    base = {"name": "x", "trigger": {"event": "task.failed"}}
    too_broad = parse_workflow(
        {
            **base,
            "trigger": {"event": "task.failed", "conditions": {"task_name_pattern": "*"}},
            "action": {"type": "slack", "webhook_url": "https://hooks.example.com/x"},
        },
        source="t",
    )
    assert [w.field for w in lint(too_broad)] == ["trigger.conditions.task_name_pattern"]
    unlimited = parse_workflow({**base, "action": {"max_attempts": 999}}, source="t")
    assert [w.field for w in lint(unlimited)] == ["action.max_attempts", "circuit_breaker"]
    good = parse_workflow(
        {
            **base,
            "action": {"max_attempts": 3},
            "circuit_breaker": {"max_executions": 50, "time_window_hours": 1},
        },
        source="t",
    )
    assert lint(good) == []
