"""What docs/execution-log.md promises about the log, checked on records the real flowguard
worker wrote: the key is the workflow id, the partition is Kafka's default for that key (so a
workflow's records are in order on one partition), an execution's records count ``seq`` up
from 0 in log order, each a full snapshot, and the last one is settled. The docs' Python
consumer, run on that log, prints the execution once, with its final record."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

from tests.e2e.conftest import Stack
from tests.helpers import wait_until
from topics.registry import EXECUTION_LOG

REPO = Path(__file__).resolve().parents[2]
SETTLED = {"succeeded", "failed", "skipped", "cancelled"}
RETRY = {
    "name": "Retry flaky calls",
    "trigger": {"event": "task.failed", "conditions": {"task_name_pattern": "demo.tasks.flaky_*"}},
    "actions": [{"type": "retry", "delay_seconds": 1, "max_attempts": 2}],
}


def _settled(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if all(a["status"] in SETTLED for a in r["actions"])]


def test_keys_partitions_and_seq_of_the_real_log(stack: Stack, unique: Any) -> None:
    stack.apply(RETRY)
    stack.client.send_task(
        "demo.tasks.flaky_network", (7,), {"fail_times": 1, "key": "contract-1"},
        queue="email", task_id="t-contract",
    )  # fmt: skip
    wait_until(
        lambda: _settled(stack.records("retry-flaky-calls")),
        timeout_seconds=60, what="the retry's execution to settle",
    )  # fmt: skip

    written = [(k, v, p, o) for k, v, p, o in stack.log.records if v["execution_id"]]
    assert len(written) >= 3, "decided, sent, settled"
    partitions = list(range(EXECUTION_LOG.partitions))
    for key, value, partition, _ in written:
        assert key == value["workflow"]["id"].encode() == b"retry-flaky-calls"
        assert partition == DefaultPartitioner()(key, partitions, partitions)
    in_log_order = [v for _, v, _, _ in sorted(written, key=lambda r: r[3])]
    assert len({v["execution_id"] for v in in_log_order}) == 1
    assert [v["seq"] for v in in_log_order] == list(range(len(in_log_order)))
    final = in_log_order[-1]
    assert _settled([final]) == [final]
    assert not _settled(in_log_order[:-1]), "only the last record is settled"
    assert final["outcome"] == "success"

    result = subprocess.run(
        [
            sys.executable, str(REPO / "docs" / "examples" / "execution_log_consumer.py"),
            "--bootstrap", stack.kafka, "--prefix", stack.prefix, "--group", unique("team"),
            "--from-beginning", "--until-end",
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [line] = [json.loads(x) for x in result.stdout.splitlines()]
    assert (line["execution_id"], line["seq"]) == (final["execution_id"], final["seq"])
    assert line["cluster"] == "prod"
    assert line["task_id"] == "t-contract"
