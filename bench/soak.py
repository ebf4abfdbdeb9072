"""Soak: one ``flowguard worker`` under a steady load for a long time; does anything grow?

A real worker on the real broker gets ``--rate`` events/s (tasks sent, received, started, then
succeeded or, 5% of them, failed with a retryable error; a worker heartbeat each second) for
``--minutes``. Each failure matches a retry workflow (delay 0); the soak plays the bridge and
Celery for each retry command: it reports the retry as the bridge does (its ``task.sent``, then
a ``done`` command result), and the retried task is received, started and succeeds, so every
retry action and chain settles as on a real cluster. Every ``--every`` seconds it records:

- the worker's RSS (``/proc``) and CPU share;
- ``flowguard_table_keys`` of each table (the worker's ``/metrics``);
- the consumer group's lag on ``<prefix>.events`` (end offsets minus committed offsets);
- failure -> retry command latency, p50 and p99, of that interval's failures.

Retention is shortened (``--retention``, default 300 s for chains and executions, scanned for
expiry every fifth of it) so the tables reach their steady size within the run: a settled
chain or execution is kept that long, so the steady size is about its rate times the retention
(production defaults: chains 1 h, executions 24 h, a scan every 10 min; the table sizes scale
by those factors at the same rate). Writes a JSON of the samples and an SVG plot.

    python bench/soak.py --minutes 30 --rate 1000 --svg docs/soak.svg    # the docs' run
    python bench/soak.py --minutes 3 --rate 500 --every 15                # quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient  # noqa: E402

from bench.live import (  # noqa: E402
    CLUSTER,
    NAMES,
    Paced,
    RootMemory,
    Stream,
    Tail,
    Worker,
    encode,
    new_producer,
    produce,
    record_key,
    setup,
    task,
    teardown,
    until,
)
from tests.processes import free_port  # noqa: E402
from topics.commands import CommandResult  # noqa: E402
from topics.events import TaskReceived, TaskSent, TaskStarted, TaskSucceeded  # noqa: E402
from topics.registry import COMMAND_RESULTS, COMMANDS, EVENTS  # noqa: E402


def retried(command: dict[str, Any], at: float) -> list[Any]:
    """What the bridge and Celery report for a retry command: the new task runs and succeeds."""
    queued = {"cluster": CLUSTER, "task_id": command["task_id"], "name": command["name"],
              "args": command["args"], "kwargs": command["kwargs"],
              "root_id": command["root_id"], "parent_id": command["parent_id"],
              "retries": 0}  # fmt: skip
    on = {"cluster": CLUSTER, "task_id": command["task_id"], "hostname": "celery@w1"}
    return [
        TaskSent(
            **queued, timestamp=at, hostname="bridge@soak", queue="celery", routing_key="celery"
        ),
        TaskReceived(**queued, timestamp=at + 0.001, hostname="celery@w1"),
        TaskStarted(**on, timestamp=at + 0.002, pid=4242),
        TaskSucceeded(**on, timestamp=at + 0.03, result="None", runtime=0.028),
    ]


class Bridge:
    """Reads retry commands; notes when each failure's arrived, and plays the retried task."""

    def __init__(self, producer: Any, topic: str, results: str) -> None:
        self.producer, self.topic, self.results = producer, topic, results
        self.arrived: dict[str, float] = {}
        self.roots = RootMemory()

    async def run(self, commands: Tail) -> None:
        while True:
            values = await commands.values(timeout_ms=100)
            now = time.time()
            for value in values:
                command = json.loads(value)
                if command["original_task_id"] in self.arrived:
                    continue
                self.arrived[command["original_task_id"]] = now
                events = retried(command, now)
                for event in events[:1]:  # the bridge's own task.sent, before its result
                    key = record_key(event, self.roots).encode()
                    await self.producer.send(self.topic, encode(event), key=key)
                result = CommandResult(
                    command_id=command["command_id"], cluster=CLUSTER,
                    at=datetime.fromtimestamp(now, UTC).isoformat(), status="done",
                    workflow_id=command["workflow_id"], execution_id=command["execution_id"],
                    task_id=command["task_id"], queue="celery", routing_key="celery",
                )  # fmt: skip
                await self.producer.send(
                    self.results, result.model_dump_json().encode(), key=CLUSTER.encode()
                )
                for event in events[1:]:
                    key = record_key(event, self.roots).encode()
                    await self.producer.send(self.topic, encode(event), key=key)


