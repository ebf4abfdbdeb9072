"""Delivery once by action id: an in-process LRU, and stores that outlive the process.

Action ids are derived from the trigger and the workflow version, so the same
decision made twice (a rebalance, a restart replaying the log) carries the
same id. A delivery *claims* its id before sending, then *confirms* it once
delivered or *releases* it when it failed, so a later redelivery may try
again. A claim is a lease: if the process dies mid-send the lease runs out and
the id can be claimed anew (at least once across crashes; receivers dedupe
the rest with ``Idempotency-Key`` / PagerDuty's ``dedup_key``).
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from typing import Protocol

import redis.asyncio as aioredis


class DeliveryStore(Protocol):
    """Remembers delivered action ids across processes and restarts."""

    async def claim(self, action_id: str, lease_seconds: float) -> bool:
        """True if this caller may deliver ``action_id`` (nobody delivered or holds it)."""
        ...

    async def confirm(self, action_id: str) -> None:
        """The delivery succeeded: remember the id for the store's TTL."""
        ...

    async def release(self, action_id: str) -> None:
        """The delivery failed: give the id back so a redelivery may try."""
        ...

    async def close(self) -> None: ...


class DeliveredCache:
    """The ids this process delivered or is delivering, least recently used dropped first."""

    def __init__(self, max_size: int) -> None:
        self._max_size = max_size
        self._delivered: OrderedDict[str, None] = OrderedDict()
        self._in_flight: set[str] = set()

    def claim(self, action_id: str) -> bool:
        if action_id in self._in_flight or action_id in self._delivered:
            if action_id in self._delivered:
                self._delivered.move_to_end(action_id)
            return False
        self._in_flight.add(action_id)
        return True

    def confirm(self, action_id: str) -> None:
        self._in_flight.discard(action_id)
        self._delivered[action_id] = None
        self._delivered.move_to_end(action_id)
        while len(self._delivered) > self._max_size:
            self._delivered.popitem(last=False)

    def release(self, action_id: str) -> None:
        self._in_flight.discard(action_id)

    def __len__(self) -> int:
        return len(self._delivered)


# Confirm or release only a claim this process still holds: after a lease ran out,
# another process may have claimed the id, and its claim is not ours to touch.
_CONFIRM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('SET', KEYS[1], 'delivered', 'EX', ARGV[2])
end
return nil
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisDeliveryStore:
    """``SET key token NX PX lease`` to claim, a compare-and-set to confirm or release."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "flowguard:delivered:",
        ttl_seconds: int = 7 * 24 * 3600,
        timeout_seconds: float = 2.0,
    ) -> None:
        self._client: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds
        )
        self._prefix = prefix
        self._ttl_seconds = ttl_seconds
        self._tokens: dict[str, str] = {}
        self._confirm = self._client.register_script(_CONFIRM)
        self._release = self._client.register_script(_RELEASE)

    async def claim(self, action_id: str, lease_seconds: float) -> bool:
        token = uuid.uuid4().hex
        lease_ms = max(1, int(lease_seconds * 1000))
        claimed = await self._client.set(self._prefix + action_id, token, nx=True, px=lease_ms)
        if claimed:
            self._tokens[action_id] = token
        return bool(claimed)

    async def confirm(self, action_id: str) -> None:
        token = self._tokens.pop(action_id, None)
        if token is not None:
            await self._confirm(keys=[self._prefix + action_id], args=[token, self._ttl_seconds])

    async def release(self, action_id: str) -> None:
        token = self._tokens.pop(action_id, None)
        if token is not None:
            await self._release(keys=[self._prefix + action_id], args=[token])

    async def close(self) -> None:
        await self._client.aclose()
