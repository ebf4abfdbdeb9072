"""Consume flowguard's execution log: one line per execution as it settles.

A downstream team's consumer, with aiokafka and the standard library only (no flowguard
import). It follows the rules of docs/execution-log.md:

- records are JSON, ``schema`` ``flowguard.execution/1``; fields this code does not know (a
  later flowguard's) are ignored;
- an execution has records ``seq`` 0, 1, 2, ...: each a full snapshot; the one with the
  highest ``seq`` is the latest; the same record can come twice (after a crash flowguard
  re-sends it), so anything not newer than what was seen is skipped;
- an execution is settled when each of its actions has a final status.

    python execution_log_consumer.py --bootstrap 127.0.0.1:9092 --prefix flowguard \\
        --group my-team-executions [--from-beginning] [--until-end] [--all]

Prints one JSON line per settled execution (``--all``: per new record). ``--until-end`` stops
at the end of the log as it was at start (for batch jobs and tests).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

SCHEMA = "flowguard.execution/1"
SETTLED = {"succeeded", "failed", "skipped", "cancelled"}


def settled(record: dict[str, Any]) -> bool:
    """Nothing more will happen to this execution: every action has a final status."""
    return all(action.get("status") in SETTLED for action in record.get("actions", ()))


class Latest:
    """The newest ``seq`` seen per execution id. A real consumer keeps this in its own store
    (a settled execution can be forgotten after a week: a re-sent record comes long before)."""

    def __init__(self) -> None:
        self.seq: dict[str, int] = {}

    def is_new(self, record: dict[str, Any]) -> bool:
        execution_id, seq = record["execution_id"], int(record.get("seq", 0))
        if seq <= self.seq.get(execution_id, -1):
            return False  # a duplicate, or older than what we have
        self.seq[execution_id] = seq
        return True


def summary(record: dict[str, Any]) -> dict[str, Any]:
    task = record.get("task") or {}
    worker = record.get("worker") or {}
    return {
        "execution_id": record["execution_id"],
        "seq": record.get("seq", 0),
        "workflow": record["workflow"]["id"],
        "trigger": record["trigger"]["event"],
        "cluster": task.get("cluster") or worker.get("cluster"),
        "task_id": task.get("id"),
        "outcome": record["outcome"],
        "reason": record.get("reason"),
        "actions": {a["action_id"]: a["status"] for a in record.get("actions", ())},
        "settled": settled(record),
    }


async def consume(args: argparse.Namespace) -> int:
    topic = f"{args.prefix}.execution-log"
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        auto_offset_reset="earliest" if args.from_beginning else "latest",
        enable_auto_commit=True,
    )
    await consumer.start()
    latest, printed = Latest(), 0
    try:
        end: dict[TopicPartition, int] | None = None
        if args.until_end:
            partitions = [
                TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()
            ]
            end = await consumer.end_offsets(partitions)
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                for message in messages:
                    printed += handle(message.value, latest, args.all)
            if end is not None and await _reached(consumer, end):
                return printed
    finally:
        await consumer.stop()


def handle(value: bytes | None, latest: Latest, print_all: bool) -> int:
    try:
        record = json.loads(value or b"")
    except ValueError:
        print(f"skipped a record that is not JSON: {value[:80]!r}", file=sys.stderr)
        return 0
    if record.get("schema") != SCHEMA:
        print(f"skipped a record of schema {record.get('schema')!r}", file=sys.stderr)
        return 0
    if not latest.is_new(record) or not (print_all or settled(record)):
        return 0
    print(json.dumps(summary(record)), flush=True)
    return 1


async def _reached(consumer: AIOKafkaConsumer, end: dict[TopicPartition, int]) -> bool:
    for partition, offset in end.items():
        if partition in consumer.assignment() and await consumer.position(partition) < offset:
            return False
    return set(end) <= consumer.assignment()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--prefix", default="flowguard", help="FLOWGUARD_TOPIC_PREFIX")
    parser.add_argument("--group", required=True, help="your consumer group")
    parser.add_argument("--from-beginning", action="store_true")
    parser.add_argument("--until-end", action="store_true")
    parser.add_argument("--all", action="store_true", help="every new record, not only settled")
    asyncio.run(consume(parser.parse_args()))


if __name__ == "__main__":
    main()
