"""The deciding stage's agents, around :mod:`flowguard.engine.executions`: wiring only.

``<prefix>.triggers`` is keyed by workflow id, so one process holds a workflow's breaker,
retry budgets and executions (tables ``workflow-state`` and ``executions``). Every execution
record goes to ``<prefix>.execution-log``; retry commands to ``<prefix>.commands``; delayed
retries back to their chain's partition on ``<prefix>.scheduled``; notices to the outbox
``<prefix>.deliveries`` (:mod:`flowguard.live.delivering`), whose outcomes come back here as
:class:`ActionOutcome` records, as do the bridges' results (the ``results`` agent re-keys
them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import faust
import orjson
from pydantic import ValidationError

from flowguard import metrics
from flowguard.engine import executions
from flowguard.live.feed import WorkflowFeed
from flowguard.live.wiring import Outputs, Tables, Topics
from flowguard.logs import execution_fields, record_fields
from topics.commands import CommandResult
from topics.record import iso
from topics.scheduled import CancelRetry, RetrySent, ScheduledRetry
from topics.triggers import (
    TRIGGERS_ADAPTER,
    ActionOutcome,
    CancelExecution,
    DeliveryRequest,
    ExpireExecutions,
    Matched,
)

log = logging.getLogger("flowguard.live")

#: Execution ids per ExpireExecutions record.
EXPIRE_CHUNK = 500


class Deciding:
    """The ``execute`` and ``results`` agents and the periodic scan for expired executions.

    It reads the workflows from ``feed``, keeps the tables ``workflow-state`` and ``executions``,
    and sends to the execution log, the chains (``scheduled``), the outbox and back to itself
    (``triggers``); retry commands and dead letters go through ``outputs``.
    """

    def __init__(
        self,
        app: faust.App,
        topics: Topics,
        tables: Tables,
        feed: WorkflowFeed,
        outputs: Outputs,
        *,
        retention_seconds: float,
    ) -> None:
        self.app, self.topics, self.feed, self.outputs = app, topics, feed, outputs
        self.executions, self.workflow_state = tables.executions, tables.workflow_state
        self.retention_seconds = retention_seconds

    async def on_triggers(self, stream: AsyncIterator[Any]) -> None:
        await self.feed.ready.wait()
        async for event in stream.events():  # type: ignore[attr-defined]
            try:
                item = TRIGGERS_ADAPTER.validate_json(event.value)
            except (ValueError, ValidationError) as exc:
                await self.outputs.dead_letter(event.message, event.value, f"cannot decode: {exc}")
                continue
            if isinstance(item, Matched):
                await self._on_matched(item)
            elif isinstance(item, ActionOutcome):
                entry, out = executions.on_outcome(self._entry(item.execution_id), item)
                if entry is not None:
                    self.executions[item.execution_id] = entry.to_json()
                await self._send(item.workflow_id, out)
            elif isinstance(item, CancelExecution):
                entry, out = executions.on_cancel(self._entry(item.execution_id), item)
                if entry is not None:
                    self.executions[item.execution_id] = entry.to_json()
                await self._send(item.workflow_id, out)
            elif isinstance(item, ExpireExecutions):
                self._expire(item)

    def _entry(self, execution_id: str) -> executions.Entry | None:
        data = self.executions.get(execution_id)
        return None if data is None else executions.load_entry(data)

    async def _on_matched(self, item: Matched) -> None:
        data = self.workflow_state.get(item.workflow_id)
        slot, out = executions.on_matched(
            None if data is None else executions.WorkflowSlot.from_json(data),
            self._entry,
            item,
            self.feed.get(item.workflow_id),
        )
        trigger = item.trigger
        if out.ignored:
            log.info("trigger %s: %s", trigger.trigger_id, out.ignored, extra=execution_fields(
                None, item.workflow_id, trigger.cluster, trigger.task.id if trigger.task else None
            ))  # fmt: skip
            return
        for record in out.records:
            if out.writes and record.seq == 0:  # decided now, not a trigger read again
                metrics.EXECUTIONS.labels(item.workflow_id, record.outcome).inc()
                log.info("execution %s of workflow %s: %s%s", record.execution_id,
                         item.workflow_id, record.outcome,
                         f" ({record.reason})" if record.reason else "",
                         extra=record_fields(record))  # fmt: skip
        if slot is not None:
            open_ = slot.breaker.open_since is not None
            metrics.BREAKER_OPEN.labels(item.workflow_id).set(1 if open_ else 0)
        for eid, entry in out.writes.items():
            self.executions[eid] = entry.to_json()
        if out.writes and slot is not None:
            self.workflow_state[item.workflow_id] = slot.to_json()
        await self._send(item.workflow_id, out)

    async def _send(self, workflow_id: str, out: executions.Out) -> None:
        topics, key = self.topics, workflow_id.encode()
        for record in out.records:
            stamped = record.model_copy(update={"recorded_at": iso(time.time())})
            await topics.execution_log.send(key=key, value=stamped.to_json().encode())
        for command in out.commands:
            await self.outputs.send_command(command)
        to_chains: list[ScheduledRetry | RetrySent | CancelRetry] = [
            *out.scheduled, *out.sent, *out.cancels
        ]  # fmt: skip
        for item in to_chains:
            await topics.scheduled.send(
                key=item.chain_key.encode(), value=item.model_dump_json().encode()
            )
        for notice in out.notices:
            request = DeliveryRequest(
                workflow_id=workflow_id,
                workflow_version=notice.record.workflow.version,
                action_id=notice.action_id,
                text=notice.text,
                dedup_key=notice.dedup_key,
                record=notice.record,
            )
            await topics.deliveries.send(
                key=notice.action_id.encode(), value=request.model_dump_json().encode()
            )

    async def on_results(self, stream: AsyncIterator[Any]) -> None:
        """Bridges' results, to the execution they belong to: a retry's final status."""
        async for event in stream.events():  # type: ignore[attr-defined]
            try:
                result = CommandResult.model_validate_json(event.value or b"")
            except ValidationError as exc:
                await self.outputs.dead_letter(event.message, event.value, f"cannot decode: {exc}")
                continue
            outcome = executions.command_outcome(result)
            if outcome is not None:
                await self.topics.triggers.send(
                    key=outcome.workflow_id.encode(), value=outcome.model_dump_json().encode()
                )

    def _expire(self, item: ExpireExecutions) -> None:
        """Forget executions the scan found expired, if they still are (checked again here,
        where the workflow's executions are written)."""
        executions = self.executions
        now, retention = time.time(), self.retention_seconds
        for eid in item.execution_ids:
            data = executions.get(eid)
            if data is not None and _expired(orjson.loads(data), now, retention):
                del executions[eid]

    async def scan_executions(self) -> None:
        """Periodically: find executions nothing can refer to any more, and have them forgotten
        by the agent (a table is written only there, for the key of the record at hand)."""
        if self.app.in_recovery:
            return
        now, retention = time.time(), self.retention_seconds
        found: dict[str, list[str]] = {}
        for eid, data in list(self.executions.items()):
            entry = orjson.loads(data) if data is not None else None
            if entry is not None and _expired(entry, now, retention):
                workflow_id = entry.get("workflow_id") or entry["record"]["workflow"]["id"]
                found.setdefault(workflow_id, []).append(eid)
        for workflow_id, ids in sorted(found.items()):
            for start in range(0, len(ids), EXPIRE_CHUNK):
                item = ExpireExecutions(
                    workflow_id=workflow_id, execution_ids=tuple(ids[start : start + EXPIRE_CHUNK])
                )
                await self.topics.triggers.send(
                    key=workflow_id.encode(), value=item.model_dump_json().encode()
                )
        if found:
            log.info("%d expired executions to forget", sum(len(v) for v in found.values()))


def _expired(entry: dict[str, Any], now: float, retention: float) -> bool:
    """:func:`executions.expired` on a stored entry, read as JSON only (a scan reads them all);
    a retry chain's budget after ``BUDGET_TTL_SECONDS``; a cluster's breaker once unused
    (:func:`executions.breaker_expired`)."""
    if "budget" in entry:
        return now - float(entry["at"]) >= executions.BUDGET_TTL_SECONDS
    if "breaker" in entry:
        open_ = entry["breaker"].get("open_since") is not None
        return executions.breaker_expired(float(entry["at"]), float(entry["window"]), open_, now)
    statuses = None if "alias" in entry else [a["status"] for a in entry["record"]["actions"]]
    return executions.expired(float(entry.get("at", now)), statuses, now, retention)
