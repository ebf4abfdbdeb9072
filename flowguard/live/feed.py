"""Every worker process reads ``<prefix>.workflows`` whole: the workflow table, kept current.

The compacted topic has one partition and a few thousand records at most, so each process
reads it from the beginning and follows it (no consumer group: every process needs all of
it), rather than through a Faust GlobalTable, whose changelog would be a second copy of the
same topic. A change reaches the index within one fetch (well under a second).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from flowguard.engine.documents import parse_workflow
from flowguard.engine.matching import Published, WorkflowIndex
from flowguard.errors import WorkflowInvalid
from flowguard.kafka_security import client_options
from flowguard.metrics import KAFKA_ERRORS
from topics.workflows import WorkflowVersion

log = logging.getLogger("flowguard.live")
#: How often the topic's end offset is read again, and the pause before a failed feed restarts.
CHECK_SECONDS = 2.0
RETRY_SECONDS = 2.0


class WorkflowFeed:
    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.published: dict[str, Published] = {}
        self.index = WorkflowIndex(())
        self.ready = asyncio.Event()
        #: When the feed last had read everything on the topic (monotonic), and why it failed.
        self.caught_up_at: float | None = None
        self.failure: str | None = None

    def get(self, workflow_id: str) -> Published | None:
        return self.published.get(workflow_id)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of the topic: a new version, or a tombstone."""
        workflow_id = key.decode() if key else ""
        if value is None:
            if self.published.pop(workflow_id, None) is not None:
                log.info("workflow %s deleted", workflow_id)
            return
        try:
            version = WorkflowVersion.model_validate(json.loads(value))
            workflow = parse_workflow(version.definition, source=f"{self.topic}:{workflow_id}")
        except (ValueError, ValidationError, WorkflowInvalid) as exc:
            # The store validates before publishing; a record that still fails is kept out.
            log.error("workflow %s on %s is invalid, ignored: %s", workflow_id, self.topic, exc)
            return
        held = self.published.get(workflow.id)
        if held is not None and held.version > version.workflow_version:
            # Two writers' records can land out of order on the compacted topic: keep the newer.
            log.warning("workflow %s version %d after version %d: ignored", workflow.id,
                        version.workflow_version, held.version)  # fmt: skip
            return
        self.published[workflow.id] = Published.of(workflow, version.workflow_version)
        log.info(
            "workflow %s version %d %s",
            workflow.id, version.workflow_version, "enabled" if workflow.enabled else "disabled",
        )  # fmt: skip

    def problem(self, stall_seconds: float) -> str | None:
        """Why the workflow table may not be current (None: caught up within ``stall_seconds``)."""
        failure = f" (last failure: {self.failure})" if self.failure else ""
        if self.caught_up_at is None:
            return f"not loaded from {self.topic} yet{failure}"
        behind = time.monotonic() - self.caught_up_at
        if behind > stall_seconds:
            return f"not caught up with {self.topic} for {behind:.0f}s{failure}"
        return None

    async def run(self) -> None:
        """Follow the topic for as long as the worker runs. A failure is logged and counted,
        :meth:`problem` reports it (the worker's readiness), and the feed starts again from
        the beginning after a pause: a frozen workflow table never goes unnoticed."""
        while True:
            try:
                await self._follow()
            except Exception as exc:
                self.failure = f"{type(exc).__name__}: {exc}"
                KAFKA_ERRORS.labels("workflow-feed").inc()
                log.error("workflow feed on %s failed (%s); starting again in %gs",
                          self.topic, self.failure, RETRY_SECONDS)  # fmt: skip
                await asyncio.sleep(RETRY_SECONDS)

    async def _follow(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
            **client_options(),
        )
        await consumer.start()
        try:
            tp = TopicPartition(self.topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end, checked = await self._end(consumer, tp), time.monotonic()
            while True:
                batches = await consumer.getmany(timeout_ms=200)
                changed = False
                for records in batches.values():
                    for record in records:
                        self.apply(record.key, record.value)
                        changed = True
                if changed:
                    self.index = WorkflowIndex(self.published.values())
                if time.monotonic() - checked > CHECK_SECONDS:
                    end, checked = await self._end(consumer, tp), time.monotonic()
                if await consumer.position(tp) >= end:
                    self.caught_up_at, self.failure = time.monotonic(), None
                    if not self.ready.is_set():
                        log.info("%d workflows loaded from %s", len(self.published), self.topic)
                        self.ready.set()
        finally:
            await consumer.stop()

    async def _end(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> int:
        """The topic's end offset now (what "caught up" is measured against)."""
        async with asyncio.timeout(CHECK_SECONDS * 5):
            return int((await consumer.end_offsets([tp]))[tp])
