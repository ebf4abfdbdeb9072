"""The whole story in a browser: a real Celery task fails, the workflow made in the UI retries
it, Execution History and the retry chain show it, and the workflow is rolled back.

Real parts only: a Celery worker on its own Redis, its bridge, ``flowguard worker`` (the e2e
stack from tests/e2e) and the API, all on this test's topic prefix of the real Kafka.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.api.server import Served, serve
from tests.browser.conftest import Shot, save_second_version, sign_in
from tests.e2e.conftest import Stack
from tests.helpers import wait_until
from tests.processes import private_redis

pytestmark = pytest.mark.integration


@pytest.fixture
def live(tmp_path: Path, kafka_bootstrap: str, topic_prefix: str) -> Iterator[tuple[Stack, Served]]:
    with private_redis(tmp_path) as broker:
        built: list[Stack] = []
        # Stack's constructor calls asyncio.run: not in Playwright's thread, which runs a loop.
        thread = threading.Thread(
            target=lambda: built.append(Stack(tmp_path, broker, kafka_bootstrap, topic_prefix))
        )
        thread.start()
        thread.join()
        assert built, "the live stack did not start (see the logs under tmp_path)"
        stack = built[0]
        try:
            with serve(kafka_bootstrap, topic_prefix, tmp_path / "history") as served:
                yield stack, served
        finally:
            stack.close()


def test_failing_celery_task_retried_seen_in_history_and_chain_then_rolled_back(
    page: Page, live: tuple[Stack, Served], shot: Shot
) -> None:
    stack, served = live
    sign_in(page, served)
    page.goto(f"{served.base_url}/ui/new")
    page.locator("[data-template=auto-retry-network-errors]").get_by_role("button").click()
    # The template waits 60 s before retrying; 2 s keeps the test short.
    page.fill("[data-path='actions.0.delay_seconds']", "2")
    page.fill("[data-path='trigger.conditions.task_name_pattern']", "demo.tasks.flaky_*")
    expect(page.get_by_test_id("valid")).to_be_visible()
    page.click("#save-enable")
    page.wait_for_url("**/ui/workflows/auto-retry-network-errors?saved=1")

    stack.client.send_task(
        "demo.tasks.flaky_network", (7,), {"fail_times": 1, "key": "ui-1"}, task_id="t-ui"
    )
    runs = wait_until(
        lambda: (r := stack.runs("demo.tasks.flaky_network")) and len(r) >= 2 and r,
        timeout_seconds=90,
        what="the retry to run on the Celery worker",
    )
    retry_id = runs[1]["task_id"]

    page.click("[data-tab=history]")

    def retry_listed() -> bool:
        page.get_by_role("button", name="Filter").click()
        rows = page.locator("[data-execution]")
        # sent, then succeeded once the bridge reports that it sent the task
        text = rows.first.inner_text() if rows.count() else ""
        return "retry:sent" in text or "retry:succeeded" in text

    wait_until(retry_listed, timeout_seconds=60, what="the sent retry in Execution History")
    page.locator("[data-execution] summary").first.click()
    expect(page.locator("[data-execution] .record").first).to_contain_text("t-ui")
    shot(page, "live-history")

    page.locator("[data-execution] .record a").first.click()
    chain = page.get_by_test_id("chain")
    expect(chain).to_contain_text("t-ui")
    expect(chain).to_contain_text(retry_id)
    expect(chain).to_contain_text("Auto-retry network errors")
    shot(page, "live-task-chain")

    # A second version from the editor, then back to the first.
    page.goto(f"{served.base_url}/ui/workflows/auto-retry-network-errors/edit")
    page.fill("[data-path='actions.0.max_attempts']", "1")
    save_second_version(page)
    page.get_by_role("button", name="Roll back to v1").click()
    expect(page.locator("[data-version='3']")).to_contain_text("rollback to version 1")
    page.click("[data-tab=settings]")
    expect(page.get_by_test_id("definition")).to_contain_text("max_attempts: 3")
