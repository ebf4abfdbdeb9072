"""Bulk remediation's I/O: read the candidates from ``<prefix>.events``, send a run's commands
paced, record each action on the execution log, and undo a wave. The decisions are
:mod:`flowguard.remediate`'s; this module reads, sends, sleeps and signs.

Commands are signed as the flowguard worker signs them (``FLOWGUARD_COMMAND_KEYS``): a bridge
carries out only commands it can verify.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

from flowguard.engine.retry import HARD_CAP_SECONDS
from flowguard.kafka_security import client_options
from flowguard.remediate import (
    Action,
    Candidate,
    Collector,
    Kind,
    Pending,
    pending_retries,
    plan,
    record,
    revoke_for,
    undo_record,
    wait_before,
)
from flowguard.settings import Settings
from flowguard.topic_range import Progress, TimeRange, read_range
from topics.commands import RetryCommand, RevokeCommand
from topics.events import EVENT_ADAPTER
from topics.execution import ActionStatus, ExecutionRecord
from topics.record import iso
from topics.registry import COMMANDS, EVENTS, EXECUTION_LOG, TRIGGERS
from topics.signing import CommandKey, key_for, sign
from topics.triggers import CancelExecution


async def collect(
    settings: Settings, span: TimeRange, on_progress: Progress | None = None
) -> Collector:
    """Every task event of ``span`` on ``<prefix>.events``, fed to a :class:`Collector`
    (records that do not decode are skipped: the live app dead-letters them)."""
    collector = Collector()
    topic = EVENTS.name(settings.topic_prefix)
    async for batch in read_range(settings, topic, span, on_progress=on_progress):
        for message in batch:
            try:
                event = EVENT_ADAPTER.validate_json(message.value or b"")
            except ValidationError:
                continue
            collector.feed(event)
    return collector


@dataclass(slots=True)
class RunState:
    """How a run goes: actions done out of the total, sent and refused, and whether it was
    aborted (``abort`` set: no action after the current one)."""

    total: int
    done: int = 0
    sent: int = 0
    refused: int = 0
    aborted: bool = False
    abort: asyncio.Event = field(default_factory=asyncio.Event)
    refusals: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total, "done": self.done, "sent": self.sent, "refused": self.refused,
            "aborted": self.aborted,
            "refusals": [{"task_id": t, "reason": r} for t, r in self.refusals[:50]],
        }  # fmt: skip


class Sender:
    """One producer for commands, scheduled records and execution records (acks=all,
    idempotent); commands signed with their cluster's key."""

    def __init__(self, settings: Settings, keys: dict[str, CommandKey]) -> None:
        self.settings = settings
        self.keys = keys
        prefix = settings.topic_prefix
        self.commands = COMMANDS.name(prefix)
        self.log = EXECUTION_LOG.name(prefix)
        self.triggers = TRIGGERS.name(prefix)
        self.producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            client_id="flowguard-remediate",
            **client_options(settings),
        )

    async def __aenter__(self) -> Sender:
        await asyncio.wait_for(self.producer.start(), self.settings.kafka_timeout_seconds)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def command(self, command: RetryCommand | RevokeCommand) -> None:
        key = key_for(self.keys, command.cluster)
        if key is not None:
            command = sign(command, key)
        await self.producer.send_and_wait(
            self.commands, command.model_dump_json().encode(), key=command.cluster.encode()
        )

    async def execution(self, rec: ExecutionRecord) -> None:
        await self.producer.send_and_wait(
            self.log, rec.to_json().encode(), key=rec.workflow.id.encode()
        )

    async def cancel(self, pending: Pending, actor: str, now: float) -> None:
        """Roll back the execution's delayed actions (``execution.cancel`` to the worker that
        holds them, which cancels them on their chain and records it on the execution log)."""
        request = CancelExecution(
            workflow_id=pending.workflow_id,
            execution_id=pending.execution_id,
            requested_by=actor,
            requested_at=iso(now) or "",
            comment="undo",
        )
        await self.producer.send_and_wait(
            self.triggers, request.model_dump_json().encode(), key=pending.workflow_id.encode()
        )


async def execute(
    sender: Sender,
    *,
    run: str,
    name: str,
    actor: str,
    kind: Kind,
    selected: Sequence[Candidate],
    rate: float,
    ceiling: int,
    progress: RunState,
    on_action: Callable[[Action, str], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> RunState:
    """Send the run's commands at ``rate`` a second, each recorded on the execution log
    (a refused retry too, with its reason, and nothing sent); stop early when aborted."""
    last: float | None = None
    for index, candidate in enumerate(selected):
        wait = wait_before(last, rate, clock())
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(progress.abort.wait(), wait)
        if progress.abort.is_set():
            progress.aborted = True
            break
        now = last = clock()
        action = plan(run, kind, candidate, now)
        status: ActionStatus
        if action.command is None:
            detail = action.refused or ""
            status = "failed"
            progress.refused += 1
            progress.refusals.append((candidate.task_id, detail))
        else:
            await sender.command(action.command)
            detail, status = "", "sent"
            progress.sent += 1
        await sender.execution(
            record(run, name, actor, kind, action, status, detail, index, ceiling, now)
        )
        progress.done += 1
        if on_action is not None:
            on_action(action, status)
    return progress


#: How far back undo reads the execution log: a retry waits at most a week (the longest delay
#: a workflow may ask for), so one scheduled earlier has settled by now; a day more for slack.
UNDO_WINDOW_SECONDS = HARD_CAP_SECONDS + 86400.0


async def read_log(settings: Settings, workflow_id: str, since: float) -> list[ExecutionRecord]:
    """The execution records of ``workflow_id`` (its key) written since ``since``."""
    topic = EXECUTION_LOG.name(settings.topic_prefix)
    key = workflow_id.encode()
    found: list[ExecutionRecord] = []
    async for batch in read_range(settings, topic, TimeRange(since), key_prefix=key):
        for message in batch:
            if message.key != key:
                continue
            try:
                found.append(ExecutionRecord.model_validate(json.loads(message.value or b"")))
            except (ValueError, ValidationError):
                continue
    return found


async def undo(
    settings: Settings,
    sender: Sender,
    workflow_id: str,
    actor: str,
    clock: Callable[[], float] = time.time,
) -> ExecutionRecord:
    """Revoke every retry ``workflow_id`` (a workflow, or ``remediate.<run>``) scheduled or
    sent that has not settled. A delayed one's execution is rolled back (``execution.cancel``:
    the worker cancels it on its chain and records that); every one's task id is revoked on
    its cluster. The record of what was cancelled goes on the execution log and is returned.
    Disabling the workflow is the caller's (through the workflow store)."""
    now = clock()
    records = await read_log(settings, workflow_id, now - UNDO_WINDOW_SECONDS)
    pending = pending_retries(records, workflow_id)
    for execution_id in dict.fromkeys(p.execution_id for p in pending if p.status == "scheduled"):
        first = next(p for p in pending if p.execution_id == execution_id)
        await sender.cancel(first, actor, now)
    for item in pending:
        await sender.command(revoke_for(item, now))
    name = records[-1].workflow.name if records else workflow_id
    done = undo_record(workflow_id, name, actor, pending, now)
    await sender.execution(done)
    return done
