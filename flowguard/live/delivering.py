"""The deliver agent: every notice delivered once, through crashes, rebalances and deploys.

Deciding does not deliver. It writes each notice to ``<prefix>.deliveries`` (the outbox,
keyed by action id) as part of its step, so the notice is on Kafka before the trigger that
caused it is committed. This agent reads the outbox and, per request:

1. skips it if the ``delivered`` table (changelog-backed, on the request's partition) already
   marks the action id delivered: a request re-sent after a crash, or read again;
2. otherwise delivers it (off the stream, up to ``delivery_concurrency`` at once, each
   endpoint in its own lane), then marks it delivered, sends its outcome to deciding, and
   waits until Kafka has both;
3. only then acknowledges the request, in offset order per partition (Faust commits the
   acknowledged prefix), so a request is committed only once its outcome is recorded.

A process killed during a delivery leaves its request uncommitted: the next owner delivers it
again. So a notice is never lost, and is delivered twice only if the process died between the
endpoint receiving it and its mark reaching Kafka (the HTTP request's own duration plus a
flush, milliseconds to the delivery's bound): the window no design closes for an endpoint
without idempotency (Slack). Webhooks carry ``Idempotency-Key`` (the action id) and PagerDuty
its ``dedup_key``, so those receivers fold it. On a rebalance or a warm shutdown the agent
first lets the deliveries of the partitions it gives up finish (``delivery_drain_seconds``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import defaultdict, deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import faust
import orjson
from faust.streams import _current_event  # the table routes a write by the current event
from pydantic import ValidationError

from flowguard import metrics
from flowguard.actions import ActionRunner
from flowguard.engine.decision import Notice
from flowguard.engine.executions import notify_action
from flowguard.live.feed import WorkflowFeed
from flowguard.live.wiring import Outputs, Topics
from flowguard.logs import record_fields
from topics.record import iso
from topics.registry import DELIVERIES
from topics.triggers import ActionOutcome, DeliveryRequest

log = logging.getLogger("flowguard.live")


@dataclass(slots=True)
class _InFlight:
    event: Any
    done: bool = False


class Delivering:
    """The ``deliver`` agent and its ``delivered`` table; see the module docstring."""

    def __init__(
        self,
        app: faust.App,
        topics: Topics,
        feed: WorkflowFeed,
        outputs: Outputs,
        runner: ActionRunner,
        spawn: Callable[[Coroutine[Any, Any, None], str], None],
        *,
        concurrency: int,
        drain_seconds: float,
    ) -> None:
        self.app, self.topics, self.feed, self.outputs = app, topics, feed, outputs
        self.runner, self.spawn, self.drain_seconds = runner, spawn, drain_seconds
        self.delivered = app.Table(
            "delivered", partitions=DELIVERIES.partitions, key_type=str, value_type=bytes,
            default=None,
        )  # fmt: skip
        self._in_flight: dict[Any, deque[_InFlight]] = defaultdict(deque)
        self._room = asyncio.Semaphore(concurrency)
        self._stream: Any = None
        app.on_partitions_revoked.connect(self._revoked)

    def busy(self, tp: Any) -> bool:
        """Whether a request of partition ``tp`` is being delivered: its commit waits on
        purpose, however long (up to the delivery's bound)."""
        return any(not item.done for item in self._in_flight.get(tp, ()))

    async def on_requests(self, stream: Any) -> None:
        await self.feed.ready.wait()
        stream = stream.noack()
        self._stream = stream
        async for event in stream.events():
            message = event.message
            queue = self._in_flight[message.tp]
            if any(held.event.message.offset == message.offset for held in queue):
                continue  # read again (the partition was rewound) while still delivering
            item = _InFlight(event)
            queue.append(item)
            request = await self._decode(event)
            if request is None or self._delivered_before(request):
                if request is not None:
                    await self._outcome(request, "succeeded", "delivered before")
                item.done = True
                await self._ack_ready(event.message.tp)
                continue
            await self._room.acquire()
            self.spawn(self._deliver(item, request), f"deliver {request.action_id}")

    async def _decode(self, event: Any) -> DeliveryRequest | None:
        try:
            return DeliveryRequest.model_validate_json(event.value or b"")
        except ValidationError as exc:
            await self.outputs.dead_letter(event.message, event.value, f"cannot decode: {exc}")
            return None

    def _delivered_before(self, request: DeliveryRequest) -> bool:
        return self.delivered.get(request.action_id) is not None

    async def _deliver(self, item: _InFlight, request: DeliveryRequest) -> None:
        try:
            notice = self._notice(request)
            if isinstance(notice, str):
                status, detail = "failed", notice
            else:
                began = time.monotonic()
                result = await self.runner.deliver(notice)
                status, detail = result.status, result.detail
                kind = notice.action.type
                metrics.DELIVERIES.labels(kind, status).inc()
                metrics.DELIVERY_SECONDS.labels(kind, status).observe(time.monotonic() - began)
                if status == "skipped":  # this process delivered the action id already
                    status, detail = "succeeded", "delivered before"
            if status == "succeeded":
                self._mark(item.event, request.action_id, detail)
            await self._outcome(request, status, detail)
            await self.app.producer.flush()  # the mark and the outcome, before the ack
        except Exception:
            # Left unacknowledged: the request is read again by the next owner.
            log.exception("delivery of %s", request.action_id, extra=record_fields(request.record))
            raise
        else:
            item.done = True
            log.info("delivery %s recorded: %s", request.action_id, status,
                     extra=record_fields(request.record))  # fmt: skip
        finally:
            self._room.release()
            await self._ack_ready(item.event.message.tp)

    def _notice(self, request: DeliveryRequest) -> Notice | str:
        """The notice with its action (secrets included) from the workflow version it was
        decided under; why not, when that version is no longer the live one."""
        published = self.feed.get(request.workflow_id)
        if published is None or published.version != request.workflow_version:
            now = "deleted" if published is None else f"at version {published.version}"
            return (
                f"not sent: workflow {request.workflow_id} changed ({now}) before this "
                f"notice of version {request.workflow_version} was delivered"
            )
        action = notify_action(published.workflow, request.action_id)
        if action is None:
            return f"not sent: no notification action for {request.action_id}"
        return Notice(request.action_id, action, request.text, request.dedup_key, request.record)

    def _mark(self, event: Any, action_id: str, detail: str) -> None:
        """The delivered mark, routed to the request's own partition (Faust writes a table by
        the current event; this runs in the delivery's task, whose context is its own)."""
        token = _current_event.set(weakref.ref(event))
        try:
            self.delivered[action_id] = orjson.dumps({"at": time.time(), "detail": detail})
        finally:
            _current_event.reset(token)

    async def _outcome(self, request: DeliveryRequest, status: str, detail: str) -> None:
        outcome = ActionOutcome(
            workflow_id=request.workflow_id,
            execution_id=request.record.execution_id,
            action_id=request.action_id,
            status=status,
            detail=detail,
            at=iso(time.time()) or "",
        )
        await self.topics.triggers.send(
            key=request.workflow_id.encode(), value=outcome.model_dump_json().encode()
        )

    async def _ack_ready(self, tp: Any) -> None:
        """Acknowledge the partition's requests that are done, in offset order: Faust commits
        the acknowledged prefix, so a request still delivering holds back those after it."""
        queue, stream = self._in_flight[tp], self._stream
        while queue and queue[0].done:
            await stream.ack(queue.popleft().event)

    async def _revoked(self, *args: Any, **_: Any) -> None:
        """Partitions given up (a rebalance, a warm shutdown): let their deliveries finish, up
        to ``delivery_drain_seconds``, so the next owner finds them marked."""
        revoked = set(args[1]) if len(args) > 1 else set()  # (sender, revoked)
        gone = [tp for tp in list(self._in_flight) if tp in revoked]
        pending = [item for tp in gone for item in self._in_flight[tp] if not item.done]
        deadline = time.monotonic() + self.drain_seconds
        while pending and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            pending = [item for item in pending if not item.done]
        if pending:
            log.warning(
                "%d deliveries still running at a rebalance: the next owner may send them "
                "again", len(pending),
            )  # fmt: skip
        for tp in gone:
            self._in_flight.pop(tp, None)
