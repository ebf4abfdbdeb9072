"""Real headless Chromium (Debian's, never a downloaded one) driven by Playwright."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Request, expect, sync_playwright

from tests.api.server import TOKENS, Served, serve

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
Shot = Callable[[Page, str], None]


@pytest.fixture(scope="module")
def browser(kafka_bootstrap: str) -> Iterator[Browser]:
    # Kafka first: its fixture calls asyncio.run, which Playwright's running loop would refuse.
    # Per module, not per session: while Playwright's sync API runs, its event loop is the
    # thread's running loop, and every later test's asyncio.run() would be refused.
    if not CHROMIUM.exists():
        pytest.fail("no /usr/bin/chromium: apt-get install -y chromium", pytrace=False)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def served(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Iterator[Served]:
    with serve(kafka_bootstrap, topic_prefix, tmp_path / "history") as found:
        yield found


def sign_in(page: Page, served: Served, role: str = "editor") -> None:
    page.goto(f"{served.base_url}/ui/login")
    page.fill("#token", TOKENS[role])
    page.click("button[type=submit]")
    page.wait_for_url(f"{served.base_url}/ui/")
    page.get_by_test_id("who").wait_for()


def new_workflow(page: Page, served: Served, name: str) -> None:
    """Signed in as an editor, a blank workflow named ``name`` open in the editor."""
    sign_in(page, served)
    page.goto(f"{served.base_url}/ui/new")
    page.locator("[data-template=blank]").get_by_role("button").click()
    page.fill("[data-path=name]", name)


def save_second_version(page: Page) -> None:
    """Save the edited workflow as version 2 and open its versions tab."""
    expect(page.get_by_test_id("valid")).to_be_visible()
    page.click("#save")
    page.wait_for_url("**?saved=2")
    page.click("[data-tab=versions]")


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page whose JavaScript errors fail the test. It is closed once its requests in flight
    have ended (at most 10 s): a page closed on a fetch the test did not wait for (the
    editor's preview after a change) failed it with 'Failed to fetch', a tear-down race."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    in_flight: set[Request] = set()
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    opened.on("request", lambda request: in_flight.add(request))
    opened.on("requestfinished", lambda request: in_flight.discard(request))
    opened.on("requestfailed", lambda request: in_flight.discard(request))
    yield opened
    deadline = time.monotonic() + 10
    while in_flight and time.monotonic() < deadline and not opened.is_closed():
        opened.wait_for_timeout(50)  # lets Playwright deliver the requests' events
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def shot(tmp_path: Path) -> Shot:
    """Take a full-page screenshot by name: into docs/screenshots only when
    FLOWGUARD_SCREENSHOTS=1 (refreshing the docs), else under the test's tmp_path, so a test
    run never changes the tree."""
    where = DOCS_SCREENSHOTS if os.environ.get("FLOWGUARD_SCREENSHOTS") == "1" else tmp_path
    where.mkdir(parents=True, exist_ok=True)

    def take(page: Page, name: str) -> None:
        page.screenshot(path=str(where / f"{name}.png"), full_page=True)

    return take
