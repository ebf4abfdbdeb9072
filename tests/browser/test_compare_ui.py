"""The editor's Compare with live panel in headless Chromium on the real app and Kafka: a
narrowed condition shows the executions it removes, per hour, with examples."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.api.server import Served
from tests.api.test_rehearse_api import _publish, _retry
from tests.browser.conftest import Shot, sign_in
from tests.integration.cli import workflows

pytestmark = pytest.mark.integration


def test_compare_with_live_shows_removed_retries_per_hour(
    page: Page, served: Served, shot: Shot, tmp_path: Path
) -> None:
    decided = _publish(served, tmp_path, int(time.time() * 1000) - 3_600_000)
    key_errors = {
        r.execution_id
        for r in decided
        if r.task is not None and r.task.exception_type == "KeyError"
    }
    with served.client("editor") as api:
        saved = api.post(
            "/api/workflows",
            json={"definition": {**_retry(workflows.LIVE["pattern"]), "enabled": True}},
        )
        assert saved.status_code in (200, 201), saved.text
    sign_in(page, served)
    page.goto(f"{served.base_url}/ui/workflows/retry-transient-errors/edit")
    page.fill("[data-path='trigger.conditions.error_pattern']", "ConnectionError|Timeout")
    expect(page.get_by_test_id("valid")).to_be_visible()
    panel = page.get_by_test_id("compare")
    panel.get_by_test_id("compare-hours").fill("3")
    panel.get_by_test_id("run-compare").click()
    summary = panel.get_by_test_id("compare-summary")
    expect(summary).to_contain_text(f"0 added, {len(key_errors)} removed")
    expect(summary).to_contain_text("retry-transient-errors")
    retries = panel.locator("[data-total=retries] td")
    live, draft = int(retries.nth(1).inner_text()), int(retries.nth(2).inner_text())
    assert draft < live
    assert retries.nth(3).inner_text() == str(draft - live)
    expect(panel.locator("[data-hour]").first).to_be_visible()
    expect(panel.get_by_test_id("compare-removed").locator("li")).to_have_count(20)
    panel.scroll_into_view_if_needed()
    shot(page, "editor-compare-with-live")

    # A range over the bound: the problem is shown, not the last result.
    panel.get_by_test_id("compare-hours").fill("500")
    panel.get_by_test_id("run-compare").click()
    expect(panel.get_by_test_id("compare-results")).to_contain_text("longer than 168 hours")
