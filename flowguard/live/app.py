"""The Faust app behind ``flowguard worker``: wiring only, around the decision core
(:mod:`flowguard.engine.detect`, :mod:`flowguard.engine.executions`), which replay runs too.

Agents, each on co-partitioned topics and the tables of its key:

- ``detect`` (here) reads ``<prefix>.events`` and ``<prefix>.scheduled`` (same partition
  count, same keys: ``cluster/root_id`` for chains, ``cluster/hostname`` for workers). Tables
  ``chains``, ``workers`` and ``gone``, written behind (:mod:`flowguard.live.slots`). It
  matches each trigger against the workflow table (every process reads it whole,
  :mod:`flowguard.live.feed`) and sends one :class:`Matched` per workflow to
  ``<prefix>.triggers``, keyed by workflow id.
- ``execute`` and ``results`` (:mod:`flowguard.live.deciding`): breakers, executions, effects.
- ``deliver`` (:mod:`flowguard.live.delivering`): the notices' outbox, each delivered once.

Tables are only written inside an agent, for the key of the record being processed, so each
key's changelog stays on its own partition. Wall-clock absence (heartbeats stopped, a task
running too long, a delayed retry due) is noticed by a timer that reads the tables and sends
a :class:`Tick` for the key; the agent then re-checks and acts. Processing is at-least-once;
the stages make it exactly-once in effect (see their docstrings and docs/worker.md).
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import logging
import os
import time
from collections.abc import Coroutine
from typing import Any

import faust
import orjson
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2
from faust.exceptions import ConsumerNotStarted
from faust.types import TP
from pydantic import ValidationError

from flowguard import metrics
from flowguard.actions import ActionRunner
from flowguard.actions.settings import ActionSettings
from flowguard.engine import detect
from flowguard.health import Health
from flowguard.kafka_security import faust_credentials
from flowguard.live.absence import AbsenceGate
from flowguard.live.commits import behind_commits, in_turn, unread_below
from flowguard.live.deciding import Deciding
from flowguard.live.delivering import Delivering
from flowguard.live.feed import WorkflowFeed
from flowguard.live.readiness import Readiness, RecoveryWatch
from flowguard.live.settings import LiveSettings
from flowguard.live.slots import Slots
from flowguard.live.wiring import Outputs, Tables, Topics
from flowguard.logs import execution_fields
from topics.events import EVENT_ADAPTER, TASK_EVENT_TYPES, WORKER_EVENT_TYPES
from topics.registry import SCHEDULED, WORKFLOWS
from topics.scheduled import (
    SCHEDULED_ADAPTER,
    CancelRetry,
    RetrySent,
    ScheduledRetry,
    Tick,
    WorkerGone,
)
from topics.triggers import Matched

log = logging.getLogger("flowguard.live")
#: The exit code of a worker whose table recovery wedged (see LiveApp._watch_recovery).
EXIT_RECOVERY_WEDGED = 70
#: Acks between two turns of the event loop at a write-back (each is 10-20 us of Faust's).
ACKS_PER_YIELD = 100
#: How often the broker is asked for the input partitions' end offsets (see absence): a
#: delayed retry goes out at the first answer after it is due. An answer takes up to about a
#: second (it waits behind the consumer's fetch on the connection), so the asking is a loop
#: of its own rather than a timer (which overlapped itself and said so every few seconds).
ASK_ENDS_SECONDS = 1.0
#: What a batch's steps asked to send, by the key they were for.
Steps = list[tuple[str, detect.Out]]


def partition_of(key: bytes, partitions: int) -> int:
    """Where Kafka's default partitioner puts ``key`` (the bridge and Faust both use it)."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def settle_heap() -> None:
    """Collect once, then move every object that survived out of the collector's reach.

    CPython's full collection walks every object the process holds. A worker holds about
    170,000 once started (Faust, aiokafka, pydantic, Celery: modules, schemas, services), and
    a full collection of them stood the whole process still for 44-140 ms, 3-5 times in 22 s
    at 2,000 events/s: the tail of failure -> retry command (docs/benchmarks.md, issue 18).
    They live as long as the process, so after this (``gc.freeze``) later full collections
    walk only what was allocated since. Done once the worker is ready, and again after each
    rebalance has recovered its tables; the collection here is the one pause it costs. It
    unfreezes first, so what an earlier settling froze and a rebalance since left as garbage
    (a revoked partition's state in a reference cycle) is collected, not kept for good.
    """
    started = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    log.info("heap settled: %d objects out of the collector's reach (%.0f ms)",
             gc.get_freeze_count(), (time.perf_counter() - started) * 1000)  # fmt: skip


