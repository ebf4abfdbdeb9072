"""The deciding stage's agents, around the pure :mod:`flowguard.live.execute`: wiring only.

``<prefix>.triggers`` is keyed by workflow id, so one process holds a workflow's breaker,
retry budgets and executions (tables ``workflow-state`` and ``executions``). Every execution
record goes to ``<prefix>.execution-log``; retry commands to ``<prefix>.commands``; delayed
retries back to their chain's partition on ``<prefix>.scheduled``; notices to the action
runner, whose outcomes come back here as :class:`ActionOutcome` records, as do the bridges'
results (the ``results`` agent re-keys them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from flowguard.engine.execute import Notice, derive_id, execution_id
from flowguard.live import execute
from topics._base import iso
from topics.commands import CommandResult
from topics.triggers import (
    TRIGGERS_ADAPTER,
    ActionOutcome,
    CancelExecution,
    ExpireExecutions,
    Matched,
)

if TYPE_CHECKING:
    from flowguard.live.app import Live

log = logging.getLogger("flowguard.live")

#: Execution ids per ExpireExecutions record.
EXPIRE_CHUNK = 500


class Deciding:
    """The ``execute`` and ``results`` agents and the periodic scan for expired executions."""

    def __init__(self, live: Live) -> None:
        self.live = live
        self._delivering: set[str] = set()

    async def on_triggers(self, stream: AsyncIterator[Any]) -> None:
        live = self.live
        await live.feed.ready.wait()
        async for event in stream.events():  # type: ignore[attr-defined]
            try:
                item = TRIGGERS_ADAPTER.validate_json(event.value)
            except (ValueError, ValidationError) as exc:
                await live.dead_letter(event.message, event.value, f"cannot decode: {exc}")
                continue
            if isinstance(item, Matched):
                await self._on_matched(item)
            elif isinstance(item, ActionOutcome):
                entry, out = execute.on_outcome(live.executions.get(item.execution_id), item)
                if entry is not None:
                    live.executions[item.execution_id] = entry
                await self._send(item.workflow_id, out)
            elif isinstance(item, CancelExecution):
                entry, out = execute.on_cancel(live.executions.get(item.execution_id), item)
                if entry is not None:
                    live.executions[item.execution_id] = entry
                await self._send(item.workflow_id, out)
            elif isinstance(item, ExpireExecutions):
                self._expire(item)

    async def _on_matched(self, item: Matched) -> None:
        live = self.live
        published = live.feed.get(item.workflow_id)
        if published is None or not published.workflow.enabled:
            log.info("trigger %s: workflow %s is gone or disabled", item.trigger.trigger_id,
                     item.workflow_id)  # fmt: skip
            return
        # A match comes again with the version it was made under, whatever the feed holds now:
        # look it up by that version, or a workflow saved in between would decide it twice.
        matched_id = derive_id(item.workflow_id, item.workflow_version, item.trigger.trigger_id)
        eid = execution_id(published, item.trigger)
        existing = live.executions.get(matched_id)
        if existing is not None and "alias" in existing:
            eid, existing = existing["alias"], live.executions.get(existing["alias"])
        elif existing is not None:
            eid = matched_id
        slot, entry, out = execute.on_matched(
            live.workflow_state.get(item.workflow_id), existing, item, published
        )
        live.executions[eid] = entry
        if eid != matched_id:
            live.executions[matched_id] = {
                "alias": eid, "at": item.trigger.at, "workflow_id": item.workflow_id,
            }  # fmt: skip
        live.workflow_state[item.workflow_id] = slot
        await self._send(item.workflow_id, out)

    async def _send(self, workflow_id: str, out: execute.Out) -> None:
        live, key = self.live, workflow_id.encode()
        for record in out.records:
            stamped = record.model_copy(update={"recorded_at": iso(time.time())})
            await live.log_topic.send(key=key, value=stamped.to_json().encode())
        for command in out.commands:
            await live.send_command(command)
        for scheduled in out.scheduled:
            await live.scheduled.send(
                key=scheduled.chain_key.encode(), value=scheduled.model_dump_json().encode()
            )
        for cancel in out.cancels:
            await live.scheduled.send(
                key=cancel.chain_key.encode(), value=cancel.model_dump_json().encode()
            )
        for notice in out.notices:
            if notice.action_id not in self._delivering:
                self._delivering.add(notice.action_id)
                live.spawn(self._deliver(workflow_id, notice))

    async def _deliver(self, workflow_id: str, notice: Notice) -> None:
        """Deliver off the stream (a slow endpoint never holds it); the outcome comes back."""
        try:
            result = await self.live.runner.deliver(notice)
            status, detail = result.status, result.detail
            if status == "skipped":  # the runner had delivered this action id already
                status, detail = "succeeded", "delivered before"
            outcome = ActionOutcome(
                workflow_id=workflow_id,
                execution_id=notice.record.execution_id,
                action_id=notice.action_id,
                status=status,
                detail=detail,
                at=iso(time.time()) or "",
            )
            await self.live.triggers.send(
                key=workflow_id.encode(), value=outcome.model_dump_json().encode()
            )
        finally:
            self._delivering.discard(notice.action_id)

    async def on_results(self, stream: AsyncIterator[Any]) -> None:
        """Bridges' results, to the execution they belong to: a retry's final status."""
        async for event in stream.events():  # type: ignore[attr-defined]
            try:
                result = CommandResult.model_validate_json(event.value or b"")
            except ValidationError as exc:
                await self.live.dead_letter(event.message, event.value, f"cannot decode: {exc}")
                continue
            outcome = execute.command_outcome(result)
            if outcome is not None:
                await self.live.triggers.send(
                    key=outcome.workflow_id.encode(), value=outcome.model_dump_json().encode()
                )

    def _expire(self, item: ExpireExecutions) -> None:
        """Forget executions the scan found expired, if they still are (checked again here,
        where the workflow's executions are written)."""
        executions = self.live.executions
        now, retention = time.time(), self.live.settings.execution_retention_seconds
        for eid in item.execution_ids:
            entry = executions.get(eid)
            if entry is not None and execute.expired(entry, now, retention):
                del executions[eid]

    async def scan_executions(self) -> None:
        """Periodically: find executions nothing can refer to any more, and have them forgotten
        by the agent (a table is written only there, for the key of the record at hand)."""
        live = self.live
        if live.app.in_recovery:
            return
        now, retention = time.time(), live.settings.execution_retention_seconds
        found: dict[str, list[str]] = {}
        for eid, entry in list(live.executions.items()):
            if entry is not None and execute.expired(entry, now, retention):
                workflow_id = entry.get("workflow_id") or entry["record"]["workflow"]["id"]
                found.setdefault(workflow_id, []).append(eid)
        for workflow_id, ids in sorted(found.items()):
            for start in range(0, len(ids), EXPIRE_CHUNK):
                item = ExpireExecutions(
                    workflow_id=workflow_id, execution_ids=tuple(ids[start : start + EXPIRE_CHUNK])
                )
                await live.triggers.send(
                    key=workflow_id.encode(), value=item.model_dump_json().encode()
                )
        if found:
            log.info("%d expired executions to forget", sum(len(v) for v in found.values()))
