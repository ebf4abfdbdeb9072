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
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from kombu.utils.url import maybe_sanitize_url
from pydantic import SecretStr
from redis.asyncio import Redis

from bridge.buffer import EventBuffer
from bridge.commands import CommandRunner
from bridge.dedup import DedupStore
from bridge.gate import CommandGate
from bridge.intake import Intake, encode
from bridge.producer import KafkaOut, describe
from bridge.publisher import Publisher
from bridge.receiver import CeleryReceiver
from bridge.routing import ActiveQueues, load_app
from bridge.settings import BridgeSettings
from flowguard.errors import ConfigError
from flowguard.health import Check, Health
from flowguard.kafka_security import client_options
from flowguard.metrics import REGISTRY, BridgeCollector
from topics.events import BridgeStatus, TaskSent
from topics.registry import topic_names

log = logging.getLogger("flowguard.bridge")


class Bridge:
    def __init__(self, settings: BridgeSettings) -> None:
        self.settings = settings
        self.bridge_id = uuid.uuid4().hex[:12]
        self.started_at = time.time()
        self.topics = topic_names(settings.topic_prefix)
        self.celery = load_app(
            settings.app, settings.config, f"flowguard-bridge-{settings.cluster}"
        )
        if settings.broker is None and self.celery.conf.broker_url:
            # The app's broker is the cluster's broker unless --broker overrides it.
            self.settings = settings = settings.model_copy(
                update={"broker": SecretStr(str(self.celery.conf.broker_url))}
            )
        self.celery.conf.update(
            broker_url=settings.broker_url,  # a ConfigError when there is none
            broker_connection_retry_on_startup=False,
            broker_connection_max_retries=1,
        )
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()
        self.publisher: Publisher | None = None
        self.intake: Intake | None = None
        self.receiver: CeleryReceiver | None = None
        self.commands: CommandRunner | None = None

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Run until ``stop()``. Whatever had started is stopped in reverse order, however far
        the start got (Kafka never came, a component failed to start, a task failed)."""
        settings = self.settings
        dedup_url = self._dedup_url()  # a ConfigError before anything starts
        async with contextlib.AsyncExitStack() as stack:
            out = KafkaOut(
                self._producer, self._kafka_where(), self._stopping, settings.kafka_timeout_seconds
            )
            stack.push_async_callback(out.stop)
            tasks: list[asyncio.Task[None]] = []
            await self._serve_health(stack, tasks)  # while Kafka is awaited too: not ready
            if not await out.start():
                log.info("bridge %s stopped before Kafka answered", self.bridge_id)
                return
            publisher, receiver = self._build(stack, out)
            runner = None if dedup_url is None else self._commands(stack, out, dedup_url)
            stack.push_async_callback(self._wind_down, out, tasks)
            tasks.append(asyncio.create_task(publisher.run(), name="publisher"))
            tasks.append(asyncio.create_task(self._heartbeat(out), name="status"))
            if runner is not None:
                tasks.append(asyncio.create_task(runner.run(), name="commands"))
            receiver.start()
            # In a thread: the join must not hold the event loop (the publisher, the status).
            stack.push_async_callback(asyncio.to_thread, receiver.stop)
            self.ready.set()
            log.info(
                "bridge %s for cluster %s: Celery %s -> Kafka %s (%s); retries routed by %s",
                self.bridge_id, settings.cluster, settings.broker_display,
                self._kafka_where(), self.topics["events"], self._routed_by(),
            )  # fmt: skip
            await self._until_stopped(tasks)

    async def _serve_health(
        self, stack: contextlib.AsyncExitStack, tasks: list[asyncio.Task[None]]
    ) -> None:
        """/healthz, /readyz and /metrics (``health_port``); the figures read at scrape time."""
        collector = BridgeCollector(self._figures)
        REGISTRY.register(collector)
        stack.callback(REGISTRY.unregister, collector)
        health = Health(self._checks(tasks))
        stack.push_async_callback(health.stop)
        await health.start(self.settings.health_port)

    def _checks(self, tasks: list[asyncio.Task[None]]) -> dict[str, Check]:
        """Ready: Celery's broker answers, Kafka took the last batch, the tasks run."""
        where, kafka_at = self.settings.broker_display, self._kafka_where()

        def celery() -> str | None:
            receiver = self.receiver
            if receiver is None:
                return "not started (waiting for Kafka)"
            return None if receiver.connected else f"broker {where} not reachable"

        def kafka() -> str | None:
            publisher = self.publisher
            if publisher is None:
                return f"{kafka_at} not reachable yet"
            return None if publisher.kafka_ok else f"does not take events ({publisher._problem})"

        def commands() -> str | None:
            stopped = [t.get_name() for t in tasks if t.done()]
            return f"stopped: {', '.join(stopped)}" if stopped else None

        return {"celery": celery, "kafka": kafka, "tasks": commands}

    def _figures(self) -> dict[str, Any] | None:
        """What :class:`BridgeCollector` exports (None before Kafka answered)."""
        if self.intake is None or self.publisher is None or self.receiver is None:
            return None
        status = self.status()
        return {
            "cluster": status.cluster,
            "received": status.events_received,
            "published": status.events_published,
            "invalid": status.events_invalid,
            "dlq": self.publisher.dead_letters if self.publisher else 0,
            "dropped_by_kind": status.events_dropped_by_kind,
            "commands": dict(self.commands.counts) if self.commands else {},
            "buffered": status.buffered,
            "capacity": self.settings.buffer_size,
            "celery_connected": status.celery_connected,
            "kafka_connected": status.kafka_connected,
        }

    def _app_given(self) -> str | None:
        """The Celery app and config module given (--app, --config), if any."""
        given = [name for name in (self.settings.app, self.settings.config) if name]
        return " + ".join(given) or None

    def _routed_by(self) -> str:
        given = self._app_given()
        if given is None:
            return "the queue each command names (no --app)"
        return f"{given} where a command names no queue"

    def _dedup_url(self) -> str | None:
        """Where command ids are kept (None: no commands); a ConfigError when nowhere."""
        if not self.settings.commands:
            return None
        url = self.settings.dedup_redis_url()
        if url is None:
            raise ConfigError(
                "dedup_url: required when the broker is not Redis (FLOWGUARD_DEDUP_URL, "
                "a Redis URL where the bridge keeps the ids of commands it carried out)"
            )
        return url

    def _build(
        self, stack: contextlib.AsyncExitStack, out: KafkaOut
    ) -> tuple[Publisher, CeleryReceiver]:
        """The intake, publisher and receiver (nothing started yet)."""
        settings = self.settings
        buffer = EventBuffer(settings.buffer_size, asyncio.get_running_loop())
        dump = None
        if settings.dump is not None:
            dump = settings.dump.open("a", buffering=1, encoding="utf-8")
        self.intake = Intake(
            settings.cluster, self.topics["events"], self.topics["dlq"], buffer, dump,
            max_record_bytes=settings.max_record_bytes,
        )  # fmt: skip
        stack.callback(self.intake.close_dump)
        self.publisher = Publisher(
            out, buffer, settings.batch_size, self._kafka_where(), settings.kafka_timeout_seconds
        )
        self.receiver = CeleryReceiver(
            self.celery, self.intake, settings.broker_display, settings.inspect_timeout_seconds
        )
        stack.callback(lambda: log.info("bridge %s stopped: %s", self.bridge_id, self._counts()))
        return self.publisher, self.receiver

    async def _until_stopped(self, tasks: list[asyncio.Task[None]]) -> None:
        """Wait for ``stop()``; a task that fails ends the bridge with its error."""
        stopped = asyncio.create_task(self._stopping.wait())
        try:
            done, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        for task in done:
            if task is not stopped and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def _wind_down(self, out: KafkaOut, tasks: list[asyncio.Task[None]]) -> None:
        """Stop the tasks, send what is buffered (within the Kafka timeout), a last status."""
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert self.publisher is not None
        try:
            async with asyncio.timeout(self.settings.kafka_timeout_seconds):
                await self.publisher.flush()
        except TimeoutError:
            log.warning(
                "shutdown: Kafka did not take every buffered event within %g s; the totals "
                "below count them as buffered", self.settings.kafka_timeout_seconds,
            )  # fmt: skip
        except Exception as exc:  # Kafka refusing at shutdown: the totals say what is left
            log.warning("shutdown: buffered events not all sent (%s)", describe(exc))
        await self._send_status(out)

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
            **client_options(settings),
        )

    def _commands(self, stack: contextlib.AsyncExitStack, out: KafkaOut, url: str) -> CommandRunner:
        """The command runner; it starts (and stops) its own consumer."""
        settings = self.settings
        timeout = settings.kafka_timeout_seconds
        redis = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        stack.push_async_callback(redis.aclose)

        def consumer() -> AIOKafkaConsumer:
            return AIOKafkaConsumer(
                self.topics["commands"],
                bootstrap_servers=settings.kafka_bootstrap_servers,
                group_id=f"flowguard-bridge.{settings.cluster}",
                client_id=f"flowguard-bridge-{settings.cluster}",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                isolation_level="read_committed",
                **client_options(settings),
            )

        dedup = DedupStore(redis, settings.cluster, settings.dedup_ttl_seconds,
                           str(maybe_sanitize_url(url)))  # fmt: skip
        queues = ActiveQueues.of(
            self.celery, settings.queues_ttl_seconds, settings.inspect_timeout_seconds
        )
        gate = CommandGate.of(settings, settings.command_max_age_seconds)
        gate.announce(self.topics["commands"])
        self.commands = CommandRunner(
            self.celery, settings.cluster, consumer, out, dedup, self.topics,
            gate, settings.commit_interval_seconds,
            stop_timeout_seconds=timeout, queues=queues,
            routed_by_app=settings.app is not None or settings.config is not None,
            on_sent=self._sent, max_record_bytes=settings.max_record_bytes,
        )  # fmt: skip
        return self.commands

    def _sent(self, event: TaskSent) -> None:
        """The bridge's own ``task.sent``, through the intake: to Kafka and ``--dump`` in line
        with Celery's events."""
        if self.intake is not None:
            self.intake.on_sent(event)
        else:
            log.warning("task.sent of %s not published: the intake is not up", event.task_id)

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
            celery_app=self._app_given(),
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
            "buffered": status.buffered,
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
