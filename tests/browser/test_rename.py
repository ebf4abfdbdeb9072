"""Renaming a workflow in the editor saves a new version of the same workflow (it was a 422:
issue 17). The API-level test is tests/api/test_rename.py."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.api.server import Served
from tests.browser.conftest import sign_in

pytestmark = pytest.mark.integration


def test_renaming_in_the_editor_saves_the_same_workflow(page: Page, served: Served) -> None:
    text = "name: Retry network errors\ntrigger: {event: task.failed}\naction: {type: retry}\n"
    with served.client("editor") as api:
        api.post("/api/workflows", json={"yaml": text}).raise_for_status()
    sign_in(page, served)
    page.goto(f"{served.base_url}/ui/workflows/retry-network-errors/edit")
    page.fill("[data-path=name]", "Retry flaky network calls")
    expect(page.get_by_test_id("valid")).to_have_text("✓ valid (id retry-network-errors)")
    page.click("#save")
    page.wait_for_url("**/ui/workflows/retry-network-errors?saved=2")
    with served.client("viewer") as api:
        detail = api.get("/api/workflows/retry-network-errors").json()
        listed = [w["id"] for w in api.get("/api/workflows").json()]
    assert (detail["name"], detail["version"]) == ("Retry flaky network calls", 2)
    assert listed == ["retry-network-errors"]
