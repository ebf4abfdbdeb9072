"""The same action id delivers once: in one process, and across runners through real Redis."""

from __future__ import annotations

import asyncio
import uuid

import redis

from flowguard.actions import ActionRunner, RedisDeliveryStore
from tests.httpserver import RecordingServer, Reply
from tests.integration.actions.runner_helpers import deliver, settings
from tests.unit.actions.notices import notice


def test_same_action_id_twice_delivers_once(http_server: RecordingServer) -> None:
    sent = notice({"type": "webhook", "url": http_server.url_for("/hook")})
    results = [t.result for t in deliver([sent, sent])]
    assert [(r.status, r.detail) for r in results] == [
        ("succeeded", "HTTP 200"),
        ("skipped", "duplicate"),
    ]
    assert len(http_server.requests("/hook")) == 1


def test_concurrent_duplicates_deliver_once(http_server: RecordingServer) -> None:
    http_server.script("/hook", Reply(delay_seconds=0.2))
    sent = notice({"type": "webhook", "url": http_server.url_for("/hook")})
    results = [t.result.status for t in deliver([sent] * 5, concurrent=True)]
    assert sorted(results) == ["skipped"] * 4 + ["succeeded"]
    assert len(http_server.requests("/hook")) == 1


def test_a_failed_delivery_can_be_tried_again(http_server: RecordingServer) -> None:
    http_server.script("/hook", Reply(400), Reply(200))
    sent = notice({"type": "webhook", "url": http_server.url_for("/hook")})
    results = [t.result.status for t in deliver([sent, sent, sent])]
    assert results == ["failed", "succeeded", "skipped"]


def _store(redis_url: str, prefix: str) -> RedisDeliveryStore:
    return RedisDeliveryStore(redis_url, prefix=prefix, ttl_seconds=600)


def test_redis_store_dedupes_across_runners(http_server: RecordingServer, redis_url: str) -> None:
    """A restarted process (a new runner, empty LRU) still skips what was delivered."""
    prefix = f"test:delivered:{uuid.uuid4().hex}:"
    sent = notice({"type": "webhook", "url": http_server.url_for("/hook")})
    [first] = deliver([sent], store=_store(redis_url, prefix))
    [again] = deliver([sent], store=_store(redis_url, prefix))
    assert (first.result.status, again.result.status) == ("succeeded", "skipped")
    assert len(http_server.requests("/hook")) == 1
    client = redis.Redis.from_url(redis_url)
    try:
        key = prefix + sent.action_id
        assert client.get(key) == b"delivered"
        assert 0 < client.ttl(key) <= 600
    finally:
        client.close()


def test_redis_store_two_live_runners_deliver_once(
    http_server: RecordingServer, redis_url: str
) -> None:
    """Two workers racing on the same action (a rebalance): one sends, one skips."""
    prefix = f"test:delivered:{uuid.uuid4().hex}:"
    http_server.script("/hook", Reply(delay_seconds=0.2))
    sent = notice({"type": "webhook", "url": http_server.url_for("/hook")})

    async def race() -> list[str]:
        runners = [ActionRunner(settings(), _store(redis_url, prefix)) for _ in range(2)]
        for runner in runners:
            await runner.start()
        try:
            results = await asyncio.gather(*(r.deliver(sent) for r in runners))
        finally:
            for runner in runners:
                await runner.close()
        return sorted(r.status for r in results)

    assert asyncio.run(race()) == ["skipped", "succeeded"]
    assert len(http_server.requests("/hook")) == 1


def test_redis_store_releases_a_failed_delivery(
    http_server: RecordingServer, redis_url: str
) -> None:
    prefix = f"test:delivered:{uuid.uuid4().hex}:"
    http_server.script("/hook", Reply(400), Reply(200))
    sent = notice({"type": "webhook", "url": http_server.url_for("/hook")})
    [failed] = deliver([sent], store=_store(redis_url, prefix))
    [retried] = deliver([sent], store=_store(redis_url, prefix))
    assert (failed.result.status, retried.result.status) == ("failed", "succeeded")


def test_an_unreachable_store_does_not_silence_alerts(http_server: RecordingServer) -> None:
    """Redis down: deliver anyway (the in-process LRU still dedupes) and say so in the log."""
    sent = notice({"type": "webhook", "url": http_server.url_for("/hook")})
    dead = RedisDeliveryStore("redis://127.0.0.1:1/0", timeout_seconds=0.5)
    results = [t.result.status for t in deliver([sent, sent], store=dead)]
    assert results == ["succeeded", "skipped"]
