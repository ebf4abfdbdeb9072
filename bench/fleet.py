"""Fleet benchmark: many simulated Celery clusters through real ``flowguard worker`` processes.

``--clusters`` clusters (50) publish as their bridges would: each event a ``topics.events`` model
encoded and keyed by the bridge's own ``bridge.intake.encode`` and ``topics.keys.record_key``.
Rates are uneven: 3 busy clusters (weight 10, 8 worker hosts), 7 medium (3, 4 hosts) and the
rest quiet (0.5, 2 hosts); tasks go sent, received, started, then succeeded or (5%) failed
with ``ConnectionError``; every host sends worker-online, then a heartbeat every 2 s for the
whole run. Two incidents in the live phase:

- **a worker dies** in one cluster a third of the way in: its heartbeats stop (SIGKILL sends
  nothing more), a task it started never ends;
- **a failure storm** in another at the half: one task (``app.tasks.charge``) fails at
  ``--storm-rate`` tasks/s for ``--storm-seconds`` on top of that cluster's traffic.

Workflows, each with a ``--breaker`` (1000 executions per 60 s): retry every
``ConnectionError`` (delay 0; one workflow for all clusters, or ``--retry-per-cluster``), a
webhook to a local recording server for every failure of one cluster (scoped by ``cluster``),
and a webhook for every worker that goes offline. Each worker count (``--workers``: 1, then 2
processes in one consumer group) gets a fresh topic prefix and two phases:

1. **live**: ``--rate`` events/s of tasks for ``--seconds``; per cluster: triggers (matches on
   ``<prefix>.triggers``), executions (distinct seq-0 records; how many skipped), decision
   latency (failure event's timestamp -> its execution record's Kafka timestamp on the log,
   p50/p99 over both task.failed workflows), lag (the most of the cluster's records the group
   had not committed at a 1 s sample, and the age of the oldest); CPU per event.
2. **capacity**: ``--backlog`` events of tasks of the same mix produced at once; sustained
   events/s (first backlog event -> the last failure's execution record) and CPU per event.

Done when every failure has its execution records, the dead worker its worker.offline one,
and the group has committed what was produced. In the first run, on the same events topic:
a bare aiokafka consumer decoding every event and a counting Faust agent (``bench/live.py``'s
baselines), the records and bytes each topic received per input event, and each table's
changelog value sizes (a slot's JSON). Then ``bench/live.py``'s memory step (RSS per chain
held) and a capacity model for ``--model-clusters`` (1,000) clusters from these figures.

    python bench/fleet.py --json fleet.json  # about 8 minutes on 2 cores
    python bench/fleet.py --quick            # 10 clusters, short phases: about 2 minutes
    python bench/fleet.py --report fleet.json   # the tables and the model again
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import sys
import tempfile
import time
import uuid
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaProducer  # noqa: E402
from aiokafka.partitioner import DefaultPartitioner  # noqa: E402

from bench._common import (  # noqa: E402
    committed,
    end_offsets,
    members,
    percentile,
    read_all,
    topic_load,
)
from bench.live import (  # noqa: E402
    Tail,
    Worker,
    bare,
    cpu_at,
    faust_floor,
    memory,
    new_producer,
    task,
    teardown,
    until,
)
from bench.soak import table_keys  # noqa: E402
from bridge.intake import encode  # noqa: E402
from flowguard.control.kafka_admin import create_topics, list_topics  # noqa: E402
from flowguard.control.store import WorkflowStore  # noqa: E402
from tests.httpserver import RecordingServer  # noqa: E402
from tests.processes import free_port  # noqa: E402
from topics.events import Event, TaskFailed, WorkerHeartbeat, WorkerOnline  # noqa: E402
from topics.keys import RootMemory, record_key  # noqa: E402
from topics.registry import EVENTS, EXECUTION_LOG, TRIGGERS, WORKFLOWS  # noqa: E402

FAILURE_RATE = 0.05
HEARTBEAT_SECONDS = 2.0
TASK_NAMES = [f"app.tasks.t{i:02d}" for i in range(40)]
STORM_TASK = "app.tasks.charge"
RETRY, NOTIFY, OFFLINE = "Retry connection errors", "Tell the notified cluster", "Workers offline"


# the fleet ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    name: str
    weight: float
    hosts: tuple[str, ...]


def fleet(count: int) -> list[Cluster]:
    """3 busy clusters, 7 medium, the rest quiet (a few carry most of the load)."""
    clusters = []
    for i in range(count):
        weight, hosts = (10.0, 8) if i < 3 else (3.0, 4) if i < 10 else (0.5, 2)
        name = f"c{i:02d}"
        clusters.append(Cluster(name, weight, tuple(f"celery@{name}-w{h}" for h in range(hosts))))
    return clusters


@dataclass(frozen=True)
class Roles:
    """Which cluster is notified by webhook, which loses a worker, which has the storm."""

    notified: str
    dying: str
    storm: str

    @classmethod
    def of(cls, clusters: list[Cluster]) -> Roles:
        n = len(clusters)
        return cls(clusters[0].name, clusters[min(4, n - 2)].name, clusters[min(7, n - 1)].name)


def workflows(
    roles: Roles, hooks: RecordingServer, limit: str, retry_scopes: list[str | None]
) -> list[dict[str, Any]]:
    """The fleet's workflows, each with a breaker of ``limit`` ("executions/seconds"): a retry
    workflow per scope (``None``: every cluster), a webhook for the notified cluster's failures
    and one for every worker that goes offline."""
    most, seconds = limit.split("/")
    breaker = {"max_executions": int(most), "time_window_seconds": float(seconds)}
    retries = [
        {"name": f"{RETRY} {scope or 'anywhere'}", "circuit_breaker": breaker,
         "trigger": {"event": "task.failed", "conditions": {
             "error_pattern": "ConnectionError*", **({"cluster": scope} if scope else {})}},
         "actions": [{"type": "retry", "delay_seconds": 0, "max_attempts": 3}]}
        for scope in retry_scopes
    ]  # fmt: skip
    return [*retries,
        {"name": NOTIFY, "circuit_breaker": breaker,
         "trigger": {"event": "task.failed", "conditions": {"cluster": roles.notified}},
         "actions": [{"type": "webhook", "url": hooks.url_for(f"/{roles.notified}")}]},
        {"name": OFFLINE, "circuit_breaker": breaker, "trigger": {"event": "worker.offline"},
         "actions": [{"type": "webhook", "url": hooks.url_for("/offline")}]},
    ]  # fmt: skip


@dataclass
class Traffic:
    """The fleet's events, produced as their bridges would; what was sent and when."""

    clusters: list[Cluster]
    roles: Roles
    phase: str
    rng: random.Random = field(default_factory=lambda: random.Random(11))
    roots: RootMemory = field(default_factory=RootMemory)
    #: failure task id -> (cluster, the failure event's timestamp)
    failures: dict[str, tuple[str, float]] = field(default_factory=dict)
    #: (send future, cluster, when handed to the producer), events topic only
    sent: list[tuple[Any, str, float]] = field(default_factory=list)
    dead: str | None = None
    last_beat: float = 0.0
    index: int = 0
    cum: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cum = _cumulative([c.weight for c in self.clusters])

    async def emit(self, producer: AIOKafkaProducer, topic: str, event: Event) -> None:
        key = record_key(event, self.roots).encode()
        future = await producer.send(topic, encode(event), key=key)
        self.sent.append((future, event.cluster, time.time()))
        if isinstance(event, TaskFailed):
            self.failures[event.task_id] = (event.cluster, event.timestamp)

    async def one_task(
        self, producer: AIOKafkaProducer, topic: str, cluster: Cluster, name: str | None = None
    ) -> None:
        """A task's four events, its end now (``name`` given: a storm task, which fails)."""
        hosts = [h for h in cluster.hosts if h != self.dead] or list(cluster.hosts)
        end = "failed" if name or self.rng.random() < FAILURE_RATE else "succeeded"
        now, self.index = time.time(), self.index + 1
        name = name or self.rng.choice(TASK_NAMES)
        task_id = f"{self.phase}-{cluster.name}-{self.index:08x}"
        for event in task(task_id, name, now - 0.05, end, cluster.name, self.rng.choice(hosts)):
            await self.emit(producer, topic, event)

    async def tasks(self, producer: AIOKafkaProducer, topic: str, count: int) -> None:
        for cluster in self.rng.choices(self.clusters, cum_weights=self.cum, k=count):
            await self.one_task(producer, topic, cluster)

    async def beats(self, producer: AIOKafkaProducer, topic: str, due: dict[str, float]) -> None:
        """Heartbeats of every host whose turn has come (each host every 2 s, staggered)."""
        now = time.time()
        for cluster in self.clusters:
            for host in cluster.hosts:
                if due[host] <= now and host != self.dead:
                    due[host] += HEARTBEAT_SECONDS
                    beat = WorkerHeartbeat(cluster=cluster.name, hostname=host, timestamp=now,
                                           freq=HEARTBEAT_SECONDS, active=1)  # fmt: skip
                    await self.emit(producer, topic, beat)
                    if cluster.name == self.roles.dying and host == cluster.hosts[-1]:
                        self.last_beat = now