class Live:
    """The app and its state that is not in tables: the workflow feed, deadlines, the runner."""

    def __init__(self, settings: LiveSettings, actions: ActionSettings | None = None) -> None:
        self.settings = settings
        prefix = settings.topic_prefix
        self.app = faust.App(
            settings.app_id,
            broker=[f"kafka://{s.strip()}" for s in settings.kafka_bootstrap_servers.split(",")],
            broker_credentials=faust_credentials(settings),
            store=settings.store,
            datadir=str(settings.data_dir / "{conf.name}-data"),
            web_enabled=False,
            topic_replication_factor=settings.replication_factor,
            topic_allow_declare=True,
            table_standby_replicas=0,
            producer_acks=-1,
            producer_linger=settings.linger_ms / 1000,
            broker_session_timeout=settings.session_timeout_seconds,
            broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 3),
            # Room for a whole batch of detection in the stream's buffer.
            stream_buffer_maxsize=max(4096, 4 * settings.batch_max_events),
            broker_commit_interval=settings.commit_interval_seconds,
            consumer_auto_offset_reset="earliest",
            stream_wait_empty=False,
        )
        self.topics = topics = Topics.declare(self.app, prefix)
        self.tables = tables = Tables.declare(self.app)
        self.outputs = Outputs(topics, settings.command_signing_keys)
        self._loaders = {
            tables.chains.name: detect.ChainSlot.from_json,
            tables.workers.name: detect.WorkerSlot.from_json,
            tables.gone.name: detect.GoneSlot.from_json,
        }
        self.timing = settings.timing()
        self.feed = WorkflowFeed(settings.kafka_bootstrap_servers, WORKFLOWS.name(prefix))
        self.runner = ActionRunner(actions or ActionSettings())
        self._deadlines: list[tuple[float, str]] = []
        self._scan = True
        self._settle = True  # the heap, once ready (see settle_heap)
        #: Absence is judged on applied input only, as of when it was all there (see absence).
        self.absence = AbsenceGate()
        #: Per detection input partition, the offset of the next record to apply (_in_turn).
        self._next_read: dict[tuple[str, int], int] = {}
        self._background: set[asyncio.Task[None]] = set()
        # Detection's write-behind slots; the lock keeps the timer's write-back out of the
        # middle of a batch. The stream is the detect agent's, once it runs.
        self.slots = Slots(self._loaders, settings.state_flush_seconds, settings.state_flush_events)
        self._stream: Any = None
        self._detecting = asyncio.Lock()
        #: Triggers not acted on for their age (see _stale).
        self.stale_triggers = 0
        #: Input partitions with records the consumer skipped, to read again (see _install_seek).
        self._gaps: set[Any] = set()
        #: /healthz, /readyz and /metrics (flowguard.live.readiness says what ready means).
        self.readiness = Readiness(
            self.app, topics, self.feed, settings.progress_stall_seconds,
            settings.reread_stall_seconds,
        )  # fmt: skip
        self.health = Health(self.readiness.checks(), on_tick=self.readiness.export_lag)
        self._recovery = RecoveryWatch()

        deciding = Deciding(
            self.app, topics, tables, self.feed, self.outputs,
            retention_seconds=settings.execution_retention_seconds,
        )  # fmt: skip
        self.app.agent(topics.source, name="detect")(self._detect)
        self.app.agent(topics.triggers, name="execute")(deciding.on_triggers)  # type: ignore[arg-type]
        self.app.agent(topics.results, name="results")(deciding.on_results)  # type: ignore[arg-type]
        self.delivering = delivering = Delivering(
            self.app, topics, self.feed, self.outputs, self.runner, self.spawn,
            concurrency=settings.delivery_concurrency,
            drain_seconds=settings.delivery_drain_seconds,
        )  # fmt: skip
        self.app.agent(topics.deliveries, name="deliver")(delivering.on_requests)
        self.app.timer(settings.tick_interval_seconds, name="deadlines")(self._tick)
        self.app.task(self._ask_ends_forever)
        self.app.timer(settings.expiry_scan_seconds, name="expiry")(deciding.scan_executions)
        self.app.task(self._start)
        # After recovery, not at assignment: before it, the tables of new partitions are empty.
        self.app.on_rebalance_complete.connect(self._assigned)
        self.app.on_rebalance_complete.connect(self._install_seek)
        self.app.on_partitions_revoked.connect(self._revoked)
        self.app.on_before_shutdown.connect(self._stop_health)

    # lifecycle ---------------------------------------------------------------------

    async def _start(self) -> None:
        # Faust holds every record's hand-over to the agents while more than 100 of the app's
        # sends wait to leave (the producer buffer, where table writes go). Each write-back puts
        # its slots there at once (about 100 a second at 2,000 events/s), so every second the
        # agents stood still for 6-20 ms, with a "producer buffer full" warning each time. The
        # bound is the write-back's own: at most state_flush_events events' slots. Commits still
        # wait for all of it to be delivered (_install_seek).
        self.app.producer.buffer.max_messages = self.settings.state_flush_events
        await self.health.start(self.settings.health_port)
        await self.runner.start()
        self.spawn(self.feed.run(), name="workflow-feed")

    def spawn(self, work: Coroutine[Any, Any, None], name: str | None = None) -> None:
        """Run ``work`` in the background, held until done (deliveries, the workflow feed)."""
        task = asyncio.create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _assigned(self, *_: Any, **__: Any) -> None:
        self._scan = self._settle = True
        self.readiness.on_assigned()

    async def _stop_health(self, *_: Any, **__: Any) -> None:
        await self.health.stop()

    async def _install_seek(self, *_: Any, **__: Any) -> None:
        """Make every seek to committed offsets also rewind what has none (see below), and
        every commit wait for what was sent before it.

        Faust drops records it has fetched whenever a rebalance, a pause or a stopped flow
        interrupts their hand-over to the agents (``Consumer.getmany``), and relies on
        ``perform_seek`` to read them again from the committed offsets. But that seek (aiokafka's
        ``seek_to_committed``) moves only partitions with a committed offset above 0: on one
        that was never committed, or committed at 0, the dropped records are skipped for good,
        and with them a killed worker's uncommitted triggers, notices and results. So Faust's
        seek is wrapped once, at the first rebalance (its signal comes before the recovery's
        seek), and each seek is followed by :meth:`_rewind_uncommitted`.
        """
        consumer: Any = self.app.consumer  # the driver's consumer; ConsumerT lacks these
        if getattr(consumer, "_flowguard_seek", False):
            return
        faust_seek, faust_commit = consumer.perform_seek, consumer._commit_offsets
        faust_gap = consumer._add_gap

        async def perform_seek() -> None:
            await faust_seek()
            await self._rewind_uncommitted(consumer)

        async def commit_offsets(offsets: Any, start_new_transaction: bool = True) -> bool:
            # Faust commits an agent's input without waiting for what the agent sent meanwhile
            # (stream_publish_on_commit is off: it would hold every effect until a commit).
            # A SIGKILL between that commit and the producer's delivery lost the outputs of
            # input already committed (a retry command decided, never sent). So everything
            # sent before a commit is acknowledged by Kafka before the commit.
            await self.app.producer.flush()
            result: bool = await faust_commit(offsets, start_new_transaction)
            return result

        async def add_gap(tp: Any, offset_from: int, offset_to: int) -> None:
            # Faust counts the offsets it skipped (a jump between two fetched records) as
            # acknowledged, for compacted topics. Offsets of these topics never jump: a jump is
            # records Faust fetched and dropped, and counting them committed them unread. They
            # are left unacknowledged instead (the commit stops there), and read again.
            if tp.topic in self.topics.inputs():
                log.warning(
                    "%s[%d]: offsets %d-%d were skipped by the consumer; reading them again",
                    tp.topic, tp.partition, offset_from, offset_to - 1,
                )  # fmt: skip
                self._gaps.add(tp)
                return
            await faust_gap(tp, offset_from, offset_to)

        def new_offset(tp: Any) -> int | None:
            # Never past a record no agent acknowledged (see flowguard.live.commits): nothing
            # is committed and the partition is read again from its committed offset.
            if tp.topic in inputs:
                hole = unread_below(consumer._acked[tp], consumer._committed_offset[tp])
                if hole is not None:
                    if tp not in self._gaps:
                        log.warning(
                            "%s[%d]: offsets %d-%d were never handed to the agent; reading "
                            "them again", tp.topic, tp.partition, *hole,
                        )  # fmt: skip
                    self._gaps.add(tp)
                    return None
            offset: int | None = faust_new_offset(tp)
            return offset

        inputs = self.topics.inputs()
        faust_new_offset = consumer._new_offset
        consumer.perform_seek = perform_seek
        consumer._commit_offsets = commit_offsets
        consumer._add_gap = add_gap
        consumer._new_offset = new_offset
        consumer._flowguard_seek = True

    async def _rewind_uncommitted(self, consumer: Any) -> None:
        """Seek every agent's input partition that has no committed offset (or 0) to its
        earliest offset: events and scheduled, triggers, the bridges' results, the outbox."""
        inputs = self.topics.inputs()
        events = self.topics.source.topics[0]
        committed = consumer._committed_offset  # set by Faust's seek; 0 is kept as None
        mine = [tp for tp in consumer.assignment() if tp.topic in inputs]
        fresh = [tp for tp in mine if not committed.get(tp)]
        earliest = await consumer.earliest_offsets(*fresh) if fresh else {}
        if fresh:
            # On the consumer's thread; it also resets Faust's read offset of each partition
            # (Faust skips a record below it).
            await consumer.seek_wait({tp: earliest[tp] for tp in fresh})
        self.absence.reset({
            tp.partition: (committed.get(tp) or earliest[tp]) - 1
            for tp in mine
            if tp.topic == events
        })  # fmt: skip
        detected = set(self.topics.source.topics)
        self._next_read = {
            (tp.topic, tp.partition): committed.get(tp) or earliest[tp]
            for tp in mine
            if tp.topic in detected
        }

    # detect ------------------------------------------------------------------------

    async def _detect(self, stream: Any) -> None:
        """Events in batches: as many as are waiting (up to ``batch_max_events``).

        Under load a batch is whatever the consumer fetched; when the stream runs dry the
        batch is processed at once, so batching adds no latency. Acks are manual: an event is
        acked once the slots it changed are written (:mod:`flowguard.live.slots`). (Faust's
        ``take_events`` is not used: its buffer can take events while a batch is processed
        and ack them unseen.)
        """
        await self.feed.ready.wait()
        stream = stream.noack()
        self._stream = stream
        queue, limit = stream.channel.queue, self.settings.batch_max_events
        pending: list[Any] = []
        async for event in stream.events():
            if not self._in_turn(event.message):
                continue
            pending.append(event)
            if len(pending) < limit and not queue.empty():
                continue
            async with self._detecting:
                await self._detect_batch(pending, self.slots)
                self.slots.hold(pending, time.monotonic())
                await self._write_back(due_only=True)
            pending = []

    def _in_turn(self, message: Any) -> bool:
        """Whether ``message`` is the next record expected on its partition, to apply now.

        One past it means Faust dropped the ones before it (see :mod:`flowguard.live.commits`).
        Applying it would be wrong, not only late: a chain slot remembers the last offset it
        applied and passes over anything below it, so a dropped ``task-received`` (the task's
        name) read again after its ``task-failed`` was never applied, and the failure matched
        no workflow (a fault trial lost a notice this way). It is left unapplied and
        unacknowledged, and the partition is read again from its committed offset at the next
        tick. One before it is stale (:func:`flowguard.live.commits.in_turn`): passed over,
        unacknowledged (its first reading is acknowledged once written back)."""
        key = (message.topic, message.partition)
        turn = in_turn(self._next_read.get(key), message.offset)
        if turn == "ahead":
            if message.tp not in self._gaps:
                log.warning(
                    "%s[%d]: offset %d came before %d; reading the partition again",
                    message.topic, message.partition, message.offset, self._next_read[key],
                )  # fmt: skip
            self._gaps.add(message.tp)
            return False
        if turn == "behind":
            return False
        self._next_read[key] = message.offset + 1
        return True

    async def _write_back(self, *, due_only: bool) -> None:
        """Write detection's changed slots (if due), then ack the events that changed them.

        Called with ``_detecting`` held, by the agent after a batch and by the timer when the
        stream is quiet, so the last events of a burst are not held back for long.
        """
        slots, stream = self.slots, self._stream
        if stream is None or (due_only and not slots.due(time.monotonic())):
            return
        # Effects before state: what the held events caused is acknowledged before the state
        # that records it is written (see _detect_batch).
        await self.app.producer.flush()
        own = stream.current_event
        done = slots.write_back(stream._set_current_event)
        stream._set_current_event(own)  # the stream's own, as it was
        for index, event in enumerate(done, 1):
            await stream.ack(event)  # never suspends: a second's acks would hold the loop
            if index % ACKS_PER_YIELD == 0:
                await asyncio.sleep(0)

    async def _revoked(self, *_: Any, **__: Any) -> None:
        self.slots.forget()

    async def _detect_batch(self, events: list[Any], slots: Slots) -> None:
        """Apply a batch in order and send what it caused.

        Effects are acknowledged before the state that records them is written (the producer
        is flushed at each write-back): a crash in between applies the input again and sends
        the same effects again, which everything downstream deduplicates by id (executions,
        commands, outcomes). The other order would lose them: a due retry taken off its
        chain whose command never left.
        """
        sends: Steps = []
        letters = []
        events_topic = self.topics.source.topics[0]
        for event in events:
            message = event.message
            try:
                if event.value is None:
                    raise ValueError("the record has no value")
                if message.topic == events_topic:
                    sends += self._on_event(slots, event)
                else:
                    sends += self._on_scheduled(slots, event)
            except (ValueError, ValidationError) as exc:
                letters.append((message, event.value, f"cannot decode: {exc}"))
            if message.topic == events_topic:
                self.absence.applied[message.partition] = message.offset
        for message, value, reason in letters:
            await self.outputs.dead_letter(message, value, reason)
        for name, out in sends:
            await self._send_detected(name, out)

    def _is_offline(
        self, slots: Slots, partition: int, cluster: str, hostname: str, at: float
    ) -> bool:
        """Whether ``hostname`` was judged offline by ``at`` (a start it reports came late)."""
        mark = slots.get(self.tables.gone, detect.gone_key(partition, cluster, hostname))
        return detect.offline_by(mark, at)

    def _on_event(self, slots: Slots, event: Any) -> Steps:
        data = orjson.loads(event.value)
        if isinstance(data, dict) and data.get("kind") == "bridge.status":
            return []
        item = EVENT_ADAPTER.validate_python(data)
        metrics.event_seen(item.kind, item.cluster)
        index, offset = self.feed.index, event.message.offset
        if isinstance(item, WORKER_EVENT_TYPES):
            name = f"{item.cluster}/{item.hostname}"
            wslot, out = detect.on_worker_event(
                slots.get(self.tables.workers, name), item, offset, index, self.timing
            )
            slots.put(self.tables.workers, name, wslot, event)
        elif isinstance(item, TASK_EVENT_TYPES):
            key = event.key
            name = key.decode() if key else f"{item.cluster}/{item.task_id}"
            slot, out = detect.on_task_event(
                slots.get(self.tables.chains, name), name, item, offset, index,
                lambda cluster, host, at: self._is_offline(
                    slots, event.message.partition, cluster, host, at
                ),
                self.timing,
            )  # fmt: skip
            slots.put(self.tables.chains, name, slot, event)
        else:
            return []
        return [(name, out)]

    def _on_scheduled(self, slots: Slots, event: Any) -> Steps:
        item = SCHEDULED_ADAPTER.validate_json(event.value)
        index, now, partition = self.feed.index, time.time(), event.message.partition
        if isinstance(item, ScheduledRetry):
            slot, out = detect.on_scheduled(
                slots.get(self.tables.chains, item.chain_key), item, item.command.cluster
            )
            slots.put(self.tables.chains, item.chain_key, slot, event)
            return [(item.chain_key, out)]
        if isinstance(item, RetrySent):
            watched, out = detect.on_retry_sent(
                slots.get(self.tables.chains, item.chain_key), item, self.timing
            )
            slots.put(self.tables.chains, item.chain_key, watched, event)
            return [(item.chain_key, out)]
        if isinstance(item, CancelRetry):
            held = slots.get(self.tables.chains, item.chain_key)
            slots.put(self.tables.chains, item.chain_key, detect.on_cancel(held, item), event)
            return []
        if isinstance(item, Tick):
            return self._on_tick(slots, event, item, now)
        if isinstance(item, WorkerGone):
            mine = {
                k: v for k, v in slots.items(self.tables.chains)
                if partition_of(k.encode(), SCHEDULED.partitions) == partition
            }  # fmt: skip
            changed, out = detect.on_worker_gone(mine, item, index)
            for name, slot in changed.items():
                slots.put(self.tables.chains, name, slot, event)
            mark = detect.gone_key(partition, item.cluster, item.hostname)
            slots.put(self.tables.gone, mark, detect.GoneSlot.of(item), event)
            return [(f"{item.cluster}/{item.hostname}", out)]
        return []

    def _on_tick(self, slots: Slots, event: Any, item: Tick, now: float) -> Steps:
        partition = event.message.partition
        judged_at = self.absence.judged_at(partition, item.key)
        if judged_at is None:
            heapq.heappush(self._deadlines, (now + self.settings.tick_interval_seconds, item.key))
            why = self.absence.held(partition, item.key, now, self.settings.reread_stall_seconds)
            if why is not None:
                log.warning(
                    "%s: its deadlines wait for events partition %d to be read (%s)",
                    item.key, partition, why,
                )  # fmt: skip
            return []
        self.absence.passed(item.key)
        now = judged_at
        index = self.feed.index
        worker = slots.get(self.tables.workers, item.key)
        if worker is not None:
            wslot, out = detect.on_worker_tick(worker, index, now, self.timing)
            slots.put(self.tables.workers, item.key, wslot, event)
        else:
            slot, out = detect.on_chain_tick(
                slots.get(self.tables.chains, item.key), index, now, self.timing
            )
            slots.put(self.tables.chains, item.key, slot, event)
        return [(item.key, out)]

    async def _send_detected(self, name: str, out: detect.Out) -> None:
        """Send one step's effects."""
        for gone in out.gone:
            log.info("worker %s/%s offline (%s)", gone.cluster, gone.hostname, gone.reason)
        oldest = time.time() - self.settings.max_trigger_age_seconds
        for matched in out.matched:
            if matched.trigger.at < oldest:
                self._stale(matched)
                continue
            trigger = matched.trigger
            log.info("%s %s matched workflow %s", trigger.event, trigger.trigger_id,
                     matched.workflow_id, extra=execution_fields(
                         None, matched.workflow_id, trigger.cluster,
                         trigger.task.id if trigger.task else None))  # fmt: skip
            metrics.TRIGGERS.labels(matched.workflow_id).inc()
            await self.topics.triggers.send(
                key=matched.workflow_id.encode(), value=matched.model_dump_json().encode()
            )
        for gone in out.gone:
            for partition in range(SCHEDULED.partitions):
                await self.topics.scheduled.send(
                    key=name.encode(), value=gone.model_dump_json().encode(), partition=partition
                )
        for command in out.commands:
            await self.outputs.send_command(command)
        for outcome in out.outcomes:
            await self.topics.triggers.send(
                key=outcome.workflow_id.encode(), value=outcome.model_dump_json().encode()
            )
        for due in out.deadlines:
            heapq.heappush(self._deadlines, (due, name))

    def _stale(self, matched: Matched) -> None:
        """A trigger older than ``max_trigger_age_seconds`` is not acted on: a new consumer
        group (or one whose offsets expired) starts at the earliest offset, up to seven days
        back. Its state still counts (failure counts, orphans); only its actions are skipped."""
        self.stale_triggers += 1
        metrics.TRIGGERS_STALE.inc()
        count = self.stale_triggers
        if count & (count - 1) == 0:  # the 1st, 2nd, 4th, 8th, ...: visible, never a flood
            age = time.time() - matched.trigger.at
            log.warning(
                "%d trigger(s) not acted on: older than max_trigger_age_seconds (%gs); this "
                "one %s for workflow %s, %.0fs old", count,
                self.settings.max_trigger_age_seconds, matched.trigger.trigger_id,
                matched.workflow_id, age,
            )  # fmt: skip

    # timers --------------------------------------------------------------------------

    async def _tick(self) -> None:
        """Send a tick for every key whose wall-clock deadline has passed; write back detection's
        slots when due and the stream is quiet."""
        async with self._detecting:
            await self._write_back(due_only=True)
        if not self.app.in_recovery:
            self._applied_below_commits()
            await self._unstick()
        if self._scan and not self.app.in_recovery:
            self._scan = False
            self._rescan()
        if self._settle and self.feed.ready.is_set() and not self.app.in_recovery:
            self._settle = False
            settle_heap()
        now = time.time()
        due: set[str] = set()
        while self._deadlines and self._deadlines[0][0] <= now:
            due.add(heapq.heappop(self._deadlines)[1])
        for name in sorted(due):
            await self.topics.scheduled.send(
                key=name.encode(), value=Tick(key=name).model_dump_json().encode()
            )

    async def _ask_ends_forever(self) -> None:
        """:meth:`_ask_ends` about every ``ASK_ENDS_SECONDS``, one answer at a time."""
        while True:
            started = time.monotonic()
            await self._watch_recovery()
            await self._ask_ends()
            # Pacing between two questions, not a synchronization.
            await asyncio.sleep(max(0.0, ASK_ENDS_SECONDS - (time.monotonic() - started)))

    async def _watch_recovery(self) -> None:
        """Exit when a table recovery has read nothing for ``recovery_stall_exit_seconds`` while
        the broker answers (:class:`flowguard.live.readiness.RecoveryWatch`): waiting helps
        nothing then, and a restart gets the partitions assigned and recovered again. Exiting is
        a crash, which every effect is safe against (docs/worker.md); the partitions are not.
        A broker that does not answer stalls every recovery: that is waited out."""
        limit = self.settings.recovery_stall_exit_seconds
        recovery: Any = self.app.tables.recovery  # type: ignore[attr-defined]
        remaining = recovery.active_remaining_total() if self.app.in_recovery else None
        stalled = self._recovery.stalled_for(remaining, time.monotonic())
        if not limit or stalled <= limit:
            return
        consumer: Any = self.app.consumer
        tps = list(recovery.active_tps)[:1]
        try:
            async with asyncio.timeout(5.0):
                await consumer.earliest_offsets(*tps)  # the broker answers about them
        except Exception as exc:  # any failure: not the wedge
            log.warning("table recovery has read nothing for %.0fs; the broker does not "
                        "answer either (%s): waiting", stalled, type(exc).__name__)  # fmt: skip
            return
        log.error(
            "table recovery has read nothing for %.0fs (%d records to read from %s) while the "
            "broker answers: Faust's recovery is wedged; exiting (code %d) so that the "
            "partitions are assigned and recovered again", stalled, remaining,
            ", ".join(sorted({tp.topic for tp in recovery.active_tps})), EXIT_RECOVERY_WEDGED,
        )  # fmt: skip
        logging.shutdown()
        os._exit(EXIT_RECOVERY_WEDGED)

    async def _ask_ends(self) -> None:
        """The broker's end offsets of the input partitions held: for the absence gate (the
        events partitions) and for readiness and the re-read (all of them)."""
        if self.app.in_recovery or self.app.rebalancing:
            return
        consumer: Any = self.app.consumer
        events, inputs = self.topics.source.topics[0], self.topics.inputs()
        held = [tp for tp in consumer.assignment() if tp.topic in inputs]
        if not held:
            return
        asked_at = time.time()
        try:
            ends = await consumer.highwaters(*held)
        except (KafkaError, ConsumerNotStarted) as exc:  # asked again; absences wait
            log.debug("end offsets not answered: %s", exc)
            return
        self.readiness.observe_ends(dict(ends))
        self.absence.observe(
            {tp.partition: end for tp, end in ends.items() if tp.topic == events}, asked_at
        )

    def _applied_below_commits(self) -> None:
        """Take every detection input record below its partition's committed offset as applied.

        A commit covers only records acknowledged after their slots were written, by this
        process or the partition's owner before it. Detection's own marks can lag behind one:
        records applied just before a rebalance are committed just after it, once the marks
        were set from the older committed offset; then nothing read them again (they were
        applied), and a fault trial held a chain's delayed retry for good, its absence gate
        waiting for offsets 3-5 of a partition committed at 6."""
        consumer: Any = self.app.consumer  # the driver's consumer; ConsumerT lacks it
        committed = consumer._committed_offset
        events, applied = self.topics.source.topics[0], self.absence.applied
        moved = behind_commits(self._next_read, lambda key: committed.get(TP(*key)))
        for (topic, partition), offset in moved.items():
            self._next_read[topic, partition] = offset
            if topic == events:
                applied[partition] = max(applied.get(partition, -1), offset - 1)

    async def _unstick(self) -> None:
        """Read a stalled input partition again from its committed offset.

        A partition whose committed offset stays put for ``reread_stall_seconds`` while
        records wait behind it has a record Faust lost track of (dropped at a rebalance and
        never handed to the agent, so never acknowledged: seen in
        tests/e2e/test_rebalance_reads_everything.py). Reading again from the committed offset
        is safe: everything downstream deduplicates by id, as after a crash.
        """
        consumer: Any = self.app.consumer
        gaps, self._gaps = self._gaps, set()
        stalled = [(tp, consumer._committed_offset.get(tp)) for tp in gaps]
        busy = self.delivering.busy
        for tp, committed in [*stalled, *self.readiness.stalled(busy)]:
            if tp not in consumer.assignment():
                continue
            offset = committed
            if not offset:
                offset = (await consumer.earliest_offsets(tp))[tp]
            log.warning("%s[%d]: no progress past offset %s; reading it again from there",
                        tp.topic, tp.partition, offset)  # fmt: skip
            try:
                # On the consumer's own thread (Faust's seek moves aiokafka's fetch position
                # from this one, which aiokafka does not expect), and waited for.
                await consumer.seek_wait({tp: offset})
            except (KafkaError, ConsumerNotStarted, TimeoutError) as exc:
                log.warning("%s[%d]: seek not done (%s); trying again", tp.topic,
                            tp.partition, exc)  # fmt: skip
                self._gaps.add(tp)
                continue
            if (tp.topic, tp.partition) in self._next_read:
                # Everything below a committed offset was applied: the next record is this
                # one (else a commit made while detection expected an earlier record would
                # have it wait for that record for ever: seen in a fault trial).
                self._next_read[tp.topic, tp.partition] = offset

    def _rescan(self) -> None:
        """After an assignment: the deadlines of every chain and worker this process holds."""
        factor = self.settings.heartbeat_expiry_factor
        thresholds = self.feed.index.thresholds()
        self._deadlines = []
        for name, wslot in self.slots.items(self.tables.workers):
            if wslot.worker.online:
                self._deadlines.append((wslot.worker.expires_at(factor), name))
            if wslot.worker.orphans_due is not None:
                self._deadlines.append((wslot.worker.orphans_due, name))
        for name, slot in self.slots.items(self.tables.chains):
            out = detect.Out()
            detect.chain_deadlines(slot, thresholds, self.timing, out)
            self._deadlines.extend((due, name) for due in out.deadlines)
        heapq.heapify(self._deadlines)
