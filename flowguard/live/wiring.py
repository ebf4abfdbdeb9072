"""What the worker's stages share: its topics, its tables and the two ways out they all use.

The app (:mod:`flowguard.live.app`) declares them once and hands each stage
(:mod:`~flowguard.live.deciding`, :mod:`~flowguard.live.delivering`,
:mod:`~flowguard.live.readiness`) what it needs; the stages import this module, never the app,
so the imports run one way: app -> stages -> wiring.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import faust

from flowguard import metrics
from topics.commands import RetryCommand
from topics.dlq import DeadLetter
from topics.record import iso
from topics.registry import (
    COMMAND_RESULTS,
    COMMANDS,
    DELIVERIES,
    DLQ,
    EVENTS,
    EXECUTION_LOG,
    SCHEDULED,
    TRIGGERS,
)
from topics.signing import CommandKey, key_for, sign

log = logging.getLogger("flowguard.live")

_RAW: dict[str, Any] = {
    "key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Topics:
    """The worker's topics, as raw bytes (the stages decode with the :mod:`topics` models)."""

    source: Any  # events and scheduled together: the detect agent's input
    scheduled: Any
    triggers: Any
    commands: Any
    results: Any
    execution_log: Any
    deliveries: Any
    dlq: Any

    @classmethod
    def declare(cls, app: faust.App, prefix: str) -> Topics:
        def topic(*names: str) -> Any:
            return app.topic(*names, **_RAW)

        return cls(
            source=topic(EVENTS.name(prefix), SCHEDULED.name(prefix)),
            scheduled=topic(SCHEDULED.name(prefix)),
            triggers=topic(TRIGGERS.name(prefix)),
            commands=topic(COMMANDS.name(prefix)),
            results=topic(COMMAND_RESULTS.name(prefix)),
            execution_log=topic(EXECUTION_LOG.name(prefix)),
            deliveries=topic(DELIVERIES.name(prefix)),
            dlq=topic(DLQ.name(prefix)),
        )

    def inputs(self) -> set[str]:
        """Every agent's input topic (events and scheduled, triggers, results, deliveries)."""
        return {
            topic
            for source in (self.source, self.triggers, self.results, self.deliveries)
            for topic in source.topics
        }


@dataclass(frozen=True, slots=True)
class Tables:
    """The worker's tables, each value a slot's JSON (the stages decode and encode them).

    ``chains``, ``workers`` and ``gone`` are detection's, on the events' partitions;
    ``workflow-state`` and ``executions`` deciding's, on the triggers' partitions.
    """

    chains: Any
    workers: Any
    gone: Any
    workflow_state: Any
    executions: Any

    @classmethod
    def declare(cls, app: faust.App) -> Tables:
        def table(name: str, partitions: int) -> Any:
            return app.Table(
                name, partitions=partitions, key_type=str, value_type=bytes, default=None
            )

        events, triggers = EVENTS.partitions, TRIGGERS.partitions
        return cls(
            chains=table("chains", events),
            workers=table("workers", events),
            gone=table("gone", events),
            workflow_state=table("workflow-state", triggers),
            executions=table("executions", triggers),
        )


class Outputs:
    """The two ways out every stage uses: a dead letter for what cannot be decoded, and a
    retry command, signed for its cluster."""

    def __init__(self, topics: Topics, signing_keys: dict[str, CommandKey]) -> None:
        self._topics = topics
        self._keys = signing_keys

    async def send_command(self, command: RetryCommand) -> None:
        """Signed with its cluster's key (FLOWGUARD_COMMAND_KEYS): bridges carry out only
        commands they can verify. A cluster without a key gets it unsigned."""
        key = key_for(self._keys, command.cluster)
        if key is not None:
            command = sign(command, key)
        metrics.RETRIES_SENT.labels(command.cluster).inc()
        await self._topics.commands.send(
            key=command.cluster.encode(), value=command.model_dump_json().encode()
        )

    async def dead_letter(self, message: Any, value: bytes | None, reason: str) -> None:
        dlq = self._topics.dlq
        log.warning("%s[%d]@%d to %s: %s", message.topic, message.partition, message.offset,
                    dlq.topics[0], reason)  # fmt: skip
        letter = DeadLetter.of_bytes(
            reason[:2000], value or b"", iso(time.time()) or "",  # the payload capped
            source="worker", topic=message.topic, partition=message.partition,
            offset=message.offset,
        )  # fmt: skip
        await dlq.send(key=None, value=letter.model_dump_json().encode())
        metrics.DLQ_RECORDS.labels(message.topic).inc()
