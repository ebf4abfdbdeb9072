"""The fleet page in real headless Chromium, over three clusters' records sent through the real
broker (tests/api/fleet_scenario.py): one bridge silent, one breaker open; then the cluster
filter on the fleet's executions and on a workflow's Execution History."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect

from tests.api import fleet_scenario
from tests.api.server import Served, in_thread
from tests.browser.conftest import Shot, sign_in
from tests.helpers import wait_until
from topics.events import WorkerHeartbeat

pytestmark = pytest.mark.integration


def _scenario_served(served: Served) -> None:
    with served.client("editor") as api:
        saved = api.post("/api/workflows", json={"yaml": fleet_scenario.WORKFLOW_YAML})
        assert saved.status_code == 201, saved.text
    in_thread(fleet_scenario.produce(served.bootstrap, served.prefix, time.time()))
    with served.client("viewer") as api:

        def all_in() -> bool:
            body = api.get("/api/fleet").raise_for_status().json()
            clusters = {c["cluster"]: c for c in body["clusters"]}
            eu = clusters.get("eu-payments")
            return bool(
                len(clusters) == 3
                and eu is not None
                and eu["failures_last_hour"] == 5
                and eu["open_breakers"]
                and clusters["ap-batch"]["executions_last_hour"] == 1
            )

        wait_until(all_in, timeout_seconds=60, what="the three clusters in /api/fleet")


def test_fleet_page_shows_each_cluster_and_filters_history_by_cluster(
    page: Page, served: Served, shot: Shot
) -> None:
    _scenario_served(served)
    sign_in(page, served, "viewer")
    page.get_by_role("link", name="Fleet").click()
    page.wait_for_url("**/ui/fleet")
    rows = page.locator("[data-testid=fleet] tbody tr")
    expect(rows).to_have_count(3)
    assert [r.get_attribute("data-cluster") for r in rows.all()] == [
        "ap-batch", "eu-payments", "us-search",
    ]  # fmt: skip

    eu = page.locator("tr[data-cluster=eu-payments]")
    us = page.locator("tr[data-cluster=us-search]")
    expect(us).to_have_attribute("data-bridge-state", "silent")
    expect(us.get_by_test_id("bridge")).to_contain_text("silent")
    expect(us.get_by_test_id("bridge")).to_contain_text("status 10 min ago · broker unreachable")
    expect(eu.get_by_test_id("bridge")).not_to_contain_text("unreachable")
    expect(us.get_by_test_id("events")).to_have_text("800 / 17 / 0")
    expect(us.get_by_test_id("workers")).to_contain_text("0 online · 1 offline")

    expect(eu).to_have_attribute("data-bridge-state", "reporting")
    expect(eu.get_by_test_id("events")).to_have_text("1200 / 0 / 3")
    expect(eu.get_by_test_id("failures")).to_have_text("5")
    expect(eu.get_by_test_id("executions")).to_have_text("2")
    expect(eu.get_by_test_id("breakers")).to_contain_text(fleet_scenario.WORKFLOW_ID)
    eu.get_by_test_id("workers").locator("summary").click()
    expect(eu.locator("[data-worker='celery@eu-1']")).to_contain_text("online")
    expect(eu.locator("[data-worker='celery@eu-2']")).to_contain_text("offline")

    ap = page.locator("tr[data-cluster=ap-batch]")
    expect(ap.get_by_test_id("bridge")).to_contain_text("reporting")
    expect(ap.get_by_test_id("breakers")).to_have_text("—")
    breakers = page.get_by_test_id("open-breakers")
    expect(breakers).to_contain_text("Retry flaky")
    expect(breakers).to_contain_text("clusters: eu-payments")
    shot(page, "fleet")

    # A cluster that starts reporting shows up without a reload (the page refreshes every 10 s).
    beat = WorkerHeartbeat(cluster="zz-new", hostname="celery@zz", timestamp=time.time())
    in_thread(fleet_scenario.send_events(served.bootstrap, served.prefix, [beat]))
    expect(page.locator("tr[data-cluster=zz-new]")).to_be_visible(timeout=30_000)

    # The cluster filter on the fleet's executions: all three, then one cluster's.
    history = page.get_by_test_id("cluster-history")
    expect(history.locator("[data-execution]")).to_have_count(3)  # zz-new has none
    page.get_by_test_id("cluster-select").select_option("ap-batch")
    expect(history.locator("[data-execution]")).to_have_count(1)
    expect(history.locator("[data-execution=x-ap-1]")).to_be_visible()
    eu.get_by_test_id("executions").get_by_role("link").click()
    expect(history.locator("[data-execution]")).to_have_count(2)

    # ...and on the workflow's Execution History, preset by the fleet's link.
    eu.get_by_test_id("breakers").get_by_role("link").click()
    page.wait_for_url("**/ui/workflows/retry-flaky?cluster=eu-payments#history")
    expect(page.get_by_test_id("history-cluster")).to_have_value("eu-payments")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("[data-execution]")).to_have_count(2)
    bars = page.get_by_test_id("chart").locator("rect")
    expect(bars).to_have_count(2)  # one success, one skipped
    page.get_by_test_id("history-cluster").select_option("ap-batch")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("No executions match.")).to_be_visible()
    expect(bars).to_have_count(0)  # the chart counts the chosen cluster only
