"""The Bulk remediation page in a real browser: an editor previews a filter (count and a
sample), runs it named and paced to the end, and undoes it; a viewer cannot; an admin sets
the ceiling."""

from __future__ import annotations

import pytest
from playwright.sync_api import Dialog, Page, expect

from tests.api.server import Served
from tests.api.test_remediate_api import seed_failures
from tests.browser.conftest import Shot, sign_in
from tests.processes import TEST_COMMAND_KEY


def test_preview_run_and_undo_from_the_page(
    page: Page, served: Served, shot: Shot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWGUARD_COMMAND_KEYS", f"*={TEST_COMMAND_KEY}")
    seed_failures(served)
    asked: list[str] = []

    def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    sign_in(page, served)
    page.get_by_role("link", name="Remediate").click()
    page.wait_for_url("**/ui/remediate")
    expect(page.get_by_test_id("run")).to_be_disabled()
    page.get_by_test_id("task").fill("billing.*")
    page.get_by_test_id("since").fill("10m")
    page.get_by_test_id("preview-button").click()
    expect(page.get_by_test_id("count")).to_contain_text("3 tasks selected (a: 2, b: 1)")
    expect(page.locator("[data-testid=sample] tr[data-task]")).to_have_count(3)
    expect(page.locator("tr[data-task='t1']")).to_contain_text("ConnectionError: reset")

    page.get_by_test_id("run-name").fill("incident 4211")
    page.get_by_test_id("rate").fill("50")
    page.get_by_test_id("run").click()
    expect(page.get_by_test_id("progress")).to_contain_text(
        "incident 4211: 3 of 3 (3 sent, 0 refused) · done"
    )
    assert asked[-1].startswith("retry 3 tasks as 'incident 4211'?")
    expect(page.locator("[data-run='incident-4211']")).to_be_visible()
    shot(page, "bulk-remediation")

    page.get_by_test_id("undo-target").fill("incident 4211")
    page.get_by_test_id("undo").click()
    expect(page.get_by_test_id("undo-result")).to_have_text("3 pending retries revoked")
    assert asked[-1] == "Revoke every pending retry of incident 4211?"


def test_a_viewer_cannot_and_an_admin_sets_the_ceiling(page: Page, served: Served) -> None:
    sign_in(page, served, role="viewer")
    page.goto(f"{served.base_url}/ui/remediate")
    expect(page.get_by_test_id("viewer-note")).to_be_visible()
    expect(page.get_by_test_id("preview-button")).to_have_count(0)
    expect(page.get_by_test_id("ceiling")).to_have_count(0)

    sign_in(page, served, role="admin")
    page.goto(f"{served.base_url}/ui/remediate")
    page.get_by_test_id("ceiling").fill("25")
    page.get_by_test_id("save-ceiling").click()
    expect(page.get_by_role("status")).to_have_text("ceiling: 25 tasks a run")
    page.reload()
    expect(page.get_by_test_id("ceiling")).to_have_value("25")