def _cumulative(weights: list[float]) -> list[float]:
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return out


@dataclass
class Plan:
    """The live phase's shape: rate, length, when the worker dies and the storm blows."""

    rate: float
    seconds: float
    storm_rate: float
    storm_seconds: float

    def storm(self, elapsed: float) -> bool:
        return self.seconds / 2 <= elapsed < self.seconds / 2 + self.storm_seconds


async def pulse(traffic: Traffic, producer: AIOKafkaProducer, topic: str) -> None:
    """Every host online, then its heartbeats every 2 s (staggered) until cancelled; a host
    that died (``traffic.dead``) sends nothing more."""
    start = time.time()
    hosts = [h for c in traffic.clusters for h in c.hosts]
    due = {h: start + i * HEARTBEAT_SECONDS / len(hosts) for i, h in enumerate(hosts)}
    for cluster in traffic.clusters:
        for host in cluster.hosts:
            online = WorkerOnline(cluster=cluster.name, hostname=host, timestamp=start,
                                  freq=HEARTBEAT_SECONDS)  # fmt: skip
            await traffic.emit(producer, topic, online)
    while True:
        await traffic.beats(producer, topic, due)
        await asyncio.sleep(0.02)  # pacing, not synchronization


async def live_traffic(
    traffic: Traffic, beats: Traffic, producer: AIOKafkaProducer, topic: str, plan: Plan
) -> dict[str, Any]:
    """Produce ``plan.rate`` events/s (4 events a task) in 10 ms slices (heartbeats: ``beats``,
    whose host in the dying cluster stops a third of the way in)."""
    by_name = {c.name: c for c in traffic.clusters}
    start, beats_before = time.time(), len(beats.sent)
    done = storm_done = 0
    while (elapsed := time.time() - start) < plan.seconds:
        if traffic.dead is None and elapsed >= plan.seconds / 3:
            dying = by_name[traffic.roles.dying]
            traffic.dead = beats.dead = dying.hosts[-1]
            for event in task(f"orphan-{dying.name}", TASK_NAMES[0], time.time(), None,
                              dying.name, traffic.dead):  # fmt: skip
                await traffic.emit(producer, topic, event)
        due_tasks = int(elapsed * plan.rate / 4) - done
        await traffic.tasks(producer, topic, due_tasks)
        done += due_tasks
        if plan.storm(elapsed):
            storm_due = int((elapsed - plan.seconds / 2) * plan.storm_rate) - storm_done
            for _ in range(storm_due):
                await traffic.one_task(producer, topic, by_name[traffic.roles.storm], STORM_TASK)
            storm_done += storm_due
        await asyncio.sleep(0.01)  # pacing, not synchronization
    seconds, events = time.time() - start, len(traffic.sent) + len(beats.sent) - beats_before
    await producer.flush()
    return {"seconds": seconds, "events": events, "storm_tasks": storm_done,
            "dead": traffic.dead, "last_beat": beats.last_beat}  # fmt: skip


