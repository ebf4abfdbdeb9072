"""Benchmark of the live app: ``flowguard worker`` as a real process on a real Kafka.

1. Throughput. ``--events`` normalized events (task sent, received, started, then succeeded or
   failed, 5% failures; keyed ``cluster/root_id`` as the bridge keys them) are produced to
   ``<prefix>.events`` first. A bare aiokafka consumer reads them all and decodes each one
   (``json.loads`` + ``EVENT_ADAPTER`` validation), before and after the worker (best kept).
   One worker then reads the same topic with 100 workflows, one of which retries each failure
   (delay 0). It is done when the group's committed offsets reach the end offsets of
   ``<prefix>.events`` and every failure has its execution record. Its time runs from its
   first write to the ``chains`` table's changelog (the first event applied; start-up is not
   counted) to the later of its last changelog write and its last execution record; CPU time
   per event is read from /proc for the worker and from ``process_time`` for the baseline.
   ``flowguard replay``'s path (``replay()``) then runs in this process on the same events
   and workflows (best of 3, every failure retried): issue 18's first goal is the worker at
   half of it.
2. Latency, per ``--rate``: a worker that is up (a probe failure got its retry command) gets
   that many events/s (5% failures, worker heartbeats) for ``--seconds`` after 2 s of warm-up;
   each failure's latency runs from just before it is handed to the producer to its retry
   command (delay_seconds 0) arriving at a consumer of ``<prefix>.commands``.
3. Memory: ``--tracked`` tasks that are sent, received and started but never finish (no chain
   settles) are fed to a fresh worker in four steps; its RSS is read after each step once the
   group has caught up, and a least-squares line through the points extrapolates to 1M.

Every run uses its own topic prefix and app id and deletes its topics at the end.

    python bench/live.py                                               # about 10 minutes
    python bench/live.py --events 10000 --seconds 5 --rate 500 --tracked 8000   # quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient  # noqa: E402

from bench._common import bare_read  # noqa: E402
from bridge.intake import RootMemory, encode, record_key  # noqa: E402
from flowguard.control.kafka_admin import create_topics, delete_topics, list_topics  # noqa: E402
from flowguard.control.store import WorkflowStore  # noqa: E402
from flowguard.engine.documents import parse_workflow  # noqa: E402
from flowguard.engine.matching import Published  # noqa: E402
from flowguard.replay import replay  # noqa: E402
from tests.integration.ops.probes import metric  # noqa: E402
from tests.processes import free_port  # noqa: E402
from topics.events import (  # noqa: E402
    EVENT_ADAPTER,
    Event,
    TaskFailed,
    TaskReceived,
    TaskSent,
    TaskStarted,
    TaskSucceeded,
    WorkerHeartbeat,
)
from topics.record import from_iso  # noqa: E402
from topics.registry import (  # noqa: E402
    COMMANDS,
    EVENTS,
    EXECUTION_LOG,
    TRIGGERS,
    WORKFLOW_HISTORY,
    WORKFLOWS,
)

CLUSTER = "bench"
FAILURE_RATE = 0.05
#: 99 workflows name one task exactly, one matches by glob: every failure matches exactly one.
NAMES = [f"app.tasks.t{i:02d}" for i in range(99)] + ["app.tasks.g1"]
Item = tuple[bytes, bytes]


def workflow(i: int, name: str) -> dict[str, Any]:
    pattern = "app.tasks.g*" if name.startswith("app.tasks.g") else name
    return {
        "name": f"retry {i:02d}",
        "trigger": {
            "event": "task.failed",
            "conditions": {"task_name_pattern": pattern, "error_pattern": "ConnectionError*"},
        },
        "actions": [{"type": "retry", "delay_seconds": 0, "max_attempts": 3}],
        "circuit_breaker": {"max_executions": 1_000_000, "time_window_hours": 1},
    }


# events -------------------------------------------------------------------------------------


def task(
    task_id: str, name: str, ts: float, end: str | None, cluster: str = CLUSTER,
    host: str = "celery@w1",
) -> list[Event]:  # fmt: skip
    """One task's events: sent, received, started, then ``end`` (failed/succeeded) or nothing."""
    queued = {"cluster": cluster, "task_id": task_id, "name": name, "args": f"({ts!r}, 'x')",
              "kwargs": "{}", "root_id": task_id, "retries": 0}  # fmt: skip
    at = {"cluster": cluster, "task_id": task_id, "hostname": host}
    events: list[Event] = [
        TaskSent(**queued, timestamp=ts, hostname="gen1@api", queue="celery", routing_key="celery"),
        TaskReceived(**queued, timestamp=ts + 0.001, hostname=host),
        TaskStarted(**at, timestamp=ts + 0.002, pid=4242),
    ]
    if end == "failed":
        events.append(
            TaskFailed(**at, timestamp=ts + 0.05, exception="ConnectionError('refused')",
                       traceback="Traceback (most recent call last):\nConnectionError: refused\n")
        )  # fmt: skip
    elif end == "succeeded":
        events.append(TaskSucceeded(**at, timestamp=ts + 0.05, result="None", runtime=0.048))
    return events


