"""The UI in real headless Chromium against the real API and Kafka; screenshots for the docs."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.api.server import Served, publish_records
from tests.browser.conftest import Shot, new_workflow, save_second_version, sign_in
from tests.helpers import wait_until
from topics.execution import ExecutionRecord

pytestmark = pytest.mark.integration
STREAM = Path(__file__).resolve().parents[2] / "tests" / "data" / "streams" / "flaky_chain.jsonl"


def test_template_save_enable_test_history_versions_rollback(
    page: Page, served: Served, shot: Shot
) -> None:
    sign_in(page, served)
    expect(page.get_by_text("No workflows yet")).to_be_visible()
    page.get_by_role("link", name="Create Workflow").first.click()
    template = page.locator("[data-template=auto-retry-network-errors]")
    shot(page, "create-pick-template")
    template.get_by_role("button").click()
    expect(page.get_by_test_id("valid")).to_be_visible()
    yaml_text = page.get_by_test_id("yaml").input_value()
    assert "error_pattern: ConnectionError|Timeout|ConnectionRefusedError" in yaml_text
    shot(page, "editor")
    # The form and the YAML view stay in sync, both ways.
    page.fill("[data-path='actions.0.max_attempts']", "5")
    assert "max_attempts: 5" in page.get_by_test_id("yaml").input_value()
    shot(page, "editor")
    page.click("#save-enable")
    page.wait_for_url("**/ui/workflows/auto-retry-network-errors?saved=1")
    expect(page.get_by_test_id("definition")).to_contain_text("max_attempts: 5")
    shot(page, "workflow-settings")

    # Edit: a second version, then the diff and a rollback to the first.
    page.get_by_role("link", name="Edit", exact=True).click()
    page.fill("[data-path='circuit_breaker.max_executions']", "20")
    save_second_version(page)
    page.get_by_role("button", name="Show diff").click()
    expect(page.get_by_test_id("diff")).to_contain_text("+  max_executions: 20")
    shot(page, "workflow-versions")
    page.get_by_role("button", name="Roll back to v1").click()
    expect(page.locator("[data-version='3']")).to_contain_text("rollback to version 1")

    # Test Workflow over a recorded stream.
    page.click("[data-tab=test]")
    page.get_by_test_id("test-events").fill(STREAM.read_text())
    page.get_by_test_id("run-test").click()
    expect(page.get_by_test_id("test-results")).to_contain_text("execution records (dry run)")
    expect(page.locator("[data-testid=verdict][data-fired=true]").first).to_be_visible()
    shot(page, "workflow-test")

    # Execution History: records on the log show up, expand, and link to the retry chain.
    result = page.evaluate(
        """async (stream) => FG.api("POST", "/api/test",
            {workflow_id: "auto-retry-network-errors", events_jsonl: stream})""",
        STREAM.read_text(),
    )
    records = [ExecutionRecord.model_validate(r) for r in result["records"]]
    assert records
    publish_records(served, records)
    page.click("[data-tab=history]")

    def listed() -> bool:
        page.get_by_role("button", name="Filter").click()
        return page.locator("[data-execution]").count() > 0

    wait_until(listed, timeout_seconds=30, what="executions in the history tab")
    page.locator("[data-execution] summary").first.click()
    expect(page.locator("[data-execution] .record").first).to_contain_text("Circuit breaker")
    shot(page, "workflow-history")
    page.locator("[data-execution] .record a").first.click()
    expect(page.get_by_test_id("chain")).to_contain_text("Auto-retry network errors")
    shot(page, "task-chain")

    page.goto(f"{served.base_url}/ui/")
    row = page.locator("[data-workflow=auto-retry-network-errors]")
    expect(row).to_contain_text("enabled")
    expect(row).to_contain_text("v3")
    shot(page, "workflows")


def test_inline_validation_names_the_field(page: Page, served: Served) -> None:
    new_workflow(page, served, "Bad regex")
    page.fill("[data-path='trigger.conditions.error_pattern']", "(")
    expect(page.get_by_test_id("problems")).to_contain_text(
        "trigger.conditions.error_pattern: not a valid regular expression"
    )
    expect(page.locator("#save-enable")).to_be_disabled()
    expect(page.locator("[data-path='trigger.conditions.error_pattern']")).to_have_class("invalid")
    # Typing YAML updates the form.
    page.get_by_test_id("yaml").fill(
        "name: From yaml\ntrigger: {event: task.orphaned}\naction: {type: retry}\n"
    )
    expect(page.locator("[data-path=name]")).to_have_value("From yaml")
    expect(page.get_by_test_id("valid")).to_be_visible()


def test_viewer_sees_no_write_controls(page: Page, served: Served) -> None:
    sign_in(page, served, "viewer")
    expect(page.get_by_text("Create Workflow")).to_have_count(0)


def _enabled(served: Served, workflow_id: str) -> bool:
    with served.client("viewer") as api:
        return bool(api.get(f"/api/workflows/{workflow_id}").json()["enabled"])


def test_save_keeps_the_state_and_only_save_and_enable_enables(page: Page, served: Served) -> None:
    sign_in(page, served)
    page.goto(f"{served.base_url}/ui/new")
    page.locator("[data-template=auto-retry-network-errors]").get_by_role("button").click()
    expect(page.get_by_test_id("valid")).to_be_visible()
    page.click("#save")
    page.wait_for_url("**/ui/workflows/auto-retry-network-errors?saved=1")
    expect(page.get_by_text("disabled", exact=True)).to_be_visible()
    assert _enabled(served, "auto-retry-network-errors") is False

    def edit_and(button: str, attempts: str, version: int) -> None:
        page.goto(f"{served.base_url}/ui/workflows/auto-retry-network-errors/edit")
        page.fill("[data-path='actions.0.max_attempts']", attempts)
        expect(page.get_by_test_id("valid")).to_be_visible()
        page.click(button)
        page.wait_for_url(f"**?saved={version}")

    edit_and("#save", "4", 2)
    assert _enabled(served, "auto-retry-network-errors") is False
    edit_and("#save-enable", "5", 3)
    assert _enabled(served, "auto-retry-network-errors") is True
    edit_and("#save", "6", 4)
    assert _enabled(served, "auto-retry-network-errors") is True
    expect(page.get_by_text("enabled", exact=True)).to_be_visible()


def test_slack_preview_renders_the_variables_live(page: Page, served: Served) -> None:
    sign_in(page, served)
    page.goto(f"{served.base_url}/ui/new")
    page.locator("[data-template=alert-on-payment-processing-failures]").get_by_role(
        "button"
    ).click()
    page.fill("[data-path=name]", "Payments on call")
    page.fill(
        "[data-path='actions.0.message']",
        "{workflow_name}: {task_name} failed on {worker}: {error_message} ({task_args})",
    )
    expect(page.locator("[data-preview='actions.0.message']")).to_have_text(
        "Payments on call: myapp.tasks.send_email failed on celery@worker-1: "
        "Connection refused (('user@example.com',))"
    )
    page.fill("[data-path='actions.0.message']", "{nope}")
    expect(page.locator("[data-preview='actions.0.message']")).to_contain_text("{nope}")


def test_test_workflow_runs_an_unsaved_draft(page: Page, served: Served, shot: Shot) -> None:
    """The product page: test workflows before enabling them, from the editor itself."""
    sign_in(page, served)
    page.goto(f"{served.base_url}/ui/new")
    page.locator("[data-template=auto-retry-network-errors]").get_by_role("button").click()
    page.fill("[data-path='actions.0.max_attempts']", "2")
    draft = page.get_by_test_id("draft-test")
    draft.get_by_test_id("test-events").fill(STREAM.read_text())
    draft.get_by_test_id("run-test").click()
    results = draft.get_by_test_id("test-results")
    expect(results).to_contain_text("execution records (dry run)")
    expect(results.locator("[data-testid=verdict][data-fired=true]").first).to_be_visible()
    expect(results).to_contain_text("retry:planned")
    shot(page, "editor-test")
    with served.client("viewer") as api:
        assert api.get("/api/workflows").json() == [], "testing a draft saves nothing"


def test_editing_a_slack_template_workflow_keeps_its_webhook(page: Page, served: Served) -> None:
    """Written with `action:` (as every shipped template), edited in the browser: the masked
    webhook URL is the stored one, so the draft validates and saves without retyping it."""
    hook = "https://hooks.slack.com/services/T0/B0/realrealrealreal1234"
    text = (
        "name: Payments to Slack\ntrigger: {event: task.failed}\n"
        f"action: {{type: slack, webhook_url: '{hook}', message: 'x {{task_name}}'}}\n"
    )
    with served.client("editor") as api:
        api.post("/api/workflows", json={"yaml": text}).raise_for_status()
    sign_in(page, served)
    page.goto(f"{served.base_url}/ui/workflows/payments-to-slack/edit")
    expect(page.locator("[data-path='actions.0.webhook_url']")).to_have_value("***1234")
    page.fill("[data-path='actions.0.message']", "{workflow_name}: {task_name} failed")
    expect(page.get_by_test_id("valid")).to_be_visible()
    page.click("#save")
    page.wait_for_url("**?saved=2")
    with served.client("admin") as admin:
        exported = admin.get(
            "/api/workflows/payments-to-slack/export", params={"reveal_secrets": True}
        ).text
    assert hook in exported
    assert "{workflow_name}: {task_name} failed" in exported


def test_the_editor_knows_the_stuck_and_duplicate_triggers(page: Page, served: Served) -> None:
    """task.stuck takes a threshold and a stage (the lint's task-sent warning shows for stage
    unreceived); switching away drops both, as the server would refuse them."""
    new_workflow(page, served, "Stuck emails")
    page.select_option("[data-path='trigger.event']", "task.stuck")
    expect(page.get_by_test_id("problems")).to_contain_text(
        "threshold_seconds is required for task.stuck"
    )
    page.fill("[data-path='trigger.threshold_seconds']", "120")
    page.select_option("[data-path='trigger.stage']", "unreceived")
    expect(page.get_by_test_id("valid")).to_be_visible()
    expect(page.locator("#validation .warnings")).to_contain_text("task_send_sent_event = True")
    yaml_text = page.get_by_test_id("yaml").input_value()
    assert "event: task.stuck" in yaml_text
    assert "threshold_seconds: 120" in yaml_text
    assert "stage: unreceived" in yaml_text
    page.select_option("[data-path='trigger.stage']", "unstarted")
    expect(page.get_by_test_id("valid")).to_be_visible()
    expect(page.locator("#validation")).not_to_contain_text("task_send_sent_event")
    # Waiting for the new validation's answer: the page must not close on a fetch in flight.
    with page.expect_response("**/api/validate"):
        page.select_option("[data-path='trigger.event']", "task.duplicate_start")
    expect(page.get_by_test_id("valid")).to_be_visible()
    expect(page.locator("[data-path='trigger.stage']")).to_have_count(0)
    expect(page.locator("[data-path='trigger.threshold_seconds']")).to_have_count(0)
    assert "stage" not in page.get_by_test_id("yaml").input_value()