# Kafka: reading what the workers wrote -------------------------------------------------------


class Log(Tail):
    """The execution log as it is written: (Kafka timestamp, record) of every record."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        super().__init__(bootstrap, EXECUTION_LOG.name(prefix), EXECUTION_LOG.partitions)
        self.records: list[tuple[float, dict[str, Any]]] = []

    async def run(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=200, max_records=10_000)
            for batch in batches.values():
                self.records += [(m.timestamp / 1e3, json.loads(m.value or b"{}")) for m in batch]

    def decided(self, workflow: str) -> dict[str, float]:
        """Task id (or worker hostname) -> when its seq-0 record of ``workflow`` (a workflow
        whose name starts so) was written."""
        out: dict[str, float] = {}
        for at, record in self.records:
            if record.get("seq") == 0 and record["workflow"]["name"].startswith(workflow):
                subject = record["task"]["id"] if record["task"] else record["worker"]["hostname"]
                out.setdefault(subject, at)
        return out


async def sample_commits(
    bootstrap: str, group: str, topic: str, out: list[tuple[float, dict[int, int]]]
) -> None:
    while True:
        out.append((time.time(), await committed(bootstrap, group, topic)))
        await asyncio.sleep(1.0)  # a sampling period, not synchronization


async def lag_by_cluster(
    produced: list[tuple[Any, str, float]], samples: list[tuple[float, dict[int, int]]]
) -> dict[str, tuple[int, float]]:
    """Per cluster, the most records not yet committed at a sample, and the age of the oldest."""
    found: dict[tuple[str, int], list[tuple[int, float]]] = defaultdict(list)
    for future, cluster, at in produced:
        meta = await future
        found[cluster, meta.partition].append((meta.offset, at))
    sent = {where: ([o for o, _ in sorted(rows)], [t for _, t in sorted(rows)])
            for where, rows in found.items()}  # fmt: skip
    worst: dict[str, tuple[int, float]] = defaultdict(lambda: (0, 0.0))
    for when, done in samples:
        for (cluster, partition), (offsets, times) in sent.items():
            first, last = bisect_left(offsets, done.get(partition, 0)), bisect_right(times, when)
            if last > first:
                records, age = worst[cluster]
                worst[cluster] = (max(records, last - first), max(age, when - times[first]))
    return worst


# one worker count ----------------------------------------------------------------------------


@dataclass
class Run:
    """Everything one worker count measured."""

    workers: int
    clusters: list[dict[str, Any]] = field(default_factory=list)
    overall: dict[str, Any] = field(default_factory=dict)
    topics: dict[str, Any] = field(default_factory=dict)


async def start_workers(
    bootstrap: str, prefix: str, count: int, tmp: Path
) -> tuple[list[Worker], list[int]]:
    workers, ports = [], []
    for i in range(count):
        worker, port = Worker(bootstrap, prefix, tmp / f"{prefix}-w{i}.log"), free_port()
        worker.env.update({"FLOWGUARD_ACTIONS_ALLOW_HOSTS": "127.0.0.1",
                           "FLOWGUARD_HEALTH_PORT": str(port),
                           "FLOWGUARD_DATA_DIR": str(tmp / f"{prefix}-w{i}")})  # fmt: skip
        workers.append(await worker.__aenter__())
        ports.append(port)
    return workers, ports


async def ready(
    bootstrap: str, prefix: str, workers: list[Worker], log: Log, producer: AIOKafkaProducer
) -> None:
    """Every worker in the group, and a probe failure on every partition decided."""

    async def joined() -> bool:
        return await members(bootstrap, workers[0].app_id) == len(workers)

    await until(joined, 180, f"{len(workers)} workers in a stable group")
    probes = probe_ids(EVENTS.partitions)
    roots = RootMemory()
    for task_id in probes:
        for event in task(task_id, TASK_NAMES[0], time.time(), "failed", "probe"):
            key = record_key(event, roots).encode()
            await producer.send(EVENTS.name(prefix), encode(event), key=key)
    await producer.flush()

    async def probed() -> bool:
        return probes <= set(log.decided(RETRY))

    await until(probed, 180, "the probes' executions (the workers up)")


def probe_ids(partitions: int) -> set[str]:
    """Task ids of cluster ``probe`` whose keys land on every partition (Kafka's murmur2)."""
    every, found, i = list(range(partitions)), dict[int, str](), 0
    while len(found) < partitions:
        found.setdefault(
            DefaultPartitioner()(f"probe/probe-{i}".encode(), every, every), f"probe-{i}"
        )
        i += 1
    return set(found.values())


async def complete(
    bootstrap: str, prefix: str, workers: list[Worker], log: Log, traffic: Traffic,
    roles: Roles, samples: list[tuple[float, float]], dead: str | None, timeout_seconds: float,
) -> bool:  # fmt: skip
    """Wait until every failure (and the dead worker) has its executions and the group is done;
    False if that did not happen within ``timeout_seconds`` (the report says so)."""
    notified = {t for t, (c, _) in traffic.failures.items() if c == roles.notified}
    ends = await end_offsets(bootstrap, EVENTS.name(prefix))  # heartbeats go on after these

    async def done() -> bool:
        samples.append((time.time(), sum(w.cpu_seconds() for w in workers)))
        if not set(traffic.failures) <= set(log.decided(RETRY)):
            return False
        if not notified <= set(log.decided(NOTIFY)):
            return False
        if dead and dead not in log.decided(OFFLINE):
            return False
        done = await committed(bootstrap, workers[0].app_id, EVENTS.name(prefix))
        return all(done.get(p, 0) >= end for p, end in ends.items())

    what = "every failure's executions and the group caught up"
    try:
        await until(done, timeout_seconds, what, pause=0.1)
    except TimeoutError as exc:
        print(f"{exc}: reporting what was done by then")
        return False
    return True


async def metrics(port: int) -> dict[str, float]:
    """The worker's ``flowguard_table_keys`` (an empty dict if /metrics does not answer)."""
    started = time.monotonic()
    try:
        return await asyncio.to_thread(table_keys, port)
    except OSError as exc:
        print(f"no /metrics on {port} after {time.monotonic() - started:.1f} s: {exc}")
        return {}


def per_cluster(
    clusters: list[Cluster], traffic: Traffic, events: Counter[str], log: Log,
    matched: Counter[str], lags: dict[str, tuple[int, float]],
) -> list[dict[str, Any]]:  # fmt: skip
    decided = {name: log.decided(name) for name in (RETRY, NOTIFY, OFFLINE)}
    firsts = {r["execution_id"]: r for _, r in log.records if r.get("seq") == 0}
    executions = Counter((r["task"] or r["worker"])["cluster"] for r in firsts.values())
    skipped = Counter((r["task"] or r["worker"])["cluster"] for r in firsts.values()
                      if r["outcome"] == "skipped")  # fmt: skip
    twice = Counter((r["task"] or r["worker"])["cluster"] for _, r in log.records
                    if r.get("seq") == 0) - executions  # fmt: skip
    latency: dict[str, list[float]] = defaultdict(list)
    for workflow in (RETRY, NOTIFY):
        for task_id, at in decided[workflow].items():
            if task_id in traffic.failures:
                cluster, failed_at = traffic.failures[task_id]
                latency[cluster].append((at - failed_at) * 1000)
    failures = Counter(cluster for cluster, _ in traffic.failures.values())
    undecided = Counter(c for t, (c, _) in traffic.failures.items() if t not in decided[RETRY])
    return [
        {"cluster": c.name, "events": events[c.name], "failures": failures[c.name],
         "undecided": undecided[c.name],
         "triggers": matched[c.name], "executions": executions[c.name],
         "skipped": skipped[c.name], "seq0_twice": twice[c.name],
         "p50_ms": percentile(latency[c.name], 0.5), "p99_ms": percentile(latency[c.name], 0.99),
         "lag_records": lags[c.name][0], "lag_seconds": lags[c.name][1]}
        for c in clusters
    ]  # fmt: skip


async def capacity(
    bootstrap: str, prefix: str, workers: list[Worker], log: Log, traffic: Traffic,
    producer: AIOKafkaProducer, backlog: int, roles: Roles,
) -> dict[str, float]:  # fmt: skip
    """``backlog`` events at once; events/s from the first to the last failure's execution."""
    samples: list[tuple[float, float]] = [(time.time(), sum(w.cpu_seconds() for w in workers))]
    start = time.time()
    await traffic.tasks(producer, EVENTS.name(prefix), backlog // 4)
    await producer.flush()
    topic = EVENTS.name(prefix)
    before = await committed(bootstrap, workers[0].app_id, topic)
    finished = await complete(bootstrap, prefix, workers, log, traffic, roles, samples, None,
                              max(120, backlog / 300))  # fmt: skip
    retry = log.decided(RETRY)
    events = len(traffic.sent)
    if not finished:  # the rate at which the group committed meanwhile
        last, now = time.time(), await committed(bootstrap, workers[0].app_id, topic)
        events = sum(now.values()) - sum(before.get(p, 0) for p in now)
    else:
        last = max(retry[t] for t in traffic.failures)
    cpu = cpu_at(samples, last) - samples[0][1]
    return {"events": events, "seconds": last - start, "rate": events / (last - start),
            "cpu_us": cpu / max(1, events) * 1e6, "finished": finished,
            "decided": sum(1 for t in traffic.failures if t in retry),
            "failures": len(traffic.failures)}  # fmt: skip


async def triggers_by_cluster(bootstrap: str, prefix: str) -> Counter[str]:
    matched: Counter[str] = Counter()
    for _, _, value in await read_all(bootstrap, TRIGGERS.name(prefix)):
        record = json.loads(value or b"{}")
        if record.get("kind") == "trigger.matched":
            matched[record["trigger"]["cluster"]] += 1
    return matched


async def one_run(args: argparse.Namespace, count: int, tmp: Path, first: bool) -> Run:
    prefix, run = f"bench-fleet-{uuid.uuid4().hex[:8]}", Run(count)
    clusters = fleet(args.clusters)
    roles = Roles.of(clusters)
    topic = EVENTS.name(prefix)
    scopes: list[str | None] = [None]
    if args.retry_per_cluster:  # and one for the probes that tell the workers are up
        scopes = [*(c.name for c in clusters), "probe"]
    try:
        with RecordingServer() as hooks:
            await create_topics(args.bootstrap, prefix, 30)

            async def listed() -> bool:
                return WORKFLOWS.name(prefix) in await list_topics(args.bootstrap, 10)

            await until(listed, 30, "new topics in the metadata")
            async with WorkflowStore(args.bootstrap, prefix) as store:
                for definition in workflows(roles, hooks, args.breaker, scopes):
                    await store.save(definition, saved_by="bench")
            producer = new_producer(args.bootstrap)
            await producer.start()
            workers, ports = await start_workers(args.bootstrap, prefix, count, tmp)
            try:
                log = Log(args.bootstrap, prefix)
                async with log:
                    reading = asyncio.create_task(log.run())
                    try:
                        await live_and_capacity(args, run, prefix, clusters, roles, workers,
                                                ports, log, producer)  # fmt: skip
                    finally:
                        reading.cancel()
                        await asyncio.gather(reading, return_exceptions=True)
            finally:
                for worker in workers:
                    await worker.__aexit__(None, None, None)
                await producer.stop()
            run.overall["webhooks"] = len(hooks.requests(f"/{roles.notified}"))
        if first and not args.smoke:
            o = run.overall
            total = o["live_events"] + o["pulse_events"] + o["backlog_events"]
            total += EVENTS.partitions * 4  # the probes
            run.overall["bare"] = await bare(args.bootstrap, topic, total)
            run.overall["floor"] = await faust_floor(
                args.bootstrap, topic, total, f"{prefix}-floor", tmp
            )
            run.topics = await topic_load(args.bootstrap, prefix)
    finally:
        await teardown(args.bootstrap, prefix)
    return run


async def live_and_capacity(
    args: argparse.Namespace, run: Run, prefix: str, clusters: list[Cluster], roles: Roles,
    workers: list[Worker], ports: list[int], log: Log, producer: AIOKafkaProducer,
) -> None:  # fmt: skip
    await ready(args.bootstrap, prefix, workers, log, producer)
    traffic, beats = Traffic(clusters, roles, "live"), Traffic(clusters, roles, "beats")
    beating = asyncio.create_task(pulse(beats, producer, EVENTS.name(prefix)))
    try:
        await measure(args, run, prefix, traffic, beats, workers, ports, log, producer)
    finally:
        beating.cancel()
        await asyncio.gather(beating, return_exceptions=True)
        await producer.flush()
    run.overall["pulse_events"] = len(beats.sent)


async def measure(
    args: argparse.Namespace, run: Run, prefix: str, traffic: Traffic, beats: Traffic,
    workers: list[Worker], ports: list[int], log: Log, producer: AIOKafkaProducer,
) -> None:  # fmt: skip
    clusters, roles = traffic.clusters, traffic.roles
    plan = Plan(args.rate, args.seconds, args.storm_rate, args.storm_seconds)
    commits: list[tuple[float, dict[int, int]]] = []
    sampler = asyncio.create_task(
        sample_commits(args.bootstrap, workers[0].app_id, EVENTS.name(prefix), commits)
    )
    cpu0, samples = sum(w.cpu_seconds() for w in workers), list[tuple[float, float]]()
    try:
        shape = await live_traffic(traffic, beats, producer, EVENTS.name(prefix), plan)
        cpu_live = sum(w.cpu_seconds() for w in workers) - cpu0
        run.overall["live_finished"] = await complete(
            args.bootstrap, prefix, workers, log, traffic, roles, samples, shape["dead"], 120
        )
    finally:
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
    offline = log.decided(OFFLINE)
    matched = await triggers_by_cluster(args.bootstrap, prefix)
    sent = traffic.sent + beats.sent
    lags = await lag_by_cluster(sent, commits)
    run.clusters = per_cluster(clusters, traffic, Counter(c for _, c, _ in sent), log, matched,
                               lags)  # fmt: skip
    keys = [await metrics(port) for port in ports]
    run.overall.update({
        "live_seconds": shape["seconds"], "live_events": len(traffic.sent),
        "live_rate": shape["events"] / shape["seconds"], "storm_tasks": shape["storm_tasks"],
        "live_cpu_us": cpu_live / shape["events"] * 1e6,
        "offline_after_s": offline.get(shape["dead"], math.nan) - shape["last_beat"],
        "offline_executions": len(offline),
        "rss_mb": [round(w.rss_mb(), 1) for w in workers],
        "table_keys": {t: sum(k.get(t, 0) for k in keys) for t in {t for k in keys for t in k}},
    })  # fmt: skip
    backlog = Traffic(clusters, roles, "backlog", rng=random.Random(13))
    cap = await capacity(args.bootstrap, prefix, workers, log, backlog, producer, args.backlog,
                         roles)  # fmt: skip
    run.overall.update({f"backlog_{k}": v for k, v in cap.items()})
    run.overall["retried"] = len(log.decided(RETRY))


# report --------------------------------------------------------------------------------------


def cluster_table(run: Run) -> str:
    rows = [f"#### {run.workers} worker process(es)\n",
            "| cluster | events | failures | triggers | executions (skipped) "
            "| latency p50 / p99 ms | lag max records / s |",
            "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for c in run.clusters:
        twice = f" **{c['seq0_twice']} seq-0 twice**" if c["seq0_twice"] else ""
        if c.get("undecided"):
            twice += f" **{c['undecided']} failures undecided**"
        rows.append(
            f"| {c['cluster']} | {c['events']:,} | {c['failures']} | {c['triggers']} "
            f"| {c['executions']} ({c['skipped']}){twice} "
            f"| {c['p50_ms']:,.0f} / {c['p99_ms']:,.0f} "
            f"| {c['lag_records']:,} / {c['lag_seconds']:.1f} |"
        )
    return "\n".join(rows)


def overall_table(runs: list[Run]) -> str:
    first = runs[0].overall
    bare_rate, bare_cpu = first["bare"]
    floor_rate, floor_cpu = first["floor"]
    rows = ["| measure | figure | ratio |", "|---|---:|---:|",
            f"| bare aiokafka consumer, json + EVENT_ADAPTER (baseline) | {bare_rate:,.0f} "
            f"events/s; {bare_cpu:.0f} µs CPU/event | 1.00 |",
            f"| a Faust agent that only counts (bench/faust_floor.py) | {floor_rate:,.0f} "
            f"events/s; {floor_cpu:.0f} µs CPU/event | {floor_rate / bare_rate:.2f} |"]  # fmt: skip
    for run in runs:
        o, n = run.overall, run.workers
        per = o["backlog_rate"] / n
        every = [c for c in run.clusters]
        ms = [c["p99_ms"] for c in every if not math.isnan(c["p99_ms"])]
        if not o.get("backlog_finished", True):
            rows.append(
                f"| {n} worker(s), backlog: **not done in {o['backlog_seconds']:.0f} s** "
                f"({o['backlog_decided']:,} of {o['backlog_failures']:,} failures decided); "
                f"below: the rate the group committed meanwhile | | |"
            )
        rows += [
            f"| {n} worker(s), backlog of {o['backlog_events']:,} events: sustained "
            f"| {o['backlog_rate']:,.0f} events/s ({per:,.0f} per process); "
            f"{o['backlog_cpu_us']:.0f} µs CPU/event "
            f"| {o['backlog_rate'] / bare_rate:.2f} wall, "
            f"{bare_cpu / o['backlog_cpu_us']:.2f} CPU; "
            f"{o['backlog_rate'] / floor_rate:.2f} of the Faust agent |",
            f"| {n} worker(s), live {o['live_rate']:,.0f} events/s for {o['live_seconds']:.0f} s "
            f"| {o['live_cpu_us']:.0f} µs CPU/event; worst cluster p99 {max(ms):,.0f} ms; "
            f"RSS {' + '.join(f'{m:.0f}' for m in o['rss_mb'])} MB | |",
            f"| {n} worker(s): dead worker reported after its last heartbeat "
            f"| {o['offline_after_s']:.1f} s (expiry 2 x {HEARTBEAT_SECONDS:g} s); "
            f"worker.offline executions: {o.get('offline_executions', 1)} (1 expected) | |",
        ]
    return "\n".join(rows)


def load_table(run: Run) -> str:
    events = run.topics[".events"]["records"]
    rows = ["| topic | records / input event | bytes / input event | value p50 / max B "
            "| live keys |", "|---|---:|---:|---:|---:|"]  # fmt: skip
    for name, t in sorted(run.topics.items()):
        rows.append(
            f"| {name} | {t['records'] / events:.3f} | {t['bytes'] / events:,.0f} "
            f"| {t['value_p50']:,.0f} / {t['value_max']:,} | {t['keys']:,} |"
        )
    return "\n".join(rows)


def model(args: argparse.Namespace, runs: list[Run], mem: dict[str, Any]) -> str:
    """The capacity model for ``--model-clusters`` clusters of this fleet's mix: every input
    below is a figure of this run; the products are extrapolations."""
    one, topics = runs[0], runs[0].topics
    o, events, clusters = one.overall, topics[".events"]["records"], len(one.clusters)
    rate = o["live_rate"] / clusters * args.model_clusters
    per_worker = min(r.overall["backlog_rate"] / r.workers for r in runs)
    per_10k = math.ceil(10_000 / (per_worker * 0.5))
    bytes_in = sum(t["bytes"] for t in topics.values()) / events
    records_in = sum(t["records"] for t in topics.values()) / events
    storm = o["storm_tasks"]  # the storm's failures are not the fleet's steady rate
    failures = (sum(c["failures"] for c in one.clusters) - storm) / (o["live_events"] - 4 * storm)
    retried = o.get("retried") or (  # runs from before "retried" was kept: about as many
        sum(c["failures"] for c in one.clusters) + failures * o["backlog_events"]
    )
    budget_bytes = topics["-app-workflow-state-changelog"]["value_max"] / retried
    fleet_failures = rate * failures
    held = fleet_failures * 3600  # failed chains are kept an hour (chain_retention_seconds)
    chain_mb = held * mem["per_task_bytes"] / 2**20 if mem else math.nan
    execution = topics["-app-executions-changelog"]["value_mean"]
    day_gb = fleet_failures * 86_400 * execution / 1e9
    return "\n".join([
        f"- {args.model_clusters:,} clusters at this mix ({o['live_rate'] / clusters:,.1f} "
        f"events/s each): {rate:,.0f} events/s, {fleet_failures:,.0f} failures/s",
        f"- worker processes at half the lowest sustained rate per process measured "
        f"({per_worker:,.0f} events/s): {per_10k} per 10k events/s, "
        f"{math.ceil(rate / (per_worker * 0.5))} for the fleet; <{EVENTS.name('p')}> needs as "
        f"many partitions (it has {EVENTS.partitions}: at most "
        f"{EVENTS.partitions * per_worker * 0.5:,.0f} events/s at half load)",
        f"- broker: {records_in:.2f} records and {bytes_in:,.0f} bytes written per input event "
        f"-> {rate * records_in:,.0f} records/s, {rate * bytes_in / 1e6:,.1f} MB/s in "
        f"(before replication)",
        f"- chains table: {held:,.0f} failed chains kept an hour x "
        f"{mem.get('per_task_bytes', math.nan):,.0f} B RSS each = {chain_mb:,.0f} MB over all "
        f"workers",
        f"- executions table: {fleet_failures * 86_400:,.0f} executions kept a day x "
        f"{execution:,.0f} B of JSON = {day_gb:,.1f} GB over all workers (memory:// store)",
        f"- one workflow's slot (breaker + retry budgets, kept 7 days): "
        f"{budget_bytes:,.0f} B per chain it retried (largest slot / chains retried); "
        f"1 MB (Kafka's default max record) after {1e6 / budget_bytes:,.0f} chains: "
        f"{1e6 / budget_bytes / fleet_failures / 60:,.1f} minutes of the fleet's failures "
        f"if one workflow retries them all"
        if topics["-app-workflow-state-changelog"]["keys"] <= 3  # one retry workflow
        else "- one workflow's slot: see a run with one retry workflow for all clusters",
    ])  # fmt: skip


async def main_async(args: argparse.Namespace) -> None:
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(args.logs or name)
        runs = [await one_run(args, n, tmp, i == 0) for i, n in enumerate(args.workers)]
        mem = await memory(args.bootstrap, args.tracked, tmp) if args.tracked else {}
    print(f"python {platform.python_version()}, {os.cpu_count()} cores, Kafka at "
          f"{args.bootstrap}, load average {load:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end\n")  # fmt: skip
    if args.smoke:
        for run in runs:
            print(cluster_table(run), "\n")
    else:
        report(args, runs, mem)
    if args.json:
        save(args.json, runs, mem)
    for problem in problems(runs):
        print(f"PROBLEM: {problem}")
        sys.exit(1)


def problems(runs: list[Run]) -> list[str]:
    """What the run should have done and did not: every failure decided once, each phase done,
    the dead worker reported once."""
    found = []
    for run in runs:
        o, n = run.overall, run.workers
        if not o.get("live_finished") or not o.get("backlog_finished"):
            found.append(f"{n} worker(s): a phase did not finish in time")
        if o.get("offline_executions") != 1:
            found.append(f"{n} worker(s): {o.get('offline_executions')} worker.offline "
                         f"executions (1 worker died)")  # fmt: skip
        for c in run.clusters:
            if c["undecided"] or c["seq0_twice"]:
                found.append(f"{n} worker(s), {c['cluster']}: {c['undecided']} failures "
                             f"undecided, {c['seq0_twice']} seq-0 records twice")  # fmt: skip
    return found


def report(args: argparse.Namespace, runs: list[Run], mem: dict[str, Any]) -> None:
    for run in runs:
        print(cluster_table(run), "\n")
    print(overall_table(runs), "\n")
    print(load_table(runs[0]), "\n")
    if mem:
        print(f"memory: RSS {mem['points']} -> {mem['per_task_bytes']:,.0f} B per chain held\n")
    print(model(args, runs, mem))


def save(path: str, runs: list[Run], mem: dict[str, Any]) -> None:
    figures = {"runs": [r.__dict__ for r in runs], "memory": mem}
    Path(path).write_text(json.dumps(figures, indent=1, default=str))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clusters", type=int, default=50)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="worker processes per run (one run each)")  # fmt: skip
    parser.add_argument("--rate", type=float, default=1500, help="live events/s (tasks x 4)")
    parser.add_argument("--seconds", type=float, default=60, help="live phase")
    parser.add_argument("--storm-rate", type=float, default=100, help="failing tasks/s")
    parser.add_argument("--storm-seconds", type=float, default=5)
    parser.add_argument("--backlog", type=int, default=16_000, help="capacity phase events")
    parser.add_argument("--tracked", type=int, default=20_000, help="memory step; 0 skips")
    parser.add_argument("--model-clusters", type=int, default=1000)
    parser.add_argument("--quick", action="store_true",
                        help="10 clusters, 20 s live, 8,000 backlog, 4,000 tracked")  # fmt: skip
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--logs", help="keep the workers' logs in this directory")
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument("--retry-per-cluster", action="store_true",
                        help="a retry workflow per cluster instead of one for all")  # fmt: skip
    parser.add_argument("--breaker", default="1000/60",
                        help="each workflow's breaker: executions/window seconds")  # fmt: skip
    parser.add_argument("--smoke", action="store_true",
                        help="3 clusters, 6 s, 1 worker, no baselines: checks only")  # fmt: skip
    if "--quick" in sys.argv:  # new defaults; options given still win
        parser.set_defaults(clusters=10, seconds=20, backlog=8_000, tracked=4_000,
                            storm_seconds=3)  # fmt: skip
    if "--smoke" in sys.argv:
        parser.set_defaults(clusters=3, seconds=6, rate=300, storm_rate=20, storm_seconds=1,
                            backlog=400, tracked=0, workers=[1])  # fmt: skip
    parser.add_argument("--report", metavar="JSON", help="print the report of a --json file")
    args = parser.parse_args()
    if args.report:
        figures = json.loads(Path(args.report).read_text())
        report(args, [Run(**r) for r in figures["runs"]], figures["memory"])
        return
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
