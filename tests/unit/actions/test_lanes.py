"""Lanes: per-endpoint limits and queue, the per-host cap, and no lane left behind."""

from __future__ import annotations

import asyncio

import pytest

from flowguard.actions.lanes import Lanes
from flowguard.actions.settings import ActionSettings
from flowguard.errors import ActionFailed

HOST = "hooks.slack.com:443"


def lanes(**overrides: object) -> Lanes:
    base: dict[str, object] = {"per_endpoint_concurrency": 1, "queue_size": 1}
    return Lanes(ActionSettings(**{**base, **overrides}))  # type: ignore[arg-type]


def test_endpoints_on_one_host_have_their_own_lanes_and_idle_ones_are_dropped() -> None:
    async def scenario() -> None:
        lanes_ = lanes(queue_size=0)
        entered, hold = asyncio.Event(), asyncio.Event()
        deadline = asyncio.get_running_loop().time() + 5

        async def occupy() -> None:
            async with lanes_.slot(("https", HOST, "/dead"), HOST, deadline):
                entered.set()
                await hold.wait()

        first = asyncio.create_task(occupy())
        await entered.wait()
        with pytest.raises(ActionFailed, match=f"queue full for an endpoint on {HOST}"):
            async with lanes_.slot(("https", HOST, "/dead"), HOST, deadline):
                pass
        async with lanes_.slot(("https", HOST, "/alive"), HOST, deadline):
            pass  # another endpoint on the same host: a slot at once
        hold.set()
        await first
        assert len(lanes_) == 0, "a lane is dropped once nobody uses or waits for it"

    asyncio.run(scenario())


def test_no_slot_within_the_bound_fails_and_leaves_no_lane() -> None:
    async def scenario() -> None:
        lanes_ = lanes(queue_size=5)
        loop = asyncio.get_running_loop()
        endpoint = ("https", HOST, "/x")
        async with lanes_.slot(endpoint, HOST, loop.time() + 5):
            with pytest.raises(ActionFailed, match="no free slot for an endpoint on"):
                async with lanes_.slot(endpoint, HOST, loop.time() + 0.05):
                    pass
        assert len(lanes_) == 0

    asyncio.run(scenario())