@dataclass
class Stream:
    """Events as Kafka records, keyed like the bridge keys them; the failures it holds."""

    items: list[Item] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    roots: RootMemory = field(default_factory=RootMemory)

    def add(self, events: list[Event]) -> None:
        for event in events:
            self.items.append((record_key(event, self.roots).encode(), encode(event)))
            if isinstance(event, TaskFailed):
                self.failures.append(event.task_id)


def pick_name(rng: random.Random, hot: float = 0.0) -> str:
    """A task name: the first (whose workflow then takes most triggers) with probability
    ``hot``, else any of the 100."""
    return NAMES[0] if rng.random() < hot else rng.choice(NAMES)


def backlog(events: int, seed: int = 7, hot: float = 0.0) -> Stream:
    """About ``events`` events of tasks that finish (5% fail), as a bridge would have sent them."""
    rng, stream, t0 = random.Random(seed), Stream(), time.time()
    index = 0
    while len(stream.items) < events:
        end = "failed" if rng.random() < FAILURE_RATE else "succeeded"
        name = pick_name(rng, hot)
        stream.add(task(f"{index:08x}-4a9e-9c1d", name, t0 + index * 0.001, end))
        index += 1
    return stream


# Kafka --------------------------------------------------------------------------------------


async def setup(bootstrap: str, prefix: str) -> None:
    await create_topics(bootstrap, prefix, 30)
    wanted = {WORKFLOWS.name(prefix), WORKFLOW_HISTORY.name(prefix)}

    async def listed() -> bool:
        return wanted <= set(await list_topics(bootstrap, 10))

    await until(listed, 30, "new topics in the metadata")
    async with WorkflowStore(bootstrap, prefix) as store:
        for i, name in enumerate(NAMES):
            await store.save(workflow(i, name), saved_by="bench")


async def teardown(bootstrap: str, prefix: str) -> None:
    """Delete this run's topics: the prefix's own and the app's changelogs (``<prefix>-app-*``)."""
    await delete_topics(bootstrap, prefix, 30)


async def produce(producer: AIOKafkaProducer, topic: str, items: list[Item]) -> None:
    for key, value in items:
        await producer.send(topic, value, key=key)
    await producer.flush()


def new_producer(bootstrap: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2,
        max_batch_size=256 * 1024,
    )  # fmt: skip


class Tail:
    """Reads every partition of a topic from the beginning, as records arrive."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
            fetch_max_wait_ms=100, max_partition_fetch_bytes=4 * 1024 * 1024,
        )  # fmt: skip
        self.partitions = [TopicPartition(topic, p) for p in range(partitions)]

    async def __aenter__(self) -> Tail:
        await self.consumer.start()
        self.consumer.assign(self.partitions)
        await self.consumer.seek_to_beginning(*self.partitions)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.consumer.stop()

    async def values(self, timeout_ms: int = 200) -> list[bytes]:
        batches = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=10_000)
        return [m.value for batch in batches.values() for m in batch if m.value is not None]


async def caught_up(bootstrap: str, group: str, topic: str) -> bool:
    """The group's committed offsets on ``topic`` are at its end offsets (nothing left)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        partitions = [TopicPartition(topic, p) for p in range(EVENTS.partitions)]
        ends = await consumer.end_offsets(partitions)
        done = {tp: meta.offset for tp, meta in committed.items() if tp.topic == topic}
        return all(done.get(tp, 0) >= end for tp, end in ends.items())
    finally:
        await consumer.stop()
        await admin.close()


