"""One bridge process: Celery events -> Kafka, Kafka commands -> Celery, and a heartbeat.

Threads: Celery's receiver (and a short-lived one per ``inspect()`` snapshot). Everything
else runs on one asyncio loop: the publisher, the status heartbeat and the command runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import uuid
from typing import IO, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from celery import Celery
from redis.asyncio import Redis

from bridge.buffer import EventBuffer
from bridge.commands import CommandRunner, DedupStore
from bridge.intake import Intake, encode
from bridge.producer import KafkaOut
from bridge.publisher import Publisher
from bridge.receiver import CeleryReceiver
from bridge.settings import BridgeSettings
from flowguard.errors import ConfigError
from topics.events import BridgeStatus
from topics.registry import topic_names

log = logging.getLogger("flowguard.bridge")


class Bridge:
    def __init__(self, settings: BridgeSettings) -> None:
        self.settings = settings
        self.bridge_id = uuid.uuid4().hex[:12]
        self.started_at = time.time()
        self.topics = topic_names(settings.topic_prefix)
        self.celery = Celery(f"flowguard-bridge-{settings.cluster}")
        self.celery.conf.update(
            broker_url=settings.broker.get_secret_value(),
            broker_connection_retry_on_startup=False,
            broker_connection_max_retries=1,
        )
        self._dump: IO[str] | None = None
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()
        self.publisher: Publisher | None = None
        self.intake: Intake | None = None
        self.receiver: CeleryReceiver | None = None
        self.commands: CommandRunner | None = None

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        settings = self.settings
        out = KafkaOut(
            self._producer, self._kafka_where(), self._stopping, settings.kafka_timeout_seconds
        )
        if not await out.start():
            await out.stop()
            return
        buffer = EventBuffer(settings.buffer_size, asyncio.get_running_loop())
        if settings.dump is not None:
            self._dump = settings.dump.open("a", buffering=1, encoding="utf-8")
        self.intake = Intake(
            settings.cluster, self.topics["events"], self.topics["dlq"], buffer, self._dump,
            max_record_bytes=settings.max_record_bytes,
        )  # fmt: skip
        self.publisher = Publisher(
            out,
            buffer,
            settings.batch_size,
            self._kafka_where(),
            settings.kafka_timeout_seconds,
        )
        self.receiver = CeleryReceiver(
            self.celery, self.intake, settings.broker_display, settings.inspect_timeout_seconds
        )
        tasks = [
            asyncio.create_task(self.publisher.run(), name="publisher"),
            asyncio.create_task(self._heartbeat(out), name="status"),
        ]
        consumer, redis = None, None
        try:
            if settings.commands:
                consumer, redis = await self._start_commands(out)
                assert self.commands is not None
                tasks.append(asyncio.create_task(self.commands.run(), name="commands"))
            self.receiver.start()
            self.ready.set()
            log.info(
                "bridge %s for cluster %s: Celery %s -> Kafka %s (%s)",
                self.bridge_id, settings.cluster, settings.broker_display,
                self._kafka_where(), self.topics["events"],
            )  # fmt: skip
            stopped = asyncio.create_task(self._stopping.wait())
            done, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopped and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            self.receiver.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(settings.kafka_timeout_seconds):
                    await self.publisher.flush()
                await self._send_status(out)
            if consumer is not None:
                await consumer.stop()
            if redis is not None:
                await redis.aclose()
            await out.stop()
            if self._dump is not None:
                self._dump.close()
            log.info("bridge %s stopped: %s", self.bridge_id, self._counts())

    def _kafka_where(self) -> str:
        return f"{self.settings.kafka_bootstrap_servers}"

    def _producer(self) -> AIOKafkaProducer:
        settings = self.settings
        return AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            client_id=f"flowguard-bridge-{settings.cluster}",
            acks="all",
            enable_idempotence=True,
            linger_ms=settings.kafka_linger_ms,
            max_batch_size=256 * 1024,
            compression_type=None
            if settings.kafka_compression == "none"
            else settings.kafka_compression,
            request_timeout_ms=int(settings.kafka_timeout_seconds * 1000),
        )

    async def _start_commands(self, out: KafkaOut) -> tuple[AIOKafkaConsumer, Redis]:
        settings = self.settings
        url = settings.dedup_redis_url()
        if url is None:
            raise ConfigError(
                "dedup_url: required when the broker is not Redis (FLOWGUARD_DEDUP_URL, "
                "a Redis URL where the bridge keeps the ids of commands it carried out)"
            )
        redis = Redis.from_url(url)
        consumer = AIOKafkaConsumer(
            self.topics["commands"],
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=f"flowguard-bridge.{settings.cluster}",
            client_id=f"flowguard-bridge-{settings.cluster}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        await consumer.start()
        self.commands = CommandRunner(
            self.celery,
            settings.cluster,
            consumer,
            out,
            DedupStore(redis, settings.cluster, settings.dedup_ttl_seconds),
            self.topics,
            settings.command_max_age_seconds,
            settings.commit_interval_seconds,
        )
        return consumer, redis

    def status(self) -> BridgeStatus:
        assert self.intake is not None
        assert self.publisher is not None
        assert self.receiver is not None
        buffer = self.intake.buffer
        return BridgeStatus(
            cluster=self.settings.cluster,
            bridge_id=self.bridge_id,
            timestamp=time.time(),
            interval_seconds=self.settings.status_interval_seconds,
            started_at=self.started_at,
            celery_connected=self.receiver.connected,
            kafka_connected=self.publisher.kafka_ok,
            events_received=self.intake.received,
            events_published=self.publisher.published,
            events_dropped=sum(buffer.dropped.values()),
            events_dropped_by_kind=dict(buffer.dropped),
            events_invalid=self.intake.invalid,
            buffered=len(buffer) + self.publisher.in_flight,
        )

    async def _heartbeat(self, out: KafkaOut) -> None:
        """A status record every interval, straight to Kafka (never behind the buffer)."""
        dropped_before = 0
        while True:
            status = await self._send_status(out)
            if status is not None and status.events_dropped > dropped_before:
                log.error(
                    "dropped %d events (buffer of %d full while Kafka refused): %s",
                    status.events_dropped - dropped_before, self.settings.buffer_size,
                    status.events_dropped_by_kind,
                )  # fmt: skip
                dropped_before = status.events_dropped
            await asyncio.sleep(self.settings.status_interval_seconds)

    async def _send_status(self, out: KafkaOut) -> BridgeStatus | None:
        status = self.status()
        key = f"{status.cluster}/bridge/{status.bridge_id}".encode()
        # Kafka down: the publisher says so, and the next status carries the totals.
        with contextlib.suppress(KafkaError, TimeoutError):
            await asyncio.wait_for(
                out.send_once(self.topics["events"], encode(status), key),
                self.settings.kafka_timeout_seconds,
            )
        return status

    def _counts(self) -> dict[str, Any]:
        status = self.status()
        return {
            "received": status.events_received,
            "published": status.events_published,
            "dropped": status.events_dropped,
            "invalid": status.events_invalid,
            "commands": self.commands.counts if self.commands else {},
        }


async def serve(settings: BridgeSettings) -> None:
    """Run until SIGINT/SIGTERM."""
    bridge = Bridge(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, bridge.stop)
    await bridge.run()
