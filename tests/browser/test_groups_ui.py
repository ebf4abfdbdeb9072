"""The Failure groups page in a real browser: groups with counts, first and last seen, clusters
and the workflows that acted; an editor keeps a workflow from retrying a group."""

from __future__ import annotations

import time

from playwright.sync_api import Dialog, Page, expect

from tests.api.server import Served
from tests.api.test_groups import ORDERS, seed
from tests.browser.conftest import Shot, sign_in
from tests.helpers import wait_until
from topics.record import iso


def _open(page: Page, served: Served, count: int) -> None:
    def listed() -> bool:
        page.goto(f"{served.base_url}/ui/groups")
        page.get_by_test_id("groups-summary").wait_for()
        expect(page.get_by_test_id("groups-summary")).not_to_have_text("")
        return page.locator("[data-group]").count() == count

    wait_until(listed, timeout_seconds=30, what=f"{count} groups on the page")


def test_groups_page_shows_the_groups_and_never_retry_saves_a_version(
    page: Page, served: Served, shot: Shot
) -> None:
    t0 = time.time() - 3600
    seed(served, t0)
    sign_in(page, served)
    page.get_by_role("link", name="Groups").click()
    page.wait_for_url("**/ui/groups")
    _open(page, served, 2)

    row = page.locator(f"[data-group='{ORDERS}']")
    expect(page.locator("[data-group]").first).to_have_attribute("data-group", ORDERS)
    expect(row.get_by_test_id("failures")).to_have_text("3")
    expect(row.get_by_test_id("pattern")).to_have_text("order-<n>")
    expect(row.get_by_test_id("clusters")).to_have_text("eu, prod")
    first = (iso(t0 + 3) or "").replace("T", " ").split(".")[0]
    expect(row.get_by_test_id("first-seen")).to_contain_text(first)
    workflows = row.get_by_test_id("workflows")
    expect(workflows.locator("[data-workflow]")).to_have_count(2)
    retry = workflows.locator("[data-workflow='retry-charges']")
    expect(retry).to_contain_text("3 executions, 3 retries")
    expect(workflows.locator("[data-workflow='page-on-charges'] button")).to_have_count(0)
    shot(page, "failure-groups")

    asked: list[str] = []

    def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    retry.get_by_test_id("never-retry-toggle").click()
    expect(retry).to_have_attribute("data-never-retry", "true")
    expect(retry.get_by_test_id("never-retry-toggle")).to_have_text("Allow retry")
    assert asked == [
        "retry charges: never retry this group? This saves a new version of the workflow."
    ]
    with served.client("viewer") as api:
        action = api.get("/api/workflows/retry-charges").json()["definition"]["action"]
    assert action["never_retry"] == [ORDERS]


def test_a_viewer_sees_the_groups_without_buttons(page: Page, served: Served) -> None:
    seed(served, time.time() - 3600)
    sign_in(page, served, role="viewer")
    _open(page, served, 2)
    expect(page.get_by_test_id("never-retry-toggle")).to_have_count(0)


def test_an_executions_record_links_to_its_group(page: Page, served: Served) -> None:
    seed(served, time.time() - 3600)
    sign_in(page, served, role="viewer")
    page.goto(f"{served.base_url}/ui/workflows/retry-charges#history")
    page.click("[data-tab=history]")

    def listed() -> bool:
        page.get_by_role("button", name="Filter").click()
        return page.locator("[data-execution]").count() == 4

    wait_until(listed, timeout_seconds=30, what="the four executions in the history")
    oldest = page.locator("[data-execution]").last  # t1: KeyError order-17
    oldest.locator("summary").first.click()
    expect(oldest.get_by_test_id("group-link")).to_have_text(ORDERS)
    oldest.get_by_test_id("group-link").click()
    page.wait_for_url(f"**/ui/groups?fingerprint={ORDERS}")
    expect(page.locator("[data-group]")).to_have_count(1)
    expect(page.locator("[data-group]")).to_have_attribute("data-group", ORDERS)
    expect(page.get_by_test_id("show-all")).to_be_visible()