async def until(probe: Any, timeout_seconds: float, what: str, pause: float = 0.2) -> None:
    """Wait for an async condition with a deadline (the pause only paces the probe)."""
    deadline = time.monotonic() + timeout_seconds
    while not await probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout_seconds:g} s")
        await asyncio.sleep(pause)


# the worker process -------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Worker:
    """``python -m flowguard worker`` on the run's prefix, its log in a file."""

    def __init__(self, bootstrap: str, prefix: str, log: Path) -> None:
        self.app_id, self.log, self.port = f"{prefix}-app", log, free_port()
        self.env = {**os.environ, "PYTHONPATH": str(ROOT),
                    "FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                    "FLOWGUARD_TOPIC_PREFIX": prefix, "FLOWGUARD_APP_ID": self.app_id,
                    "FLOWGUARD_HEALTH_PORT": str(self.port)}  # fmt: skip
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Worker:
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "flowguard", "worker", stdout=out, stderr=out,
                env=self.env, cwd=ROOT,
            )  # fmt: skip
        return self

    async def __aexit__(self, *_: object) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    def rss_mb(self) -> float:
        assert self.proc is not None
        if self.proc.returncode is not None:
            raise RuntimeError(f"flowguard worker exited; see {self.log}")
        return rss_mb(self.proc.pid)

    async def full_gc(self) -> tuple[int, float]:
        """Full garbage collections so far: how many, and the seconds they stood the process
        still (the worker's ``flowguard_gc_pause_seconds{generation="2"}`` on /metrics)."""
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{self.port}/metrics", timeout=10)).text
        name = "flowguard_gc_pause_seconds"
        count = metric(text, f"{name}_count", generation="2") or 0.0
        return int(count), metric(text, f"{name}_sum", generation="2") or 0.0

    def cpu_seconds(self) -> float:
        """User + system CPU time of the worker process so far."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# 1. throughput -----------------------------------------------------------------------------


async def bare(bootstrap: str, topic: str, expected: int) -> tuple[float, float]:
    """The baseline: every partition read to the end, each value json-decoded and validated.

    Returns events/s and CPU µs per event (this process does nothing else meanwhile).
    """
    return await bare_read(
        bootstrap, topic, expected, lambda value: EVENT_ADAPTER.validate_python(json.loads(value))
    )


async def faust_floor(
    bootstrap: str, topic: str, expected: int, app_id: str, tmp: Path
) -> tuple[float, float]:
    """A Faust agent that only counts the same backlog (bench/faust_floor.py): events/s, CPU µs."""
    out = tmp / f"{app_id}.json"
    env = {**os.environ, "FLOOR_TOPIC": topic, "FLOOR_EVENTS": str(expected),
           "FLOOR_APP": app_id, "FLOOR_BOOTSTRAP": bootstrap, "FLOOR_OUT": str(out)}  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "bench" / "faust_floor.py"), "worker", "-l", "warn",
        env=env, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await asyncio.wait_for(proc.wait(), max(180.0, expected / 500))
    finally:
        if proc.returncode is None:  # timed out: not left behind holding Faust's web port
            proc.kill()
            await proc.wait()
    result = json.loads(out.read_text())
    return float(result["rate"]), float(result["cpu_us"])


async def recorded(log: Tail, times: list[float]) -> int:
    """Add the ``recorded_at`` of new seq-0 execution records to ``times``; how many so far."""
    for value in await log.values():
        record = json.loads(value)
        if record["seq"] == 0:
            times.append(from_iso(record["recorded_at"]))
    return len(times)


async def span(bootstrap: str, topic: str, partitions: int) -> tuple[float, float]:
    """The first and last record timestamps of a topic (its writer's clock, CreateTime)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        firsts, lasts = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        stamps: list[float] = []
        for tp in (tp for tp in tps if lasts[tp] > firsts[tp]):
            consumer.assign([tp])
            for offset in (firsts[tp], lasts[tp] - 1):
                consumer.seek(tp, offset)
                stamps.append((await asyncio.wait_for(consumer.getone(tp), 10)).timestamp / 1e3)
        return min(stamps), max(stamps)
    finally:
        await consumer.stop()


def cpu_at(samples: list[tuple[float, float]], when: float) -> float:
    """The worker's CPU seconds at wall time ``when``, from the samples taken while waiting."""
    before = [cpu for at, cpu in samples if at <= when]
    return before[-1] if before else samples[0][1]


def replayed(stream: Stream, rounds: int = 3) -> tuple[float, float]:
    """``flowguard replay``'s path (``replay()``: decode, the engine, every record serialized)
    on the same events and workflows, in this process: events/s and CPU µs/event, best of
    ``rounds``. Issue 18's first goal: the worker at half of it (Kafka and Faust cost no more
    than the engine)."""
    flows = [Published.of(parse_workflow(workflow(i, name), source="bench"), version=1)
             for i, name in enumerate(NAMES)]  # fmt: skip
    values = [value for _, value in stream.items]
    best_rate, best_cpu = 0.0, float("inf")
    for _ in range(rounds):
        started, cpu = time.perf_counter(), time.process_time()
        records = sum(1 for record in replay(flows, values) if record.outcome == "success")
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        if records != len(stream.failures):
            raise RuntimeError(f"replay retried {records} of {len(stream.failures)} failures")
        best_rate = max(best_rate, len(values) / wall)
        best_cpu = min(best_cpu, cpu / len(values) * 1e6)
    return best_rate, best_cpu


async def throughput(bootstrap: str, events: int, tmp: Path) -> dict[str, Any]:
    """A backlog through the worker, from its first table write to its last execution record."""
    prefix = f"bench-live-{uuid.uuid4().hex[:8]}"
    try:
        await setup(bootstrap, prefix)
        stream, topic = backlog(events), EVENTS.name(prefix)
        producer = new_producer(bootstrap)
        await producer.start()
        try:
            await produce(producer, topic, stream.items)
        finally:
            await producer.stop()
        total = len(stream.items)
        bare_rate, bare_cpu = await bare(bootstrap, topic, total)
        floor_rate, floor_cpu = await faust_floor(bootstrap, topic, total, f"{prefix}-floor", tmp)
        times: list[float] = []
        samples: list[tuple[float, float]] = []
        async with (
            Worker(bootstrap, prefix, tmp / "throughput.log") as worker,
            Tail(bootstrap, EXECUTION_LOG.name(prefix), EXECUTION_LOG.partitions) as log,
        ):

            async def done() -> bool:
                samples.append((time.time(), worker.cpu_seconds()))
                if await recorded(log, times) < len(stream.failures):
                    return False
                return await caught_up(bootstrap, worker.app_id, topic)

            await until(done, max(180.0, total / 200), "the end of the backlog", pause=0.1)
            # The worker's first write: a match (sent as soon as a batch is applied) or a
            # changelog record (written up to state_flush_seconds after the change).
            first, last = await span(bootstrap, f"{worker.app_id}-chains-changelog", 12)
            first = min(first, (await span(bootstrap, TRIGGERS.name(prefix), 12))[0])
        again = await bare(bootstrap, topic, total)
        last = max(last, *times)
        cpu = cpu_at(samples, last) - cpu_at(samples, first)
        replay_rate, replay_cpu = replayed(stream)
        return {"events": total, "failures": len(stream.failures), "seconds": last - first,
                "replay": replay_rate, "replay_cpu": replay_cpu,
                "bare": max(bare_rate, again[0]), "bare_cpu": min(bare_cpu, again[1]),
                "floor": floor_rate, "floor_cpu": floor_cpu,
                "worker": total / (last - first), "first_record": min(times) - first,
                "worker_cpu": cpu / total * 1e6}  # fmt: skip
    finally:
        await teardown(bootstrap, prefix)


# 2. latency --------------------------------------------------------------------------------


@dataclass
class Paced:
    """A live stream at a steady rate: when each failure was handed to the producer."""

    rate: int
    sent: dict[str, float] = field(default_factory=dict)
    rng: random.Random = field(default_factory=lambda: random.Random(5))
    roots: RootMemory = field(default_factory=RootMemory)
    index: int = 0

    def events(self) -> Iterator[Event]:
        while True:
            now = time.time()
            if self.index % 250 == 0:  # 500 tasks/s: a heartbeat about every 0.5 s
                yield WorkerHeartbeat(
                    cluster=CLUSTER, hostname="celery@w1", timestamp=now, freq=2.0, active=1
                )
            end = "failed" if self.rng.random() < FAILURE_RATE else "succeeded"
            yield from task(f"live-{self.index:08x}", self.rng.choice(NAMES), now, end)
            self.index += 1

    async def run(self, producer: AIOKafkaProducer, topic: str, seconds: float) -> int:
        """Produce for ``seconds`` in 10 ms slices; returns how many events were produced."""
        loop, events, count = asyncio.get_running_loop(), self.events(), 0
        started = loop.time()
        while (elapsed := loop.time() - started) < seconds:
            while count < elapsed * self.rate:
                event = next(events)
                if isinstance(event, TaskFailed):
                    self.sent[event.task_id] = time.time()
                key = record_key(event, self.roots).encode()
                await producer.send(topic, encode(event), key=key)
                count += 1
            await asyncio.sleep(0.01)  # pacing, not synchronization
        return count


async def read_commands(commands: Tail, arrived: dict[str, float]) -> None:
    while True:
        values = await commands.values(timeout_ms=100)
        now = time.time()
        for value in values:
            arrived.setdefault(json.loads(value)["original_task_id"], now)


async def latency(bootstrap: str, rate: int, seconds: float, tmp: Path) -> dict[str, Any]:
    prefix = f"bench-live-{uuid.uuid4().hex[:8]}"
    try:
        await setup(bootstrap, prefix)
        topic, arrived = EVENTS.name(prefix), dict[str, float]()
        producer = new_producer(bootstrap)
        await producer.start()
        async with (
            Worker(bootstrap, prefix, tmp / "latency.log"),
            Tail(bootstrap, COMMANDS.name(prefix), COMMANDS.partitions) as commands,
        ):
            reader = asyncio.create_task(read_commands(commands, arrived))
            try:
                probe = Stream()
                probe.add(task("probe", NAMES[0], time.time(), "failed"))
                await produce(producer, topic, probe.items)

                async def up() -> bool:
                    return "probe" in arrived

                await until(up, 180, "retry command for the probe")
                await Paced(rate).run(producer, topic, 2.0)  # warm-up, not measured
                paced = Paced(rate, index=10**7)
                produced = await paced.run(producer, topic, seconds)
                await producer.flush()

                async def all_in() -> bool:
                    return all(t in arrived for t in paced.sent)

                await until(all_in, max(60.0, produced / 200), "retry commands for every failure")
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
                await producer.stop()
        ms = sorted((arrived[t] - at) * 1000 for t, at in paced.sent.items())
        return {"rate": produced / seconds, "failures": len(ms), "p50": statistics.median(ms),
                "p99": ms[min(len(ms) - 1, int(0.99 * len(ms)))], "max": ms[-1]}  # fmt: skip
    finally:
        await teardown(bootstrap, prefix)


# 3. memory ---------------------------------------------------------------------------------


async def memory(bootstrap: str, tracked: int, tmp: Path, steps: int = 4) -> dict[str, Any]:
    prefix = f"bench-live-{uuid.uuid4().hex[:8]}"
    try:
        await setup(bootstrap, prefix)
        topic, points = EVENTS.name(prefix), list[tuple[int, float]]()
        producer = new_producer(bootstrap)
        await producer.start()
        try:
            async with Worker(bootstrap, prefix, tmp / "memory.log") as worker:
                app_id = worker.app_id

                async def idle() -> bool:
                    return await caught_up(bootstrap, app_id, topic)

                stream, t0 = Stream(), time.time()
                stream.add(task("probe", NAMES[0], t0, "succeeded"))
                await produce(producer, topic, stream.items)
                await until(idle, 180, "the worker to read the probe")
                points.append((0, worker.rss_mb()))
                for step in range(steps):
                    stream = Stream()
                    for i in range(step * tracked // steps, (step + 1) * tracked // steps):
                        stream.add(task(f"held-{i:08x}", NAMES[i % 100], t0 + i * 1e-4, None))
                    await produce(producer, topic, stream.items)
                    await until(idle, max(180.0, tracked / 500), "the group to catch up")
                    points.append(((step + 1) * tracked // steps, worker.rss_mb()))
        finally:
            await producer.stop()
        slope, intercept = fit(points)
        return {"points": points, "per_task_bytes": slope * 1024 * 1024,
                "at_1m": intercept + slope * 1_000_000}  # fmt: skip
    finally:
        await teardown(bootstrap, prefix)


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares line through (tasks, MB): MB per task, and MB at none."""
    xs, ys = [float(x) for x, _ in points], [y for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    return slope, my - slope * mx


# report ------------------------------------------------------------------------------------


def table(args: argparse.Namespace, t: dict[str, Any], lats: list[dict[str, Any]],
          mem: dict[str, Any]) -> str:  # fmt: skip
    rows = ["| measure | figure | ratio / goal |", "|---|---:|---:|"]
    if t:
        cpu_ratio = t["bare_cpu"] / t["worker_cpu"]
        rows += [
            f"| bare aiokafka consumer, json + EVENT_ADAPTER, {t['events']:,} events "
            f"| {t['bare']:,.0f} events/s; {t['bare_cpu']:.0f} µs CPU/event | 1.00 |",
            f"| a Faust agent that only counts (bench/faust_floor.py), same backlog "
            f"| {t['floor']:,.0f} events/s; {t['floor_cpu']:.0f} µs CPU/event "
            f"| {t['floor'] / t['bare']:.2f} wall, {t['bare_cpu'] / t['floor_cpu']:.2f} CPU |",
            f"| `flowguard worker`, 100 workflows, {t['failures']:,} failures retried "
            f"| {t['worker']:,.0f} events/s; {t['worker_cpu']:.0f} µs CPU/event "
            f"| {t['worker'] / t['bare']:.2f} wall, {cpu_ratio:.2f} CPU (goal ≥ 0.5); "
            f"{t['worker'] / t['floor']:.2f} of the Faust agent |",
            f"| `flowguard replay`'s path (`replay()`) on the same events and workflows, in "
            f"process | {t['replay']:,.0f} events/s; {t['replay_cpu']:.0f} µs CPU/event "
            f"| worker / replay: {t['worker'] / t['replay']:.2f} wall, "
            f"{t['replay_cpu'] / t['worker_cpu']:.2f} CPU (goal ≥ 0.5) |",
        ]
    for lat in lats:
        rows += [
            f"| failure → retry command at {lat['rate']:,.0f} events/s for {args.seconds:g} s "
            f"({lat['failures']} failures): p50 / p99 / max "
            f"| {lat['p50']:,.0f} / {lat['p99']:,.0f} / {lat['max']:,.0f} ms | p99 goal < 100 ms |",
        ]
    if mem:
        for tasks, mb in mem["points"]:
            rows.append(f"| worker RSS, {tasks:,} tracked tasks | {mb:,.0f} MB | |")
        measured = mem["points"][-1][0]
        how = "measured" if measured >= 1_000_000 else f"extrapolated from {measured:,}"
        rows.append(
            f"| worker RSS, 1,000,000 tracked tasks ({how}, {mem['per_task_bytes']:,.0f} B/task) "
            f"| {mem['at_1m']:,.0f} MB | |"
        )
    return "\n".join(rows)


async def run(args: argparse.Namespace) -> None:
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(args.logs or name)
        t = await throughput(args.bootstrap, args.events, tmp) if args.events else {}
        if t:
            print(
                f"backlog: {t['seconds']:.1f} s; "
                f"first execution record after {t['first_record']:.1f} s"
            )
        lats = [
            await latency(args.bootstrap, rate, args.seconds, tmp)
            for rate in (args.rate if args.seconds else [])
        ]
        mem = await memory(args.bootstrap, args.tracked, tmp) if args.tracked else {}
    cores, end_load = os.cpu_count(), os.getloadavg()[0]
    print(f"python {platform.python_version()}, {cores} cores, Kafka at {args.bootstrap}, "
          f"load average {load:.1f} at the start, {end_load:.1f} at the end\n")  # fmt: skip
    print(table(args, t, lats, mem))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=50_000, help="throughput backlog; 0 skips")
    parser.add_argument("--seconds", type=float, default=20, help="latency run; 0 skips")
    parser.add_argument(
        "--rate", type=int, nargs="+", default=[2_000, 200], help="latency runs, events/s"
    )
    parser.add_argument("--tracked", type=int, default=24_000, help="memory run; 0 skips")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--logs", help="keep the workers' logs in this directory")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
