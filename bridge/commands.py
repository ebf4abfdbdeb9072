"""Carry out the commands addressed to this cluster: retry (``send_task``) and revoke.

Once, across restarts: before acting, the bridge claims the command id in Redis
(``SET NX`` with a TTL); after acting it marks the claim done. A command read again
(the same command produced twice, or re-read after a restart that came between acting
and committing the offset) finds the claim and is answered ``duplicate``. While the command
is routed and its queue checked the claim says ``preparing``: a bridge that died then sent
nothing, and the next one takes the command over. It says ``sending`` only for ``send_task``
itself (:mod:`bridge.dedup`); a claim left ``sending`` by a bridge that died there is not sent
again: the result says it is in doubt and names the task id to look for (at most once, said
aloud, rather than maybe twice). Each command gets a ``command.result`` record.

Before any of that, the gate (:mod:`bridge.gate`) checks the command's signature, its age and
its task name: a command refused there gets a ``failed`` result with the reason (and, when
forged or stale, a DLQ record), and nothing reaches Celery or the dedup store.

Redis or Kafka away never ends the runner (the event stream goes on without it): the
consumer is started with backoff, and a Redis call that fails is retried with backoff,
said once when Redis goes away and once when it is back. The command waits meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Literal, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from celery import Celery
from celery.exceptions import QueueNotFound
from pydantic import ValidationError
from redis.exceptions import RedisError

from bridge.dedup import SENDING, DedupStore
from bridge.gate import CommandGate, Refusal
from bridge.intake import encode
from bridge.producer import KafkaOut, describe
from bridge.receiver import Backoff
from bridge.routing import ActiveQueues, Published, Target, route, sent_event
from flowguard.celery_wire.call_args import CallArgs, parse_call_args
from flowguard.errors import ArgsUnrecoverable, CeleryUnavailable
from flowguard.logs import execution_fields
from flowguard.metrics import KAFKA_ERRORS, REDIS_ERRORS
from topics.commands import COMMAND_ADAPTER, CommandResult, RetryCommand, RevokeCommand
from topics.dlq import DeadLetter
from topics.events import TaskSent
from topics.keys import RootMemory, record_key
from topics.record import from_iso, iso
from topics.signing import wire_object

log = logging.getLogger("flowguard.bridge")
T = TypeVar("T")

Status = Literal["done", "duplicate", "failed"]
#: Header on every task the bridge sends, naming the flowguard execution that asked for it.
EXECUTION_HEADER = "flowguard_execution_id"
COMMAND_HEADER = "flowguard_command_id"


@dataclass(slots=True)
class Outcome:
    status: Status
    detail: str
    task_id: str | None = None
    queue: str | None = None
    routing_key: str | None = None
    sent: TaskSent | None = None  # the event of a retry sent


class CommandRunner:
    """Consumes ``<prefix>.commands`` in the group ``flowguard-bridge.<cluster>``."""

    def __init__(
        self,
        app: Celery,
        cluster: str,
        make_consumer: Callable[[], AIOKafkaConsumer],
        out: KafkaOut,
        dedup: DedupStore,
        topics: dict[str, str],
        gate: CommandGate,
        commit_interval_seconds: float,
        *,
        stop_timeout_seconds: float = 10.0,
        queues: ActiveQueues | None = None,
        routed_by_app: bool = False,
        on_sent: Callable[[TaskSent], None] | None = None,
        max_record_bytes: int = 1_000_000,
    ) -> None:
        self.app = app
        self.cluster = cluster
        self._make_consumer = make_consumer
        self.consumer: AIOKafkaConsumer | None = None
        self.out = out
        self.dedup = dedup
        self.topics = topics
        self.gate = gate
        self.commit_interval = commit_interval_seconds
        self.stop_timeout = stop_timeout_seconds
        self.counts: dict[str, int] = {
            "done": 0, "duplicate": 0, "failed": 0, "invalid": 0, "refused": 0,
        }  # fmt: skip
        self._uncommitted: dict[TopicPartition, int] = {}
        self._last_commit = time.monotonic()
        self._redis_problem: str | None = None
        self.queues = queues  # None: no check of the workers' queues
        self.routed_by_app = routed_by_app
        self.on_sent = on_sent
        self.max_record_bytes = max_record_bytes
        self.published = Published(on_publish=self._publishing)
        #: Retries being sent, by task id: their task.sent goes out from Celery's publish
        #: signal, before the broker has the message (see _publishing).
        self._sending: dict[str, tuple[RetryCommand, str | None, float | None]] = {}
        self._unknown_queue_said: set[str] = set()

    async def run(self) -> None:
        """Consume until cancelled; the consumer is started here and stopped on the way out."""
        consumer = await self._start_consumer()
        # Beside the loop: a stale command or a revoke need not wait for the workers' replies.
        warming = asyncio.create_task(self._warm_queues(), name="warm-queues")
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=100)
                for records in batches.values():
                    for record in records:
                        await self.handle(record)
                await self._commit(force=self.commit_interval == 0)
        finally:
            warming.cancel()
            await asyncio.gather(warming, return_exceptions=True)
            self.published.close()
            await self._stop(consumer)

    async def _warm_queues(self) -> None:
        if self.queues is None:
            return
        try:
            await asyncio.to_thread(self.queues.warm)
        except Exception as exc:  # the broker away: the first retry asks again, and waits
            log.debug("active queues not fetched at start: %s: %s", type(exc).__name__, exc)

    async def _stop(self, consumer: AIOKafkaConsumer) -> None:
        """Commit what was carried out and leave the group, each within the stop timeout (Kafka
        may be away: aiokafka would retry the commit for ever)."""
        try:
            async with asyncio.timeout(self.stop_timeout):
                await self._commit(force=True)
        except TimeoutError:
            log.warning("command offsets not committed on the way out (Kafka does not answer); "
                        "those commands are read again and answered duplicate")  # fmt: skip
        await self._close(consumer)

    async def _start_consumer(self) -> AIOKafkaConsumer:
        """A started consumer, waiting for Kafka with backoff (said once). A consumer that did
        not start (refused, or cancelled at shutdown while starting) is closed."""
        backoff, said = Backoff(0.5, 10.0), False
        while True:
            consumer = self._make_consumer()
            try:
                await consumer.start()
            except KafkaError as exc:
                KAFKA_ERRORS.labels("bridge-commands").inc()
                await self._close(consumer)
                if not said:
                    log.error("commands: Kafka at %s unreachable (%s); retrying with backoff",
                              self.out.where, describe(exc))  # fmt: skip
                    said = True
                await asyncio.sleep(backoff.next())
                continue
            except BaseException:
                await self._close(consumer)
                raise
            self.consumer = consumer
            return consumer

    async def _close(self, consumer: AIOKafkaConsumer) -> None:
        with contextlib.suppress(TimeoutError, KafkaError):
            await asyncio.wait_for(consumer.stop(), self.stop_timeout)

    async def handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """One record: decoded, ours or not, carried out once; the offset marked processed."""
        tp = TopicPartition(record.topic, record.partition)
        try:
            command = COMMAND_ADAPTER.validate_json(record.value or b"")
            payload = wire_object(record.value or b"")  # what the signature covers
        except ValueError as exc:  # a ValidationError too
            self.counts["invalid"] += 1
            await self._dead_letter(record, _problem(exc))
        else:
            if command.cluster == self.cluster:
                refusal = self.gate.check(payload, command, time.time())
                if refusal is not None:
                    await self._refuse(command, refusal, record)
                else:
                    await self._report(command, await self._carry_out_safely(command, record))
        self._uncommitted[tp] = record.offset + 1

    async def _refuse(
        self,
        command: RetryCommand | RevokeCommand,
        refusal: Refusal,
        record: ConsumerRecord[bytes, bytes],
    ) -> None:
        """Not carried out: said, dead-lettered when forged or stale, and answered ``failed``
        (naming its execution only when the command is flowguard's own)."""
        self.counts["refused"] += 1
        said = f"command {command.command_id} ({command.kind}) {refusal.reason}"
        if refusal.dead_letter:
            await self._dead_letter(record, said)
        else:
            log.warning("%s (partition %d offset %d)", said, record.partition, record.offset)
        await self._report(command, Outcome("failed", refusal.reason), attributed=refusal.trusted)

    async def _carry_out_safely(
        self, command: RetryCommand | RevokeCommand, record: ConsumerRecord[bytes, bytes]
    ) -> Outcome:
        """An error nobody foresaw fails this command, said with its context, and the runner
        goes on: ending the bridge would stop the events too, and a restarted bridge would
        read the same command and end again."""
        try:
            return await self._carry_out(command)
        except Exception as exc:
            log.exception(
                "command %s (%s, task %s; partition %d offset %d) failed unexpectedly",
                command.command_id, command.kind, command.task_id, record.partition,
                record.offset,
            )  # fmt: skip
            return Outcome("failed", f"unexpected error: {type(exc).__name__}: {exc}")

    async def _carry_out(self, command: RetryCommand | RevokeCommand) -> Outcome:
        backoff, command_id = Backoff(0.5, 10.0), command.command_id
        while True:
            claim = await self._redis(self.dedup.claim, command_id)
            if not claim.held:
                if claim.value.startswith(SENDING):
                    return Outcome("failed", _in_doubt(command, claim.value))
                return Outcome("duplicate", f"already carried out ({claim.value})")
            try:
                # Routing and the queue check (an inspect that may wait seconds) come before
                # the claim says "sending": an attempt killed meanwhile sent nothing, and the
                # next one takes the command over instead of answering it in doubt.
                act = await asyncio.to_thread(self._prepare, command)
                if isinstance(act, Outcome):
                    outcome = act
                elif not await self._redis(self.dedup.begin, command_id, claim):
                    return Outcome("duplicate", "taken over by another attempt before it was sent")
                else:
                    outcome = await asyncio.to_thread(act)
            except CeleryUnavailable as exc:
                await self._redis(self.dedup.release, command_id, claim)
                log.error("command %s waits for the Celery broker: %s", command_id, exc)
                await asyncio.sleep(backoff.next())
                continue
            except Exception:
                await self._redis(self.dedup.release, command_id, claim)
                raise
            # Cancelled while sending (shutdown): the thread may still send, so the claim stays
            # "sending" and a restarted bridge answers "in doubt" rather than send it twice.
            said = f"{outcome.status}: {outcome.detail}"
            if not await self._redis(self.dedup.settle, command_id, claim, said):
                # Refused while another attempt took the command over: its answer stands.
                return Outcome("duplicate", "taken over by another attempt before it was sent")
            return outcome

    async def _redis(self, call: Callable[..., Awaitable[T]], *args: object) -> T:
        """A dedup Redis call, retried with backoff while Redis is away (said once per outage)."""
        backoff = Backoff(0.5, 10.0)
        while True:
            try:
                result = await call(*args)
            except RedisError as exc:
                REDIS_ERRORS.labels("bridge-commands").inc()
                if self._redis_problem is None:
                    log.error(
                        "dedup Redis %s unreachable (%s: %s); commands wait, retrying with "
                        "backoff (events go on)", self.dedup.where, type(exc).__name__, exc,
                    )  # fmt: skip
                    self._redis_problem = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(backoff.next())
                continue
            if self._redis_problem is not None:
                log.warning("dedup Redis %s is back; commands go on", self.dedup.where)
                self._redis_problem = None
            return result

    def _prepare(self, command: RetryCommand | RevokeCommand) -> Outcome | Callable[[], Outcome]:
        """Blocking (kombu talks to the broker synchronously; runs in a thread): what to do,
        or the outcome when there is nothing to send."""
        if isinstance(command, RevokeCommand):
            return partial(self._revoke, command)
        return self._prepare_retry(command)

    def _revoke(self, command: RevokeCommand) -> Outcome:
        try:
            self.app.control.revoke(command.task_id, terminate=command.terminate)
        except Exception as exc:
            raise CeleryUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return Outcome("done", f"revoked {command.task_id}")

    def _prepare_retry(self, command: RetryCommand) -> Outcome | Callable[[], Outcome]:
        """Route (the command's queue, else the app's routes) and check that a worker consumes
        the queue; then the send, to be called once the claim says "sending"."""
        try:
            call = parse_call_args(command.args, command.kwargs)
        except ArgsUnrecoverable as exc:
            return Outcome("failed", f"args not recoverable: {exc}")
        try:
            target = route(self.app, command, call.args, dict(call.kwargs))
        except QueueNotFound as exc:
            return Outcome("failed", f"not sent: {exc}", command.task_id, command.queue)
        unknown = command.queue is None and not self.routed_by_app
        if unknown:
            self._say_queue_unknown(command.name, target.queue)
        refused, note = self._check_consumers(target.queue, unknown)
        if refused is not None:
            return Outcome("failed", refused, command.task_id, target.queue)
        return partial(self._send, command, call, target, note)

    def _send(self, command: RetryCommand, call: CallArgs, target: Target, note: str) -> Outcome:
        """Send, and say where it went (also as a ``task.sent`` event)."""
        eta = None
        if command.not_before is not None and from_iso(command.not_before) > time.time():
            eta = from_iso(command.not_before)
        self._sending[command.task_id] = (command, target.queue, eta)
        try:
            self.app.send_task(
                command.name,
                # A tuple, as Celery's own senders pass it: its events then show the same
                # repr ("(42,)", not "[42]") as the task's first run, and so does replay.
                args=tuple(call.args),
                kwargs=dict(call.kwargs),
                task_id=command.task_id,
                root_id=command.root_id,
                parent_id=command.parent_id,
                eta=None if eta is None else datetime.fromtimestamp(eta, tz=UTC),
                add_to_parent=False,
                headers={
                    EXECUTION_HEADER: command.execution_id,
                    COMMAND_HEADER: command.command_id,
                },
                **target.options,
            )
        except Exception as exc:
            raise CeleryUnavailable(f"{type(exc).__name__}: {exc}") from exc
        finally:
            self._sending.pop(command.task_id, None)
        exchange, routing_key = self.published.pop(command.task_id)
        sent = sent_event(self.cluster, command, target.queue, exchange, routing_key, eta)
        where = f" on queue {target.queue}" if target.queue else ""
        detail = f"sent {command.name}[{command.task_id}]{where}{note}"
        return Outcome("done", detail, command.task_id, target.queue, routing_key, sent)

    def _publishing(self, task_id: str, exchange: str | None, routing_key: str | None) -> None:
        """Celery is about to publish a task (its ``before_task_publish``, in the sending
        thread): a retry of ours goes out as ``task.sent`` through ``on_sent`` now, so it is
        ahead of every event the task itself can cause. Sent after ``send_task`` returned, it
        came after the retry's own failure when the task failed at once, and that failure was
        decided without its queue (in replay of a ``--dump``, not live: the two disagreed)."""
        sending = self._sending.get(task_id)
        if sending is None or self.on_sent is None:
            return
        command, queue, eta = sending
        self.on_sent(sent_event(self.cluster, command, queue, exchange, routing_key, eta))

    def _say_queue_unknown(self, name: str, queue: str | None) -> None:
        """Once per task name: the retry goes to the default queue for want of knowing better."""
        if name in self._unknown_queue_said:
            return
        self._unknown_queue_said.add(name)
        log.warning(
            "queue of %s unknown: the retry command names none (no task-sent event seen) and "
            "the bridge has no Celery app, so it goes to the default queue %r. Start the bridge "
            "with --app proj.celery:app (FLOWGUARD_APP), or set task_send_sent_event = True in "
            "the cluster's Celery app", name, queue,
        )  # fmt: skip

    def _check_consumers(self, queue: str | None, unknown: bool) -> tuple[str | None, str]:
        """(why not to send, or None; a note for the detail). No answer at all from the
        workers (none up, or all too busy to answer): sent, and the detail says it was not
        checked: the message waits in the broker for the workers to come back."""
        if queue is None or self.queues is None:
            return None, ""
        try:
            found = self.queues.check(queue)
        except Exception as exc:  # the broker away: inspect cannot be sent
            raise CeleryUnavailable(f"inspect: {type(exc).__name__}: {exc}") from exc
        if not found.answered:
            log.warning("queue %r not checked: no worker answered inspect within %g s",
                        queue, self.queues.timeout_seconds)  # fmt: skip
            return (
                None,
                f" (not checked: no worker answered within {self.queues.timeout_seconds:g} s)",
            )
        if found.consumed:
            return None, ""
        hint = (
            " (the command names no queue and the bridge has no Celery app: start it with --app)"
            if unknown else ""
        )  # fmt: skip
        consumed = ", ".join(found.queues)
        return f"queue {queue!r} has no consumer; workers consume: {consumed}{hint}", ""

    async def _report(
        self, command: RetryCommand | RevokeCommand, outcome: Outcome, *, attributed: bool = True
    ) -> None:
        """The result, with the execution it belongs to (``attributed``): the flowguard worker
        settles the retry action's status from it."""
        self.counts[outcome.status] += 1
        log.info("command %s: %s (%s)", command.command_id, outcome.status, outcome.detail,
                 extra=execution_fields(command.execution_id, getattr(command, "workflow_id", None),
                                        command.cluster, getattr(command, "original_task_id",
                                                                 command.task_id)))  # fmt: skip
        result = CommandResult(
            command_id=command.command_id,
            cluster=self.cluster,
            at=iso(time.time()) or "",
            status=outcome.status,
            detail=outcome.detail,
            workflow_id=command.workflow_id
            if attributed and isinstance(command, RetryCommand)
            else None,
            execution_id=command.execution_id if attributed else None,
            task_id=outcome.task_id,
            queue=outcome.queue,
            routing_key=outcome.routing_key,
        )
        if outcome.sent is not None and self.on_sent is None:
            # Before the result: whoever reads the result can find where the retry went.
            # (With on_sent, it went out when Celery published the task: _publishing.)
            sent = outcome.sent
            key = record_key(sent, RootMemory())
            await self.out.deliver(self.topics["events"], encode(sent), key.encode())
        await self.out.deliver(
            self.topics["command-results"], result.model_dump_json().encode(), self.cluster.encode()
        )

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], reason: str) -> None:
        """The record to the DLQ with the reason (said), its payload capped."""
        log.warning("%s (partition %d offset %d)", reason, record.partition, record.offset)
        raw = record.value or b""
        # As the intake's: an eighth of the largest record always fits, even JSON-escaped.
        keep = self.max_record_bytes // 8
        if len(raw) > keep:
            reason = f"{reason}; raw cut to its first {keep} of {len(raw)} bytes"
            raw = raw[:keep]
        letter = DeadLetter.of_bytes(
            reason,
            raw,
            iso(time.time()) or "",
            source="bridge",
            cluster=self.cluster,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )
        await self.out.deliver(
            self.topics["dlq"], letter.model_dump_json().encode(), self.cluster.encode()
        )

    async def _commit(self, *, force: bool) -> None:
        if not self._uncommitted:
            return
        if not force and time.monotonic() - self._last_commit < self.commit_interval:
            return
        assert self.consumer is not None
        offsets, self._uncommitted = self._uncommitted, {}
        self._last_commit = time.monotonic()
        try:
            await self.consumer.commit(offsets)
        except KafkaError as exc:
            # aiokafka retries what can succeed; this is a rebalance (or worse). The commands
            # are read again by whoever owns the partitions now, and answered duplicate.
            log.warning("command offsets not committed (%s: %s)", type(exc).__name__, exc)


def _problem(exc: ValueError) -> str:
    """A record that does not decode: the field and why, as a user reads it."""
    if not isinstance(exc, ValidationError):
        return f"command refused: {exc}"
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in error["loc"]) or "(record)"
    return f"command refused: {where}: {error['msg']}"


def _in_doubt(command: RetryCommand | RevokeCommand, claim: str) -> str:
    return (
        f"in doubt: an earlier attempt stopped while carrying it out ({claim}); not repeated. "
        f"Check whether task {command.task_id} exists on the cluster."
    )
