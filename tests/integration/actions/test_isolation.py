"""A slow or dead endpoint never stalls other hosts' deliveries."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from flowguard.actions import ActionRunner
from tests.httpserver import RecordingServer, Reply
from tests.integration.actions.runner_helpers import settings
from tests.unit.actions.notices import notice


def test_a_hanging_endpoint_does_not_delay_another(
    http_servers: Callable[[], RecordingServer],
) -> None:
    dead, alive = http_servers(), http_servers()
    dead.script("/hook", Reply(hang=True))
    alive.script("/hook", Reply(delay_seconds=0.05))
    # 2 in flight and 3 waiting per host; the hanging host gets 10 deliveries.
    config = settings(per_host_concurrency=2, queue_size=3, max_total_seconds=3.0)
    stuck = [notice({"type": "webhook", "url": dead.url_for("/hook")}) for _ in range(10)]
    fine = [notice({"type": "slack", "webhook_url": alive.url_for("/hook")}) for _ in range(5)]

    async def scenario() -> tuple[list[str], list[float], list[str]]:
        async with ActionRunner(config) as runner:
            hanging = [asyncio.create_task(runner.deliver(n)) for n in stuck]
            # The hanging host's slots are all taken before the other host is asked.
            await asyncio.to_thread(dead.wait_for_requests, 2, timeout_seconds=5)
            latencies = []
            for item in fine:
                started = time.monotonic()
                result = await runner.deliver(item)
                latencies.append(time.monotonic() - started)
                assert result.status == "succeeded", result
            dead.release()
            stuck_results = await asyncio.gather(*hanging)
        return [r.detail for r in stuck_results], latencies, [r.status for r in stuck_results]

    details, latencies, statuses = asyncio.run(scenario())
    # Each delivery to the live host costs its own latency (50 ms), not the dead host's.
    assert max(latencies) < 0.5, latencies
    # 5 deliveries beyond 2 in flight + 3 waiting failed at once, with the reason.
    full = [d for d in details if d.startswith("queue full for 127.0.0.1:")]
    assert len(full) == 5, details
    assert "2 in flight, 3 waiting" in full[0]
    assert statuses.count("failed") == 10
