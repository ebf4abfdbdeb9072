"""The bridge's command claims on a real Redis: who may send, after whom (bridge/dedup.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from bridge.dedup import DedupStore


def run_with_store(redis_url: str, steps: Callable[[DedupStore], Awaitable[None]]) -> None:
    async def go() -> None:
        redis = Redis.from_url(redis_url)
        try:
            await steps(DedupStore(redis, f"dedup-{uuid.uuid4().hex[:8]}", 60))
        finally:
            await redis.aclose()

    asyncio.run(go())


def test_an_attempt_stopped_while_preparing_is_taken_over_and_sends_nothing(
    redis_url: str,
) -> None:
    async def steps(store: DedupStore) -> None:
        first = await store.claim("c1")
        assert first.held
        assert first.value.startswith("preparing")
        # Read again by another attempt (the first was killed, or lost its partition):
        second = await store.claim("c1")
        assert second.held, "nothing was sent yet: the command is the new attempt's"
        assert not await store.begin("c1", first), "the old attempt must not send any more"
        assert await store.begin("c1", second)
        third = await store.claim("c1")
        assert (third.held, third.value) == (False, second.value)
        assert third.value.startswith("sending since")  # in doubt if the sender dies now
        assert await store.settle("c1", second, "done: sent")
        assert (await store.claim("c1")).value == "done: sent"

    run_with_store(redis_url, steps)


def test_a_release_gives_up_only_the_attempts_own_claim(redis_url: str) -> None:
    async def steps(store: DedupStore) -> None:
        first = await store.claim("c2")
        second = await store.claim("c2")  # took it over
        await store.release("c2", first)  # the old attempt's broker failed: not its claim now
        assert await store.redis.get(store.prefix + "c2") == second.value.encode()
        assert await store.begin("c2", second), "the new attempt still holds it"
        await store.release("c2", second)  # its send failed: nothing sent, claim given up
        assert (await store.claim("c2")).held

    run_with_store(redis_url, steps)


def test_an_attempt_taken_over_cannot_write_its_refusal_over_the_new_claim(
    redis_url: str,
) -> None:
    """The first attempt prepared, found nothing to send (a queue nobody serves, say) and was
    taken over meanwhile: its refusal must not land on the new attempt's claim, or that attempt
    fails to begin and a retry the new one could send is never sent."""

    async def steps(store: DedupStore) -> None:
        first = await store.claim("c3")
        second = await store.claim("c3")  # took it over while the first prepared
        assert not await store.settle("c3", first, "failed: no worker consumes queue q")
        assert await store.redis.get(store.prefix + "c3") == second.value.encode()
        assert await store.begin("c3", second), "the new attempt still sends"
        assert await store.settle("c3", second, "done: sent")
        assert (await store.claim("c3")).value == "done: sent"

    run_with_store(redis_url, steps)


def test_an_outcome_is_written_after_the_sending_claim_expired(redis_url: str) -> None:
    async def steps(store: DedupStore) -> None:
        claim = await store.claim("c4")
        assert await store.begin("c4", claim)
        await store.redis.delete(store.prefix + "c4")  # its TTL ran out while it sent
        assert await store.settle("c4", claim, "done: sent")
        assert (await store.claim("c4")).value == "done: sent"

    run_with_store(redis_url, steps)
