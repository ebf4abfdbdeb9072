"""Lanes: how many requests may be in flight to one endpoint, and to one host.

An *endpoint* is what one action sends to: scheme, host, port and path (a
webhook URL without its query). Each has its own lane: ``per_endpoint_concurrency``
requests in flight, ``queue_size`` waiting, and one more fails at once ("queue
full"). Every Slack webhook lives on hooks.slack.com:443, so a lane per host
would let one dead webhook stall every workflow's Slack messages; a lane per
endpoint confines it to its own.

Above the lanes, each ``host:port`` has a cap on requests in flight
(``per_host_concurrency``, several endpoints' worth). Without it the connections
flowguard opens to one host would grow with the number of workflows that send
there: a Slack outage with 100 webhooks configured would hold 800 sockets. The
cap bounds that, and since it is larger than one endpoint's share, one dead
endpoint never reaches it alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager

from flowguard.actions.settings import ActionSettings
from flowguard.errors import ActionFailed

log = logging.getLogger("flowguard.actions")


class _Lane:
    """One endpoint's (or host's) share: a few requests in flight, a count of those waiting."""

    def __init__(self, concurrency: int) -> None:
        self.slots = asyncio.Semaphore(concurrency)
        self.waiting = 0
        self.busy = 0

    @property
    def idle(self) -> bool:
        return self.waiting == 0 and self.busy == 0


class Lanes:
    """The runner's lanes, created on first use and dropped when idle."""

    def __init__(self, settings: ActionSettings) -> None:
        self._endpoint_concurrency = settings.per_endpoint_concurrency
        self._host_concurrency = settings.per_host_concurrency
        self._queue_size = settings.queue_size
        self._bound_seconds = settings.max_total_seconds
        self._endpoints: dict[Hashable, _Lane] = {}
        self._hosts: dict[Hashable, _Lane] = {}

    @asynccontextmanager
    async def slot(self, endpoint: Hashable, host: str, deadline: float) -> AsyncIterator[None]:
        """A request slot on ``endpoint``'s lane and under ``host``'s cap, or a clear failure.

        ``host`` (``host:port``) is what failures name: an endpoint's path may be a secret.
        """
        lane = _lane(self._endpoints, endpoint, self._endpoint_concurrency)
        if lane.slots.locked() and lane.waiting >= self._queue_size:
            raise ActionFailed(
                f"queue full for an endpoint on {host}: {lane.busy} in flight, "
                f"{lane.waiting} waiting"
            )
        if not await _enter(self._endpoints, endpoint, lane, deadline, f"an endpoint on {host}"):
            raise ActionFailed(
                f"no free slot for an endpoint on {host} within {self._bound_seconds:g}s "
                f"({lane.busy} requests in flight)"
            )
        try:
            cap = _lane(self._hosts, host, self._host_concurrency)
            if not await _enter(self._hosts, host, cap, deadline, host):
                raise ActionFailed(
                    f"no free slot for {host} within {self._bound_seconds:g}s "
                    f"({cap.busy} requests in flight to the host)"
                )
            try:
                yield
            finally:
                _leave(self._hosts, host, cap)
        finally:
            _leave(self._endpoints, endpoint, lane)

    def __len__(self) -> int:
        """Lanes in use (endpoints and hosts): idle ones are dropped."""
        return len(self._endpoints) + len(self._hosts)


def _lane(lanes: dict[Hashable, _Lane], key: Hashable, concurrency: int) -> _Lane:
    lane = lanes.get(key)
    if lane is None:
        lane = lanes[key] = _Lane(concurrency)
    return lane


async def _enter(
    lanes: dict[Hashable, _Lane], key: Hashable, lane: _Lane, deadline: float, what: str
) -> bool:
    """Take a slot by ``deadline`` (True) or give up (False); an idle lane is dropped either way."""
    lane.waiting += 1
    taken = False
    try:
        if lane.slots.locked():
            # Says why a delivery is slow before it fails, if it does (and tests wait on it).
            log.debug("waiting for a slot on %s: %d in flight", what, lane.busy)
            async with asyncio.timeout_at(deadline):
                await lane.slots.acquire()
        else:  # a free slot: taken at once, no timer to arm
            await lane.slots.acquire()
        taken = True
    except TimeoutError:
        pass
    finally:
        lane.waiting -= 1
        if taken:
            lane.busy += 1
        elif lane.idle:  # gave up (or was cancelled) and nobody else is here
            _forget(lanes, key, lane)
    return taken


def _leave(lanes: dict[Hashable, _Lane], key: Hashable, lane: _Lane) -> None:
    lane.busy -= 1
    lane.slots.release()
    if lane.idle:
        _forget(lanes, key, lane)


def _forget(lanes: dict[Hashable, _Lane], key: Hashable, lane: _Lane) -> None:
    if lanes.get(key) is lane:
        del lanes[key]
