"""A slow or dead endpoint never stalls other endpoints' deliveries, on other hosts or its own."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest

from flowguard.actions import ActionRunner
from flowguard.engine.decision import Notice
from tests.helpers import until
from tests.httpserver import RecordingServer, Reply
from tests.integration.actions.runner_helpers import settings
from tests.unit.actions.notices import notice


async def timed_deliveries(runner: ActionRunner, notices: list[Notice]) -> list[float]:
    """Deliver ``notices`` one after another, each expected to succeed: the seconds each took."""
    latencies = []
    for item in notices:
        started = time.monotonic()
        result = await runner.deliver(item)
        latencies.append(time.monotonic() - started)
        assert result.status == "succeeded", result
    return latencies


def test_a_hanging_endpoint_does_not_delay_another(
    http_servers: Callable[[], RecordingServer],
) -> None:
    dead, alive = http_servers(), http_servers()
    dead.script("/hook", Reply(hang=True))
    alive.script("/hook", Reply(delay_seconds=0.05))
    # 2 in flight and 3 waiting per host; the hanging host gets 10 deliveries.
    config = settings(per_endpoint_concurrency=2, queue_size=3, max_total_seconds=3.0)
    stuck = [notice({"type": "webhook", "url": dead.url_for("/hook")}) for _ in range(10)]
    fine = [notice({"type": "slack", "webhook_url": alive.url_for("/hook")}) for _ in range(5)]

    async def scenario() -> tuple[list[str], list[float], list[str]]:
        async with ActionRunner(config) as runner:
            hanging = [asyncio.create_task(runner.deliver(n)) for n in stuck]
            # The hanging host's slots are all taken before the other host is asked.
            await asyncio.to_thread(dead.wait_for_requests, 2, timeout_seconds=5)
            latencies = await timed_deliveries(runner, fine)
            dead.release()
            stuck_results = await asyncio.gather(*hanging)
        return [r.detail for r in stuck_results], latencies, [r.status for r in stuck_results]

    details, latencies, statuses = asyncio.run(scenario())
    # Each delivery to the live host costs its own latency (50 ms), not the dead host's.
    assert max(latencies) < 0.5, latencies
    # 5 deliveries beyond 2 in flight + 3 waiting failed at once, with the reason.
    full = [d for d in details if d.startswith("queue full for an endpoint on 127.0.0.1:")]
    assert len(full) == 5, details
    assert "2 in flight, 3 waiting" in full[0]
    assert statuses.count("failed") == 10


def test_a_hanging_webhook_does_not_delay_another_on_the_same_host(
    http_server: RecordingServer,
) -> None:
    """Every Slack webhook is on hooks.slack.com:443: one dead webhook must not stall the rest."""
    http_server.script("/services/dead", Reply(hang=True))
    http_server.script("/services/alive", Reply(delay_seconds=0.05))
    config = settings(per_endpoint_concurrency=2, queue_size=3, max_total_seconds=3.0)
    dead = http_server.url_for("/services/dead")
    stuck = [notice({"type": "slack", "webhook_url": dead}) for _ in range(10)]
    alive = http_server.url_for("/services/alive?ignored=query")
    fine = [notice({"type": "slack", "webhook_url": alive}) for _ in range(5)]

    async def scenario() -> tuple[list[float], list[str]]:
        async with ActionRunner(config) as runner:
            hanging = [asyncio.create_task(runner.deliver(n)) for n in stuck]
            await asyncio.to_thread(
                http_server.wait_for_requests, 2, path="/services/dead", timeout_seconds=5
            )
            latencies = await timed_deliveries(runner, fine)
            http_server.release()
            return latencies, [r.detail for r in await asyncio.gather(*hanging)]

    latencies, details = asyncio.run(scenario())
    assert max(latencies) < 0.5, latencies
    assert sum(d.startswith("queue full for an endpoint on 127.0.0.1:") for d in details) == 5


def test_the_per_host_cap_bounds_requests_across_endpoints(
    http_server: RecordingServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Two endpoints on one host, two requests each, but only three in flight to the host."""
    caplog.set_level(logging.DEBUG, logger="flowguard.actions")
    for path in ("/a", "/b"):
        http_server.script(path, Reply(hang=True))
    config = settings(per_endpoint_concurrency=2, per_host_concurrency=3, max_total_seconds=5.0)
    sent = [
        notice({"type": "webhook", "url": http_server.url_for(path), "retries": 0})
        for path in ("/a", "/a", "/b", "/b")
    ]
    host = f"127.0.0.1:{http_server.port}"

    def waiting_on_the_host() -> bool:
        return any(f"slot on {host}: 3 in flight" in r.getMessage() for r in caplog.records)

    async def scenario() -> list[str]:
        async with ActionRunner(config) as runner:
            tasks = [asyncio.create_task(runner.deliver(n)) for n in sent]
            await asyncio.to_thread(http_server.wait_for_requests, 3, timeout_seconds=5)
            await until(waiting_on_the_host, timeout_seconds=5, what="the 4th waiting on the cap")
            released = time.monotonic()
            http_server.release()
            results = await asyncio.gather(*tasks)
        last = http_server.requests()[-1]
        assert last.received_at >= released, "the fourth was sent only once a slot was free"
        return [r.detail for r in results]

    details = asyncio.run(scenario())
    assert details == ["HTTP 503: released (gave up after 1 attempts)"] * 4
    assert len(http_server.requests()) == 4
