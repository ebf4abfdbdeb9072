"""Command ids carried out, kept in Redis, so that each command is carried out once (see
``bridge/commands.py``)."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from topics.record import iso


class DedupStore:
    """Command ids carried out, in Redis: ``sending`` while acting, then ``done``/``failed``."""

    def __init__(self, redis: Redis, cluster: str, ttl_seconds: int, where: str = "") -> None:
        self.redis = redis
        self.where = where  # for logs: the URL with its password masked
        self.prefix = f"flowguard:bridge:{cluster}:command:"
        self.ttl = ttl_seconds

    async def claim(self, command_id: str) -> str | None:
        """None when claimed now; else what an earlier claim says (``done: ...``, ...)."""
        key = self.prefix + command_id
        if await self.redis.set(key, f"sending since {iso(time.time())}", nx=True, ex=self.ttl):
            return None
        previous = await self.redis.get(key)
        if previous is None:
            return "claimed meanwhile"
        return previous.decode() if isinstance(previous, bytes) else str(previous)

    async def settle(self, command_id: str, outcome: str) -> None:
        await self.redis.set(self.prefix + command_id, outcome, ex=self.ttl)

    async def release(self, command_id: str) -> None:
        await self.redis.delete(self.prefix + command_id)