async def lag(bootstrap: str, group: str, topic: str) -> int:
    """Records of ``topic`` the group has not committed yet."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        partitions = [TopicPartition(topic, p) for p in range(EVENTS.partitions)]
        ends = await consumer.end_offsets(partitions)
        done = {tp: meta.offset for tp, meta in committed.items() if tp.topic == topic}
        return sum(max(0, end - max(done.get(tp, 0), 0)) for tp, end in ends.items())
    finally:
        await consumer.stop()
        await admin.close()


def table_keys(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    found = {}
    for line in text.splitlines():
        if line.startswith('flowguard_table_keys{table="'):
            head, _, value = line.rpartition(" ")
            found[head.split('"')[1]] = float(value)
    return found


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def soak(args: argparse.Namespace) -> list[dict[str, Any]]:
    prefix = f"bench-soak-{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    port = free_port()
    samples: list[dict[str, Any]] = []
    try:
        await setup(args.bootstrap, prefix)
        topic = EVENTS.name(prefix)
        producer = new_producer(args.bootstrap)
        await producer.start()
        worker = Worker(args.bootstrap, prefix, tmp / "worker.log")
        worker.env.update({
            "FLOWGUARD_HEALTH_PORT": str(port),
            "FLOWGUARD_CHAIN_RETENTION_SECONDS": str(args.retention),
            "FLOWGUARD_EXECUTION_RETENTION_SECONDS": str(args.retention),
            "FLOWGUARD_EXPIRY_SCAN_SECONDS": str(max(5.0, args.retention / 5)),
        })  # fmt: skip
        async with worker, Tail(args.bootstrap, COMMANDS.name(prefix), COMMANDS.partitions) as tail:
            bridge = Bridge(producer, topic, COMMAND_RESULTS.name(prefix))
            reading = asyncio.create_task(bridge.run(tail))
            paced = Paced(args.rate)
            try:
                probe = Stream()
                probe.add(task("probe", NAMES[0], time.time(), "failed"))
                await produce(producer, topic, probe.items)

                async def up() -> bool:
                    return "probe" in bridge.arrived

                await until(up, 180, "the probe's retry command (the worker up)")
                began, cpu0 = time.monotonic(), worker.cpu_seconds()
                for _ in range(int(args.minutes * 60 / args.every)):
                    start, cpu = time.monotonic(), worker.cpu_seconds()
                    failures_before = set(paced.sent)
                    produced = await paced.run(producer, topic, args.every)
                    window = [t for t in paced.sent if t not in failures_before]
                    ms = [
                        (bridge.arrived[t] - paced.sent[t]) * 1000
                        for t in window
                        if t in bridge.arrived
                    ]
                    sample = {
                        "minute": round((time.monotonic() - began) / 60, 2),
                        "events_per_s": round(produced / (time.monotonic() - start)),
                        "rss_mb": round(worker.rss_mb(), 1),
                        "cpu_share": round((worker.cpu_seconds() - cpu) / args.every, 3),
                        "lag": await lag(args.bootstrap, worker.app_id, topic),
                        "tables": table_keys(port),
                        "failures": len(window),
                        "answered": len(ms),
                        "p50_ms": percentile(ms, 0.5),
                        "p99_ms": percentile(ms, 0.99),
                    }
                    samples.append(sample)
                    print(json.dumps(sample), flush=True)
                await producer.flush()

                async def all_answered() -> bool:
                    return all(t in bridge.arrived for t in paced.sent)

                await until(all_answered, 120, "a retry command for every failure")
                cpu_total = worker.cpu_seconds() - cpu0
                print(json.dumps({"failures": len(paced.sent), "answered": sum(
                    t in bridge.arrived for t in paced.sent), "cpu_seconds": round(cpu_total, 1),
                    "worker_log": str(worker.log)}), flush=True)  # fmt: skip
            finally:
                reading.cancel()
                await asyncio.gather(reading, return_exceptions=True)
                await producer.stop()
    finally:
        await teardown(args.bootstrap, prefix)
    return samples


# the plot -------------------------------------------------------------------------------------


def svg(samples: list[dict[str, Any]], title: str) -> str:
    """Four small panels over time (minutes): RSS, table keys, lag, latency p99."""
    series = [
        ("worker RSS (MB)", [s["rss_mb"] for s in samples]),
        ("chains table (keys)", [s["tables"].get("chains", 0) for s in samples]),
        ("lag on events (records)", [s["lag"] for s in samples]),
        ("failure -> retry p99 (ms)", [s["p99_ms"] or 0 for s in samples]),
    ]
    minutes = [s["minute"] for s in samples]
    width, panel, pad = 720, 150, 48
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{len(series) * panel + 30}" font-family="sans-serif" font-size="11">',
           f'<text x="{pad}" y="16" font-size="13">{title}</text>']  # fmt: skip
    x_max = max(minutes) or 1.0
    for i, (name, ys) in enumerate(series):
        top, h = 30 + i * panel, panel - 40
        y_max = max(max(ys), 1) * 1.1
        points = " ".join(
            f"{pad + (m / x_max) * (width - 2 * pad):.1f},{top + h - (y / y_max) * h:.1f}"
            for m, y in zip(minutes, ys, strict=True)
        )
        out += [
            f'<text x="{pad}" y="{top - 4}">{name}</text>',
            f'<rect x="{pad}" y="{top}" width="{width - 2 * pad}" height="{h}" fill="none" '
            'stroke="#ccc"/>',
            f'<text x="{pad - 4}" y="{top + 8}" text-anchor="end">{y_max:.0f}</text>',
            f'<text x="{pad - 4}" y="{top + h}" text-anchor="end">0</text>',
            f'<polyline points="{points}" fill="none" stroke="#2563eb" stroke-width="1.5"/>',
            f'<text x="{width - pad}" y="{top + h + 12}" text-anchor="end">{x_max:.0f} min</text>',
        ]
    out.append("</svg>")
    return "\n".join(out) + "\n"


def summary(samples: list[dict[str, Any]]) -> str:
    """First and last thirds compared: what a flat line means in numbers."""
    third = max(1, len(samples) // 3)
    early, late = samples[third : 2 * third] or samples, samples[-third:]

    def mean(rows: list[dict[str, Any]], read: Any) -> float:
        return statistics.fmean(read(r) for r in rows)

    lines = ["| measure | middle third | last third |", "|---|---:|---:|"]
    for name, read in (
        ("events/s produced", lambda r: r["events_per_s"]),
        ("worker RSS (MB)", lambda r: r["rss_mb"]),
        ("worker CPU share", lambda r: r["cpu_share"]),
        ("chains keys", lambda r: r["tables"].get("chains", 0)),
        ("executions keys", lambda r: r["tables"].get("executions", 0)),
        ("lag (records)", lambda r: r["lag"]),
        ("p50 (ms)", lambda r: r["p50_ms"] or 0),
        ("p99 (ms)", lambda r: r["p99_ms"] or 0),
    ):
        lines.append(f"| {name} | {mean(early, read):,.1f} | {mean(late, read):,.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=int, default=1000, help="events/s")
    parser.add_argument("--every", type=float, default=60, help="seconds between samples")
    parser.add_argument("--retention", type=float, default=300, help="chain/execution, s")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--json", type=Path, help="write the samples here")
    parser.add_argument("--svg", type=Path, help="write the plot here")
    args = parser.parse_args()
    samples = asyncio.run(soak(args))
    if args.json:
        args.json.write_text(json.dumps(samples, indent=1) + "\n")
    if args.svg:
        title = (f"soak: {args.rate} events/s, 5% failures, {args.minutes:g} min, "
                 f"retention {args.retention:g} s")  # fmt: skip
        args.svg.write_text(svg(samples, title))
    print(summary(samples))


if __name__ == "__main__":
    main()
