"""Benchmark: history queries over 1M executions, and the projection's catch-up rate.

Queries: a projection of ``--records`` execution records (100 workflows, 1,000 task names, 5
clusters, 30 days, 80% success / 5% failure / 15% skipped, a tenth with a seq 1 record) is
built with ``HistoryProjection.apply``; then every query shape the API and UI use runs many
times with random parameters, and p50/p95/max are reported per shape.

Catch-up: ``--log-records`` records are produced to a fresh execution log (6 partitions) on a
real Kafka; in alternating rounds a bare aiokafka consumer reads all of it and ``json.loads``
each value (the baseline), and the projection catches up into a fresh file. Best of each.

    python bench/history.py                                  # 1M records, 200k on Kafka
    python bench/history.py --records 100000 --log-records 20000   # quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaProducer, ConsumerRecord  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402

from bench._common import bare_read  # noqa: E402
from flowguard.control.history import HistoryProjection  # noqa: E402
from topics.record import iso  # noqa: E402
from topics.registry import EXECUTION_LOG  # noqa: E402

T0 = 1_800_000_000.0
SPAN_SECONDS = 30 * 86_400
WORKFLOWS = [f"wf-{i:03d}" for i in range(100)]
CLUSTERS = ["eu-1", "eu-2", "us-1", "us-2", "ap-1"]
TRIGGERS = ["task.failed", "task.failed", "task.failed", "task.orphaned", "worker.offline"]
OUTCOMES = ["success"] * 16 + ["failure"] + ["skipped"] * 3


def execution(rng: random.Random, i: int, n: int) -> dict[str, Any]:
    """The i-th of n executions, evenly spread over SPAN_SECONDS."""
    at = T0 + SPAN_SECONDS * i / n
    wf = rng.choice(WORKFLOWS)
    event = rng.choice(TRIGGERS)
    cluster = rng.choice(CLUSTERS)
    task = None
    if event != "worker.offline":
        task = {
            "cluster": cluster, "id": f"task-{i:08d}", "root_id": f"task-{i - i % 3:08d}",
            "parent_id": None, "name": f"app.tasks.t{rng.randrange(1000)}", "queue": "celery",
            "worker": f"w{rng.randrange(50)}@host", "args": f"({i},)", "kwargs": "{}",
            "exception_type": "ConnectionError", "error_message": "refused", "failure_count": 1,
        }  # fmt: skip
    return {
        "schema": "flowguard.execution/1", "kind": "execution",
        "execution_id": f"ex-{i:08d}", "seq": 0,
        "workflow": {"id": wf, "name": wf.upper(), "version": 1},
        "trigger": {"id": f"trig-{i}", "event": event, "at": iso(at), "reason": ""},
        "task": task,
        "worker": None if task else {"cluster": cluster, "hostname": "w1@host"},
        "conditions": [],
        "circuit_breaker": {"state": "closed", "count": 1, "max_executions": 100,
                            "window_seconds": 3600.0, "transition": None, "suppressed": 0},
        "actions": [{"action_id": f"ex-{i}/0", "type": "retry", "status": "sent",
                     "detail": "", "attempt": 1, "delay_seconds": 0.0, "due_at": None,
                     "command_id": f"ex-{i}/0", "retry_task_id": f"retry-{i:08d}"}],
        "outcome": rng.choice(OUTCOMES), "reason": None,
        "dry_run": False, "recorded_at": None,
    }  # fmt: skip


def values(n: int) -> Iterator[bytes]:
    """n seq-0 records, and a seq-1 record for every tenth, as JSON bytes."""
    rng = random.Random(7)
    for i in range(n):
        record = execution(rng, i, n)
        yield json.dumps(record).encode()
        if i % 10 == 5:
            yield json.dumps({**record, "seq": 1, "outcome": "skipped"}).encode()


def build(path: Path, n: int) -> float:
    """Fill a projection with n executions; returns records per second spent in ``apply``."""
    spent, offset, batch = 0.0, 0, []
    with HistoryProjection(path) as projection:
        for value in values(n):
            batch.append(ConsumerRecord("t", offset % 6, offset, 0, 0, b"k", value, None, 1, 1, ()))
            offset += 1
            if len(batch) == 10_000 or offset == n + n // 10:
                started = time.perf_counter()
                projection.apply("t", batch)
                spent += time.perf_counter() - started
                batch = []
    return offset / spent


def shapes(rng: random.Random, p: HistoryProjection, n: int) -> dict[str, Callable[[], Any]]:
    """Each query shape the API and UI use, with fresh random parameters per call."""

    def when() -> float:
        return T0 + rng.random() * SPAN_SECONDS

    def deep_cursor() -> str | None:
        return p.query(until=when(), limit=1).next_cursor

    return {
        "newest page, no filter": lambda: p.query(),
        "workflow": lambda: p.query(workflow=rng.choice(WORKFLOWS)),
        "outcome=failure (5%)": lambda: p.query(outcome="failure"),
        "workflow + failure": lambda: p.query(workflow=rng.choice(WORKFLOWS), outcome="failure"),
        "workflow + cluster + trigger": lambda: p.query(
            workflow=rng.choice(WORKFLOWS), cluster=rng.choice(CLUSTERS), trigger="task.orphaned"
        ),
        "task name": lambda: p.query(task_name=f"app.tasks.t{rng.randrange(1000)}"),
        "task id": lambda: p.query(task_id=f"task-{rng.randrange(n):08d}"),
        "time range 1 h": lambda: p.query(since=(t := when()), until=t + 3600),
        "page deep in the log (cursor)": lambda: p.query(cursor=deep_cursor()),
        "counts/hour, workflow, 7 d": lambda: p.counts_per_hour(
            rng.choice(WORKFLOWS), since=(t := when()), until=t + 7 * 86_400
        ),
        "counts/hour, all, 24 h": lambda: p.counts_per_hour(since=(t := when()), until=t + 86_400),
        "retry chain": lambda: p.chain(f"task-{rng.randrange(n) // 3 * 3:08d}"),
        "workflow stats": lambda: p.stats(rng.choice(WORKFLOWS), now=when()),
    }


def query_bench(path: Path, n: int, repeat: int) -> list[tuple[str, float, float, float]]:
    rng = random.Random(11)
    rows = []
    with HistoryProjection(path) as projection:
        for name, call in shapes(rng, projection, n).items():
            call()  # warm the page cache for this index
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                call()
                times.append((time.perf_counter() - started) * 1000)
            times.sort()
            p95 = times[int(0.95 * (len(times) - 1))]
            rows.append((name, statistics.median(times), p95, times[-1]))
    return rows


async def make_log(bootstrap: str, prefix: str, n: int) -> int:
    topic = EXECUTION_LOG.name(prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, EXECUTION_LOG.partitions, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    count = 0
    try:
        for value in values(n):
            await producer.send(topic, value, key=value[60:80])
            count += 1
        await producer.flush()
    finally:
        await producer.stop()
    return count


async def bare(bootstrap: str, prefix: str, expected: int) -> float:
    """The baseline: assign every partition, read to the end, json.loads each value."""
    rate, _ = await bare_read(bootstrap, EXECUTION_LOG.name(prefix), expected, json.loads)
    return rate


async def projected(bootstrap: str, prefix: str, directory: Path) -> float:
    path = directory / f"{uuid.uuid4().hex}.sqlite"
    with HistoryProjection(path) as projection:
        started = time.perf_counter()
        applied = await projection.catch_up(bootstrap, prefix)
        return applied / (time.perf_counter() - started)


async def catch_up_bench(bootstrap: str, n: int, rounds: int, directory: Path) -> dict[str, Any]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    count = await make_log(bootstrap, prefix, n)
    best = {"bare": 0.0, "projection": 0.0}
    for _ in range(rounds):
        best["bare"] = max(best["bare"], await bare(bootstrap, prefix, count))
        best["projection"] = max(best["projection"], await projected(bootstrap, prefix, directory))
    return {"records": count, "prefix": prefix, **best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=200, help="Calls per query shape.")
    parser.add_argument("--log-records", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    args = parser.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        path = directory / "history.sqlite"
        rate = build(path, args.records)
        size_mb = path.stat().st_size / 1e6
        print(f"built {args.records:,} executions at {rate:,.0f} records/s ({size_mb:,.0f} MB)")
        print(f"{'query':<32} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
        for name, p50, p95, worst in query_bench(path, args.records, args.repeat):
            print(f"{name:<32} {p50:>8.2f} {p95:>8.2f} {worst:>8.2f}")
        path.unlink()
        result = asyncio.run(
            catch_up_bench(args.bootstrap, args.log_records, args.rounds, directory)
        )
    ratio = result["projection"] / result["bare"]
    print(f"catch-up over {result['records']:,} records on {result['prefix']}.execution-log:")
    print(f"  bare aiokafka consumer + json.loads  {result['bare']:>10,.0f} records/s  1.00")
    rate = result["projection"]
    print(f"  HistoryProjection.catch_up           {rate:>10,.0f} records/s  {ratio:.2f}")


if __name__ == "__main__":
    main()
