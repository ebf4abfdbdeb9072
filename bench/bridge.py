"""Benchmark: the bridge's events/s into Kafka against a bare Celery receiver, and its lag.

Every part is a real process: a private ``redis-server`` as the Celery broker, a publisher
that sends Celery events with ``app.events.Dispatcher`` (task-sent from a client host,
task-received, -started, -succeeded from a worker host: 4 events per task), the dev Kafka
broker (``FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS`` or 127.0.0.1:9092), and as the consumer either

- *bare*: ``app.events.Receiver`` with a handler that only counts (this file, ``bare``), or
- *bridge*: ``python -m bridge.cli`` (``flowguard-bridge``), INFO logging, commands on.

Throughput: the consumer subscribes, is paused with SIGSTOP, the publisher sends N events as
fast as it can (Redis holds them in the subscriber's output buffer, unbounded here), and the
clock starts at SIGCONT. The bare receiver stops when it has counted N; the bridge when Kafka
holds N task records (their LogAppendTime: the topic is created with it). Rounds interleave
bare, bridge/none and bridge/gzip and keep each one's best.

Lag: the bridge and a bare receiver run live, side by side on the same events, while the
publisher sends at a steady rate (2,000 events/s). Per event: the Kafka record's
LogAppendTime minus the Celery event's ``timestamp`` (the bridge's end-to-end lag); the bare
handler's arrival time minus the same timestamp (the floor that Celery, Redis and this machine
set); and LogAppendTime minus the bare arrival (what the bridge adds).

    python bench/bridge.py                      # 40,000 events x 3 rounds; lag 20 s at 2,000/s
    python bench/bridge.py --events 8000 --repeat 1 --lag-seconds 5   # quick
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402
from celery import Celery  # noqa: E402
from celery.events.receiver import EventReceiver  # noqa: E402

from flowguard.control.kafka_admin import delete_topics  # noqa: E402
from tests.processes import Process, free_port, python_env  # noqa: E402
from topics.registry import ALL_TOPICS, EVENTS  # noqa: E402

CLUSTER = "bench"
EVENTS_PER_TASK = 4
LOG_APPEND_TIME = 1  # aiokafka's ConsumerRecord.timestamp_type for broker time


# --- the two child roles: publisher and bare receiver ----------------------------------------


@dataclass(frozen=True)
class Load:
    """``events`` task events, as fast as possible (rate 0) or at ``rate``/s, ``per_message``
    events in one Celery message."""

    events: int
    rate: float
    per_message: int

    def argv(self) -> list[str]:
        return [str(self.events), str(self.rate), str(self.per_message)]


def publish(broker: str, load: Load, run: str) -> None:
    """Send the load's Celery task events.

    ``per_message`` 24 is how Celery's prefork workers send task events: buffered
    (``buffer_group``) and published as one message per loop turn, at most 24; the pacing
    flushes whenever it waits. The client's task-sent events are buffered the same way (as from
    many clients). ``per_message`` 1 is one message per event (a client, a solo/threads worker).
    """
    app = Celery("bench-publisher", broker=broker)
    events, rate = load.events, load.rate
    buffered: dict[str, Any] = (
        {"buffer_group": ["task"], "buffer_limit": load.per_message} if load.per_message > 1 else {}
    )
    with app.connection_for_write() as conn:
        client, worker = (
            app.events.Dispatcher(conn, hostname=host, **buffered)
            for host in ("gen1@bench-client", "celery@bench-worker")
        )
        start = time.time()
        sent = 0
        for index in range(events // EVENTS_PER_TASK):
            task = f"{run}-{index:08d}"
            name = f"app.tasks.t{index % 1000}"
            common = {"uuid": task, "name": name, "args": f"({index}, 'customer-{index % 977}')",
                      "kwargs": "{}", "root_id": task, "parent_id": None, "retries": 0,
                      "eta": None, "expires": None}  # fmt: skip
            client.send("task-sent", queue="celery", exchange="", routing_key="celery", **common)
            worker.send("task-received", **common)
            worker.send("task-started", uuid=task)
            worker.send("task-succeeded", uuid=task, result="None", runtime=0.01)
            sent += EVENTS_PER_TASK
            if rate:
                ahead = start + sent / rate - time.time()
                if ahead > 0.002:
                    client.flush()
                    worker.flush()
                    time.sleep(ahead)  # pacing the load, not waiting for a result
        client.flush()
        worker.flush()
        elapsed = time.time() - start
        client.close()
        worker.close()
    print(json.dumps({"sent": sent, "seconds": elapsed}), flush=True)


def bare(broker: str, events: int, lag: bool) -> None:
    """Count ``events`` task events, then exit; with ``lag``, note when each one arrived.

    A worker heartbeat is the orchestrator's probe: printed, so it knows we are subscribed.
    """
    app = Celery("bench-bare", broker=broker)
    seen = 0
    arrived: dict[str, tuple[float, float]] = {}
    first = cpu_start = 0.0
    receiver: EventReceiver | None = None

    def count(event: dict[str, Any]) -> None:
        nonlocal seen, first, cpu_start
        if not seen:
            first, cpu_start = time.time(), time.process_time()
        seen += 1
        if lag:
            arrived[f"{event['uuid']} {event['type']}"] = (time.time(), event["timestamp"])
        if seen >= events:
            assert receiver is not None
            receiver.should_stop = True

    def probe(event: dict[str, Any]) -> None:
        print("probe seen", flush=True)

    with app.connection_for_read() as conn:
        handlers = {"worker-heartbeat": probe, "*": count}
        receiver = EventReceiver(conn, handlers=handlers, app=app)
        receiver.capture(limit=None, timeout=None, wakeup=False)
    result = {"count": seen, "first": first, "last": time.time(),
              "cpu": time.process_time() - cpu_start, "arrived": arrived}  # fmt: skip
    print(json.dumps(result), flush=True)


# --- the orchestrator -------------------------------------------------------------------------


@dataclass
class Result:
    events: int
    seconds: float
    cpu_seconds: float | None = None

    @property
    def rate(self) -> float:
        return self.events / self.seconds


@contextmanager
def redis_server(tmp: Path) -> Iterator[str]:
    """A private Redis for Celery's events; a paused subscriber's buffer is unbounded here."""
    server = shutil.which("redis-server")
    if server is None:
        sys.exit("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    argv = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
            "no", "--client-output-buffer-limit", "pubsub 0 0 0"]  # fmt: skip
    proc = Process("redis", argv, tmp / "redis.log", dict(os.environ)).start()
    try:
        proc.wait_for_log("Ready to accept connections", timeout=20)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.stop(signal.SIGKILL)


def child(tmp: Path, name: str, *args: str) -> Process:
    argv = [sys.executable, str(Path(__file__).resolve()), *args]
    return Process(name, argv, tmp / f"{name}.log", python_env())


def run_publisher(tmp: Path, broker: str, load: Load, run: str) -> dict[str, Any]:
    proc = child(tmp, f"publisher-{run}", "publish", broker, run, *load.argv()).start()
    assert proc.proc is not None
    if proc.proc.wait(600) != 0:
        sys.exit(f"publisher failed:\n{proc.log()[-3000:]}")
    return last_json(proc)


def last_json(proc: Process) -> dict[str, Any]:
    lines = [line for line in proc.log().splitlines() if line.startswith("{")]
    if not lines:
        sys.exit(f"{proc.name} printed no result:\n{proc.log()[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process and its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def subscribed(broker: str, probe_seen: Callable[[], bool], what: str) -> None:
    """Send worker heartbeats until the consumer shows one: Celery's receiver subscribes to
    Redis only once it drains, after it reports being ready, and earlier events are lost."""
    app = Celery("bench-probe", broker=broker)
    deadline = time.monotonic() + 60
    with app.connection_for_write() as conn:
        dispatcher = app.events.Dispatcher(conn, hostname="celery@bench-probe")
        while not probe_seen():
            if time.monotonic() > deadline:
                sys.exit(f"timed out waiting for {what}")
            dispatcher.send("worker-heartbeat", freq=2.0, active=0, processed=0)
            time.sleep(0.2)  # a probe every 0.2 s until one is seen, bounded by the deadline
        dispatcher.close()


class KindReader:
    """Whether a record of a kind is on a topic yet (a fresh consumer per look)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic

    def seen(self, kind: str) -> bool:
        return asyncio.run(self._seen(kind))

    async def _seen(self, kind: str) -> bool:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(self.topic, p) for p in range(EVENTS.partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            while any([await consumer.position(tp) < ends[tp] for tp in tps]):
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    if any(json.loads(r.value)["kind"] == kind for r in records):
                        return True
            return False
        finally:
            await consumer.stop()


#: The topics a bridge uses; the bench creates them for each run and deletes them after.
BRIDGE_TOPICS = ("events", "dlq", "commands", "command-results")


async def make_topics(bootstrap: str, prefix: str) -> None:
    """The bridge's topics as the registry specifies them; events with LogAppendTime, the
    broker's time of the record."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        topics = []
        for spec in ALL_TOPICS:
            if spec.suffix not in BRIDGE_TOPICS:
                continue
            config = spec.config()
            if spec is EVENTS:
                config["message.timestamp.type"] = "LogAppendTime"
            topics.append(NewTopic(spec.name(prefix), spec.partitions, 1, topic_configs=config))
        response = await admin.create_topics(topics)
    finally:
        await admin.close()
    refused = [error for error in response.topic_errors if error[1] != 0]
    if refused:
        sys.exit(f"Kafka refused topics: {refused}")


async def read_task_records(
    bootstrap: str, topic: str, events: int, timeout_seconds: float
) -> dict[str, tuple[float, float]]:
    """``"<task id> <Celery event type>"`` -> (LogAppendTime, event timestamp) of ``events``
    task records on ``topic``; fails on a record published twice.

    Waits on end offsets (cheap) while the bridge works, then reads: reading would take CPU
    from the bridge, and the broker's timestamps do not depend on when they are read.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")  # fmt: skip
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(EVENTS.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_seconds
        found: dict[str, tuple[float, float]] = {}
        while len(found) < events:
            if time.monotonic() > deadline:
                sys.exit(f"only {len(found)} of {events} task records in {topic}")
            ends = await consumer.end_offsets(tps)
            if sum(ends.values()) - sum([await consumer.position(tp) for tp in tps]) < (
                events - len(found)
            ):
                await asyncio.sleep(0.2)  # polling end offsets, bounded by the deadline
                continue
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    value = json.loads(record.value)
                    if not value["kind"].startswith("task."):
                        continue
                    assert record.timestamp_type == LOG_APPEND_TIME
                    identity = f"{value['task_id']} task-{value['kind'].removeprefix('task.')}"
                    if identity in found:
                        sys.exit(f"published twice: {identity}")
                    found[identity] = (record.timestamp / 1000, value["timestamp"])
        return found
    finally:
        await consumer.stop()


@contextmanager
def bare_consumer(tmp: Path, broker: str, events: int, lag: bool, run: str) -> Iterator[Process]:
    """A bare receiver process, subscribed; killed on the way out."""
    mode = "lag" if lag else "count"
    proc = child(tmp, f"bare-{run}", "bare", broker, str(events), mode).start()
    try:
        subscribed(broker, lambda: "probe seen" in proc.log(), f"{proc.name} subscribed")
        yield proc
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.stop(signal.SIGKILL)


def bare_result(proc: Process, events: int) -> dict[str, Any]:
    assert proc.proc is not None
    proc.proc.wait(300)
    result = last_json(proc)
    if result["count"] != events:
        sys.exit(f"bare receiver counted {result['count']} of {events}")
    return result


@contextmanager
def bridge_consumer(
    tmp: Path, broker: str, bootstrap: str, compression: str, run: str
) -> Iterator[tuple[Process, str]]:
    """A ``flowguard-bridge`` process on topics of its own, subscribed; yields it and its
    events topic. On the way out it is stopped and must have dropped nothing."""
    prefix = f"bench-bridge-{run}"
    asyncio.run(make_topics(bootstrap, prefix))
    env = python_env(
        FLOWGUARD_CLUSTER=CLUSTER, FLOWGUARD_BROKER=broker,
        FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS=bootstrap, FLOWGUARD_TOPIC_PREFIX=prefix,
        FLOWGUARD_KAFKA_COMPRESSION=compression,
    )  # fmt: skip
    argv = [sys.executable, "-m", "bridge.cli", "--log-level", "INFO"]
    proc = Process(f"bridge-{run}", argv, tmp / f"bridge-{run}.log", env).start()
    topic = EVENTS.name(prefix)
    try:
        proc.wait_for_log("snapshot:", timeout=60)
        reader = KindReader(bootstrap, topic)
        subscribed(broker, lambda: reader.seen("worker.heartbeat"), f"{proc.name} subscribed")
        yield proc, topic
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.stop(signal.SIGTERM)
        # A shared dev broker holds every run's topics: leave none of ours behind.
        asyncio.run(delete_topics(bootstrap, f"{prefix}.", 30))
    counts = ast.literal_eval(proc.log().rsplit(" stopped: ", 1)[-1].splitlines()[0])
    if counts["dropped"]:
        sys.exit(f"the bridge dropped events: {counts}")


def bare_throughput(tmp: Path, broker: str, load: Load, run: str) -> Result:
    with bare_consumer(tmp, broker, load.events, False, run) as proc:
        proc.send_signal(signal.SIGSTOP)
        run_publisher(tmp, broker, load, run)
        start = time.time()
        proc.send_signal(signal.SIGCONT)
        result = bare_result(proc, load.events)
    return Result(load.events, result["last"] - start, result["cpu"])


def bridge_throughput(
    tmp: Path, broker: str, bootstrap: str, load: Load, compression: str, run: str
) -> Result:
    with bridge_consumer(tmp, broker, bootstrap, compression, run) as (proc, topic):
        proc.send_signal(signal.SIGSTOP)
        run_publisher(tmp, broker, load, run)
        start, cpu_start = time.time(), cpu_seconds(proc.pid)
        proc.send_signal(signal.SIGCONT)
        found = asyncio.run(read_task_records(bootstrap, topic, load.events, 600))
        cpu = cpu_seconds(proc.pid) - cpu_start
    return Result(load.events, max(found.values())[0] - start, cpu)


@dataclass
class Lags:
    """Per event, in ms: event -> bare handler; event -> Kafka; bare handler -> Kafka."""

    bare: list[float]
    bridge: list[float]
    added: list[float]
    achieved_rate: float


def lag_run(tmp: Path, broker: str, bootstrap: str, load: Load, compression: str, run: str) -> Lags:
    """The bridge and a bare receiver on the same paced events at the same time: the bare
    one's arrival times are the floor (Celery, Redis, this machine), the rest is the bridge's."""
    with (
        bridge_consumer(tmp, broker, bootstrap, compression, run) as (_, topic),
        bare_consumer(tmp, broker, load.events, True, run) as bare_proc,
    ):
        run_publisher(tmp, broker, load, run)
        found = asyncio.run(read_task_records(bootstrap, topic, load.events, 600))
        arrived = bare_result(bare_proc, load.events)["arrived"]
    lags = Lags([], [], [], 0.0)
    for identity, (kafka, event) in found.items():
        bare_at = arrived[identity][0]
        lags.bare.append((bare_at - event) * 1000)
        lags.bridge.append((kafka - event) * 1000)
        lags.added.append((kafka - bare_at) * 1000)
    appended = [kafka for kafka, _ in found.values()]
    lags.achieved_rate = load.events / (max(appended) - min(appended))
    return lags


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=40_000, help="per throughput run")
    parser.add_argument("--repeat", type=int, default=3,
                        help="interleaved throughput rounds, best kept (0: lag only)")  # fmt: skip
    parser.add_argument("--lag-rate", type=float, default=2000.0, help="events/s for the lag")
    parser.add_argument("--lag-seconds", type=float, default=20.0)
    parser.add_argument("--compression", nargs="*", default=["none", "gzip"])
    parser.add_argument("--per-message", type=int, nargs="*", default=[24, 1],
                        help="events per Celery message, one throughput series each; "
                        "the lag uses the first")  # fmt: skip
    args = parser.parse_args()
    bootstrap = os.environ.get("FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    events = args.events - args.events % EVENTS_PER_TASK
    lag_events = int(args.lag_rate * args.lag_seconds) // EVENTS_PER_TASK * EVENTS_PER_TASK
    tag = uuid.uuid4().hex[:6]
    best: dict[tuple[int, str], Result] = {}
    load_before = os.getloadavg()[0]

    def keep(key: tuple[int, str], result: Result) -> None:
        print(f"  {key}: {result.rate:,.0f} events/s", file=sys.stderr, flush=True)
        if key not in best or result.rate > best[key].rate:
            best[key] = result

    with tempfile.TemporaryDirectory() as tmp_name, redis_server(Path(tmp_name)) as broker:
        tmp = Path(tmp_name)
        for round_ in range(args.repeat):
            print(f"round {round_ + 1}: {events} events", file=sys.stderr, flush=True)
            for per in args.per_message:
                load, run = Load(events, 0, per), f"{tag}-{round_}-{per}"
                keep((per, "bare"), bare_throughput(tmp, broker, load, f"{run}-bare"))
                for comp in args.compression:
                    result = bridge_throughput(tmp, broker, bootstrap, load, comp, f"{run}-{comp}")
                    keep((per, f"bridge/{comp}"), result)
        lag_load = Load(lag_events, args.lag_rate, args.per_message[0])
        print(f"lag: {lag_load}", file=sys.stderr, flush=True)
        lags = {
            comp: lag_run(tmp, broker, bootstrap, lag_load, comp, f"{tag}-lag-{comp}")
            for comp in args.compression
        }
    report(best, lags, lag_load, args, (load_before, os.getloadavg()[0]))


def report(
    best: dict[tuple[int, str], Result],
    lags: dict[str, Lags],
    lag_load: Load,
    args: argparse.Namespace,
    loadavg: tuple[float, float],
) -> None:
    print(f"\nPython {platform.python_version()}, {os.cpu_count()} CPUs, load average "
          f"{loadavg[0]:.1f} before and {loadavg[1]:.1f} after; {args.events:,} events "
          f"x {args.repeat} rounds (best kept)\n")  # fmt: skip
    if best:
        print("| events per message | consumer | events/s | ratio to bare | CPU µs/event |")
        print("|---:|---|---:|---:|---:|")
    for (per, name), result in best.items():
        base = best[(per, "bare")].rate
        cpu = f"{result.cpu_seconds / result.events * 1e6:,.0f}" if result.cpu_seconds else "-"
        print(f"| {per} | {name} | {result.rate:,.0f} | {result.rate / base:.2f} | {cpu} |")
    print(f"\nLag at {lag_load.rate:,.0f} events/s for {args.lag_seconds:g} s, "
          f"{lag_load.per_message} events per message; the bridge and a bare receiver on the "
          "same events at the same time (ms)\n")  # fmt: skip
    print("| compression | measured | p50 | p99 | max | achieved events/s |")
    print("|---|---|---:|---:|---:|---:|")
    for comp, lag in lags.items():
        for what, values in (
            ("event -> bare handler", lag.bare),
            ("event -> Kafka (bridge)", lag.bridge),
            ("bare handler -> Kafka", lag.added),
        ):
            print(f"| {comp} | {what} | {percentile(values, 50):.1f} | "
                  f"{percentile(values, 99):.1f} | {max(values):.1f} | "
                  f"{lag.achieved_rate:,.0f} |")  # fmt: skip


def _child_main() -> None:
    role, *rest = sys.argv[1:]
    if role == "publish":
        broker, run, events, rate, per_message = rest
        publish(broker, Load(int(events), float(rate), int(per_message)), run)
    else:
        broker, events, mode = rest
        bare(broker, int(events), mode == "lag")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("publish", "bare"):
        _child_main()
    else:
        main()
